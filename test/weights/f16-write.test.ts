// f32 -> f16 and bf16 (export --dtype f16|bf16): round to nearest even, checked against every half value.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/core/tensor.js';

test('f32ToF16 gives back every half exactly and rounds midpoints to even', () => {
  const all = new Uint8Array(2 * 65536);
  for (let h = 0; h < 65536; h++) {
    all[2 * h] = h & 0xff;
    all[2 * h + 1] = h >> 8;
  }
  const f = f16ToF32(all);
  const back = f32ToF16(f);
  for (let h = 0; h < 65536; h++) {
    const e = (h >> 10) & 0x1f;
    if (e === 31 && (h & 0x3ff)) continue; // NaN payloads
    assert.equal(back[2 * h]! | (back[2 * h + 1]! << 8), h, `half 0x${h.toString(16)}`);
  }
  // 1 + 2^-11 is the midpoint of 1 and the next half: ties to even (1); 1 + 3 * 2^-11 ties up
  const mid = f32ToF16(new Float32Array([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, 1e-8, -0, 2 ** -24 * 1.5]));
  const hv = (i: number) => mid[2 * i]! | (mid[2 * i + 1]! << 8);
  assert.equal(hv(0), 0x3c00);
  assert.equal(hv(1), 0x3c02);
  assert.equal(hv(2), 0x7c00, '65520 rounds to infinity');
  assert.equal(hv(3), 0x0000, 'below half the smallest subnormal: zero');
  assert.equal(hv(4), 0x8000);
  assert.equal(hv(5), 0x0002, '1.5 x the smallest subnormal ties to even (2)');
  // random values: within half an ulp
  for (let i = 0; i < 1000; i++) {
    const x = (Math.random() - 0.5) * 100;
    const y = f16ToF32(f32ToF16(new Float32Array([x])))[0]!;
    assert.ok(Math.abs(y - x) <= Math.abs(x) * 2 ** -11 + 1e-7, `${x} -> ${y}`);
  }
});

test('f32ToBf16 gives back every bfloat16 exactly and rounds midpoints to even', () => {
  const all = new Uint8Array(2 * 65536);
  for (let h = 0; h < 65536; h++) {
    all[2 * h] = h & 0xff;
    all[2 * h + 1] = h >> 8;
  }
  const back = f32ToBf16(bf16ToF32(all));
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7f80) === 0x7f80 && (h & 0x7f)) continue; // NaN payloads
    assert.equal(back[2 * h]! | (back[2 * h + 1]! << 8), h, `bf16 0x${h.toString(16)}`);
  }
  const v = (x: number) => {
    const b = f32ToBf16(new Float32Array([x]));
    return b[0]! | (b[1]! << 8);
  };
  assert.equal(v(1 + 2 ** -8), 0x3f80, '1 + half an ulp ties to even (1)');
  assert.equal(v(1 + 3 * 2 ** -8), 0x3f82, '1 + 1.5 ulp ties up to even');
  assert.equal(v(1 + 2 ** -8 + 2 ** -20), 0x3f81, 'above the midpoint rounds up');
  assert.equal(v(3.4e38), 0x7f80, 'past the largest bfloat16: infinity');
  assert.equal(v(NaN) & 0x7fc0, 0x7fc0, 'NaN stays a quiet NaN');
});
