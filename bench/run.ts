// `npm run bench [-- --preset full|small] [--json] [--threads N] [--models a,b] [--cache DIR]
//                 [--llm-format q{4,8}-b{32,64,128}-{zp,sym}|q4|q4-zp|float] [--no-peers] [--no-docs]`
//   (default format q4-b128-zp, mgllava quantize's default)
// `npm run bench -- --serve [--preset small|full] ...`: the server under load (bench/serve.ts).
// `npm run bench -- --video [--threads N] [--runs N] [--per-frame]`: 8 video frames' vision side vs PyTorch (bench/video-vision.ts).
//
// MG-LLaVA at real sizes (random weights, written once into a cache folder outside the
// repository) against the stacks one would use instead, on the same machine, shapes and thread
// count: PyTorch (the reference's vision path) and llama.cpp (the LLM, its Q4_0 and Q4_K_M). Prints a table of
// ratios (or, with --json, one JSON object) and writes this preset's section of docs/BENCHMARKS.md.
// Run it alone: any other process on the cores ruins the timings (the load average is printed).

import { cpus } from 'node:os';
import { join } from 'node:path';
import { ROOT, defaultCache, runBench } from './orchestrate.js';
import { PRESETS, Preset } from './presets.js';
import { DEFAULT_LLM_FORMAT, LlmFormat, parseLlmFormat } from './our-llm.js';
import { detailTable, ratioTable, writeDocs } from './report.js';
import { runServeBench } from './serve.js';

function parseArgs(argv: string[]) {
  const o = {
    preset: 'full' as Preset['name'], json: false, peers: true, docs: true,
    threads: Number(process.env.MGLLAVA_BENCH_THREADS ?? Math.min(cpus().length, 2)),
    cache: defaultCache(), models: undefined as string[] | undefined,
    python: process.env.MGLLAVA_BENCH_PYTHON ?? '/usr/bin/python3',
    llmFormat: DEFAULT_LLM_FORMAT as LlmFormat,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '--preset': {
        const p = value();
        if (!(p in PRESETS)) throw new Error(`--preset must be one of ${Object.keys(PRESETS).join(', ')}, got ${p}`);
        o.preset = p as Preset['name'];
        break;
      }
      case '--json': o.json = true; break;
      case '--no-peers': o.peers = false; break;
      case '--no-docs': o.docs = false; break;
      case '--threads': o.threads = Number(value()); break;
      case '--cache': o.cache = value(); break;
      case '--models': o.models = value().split(','); break;
      case '--python': o.python = value(); break;
      case '--llm-format': {
        const f = value();
        parseLlmFormat(f);
        o.llmFormat = f;
        break;
      }
      default: throw new Error(`unknown option ${a}`);
    }
  }
  if (!(Number.isInteger(o.threads) && o.threads > 0)) throw new Error('--threads must be a positive integer');
  return o;
}

async function main(): Promise<void> {
  if (process.argv.includes('--video')) {
    try {
      await (await import('./video-vision.js')).main(process.argv.slice(2));
    } catch (e) {
      process.stderr.write(`bench: ${(e as Error).message}\n`);
      process.exit(1);
    }
    return;
  }
  if (process.argv.includes('--serve')) {
    try {
      await runServeBench(process.argv.slice(2));
    } catch (e) {
      process.stderr.write(`bench: ${(e as Error).message}\n`);
      process.exit(1);
    }
    return;
  }
  let o: ReturnType<typeof parseArgs>;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n`);
    process.exit(2);
  }
  let report: Awaited<ReturnType<typeof runBench>>;
  try {
    report = await runBench({
      preset: o.preset, threads: o.threads, cache: o.cache, peers: o.peers, models: o.models, python: o.python, llmFormat: o.llmFormat,
      command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
      log: (m) => process.stderr.write(`${m}\n`),
    });
  } catch (e) {
    // Making the models can fail on the machine (a full disk while quantizing): one line.
    process.stderr.write(`bench: ${(e as Error).message}\n`);
    if (process.env.MGLLAVA_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  }
  if (o.json) {
    process.stdout.write(`${JSON.stringify(report, null, 1)}\n`);
  } else {
    console.log(ratioTable(report));
    for (const [name, r] of Object.entries(report.models)) console.log(`\n${detailTable(name, r)}`);
  }
  if (o.docs && o.preset !== 'tiny') {
    const path = join(ROOT, 'docs', 'BENCHMARKS.md');
    writeDocs(path, report);
    process.stderr.write(`wrote the ${o.preset} section of ${path}\n`);
  }
}

await main();
