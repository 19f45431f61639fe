// OWLv2 image preprocessing as transformers' Owlv2ImageProcessor does it, on float images rather
// than PIL. Two generations exist and they differ:
//
// 'transformers5' (default; what the fixtures record, transformers 5.17, torchvision backend):
//   1. x / 255 in float32;
//   2. pad to a square (side s = max(w, h)) at the bottom and right with 0 (black; OWLv2's
//      official value, HF PR #41938);
//   3. anti-aliasing when shrinking: Gaussian blur, sigma = (s/S - 1) / 2 (float32), kernel
//      2*ceil(3 sigma) + 1 taps, reflect padding (torchvision gaussian_blur); none when s <= S;
//   4. bilinear resize to S x S, align_corners=False, no antialias (torch interpolate: source
//      coordinates clamped at 0);
//   5. (x - mean) / std.
// 'transformers4' (transformers 4.x, the MG-LLaVA release's era: its box files were made so):
//   pad with 0.5 (grey); blur with scipy.ndimage.gaussian_filter (sigma (s/S - 1)/2 in float64,
//   radius int(4 sigma + 0.5), mode 'mirror'); ndimage.zoom order 1 with grid_mode=True and mode
//   'mirror' (out-of-range source coordinates mirrored, not clamped); clip to the padded image's
//   range (a no-op for these convex weights); normalise.
//
// Steps 2-4 are linear and separable, so each output row and column is a short fixed weighted sum
// of input rows and columns: the weights are folded once per axis (blur taps through the two
// bilinear taps, reflection resolved) and applied in two passes over the 8-bit pixels, so the
// padded, blurred full-size float image is never built (a 4000 x 3000 photo costs two passes of
// ~12 taps instead of a 16-megapixel float convolution). Padding with a constant p is folded the
// same way: the image contributes (x - p) on its real pixels and every output gets + p, since each
// folded row of weights sums to 1.

import { RgbImage, Rgb, checkRgbImage } from '../preprocess/image.js';

const f32 = Math.fround;

export type Owlv2Processing = 'transformers5' | 'transformers4';

/** Sparse rows of a linear operator: out[o] = sum_t weight[t] * in[index[t]] for t in [start[o], start[o+1]). */
export interface AxisTaps {
  readonly start: Int32Array;
  readonly index: Int32Array;
  readonly weight: Float64Array;
}

/** torchvision's Gaussian kernel for shrinking `from` to `to` pixels (null: no blur). */
export function antiAliasKernel(from: number, to: number): { sigma: number; size: number } | null {
  const factor = f32(from / to);
  const sigma = Math.max(0, f32(f32(factor - 1) / 2));
  if (sigma === 0) return null;
  return { sigma, size: 2 * Math.ceil(f32(3 * sigma)) + 1 };
}

/** scipy's gaussian_filter kernel (truncate 4) for the same shrink (null: no blur). */
export function scipyAntiAliasKernel(from: number, to: number): { sigma: number; size: number } | null {
  const sigma = Math.max(0, (from / to - 1) / 2);
  if (sigma <= 1e-15) return null;
  return { sigma, size: 2 * Math.trunc(4 * sigma + 0.5) + 1 };
}

/** Normalised 1-D Gaussian (torchvision `_get_gaussian_kernel1d`, scipy `_gaussian_kernel1d`). */
function gaussian(size: number, sigma: number): Float64Array {
  const k = new Float64Array(size);
  const c = (size - 1) / 2;
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const x = (i - c) / sigma;
    k[i] = Math.exp(-0.5 * x * x);
    sum += k[i]!;
  }
  for (let i = 0; i < size; i++) k[i]! /= sum;
  return k;
}

/** Reflection about the edge pixels (torch 'reflect', scipy 'mirror'): -1 -> 1, n -> n - 2. */
function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let j = ((i % period) + period) % period;
  if (j >= n) j = period - j;
  return j;
}

/**
 * Taps mapping `real` input pixels, padded to `padded` with a constant, to `out` outputs: blur
 * (when shrinking) then linear interpolation. Taps that land in the padding are dropped (the
 * caller adds the constant's share; every full row sums to 1).
 */
