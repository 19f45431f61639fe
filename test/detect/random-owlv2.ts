// Random-weight OWLv2 folders in the HF layout (config.json with only non-default keys, as HF
// saves them; model.safetensors; the fixture's CLIP tokenizer files), for shapes the fixture does
// not cover: odd sizes in the tests, the real OWLv2-L/14 at 960 px for the timing.

import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY } from '../helpers/fixtures.js';
import { writeSafetensors, TensorToWrite } from '../../src/weights/write-safetensors.js';

export interface RandomOwlv2Shape {
  text: { width: number; layers: number; heads: number; mlp: number };
  vision: { width: number; layers: number; heads: number; mlp: number; patch: number; image: number };
  seed?: number;
}

/** google/owlv2-large-patch14-ensemble's architecture. */
export const OWLV2_LARGE: RandomOwlv2Shape = {
  text: { width: 768, layers: 12, heads: 12, mlp: 3072 },
  vision: { width: 1024, layers: 24, heads: 16, mlp: 4096, patch: 14, image: 960 },
};

function random(seed: number): (n: number, scale: number) => Float32Array {
  let s = seed >>> 0;
  return (n, scale) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      out[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
    }
    return out;
  };
}

/** Writes the folder; the tokenizer files are the fixture's (CLIP vocabulary of 49408). */
export function writeRandomOwlv2(dir: string, shape: RandomOwlv2Shape, tokenizer = true): string {
  const r = random(shape.seed ?? 7);
  const t = (name: string, dims: number[], fan: number, one = false): TensorToWrite => {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = one ? Float32Array.from(r(n, 0.05), (v) => 1 + v) : r(n, 1 / Math.sqrt(fan));
    return { name, dtype: 'F32', shape: dims, data };
  };
  const V = 49408;
  const L = 16;
  const { text: tx, vision: vs } = shape;
  const grid = Math.floor(vs.image / vs.patch);
  const out: TensorToWrite[] = [];
  const layer = (p: string, D: number, mlp: number) => {
    for (const ln of ['layer_norm1', 'layer_norm2']) out.push(t(`${p}${ln}.weight`, [D], 1, true), t(`${p}${ln}.bias`, [D], 100));
    for (const q of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) out.push(t(`${p}self_attn.${q}.weight`, [D, D], D), t(`${p}self_attn.${q}.bias`, [D], 100));
    out.push(t(`${p}mlp.fc1.weight`, [mlp, D], D), t(`${p}mlp.fc1.bias`, [mlp], 100), t(`${p}mlp.fc2.weight`, [D, mlp], mlp), t(`${p}mlp.fc2.bias`, [D], 100));
  };
  const T = tx.width;
  out.push(t('owlv2.text_model.embeddings.token_embedding.weight', [V, T], 1), t('owlv2.text_model.embeddings.position_embedding.weight', [L, T], 1));
  for (let i = 0; i < tx.layers; i++) layer(`owlv2.text_model.encoder.layers.${i}.`, T, tx.mlp);
  out.push(t('owlv2.text_model.final_layer_norm.weight', [T], 1, true), t('owlv2.text_model.final_layer_norm.bias', [T], 100));
  out.push(t('owlv2.text_projection.weight', [T, T], T));
  const D = vs.width;
  out.push(t('owlv2.vision_model.embeddings.class_embedding', [D], 1),
    t('owlv2.vision_model.embeddings.patch_embedding.weight', [D, 3, vs.patch, vs.patch], 3 * vs.patch * vs.patch),
    t('owlv2.vision_model.embeddings.position_embedding.weight', [grid * grid + 1, D], 1),
    t('owlv2.vision_model.pre_layernorm.weight', [D], 1, true), t('owlv2.vision_model.pre_layernorm.bias', [D], 100));
  for (let i = 0; i < vs.layers; i++) layer(`owlv2.vision_model.encoder.layers.${i}.`, D, vs.mlp);
  out.push(t('owlv2.vision_model.post_layernorm.weight', [D], 1, true), t('owlv2.vision_model.post_layernorm.bias', [D], 100),
    t('owlv2.visual_projection.weight', [T, D], D), t('owlv2.logit_scale', [], 1),
    t('layer_norm.weight', [D], 1, true), t('layer_norm.bias', [D], 100),
    t('class_head.dense0.weight', [T, D], D), t('class_head.dense0.bias', [T], 100),
    t('class_head.logit_shift.weight', [1, D], D), t('class_head.logit_shift.bias', [1], 100),
    t('class_head.logit_scale.weight', [1, D], D), t('class_head.logit_scale.bias', [1], 100));
  for (const [head, o] of [['box_head', 4], ['objectness_head', 1]] as const) {
    out.push(t(`${head}.dense0.weight`, [D, D], D), t(`${head}.dense0.bias`, [D], 100),
      t(`${head}.dense1.weight`, [D, D], D), t(`${head}.dense1.bias`, [D], 100),
      t(`${head}.dense2.weight`, [o, D], D), t(`${head}.dense2.bias`, [o], 100));
  }
  mkdirSync(dir, { recursive: true });
  writeSafetensors(join(dir, 'model.safetensors'), out);
  // Only non-default keys, as transformers saves a config (max_position_embeddings 16,
  // quick_gelu, eps 1e-5, vocab 49408 are the defaults).
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: 'owlv2',
    projection_dim: T,
    text_config: { hidden_size: T, intermediate_size: tx.mlp, num_attention_heads: tx.heads, num_hidden_layers: tx.layers },
    vision_config: { hidden_size: D, intermediate_size: vs.mlp, num_attention_heads: vs.heads, num_hidden_layers: vs.layers, patch_size: vs.patch, image_size: vs.image },
  }));
  if (tokenizer) for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(TINY, 'owlv2', f), join(dir, f));
  return dir;
}
