// Decode and prefill of several LLM weight formats side by side: our 4-bit folders (any
// `mgllava quantize` output) and llama.cpp GGUFs, each run in a fresh process, in interleaved
// rounds, on the bench's 666-token prompt layout; each format keeps its best round per measure.
// What the bench's race does for one pair, for choosing a default format among several
// (their answer quality: bench/format-quality.ts). Run it alone.
//
//   node dist/bench/race-formats.js --ours DIR[,DIR...] [--gguf FILE[,FILE...]] [--rounds 2]
//     [--decode 48] [--threads 2] [--packed-cache DIR | --no-packed-cache] [--json]

import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { readLlmFolderConfig } from '../src/model/llm/causal-lm.js';
import { child, defaultCache, isSkipped } from './orchestrate.js';
import type { Skipped } from './orchestrate.js';
import { setupLlamaCpp, type LlamaCppTimes } from './peer-llamacpp.js';
import type { LlmTimes } from './measure-ours.js';
import { PRESETS } from './presets.js';
import { bestOf } from './report.js';

const { values } = parseArgs({
  options: {
    ours: { type: 'string', default: '' }, gguf: { type: 'string', default: '' }, rounds: { type: 'string', default: '2' },
    decode: { type: 'string', default: '48' }, threads: { type: 'string', default: '2' }, 'packed-cache': { type: 'string' },
    'no-packed-cache': { type: 'boolean', default: false }, cache: { type: 'string', default: defaultCache() }, json: { type: 'boolean', default: false },
  },
});
const log = (m: string) => process.stderr.write(`${m}\n`);
const threads = Number(values.threads);
const w = { ...PRESETS.full.workload, decodeTokens: Number(values.decode) };
const ours = values.ours.split(',').filter(Boolean);
const ggufs = values.gguf.split(',').filter(Boolean);
// false: packing in memory at every load (slower loads; the same run times).
const packedCache = values['no-packed-cache'] ? false : values['packed-cache'] ?? join(values.cache, 'packed');
const lc = ggufs.length ? setupLlamaCpp(values.cache, log) : undefined;
if (lc && !lc.ok) throw new Error(`llama.cpp: ${lc.reason}`);
const vocab = ours.length ? readLlmFolderConfig(ours[0]!).config.vocabSize : 32000;

const runs = new Map<string, (LlmTimes | Skipped)[]>();
for (let r = 1; r <= Number(values.rounds); r++) {
  for (const dir of ours) {
    log(`round ${r}: ${dir}`);
    const x = child<LlmTimes>({ kind: 'ours-llm', llm: dir, threads, workload: w, packedCache }, log);
    runs.set(dir, [...(runs.get(dir) ?? []), x]);
  }
  for (const g of ggufs) {
    for (const fa of [false, true]) {
      log(`round ${r}: ${g}, flash attention ${fa ? 'on' : 'off'}`);
      const x = child<LlamaCppTimes>({ kind: 'llamacpp', dir: (lc as { dir: string }).dir, gguf: g, vocab, threads, workload: w, flashAttention: fa }, log);
      runs.set(g, [...(runs.get(g) ?? []), x]);
    }
  }
}
const rows = [...runs].map(([k, v]) => ({ format: k, best: bestOf(v), runs: v }));
if (values.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
else {
  console.log('| weights | load (s) | prefill (tok/s) | first token (s) | decode (tok/s) | peak RSS (GiB) |\n| --- | --- | --- | --- | --- | --- |');
  for (const { format, best } of rows) {
    if (isSkipped(best)) console.log(`| ${basename(format)} | ${best.skipped} | | | | |`);
    else console.log(`| ${basename(format)} | ${best.load_s.toFixed(1)} | ${best.prefill_tps.toFixed(1)} | ${best.ttft_s.toFixed(1)} | ${best.decode_tps.toFixed(2)} | ${(best.peak_rss_bytes / 2 ** 30).toFixed(2)} |`);
  }
}
