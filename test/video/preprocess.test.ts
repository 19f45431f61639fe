// The release's video pixel path (pad / nopad) against fixtures/video/video_cases.safetensors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { readBytes, readF32 } from '../../src/weights/types.js';
import { RgbImage } from '../../src/preprocess/image.js';
import { videoFramePixels, videoGeometry, videoPixels, VideoPixels } from '../../src/video/preprocess.js';
import { roundHalfEven } from '../../src/preprocess/boxes.js';
import { ROOT } from '../helpers/fixtures.js';

const DIR = join(ROOT, 'fixtures', 'video');
const store = SafetensorsStore.open(join(DIR, 'video_cases.safetensors'));
const cases = JSON.parse(readFileSync(join(DIR, 'video_cases.json'), 'utf8')) as {
  pixel_geometry: Record<string, { input_hw: [number, number]; scaled_hw: [number, number]; crop_top: number; crop_left: number; box_crop_start_xy?: [number, number] }>;
};

function tensor(name: string) {
  const r = store.get(name);
  if (!r) throw new Error(`fixture tensor ${name} not found`);
  return r;
}
function f32(name: string): Float32Array {
  return readF32(tensor(name)); // F16 upcast
}
function f64(name: string): Float64Array {
  const r = tensor(name);
  assert.equal(r.dtype, 'F64');
  const b = new Uint8Array(readBytes(r));
  return new Float64Array(b.buffer, 0, b.length / 8);
}
function i64(name: string): number[] {
  const r = tensor(name);
  assert.equal(r.dtype, 'I64');
  const b = new Uint8Array(readBytes(r));
  return Array.from(new BigInt64Array(b.buffer, 0, b.length / 8), Number);
}

function frames(): RgbImage[] {
  const r = tensor('frames_rgb');
  assert.equal(r.dtype, 'U8');
  const [t, h, w, c] = r.shape as [number, number, number, number];
  assert.equal(c, 3);
  const bytes = readBytes(r);
  const n = h * w * 3;
  return Array.from({ length: t }, (_, i) => ({ width: w, height: h, data: bytes.slice(i * n, (i + 1) * n) }));
}

function maxAbs(a: Float32Array, aOff: number, b: Float32Array, bOff: number, n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.abs(a[aOff + i]! - b[bOff + i]!);
    if (!(d <= m)) m = d; // NaN propagates as a failure
  }
  return m;
}

/** Per frame and channel mean / mean of abs (float64) of a [F, 3, S, S] float32 tensor. */
function stats(x: Float32Array, nFrames: number, size: number): { mean: Float64Array; meanAbs: Float64Array } {
  const plane = size * size;
  const mean = new Float64Array(nFrames * 3);
  const meanAbs = new Float64Array(nFrames * 3);
  for (let fc = 0; fc < nFrames * 3; fc++) {
    let s = 0;
    let sa = 0;
    const o = fc * plane;
    for (let i = 0; i < plane; i++) {
      const v = x[o + i]!;
      s += v;
      sa += Math.abs(v);
    }
    mean[fc] = s / plane;
    meanAbs[fc] = sa / plane;
  }
  return { mean, meanAbs };
}

/** Nearest float16 value (half to even), to see how much of a difference is the fixture's fp16 storage. */
function toF16(x: number): number {
  if (x === 0) return x;
  const e = Math.max(Math.floor(Math.log2(Math.abs(x))), -14);
  const q = 2 ** (e - 10);
  return roundHalfEven(x / q) * q;
}
function maxAbsF16(a: Float32Array, aOff: number, b: Float32Array, bOff: number, n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) m = Math.max(m, Math.abs(toF16(a[aOff + i]!) - b[bOff + i]!));
  return m;
}

