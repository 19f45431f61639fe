// Object features: the release resizes ConvNeXt stages 1-3 bilinearly to stage-0 size,
// concatenates them with stage 0 ([1, sum C, H0, W0]; 2880 x 192 x 192 for ConvNeXt-L), runs
// torchvision roi_align(output 56, spatial_scale H0/768, adaptive sampling, aligned=False) and
// takes the mean over the 56x56 bins: [k, sum C].
//
// Every step is linear in the features, and both the bilinear resize and each RoIAlign
// sample's bilinear weights factor into a row part times a column part. So for each box the
// whole chain collapses to rank-one weights over each stage's own pixels:
//   pooled_l[k, c] = sum_{h,w} A_l[k, h] * B_l[k, w] * F_l[c, h, w]
// We build A_l, B_l here (O(k * 56 * samples) work) and the engine does one MatMul per stage,
// F_l [C_l, H_l*W_l] @ W_l^T [H_l*W_l, k]. Same numbers as the reference up to float
// summation order, without the 2880x192x192 map or the k x 2880 x 56 x 56 bins.

import { Graph, Value } from '../graph/graph.js';
import { reshape } from '../graph/blocks.js';
import { F32Tensor } from '../core/tensor.js';

export interface RoiOptions {
  /** RoIAlign output size (56 in the release). */
  outputSize: number;
  /** Box coordinates -> stage-0 pixels (H0 / 768 in the release). */
  spatialScale: number;
}

/**
 * Row weights of one box for torchvision roi_align (aligned=False, adaptive sampling) followed
 * by the mean over bins, along one axis of a map of `size` pixels: [size], sums to <= 1.
 */
function roiAxisWeights(lo: number, hi: number, size: number, o: RoiOptions): Float64Array {
  const P = o.outputSize;
  const start = lo * o.spatialScale;
  const extent = Math.max(hi * o.spatialScale - start, 1); // aligned=False: at least one pixel
  const bin = extent / P;
  const grid = Math.max(Math.ceil(extent / P), 1); // sampling_ratio=-1: adaptive
  const w = new Float64Array(size);
  const unit = 1 / (P * grid);
  for (let p = 0; p < P; p++) {
    for (let i = 0; i < grid; i++) {
      let y = start + p * bin + ((i + 0.5) * bin) / grid;
      if (y < -1 || y > size) continue; // sample outside the map contributes 0
      if (y <= 0) y = 0;
      let low = Math.floor(y);
      let high: number;
      if (low >= size - 1) {
        low = high = size - 1;
        y = low;
      } else {
        high = low + 1;
      }
      const frac = y - low;
      w[low]! += (1 - frac) * unit;
      w[high]! += frac * unit;
    }
  }
  return w;
}

/**
 * Transpose of PyTorch's bilinear resize (align_corners=False) from `inSize` to `outSize`:
 * maps weights over output pixels [outSize] to weights over input pixels [inSize].
 */
function resizeAxisTranspose(wOut: Float64Array, inSize: number): Float64Array {
  const outSize = wOut.length;
  if (inSize === outSize) return wOut;
  const scale = inSize / outSize;
  const wIn = new Float64Array(inSize);
  for (let d = 0; d < outSize; d++) {
    const v = wOut[d]!;
    if (v === 0) continue;
    const src = Math.max(scale * (d + 0.5) - 0.5, 0);
    const i0 = Math.floor(src);
    const i1 = i0 < inSize - 1 ? i0 + 1 : i0;
    const l1 = src - i0;
    wIn[i0]! += v * (1 - l1);
    wIn[i1]! += v * l1;
  }
  return wIn;
}

/**
 * W_l^T for each stage: [H_l * W_l, k] row-major, for boxes [k, 4] (x0, y0, x1, y1) in
 * image_size_aux pixels; `stageSizes` are [H_l, W_l], stage 0 first.
 */
export function boxPoolingWeights(boxes: Float32Array, stageSizes: readonly (readonly [number, number])[], o: RoiOptions): F32Tensor[] {
  const k = boxes.length / 4;
  const [H0, W0] = stageSizes[0]!;
  const outs = stageSizes.map(([h, w]) => ({ dims: [h * w, k], data: new Float32Array(h * w * k) }));
  for (let b = 0; b < k; b++) {
    const [x0, y0, x1, y1] = [boxes[4 * b]!, boxes[4 * b + 1]!, boxes[4 * b + 2]!, boxes[4 * b + 3]!];
    const rows0 = roiAxisWeights(y0, y1, H0, o);
    const cols0 = roiAxisWeights(x0, x1, W0, o);
    stageSizes.forEach(([h, w], l) => {
      const rows = resizeAxisTranspose(rows0, h);
      const cols = resizeAxisTranspose(cols0, w);
      const out = outs[l]!.data;
      for (let y = 0; y < h; y++) {
        const ry = rows[y]!;
        if (ry === 0) continue;
        for (let x = 0; x < w; x++) out[(y * w + x) * k + b] = ry * cols[x]!;
      }
    });
  }
  return outs;
}

/**
 * Graph part: stages [1, C_l, H_l, W_l] and weights W_l^T [H_l*W_l, k] -> pooled [k, sum C_l]
 * in the release's channel order (stage 0 first).
 */
export function pooledBoxFeatures(g: Graph, stages: readonly Value[], weights: readonly Value[], channels: readonly number[], sizes: readonly (readonly [number, number])[]): Value {
  const parts = stages.map((s, l) => {
    const [h, w] = sizes[l]!;
    const flat = reshape(g, s, [channels[l]!, h * w], `stage${l}.flat`);
    return g.op1('MatMul', [flat, weights[l]!], {}, { name: `pool${l}` }); // [C_l, k]
  });
  return g.op1('Transpose', [g.op1('Concat', parts, { axis: 0 })], { perm: [1, 0] }, { name: 'box_pooled' });
}