export function axisTaps(real: number, padded: number, out: number, processing: Owlv2Processing = 'transformers5'): AxisTaps {
  const scipy = processing === 'transformers4';
  const aa = scipy ? scipyAntiAliasKernel(padded, out) : antiAliasKernel(padded, out);
  const kernel = aa ? gaussian(aa.size, aa.sigma) : Float64Array.of(1);
  const half = (kernel.length - 1) / 2;
  const scale = padded / out;
  const start = new Int32Array(out + 1);
  const index: number[] = [];
  const weight: number[] = [];
  const acc = new Map<number, number>();
  for (let o = 0; o < out; o++) {
    // Source coordinate of output o with pixel edges aligned: (o + 0.5) * scale - 0.5. torch
    // clamps it at 0 and its upper neighbour at the last pixel; scipy's 'mirror' reflects both.
    let taps: [number, number][];
    const src = (o + 0.5) * scale - 0.5;
    if (scipy) {
      const i0 = Math.floor(src);
      const l1 = src - i0;
      taps = [[reflect(i0, padded), 1 - l1], [reflect(i0 + 1, padded), l1]];
    } else {
      const s = Math.max(0, src);
      const i0 = Math.min(Math.floor(s), padded - 1);
      const l1 = s - i0;
      taps = [[i0, 1 - l1], [i0 < padded - 1 ? i0 + 1 : i0, l1]];
    }
    acc.clear();
    for (const [b, wb] of taps) {
      if (wb === 0) continue;
      for (let t = 0; t < kernel.length; t++) {
        const j = reflect(b + t - half, padded);
        if (j >= real) continue; // padding
        acc.set(j, (acc.get(j) ?? 0) + wb * kernel[t]!);
      }
    }
    for (const [j, w] of [...acc.entries()].sort((a, b) => a[0] - b[0])) {
      index.push(j);
      weight.push(w);
    }
    start[o + 1] = index.length;
  }
  return { start, index: Int32Array.from(index), weight: Float64Array.from(weight) };
}

export interface Owlv2ImageOptions {
  /** Model input side S. */
  size: number;
  mean: Rgb;
  std: Rgb;
  /** Rescale factor for 8-bit values (1/255). */
  rescale?: number;
  /** Which transformers generation to reproduce (default 'transformers5'). */
  processing?: Owlv2Processing;
}

/** RGB image -> pixel_values [3, S, S] (float32, CHW), as Owlv2ImageProcessor. */
export function owlv2Preprocess(img: RgbImage, o: Owlv2ImageOptions): Float32Array {
  checkRgbImage(img);
  const { width: W, height: H, data } = img;
  const S = o.size;
  const processing = o.processing ?? 'transformers5';
  const padValue = processing === 'transformers4' ? 0.5 : 0;
  const side = Math.max(W, H);
  const ty = axisTaps(H, side, S, processing);
  const tx = axisTaps(W, side, S, processing);
  const r = f32(o.rescale ?? 1 / 255);
  const lut = new Float64Array(256);
  for (let v = 0; v < 256; v++) lut[v] = f32(v * r) - padValue;

  // Pass 1 (rows): tmp[oy][x][c] over the image's real columns.
  const tmp = new Float64Array(S * W * 3);
  for (let oy = 0; oy < S; oy++) {
    const row = tmp.subarray(oy * W * 3, (oy + 1) * W * 3);
    for (let t = ty.start[oy]!; t < ty.start[oy + 1]!; t++) {
      const w = ty.weight[t]!;
      const base = ty.index[t]! * W * 3;
      for (let i = 0; i < W * 3; i++) row[i]! += w * lut[data[base + i]!]!;
    }
  }
  // Pass 2 (columns), the padding constant, normalisation; written CHW.
  const out = new Float32Array(3 * S * S);
  const plane = S * S;
  for (let oy = 0; oy < S; oy++) {
    const row = oy * W * 3;
    for (let ox = 0; ox < S; ox++) {
      let r0 = padValue;
      let g0 = padValue;
      let b0 = padValue;
      for (let t = tx.start[ox]!; t < tx.start[ox + 1]!; t++) {
        const w = tx.weight[t]!;
        const k = row + tx.index[t]! * 3;
        r0 += w * tmp[k]!;
        g0 += w * tmp[k + 1]!;
        b0 += w * tmp[k + 2]!;
      }
      const p = oy * S + ox;
      out[p] = (f32(r0) - o.mean[0]) / o.std[0];
      out[plane + p] = (f32(g0) - o.mean[1]) / o.std[1];
      out[2 * plane + p] = (f32(b0) - o.mean[2]) / o.std[2];
    }
  }
  return out;
}
