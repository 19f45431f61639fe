// The LLM's tensors: the base LLM folder's, with the MG-LLaVA checkpoint's `llm.*` tensors (the
// stage-2 fine-tuned LLM) taking their place where present. Keys are the base model's
// (`model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`, ...).

import { OverlayStore, PrefixStore, WeightStore } from '../weights/types.js';

export function llmWeights(base: WeightStore, checkpoint: WeightStore): WeightStore {
  return new OverlayStore(`${base.path} + ${checkpoint.path} (llm.*)`, [base, new PrefixStore(checkpoint, 'llm.')]);
}
