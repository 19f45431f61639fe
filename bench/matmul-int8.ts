// Does int8 compute pay for the vision towers? A CLIP-L-sized stack of linears (577 tokens,
// 1024 <-> 4096, 8 layers alternating up and down) run as float32 FusedMatMul and as 8-bit and
// 4-bit MatMulNBits (block 32, zero points, accuracy level 4: int8 activations, VNNI where the
// CPU has it), on the same random weights; medians and minima of alternating runs, and each
// quantized stack's relative error against the float one.
//
//   node dist/bench/matmul-int8.js [--threads 2] [--runs 6]

import { parseArgs } from 'node:util';
import { Graph, Value } from '../src/graph/graph.js';
import { linear, matMulNBits } from '../src/graph/blocks.js';
import { Session } from '../src/runtime/session.js';
import { nBlocks, quantizeNBits } from '../src/weights/nbits.js';
import { lcg } from './workload.js';

const [M, K, N, L] = [577, 1024, 4096, 8];
const u8 = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function random(n: number, seed: number, scale: number): Float32Array {
  const next = lcg(seed);
  return Float32Array.from({ length: n }, () => (next() - 0.5) * 2 * scale);
}

async function stack(kind: 'f32' | 'q8' | 'q4', threads: number): Promise<Session> {
  const g = new Graph(kind);
  let x: Value = g.input('x', 'F32', [M, K]);
  for (let l = 0; l < L; l++) {
    const [n, k] = l % 2 === 0 ? [N, K] : [K, N];
    const w = random(n * k, 7 + l, 0.03);
    if (kind === 'f32') {
      x = linear(g, x, g.initializer(`w${l}`, 'F32', [n, k], { kind: 'inline', bytes: u8(w) }), null, `l${l}`);
      continue;
    }
    const bits = kind === 'q8' ? 8 : 4;
    const m = quantizeNBits(w, n, k, { bits, blockSize: 32 });
    const nb = nBlocks(k, 32);
    x = matMulNBits(g, x,
      g.initializer(`b${l}`, 'U8', [n, nb, (32 * bits) / 8], { kind: 'inline', bytes: m.qweight }),
      g.initializer(`s${l}`, 'F32', [n * nb], { kind: 'inline', bytes: u8(m.scales) }),
      g.initializer(`z${l}`, 'U8', [m.zeroPoints!.length], { kind: 'inline', bytes: m.zeroPoints! }),
      { K: k, N: n, bits, blockSize: 32, accuracyLevel: 4 }, `l${l}`);
  }
  g.output(x, 'y');
  return Session.create(kind, g.serialize().bytes, { prepack: true, threads });
}

const { values } = parseArgs({ options: { threads: { type: 'string', default: '2' }, runs: { type: 'string', default: '6' } } });
const threads = Number(values.threads);
const kinds = ['f32', 'q8', 'q4'] as const;
const sessions = Object.fromEntries(await Promise.all(kinds.map(async (k) => [k, await stack(k, threads)] as const))) as Record<(typeof kinds)[number], Session>;
const x = { dims: [M, K], data: random(M * K, 3, 1) };
const ref = (await sessions.f32.run({ x })).y!.data;
const times: Record<string, number[]> = { f32: [], q8: [], q4: [] };
for (let r = 0; r < Number(values.runs); r++) {
  for (const k of kinds) {
    const t0 = performance.now();
    await sessions[k].run({ x });
    times[k]!.push(performance.now() - t0);
  }
}
const flops = 2 * M * K * N * L;
console.log('| weights | median (ms) | min (ms) | GFLOP/s at the min | relative error vs float32 |\n| --- | --- | --- | --- | --- |');
for (const k of kinds) {
  const s = times[k]!.sort((a, b) => a - b);
  let err = 0;
  if (k !== 'f32') {
    const y = (await sessions[k].run({ x })).y!.data;
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
