// llama.cpp's block formats (src/quant/ggml-blocks.ts): sizes, a hand-checked block of each
// layout, exact recovery of values already on a format's grid, the error bounds of the simple
// formats, and the error order of all of them on Gaussian weights.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GGML_BLOCK, GGML_BLOCK_TYPES, GgmlBlockType, dequantizeGgml, ggmlBitsPerWeight, quantizeGgml } from '../../src/quant/ggml-blocks.js';
import { fromHalf, toHalf } from '../../src/quant/half.js';
import { gaussian } from '../helpers/gaussian.js';

function relRms(x: Float32Array, y: Float32Array): number {
  let e = 0;
  let w = 0;
  for (let i = 0; i < x.length; i++) {
    e += (x[i]! - y[i]!) ** 2;
    w += x[i]! ** 2;
  }
  return Math.sqrt(e / w);
}

test('block sizes and bits per weight are ggml\'s', () => {
  const bpw = Object.fromEntries(GGML_BLOCK_TYPES.map((t) => [t, ggmlBitsPerWeight(t)]));
  assert.deepEqual(bpw, { Q4_0: 4.5, Q5_0: 5.5, Q5_1: 6, Q8_0: 8.5, Q4_K: 4.5, Q5_K: 5.5, Q6_K: 6.5625 });
  for (const t of GGML_BLOCK_TYPES) {
    const { values, bytes } = GGML_BLOCK[t];
    assert.equal(quantizeGgml(t, gaussian(values * 3, 1)).length, 3 * bytes, t);
    assert.throws(() => quantizeGgml(t, new Float32Array(values + 1)), /whole number/);
  }
});

test('Q4_0 by hand: d = the largest-magnitude value / -8, nibbles j and j+16 share byte j', () => {
  const x = new Float32Array(32);
  x[0] = -4; // largest magnitude: d = -4 / -8 = 0.5, q = trunc(x / d + 8.5): -8 + 8.5 -> 0
  x[16] = 1.5; // 3 + 8.5 -> 11
  x[1] = 3.6; // 7.2 + 8.5 -> 15: reads back 0.5 * 7 = 3.5
  const b = quantizeGgml('Q4_0', x);
  assert.equal(fromHalf(b[0]! | (b[1]! << 8)), 0.5);
  assert.equal(b[2], 0 | (11 << 4));
  assert.equal(b[3], 15 | (8 << 4)); // x[17] = 0 -> 8
  const y = dequantizeGgml('Q4_0', b);
  assert.deepEqual([y[0], y[16], y[1], y[17]], [-4, 1.5, 3.5, 0]);
});

test('Q8_0 and Q4_0, Q5_0, Q5_1: every value within one step of its block scale', () => {
  const x = gaussian(32 * 64, 7, 0.02);
  for (const t of ['Q4_0', 'Q5_0', 'Q5_1', 'Q8_0'] as GgmlBlockType[]) {
    const b = quantizeGgml(t, x);
    const y = dequantizeGgml(t, b);
    const dv = new DataView(b.buffer);
    for (let k = 0; k < 64; k++) {
      const d = Math.abs(fromHalf(dv.getUint16(k * GGML_BLOCK[t].bytes, true)));
      // round-to-nearest formats stay within half a step; the truncating ones' clipped extreme
      // (q = 2^bits) within one; plus the fp16 rounding of d times the largest level
      const step = t === 'Q8_0' || t === 'Q5_1' ? 0.5 : 1;
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[k * 32 + j]!));
      for (let j = 0; j < 32; j++) {
        const i = k * 32 + j;
        assert.ok(Math.abs(x[i]! - y[i]!) <= d * step + amax * 2 ** -10, `${t} block ${k} value ${j}: ${x[i]} -> ${y[i]}`);
      }
    }
  }
});

test('Q4_K by hand: values on a 15-level grid with min 0 come back on that grid', () => {
  // sub-block j holds (l mod 16) * s_j: the fit finds scale s_j and min 0 exactly, the 6-bit
  // scales are 63 s_j / max s = c_j (whole numbers here) and the levels are the l themselves
  const c = [63, 21, 63, 9, 63, 42, 30, 63];
  const s = c.map((v) => (0.1 * v) / 63);
  const x = new Float32Array(256);
  for (let j = 0; j < 8; j++) for (let l = 0; l < 32; l++) x[32 * j + l] = Math.fround((l % 16) * s[j]!);
  const b = quantizeGgml('Q4_K', x);
  const dv = new DataView(b.buffer);
  const d = fromHalf(dv.getUint16(0, true));
  assert.equal(d, fromHalf(toHalf(0.1 / 63)));
  assert.equal(fromHalf(dv.getUint16(2, true)), 0); // no sub-block needed a min
  // sub-blocks 0-3: scale bytes 4-7 (low 6 bits); 4-7: low nibbles of bytes 12-15, top 2 bits
  // in bits 6-7 of bytes 4-7
  for (let j = 0; j < 8; j++) {
    const sc = j < 4 ? b[4 + j]! & 63 : (b[8 + j]! & 15) | ((b[j]! >> 6) << 4);
    assert.equal(sc, c[j], `sub-block ${j}`);
  }
  // values 0..31 of sub-block 0 are the low nibbles of bytes 16..47
  for (let l = 0; l < 32; l++) assert.equal(b[16 + l]! & 15, l % 16);
  const y = dequantizeGgml('Q4_K', b);
  for (let i = 0; i < 256; i++) {
    const j = i >> 5;
    assert.ok(Math.abs(y[i]! - d * c[j]! * ((i % 32) % 16)) < 1e-7, `value ${i}`);
  }
  assert.ok(relRms(x, y) < 2e-3);
});

