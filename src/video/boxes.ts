// The release's video box pipeline (VideoObjectLLaVAProxyEvalDataset.getitem with the helpers in
// mg_llava/dataset/utils.py): a box file with one entry per video, each entry a list of per-frame
// detections in the original frame's pixels, to boxes in the S x S (768) crop of every sampled frame.
//
// The box file: a JSON list `[{"video": "name.mkv", "frames": [{boxes, labels, scores}, ...]}]`.
// The release indexes it as `{item['video'].split('.')[-2]: item}` (later entries with the same key
// replace earlier ones) and looks a sample up by the question file's `video_name`, which is that
// key; the video file it opens is `video_name + '.' + <extension of the FIRST item's "video">`.
// Entry j of `frames` belongs to sampled frame j (there is no frame index in the JSON); extra
// entries are ignored downstream, fewer than the sampled frames make the release fail.
//
// Per frame entry (the same arithmetic as the image path, src/preprocess/boxes.ts, whose functions
// are reused):
//   1. pad_image_to_square: adjust_padding_boxes adds (w-h)//2 to y0, y1 (landscape) or (h-w)//2
//      to x0, x1 (portrait) in Python float64, before the float32 tensor (shiftBoxes); the frame
//      becomes max(w,h) square;
//   2. bbox_nms: batched_nms, IoU > 0.2 suppresses, float32, output by descending score (nmsPerLabel);
//   3. limit_num set and more boxes than it: per_category cap with num_per_category = 20 FIXED (the
//      image path uses limit > 50 ? 20 : 5; the video dataset hard-codes 20), regrouped by label
//      in order of first appearance (capPerLabel);
//   4-5. scale = S / short side (float64), float32 product, torch.round half to even; new side
//      int(side * scale); crop offset (new - S) // 2 (floor; the video PIXEL crop rounds half to
//      even instead, they differ by one when new - S = 3 mod 4); clamp to [0, S], drop boxes wholly
//      outside (toCropSpace: exactly this rule);
//   6. none left: one [0,0,0,0] box with NO label (labels = [], as the release; the image path's
//      PreparedBoxes uses [''] instead).

import { InputError } from '../core/errors.js';
import {
  BoxSet,
  DEFAULT_IOU_THRESHOLD,
  Detections,
  capPerLabel,
  nmsPerLabel,
  parseBoxJson,
  roundHalfEven,
  shiftBoxes,
  toCropSpace,
} from '../preprocess/boxes.js';

/** The release's video dataset caps each label at 20 boxes whatever limit_num is. */
export const VIDEO_BOXES_PER_LABEL = 20;
/** image_size_aux: the side of the ConvNeXt crop the boxes are mapped to. */
export const VIDEO_BOX_SIZE = 768;

export interface VideoBoxGeometry {
  /** Width and height of the decoded (unpadded) frame. */
  readonly width: number;
  readonly height: number;
  /** pad_image_to_square (true in every released config and the VIDEOQADataset default). */
  readonly pad: boolean;
  /** S (image_size_aux), default 768. */
  readonly size?: number;
  /** limit_num: 100 in every released config, null (no cap) the VideoObjectLLaVAProxyEvalDataset default. */
  readonly limit: number | null;
  /**
   * Number of sampled frames: when given, fewer entries are an InputError (the release fails) and
   * only the first numFrames entries are returned (the release ignores the rest). Default: all entries.
   */
  readonly numFrames?: number;
  /** Named in error messages (the box file). */
  readonly name?: string;
}

export interface VideoFrameBoxes {
  /** [k, 4] x0, y0, x1, y1 in S-pixel coordinates (integer-valued), k >= 1. */
  readonly boxes: Float32Array;
  /** One per box in order; [] for the placeholder box (as the release). */
  readonly labels: readonly string[];
  /** k, the frame's number of box tokens. */
  readonly count: number;
  /** True when no box survived and the single [0,0,0,0] box was substituted. */
  readonly placeholder: boolean;
}

/** The release's scale/crop numbers for one frame (adjust_short_resize_coordinates / adjust_center_crop_box). */
export interface VideoBoxScale {
  /** S / min(w, h) of the (padded) frame, float64. */
  readonly scale: number;
  /** int(side * scale). */
  readonly newWidth: number;
  readonly newHeight: number;
  /** (new - S) // 2 (floor). */
  readonly cropX: number;
  readonly cropY: number;
}

