// The release's box pipeline (mg_llava/evaluation/mg_llava_proxy_eval_dataset.py with the helpers
// in mg_llava/dataset/utils.py), from detector boxes in original-image pixels to boxes in the
// S x S (768) crop that RoIAlign reads:
//   1. shift by the expand2square offset (Python numbers, then a float32 tensor);
//   2. NMS per label (torchvision batched_nms, IoU > 0.2 suppresses, float32 arithmetic, areas
//      without +1), kept boxes of all labels ordered by descending score; the IoU is a float32
//      compared with the double 0.2, so an IoU of exactly 1/5 (float32 0.2000000030) suppresses;
//   3. cap (limit_num, 100 in every released config): if more boxes than the limit remain, each
//      label keeps its top `perLabel` (20 when limit > 50, else 5), labels grouped in order of
//      first appearance;
//   4. scale by S / short side of the padded image in float32, round half to even (torch.round);
//   5. subtract the centre-crop offset as the release computes it, clamp to [0, S], drop boxes
//      wholly outside;
//   6. none left: a single [0, 0, 0, 0] box.
// Every step mirrors the reference's arithmetic (float64 where Python does it, float32 where
// torch does) so the integer results match exactly.

import { InputError } from '../core/errors.js';

/**
 * Detections as the detector or the box file gives them, in original-image pixels: boxes [n, 4]
 * as x0, y0, x1, y1, kept exact (float64) because the release adds the padding offset to Python
 * numbers before torch rounds them to float32.
 */
export interface Detections {
  readonly boxes: Float64Array;
  readonly labels: readonly string[];
  readonly scores: Float64Array;
}

/** Boxes [n, 4] (x0, y0, x1, y1) as the reference's float32 tensors, one label and score per box. */
export interface BoxSet {
  readonly boxes: Float32Array;
  readonly labels: readonly string[];
  readonly scores: Float32Array;
}

/** The part of the image geometry (clip-image.ts ClipGeometry) that boxes depend on. */
export interface BoxGeometry {
  /** Offset of the original image inside the padded square. */
  readonly padX: number;
  readonly padY: number;
  /** Size of the (padded) image that the CLIP processor received. */
  readonly paddedWidth: number;
  readonly paddedHeight: number;
  /** S: the crop side (image_size_aux). */
  readonly size: number;
}

export interface PreparedBoxes extends BoxSet {
  /** Number of boxes k; boxes is [k, 4] in S-pixel coordinates (integers), ready for RoIAlign. */
  readonly count: number;
  /**
   * True when no box survived and the single [0,0,0,0] box was substituted. The release gives
   * that box no label at all (labels = []); here it has label '' and score 0 so that the arrays
   * keep one entry per box. The model still receives one box token for it, as in the release.
   */
  readonly placeholder: boolean;
}

export interface BoxOptions {
  /** NMS IoU threshold (release default 0.2); IoU strictly greater suppresses. */
  iouThreshold?: number;
  /** limit_num: cap applied when more boxes remain after NMS; default 100, null for no cap. */
  limit?: number | null;
  /** Boxes kept per label when capping; default the release's rule (limit > 50 ? 20 : 5). */
  perLabel?: number;
}

export const DEFAULT_IOU_THRESHOLD = 0.2;
export const DEFAULT_BOX_LIMIT = 100;

const f32 = Math.fround;

/**
 * Parse the release's per-image box JSON: {"boxes": [[x0,y0,x1,y1], ...], "labels": [...],
 * "scores": [...]} in original-image pixels. `name` (the file) is used in error messages.
 */
