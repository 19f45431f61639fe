// The release's video pixel path (mg_llava/dataset/utils.py::load_and_transform_video, decord
// branch, get_video_transform), per sampled frame and made separately at each resolution
// (336 for CLIP, 768 for ConvNeXt) from the same uint8 frame:
//   x / 255 (float32)
//   if pad_image_to_square: padding_video: a max(h,w) square filled with the CLIP mean in [0,1]
//     units (not int(mean*255) as on the image path), frame at top (S-h)//2, left (S-w)//2
//   NormalizeVideo: (x - mean) / std in float32 (the padded area becomes exactly 0)
//   pytorchvideo ShortSideScale(res): short side -> res, long side floor((long/short) * res), by
//     torch.nn.functional.interpolate(bilinear, align_corners=False, no antialias)
//   CenterCropVideo(res): top/left = round((H' - res) / 2) with round-half-to-even
// Output is channel-major float32 [3, res, res] per frame; videoPixels stacks frames into the
// frame-major (T, C, H, W) layout CLIP / ConvNeXt receive.
//
// The resize is separable: a horizontal pass over every source row for the res output columns of
// the crop, then a vertical pass for the res output rows; only the cropped window is computed.

import { RgbImage, checkRgbImage } from '../preprocess/image.js';
import { CLIP_MEAN, CLIP_STD } from '../preprocess/clip-image.js';
import { roundHalfEven, type BoxGeometry } from '../preprocess/boxes.js';

const f32 = Math.fround;

/** Where a video frame's res x res tensor came from (distances in pixels). */
export interface VideoGeometry extends BoxGeometry {
  /** The decoded frame's size. */
  readonly width: number;
  readonly height: number;
  readonly padded: boolean;
  /** ShortSideScale output: short side = size, long side floor((long / short) * size). */
  readonly scaledWidth: number;
  readonly scaledHeight: number;
  /** size / min(paddedWidth, paddedHeight) (float64). */
  readonly scale: number;
  /** Top-left of the pixel crop inside the scaled frame (CenterCropVideo, round half to even). */
  readonly cropX: number;
  readonly cropY: number;
  /**
   * Top-left of the crop as the box code takes it (adjust_center_crop_box):
   * ((trunc(padded * scale)) - size) // 2. Equal to cropX/cropY unless new - size is 3 mod 4 or the
   * truncated product differs from the pixel path's floor((long/short) * size).
   */
  readonly boxCropX: number;
  readonly boxCropY: number;
}

export interface VideoFrameOptions {
  /** res: output side (336 CLIP, 768 ConvNeXt). */
  size: number;
  /** pad_image_to_square. */
  pad: boolean;
}

/** The geometry of the transform for a w x h frame at resolution `size`. */
export function videoGeometry(width: number, height: number, opts: VideoFrameOptions): VideoGeometry {
  const { size, pad } = opts;
  if (!(Number.isInteger(size) && size >= 1)) throw new Error(`videoGeometry: size must be a positive integer, got ${size}`);
  const side = Math.max(width, height);
  const pw = pad ? side : width;
  const ph = pad ? side : height;
  const padX = pad ? Math.floor((side - width) / 2) : 0;
  const padY = pad ? Math.floor((side - height) / 2) : 0;
  // pytorchvideo short_side_scale (float64, this order of operations)
  let sw: number, sh: number;
  if (pw < ph) {
    sh = Math.floor((ph / pw) * size);
    sw = size;
  } else {
    sh = size;
    sw = Math.floor((pw / ph) * size);
  }
  const scale = size / Math.min(pw, ph);
  return {
    width,
    height,
    padded: pad,
    padX,
    padY,
    paddedWidth: pw,
    paddedHeight: ph,
    size,
    scaledWidth: sw,
    scaledHeight: sh,
    scale,
    cropX: roundHalfEven((sw - size) / 2),
    cropY: roundHalfEven((sh - size) / 2),
    boxCropX: Math.floor((Math.trunc(pw * scale) - size) / 2),
    boxCropY: Math.floor((Math.trunc(ph * scale) - size) / 2),
  };
}

