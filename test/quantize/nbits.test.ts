// Block-wise 4/8-bit quantization (src/weights/nbits.ts): every dequantized weight is within half
// a step (its block's scale) of the original, on random matrices and awkward blocks; the bytes
// follow onnxruntime's MatMulNBits layout, checked by hand on one block and by running the op
// against a float MatMul on the dequantized weights.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { linear, matMulNBits } from '../../src/graph/blocks.js';
import { Session } from '../../src/runtime/session.js';
import { NBitsMatrix, NBitsOptions, dequantizeNBits, nBlocks, quantizeNBits } from '../../src/weights/nbits.js';
import { relErr } from '../helpers/fixtures.js';

function random(seed: number): (n: number, scale?: number) => Float32Array {
  let s = seed >>> 0;
  return (n, scale = 1) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      out[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
    }
    return out;
  };
}

/** Largest |w - dequant(w)| / scale over all weights, per block; and the worst block. */
function worstStepFraction(w: Float32Array, m: NBitsMatrix): number {
  const dq = dequantizeNBits(m);
  const nb = nBlocks(m.K, m.blockSize);
  let worst = 0;
  for (let n = 0; n < m.N; n++) {
    for (let k = 0; k < m.K; k++) {
      const scale = m.scales[n * nb + Math.floor(k / m.blockSize)]!;
      // Less the float32 rounding of the dequantized value (half an ulp).
      const err = Math.abs(w[n * m.K + k]! - dq[n * m.K + k]!) - Math.abs(dq[n * m.K + k]!) * 2 ** -24;
      if (scale === 0) assert.ok(err <= 0, `row ${n} col ${k}: zero scale but error ${err}`);
      else worst = Math.max(worst, err / scale);
    }
  }
  return worst;
}

const CONFIGS: NBitsOptions[] = [
  { bits: 4, blockSize: 32 },
  { bits: 4, blockSize: 32, symmetric: true },
  { bits: 4, blockSize: 16 },
  { bits: 4, blockSize: 64 },
  { bits: 8, blockSize: 32 },
  { bits: 8, blockSize: 32, symmetric: true },
];

test('round trip: every weight within half a step of its block (random matrices, K not a multiple of the block)', () => {
  const r = random(7);
  for (const o of CONFIGS) {
    for (const [N, K] of [[5, 96], [3, 40], [4, 16], [2, 70]] as const) {
      const w = r(N * K, 0.3);
      const m = quantizeNBits(w, N, K, o);
      const f = worstStepFraction(w, m);
      assert.ok(f <= 0.5, `${JSON.stringify(o)} [${N},${K}]: worst error ${f} steps`);
      // The step is as small as the scheme allows: 4-bit min/max spreads the range over 15 steps.
      if (o.bits === 4 && !o.symmetric) {
        const nb = nBlocks(K, o.blockSize);
        for (let n = 0; n < N; n++) {
          let lo = 0;
          let hi = 0;
          for (let k = 0; k < Math.min(o.blockSize, K); k++) {
            lo = Math.min(lo, w[n * K + k]!);
            hi = Math.max(hi, w[n * K + k]!);
          }
          assert.ok(Math.abs(m.scales[n * nb]! - (hi - lo) / 15) <= 1e-6 * (hi - lo), 'scale = (max - min) / 15');
        }
      }
    }
  }
});

test('round trip on awkward blocks: zeros, a constant, all negative, all positive, one outlier', () => {
  const K = 32;
  const rows = [
    new Float32Array(K),
    new Float32Array(K).fill(0.25),
    Float32Array.from({ length: K }, (_, i) => -0.01 - i * 0.003),
    Float32Array.from({ length: K }, (_, i) => 1e-3 + i * 1e-4),
    Float32Array.from({ length: K }, (_, i) => (i === 17 ? 40 : Math.sin(i) * 0.01)),
    Float32Array.from({ length: K }, (_, i) => (i % 2 ? 1e-30 : -1e-30)),
  ];
  const w = new Float32Array(rows.length * K);
  rows.forEach((row, i) => w.set(row, i * K));
  for (const o of CONFIGS.filter((c) => c.blockSize === 32)) {
    const m = quantizeNBits(w, rows.length, K, o);
    assert.ok(worstStepFraction(w, m) <= 0.5, JSON.stringify(o));
    const dq = dequantizeNBits(m);
    assert.deepEqual(Array.from(dq.subarray(0, K)), new Array(K).fill(0), 'a zero block stays exactly zero');
    assert.ok(Math.abs(dq[K]! - 0.25) <= 0.25 / (o.bits === 4 ? 14 : 254) + 1e-7, 'a constant block');
  }
});

