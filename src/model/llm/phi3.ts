// Phi-3: fused projections. `qkv_proj.weight` [(heads + 2*kvHeads)*headDim, H] holds the q rows,
// then the k rows, then the v rows; `gate_up_proj.weight` [2*intermediate, H] holds the gate
// rows, then the up rows (HF Phi3MLP: `gate, up = gate_up_proj(x).chunk(2, -1)`). No biases.

import { linear } from '../../graph/blocks.js';
import { LayerLayout } from './layout.js';

export const phi3Layout: LayerLayout = {
  qkv(g, p, c, x, name) {
    const qn = c.heads * c.headDim;
    const kn = c.kvHeads * c.headDim;
    const y = linear(g, x, p.take('qkv_proj.weight', [qn + 2 * kn, c.hiddenSize]), null, `${name}.qkv_proj`);
    const [q, k, v] = g.op('Split', [y, g.constI64([qn, kn, kn])], { axis: -1 }, { outputs: 3, name: `${name}.qkv` });
    return { q: q!, k: k!, v: v! };
  },
  gateUp(g, p, c, x, name) {
    const n = c.intermediateSize;
    const y = linear(g, x, p.take('gate_up_proj.weight', [2 * n, c.hiddenSize]), null, `${name}.gate_up_proj`);
    const [gate, up] = g.op('Split', [y, g.constI64([n, n])], { axis: -1 }, { outputs: 2, name: `${name}.gate_up` });
    return { gate: gate!, up: up! };
  },
  outBias() {
    return false;
  },
};
