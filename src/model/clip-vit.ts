// CLIP ViT vision tower (HF CLIPVisionModel, pre-LN). MG-LLaVA uses the hidden states of
// layer -2 without the CLS token: [B, (image/patch)^2, D] (576 x 1024 for ViT-L/14-336).

import { Graph, Value } from '../graph/graph.js';
import { activation, conv2d, layerNorm, linear, plainSelfAttention, reshape, selfAttention } from '../graph/blocks.js';
import { InputError } from '../core/errors.js';
import { Params } from './params.js';

export interface ClipVisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  heads: number;
  layers: number;
  patchSize: number;
  imageSize: number;
  eps: number;
  act: string;
}

/** From an HF CLIP config.json (CLIPModel with `vision_config`, or CLIPVisionModel). */
export function clipVisionConfig(json: Record<string, unknown>, source: string): ClipVisionConfig {
  const v = (json['vision_config'] ?? json) as Record<string, unknown>;
  const num = (k: string, dflt?: number): number => {
    const x = v[k] ?? dflt;
    if (typeof x !== 'number') throw new InputError(`${source}: vision config lacks a numeric ${k}`, source);
    return x;
  };
  return {
    hiddenSize: num('hidden_size'),
    intermediateSize: num('intermediate_size'),
    heads: num('num_attention_heads'),
    layers: num('num_hidden_layers'),
    patchSize: num('patch_size'),
    imageSize: num('image_size'),
    eps: num('layer_norm_eps', 1e-5),
    act: typeof v['hidden_act'] === 'string' ? (v['hidden_act'] as string) : 'quick_gelu',
  };
}

export function clipTokens(c: ClipVisionConfig): number {
  return (c.imageSize / c.patchSize) ** 2;
}

export interface ClipOutputs {
  /** hidden_states[selectLayer][:, 1:]  [B, N, D] */
  features: Value;
  /** hidden_states[0..upto] with CLS, [B, N+1, D] each (only when asked, for parity tests). */
  hidden: Value[];
}

/**
 * pixel_values [B, 3, S, S] -> hidden states up to `selectLayer` (negative counts from the end,
 * HF style: hidden_states has layers+1 entries, the first being the embeddings).
 * Layers after the selected one are never built.
 */
export function clipVision(g: Graph, p: Params, c: ClipVisionConfig, pixels: Value, selectLayer: number, attention: 'fused' | 'ops' = 'fused'): ClipOutputs {
  const D = c.hiddenSize;
  const n = clipTokens(c);
  const index = selectLayer < 0 ? c.layers + 1 + selectLayer : selectLayer;
  if (index < 0 || index > c.layers) throw new InputError(`visual_select_layer ${selectLayer} is outside 0..${c.layers}`);

  const e = p.sub('embeddings.');
  // Patch embedding: Conv PxP/P without bias -> [B, D, g, g] -> [B, N, D]
  const patches = conv2d(g, pixels, e.take('patch_embedding.weight', [D, 3, c.patchSize, c.patchSize]), null, { stride: c.patchSize }, 'patch_embed');
  const tokens = g.op1('Transpose', [reshape(g, patches, [0, D, n])], { perm: [0, 2, 1] });
  // CLS token broadcast over the batch: [B, 1, D]
  const cls = reshape(g, e.take('class_embedding', [D]), [1, 1, D]);
  const batch = g.op1('Slice', [g.op1('Shape', [pixels]), g.constI64([0]), g.constI64([1])]);
  const clsB = g.op1('Expand', [cls, g.op1('Concat', [batch, g.constI64([1, D])], { axis: 0 })]);
  let x = g.op1('Concat', [clsB, tokens], { axis: 1 });
  x = g.op1('Add', [x, e.take('position_embedding.weight', [n + 1, D])]);
  x = layerNorm(g, x, p.take('pre_layrnorm.weight', [D]), p.take('pre_layrnorm.bias', [D]), c.eps, 'pre_layrnorm');

  const hidden: Value[] = [x];
  for (let i = 0; i < index; i++) {
    const l = p.sub(`encoder.layers.${i}.`);
    const lin = (key: string, out: number, inp: number) =>
      (v: Value) => linear(g, v, l.take(`${key}.weight`, [out, inp]), l.take(`${key}.bias`, [out]), `l${i}.${key}`);
    // Attention block: x + out_proj(MHA(LN1(x)))
    const h = layerNorm(g, x, l.take('layer_norm1.weight', [D]), l.take('layer_norm1.bias', [D]), c.eps, `l${i}.ln1`);
    const [q, k, v] = ['q', 'k', 'v'].map((n) => lin(`self_attn.${n}_proj`, D, D)(h)) as [Value, Value, Value];
    // 'ops': the same attention from MatMul/Softmax, for training (the fused kernel has no VJP).
    const att = attention === 'fused' ? selfAttention(g, q, k, v, c.heads, `l${i}.mha`) : plainSelfAttention(g, q, k, v, c.heads, D / c.heads, `l${i}.mha`);
    x = g.op1('Add', [x, lin('self_attn.out_proj', D, D)(att)]);
    // MLP block: x + fc2(act(fc1(LN2(x))))
    const h2 = layerNorm(g, x, l.take('layer_norm2.weight', [D]), l.take('layer_norm2.bias', [D]), c.eps, `l${i}.ln2`);
    const m = lin('mlp.fc2', D, c.intermediateSize)(activation(g, lin('mlp.fc1', c.intermediateSize, D)(h2), c.act, `l${i}.act`));
    x = g.op1('Add', [x, m], {}, { name: `hidden_${i + 1}` });
    hidden.push(x);
  }
  // Drop CLS: [B, N+1, D] -> [B, N, D]
  const features = g.op1('Slice', [x, g.constI64([1]), g.constI64([n + 1]), g.constI64([1])], {}, { name: 'low_res_feat' });
  return { features, hidden };
}
