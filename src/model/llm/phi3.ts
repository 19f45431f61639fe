// Phi-3: fused projections. `qkv_proj.weight` [(heads + 2*kvHeads)*headDim, H] holds the q rows,
// then the k rows, then the v rows; `gate_up_proj.weight` [2*intermediate, H] holds the gate
// rows, then the up rows (HF Phi3MLP: `gate, up = gate_up_proj(x).chunk(2, -1)`). No biases.

import { LayerLayout } from './layout.js';

export const phi3Layout: LayerLayout = {
  qkv(g, p, c, x, name) {
    const qn = c.heads * c.headDim;
    const kn = c.kvHeads * c.headDim;
    const y = p.linear(x, 'qkv_proj', qn + 2 * kn, c.hiddenSize, false, `${name}.qkv_proj`);
    const [q, k, v] = g.op('Split', [y, g.constI64([qn, kn, kn])], { axis: -1 }, { outputs: 3, name: `${name}.qkv` });
    return { q: q!, k: k!, v: v! };
  },
  gateUp(g, p, c, x, name) {
    const n = c.intermediateSize;
    const y = p.linear(x, 'gate_up_proj', 2 * n, c.hiddenSize, false, `${name}.gate_up_proj`);
    const [gate, up] = g.op('Split', [y, g.constI64([n, n])], { axis: -1 }, { outputs: 2, name: `${name}.gate_up` });
    return { gate: gate!, up: up! };
  },
  outBias() {
    return false;
  },
  linears: ['self_attn.qkv_proj', 'self_attn.o_proj', 'mlp.gate_up_proj', 'mlp.down_proj'],
};