test('byte layout: low nibble first, zero points packed two per byte, padding at the zero point', () => {
  // One row, K = 40 -> two blocks of 32 (the second padded); values chosen to land on exact levels.
  const K = 40;
  const w = new Float32Array(K);
  for (let k = 0; k < 32; k++) w[k] = (k % 16) - 5; // block 0: -5..10, step 1, zero point 5
  const b1 = [-14, 16, 0, 2, -2, 4, 10, -8]; // block 1: range -14..16 = 15 steps of 2, zero point 7
  w.set(b1, 32);
  const m = quantizeNBits(w, 1, K, { bits: 4, blockSize: 32 });
  assert.deepEqual(Array.from(m.scales), [1, 2]);
  assert.deepEqual(Array.from(m.zeroPoints!), [5 | (7 << 4)]);
  assert.equal(m.qweight.length, 2 * 16);
  // block 0: q = k % 16, so byte i holds (2i % 16) | ((2i+1) % 16) << 4
  for (let i = 0; i < 16; i++) assert.equal(m.qweight[i], ((2 * i) % 16) | (((2 * i + 1) % 16) << 4), `byte ${i}`);
  // block 1: q = w / 2 + 7 for the 8 real values, then the zero point 7 as padding
  const q1 = Array.from({ length: 32 }, (_, i) => (i < 8 ? b1[i]! / 2 + 7 : 7));
  for (let i = 0; i < 16; i++) assert.equal(m.qweight[16 + i], q1[2 * i]! | (q1[2 * i + 1]! << 4), `block 1 byte ${i}`);
  assert.deepEqual(Array.from(dequantizeNBits(m)), Array.from(w));

  // Symmetric: no zero points, scale max|w| / 7, q = round(w / scale) + 8.
  const s = quantizeNBits(Float32Array.from({ length: 32 }, (_, k) => (k - 16) / 16 * 7), 1, 32, { bits: 4, blockSize: 32, symmetric: true });
  assert.equal(s.zeroPoints, undefined);
  assert.equal(s.scales[0], 1);
  assert.equal(s.qweight[0], (-7 + 8) | ((Math.round(-15 / 16 * 7) + 8) << 4));
  // 8 bits: one byte per weight and per zero point.
  const e = quantizeNBits(Float32Array.from({ length: 40 }, (_, k) => k - 10), 2, 20, { bits: 8, blockSize: 16 });
  assert.equal(e.qweight.length, 2 * 2 * 16);
  assert.equal(e.zeroPoints!.length, 2 * 2);
});

test('bad options are refused', () => {
  const w = new Float32Array(64);
  assert.throws(() => quantizeNBits(w, 2, 32, { bits: 3 as 4, blockSize: 32 }), /bits must be 4 or 8/);
  assert.throws(() => quantizeNBits(w, 2, 32, { bits: 4, blockSize: 24 }), /power of two >= 16/);
  assert.throws(() => quantizeNBits(w, 2, 32, { bits: 4, blockSize: 8 }), /power of two >= 16/);
  assert.throws(() => quantizeNBits(w, 3, 32, { bits: 4, blockSize: 32 }), /\[3, 32\] needs 96/);
});

async function run(g: Graph, x: Float32Array, M: number, K: number): Promise<Float32Array> {
  const { bytes } = g.serialize();
  const s = await Session.create(g.name, bytes, { prepack: true });
  try {
    return (await s.run({ x: { dims: [M, K], data: x } })).y!.data;
  } finally {
    await s.release();
  }
}

const u8 = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

test('onnxruntime MatMulNBits reads the blobs as the float weights they stand for', async (t) => {
  const r = random(11);
  const M = 3;
  for (const o of CONFIGS) {
    // K = 80: 3 blocks of 32 (odd count: the zero points' last byte is half used), the last padded.
    for (const [N, K] of [[24, 80], [8, 32]] as const) {
      const w = r(N * K, 0.2);
      const x = r(M * K);
      const m = quantizeNBits(w, N, K, o);
      const nb = nBlocks(K, o.blockSize);
      const q = new Graph('q');
      const xq = q.input('x', 'F32', [M, K]);
      const zp = m.zeroPoints ? q.initializer('zp', 'U8', [m.zeroPoints.length], { kind: 'inline', bytes: m.zeroPoints }) : null;
      q.output(matMulNBits(q,
        xq,
        q.initializer('b', 'U8', [N, nb, (o.blockSize * o.bits) / 8], { kind: 'inline', bytes: m.qweight }),
        q.initializer('s', 'F32', [N * nb], { kind: 'inline', bytes: u8(m.scales) }),
        zp,
        { K, N, bits: o.bits, blockSize: o.blockSize, accuracyLevel: 0 }), 'y');
      const f = new Graph('f');
      f.output(linear(f, f.input('x', 'F32', [M, K]), f.initializer('w', 'F32', [N, K], { kind: 'inline', bytes: u8(dequantizeNBits(m)) })), 'y');
      const ref = await run(f, x, M, K);
      const e = relErr(await run(q, x, M, K), ref);
      t.diagnostic(`${JSON.stringify(o)} [${N},${K}]: MatMulNBits vs float MatMul on the dequantized weights ${e.toExponential(2)}`);
      assert.ok(e < 1e-5, `${JSON.stringify(o)}: relative error ${e}`);
      if (m.zeroPoints) {
        // Control: the same blobs read with the implicit zero point instead give other numbers.
        const wrong = new Uint8Array(m.zeroPoints.length).fill(o.bits === 4 ? 0x88 : 0x80);
        const q2 = new Graph('q2');
        q2.output(matMulNBits(q2,
          q2.input('x', 'F32', [M, K]),
          q2.initializer('b', 'U8', [N, nb, (o.blockSize * o.bits) / 8], { kind: 'inline', bytes: m.qweight }),
          q2.initializer('s', 'F32', [N * nb], { kind: 'inline', bytes: u8(m.scales) }),
          q2.initializer('zp', 'U8', [wrong.length], { kind: 'inline', bytes: wrong }),
          { K, N, bits: o.bits, blockSize: o.blockSize, accuracyLevel: 0 }), 'y');
        assert.ok(relErr(await run(q2, x, M, K), ref) > 1e-2, 'zero points matter');
      }
    }
  }
});
