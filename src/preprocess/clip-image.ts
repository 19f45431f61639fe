// The release's image path for the high-resolution branch (evaluation/training, not chat.py):
//   expand2square(image, fill = int(CLIP mean * 255))          -> square, image centred
//   CLIPImageProcessor(shortest_edge = S, crop_size = S)       -> PIL bicubic resize, centre crop
//   x / 255, (x - mean) / std                                   -> pixel_values_aux [3, S, S]
// S is the config's image_size_aux (768 for the released models). The 336-px pixel_values are a
// bilinear resize of this tensor and are made in the graph, not here.
// Also returns the geometry the box pipeline (boxes.ts) needs to map detector boxes into the
// S x S crop.

import { RgbImage, Rgb, checkRgbImage } from './image.js';
import { resizeBicubicPil } from './resize-pil.js';
import type { BoxGeometry } from './boxes.js';

/** OpenAI CLIP normalisation (CLIPImageProcessor image_mean / image_std). */
export const CLIP_MEAN: Rgb = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: Rgb = [0.26862954, 0.26130258, 0.27577711];

/** The release's pad colour: `tuple(int(x * 255) for x in image_mean)`, truncated: (122,116,104) for CLIP. */
export function meanFill(mean: Rgb = CLIP_MEAN): Rgb {
  return [Math.trunc(mean[0] * 255), Math.trunc(mean[1] * 255), Math.trunc(mean[2] * 255)];
}

/**
 * xtuner's expand2square: a square of side max(w, h) filled with `fill`, the image pasted at
 * offset (long - short) // 2 along the short axis (0 along the long one). A square image is
 * returned as is (same object) with offset (0, 0).
 */
export function expandToSquare(img: RgbImage, fill: Rgb): { image: RgbImage; offsetX: number; offsetY: number } {
  checkRgbImage(img);
  const { width: w, height: h } = img;
  if (w === h) return { image: img, offsetX: 0, offsetY: 0 };
  const side = Math.max(w, h);
  const offsetX = w < h ? Math.floor((h - w) / 2) : 0;
  const offsetY = h < w ? Math.floor((w - h) / 2) : 0;
  const data = new Uint8Array(side * side * 3);
  for (let i = 0; i < side * side; i++) {
    data[3 * i] = fill[0];
    data[3 * i + 1] = fill[1];
    data[3 * i + 2] = fill[2];
  }
  const rowBytes = w * 3;
  for (let y = 0; y < h; y++) {
    const dst = ((y + offsetY) * side + offsetX) * 3;
    data.set(img.data.subarray(y * rowBytes, (y + 1) * rowBytes), dst);
  }
  return { image: { width: side, height: side, data }, offsetX, offsetY };
}

/**
 * HF get_resize_output_image_size for `{shortest_edge: size}` (default_to_square=False): the short
 * side becomes `size`, the long side int(size * long / short) (float division, truncated).
 */
export function shortestEdgeSize(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.trunc((size * height) / width) };
  return { width: Math.trunc((size * width) / height), height: size };
}

/** HF image_transforms.center_crop offsets: top = (h - crop) // 2, left = (w - crop) // 2. */
export function centerCropOffsets(width: number, height: number, crop: number): { x: number; y: number } {
  return { x: Math.floor((width - crop) / 2), y: Math.floor((height - crop) / 2) };
}

/** Where the model's S x S input came from; distances in pixels. */
export interface ClipGeometry extends BoxGeometry {
  /** The decoded image's size. */
  readonly width: number;
  readonly height: number;
  /** Size after the HF shortest-edge resize (before the centre crop). */
  readonly resizedWidth: number;
  readonly resizedHeight: number;
  /** Top-left of the S x S crop inside the resized image, as HF's center_crop takes it. */
  readonly cropX: number;
  readonly cropY: number;
}

export interface ClipImageOptions {
  /** S: side of the output (config image_size_aux); default 768. */
  size?: number;
  /** Pad to a square with the mean colour first (the release's pad_image_to_square); default true. */
  padToSquare?: boolean;
  mean?: Rgb;
  std?: Rgb;
}

export interface ClipImage {
  /** pixel_values_aux: float32 [3, S, S], channel-major, normalised. */
  readonly pixelValues: Float32Array;
  readonly geometry: ClipGeometry;
}

/** The whole high-resolution preprocessing: decoded RGB image -> pixel_values_aux and geometry. */
export function clipPreprocess(img: RgbImage, opts: ClipImageOptions = {}): ClipImage {
  checkRgbImage(img);
  const size = opts.size ?? 768;
  if (!(Number.isInteger(size) && size >= 1)) throw new Error(`clipPreprocess: size must be a positive integer, got ${size}`);
  const mean = opts.mean ?? CLIP_MEAN;
  const std = opts.std ?? CLIP_STD;
  const padToSquare = opts.padToSquare ?? true;

  const padded = padToSquare ? expandToSquare(img, meanFill(mean)) : { image: img, offsetX: 0, offsetY: 0 };
  const { width: pw, height: ph } = padded.image;
  const rs = shortestEdgeSize(pw, ph, size);
  const resized = resizeBicubicPil(padded.image, rs.width, rs.height);
  const crop = centerCropOffsets(rs.width, rs.height, size);
  const pixelValues = normalizeCrop(resized, crop.x, crop.y, size, mean, std);
  return {
    pixelValues,
    geometry: {
      width: img.width,
      height: img.height,
      padX: padded.offsetX,
      padY: padded.offsetY,
      paddedWidth: pw,
      paddedHeight: ph,
      size,
      resizedWidth: rs.width,
      resizedHeight: rs.height,
      cropX: crop.x,
      cropY: crop.y,
    },
  };
}

/**
 * Crop an S x S window at (x0, y0) (the window lies inside the image: the shortest-edge resize
 * guarantees it), rescale by 1/255 and normalise, into channel-major float32 [3, S, S].
 * HF does `float32(float64(v) * (1/255))`, then `(x - mean) / std` in float32; each output is a
 * function of one byte and the channel, so a 3 x 256 table reproduces it exactly.
 */
export function normalizeCrop(img: RgbImage, x0: number, y0: number, size: number, mean: Rgb, std: Rgb): Float32Array {
  checkRgbImage(img);
  if (x0 < 0 || y0 < 0 || x0 + size > img.width || y0 + size > img.height) {
    throw new Error(`normalizeCrop: ${size}x${size} window at (${x0},${y0}) is outside ${img.width}x${img.height}`);
  }
  const f = Math.fround;
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const m = f(mean[c]!);
    const s = f(std[c]!);
    for (let v = 0; v < 256; v++) lut[c * 256 + v] = f(f(f(v * (1 / 255)) - m) / s);
  }
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  const src = img.data;
  for (let y = 0; y < size; y++) {
    let p = ((y + y0) * img.width + x0) * 3;
    const row = y * size;
    for (let x = 0; x < size; x++, p += 3) {
      out[row + x] = lut[src[p]!]!;
      out[plane + row + x] = lut[256 + src[p + 1]!]!;
      out[2 * plane + row + x] = lut[512 + src[p + 2]!]!;
    }
  }
  return out;
}
