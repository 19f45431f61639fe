// Does int8 compute pay for the vision towers, and how do block sizes compare on a prompt's many
// rows? A CLIP-L-sized stack of linears (M rows, default 577 tokens; 1024 <-> 4096, 8 layers
// alternating up and down) run as float32 FusedMatMul and as 8-bit and 4-bit MatMulNBits (zero
// points, accuracy level 4: int8 activations, VNNI where the CPU has it; block 32, and the other
// `--blocks` for 4 bits), on the same random weights; medians and minima of alternating runs, and
// each quantized stack's relative error against the float one.
//
//   node dist/bench/matmul-int8.js [--threads 2] [--runs 6] [--m 577] [--blocks 32]

import { parseArgs } from 'node:util';
import { Graph, Value } from '../src/graph/graph.js';
import { linear, matMulNBits } from '../src/graph/blocks.js';
import { Session } from '../src/runtime/session.js';
import { nBlocks, quantizeNBits } from '../src/weights/nbits.js';
import { lcg } from './workload.js';

const { values } = parseArgs({
  options: { threads: { type: 'string', default: '2' }, runs: { type: 'string', default: '6' }, m: { type: 'string', default: '577' }, blocks: { type: 'string', default: '32' } },
});
const [M, K, N, L] = [Number(values.m), 1024, 4096, 8];
const u8 = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function random(n: number, seed: number, scale: number): Float32Array {
  const next = lcg(seed);
  return Float32Array.from({ length: n }, () => (next() - 0.5) * 2 * scale);
}

/** f32, or q{bits}-b{block} */
async function stack(kind: string, threads: number): Promise<Session> {
  const g = new Graph(kind);
  let x: Value = g.input('x', 'F32', [M, K]);
  for (let l = 0; l < L; l++) {
    const [n, k] = l % 2 === 0 ? [N, K] : [K, N];
    const w = random(n * k, 7 + l, 0.03);
    if (kind === 'f32') {
      x = linear(g, x, g.initializer(`w${l}`, 'F32', [n, k], { kind: 'inline', bytes: u8(w) }), null, `l${l}`);
      continue;
    }
    const [, b, bs] = /^q(\d)-b(\d+)$/.exec(kind)!;
    const bits = Number(b) as 4 | 8;
    const blockSize = Number(bs);
    const m = quantizeNBits(w, n, k, { bits, blockSize });
    const nb = nBlocks(k, blockSize);
    x = matMulNBits(g, x,
      g.initializer(`b${l}`, 'U8', [n, nb, (blockSize * bits) / 8], { kind: 'inline', bytes: m.qweight }),
      g.initializer(`s${l}`, 'F32', [n * nb], { kind: 'inline', bytes: u8(m.scales) }),
      g.initializer(`z${l}`, 'U8', [m.zeroPoints!.length], { kind: 'inline', bytes: m.zeroPoints! }),
      { K: k, N: n, bits, blockSize, accuracyLevel: 4 }, `l${l}`);
  }
  g.output(x, 'y');
  return Session.create(kind, g.serialize().bytes, { prepack: true, threads });
}

const threads = Number(values.threads);
const kinds = ['f32', 'q8-b32', ...values.blocks.split(',').map((b) => `q4-b${b}`)];
const sessions: Record<string, Session> = {};
for (const k of kinds) sessions[k] = await stack(k, threads);
const x = { dims: [M, K], data: random(M * K, 3, 1) };
const ref = (await sessions.f32!.run({ x })).y!.data;
const times: Record<string, number[]> = Object.fromEntries(kinds.map((k) => [k, []]));
for (let r = 0; r < Number(values.runs); r++) {
  for (const k of kinds) {
    const t0 = performance.now();
    await sessions[k]!.run({ x });
    times[k]!.push(performance.now() - t0);
  }
}
const flops = 2 * M * K * N * L;
console.log('| weights | median (ms) | min (ms) | GFLOP/s at the min | relative error vs float32 |\n| --- | --- | --- | --- | --- |');
for (const k of kinds) {
  const s = times[k]!.sort((a, b) => a - b);
  let err = 0;
  if (k !== 'f32') {
    const y = (await sessions[k]!.run({ x })).y!.data;
    let e = 0;
    let w = 0;
    for (let i = 0; i < y.length; i++) {
      e += (y[i]! - ref[i]!) ** 2;
      w += ref[i]! ** 2;
    }
    err = Math.sqrt(e / w);
  }
  console.log(`| ${k} | ${s[Math.floor(s.length / 2)]!.toFixed(0)} | ${s[0]!.toFixed(0)} | ${(flops / s[0]! / 1e6).toFixed(0)} | ${k === 'f32' ? '-' : err.toExponential(2)} |`);
}
for (const s of Object.values(sessions)) await s.release();
