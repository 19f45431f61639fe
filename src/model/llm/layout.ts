// How one decoder layer's projections are stored in a checkpoint: the one place where LLaMA and
// Phi-3 differ (separate q/k/v and gate/up matrices vs fused ones). Everything else in the
// decoder is shared.

import { Graph, Value } from '../../graph/graph.js';
import { LlmConfig } from './config.js';
import { LlmParams } from './quantized.js';

export interface Projected {
  /** [1, S, heads*headDim] */
  q: Value;
  /** [1, S, kvHeads*headDim] */
  k: Value;
  /** [1, S, kvHeads*headDim] */
  v: Value;
}

export interface GateUp {
  /** [1, S, intermediate] each */
  gate: Value;
  up: Value;
}

export interface LayerLayout {
  /** x [1, S, H] -> q, k, v before rotary. `p` is under `model.layers.{i}.self_attn.`. */
  qkv(g: Graph, p: LlmParams, c: LlmConfig, x: Value, name: string): Projected;
  /** x [1, S, H] -> gate, up projections. `p` is under `model.layers.{i}.mlp.`. */
  gateUp(g: Graph, p: LlmParams, c: LlmConfig, x: Value, name: string): GateUp;
  /** Whether o_proj / down_proj carry biases. */
  outBias(c: LlmConfig, which: 'o_proj' | 'down_proj'): boolean;
  /**
   * Every Linear module of a layer, relative to `model.layers.{i}.` (`self_attn.q_proj`, ...):
   * the matrices `mgllava quantize` quantizes.
   */
  linears: readonly string[];
}
