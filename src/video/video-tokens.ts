// Visual tokens of a video, as the release's VideoObjectLLaVAProxyEvalDataset + fuse_model build
// them (fixtures/video/README.md): the sampled frames (frames.ts) through the video pixel
// transform (preprocess.ts: the 336 CLIP view comes from it, not from the image path's bilinear
// low-res view of the 768 tensor), each frame through CLIP, ConvNeXt, the fusion and the
// projector exactly as an image, and each frame's boxes (boxes.ts, 768 space) through the object
// path against that frame's ConvNeXt stages. The frames run batched: one encoder run for all
// of them, one object-feature run for all their boxes (the same numbers as frame by frame). In the prompt the `<video>` marker receives frame 0's
// image tokens, frame 0's box tokens, frame 1's image tokens, ... in that order.

import { createHash } from 'node:crypto';
import { F32Tensor } from '../core/tensor.js';
import { InputError } from '../core/errors.js';
import { Detections } from '../preprocess/boxes.js';
import { RgbImage } from '../preprocess/image.js';
import type { VisionModel } from '../model/mg-llava-vision.js';
import { DEFAULT_VIDEO_FRAMES, VideoFrames, loadVideoFrames } from './frames.js';
import { videoPixels } from './preprocess.js';
import { VideoFrameBoxes, videoFrameBoxes } from './boxes.js';

/** The marker the release's video question starts with (`<video>\n{question}`); not tokenized. */
export const VIDEO_TOKEN = '<video>';

export interface VideoEncodeOptions {
  /**
   * Detector boxes per sampled frame (entry j for frame j), in the frame's pixels (the release's
   * video box file, parsed); null: none (one placeholder [0,0,0,0] box per frame, as the release
   * does when no box survives); undefined: the configured detector on each frame, else none.
   */
  boxes?: Detections[] | null;
  /** pad_image_to_square (default true, every released config). */
  pad?: boolean;
  /** limit_num (default 100; null: no cap). */
  limit?: number | null;
  /** Frames to sample (default 8, the release's). */
  frames?: number;
}

export interface VideoTokens {
  /** [F, N, H]: each frame's fused CLIP/ConvNeXt tokens after `projector` (N = 576). */
  imageTokens: F32Tensor;
  /** [sum k, H]: every frame's object tokens, frames in order. */
  boxTokens: F32Tensor;
  /** [sum k, 4]: the boxes in image_size_aux (768) pixels, frames in order. */
  boxes: F32Tensor;
  /** k per frame (>= 1: a frame without boxes has the placeholder box). */
  boxCounts: number[];
  /** Labels per frame ([] for a placeholder box). */
  labels: string[][];
  /** The sampled frame indices. */
  frameIndices: number[];
  /** [F, 3, s, s] CLIP input. */
  pixelValues: F32Tensor;
  /** [F, 3, S, S] ConvNeXt input. */
  pixelValuesAux: F32Tensor;
}

/** What encodeVideoTokens needs of the model. */
export interface VideoEncoder {
  vision: VisionModel;
  /** The configured detector's boxes for one frame (undefined: no detector). */
  detect?: (frame: RgbImage) => Promise<Detections>;
}

/** Options with their defaults filled in (and checked). */
export function videoOptions(o: VideoEncodeOptions = {}): { pad: boolean; limit: number | null; frames: number } {
  const frames = o.frames ?? DEFAULT_VIDEO_FRAMES;
  if (!Number.isInteger(frames) || frames < 1) throw new InputError(`frames must be a positive integer, got ${frames}`, '--frames');
  const limit = o.limit === undefined ? 100 : o.limit;
  if (limit !== null && (!Number.isInteger(limit) || limit < 0)) throw new InputError(`box limit must be a non-negative integer or null, got ${limit}`, '--box-limit');
  return { pad: o.pad ?? true, limit, frames };
}

/** The frames of a path (sampled and decoded) or as given. */
export async function videoFramesOf(video: string | VideoFrames, frames: number): Promise<VideoFrames> {
  if (typeof video !== 'string') {
    if (video.frames.length === 0) throw new InputError('the video has no frames');
    return video;
  }
  return loadVideoFrames(video, { frames });
}

/** Frames per encoder / object-feature run (every frame of the release's 8 in one). */
export const VIDEO_BATCH = 8;

/** The placeholder box of a frame without boxes. */
const PLACEHOLDER: VideoFrameBoxes = { boxes: new Float32Array(4), labels: [], count: 1, placeholder: true };