export function parseBoxJson(text: string, name: string): Detections {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${name}: not valid JSON (${(e as Error).message})`, name);
  }
  return detectionsFromObject(doc, name);
}

/**
 * The same for a value already parsed: {boxes: [[x0,y0,x1,y1], ...], labels, scores} -> Detections
 * (flat float64 boxes), checked the same way. `name` says where the value came from in errors.
 */
export function detectionsFromObject(doc: unknown, name: string): Detections {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new InputError(`${name}: expected an object with "boxes", "labels" and "scores"`, name);
  }
  const o = doc as Record<string, unknown>;
  for (const key of ['boxes', 'labels', 'scores']) {
    if (!Array.isArray(o[key])) throw new InputError(`${name}: "${key}" must be an array`, name);
  }
  const boxes = o['boxes'] as unknown[];
  const labels = o['labels'] as unknown[];
  const scores = o['scores'] as unknown[];
  if (labels.length !== boxes.length || scores.length !== boxes.length) {
    throw new InputError(
      `${name}: ${boxes.length} boxes but ${labels.length} labels and ${scores.length} scores (need one each per box)`,
      name,
    );
  }
  const n = boxes.length;
  const out = new Float64Array(n * 4);
  const outScores = new Float64Array(n);
  const outLabels: string[] = [];
  for (let i = 0; i < n; i++) {
    const b = boxes[i];
    if (!Array.isArray(b) || b.length !== 4) {
      throw new InputError(`${name}: boxes[${i}] must be [x0, y0, x1, y1], got ${JSON.stringify(b)}`, name);
    }
    for (let c = 0; c < 4; c++) {
      const v: unknown = b[c];
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        throw new InputError(`${name}: boxes[${i}][${c}] is not a number: ${JSON.stringify(v)}`, name);
      }
      out[i * 4 + c] = v;
    }
    if (out[i * 4 + 2]! < out[i * 4]! || out[i * 4 + 3]! < out[i * 4 + 1]!) {
      throw new InputError(`${name}: boxes[${i}] = ${JSON.stringify(b)} has x1 < x0 or y1 < y0 (expected x0, y0, x1, y1)`, name);
    }
    const label: unknown = labels[i];
    if (typeof label !== 'string') throw new InputError(`${name}: labels[${i}] is not a string: ${JSON.stringify(label)}`, name);
    const score: unknown = scores[i];
    if (typeof score !== 'number' || !Number.isFinite(score)) {
      throw new InputError(`${name}: scores[${i}] is not a number: ${JSON.stringify(score)}`, name);
    }
    outLabels.push(label);
    outScores[i] = score;
  }
  return { boxes: out, labels: outLabels, scores: outScores };
}

/**
 * Step 1: add the padding offset in float64, then round to float32 (the release shifts Python
 * numbers, then makes a float32 tensor; scores become float32 the same way).
 */
export function shiftBoxes(det: Detections, dx: number, dy: number): BoxSet {
  const src = det.boxes;
  const n = det.labels.length;
  const boxes = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) {
    boxes[i * 4] = src[i * 4]! + dx;
    boxes[i * 4 + 1] = src[i * 4 + 1]! + dy;
    boxes[i * 4 + 2] = src[i * 4 + 2]! + dx;
    boxes[i * 4 + 3] = src[i * 4 + 3]! + dy;
  }
  return { boxes, labels: det.labels, scores: Float32Array.from(det.scores) };
}

/** Indices sorted by descending score; ties keep input order (torchvision does not promise one). */
function byScore(scores: Float32Array, idx: number[]): number[] {
  return idx.sort((a, b) => scores[b]! - scores[a]! || a - b);
}

/** Step 2: greedy NMS within each label, torchvision's float32 IoU; output by descending score. */
export function nmsPerLabel(set: BoxSet, iouThreshold = DEFAULT_IOU_THRESHOLD): BoxSet {
  const { boxes: b, labels, scores } = set;
  const n = labels.length;
  const order = byScore(scores, Array.from({ length: n }, (_, i) => i));
  const area = new Float32Array(n);
  for (let i = 0; i < n; i++) area[i] = f32(f32(b[i * 4 + 2]! - b[i * 4]!) * f32(b[i * 4 + 3]! - b[i * 4 + 1]!));
  // batched_nms never compares boxes of different labels; group the score order by label.
  const groups = new Map<string, number[]>();
  for (const i of order) {
    const g = groups.get(labels[i]!);
    if (g) g.push(i);
    else groups.set(labels[i]!, [i]);
  }
  const keep = new Uint8Array(n);
  for (const g of groups.values()) {
    const suppressed = new Uint8Array(g.length);
    for (let p = 0; p < g.length; p++) {
      if (suppressed[p]) continue;
      const i = g[p]!;
      keep[i] = 1;
      for (let q = p + 1; q < g.length; q++) {
        if (suppressed[q]) continue;
        const j = g[q]!;
        const w = Math.max(0, f32(Math.min(b[i * 4 + 2]!, b[j * 4 + 2]!) - Math.max(b[i * 4]!, b[j * 4]!)));
        const h = Math.max(0, f32(Math.min(b[i * 4 + 3]!, b[j * 4 + 3]!) - Math.max(b[i * 4 + 1]!, b[j * 4 + 1]!)));
        const inter = f32(w * h);
        const iou = f32(inter / f32(f32(area[i]! + area[j]!) - inter));
        if (iou > iouThreshold) suppressed[q] = 1; // NaN (two empty boxes) never suppresses
      }
    }
  }
  return select(set, order.filter((i) => keep[i]));
}

/** The release's per-category count for a limit_num (it leaves 50 undefined; 5 is used here). */
export function releasePerLabel(limit: number): number {
  return limit > 50 ? 20 : 5;
}

/**
 * Step 3: if more than `limit` boxes, keep each label's top `perLabel` by score; the result lists
 * labels in order of first appearance, each label's boxes in descending score. Otherwise unchanged.
 */
export function capPerLabel(set: BoxSet, limit: number, perLabel = releasePerLabel(limit)): BoxSet {
  const n = set.labels.length;
  if (n <= limit) return set;
  const groups = new Map<string, number[]>();
  for (let i = 0; i < n; i++) {
    const g = groups.get(set.labels[i]!);
    if (g) g.push(i);
    else groups.set(set.labels[i]!, [i]);
  }
  const idx: number[] = [];
  for (const g of groups.values()) idx.push(...(g.length > perLabel ? byScore(set.scores, g).slice(0, perLabel) : g));
  return select(set, idx);
}

/** torch.round: round half to even. Exact for any double (x - floor(x) is exact below 2^52). */
export function roundHalfEven(x: number): number {
  const fl = Math.floor(x);
  const d = x - fl;
  if (d > 0.5) return fl + 1;
  if (d < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

/**
 * Steps 4-6: to S-pixel crop coordinates. The release computes the resized size as
 * int(side * (S / short)) in float64, which for some sides (47, 94, 147, ... for S = 768) gives
 * S - 1, so its crop offset becomes (S - 1 - S) // 2 = -1 and boxes move by one pixel although the
 * image itself is not cropped; this is reproduced on purpose (the fixtures and the trained model
 * follow the release).
 */
export function toCropSpace(set: BoxSet, geom: BoxGeometry): PreparedBoxes {
  const S = geom.size;
  const scale = S / Math.min(geom.paddedWidth, geom.paddedHeight);
  const scale32 = f32(scale); // a Python float multiplying a float32 tensor acts as float32
  const startX = Math.floor((Math.trunc(geom.paddedWidth * scale) - S) / 2);
  const startY = Math.floor((Math.trunc(geom.paddedHeight * scale) - S) / 2);
  const n = set.labels.length;
  const out: number[] = [];
  const idx: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = (c: number) => roundHalfEven(f32(set.boxes[i * 4 + c]! * scale32));
    const x0 = Math.max(r(0) - startX, 0);
    const y0 = Math.max(r(1) - startY, 0);
    const x1 = Math.min(r(2) - startX, S);
    const y1 = Math.min(r(3) - startY, S);
    if (x1 < 0 || y1 < 0 || x0 > S || y0 > S) continue;
    out.push(x0, y0, x1, y1);
    idx.push(i);
  }
  if (idx.length === 0) {
    return { boxes: new Float32Array(4), labels: [''], scores: new Float32Array(1), count: 1, placeholder: true };
  }
  return {
    boxes: Float32Array.from(out),
    labels: idx.map((i) => set.labels[i]!),
    scores: Float32Array.from(idx, (i) => set.scores[i]!),
    count: idx.length,
    placeholder: false,
  };
}

/** The whole pipeline: parsed detections in original-image pixels -> boxes for RoIAlign. */
export function prepareBoxes(raw: Detections, geom: BoxGeometry, opts: BoxOptions = {}): PreparedBoxes {
  checkDetections(raw);
  const limit = opts.limit === undefined ? DEFAULT_BOX_LIMIT : opts.limit;
  let set = shiftBoxes(raw, geom.padX, geom.padY);
  set = nmsPerLabel(set, opts.iouThreshold ?? DEFAULT_IOU_THRESHOLD);
  if (limit !== null) set = capPerLabel(set, limit, opts.perLabel ?? releasePerLabel(limit));
  return toCropSpace(set, geom);
}

/**
 * Detections handed in through the library (plain JavaScript can pass anything): flat boxes, 4
 * finite numbers per label, one score per label. Nested [[x0, y0, x1, y1], ...] boxes would read
 * as NaN and give object tokens of nothing, so they are refused with the way to convert them.
 */
function checkDetections(raw: Detections): void {
  const n = raw.labels?.length;
  const flat = raw.boxes as unknown as ArrayLike<unknown> | undefined;
  if (n === undefined || flat === undefined || typeof flat.length !== 'number') {
    throw new InputError('detections: expected {boxes, labels, scores}');
  }
  if (n > 0 && Array.isArray(flat[0])) {
    throw new InputError('detections: "boxes" must be flat (x0, y0, x1, y1 per box), not a list of boxes; detectionsFromObject() converts the JSON form');
  }
  if (flat.length !== 4 * n || (raw.scores?.length ?? -1) !== n) {
    throw new InputError(`detections: ${n} labels need ${4 * n} box numbers and ${n} scores, got ${flat.length} and ${raw.scores?.length ?? 'none'}`);
  }
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new InputError(`detections: box number ${i} is not a finite number: ${String(v)}`);
  }
}

function select(set: BoxSet, idx: readonly number[]): BoxSet {
  const boxes = new Float32Array(idx.length * 4);
  idx.forEach((i, k) => boxes.set(set.boxes.subarray(i * 4, i * 4 + 4), k * 4));
  return { boxes, labels: idx.map((i) => set.labels[i]!), scores: Float32Array.from(idx, (i) => set.scores[i]!) };
}
