// `projector` and `bbox_projector`: Linear, then (GELU, Linear) x (depth - 1); checkpoint keys
// model.0, model.2, ... (the GELUs sit at the odd indices). Vision width -> LLM width.

import { Graph, Value } from '../graph/graph.js';
import { gelu, linear } from '../graph/blocks.js';
import { InputError } from '../core/errors.js';
import { Params } from './params.js';
import { WeightStore } from '../weights/types.js';

/** [..., inDim] -> [..., outDim] */
export function projector(g: Graph, p: Params, depth: number, inDim: number, outDim: number, x: Value, name: string): Value {
  if (depth < 1) throw new InputError(`projector_depth must be at least 1, got ${depth}`);
  let h = linear(g, x, p.take('model.0.weight', [outDim, inDim]), p.take('model.0.bias', [outDim]), `${name}.0`);
  for (let i = 1; i < depth; i++) {
    const k = `model.${2 * i}`;
    h = linear(g, gelu(g, h), p.take(`${k}.weight`, [outDim, outDim]), p.take(`${k}.bias`, [outDim]), `${name}.${2 * i}`);
  }
  return h;
}

/** The LLM width, read off the checkpoint's `<prefix>model.0.weight` [H, in]. */
export function projectorWidth(store: WeightStore, prefix = 'projector.'): number {
  const t = store.get(`${prefix}model.0.weight`);
  if (!t) throw new InputError(`${store.path}: missing tensor ${prefix}model.0.weight`, store.path);
  return t.shape[0]!;
}