/** Per output index along one axis: neighbours i0, i1 and float32 weights w0 = 1-l, w1 = l. */
interface AxisTaps {
  readonly i0: Int32Array;
  readonly i1: Int32Array;
  readonly w0: Float32Array;
  readonly w1: Float32Array;
}

/**
 * torch bilinear, align_corners=False, for output indices start..start+count-1 of an axis resized
 * from inSize to outSize: src = (dst + 0.5) * ratio - 0.5 with the ratio rounded to float32 (as
 * PyTorch's CPU kernel does), clamped below at 0; i0 = floor(src), i1 = min(i0 + 1, in - 1).
 */
function axisTaps(inSize: number, outSize: number, start: number, count: number): AxisTaps {
  const ratio = f32(inSize / outSize);
  const i0 = new Int32Array(count);
  const i1 = new Int32Array(count);
  const w0 = new Float32Array(count);
  const w1 = new Float32Array(count);
  for (let k = 0; k < count; k++) {
    const src = Math.max((start + k + 0.5) * ratio - 0.5, 0);
    const a = Math.min(Math.floor(src), inSize - 1);
    const l = Math.min(Math.max(src - a, 0), 1);
    i0[k] = a;
    i1[k] = a < inSize - 1 ? a + 1 : a;
    w1[k] = l;
    w0[k] = 1 - l;
  }
  return { i0, i1, w0, w1 };
}

/** float32 (f32(v / 255) - mean) / std for each byte and channel: 3 x 256. */
function normLut(): Float32Array {
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const m = f32(CLIP_MEAN[c]!);
    const s = f32(CLIP_STD[c]!);
    for (let v = 0; v < 256; v++) lut[c * 256 + v] = f32(f32(f32(v / 255) - m) / s);
  }
  return lut;
}

let LUT: Float32Array | undefined;

/** Scratch buffers reused across frames of the same shape (no per-frame reallocation). */
interface Plan {
  readonly geom: VideoGeometry;
  readonly xs: AxisTaps;
  readonly ys: AxisTaps;
  readonly norm: Float32Array; // [3, ph, pw] normalised, padded frame
  readonly tmp: Float32Array; // [ph, size] one channel's horizontal pass
}

const plans = new Map<string, Plan>();

function planFor(width: number, height: number, opts: VideoFrameOptions): Plan {
  const key = `${width}x${height}:${opts.size}:${opts.pad ? 1 : 0}`;
  let p = plans.get(key);
  if (!p) {
    const geom = videoGeometry(width, height, opts);
    const { size } = geom;
    p = {
      geom,
      xs: axisTaps(geom.paddedWidth, geom.scaledWidth, geom.cropX, size),
      ys: axisTaps(geom.paddedHeight, geom.scaledHeight, geom.cropY, size),
      norm: new Float32Array(3 * geom.paddedWidth * geom.paddedHeight),
      tmp: new Float32Array(geom.paddedHeight * size),
    };
    if (plans.size > 16) plans.clear();
    plans.set(key, p);
  }
  return p;
}

/**
 * One frame at resolution opts.size, written into `out` at `offset` (3 * size * size floats).
 * Returns the geometry.
 */