/** Visual tokens of a video's sampled frames (see the file comment). */
export async function encodeVideoTokens(enc: VideoEncoder, video: VideoFrames, opts: VideoEncodeOptions = {}): Promise<VideoTokens> {
  const o = videoOptions(opts);
  const { vision } = enc;
  const F = video.frames.length;
  const s = vision.shapes.clip.imageSize;
  const S = vision.settings.imageSizeAux;
  const px = videoPixels(video.frames, { pad: o.pad, clipSize: s, auxSize: S });

  let dets = opts.boxes;
  if (dets === undefined && enc.detect) {
    dets = [];
    for (const f of video.frames) dets.push(await enc.detect(f));
  }
  const frameBoxes = dets ? videoFrameBoxes(dets, { width: video.width, height: video.height, pad: o.pad, limit: o.limit, size: S, numFrames: F, name: 'video boxes' }) : video.frames.map(() => PLACEHOLDER);

  // The frames through the towers in one encoder run, then every frame's boxes against its own
  // ConvNeXt stages in one object-feature run: all of them at the default 8 frames, groups of
  // VIDEO_BATCH frames beyond (the encoder's activations grow with the batch).
  const H = vision.shapes.llmWidth;
  const perClip = 3 * s * s;
  const perAux = 3 * S * S;
  const imageParts: Float32Array[] = [];
  const boxParts: Float32Array[] = [];
  let N = 0;
  for (let f0 = 0; f0 < F; f0 += VIDEO_BATCH) {
    const f1 = Math.min(F, f0 + VIDEO_BATCH);
    const n = f1 - f0;
    const e = await vision.encodeImage(
      { dims: [n, 3, s, s], data: px.pixelValues.subarray(f0 * perClip, f1 * perClip) },
      { dims: [n, 3, S, S], data: px.pixelValuesAux.subarray(f0 * perAux, f1 * perAux) },
    );
    N = e.imageTokens.dims[1]!;
    imageParts.push(e.imageTokens.data);
    const objects = await vision.encodeBoxesBatch(e.stages, frameBoxes.slice(f0, f1).map((b) => b.boxes));
    boxParts.push(objects.boxTokens.data);
  }
  const boxCounts = frameBoxes.map((b) => b.count);
  const K = boxCounts.reduce((a, b) => a + b, 0);
  const boxTokens = imageParts.length === 1 ? boxParts[0]! : concat(boxParts);
  if (boxTokens.length !== K * H) throw new Error(`video tokens: ${boxTokens.length / H} box tokens for ${K} boxes`);
  return {
    imageTokens: { dims: [F, N, H], data: imageParts.length === 1 ? imageParts[0]! : concat(imageParts) },
    boxTokens: { dims: [K, H], data: boxTokens },
    boxes: { dims: [K, 4], data: concat(frameBoxes.map((b) => b.boxes)) },
    boxCounts,
    labels: frameBoxes.map((b) => [...b.labels]),
    frameIndices: [...video.indices],
    pixelValues: { dims: [F, 3, s, s], data: px.pixelValues },
    pixelValuesAux: { dims: [F, 3, S, S], data: px.pixelValuesAux },
  };
}

/** What the prompt needs of a video's tokens. */
export type VideoTokensInput = Pick<VideoTokens, 'imageTokens' | 'boxTokens' | 'boxCounts'>;

/** Positions the video takes in the prompt: F x N image tokens + every box token. */
export function videoTokenCount(v: VideoTokensInput): number {
  return v.imageTokens.dims[0]! * v.imageTokens.dims[1]! + v.boxTokens.dims[0]!;
}

/**
 * The video's part of the prompt in order, [F x N + sum k, H]: frame 0's image tokens, frame
 * 0's box tokens, frame 1's image tokens, ...
 */
export function videoSequence(v: VideoTokensInput): F32Tensor {
  const [F, N, H] = v.imageTokens.dims as [number, number, number];
  if (v.imageTokens.dims.length !== 3) throw new InputError(`video image tokens must be [frames, tokens, width], got [${v.imageTokens.dims.join(', ')}]`);
  if (v.boxCounts.length !== F) throw new InputError(`video tokens: ${v.boxCounts.length} box counts for ${F} frames`);
  const K = v.boxCounts.reduce((a, b) => a + b, 0);
  if (K !== v.boxTokens.dims[0]) throw new InputError(`video tokens: box counts add up to ${K}, there are ${v.boxTokens.dims[0]} box tokens`);
  if (v.boxTokens.dims[1] !== H) throw new InputError(`video tokens: box tokens are ${v.boxTokens.dims[1]} wide, image tokens ${H}`);
  const out = new Float32Array((F * N + K) * H);
  let o = 0;
  let b = 0;
  for (let f = 0; f < F; f++) {
    out.set(v.imageTokens.data.subarray(f * N * H, (f + 1) * N * H), o);
    o += N * H;
    const k = v.boxCounts[f]!;
    out.set(v.boxTokens.data.subarray(b * H, (b + k) * H), o);
    o += k * H;
    b += k;
  }
  return { dims: [F * N + K, H], data: out };
}

/**
 * The key of a video's tokens: a sha256 of the video (its file's bytes, or the given frames'
 * pixels and indices), the boxes (given: their values; `detector`: the detector's settings;
 * null: none) and the options.
 */
export function videoTokensKey(video: Uint8Array | VideoFrames, boxes: Detections[] | null | { detector: string }, opts: VideoEncodeOptions = {}): string {
  const h = createHash('sha256');
  if (video instanceof Uint8Array) {
    h.update('bytes\0');
    h.update(video);
  } else {
    h.update(`frames\0${video.width}x${video.height}\0${video.indices.join(',')}\0`);
    for (const f of video.frames) h.update(f.data);
  }
  let b: string;
  if (boxes === null) b = 'none';
  else if ('detector' in boxes) b = `detector:${boxes.detector}`;
  else b = `boxes:${JSON.stringify(boxes.map((d) => ({ boxes: Array.from(d.boxes), labels: d.labels, scores: Array.from(d.scores) })))}`;
  h.update(`\0${b}\0${JSON.stringify(videoOptions(opts))}`);
  return `video:${h.digest('hex')}`;
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
