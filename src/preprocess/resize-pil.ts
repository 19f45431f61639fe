// Pillow-compatible bicubic resampling of 8-bit images: reproduces what
// `PIL.Image.resize((w, h), Image.BICUBIC)` returns for an RGB image (Pillow's ImagingResample).
//
// Why it lives here instead of calling sharp: MG-LLaVA's CLIP and ConvNeXt inputs were produced by
// the HF CLIPImageProcessor, which resizes with PIL. libvips (sharp) uses different kernels,
// window placement and rounding, so its output differs from PIL's by several grey levels in
// places; the model was trained and evaluated on PIL's pixels and the fixtures record PIL's.
// This is written from the documented behaviour of Pillow's algorithm, not from its source:
//
// - Separable: a horizontal pass to an intermediate 8-bit image, then a vertical pass; a pass is
//   skipped when that dimension does not change (the identity resize is a copy).
// - For output index i along an axis of input length n and output length m: scale = n / m; the
//   filter is stretched by max(scale, 1) when downscaling (antialiasing), so the support is
//   2 * max(scale, 1) for bicubic; the sample centre is (i + 0.5) * scale; the taps are the input
//   indices from trunc(centre - support + 0.5) to trunc(centre + support + 0.5) (exclusive),
//   clipped to [0, n); tap j gets weight K((j - centre + 0.5) / max(scale, 1)) with Keys' cubic
//   K (a = -0.5), and the weights of each output pixel are divided by their sum.
// - Weights become fixed point with 22 fractional bits (32-bit accumulator minus 8 bits of pixel
//   and 2 bits of headroom), rounded half away from zero; each output value is
//   (sum(pixel * weight) + 2^21) >> 22 clipped to 0..255. Both passes round and clip to 8 bits.
// The arithmetic is done in double precision in the same order, so the weights (and therefore
// every output byte) are the same as Pillow's.

import { RgbImage, checkRgbImage } from './image.js';

const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);
const INV_ONE = 1 / ONE;

/** Keys' cubic convolution kernel with a = -0.5 (Catmull-Rom), support 2. */
export function bicubicKernel(x: number): number {
  const t = x < 0 ? -x : x;
  if (t < 1) return (1.5 * t - 2.5) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * -0.5;
  return 0;
}

/** Per-output-pixel taps along one axis: output i reads input [start[i], start[i] + count[i]). */
export interface ResampleTaps {
  /** Maximum taps per output pixel; weights has outSize * ksize entries, zero-padded. */
  readonly ksize: number;
  readonly start: Int32Array;
  readonly count: Int32Array;
  /** Fixed-point weights (22 fractional bits), [outSize, ksize]. */
  readonly weights: Int32Array;
}

/** The bicubic taps for resizing an axis of inSize pixels to outSize pixels, as Pillow computes them. */
export function bicubicTaps(inSize: number, outSize: number): ResampleTaps {
  if (!(inSize >= 1 && outSize >= 1 && Number.isInteger(inSize) && Number.isInteger(outSize))) {
    throw new Error(`bicubicTaps: sizes must be positive integers, got ${inSize} -> ${outSize}`);
  }
  const scale = inSize / outSize;
  const filterScale = scale < 1 ? 1 : scale;
  const support = 2 * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const invFilterScale = 1 / filterScale;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    // Math.trunc = C's (int) conversion: toward zero, then clipped to the image.
    let lo = Math.trunc(centre - support + 0.5);
    if (lo < 0) lo = 0;
    let hi = Math.trunc(centre + support + 0.5);
    if (hi > inSize) hi = inSize;
    const n = hi - lo;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const v = bicubicKernel((j + lo - centre + 0.5) * invFilterScale);
      w[j] = v;
      sum += v;
    }
    for (let j = 0; j < n; j++) {
      const v = sum !== 0 ? w[j]! / sum : w[j]!;
      // Round half away from zero into fixed point.
      weights[i * ksize + j] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    start[i] = lo;
    count[i] = n;
  }
  return { ksize, start, count, weights };
}

/** (acc + 2^21) >> 22, clipped to 0..255; acc is an exact integer well inside 2^53. */
function clip8(acc: number): number {
  const v = Math.floor((acc + HALF) * INV_ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Resize interleaved 8-bit pixels [h, w, channels] to [outH, outW, channels] with Pillow's
 * bicubic. Returns a new array (a copy when the size is unchanged).
 */
export function resizeBicubicU8(
  src: Uint8Array,
  width: number,
  height: number,
  channels: number,
  outWidth: number,
  outHeight: number,
): Uint8Array {
  if (src.length !== width * height * channels) {
    throw new Error(`resizeBicubicU8: ${src.length} bytes for ${width}x${height}x${channels}`);
  }
  let cur = src;
  let curW = width;
  if (outWidth !== width) {
    cur = horizontal(cur, width, height, channels, bicubicTaps(width, outWidth), outWidth);
    curW = outWidth;
  }
  if (outHeight !== height) {
    cur = vertical(cur, curW, channels, bicubicTaps(height, outHeight), outHeight);
  }
  return cur === src ? src.slice() : cur;
}

/** PIL-compatible `image.resize((outWidth, outHeight), BICUBIC)` for an RGB image. */
export function resizeBicubicPil(img: RgbImage, outWidth: number, outHeight: number): RgbImage {
  checkRgbImage(img);
  if (!(Number.isInteger(outWidth) && Number.isInteger(outHeight) && outWidth >= 1 && outHeight >= 1)) {
    throw new Error(`resizeBicubicPil: output size ${outWidth}x${outHeight} is not a positive integer size`);
  }
  const data = resizeBicubicU8(img.data, img.width, img.height, 3, outWidth, outHeight);
  return { width: outWidth, height: outHeight, data };
}

// [h, w, c] -> [h, outW, c]
function horizontal(src: Uint8Array, w: number, h: number, c: number, taps: ResampleTaps, outW: number): Uint8Array {
  const { ksize, start, count, weights } = taps;
  const out = new Uint8Array(outW * h * c);
  const acc = new Float64Array(c);
  for (let y = 0; y < h; y++) {
    const rowIn = y * w * c;
    const rowOut = y * outW * c;
    for (let x = 0; x < outW; x++) {
      acc.fill(0);
      const k0 = x * ksize;
      const n = count[x]!;
      let p = rowIn + start[x]! * c;
      for (let j = 0; j < n; j++, p += c) {
        const k = weights[k0 + j]!;
        for (let ch = 0; ch < c; ch++) acc[ch]! += src[p + ch]! * k;
      }
      for (let ch = 0; ch < c; ch++) out[rowOut + x * c + ch] = clip8(acc[ch]!);
    }
  }
  return out;
}

// [h, w, c] -> [outH, w, c]; accumulates whole rows so the inner loop runs along memory.
function vertical(src: Uint8Array, w: number, c: number, taps: ResampleTaps, outH: number): Uint8Array {
  const { ksize, start, count, weights } = taps;
  const rowLen = w * c;
  const out = new Uint8Array(outH * rowLen);
  const acc = new Float64Array(rowLen);
  for (let y = 0; y < outH; y++) {
    acc.fill(0);
    const k0 = y * ksize;
    const n = count[y]!;
    for (let j = 0; j < n; j++) {
      const k = weights[k0 + j]!;
      const rowIn = (start[y]! + j) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i]! += src[rowIn + i]! * k;
    }
    const rowOut = y * rowLen;
    for (let i = 0; i < rowLen; i++) out[rowOut + i] = clip8(acc[i]!);
  }
  return out;
}
