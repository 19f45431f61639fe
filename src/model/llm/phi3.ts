// Phi-3: fused projections. `qkv_proj.weight` [(heads + 2*kvHeads)*headDim, H] holds the q rows,
// then the k rows, then the v rows; `gate_up_proj.weight` [2*intermediate, H] holds the gate
// rows, then the up rows (HF Phi3MLP: `gate, up = gate_up_proj(x).chunk(2, -1)`). No biases.

import { LayerLayout } from './layout.js';

export const phi3Layout: LayerLayout = {
  qkv(_g, p, c, x, name) {
    const qn = c.heads * c.headDim;
    const kn = c.kvHeads * c.headDim;
    const [q, k, v] = p.linearParts(x, 'qkv_proj', [qn, kn, kn], c.hiddenSize, `${name}.qkv`);
    return { q: q!, k: k!, v: v! };
  },
  gateUp(_g, p, c, x, name) {
    const n = c.intermediateSize;
    const [gate, up] = p.linearParts(x, 'gate_up_proj', [n, n], c.hiddenSize, `${name}.gate_up`);
    return { gate: gate!, up: up! };
  },
  outBias() {
    return false;
  },
  linears: ['self_attn.qkv_proj', 'self_attn.o_proj', 'mlp.gate_up_proj', 'mlp.down_proj'],
};
