// LLaMA family (Vicuna, LLaMA-3, Yi): separate q/k/v/o and gate/up/down projections, with
// optional biases (`attention_bias`, `mlp_bias`).

import { LlmConfig } from './config.js';
import { LayerLayout } from './layout.js';

export const llamaLayout: LayerLayout = {
  qkv(_g, p, c: LlmConfig, x, name) {
    const b = c.attentionBias;
    return {
      q: p.linear(x, 'q_proj', c.heads * c.headDim, c.hiddenSize, b, `${name}.q_proj`),
      k: p.linear(x, 'k_proj', c.kvHeads * c.headDim, c.hiddenSize, b, `${name}.k_proj`),
      v: p.linear(x, 'v_proj', c.kvHeads * c.headDim, c.hiddenSize, b, `${name}.v_proj`),
    };
  },
  gateUp(_g, p, c, x, name) {
    return {
      gate: p.linear(x, 'gate_proj', c.intermediateSize, c.hiddenSize, c.mlpBias, `${name}.gate_proj`),
      up: p.linear(x, 'up_proj', c.intermediateSize, c.hiddenSize, c.mlpBias, `${name}.up_proj`),
    };
  },
  outBias(c, which) {
    return which === 'o_proj' ? c.attentionBias : c.mlpBias;
  },
  linears: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'],
};