function maxDiff64(a: Float64Array, b: Float64Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const TOL = 3e-3;
const STAT_TOL = 1e-4;
const CLIP = 336;
const AUX = 768;

const input = frames();
const results = new Map<string, { out: VideoPixels; msPerFrameAux: number }>();
function run(pad: boolean) {
  const key = pad ? 'pad' : 'nopad';
  let r = results.get(key);
  if (!r) {
    const out = videoPixels(input, { pad });
    const t0 = performance.now();
    for (const f of input) videoFramePixels(f, { size: AUX, pad });
    const msPerFrameAux = (performance.now() - t0) / input.length;
    r = { out, msPerFrameAux };
    results.set(key, r);
  }
  return r;
}

test('frames_rgb: 8 frames 320x240 at the sampled indices', () => {
  assert.equal(input.length, 8);
  assert.deepEqual([input[0]!.width, input[0]!.height], [320, 240]);
  assert.deepEqual(i64('frame_indices'), [0, 5, 11, 16, 22, 27, 33, 39]);
});

test('geometry matches pixel_geometry of video_cases.json', () => {
  for (const pad of [true, false]) {
    for (const size of [CLIP, AUX]) {
      const g = videoGeometry(320, 240, { size, pad });
      const want = cases.pixel_geometry[`${pad ? 'pad' : 'nopad'}_${size}`]!;
      assert.deepEqual([g.paddedHeight, g.paddedWidth], want.input_hw);
      assert.deepEqual([g.scaledHeight, g.scaledWidth], want.scaled_hw);
      assert.equal(g.cropY, want.crop_top);
      assert.equal(g.cropX, want.crop_left);
      if (want.box_crop_start_xy) assert.deepEqual([g.boxCropX, g.boxCropY], want.box_crop_start_xy);
      assert.equal(g.padY, pad ? 40 : 0);
      assert.equal(g.padX, 0);
      assert.equal(g.size, size);
    }
  }
  // round half to even on the pixel crop vs floor on the box crop: 3 mod 4 (new - size = 7 here)
  const g = videoGeometry(263, 256, { size: 256, pad: false });
  assert.equal(g.scaledWidth, 263);
  assert.equal(g.cropX, 4); // round(3.5) = 4
  assert.equal(g.boxCropX, 3); // 7 // 2
  const g2 = videoGeometry(261, 256, { size: 256, pad: false });
  assert.equal(g2.cropX, 2); // round(2.5) = 2
  // portrait pads left/right
  const p = videoGeometry(240, 320, { size: 336, pad: true });
  assert.deepEqual([p.padX, p.padY, p.paddedWidth, p.paddedHeight], [40, 0, 320, 320]);
});

test('pad: every frame at 336, stored 768 frames, aux statistics of all frames', (t) => {
  const { out, msPerFrameAux } = run(true);
  const n = input.length;
  const pv = f32('pad.pixel_values');
  assert.equal(pv.length, n * 3 * CLIP * CLIP);
  assert.equal(out.pixelValues.length, pv.length);
  let worst336 = 0;
  for (let i = 0; i < n; i++) {
    const d = maxAbs(out.pixelValues, i * 3 * CLIP * CLIP, pv, i * 3 * CLIP * CLIP, 3 * CLIP * CLIP);
    assert.ok(d <= TOL, `pad frame ${i} at 336: max abs ${d}`);
    worst336 = Math.max(worst336, d);
  }
  const positions = i64('pad.aux_positions');
  assert.deepEqual(positions, [0, 4, 7]);
  const aux = f32('pad.pixel_values_aux');
  const A = 3 * AUX * AUX;
  let worst768 = 0;
  let worst768f16 = 0;
  for (const [k, pos] of positions.entries()) {
    const d = maxAbs(out.pixelValuesAux, pos * A, aux, k * A, A);
    assert.ok(d <= TOL, `pad frame ${pos} at 768: max abs ${d}`);
    worst768 = Math.max(worst768, d);
    worst768f16 = Math.max(worst768f16, maxAbsF16(out.pixelValuesAux, pos * A, aux, k * A, A));
  }
  const s = stats(out.pixelValuesAux, n, AUX);
  const dm = maxDiff64(s.mean, f64('pad.aux_mean'));
  const da = maxDiff64(s.meanAbs, f64('pad.aux_mean_abs'));
  assert.ok(dm <= STAT_TOL, `pad aux mean: ${dm}`);
  assert.ok(da <= STAT_TOL, `pad aux mean_abs: ${da}`);
  // the padded band (rows 0..39 and 280..319 of 320, i.e. the first/last 96 of 768) is exactly 0
  for (let c = 0; c < 3; c++) {
    const o = c * AUX * AUX;
    for (let i = 0; i < 90 * AUX; i++) assert.equal(out.pixelValuesAux[o + i], 0);
  }
  assert.equal(out.geometry.size, CLIP);
  assert.equal(out.geometryAux.size, AUX);
  t.diagnostic(`pad: 336 max abs ${worst336.toExponential(3)}, 768 max abs ${worst768.toExponential(3)} ` +
    `(${worst768f16.toExponential(3)} after rounding ours to fp16), ` +
    `aux mean ${dm.toExponential(3)}, aux mean_abs ${da.toExponential(3)}; ${msPerFrameAux.toFixed(2)} ms per frame at 768`);
});

test('nopad: stored frame at 336 and 768, statistics of all frames at both sizes', (t) => {
  const { out, msPerFrameAux } = run(false);
  const n = input.length;
  const positions = i64('nopad.positions');
  assert.deepEqual(positions, [2]);
  const pos = positions[0]!;
  const C = 3 * CLIP * CLIP;
  const A = 3 * AUX * AUX;
  const d336 = maxAbs(out.pixelValues, pos * C, f32('nopad.pixel_values'), 0, C);
  const d768 = maxAbs(out.pixelValuesAux, pos * A, f32('nopad.pixel_values_aux'), 0, A);
  const d768f16 = maxAbsF16(out.pixelValuesAux, pos * A, f32('nopad.pixel_values_aux'), 0, A);
  assert.ok(d336 <= TOL, `nopad 336: ${d336}`);
  assert.ok(d768 <= TOL, `nopad 768: ${d768}`);
  const sc = stats(out.pixelValues, n, CLIP);
  const sa = stats(out.pixelValuesAux, n, AUX);
  const diffs = {
    pvMean: maxDiff64(sc.mean, f64('nopad.pixel_values_mean')),
    pvMeanAbs: maxDiff64(sc.meanAbs, f64('nopad.pixel_values_mean_abs')),
    auxMean: maxDiff64(sa.mean, f64('nopad.aux_mean')),
    auxMeanAbs: maxDiff64(sa.meanAbs, f64('nopad.aux_mean_abs')),
  };
  for (const [k, v] of Object.entries(diffs)) assert.ok(v <= STAT_TOL, `nopad ${k}: ${v}`);
  assert.deepEqual([out.geometryAux.cropX, out.geometryAux.cropY], [128, 0]);
  assert.deepEqual([out.geometry.cropX, out.geometry.cropY], [56, 0]);
  t.diagnostic(`nopad: 336 max abs ${d336.toExponential(3)}, 768 max abs ${d768.toExponential(3)} (${d768f16.toExponential(3)} after fp16), ` +
    Object.entries(diffs).map(([k, v]) => `${k} ${v.toExponential(3)}`).join(', ') +
    `; ${msPerFrameAux.toFixed(2)} ms per frame at 768`);
});

test('videoFramePixels equals the stacked videoPixels frame; frames of different sizes are refused', () => {
  const { out } = run(true);
  const one = videoFramePixels(input[3]!, { size: CLIP, pad: true });
  assert.deepEqual(one, out.pixelValues.subarray(3 * 3 * CLIP * CLIP, 4 * 3 * CLIP * CLIP));
  const small: RgbImage = { width: 2, height: 2, data: new Uint8Array(12) };
  assert.throws(() => videoPixels([input[0]!, small], { pad: true }), /frame 1 is 2x2/);
});
