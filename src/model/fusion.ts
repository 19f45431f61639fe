// The Conv-Gate fusion (`fuse_module`, the release's DualPathFuseModule): merges the CLIP
// tokens L [B, N, C] (N = 24*24) with the last ConvNeXt stage H [B, Ch, 24, 24]:
//   h = slow_proj(gelu(slow_conv(H)))             1x1 convs Ch -> Ch -> C, as [B, N, C]
//   l = L + fast_proj(gelu(fast_conv(L)))          depthwise 7x7 then 1x1, on L as [B, C, 24, 24]
//   g = gate(mean_N(concat(l, h)))                 Linear 2C -> C/2, GELU, Linear C/2 -> 1
//   out = l + h * tanh(g)                          [B, N, C]

import { Graph, Value } from '../graph/graph.js';
import { conv2d, gelu, linear, reshape } from '../graph/blocks.js';
import { Params } from './params.js';

export interface FusionShape {
  /** CLIP width C */
  low: number;
  /** ConvNeXt last-stage width Ch */
  high: number;
  /** Side of the token grid (24) */
  grid: number;
}

export function fuseModule(g: Graph, p: Params, s: FusionShape, low: Value, high: Value): Value {
  const { low: C, high: Ch, grid } = s;
  const N = grid * grid;
  const half = Math.floor(C / 2); // nn.Linear(2C, C // 2)
  // High-resolution path -> [B, N, C]
  let h = conv2d(g, high, p.take('slow_conv.weight', [Ch, Ch, 1, 1]), p.take('slow_conv.bias', [Ch]), {}, 'slow_conv');
  h = conv2d(g, gelu(g, h), p.take('slow_proj.weight', [C, Ch, 1, 1]), p.take('slow_proj.bias', [C]), {}, 'slow_proj');
  h = g.op1('Transpose', [reshape(g, h, [0, C, N])], { perm: [0, 2, 1] }, { name: 'high_tokens' });
  // Low-resolution path with a residual, computed on the 2-D grid.
  const grid2d = reshape(g, g.op1('Transpose', [low], { perm: [0, 2, 1] }), [0, C, grid, grid]);
  let f = conv2d(g, grid2d, p.take('fast_conv.weight', [C, 1, 7, 7]), p.take('fast_conv.bias', [C]), { pad: 3, groups: C }, 'fast_conv');
  f = conv2d(g, gelu(g, f), p.take('fast_proj.weight', [C, C, 1, 1]), p.take('fast_proj.bias', [C]), {}, 'fast_proj');
  const l = g.op1('Add', [low, g.op1('Transpose', [reshape(g, f, [0, C, N])], { perm: [0, 2, 1] })], {}, { name: 'low_tokens' });
  // Gate from the token-mean of both paths: [B, 1, 2C] -> [B, 1, 1]
  const pooled = g.op1('ReduceMean', [g.op1('Concat', [l, h], { axis: -1 }), g.constI64([1])], { keepdims: 1 });
  const gate = linear(g, gelu(g, linear(g, pooled, p.take('gate.0.weight', [half, 2 * C]), p.take('gate.0.bias', [half]), 'gate.0')),
    p.take('gate.2.weight', [1, half]), p.take('gate.2.bias', [1]), 'gate.2');
  return g.op1('Add', [l, g.op1('Mul', [h, g.op1('Tanh', [gate])])], {}, { name: 'fused' });
}