export function videoFramePixelsInto(frame: RgbImage, opts: VideoFrameOptions, out: Float32Array, offset = 0): VideoGeometry {
  checkRgbImage(frame, 'video frame');
  const { width: w, height: h, data } = frame;
  const plan = planFor(w, h, opts);
  const { geom, xs, ys, norm, tmp } = plan;
  const { size, paddedWidth: pw, paddedHeight: ph, padX, padY } = geom;
  if (offset < 0 || offset + 3 * size * size > out.length) throw new Error('videoFramePixelsInto: output too small');
  const lut = (LUT ??= normLut());

  // normalised, padded planes; the padded area is (mean - mean) / std = 0 exactly
  const pplane = pw * ph;
  if (pw !== w || ph !== h) norm.fill(0);
  for (let y = 0; y < h; y++) {
    let p = y * w * 3;
    let q = (y + padY) * pw + padX;
    for (let x = 0; x < w; x++, p += 3, q++) {
      norm[q] = lut[data[p]!]!;
      norm[pplane + q] = lut[256 + data[p + 1]!]!;
      norm[2 * pplane + q] = lut[512 + data[p + 2]!]!;
    }
  }

  const { i0: xi0, i1: xi1, w0: xw0, w1: xw1 } = xs;
  const { i0: yi0, i1: yi1, w0: yw0, w1: yw1 } = ys;
  const oplane = size * size;
  for (let c = 0; c < 3; c++) {
    const src = c * pplane;
    // horizontal: every source row, the size cropped output columns
    for (let y = 0; y < ph; y++) {
      const r = src + y * pw;
      const t = y * size;
      for (let x = 0; x < size; x++) {
        tmp[t + x] = xw0[x]! * norm[r + xi0[x]!]! + xw1[x]! * norm[r + xi1[x]!]!;
      }
    }
    // vertical
    const o = offset + c * oplane;
    for (let y = 0; y < size; y++) {
      const a = yi0[y]! * size;
      const b = yi1[y]! * size;
      const wa = yw0[y]!;
      const wb = yw1[y]!;
      const row = o + y * size;
      for (let x = 0; x < size; x++) out[row + x] = wa * tmp[a + x]! + wb * tmp[b + x]!;
    }
  }
  return geom;
}

/** One frame's tensor, float32 [3, size, size] (CHW), as the release's video transform at `size`. */
export function videoFramePixels(frame: RgbImage, opts: VideoFrameOptions): Float32Array {
  const out = new Float32Array(3 * opts.size * opts.size);
  videoFramePixelsInto(frame, opts, out, 0);
  return out;
}

export interface VideoPixelsOptions {
  pad: boolean;
  /** CLIP resolution (crop_size_raw); default 336. */
  clipSize?: number;
  /** ConvNeXt resolution (image_size_aux); default 768. */
  auxSize?: number;
}

export interface VideoPixels {
  /** Frames. */
  readonly frames: number;
  /** float32 [F, 3, clipSize, clipSize]. */
  readonly pixelValues: Float32Array;
  /** float32 [F, 3, auxSize, auxSize]. */
  readonly pixelValuesAux: Float32Array;
  /** Geometry of the CLIP and the aux tensors (same for every frame). */
  readonly geometry: VideoGeometry;
  readonly geometryAux: VideoGeometry;
}

/** All sampled frames (one video: every frame the same size) at both resolutions. */
export function videoPixels(frames: readonly RgbImage[], opts: VideoPixelsOptions): VideoPixels {
  if (frames.length === 0) throw new Error('videoPixels: no frames');
  const clipSize = opts.clipSize ?? 336;
  const auxSize = opts.auxSize ?? 768;
  const { width, height } = frames[0]!;
  for (const [i, f] of frames.entries()) {
    if (f.width !== width || f.height !== height) {
      throw new Error(`videoPixels: frame ${i} is ${f.width}x${f.height}, frame 0 is ${width}x${height}`);
    }
  }
  const n = frames.length;
  const pixelValues = new Float32Array(n * 3 * clipSize * clipSize);
  const pixelValuesAux = new Float32Array(n * 3 * auxSize * auxSize);
  const clipOpts = { size: clipSize, pad: opts.pad };
  const auxOpts = { size: auxSize, pad: opts.pad };
  let geometry: VideoGeometry | undefined;
  let geometryAux: VideoGeometry | undefined;
  for (let i = 0; i < n; i++) {
    geometry = videoFramePixelsInto(frames[i]!, clipOpts, pixelValues, i * 3 * clipSize * clipSize);
    geometryAux = videoFramePixelsInto(frames[i]!, auxOpts, pixelValuesAux, i * 3 * auxSize * auxSize);
  }
  return { frames: n, pixelValues, pixelValuesAux, geometry: geometry!, geometryAux: geometryAux! };
}
