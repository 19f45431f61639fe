// Parameters and multiply-accumulates per image of an MG-LLaVA spec, per part, counted from the
// layer shapes (the ablation table's "params" and "FLOPs per image"; FLOPs = 2 x MACs). Counted:
// every matrix product and convolution; not counted: norms, activations, softmax, additions.

import { NewModelSpec } from '../src/train/init-model.js';

export interface PartCost {
  params: number;
  macs: number;
}

export interface ImageCost {
  clip: PartCost;
  convnext: PartCost;
  fusion: PartCost;
  projector: PartCost;
  /** per image with `boxes` objects: pooling (linear maps over the stages) + bbox_projector */
  objects: PartCost;
  /** the LLM's prefill work on the visual positions (image tokens + object tokens) */
  llmVisual: PartCost;
  visualTokens: number;
}

export function imageCost(s: NewModelSpec, o: { fusion: boolean; objects: boolean; boxes: number }): ImageCost {
  const c = s.clip;
  const g = c.imageSize / c.patchSize;
  const N = g * g;
  const T = N + 1;
  const C = c.hidden;
  const used = c.layers + (s.visualSelectLayer ?? -2) + 1;
  const clipLayer = 4 * C * C + 2 * C * c.intermediate;
  const clip: PartCost = {
    params: 3 * c.patchSize ** 2 * C + T * C + C + c.layers * (clipLayer + 9 * C + c.intermediate) + 4 * C,
    macs: N * C * 3 * c.patchSize ** 2 + used * (T * clipLayer + 2 * T * T * C),
  };
  const { dims, depths } = s.convnext;
  const S = s.imageSizeAux;
  let cp = 48 * dims[0] + 3 * dims[0];
  let cm = (S / 4) ** 2 * dims[0] * 48;
  dims.forEach((d, i) => {
    const side = S / 2 ** (i + 2);
    if (i > 0) {
      cp += 4 * d * dims[i - 1]! + d + 2 * dims[i - 1]!;
      cm += side * side * d * dims[i - 1]! * 4;
    }
    cp += depths[i]! * (49 * d + 8 * d * d + 8 * d);
    cm += depths[i]! * side * side * (49 * d + 8 * d * d);
  });
  const needConv = o.fusion || o.objects;
  const convnext: PartCost = needConv ? { params: cp, macs: cm } : { params: 0, macs: 0 };
  const Ch = dims[3];
  const half = Math.floor(C / 2);
  const fusion: PartCost = o.fusion
    ? { params: Ch * Ch + Ch + C * Ch + C + 49 * C + C + C * C + C + 2 * C * half + half + half + 1, macs: N * (Ch * Ch + C * Ch + 49 * C + C * C) + 2 * C * half + half }
    : { params: 0, macs: 0 };
  const H = s.llm.hidden;
  const depth = s.projectorDepth ?? 2;
  const projector: PartCost = { params: C * H + H + (depth - 1) * (H * H + H), macs: N * (C * H + (depth - 1) * H * H) };
  const sumC = dims.reduce((a, b) => a + b, 0);
  const k = o.objects ? o.boxes : 0;
  const pool = dims.reduce((a, d, i) => a + (S / 2 ** (i + 2)) ** 2 * d, 0);
  const objects: PartCost = o.objects
    ? { params: sumC * H + H + (depth - 1) * (H * H + H), macs: k * (pool + sumC * H + (depth - 1) * H * H) }
    : { params: 0, macs: 0 };
  const l = s.llm;
  const hd = H / l.heads;
  const perToken = l.layers * (2 * H * H + 2 * H * l.kvHeads * hd + 3 * H * l.intermediate);
  const visualTokens = N + k;
  // attention over the visual positions themselves (causal: ~half the square), q.k and p.v
  const attn = l.layers * visualTokens * visualTokens * H;
  const llmVisual: PartCost = { params: 0, macs: visualTokens * perToken + attn };
  return { clip, convnext, fusion, projector, objects, llmVisual, visualTokens };
}

/** The LLM's parameters (embeddings, layers, head). */
export function llmParams(s: NewModelSpec, vocab: number): number {
  const l = s.llm;
  const H = l.hidden;
  const hd = H / l.heads;
  return 2 * vocab * H + H + l.layers * (2 * H * H + 2 * H * l.kvHeads * hd + 3 * H * l.intermediate + 2 * H);
}
