// The report's weight formats (src/quant/formats.ts): llama.cpp's per-tensor choices for Q4_0,
// Q8_0 and Q4_K_M, our MatMulNBits formats' sizes and fp16 scales, and roles from tensor keys.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allFormats, formatsByName, llamaCppType, matrixRole, nbitsFormat, parseNBitsName, useMoreBits } from '../../src/quant/formats.js';
import { quantizeNBits } from '../../src/weights/nbits.js';
import { fromHalf, toHalf } from '../../src/quant/half.js';
import { gaussian } from '../helpers/gaussian.js';

test('use_more_bits on 32 layers: the first and last 4, and every third from layer 6', () => {
  const picked = Array.from({ length: 32 }, (_, i) => i).filter((i) => useMoreBits(i, 32));
  assert.deepEqual(picked, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
});

test('Q4_K_M: head Q6_K, fused qkv Q5_K, v and down Q6_K where use_more_bits says, else Q4_K', () => {
  const r = (kind: Parameters<typeof llamaCppType>[1]['kind'], layer?: number) => ({ kind, layer, layers: 32 });
  assert.equal(llamaCppType('Q4_K_M', r('head'), 4096), 'Q6_K');
  assert.equal(llamaCppType('Q4_K_M', r('qkv', 5), 3072), 'Q5_K');
  assert.equal(llamaCppType('Q4_K_M', r('v', 0), 4096), 'Q6_K');
  assert.equal(llamaCppType('Q4_K_M', r('v', 4), 4096), 'Q4_K');
  assert.equal(llamaCppType('Q4_K_M', r('down', 6), 11008), 'Q6_K');
  assert.equal(llamaCppType('Q4_K_M', r('down', 7), 11008), 'Q4_K');
  assert.equal(llamaCppType('Q4_K_M', r('q', 0), 4096), 'Q4_K');
  assert.equal(llamaCppType('Q4_K_M', r('gate_up', 0), 3072), 'Q4_K');
  // rows that are not whole 256-value super-blocks fall back
  assert.equal(llamaCppType('Q4_K_M', r('q', 4), 384), 'Q5_0');
  assert.equal(llamaCppType('Q4_K_M', r('qkv', 4), 384), 'Q5_1');
  assert.equal(llamaCppType('Q4_K_M', r('v', 0), 384), 'Q8_0');
  assert.equal(llamaCppType('Q4_K_M', r('head'), 384), 'Q8_0');
  // and rows no block divides are kept in F16
  assert.equal(llamaCppType('Q4_K_M', r('q', 4), 16), 'F16');
  assert.equal(llamaCppType('Q4_0', r('q', 4), 48), 'F16');
  // Q4_0 keeps its head in Q6_K as llama.cpp's quantizer does; Q8_0 keeps everything Q8_0
  assert.equal(llamaCppType('Q4_0', r('head'), 4096), 'Q6_K');
  assert.equal(llamaCppType('Q4_0', r('down', 0), 11008), 'Q4_0');
  assert.equal(llamaCppType('Q8_0', r('head'), 4096), 'Q8_0');
});

test('matrix roles from HF keys', () => {
  assert.deepEqual(matrixRole('model.layers.3.self_attn.qkv_proj.weight', 32), { kind: 'qkv', layer: 3, layers: 32 });
  assert.deepEqual(matrixRole('model.layers.0.mlp.down_proj.weight', 4), { kind: 'down', layer: 0, layers: 4 });
  assert.deepEqual(matrixRole('lm_head.weight', 4), { kind: 'head', layers: 4 });
  assert.throws(() => matrixRole('model.norm.weight', 4), /not a decoder Linear/);
});

test('our formats: bytes as MatMulNBits stores them; fp16 scales are fp16 values and keep the half-step bound', () => {
  assert.equal(nbitsFormat(4, 32, false).bytes(2, 64, { kind: 'q', layers: 1 }), 2 * (2 * 16 + 2 * 4 + 1));
  assert.equal(nbitsFormat(4, 64, true, 'f16').bytes(2, 128, { kind: 'q', layers: 1 }), 2 * (2 * 32 + 2 * 2));
  assert.equal(nbitsFormat(8, 128, false).bytes(1, 256, { kind: 'q', layers: 1 }), 2 * 128 + 2 * 4 + 2);
  const w = gaussian(16 * 256, 3, 0.02);
  for (const symmetric of [false, true]) {
    const m = quantizeNBits(w, 16, 256, { bits: 4, blockSize: 64, symmetric, scaleDtype: 'f16' });
    for (const s of m.scales) assert.equal(fromHalf(toHalf(s)), s);
    const back = nbitsFormat(4, 64, symmetric, 'f16').roundTrip(w, 16, 256, { kind: 'q', layers: 1 });
    for (let i = 0; i < w.length; i++) {
      const scale = m.scales[Math.floor(i / 64)]!;
      assert.ok(Math.abs(w[i]! - back[i]!) <= scale / 2 + 1e-9, `symmetric ${symmetric} weight ${i}`);
    }
  }
});

test('-h8: the output head at 8 bits, the rest as named; names parse back to quantizer options', () => {
  const f = nbitsFormat(4, 128, false, 'f32', 8);
  assert.equal(f.name, 'q4-b128-zp-h8');
  const head = { kind: 'head' as const, layers: 2 };
  const q = { kind: 'q' as const, layer: 0, layers: 2 };
  assert.equal(f.typeOf(head, 256), 'MatMulNBits 8-bit');
  assert.equal(f.typeOf(q, 256), 'MatMulNBits 4-bit');
  assert.equal(f.bytes(3, 256, head), nbitsFormat(8, 128, false).bytes(3, 256, head));
  assert.equal(f.bytes(3, 256, q), nbitsFormat(4, 128, false).bytes(3, 256, q));
  const w = gaussian(4 * 256, 5, 0.02);
  assert.deepEqual(f.roundTrip(w, 4, 256, head), nbitsFormat(8, 128, false).roundTrip(w, 4, 256, head));
  assert.deepEqual(f.roundTrip(w, 4, 256, q), nbitsFormat(4, 128, false).roundTrip(w, 4, 256, q));
  assert.deepEqual(parseNBitsName('q4-b128-zp-h8'), { bits: 4, blockSize: 128, symmetric: false, headBits: 8 });
  assert.deepEqual(parseNBitsName('q4-b32-sym'), { bits: 4, blockSize: 32, symmetric: true, headBits: 4 });
  assert.equal(parseNBitsName('q4-b32-sym-h4'), undefined);
  assert.ok(allFormats().some((x) => x.name === 'q4-b64-sym-h8'));
});

test('format names: every one listed once, looked up case-blind, unknown ones named in the error', () => {
  const names = allFormats().map((f) => f.name);
  assert.equal(new Set(names).size, names.length);
  assert.ok(names.includes('q4-b32-zp') && names.includes('q8-b128-sym-f16') && names.includes('Q4_K_M'));
  assert.deepEqual(formatsByName(['q4_k_m', 'Q4-B64-ZP']).map((f) => f.name), ['Q4_K_M', 'q4-b64-zp']);
  assert.throws(() => formatsByName(['q3']), /unknown format q3; known: q4-b32-zp/);
});
