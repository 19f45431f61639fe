// Loading the released files as they are: a base LLM as PyTorch `.bin` shards with
// `pytorch_model.bin.index.json` (how lmsys/vicuna-7b-v1.5 ships), against the same weights as
// safetensors shards. The bench's random-weight bf16 LLM of a preset model is written once more
// as torch zip shards (src/weights/write-torch.ts; the same 2 GiB-per-shard split), then
// `mgllava quantize` (4 bits, block 32, symmetric) runs on each folder in its own process:
// time and peak RSS, and the opening of the index alone.
//   node dist/bench/bin-shards.js [--model 7b|3.8b] [--cache DIR]
// Prints one JSON object; docs/BENCHMARKS.md has the measured numbers.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, copyFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PRESETS } from './presets.js';
import { defaultCache, prepareFiles } from './orchestrate.js';
import { SafetensorsStore } from '../src/weights/safetensors.js';
import { readBytes } from '../src/weights/types.js';
import { writeTorchCheckpoint } from '../src/weights/write-torch.js';
import { openWeights } from '../src/weights/open.js';
import { quantizeLlm } from '../src/model/llm/quantize.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
};

/** In a child: quantize one folder, report time and peak RSS. */
async function child(llm: string, out: string): Promise<void> {
  const t0 = performance.now();
  const store = openWeights(llm);
  const openMs = performance.now() - t0;
  void store;
  await quantizeLlm({ llm, out, bits: 4, blockSize: 32, symmetric: true });
  process.stdout.write(`${JSON.stringify({ open_s: openMs / 1000, quantize_s: (performance.now() - t0) / 1000, peak_rss_bytes: process.resourceUsage().maxRSS * 1024 })}\n`);
}

/** The safetensors shards of `hf` written again as torch zip shards beside (once). */
function binFolder(hf: string, dir: string, log: (s: string) => void): string {
  if (existsSync(dir)) return dir;
  const tmp = `${dir}.partial`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const index = JSON.parse(readFileSync(join(hf, 'model.safetensors.index.json'), 'utf8')) as { metadata?: unknown; weight_map: Record<string, string> };
  const shards = [...new Set(Object.values(index.weight_map))].sort();
  const map: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const name = `pytorch_model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.bin`;
    log(`writing ${name}`);
    const st = SafetensorsStore.open(join(hf, shard));
    writeTorchCheckpoint(join(tmp, name), st.keys().map((k) => {
      const t = st.get(k)!;
      map[k] = name;
      return { name: k, dtype: t.dtype as 'BF16', shape: t.shape, data: readBytes(t) };
    }));
  });
  writeFileSync(join(tmp, 'pytorch_model.bin.index.json'), JSON.stringify({ metadata: index.metadata ?? {}, weight_map: map }, null, 1));
  for (const f of readdirSync(hf)) if (!/safetensors/.test(f)) copyFileSync(join(hf, f), join(tmp, f));
  renameSync(tmp, dir);
  return dir;
}

async function main(): Promise<void> {
  if (args[0] === '--child') return child(args[1]!, args[2]!);
  const name = opt('--model', '7b');
  const m = PRESETS.full.models.find((x) => x.name === name);
  if (!m) throw new Error(`--model must be one of ${PRESETS.full.models.map((x) => x.name).join(', ')}`);
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const o = { preset: 'full' as const, threads: 2, cache: opt('--cache', defaultCache()), peers: false, python: '', command: '', log };
  const files = prepareFiles(m, o);
  const bin = binFolder(files.llm, join(files.llmCache, 'bin'), log);
  const run = (llm: string, label: string) => {
    const out = join(o.cache, `bin-bench-q4-${label}`);
    rmSync(out, { recursive: true, force: true });
    log(`quantizing from ${label}: ${llm}`);
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', llm, out], { encoding: 'utf8', maxBuffer: 1 << 24 });
    rmSync(out, { recursive: true, force: true });
    if (r.status !== 0) return { failed: r.stderr.trim().split('\n').pop() };
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
  };
  const result = { model: m.title, safetensors: run(files.llm, 'safetensors'), bin: run(bin, 'bin') };
  process.stdout.write(`${JSON.stringify(result, null, 1)}\n`);
}

await main();