/** Every stage of one frame, for diagnostics and tests. */
export interface VideoBoxStages {
  /** After the padding offset (float32 tensor). */
  readonly shifted: BoxSet;
  readonly nms: BoxSet;
  /** Whether the per-category cap ran (limit set and more boxes than it after NMS). */
  readonly capApplied: boolean;
  readonly capped: BoxSet;
  /** Scaled and rounded boxes [n, 4] before the crop (integers), and the numbers used. */
  readonly scaled: { readonly boxes: Float32Array; readonly geometry: VideoBoxScale };
  readonly final: VideoFrameBoxes;
}

/**
 * The release's key for a video name: Python `video.split('.')[-2]`, i.e. the text between the
 * second-to-last dot (or the start) and the last dot. For "clip.mkv" that is the stem "clip", for
 * "dir/clip.mkv" it is "dir/clip", but for "a.b.mkv" it is "b" (not "a.b") and for "./v/clip.mkv"
 * it is "/v/clip": reproduced as the release computes it. Null when the name has no dot (the
 * release raises IndexError).
 */
export function videoKey(video: string): string | null {
  const parts = video.split('.');
  return parts.length >= 2 ? parts[parts.length - 2]! : null;
}

/** The release's video extension: `video.split('.')[-1]` (null without a dot). */
export function videoExtension(video: string): string | null {
  const parts = video.split('.');
  return parts.length >= 2 ? parts[parts.length - 1]! : null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/**
 * Parse the release's video box JSON (`text` from `path`, named in messages) into a map from
 * videoKey(item.video) to its frame entries as Detections, in order. Every entry is validated.
 */
export function parseVideoBoxJson(text: string, path: string): Map<string, Detections[]> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message})`, path);
  }
  if (!Array.isArray(doc)) {
    throw new InputError(`${path}: expected a JSON list of {"video", "frames": [{boxes, labels, scores}, ...]}, got ${show(doc)}`, path);
  }
  const index = new Map<string, Detections[]>();
  doc.forEach((entry: unknown, i) => {
    if (!isObject(entry)) throw new InputError(`${path}: entry ${i}: expected an object with "video" and "frames", got ${show(entry)}`, path);
    const video = entry['video'];
    if (typeof video !== 'string') throw new InputError(`${path}: entry ${i}: "video" must be a string, got ${show(video)}`, path);
    const key = videoKey(video);
    if (key === null) {
      throw new InputError(`${path}: entry ${i}: "video" ${show(video)} has no extension (the release keys entries by video.split('.')[-2])`, path);
    }
    const frames = entry['frames'];
    if (!Array.isArray(frames)) throw new InputError(`${path}: entry ${i} (${show(video)}): "frames" must be a list, got ${show(frames)}`, path);
    const dets = frames.map((f: unknown, j) => {
      const what = `${path}: entry ${i} (${show(video)}) frames[${j}]`;
      try {
        return parseBoxJson(JSON.stringify(f), what);
      } catch (e) {
        if (e instanceof InputError) throw new InputError(e.message, path);
        throw e;
      }
    });
    index.set(key, dets); // the release's dict comprehension: a later entry replaces an earlier one
  });
  return index;
}

/**
 * Read and validate a video box file (see parseVideoBoxJson). The file reader is imported here
 * (Node only) so that the rest of this module stays free of file-system code, as boxes.ts.
 */
export async function readVideoBoxFile(path: string): Promise<Map<string, Detections[]>> {
  const { readTextFile } = await import('../preprocess/box-file.js');
  return parseVideoBoxJson(await readTextFile(path, 'video box file'), path);
}

/**
 * The frame entries for the video `key` (the question file's video_name, i.e. videoKey of the
 * file name) from the box file at `path`: its first `numFrames` entries. InputError when the file
 * has no entry for it or fewer than numFrames entries (the release fails).
 */
export function videoBoxEntry(index: Map<string, Detections[]>, path: string, key: string, numFrames: number): Detections[] {
  const frames = index.get(key);
  if (frames === undefined) throw new InputError(`${path}: no entry for video ${show(key)} (keyed by video.split('.')[-2])`, path);
  if (frames.length < numFrames) {
    throw new InputError(`${path}: video ${show(key)} has ${frames.length} frame entries, need one per sampled frame (${numFrames})`, path);
  }
  return frames.slice(0, numFrames);
}

/** The padding offset adjust_padding_boxes adds (x, y): (h-w)//2 to x for portrait, (w-h)//2 to y for landscape. */
export function videoPadOffset(width: number, height: number): { dx: number; dy: number } {
  if (width > height) return { dx: 0, dy: Math.floor((width - height) / 2) };
  if (height > width) return { dx: Math.floor((height - width) / 2), dy: 0 };
  return { dx: 0, dy: 0 };
}

function paddedSize(g: VideoBoxGeometry): { w: number; h: number } {
  if (!g.pad) return { w: g.width, h: g.height };
  const s = Math.max(g.width, g.height);
  return { w: s, h: s };
}

/** adjust_short_resize_coordinates' scale and sizes, adjust_center_crop_box's offsets. */
export function videoBoxScale(width: number, height: number, size = VIDEO_BOX_SIZE): VideoBoxScale {
  const scale = size / Math.min(width, height);
  const newWidth = Math.trunc(width * scale);
  const newHeight = Math.trunc(height * scale);
  return { scale, newWidth, newHeight, cropX: Math.floor((newWidth - size) / 2), cropY: Math.floor((newHeight - size) / 2) };
}

function checkGeometry(g: VideoBoxGeometry): void {
  const name = g.name ? `${g.name}: ` : '';
  for (const [k, v] of [['width', g.width], ['height', g.height], ['size', g.size ?? VIDEO_BOX_SIZE]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new InputError(`${name}video box geometry: ${k} must be a positive integer, got ${v}`, g.name);
  }
  if (g.limit !== null && (!Number.isInteger(g.limit) || g.limit < 0)) {
    throw new InputError(`${name}video box geometry: limit must be a non-negative integer or null, got ${g.limit}`, g.name);
  }
}

/** One frame entry through every stage (see the file comment). */
export function videoBoxStages(det: Detections, geometry: VideoBoxGeometry): VideoBoxStages {
  checkGeometry(geometry);
  const S = geometry.size ?? VIDEO_BOX_SIZE;
  const { dx, dy } = geometry.pad ? videoPadOffset(geometry.width, geometry.height) : { dx: 0, dy: 0 };
  const shifted = shiftBoxes(det, dx, dy);
  const nms = nmsPerLabel(shifted, DEFAULT_IOU_THRESHOLD);
  const capApplied = geometry.limit !== null && nms.labels.length > geometry.limit;
  const capped = capApplied ? capPerLabel(nms, geometry.limit!, VIDEO_BOXES_PER_LABEL) : nms;
  const { w, h } = paddedSize(geometry);
  const sg = videoBoxScale(w, h, S);
  const scale32 = Math.fround(sg.scale);
  const scaled = capped.boxes.map((v) => roundHalfEven(Math.fround(v * scale32)));
  const crop = toCropSpace(capped, { padX: dx, padY: dy, paddedWidth: w, paddedHeight: h, size: S });
  const final: VideoFrameBoxes = {
    boxes: crop.boxes,
    labels: crop.placeholder ? [] : crop.labels,
    count: crop.count,
    placeholder: crop.placeholder,
  };
  return { shifted, nms, capApplied, capped, scaled: { boxes: scaled, geometry: sg }, final };
}

/**
 * Every frame entry of a video to its boxes in S space, entry j for sampled frame j (only the
 * first geometry.numFrames when given; fewer is an InputError).
 */
export function videoFrameBoxes(frames: readonly Detections[], geometry: VideoBoxGeometry): VideoFrameBoxes[] {
  const n = geometry.numFrames ?? frames.length;
  if (frames.length < n) {
    const name = geometry.name ? `${geometry.name}: ` : '';
    throw new InputError(`${name}${frames.length} frame entries of boxes, need one per sampled frame (${n})`, geometry.name);
  }
  return frames.slice(0, n).map((det) => videoBoxStages(det, geometry).final);
}
