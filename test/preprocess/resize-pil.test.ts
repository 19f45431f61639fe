// Pillow-compatible bicubic resize on small cases worked out by hand from Pillow's algorithm
// (the 768-px parity on the real image is in clip-image.test.ts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bicubicKernel, bicubicTaps, resizeBicubicPil, resizeBicubicU8 } from '../../src/preprocess/resize-pil.js';
import { RgbImage } from '../../src/preprocess/image.js';

/** A grey-level row/column as an RGB image with three equal channels. */
function greyImage(w: number, h: number, values: number[]): RgbImage {
  const data = new Uint8Array(w * h * 3);
  values.forEach((v, i) => data.fill(v, 3 * i, 3 * i + 3));
  return { width: w, height: h, data };
}
function channel0(img: RgbImage): number[] {
  return Array.from({ length: img.width * img.height }, (_, i) => img.data[3 * i]!);
}

test('bicubic kernel is Keys a = -0.5', () => {
  assert.equal(bicubicKernel(0), 1);
  assert.ok(bicubicKernel(1) === 0 && bicubicKernel(2) === 0 && bicubicKernel(-3) === 0);
  assert.equal(bicubicKernel(0.5), 0.5625);
  assert.equal(bicubicKernel(-0.5), 0.5625);
  assert.equal(bicubicKernel(1.5), -0.0625);
  assert.equal(bicubicKernel(0.25), 0.8671875);
  assert.equal(bicubicKernel(1.25), -0.0703125);
});

test('identity size returns an equal copy', () => {
  const img: RgbImage = { width: 5, height: 3, data: Uint8Array.from({ length: 45 }, (_, i) => (i * 53) & 255) };
  const out = resizeBicubicPil(img, 5, 3);
  assert.notEqual(out.data, img.data);
  assert.deepEqual(out.data, img.data);
});

// 4 -> 2 (scale 2, support 4): output 0 has centre 1.0 and taps 0..3 with weights
// K(-0.25), K(0.25), K(0.75), K(1.25) = 0.8671875, 0.8671875, 0.2265625, -0.0703125 (sum 1.890625);
// for [0, 0, 255, 255]: 255 * (0.2265625 - 0.0703125) / 1.890625 = 21.07 -> 21, and 234 by symmetry.
test('2x down, hand-checked, both directions', () => {
  assert.deepEqual(channel0(resizeBicubicPil(greyImage(4, 1, [0, 0, 255, 255]), 2, 1)), [21, 234]);
  assert.deepEqual(channel0(resizeBicubicPil(greyImage(1, 4, [0, 0, 255, 255]), 1, 2)), [21, 234]);
});

// 2 -> 4 (scale 0.5, filter not stretched, support 2): output 1 has centre 0.75, taps 0..1 with
// weights K(-0.25), K(0.75) -> 255 * 0.2265625 / 1.09375 = 52.8 -> 53; output 0 has weights
// K(0.25), K(1.25) -> 255 * -0.0703125 / 0.796875 < 0 -> clipped to 0.
test('2x up, hand-checked, with clipping', () => {
  assert.deepEqual(channel0(resizeBicubicPil(greyImage(2, 1, [0, 255]), 4, 1)), [0, 53, 202, 255]);
  assert.deepEqual(channel0(resizeBicubicPil(greyImage(1, 2, [0, 255]), 1, 4)), [0, 53, 202, 255]);
});

test('both passes, channels independent', () => {
  // 2x2 image: R varies along x, G along y, B constant.
  const img: RgbImage = { width: 2, height: 2, data: Uint8Array.from([0, 0, 77, 255, 0, 77, 0, 255, 77, 255, 255, 77]) };
  const out = resizeBicubicPil(img, 4, 4);
  for (let y = 0; y < 4; y++) {
    for (let x = 0; x < 4; x++) {
      const p = (y * 4 + x) * 3;
      assert.equal(out.data[p], [0, 53, 202, 255][x]);
      assert.equal(out.data[p + 1], [0, 53, 202, 255][y]);
      assert.equal(out.data[p + 2], 77);
    }
  }
});

test('constant images stay constant at any size (weights are normalised)', () => {
  for (const [w, h, ow, oh] of [
    [37, 23, 768, 500],
    [1000, 3, 7, 1],
    [5, 5, 1, 1],
    [640, 640, 768, 768],
  ] as const) {
    const img: RgbImage = { width: w, height: h, data: new Uint8Array(w * h * 3).fill(200) };
    const out = resizeBicubicPil(img, ow, oh);
    assert.equal(out.width, ow);
    assert.equal(out.height, oh);
    assert.ok(out.data.every((v) => v === 200), `${w}x${h} -> ${ow}x${oh}`);
  }
});

test('taps: downscale support grows with the factor; fixed-point weights sum to ~2^22', () => {
  const t = bicubicTaps(1000, 100); // scale 10: support 20, ksize 41
  assert.equal(t.ksize, 41);
  for (let i = 0; i < 100; i++) {
    let s = 0;
    for (let j = 0; j < t.count[i]!; j++) s += t.weights[i * t.ksize + j]!;
    assert.ok(Math.abs(s - (1 << 22)) <= t.count[i]!, `output ${i}: sum ${s}`);
    assert.ok(t.start[i]! >= 0 && t.start[i]! + t.count[i]! <= 1000);
  }
  const up = bicubicTaps(10, 40);
  assert.equal(up.ksize, 5);
});

test('resizeBicubicU8 works for other channel counts', () => {
  const out = resizeBicubicU8(Uint8Array.from([0, 0, 255, 255]), 4, 1, 1, 2, 1);
  assert.deepEqual([...out], [21, 234]);
});
