// The inputs every side of the benchmark gets: boxes for the object features, and the
// 666-token multimodal prompt (text ids + 576 image tokens + box tokens), deterministic.

import { Workload } from './presets.js';

/** 32-bit LCG in [0, 1). */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * k boxes [x0, y0, x1, y1] in `side`-pixel coordinates: random sizes from 8 px to half the image,
 * every fifth one touching an image border, one degenerate (zero-size) box.
 */
export function benchBoxes(k: number, side = 768, seed = 3): Float32Array {
  const r = lcg(seed);
  const out = new Float32Array(4 * k);
  for (let i = 0; i < k; i++) {
    const w = 8 + r() * (side / 2 - 8);
    const h = 8 + r() * (side / 2 - 8);
    let x0 = r() * (side - w);
    let y0 = r() * (side - h);
    if (i % 5 === 0) [x0, y0] = i % 10 === 0 ? [0, y0] : [x0, side - h];
    out.set(i === 1 ? [x0, y0, x0, y0] : [x0, y0, x0 + w, y0 + h], 4 * i);
  }
  return out;
}

export interface PromptLayout {
  /** Text ids before `<image>` (BOS first). */
  before: number[];
  imageTokens: number;
  boxTokens: number;
  /** Text ids after `<image>`. */
  after: number[];
}

/** 576 image tokens, `promptBoxes` box tokens and text ids (2/3 before, 1/3 after) summing to promptTokens. */
export function promptLayout(w: Workload, vocab: number, bos = 1): PromptLayout {
  const imageTokens = 576;
  const text = w.promptTokens - imageTokens - w.promptBoxes;
  if (text < 2) throw new Error(`a ${w.promptTokens}-token prompt has no room for text beside ${imageTokens} image and ${w.promptBoxes} box tokens`);
  const r = lcg(11);
  const id = () => 3 + Math.floor(r() * (Math.min(vocab, 32000) - 3));
  const nBefore = Math.ceil((2 * text) / 3);
  return {
    before: [bos, ...Array.from({ length: nBefore - 1 }, id)],
    imageTokens,
    boxTokens: w.promptBoxes,
    after: Array.from({ length: text - nBefore }, id),
  };
}

/**
 * The same prompt as token ids only, for a peer that takes no embeddings: the image and box
 * positions get ordinary ids (the work per position is the same).
 */
export function promptIds(p: PromptLayout, vocab: number): number[] {
  const r = lcg(13);
  const visual = Array.from({ length: p.imageTokens + p.boxTokens }, () => 3 + Math.floor(r() * (Math.min(vocab, 32000) - 3)));
  return [...p.before, ...visual, ...p.after];
}
