// What `npm run bench` measures: the model shapes of each preset and the workload.
//
// full:  MG-LLaVA-7B (CLIP ViT-L/14-336 + ConvNeXt-L at 768 + a Vicuna-7B-shaped LLM) and
//        MG-LLaVA-3.8B (the same vision side + a Phi-3-mini-shaped LLM).
// small: the same two models with small widths and few layers (a quick regression check that
//        runs every comparison in under 3 minutes on 2 cores).
// tiny:  the repository's tiny fixture (fixtures/tiny), for the plumbing test; nothing is written.

import { RandomModelShape, REAL_7B_SHAPE } from '../test/helpers/random-model.js';
import { LlmShape } from './llm-files.js';

export interface BenchModel {
  /** Key in the report ('7b', '3.8b', ...). */
  name: string;
  title: string;
  vision: RandomModelShape;
  llm: LlmShape;
}

export interface Workload {
  /** Boxes of object features in the vision encode. */
  boxes: number;
  /** Prompt length: text tokens + 576 image tokens + box tokens. */
  promptTokens: number;
  /** Object tokens inside the prompt (the rest of the non-image tokens are text). */
  promptBoxes: number;
  /** Tokens generated after the prompt. */
  decodeTokens: number;
  /** Timed repetitions of the vision encode (median reported). */
  visionRuns: number;
  /**
   * Rounds of the LLM measurements: each round runs ours, then llama.cpp with flash attention
   * off and on, each in a fresh process; every side reports the best of its rounds per measure
   * (decode on this VM moves by a third between runs, for both sides alike).
   */
  llmRounds: number;
}

export interface Preset {
  name: 'full' | 'small' | 'tiny';
  models: BenchModel[];
  workload: Workload;
}

const WORKLOAD: Workload = { boxes: 100, promptTokens: 666, promptBoxes: 60, decodeTokens: 128, visionRuns: 3, llmRounds: 2 };

const VICUNA_7B: LlmShape = {
  arch: 'llama', hidden: 4096, layers: 32, heads: 32, kvHeads: 32, intermediate: 11008, vocab: 32000, maxPositions: 4096,
};
const PHI3_MINI: LlmShape = {
  arch: 'phi3', hidden: 3072, layers: 32, heads: 32, kvHeads: 32, intermediate: 8192, vocab: 32064, maxPositions: 4096, slidingWindow: 2047,
};

const SMALL_VISION: RandomModelShape = {
  clip: { width: 256, layers: 4, heads: 4, mlp: 1024, act: 'quick_gelu' },
  convnext: { dims: [64, 128, 256, 512], depths: [1, 1, 3, 1] },
  llmWidth: 512,
};

export const PRESETS: Record<Preset['name'], Preset> = {
  full: {
    name: 'full',
    workload: WORKLOAD,
    models: [
      { name: '7b', title: 'MG-LLaVA-7B (CLIP-L/14-336 + ConvNeXt-L + Vicuna-7B shape)', vision: REAL_7B_SHAPE, llm: VICUNA_7B },
      { name: '3.8b', title: 'MG-LLaVA-3.8B (CLIP-L/14-336 + ConvNeXt-L + Phi-3-mini shape)', vision: { ...REAL_7B_SHAPE, llmWidth: 3072 }, llm: PHI3_MINI },
    ],
  },
  small: {
    name: 'small',
    workload: { ...WORKLOAD, visionRuns: 2, llmRounds: 1 },
    models: [
      {
        name: 'small-llama', title: 'small: CLIP 256x4 + ConvNeXt 64-512 + LLaMA 512x4',
        vision: SMALL_VISION,
        llm: { arch: 'llama', hidden: 512, layers: 4, heads: 8, kvHeads: 8, intermediate: 1376, vocab: 32000, maxPositions: 4096 },
      },
      {
        name: 'small-phi3', title: 'small: CLIP 256x4 + ConvNeXt 64-512 + Phi-3 384x4',
        vision: { ...SMALL_VISION, llmWidth: 384 },
        llm: { arch: 'phi3', hidden: 384, layers: 4, heads: 6, kvHeads: 6, intermediate: 1024, vocab: 32064, maxPositions: 4096, slidingWindow: 2047 },
      },
    ],
  },
  // The tiny fixture's own folders are used as they are (orchestrate.ts); these are their shapes.
  tiny: {
    name: 'tiny',
    workload: { ...WORKLOAD, boxes: 8, decodeTokens: 8, visionRuns: 1, llmRounds: 2 },
    models: [
      {
        name: 'tiny', title: 'tiny fixture (fixtures/tiny/mgllava)',
        vision: { clip: { width: 32, layers: 3, heads: 4, mlp: 64, act: 'quick_gelu' }, convnext: { dims: [8, 16, 24, 32], depths: [1, 1, 2, 1] }, llmWidth: 16 },
        llm: { arch: 'llama', hidden: 16, layers: 2, heads: 2, kvHeads: 1, intermediate: 48, vocab: 32000, maxPositions: 2048 },
      },
    ],
  },
};
