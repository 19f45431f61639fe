// The Linear weights of an LLM: each layer's projections in layer order, then the output head
// (the embedding table when tied, so a quantized head runs from it too). What `mgllava quantize`
// quantizes and what its --report measures.

import { InputError } from '../../core/errors.js';
import type { LlmConfig } from './config.js';
import type { TensorRef, WeightStore } from '../../weights/types.js';
import { layerLayout } from './decoder.js';

/** key (as the quantized folder names it) -> the float matrix it is made from. */
export function linearWeightRefs(store: WeightStore, config: LlmConfig): Map<string, TensorRef> {
  const out = new Map<string, TensorRef>();
  const want = (key: string, from = key) => {
    const t = store.get(from);
    if (!t) throw new InputError(`${store.path}: missing tensor ${from} (a ${config.arch} LLM with ${config.layers} layers)`, store.path);
    if (t.shape.length !== 2 || !['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) {
      throw new InputError(`${store.path}: tensor ${from} is ${t.dtype} [${t.shape.join(', ')}], expected a float matrix`, store.path);
    }
    out.set(key, t);
  };
  for (let i = 0; i < config.layers; i++) for (const m of layerLayout(config).linears) want(`model.layers.${i}.${m}.weight`);
  want('lm_head.weight', config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  return out;
}
