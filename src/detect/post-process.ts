// HF `post_process_object_detection` for OWLv2 as the release calls it: for each patch the best
// query (max logit; the first on ties), score = sigmoid of it, kept when score > threshold;
// boxes cxcywh -> x0y0x1y1 and scaled by max(w, h) of the original image (OWLv2 pads to a
// square at the bottom/right, so the square's side is the scale for both axes). Every step in
// float32 as torch does it; kept boxes stay in patch order (not sorted by score).

const f32 = Math.fround;

export interface RawDetections {
  /** [N, Q] class logits of one image. */
  readonly logits: Float32Array;
  /** [N, 4] predicted boxes, cx, cy, w, h in 0..1. */
  readonly predBoxes: Float32Array;
  readonly queries: number;
}

export interface PostProcessed {
  /** [k, 4] x0, y0, x1, y1 in pixels of the original image (float32 values; may reach outside it). */
  readonly boxes: Float32Array;
  readonly scores: Float32Array;
  /** Query index of each box. */
  readonly labels: Int32Array;
  /** Patch index of each box. */
  readonly patches: Int32Array;
}

/** float32 sigmoid. */
export function sigmoid32(x: number): number {
  return f32(1 / (1 + Math.exp(-x)));
}

/**
 * `targetSize`: the side the 0..1 boxes are scaled to, max(width, height) of the original image
 * (the release passes target_sizes = [[max_wh, max_wh]]).
 */
export function postProcess(raw: RawDetections, threshold: number, targetSize: number): PostProcessed {
  const Q = raw.queries;
  const n = raw.predBoxes.length / 4;
  if (raw.logits.length !== n * Q) throw new Error(`postProcess: ${raw.logits.length} logits for ${n} boxes x ${Q} queries`);
  const thr = f32(threshold);
  const scale = f32(targetSize);
  const boxes: number[] = [];
  const scores: number[] = [];
  const labels: number[] = [];
  const patches: number[] = [];
  for (let p = 0; p < n; p++) {
    if (Q === 0) break;
    let best = 0;
    for (let q = 1; q < Q; q++) if (raw.logits[p * Q + q]! > raw.logits[p * Q + best]!) best = q;
    const score = sigmoid32(raw.logits[p * Q + best]!);
    if (!(score > thr)) continue;
    const [cx, cy, w, h] = [0, 1, 2, 3].map((i) => raw.predBoxes[p * 4 + i]!) as [number, number, number, number];
    const hw = f32(0.5 * w);
    const hh = f32(0.5 * h);
    boxes.push(f32(f32(cx - hw) * scale), f32(f32(cy - hh) * scale), f32(f32(cx + hw) * scale), f32(f32(cy + hh) * scale));
    scores.push(score);
    labels.push(best);
    patches.push(p);
  }
  return {
    boxes: Float32Array.from(boxes),
    scores: Float32Array.from(scores),
    labels: Int32Array.from(labels),
    patches: Int32Array.from(patches),
  };
}
