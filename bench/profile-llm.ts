// Where an LLM's time goes: onnxruntime's per-node profile of a prefill and some decode steps,
// summed by operator type. Not part of `npm run bench` (profiling slows every node a little);
// run it by hand on a folder the bench or `mgllava quantize` wrote:
//
//   node dist/bench/profile-llm.js LLM_FOLDER [--prompt 666] [--decode 16] [--threads 2] [--nodes 15] [--warm]
//
// Prints, for the prefill run and for the decode runs (per token), the milliseconds per
// operator type, their share, the time outside the nodes (session overhead, JS) and the
// wall-clock time per step measured around `forward`; `--nodes N` adds the N costliest nodes.

import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CausalLM } from '../src/model/llm/causal-lm.js';
import { argmax } from '../src/generate/sampling.js';
import { lcg } from './workload.js';

interface TraceEvent { cat: string; name: string; ts: number; dur: number; args?: { op_name?: string } }

/** Node time by operator type (ms) per model_run, in run order. */
function perRun(events: TraceEvent[]): { runMs: number; ops: Map<string, number>; nodes: Map<string, number> }[] {
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  return runs.map((r) => {
    const ops = new Map<string, number>();
    const byNode = new Map<string, number>();
    for (const n of nodes) {
      if (n.ts < r.ts || n.ts > r.ts + r.dur) continue;
      const op = n.args?.op_name ?? '?';
      ops.set(op, (ops.get(op) ?? 0) + n.dur / 1000);
      // layer-independent node names: l12.q_rope -> l*.q_rope
      const node = `${op} ${n.name.replace(/_kernel_time$/, '').replace(/^l\d+\./, 'l*.')}`;
      byNode.set(node, (byNode.get(node) ?? 0) + n.dur / 1000);
    }
    return { runMs: r.dur / 1000, ops, nodes: byNode };
  });
}

function table(title: string, runs: { runMs: number; ops: Map<string, number>; nodes: Map<string, number> }[], wallMs: number): string {
  const n = runs.length;
  const total = new Map<string, number>();
  let runMs = 0;
  for (const r of runs) {
    runMs += r.runMs;
    for (const [k, v] of r.ops) total.set(k, (total.get(k) ?? 0) + v);
  }
  const nodeMs = [...total.values()].reduce((a, b) => a + b, 0);
  const lines = [`${title} (${n} run${n > 1 ? 's' : ''}; ms per run)`, '| op | ms | share of the run |', '| --- | --- | --- |'];
  for (const [k, v] of [...total].sort((a, b) => b[1] - a[1])) lines.push(`| ${k} | ${(v / n).toFixed(2)} | ${((100 * v) / runMs).toFixed(1)}% |`);
  lines.push(`| (outside nodes, inside the run) | ${((runMs - nodeMs) / n).toFixed(2)} | ${((100 * (runMs - nodeMs)) / runMs).toFixed(1)}% |`);
  lines.push(`| run total | ${(runMs / n).toFixed(2)} | |`);
  lines.push(`| wall time per step around forward() | ${(wallMs / n).toFixed(2)} | |`);
  if (values.nodes) {
    const byNode = new Map<string, number>();
    for (const r of runs) for (const [k, v] of r.nodes) byNode.set(k, (byNode.get(k) ?? 0) + v);
    lines.push('', `the ${values.nodes} costliest nodes (all layers together; ms per run)`);
    for (const [k, v] of [...byNode].sort((a, b) => b[1] - a[1]).slice(0, Number(values.nodes))) lines.push(`  ${(v / n).toFixed(2).padStart(9)}  ${k}`);
  }
  return lines.join('\n');
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { prompt: { type: 'string', default: '666' }, decode: { type: 'string', default: '16' }, threads: { type: 'string', default: '2' }, nodes: { type: 'string' }, warm: { type: 'boolean', default: false } },
});
const folder = positionals[0];
if (!folder) {
  process.stderr.write('usage: node dist/bench/profile-llm.js LLM_FOLDER [--prompt N] [--decode N] [--threads N] [--nodes N] [--warm]\n');
  process.exit(2);
}
const S = Number(values.prompt);
const D = Number(values.decode);
const dir = mkdtempSync(join(tmpdir(), 'mgllava-profile-'));
// Packed in memory, not mapped from the packed cache: a session loaded from a cache entry wrote
// only its first run into the profile (measured 2026-11-28; onnxruntime-node 1.30.0).
const lm = await CausalLM.load(folder, { threads: Number(values.threads), profilePrefix: join(dir, 'decoder'), packedCache: false });
const r = lcg(7);
const ids = Array.from({ length: S }, () => 3 + Math.floor(r() * (lm.config.vocabSize - 3)));
// --warm: one prefill before the measured one, so that onnxruntime's memory is already touched
// (a first run on fresh memory pays the page faults: on the development VM, seconds).
if (values.warm) await lm.forward(await lm.embed(ids), lm.newCache(S + D));
const cache = lm.newCache(S + D);
let t0 = performance.now();
let next = argmax((await lm.forward(await lm.embed(ids), cache)).data);
const prefillWall = performance.now() - t0;
t0 = performance.now();
for (let i = 0; i < D; i++) next = argmax((await lm.forward(await lm.embed([next]), cache)).data);
const decodeWall = performance.now() - t0;
lm.endProfiling();
await lm.release();
const file = readdirSync(dir).find((f) => f.endsWith('.json'));
if (!file) throw new Error(`no profile written into ${dir}`);
const runs = perRun(JSON.parse(readFileSync(join(dir, file), 'utf8')) as TraceEvent[]).slice(values.warm ? 1 : 0);
rmSync(dir, { recursive: true, force: true });
process.stdout.write(`${table(`prefill of ${S} tokens`, runs.slice(0, 1), prefillWall)}\n\n${table('decode, per token', runs.slice(1), decodeWall)}\n`);
