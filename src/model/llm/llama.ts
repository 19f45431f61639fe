// LLaMA family (Vicuna, LLaMA-3, Yi): separate q/k/v/o and gate/up/down projections, with
// optional biases (`attention_bias`, `mlp_bias`).

import { Graph, Value } from '../../graph/graph.js';
import { linear } from '../../graph/blocks.js';
import { Params } from '../params.js';
import { LlmConfig } from './config.js';
import { LayerLayout } from './layout.js';

function proj(g: Graph, p: Params, key: string, out: number, inp: number, bias: boolean, x: Value, name: string): Value {
  return linear(g, x, p.take(`${key}.weight`, [out, inp]), bias ? p.take(`${key}.bias`, [out]) : null, `${name}.${key}`);
}

export const llamaLayout: LayerLayout = {
  qkv(g, p, c: LlmConfig, x, name) {
    const b = c.attentionBias;
    return {
      q: proj(g, p, 'q_proj', c.heads * c.headDim, c.hiddenSize, b, x, name),
      k: proj(g, p, 'k_proj', c.kvHeads * c.headDim, c.hiddenSize, b, x, name),
      v: proj(g, p, 'v_proj', c.kvHeads * c.headDim, c.hiddenSize, b, x, name),
    };
  },
  gateUp(g, p, c, x, name) {
    return {
      gate: proj(g, p, 'gate_proj', c.intermediateSize, c.hiddenSize, c.mlpBias, x, name),
      up: proj(g, p, 'up_proj', c.intermediateSize, c.hiddenSize, c.mlpBias, x, name),
    };
  },
  outBias(c, which) {
    return which === 'o_proj' ? c.attentionBias : c.mlpBias;
  },
};