test('Q6_K by hand: 16 sub-blocks of 16, int8 scales, 6-bit levels split into ql and qh', () => {
  const x = new Float32Array(256);
  for (let v = 0; v < 256; v++) x[v] = ((v % 64) - 32) / 32;
  const b = quantizeGgml('Q6_K', x);
  const y = dequantizeGgml('Q6_K', b);
  // each sub-block's scale is an int8 fraction of the largest: about 1% off at worst
  assert.ok(relRms(x, y) < 1e-2, `relative RMS ${relRms(x, y)}`);
  // the 6-bit level of value v: low 4 bits in ql, top 2 in qh (layout in the module's header)
  const level = (v: number): number => {
    const h = v >> 7;
    const l = v & 127;
    const quarter = l >> 5;
    const i = l & 31;
    const ql = b[64 * h + i + (quarter & 1 ? 32 : 0)]!;
    const lo = quarter < 2 ? ql & 15 : ql >> 4;
    const hi = (b[128 + 32 * h + i]! >> (2 * quarter)) & 3;
    return lo | (hi << 4);
  };
  const dv = new DataView(b.buffer);
  const d = fromHalf(dv.getUint16(208, true));
  for (let v = 0; v < 256; v++) {
    const sc = dv.getInt8(192 + (v >> 4));
    assert.ok(Math.abs(y[v]! - d * sc * (level(v) - 32)) < 1e-7, `value ${v}`);
  }
});

test('Q5_K keeps bit 4 of each level in qh: a grid of 31 levels comes back on it', () => {
  const x = new Float32Array(256);
  for (let v = 0; v < 256; v++) x[v] = (v % 32) * 0.01;
  const y = dequantizeGgml('Q5_K', quantizeGgml('Q5_K', x));
  assert.ok(relRms(x, y) < 2e-3, `relative RMS ${relRms(x, y)}`);
});

test('on Gaussian weights the formats rank as their bits say, and Q4_K beats Q4_0 at the same size', () => {
  const x = gaussian(256 * 256, 11, 0.02);
  const e = Object.fromEntries(GGML_BLOCK_TYPES.map((t) => [t, relRms(x, dequantizeGgml(t, quantizeGgml(t, x)))]));
  assert.ok(e.Q8_0! < e.Q6_K! && e.Q6_K! < e.Q5_K! && e.Q5_K! < e.Q4_K!, JSON.stringify(e));
  assert.ok(e.Q5_1! < e.Q4_0! && e.Q5_0! < e.Q4_0!, JSON.stringify(e));
  assert.ok(e.Q4_K! < e.Q4_0!, JSON.stringify(e));
  // 4 bits over a Gaussian block: about a tenth of the signal
  assert.ok(e.Q4_0! > 0.05 && e.Q4_0! < 0.15, JSON.stringify(e));
  assert.ok(e.Q8_0! < 0.01, JSON.stringify(e));
});

test('a block of zeros stays zeros in every format', () => {
  for (const t of GGML_BLOCK_TYPES) {
    const y = dequantizeGgml(t, quantizeGgml(t, new Float32Array(GGML_BLOCK[t].values)));
    assert.ok(y.every((v) => v === 0), t);
  }
});

test('GgmlPool: the same bytes as one thread, for every type, with a run of blocks per thread', async () => {
  const { GgmlPool } = await import('../../src/quant/ggml-parallel.js');
  const pool = new GgmlPool(3);
  try {
    const x = gaussian(256 * 200 + 0, 21, 0.02);
    for (const t of GGML_BLOCK_TYPES) {
      const n = Math.floor(x.length / GGML_BLOCK[t].values) * GGML_BLOCK[t].values;
      assert.deepEqual(pool.quantize(t, x.subarray(0, n)), quantizeGgml(t, x.subarray(0, n)), t);
    }
    assert.throws(() => pool.quantize('Q4_K', new Float32Array(300)), /whole number/);
  } finally {
    pool.close();
  }
});
