// expand2square, the CLIP processor geometry, and pixel_values_aux parity with fixture case B.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  CLIP_MEAN,
  CLIP_STD,
  centerCropOffsets,
  clipPreprocess,
  expandToSquare,
  meanFill,
  shortestEdgeSize,
} from '../../src/preprocess/clip-image.js';
import { decodeImage } from '../../src/preprocess/decode.js';
import { roundHalfEven } from '../../src/preprocess/boxes.js';
import { RgbImage } from '../../src/preprocess/image.js';
import { TINY, absErr, fixture } from '../helpers/fixtures.js';

function solid(w: number, h: number, rgb: readonly number[]): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) data.set(rgb, 3 * i);
  return { width: w, height: h, data };
}
function px(img: RgbImage, x: number, y: number): number[] {
  const p = (y * img.width + x) * 3;
  return [...img.data.subarray(p, p + 3)];
}

/** Round a float32 to the nearest float16 value (half to even), for comparing with f16 fixtures. */
function toF16(x: number): number {
  if (x === 0) return x;
  const e = Math.max(Math.floor(Math.log2(Math.abs(x))), -14);
  const q = 2 ** (e - 10);
  return roundHalfEven(x / q) * q;
}

test('pad colour is int(CLIP mean * 255) = (122, 116, 104)', () => {
  assert.deepEqual(meanFill(), [122, 116, 104]);
  assert.deepEqual(meanFill(CLIP_MEAN), [122, 116, 104]);
});

test('expand2square: landscape pads top/bottom, image centred with floor offset', () => {
  const img = solid(6, 3, [1, 2, 3]);
  const { image, offsetX, offsetY } = expandToSquare(img, [9, 8, 7]);
  assert.equal(image.width, 6);
  assert.equal(image.height, 6);
  assert.equal(offsetX, 0);
  assert.equal(offsetY, 1); // (6 - 3) // 2
  for (let y = 0; y < 6; y++) assert.deepEqual(px(image, 2, y), y >= 1 && y < 4 ? [1, 2, 3] : [9, 8, 7]);
});

test('expand2square: portrait pads left/right', () => {
  const img = solid(2, 5, [1, 2, 3]);
  img.data.set([50, 60, 70], 0); // top-left pixel marks orientation
  const { image, offsetX, offsetY } = expandToSquare(img, [9, 8, 7]);
  assert.equal(image.width, 5);
  assert.equal(offsetX, 1); // (5 - 2) // 2
  assert.equal(offsetY, 0);
  assert.deepEqual(px(image, 0, 0), [9, 8, 7]);
  assert.deepEqual(px(image, 1, 0), [50, 60, 70]);
  assert.deepEqual(px(image, 2, 4), [1, 2, 3]);
  assert.deepEqual(px(image, 3, 4), [9, 8, 7]);
});

test('expand2square: square images are returned unchanged', () => {
  const img = solid(4, 4, [1, 2, 3]);
  const r = expandToSquare(img, [0, 0, 0]);
  assert.equal(r.image, img);
  assert.equal(r.offsetX + r.offsetY, 0);
});

test('shortest-edge size and centre-crop offsets follow HF', () => {
  assert.deepEqual(shortestEdgeSize(640, 514, 768), { width: 956, height: 768 }); // int(768*640/514)
  assert.deepEqual(shortestEdgeSize(514, 640, 768), { width: 768, height: 956 });
  assert.deepEqual(shortestEdgeSize(640, 640, 768), { width: 768, height: 768 });
  assert.deepEqual(shortestEdgeSize(10, 7, 16), { width: 22, height: 16 });
  assert.deepEqual(centerCropOffsets(956, 768, 768), { x: 94, y: 0 });
  assert.deepEqual(centerCropOffsets(768, 957, 768), { x: 0, y: 94 }); // floor(189 / 2)
});

test('pixel_values_aux matches B.pixel_values_aux (fp16 fixture)', async () => {
  const img = await decodeImage(join(TINY, 'example.jpg'));
  const { pixelValues, geometry } = clipPreprocess(img);
  assert.deepEqual(geometry, {
    width: 640, height: 514, padX: 0, padY: 63, paddedWidth: 640, paddedHeight: 640, size: 768,
    resizedWidth: 768, resizedHeight: 768, cropX: 0, cropY: 0,
  });
  const ref = fixture('B.pixel_values_aux');
  assert.deepEqual(ref.dims, [3, 768, 768]);
  const err = absErr(pixelValues, ref.data);
  console.log(`pixel_values_aux vs B: max abs ${err.max.toExponential(3)}, mean abs ${err.mean.toExponential(3)}`);
  assert.ok(err.max < 0.03 && err.mean < 0.003, `max ${err.max} mean ${err.mean}`);
  // Stronger: rounded to fp16 the tensor is identical, i.e. every resized byte equals PIL's
  // (one grey level moves a value by 1/255/std ~ 0.015, far above the fp16 rounding).
  let mismatches = 0;
  for (let i = 0; i < pixelValues.length; i++) if (toF16(pixelValues[i]!) !== ref.data[i]) mismatches++;
  assert.equal(mismatches, 0);
});

test('small images are upscaled; any S; no padding keeps the crop geometry', () => {
  const img = solid(10, 7, [122, 116, 104]);
  const { pixelValues, geometry } = clipPreprocess(img, { size: 16, padToSquare: false });
  assert.equal(pixelValues.length, 3 * 16 * 16);
  assert.equal(geometry.resizedWidth, 22);
  assert.equal(geometry.cropX, 3);
  assert.equal(geometry.padX + geometry.padY, 0);
  // A constant image stays constant: value = (v/255 - mean) / std in float32.
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const v = [122, 116, 104][c]!;
    const want = f(f(f(v / 255) - f(CLIP_MEAN[c]!)) / f(CLIP_STD[c]!));
    assert.ok(pixelValues.subarray(c * 256, (c + 1) * 256).every((x) => x === want));
  }
  const sq = clipPreprocess(solid(3, 5, [0, 0, 0]), { size: 7 });
  assert.equal(sq.pixelValues.length, 3 * 49);
  assert.deepEqual([sq.geometry.padX, sq.geometry.padY, sq.geometry.paddedWidth], [1, 0, 5]);
});
