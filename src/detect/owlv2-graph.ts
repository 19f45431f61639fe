// OWLv2 (HF Owlv2ForObjectDetection) as two ONNX graphs:
//   text:   input_ids, attention_mask [Q, L] (+ the EOS position of each query) -> query_embeds
//           [Q, P]: CLIP text tower (causal + padding mask), final LayerNorm, the EOS token's
//           state, text_projection, L2-normalised.
//   vision: pixel_values [1, 3, S, S], query_embeds [Q, P] -> logits [1, N, Q],
//           objectness_logits [1, N], pred_boxes [1, N, 4] (cxcywh in 0..1), N = (S // patch)^2.
//           CLIP-style ViT (pre_layernorm, pre-LN blocks); then, unlike CLIP, post_layernorm on
//           every token, each patch token multiplied by the class token, the detector's
//           layer_norm; class head (cosine similarity with learnt shift and ELU+1 scale), box
//           head (MLP + the fixed grid bias, sigmoid) and objectness head (MLP).
// Keys are the HF checkpoint's: owlv2.text_model.*, owlv2.vision_model.*, owlv2.text_projection,
// class_head.*, box_head.*, objectness_head.*, layer_norm.*.

import { Graph, Value } from '../graph/graph.js';
import { activation, conv2d, gelu, layerNorm, linear, reshape, selfAttention } from '../graph/blocks.js';
import { Params } from '../model/params.js';
import { WeightStore } from '../weights/types.js';
import { Owlv2Config, patchGrid } from './owlv2-config.js';

/** A large negative additive mask value; exp() of it is exactly 0, as with HF's finfo.min. */
const MASKED = -1e30;

const f32 = Math.fround;

/**
 * The box head's fixed bias (HF `compute_box_bias`) for a grid x grid feature map, [N, 4]:
 * logit of the patch's bottom-right corner (x, y) and of the patch size (w, h), each term in
 * float32 arithmetic as torch computes it.
 */
export function boxBias(grid: number): Float32Array {
  const n = grid * grid;
  const out = new Float32Array(n * 4);
  const eps = f32(1e-4);
  const logit = (c: number) => f32(f32(Math.log(f32(c + eps))) - f32(Math.log1p(f32(-c + eps))));
  const size = logit(f32(1 / grid));
  for (let r = 0; r < grid; r++) {
    for (let c = 0; c < grid; c++) {
      const p = r * grid + c;
      out[p * 4] = logit(Math.min(1, f32((c + 1) / grid)));
      out[p * 4 + 1] = logit(Math.min(1, f32((r + 1) / grid)));
      out[p * 4 + 2] = size;
      out[p * 4 + 3] = size;
    }
  }
  return out;
}

/** x / (||x||_2 over the last axis + eps); eps 0 is a plain L2 normalisation. */
function l2normalize(g: Graph, x: Value, eps: number, name: string): Value {
  let n = g.op1('ReduceL2', [x, g.constI64([-1])], { keepdims: 1 }, { name: `${name}.norm` });
  if (eps) n = g.op1('Add', [n, g.constF32([eps], [])]);
  return g.op1('Div', [x, n], {}, { name });
}

/**
 * Attention with an additive bias [B or 1, 1, L, L] in plain ops (the text tower is tiny:
 * Q queries x 16 tokens); q, k, v [B, L, heads*d] already projected, q already scaled.
 */
function biasedAttention(g: Graph, q: Value, k: Value, v: Value, bias: Value, heads: number, d: number, name: string): Value {
  const split = (x: Value, perm: number[]) => g.op1('Transpose', [reshape(g, x, [0, 0, heads, d], `${name}.split`)], { perm });
  const scores = g.op1('Add', [g.op1('MatMul', [split(q, [0, 2, 1, 3]), split(k, [0, 2, 3, 1])]), bias]);
  const probs = g.op1('Softmax', [scores], { axis: -1 });
  const o = g.op1('Transpose', [g.op1('MatMul', [probs, split(v, [0, 2, 1, 3])])], { perm: [0, 2, 1, 3] });
  return reshape(g, o, [0, 0, heads * d], name);
}

interface LayerShape {
  hiddenSize: number;
  intermediateSize: number;
  heads: number;
  act: string;
  eps: number;
}

/** One pre-LN CLIP encoder layer; `attend` does the attention on the projected q, k, v. */
function encoderLayer(g: Graph, l: Params, c: LayerShape, x: Value, name: string, attend: (q: Value, k: Value, v: Value) => Value): Value {
  const D = c.hiddenSize;
  const lin = (key: string, out: number, inp: number, v: Value) =>
    linear(g, v, l.take(`${key}.weight`, [out, inp]), l.take(`${key}.bias`, [out]), `${name}.${key}`);
  const h = layerNorm(g, x, l.take('layer_norm1.weight', [D]), l.take('layer_norm1.bias', [D]), c.eps, `${name}.ln1`);
  const att = attend(lin('self_attn.q_proj', D, D, h), lin('self_attn.k_proj', D, D, h), lin('self_attn.v_proj', D, D, h));
  x = g.op1('Add', [x, lin('self_attn.out_proj', D, D, att)]);
  const h2 = layerNorm(g, x, l.take('layer_norm2.weight', [D]), l.take('layer_norm2.bias', [D]), c.eps, `${name}.ln2`);
  const m = lin('mlp.fc2', D, c.intermediateSize, activation(g, lin('mlp.fc1', c.intermediateSize, D, h2), c.act, `${name}.act`));
  return g.op1('Add', [x, m], {}, { name });
}

/** The text graph: input_ids, attention_mask [Q, L], eos_index [Q, 1] (int64) -> query_embeds [Q, P]. */
export function buildTextGraph(store: WeightStore, c: Owlv2Config): Graph {
  const g = new Graph('owlv2_text');
  const p = new Params(g, store);
  const t = c.text;
  const D = t.hiddenSize;
  const L = t.maxPositions;
  const d = D / t.heads;
  const ids = g.input('input_ids', 'I64', ['queries', L]);
  const mask = g.input('attention_mask', 'I64', ['queries', L]);
  const eos = g.input('eos_index', 'I64', ['queries', 1]);
  const tp = p.sub('owlv2.text_model.');
  const e = tp.sub('embeddings.');
  let x = g.op1('Gather', [e.take('token_embedding.weight', [t.vocabSize, D]), ids], { axis: 0 });
  x = g.op1('Add', [x, e.take('position_embedding.weight', [L, D])], {}, { name: 'text_embeddings' });

  // Causal mask (HF _create_4d_causal_attention_mask) plus the padding mask, [Q, 1, L, L].
  const causal = new Float32Array(L * L);
  for (let i = 0; i < L; i++) for (let j = i + 1; j < L; j++) causal[i * L + j] = MASKED;
  const keep = g.op1('Cast', [mask], { to: 1 });
  const pad = g.op1('Mul', [g.op1('Sub', [g.constF32([1], []), keep]), g.constF32([MASKED], [])]);
  const bias = g.op1('Add', [g.constF32(causal, [1, 1, L, L], 'causal_mask'), reshape(g, pad, [-1, 1, 1, L], 'padding_mask')]);

  const scale = g.constF32([d ** -0.5], [], 'text.qscale');
  for (let i = 0; i < t.layers; i++) {
    x = encoderLayer(g, tp.sub(`encoder.layers.${i}.`), t, x, `text.l${i}`, (q, k, v) =>
      biasedAttention(g, g.op1('Mul', [q, scale]), k, v, bias, t.heads, d, `text.l${i}.attn`));
  }
  x = layerNorm(g, x, tp.take('final_layer_norm.weight', [D]), tp.take('final_layer_norm.bias', [D]), t.eps, 'final_layer_norm');
  // The EOS token's state (HF: position of the largest id, i.e. the first EOS).
  const pooled = g.op1('GatherND', [x, eos], { batch_dims: 1 }, { name: 'text_pooled' });
  const proj = linear(g, pooled, p.take('owlv2.text_projection.weight', [c.projectionDim, D]), null, 'text_projection');
  g.output(l2normalize(g, proj, 0, 'text_embeds'), 'query_embeds', 'F32', ['queries', c.projectionDim]);
  return g;
}

/** Two-layer GELU MLP head (HF Owlv2BoxPredictionHead): width -> width -> width -> out. */
function mlpHead(g: Graph, p: Params, width: number, out: number, x: Value, name: string): Value {
  const lin = (i: number, o: number, v: Value) => linear(g, v, p.take(`dense${i}.weight`, [o, width]), p.take(`dense${i}.bias`, [o]), `${name}.dense${i}`);
  return lin(2, out, gelu(g, lin(1, width, gelu(g, lin(0, width, x)))));
}

/**
 * The vision graph: pixel_values [1, 3, S, S] and query_embeds [Q, P] -> logits [1, N, Q],
 * objectness_logits [1, N], pred_boxes [1, N, 4]. With `debug`, also image_feats [1, N, D].
 */
export function buildVisionGraph(store: WeightStore, c: Owlv2Config, debug = false): Graph {
  const g = new Graph('owlv2_vision');
  const p = new Params(g, store);
  const v = c.vision;
  const D = v.hiddenSize;
  const grid = patchGrid(v);
  const n = grid * grid;
  const px = g.input('pixel_values', 'F32', [1, 3, v.imageSize, v.imageSize]);
  const queries = g.input('query_embeds', 'F32', ['queries', c.projectionDim]);
  const vp = p.sub('owlv2.vision_model.');
  const e = vp.sub('embeddings.');

  const patches = conv2d(g, px, e.take('patch_embedding.weight', [D, 3, v.patchSize, v.patchSize]), null, { stride: v.patchSize }, 'patch_embed');
  const tokens = g.op1('Transpose', [reshape(g, patches, [1, D, n], 'patch_flat')], { perm: [0, 2, 1] });
  const cls = reshape(g, e.take('class_embedding', [D]), [1, 1, D], 'cls');
  let x = g.op1('Concat', [cls, tokens], { axis: 1 });
  x = g.op1('Add', [x, e.take('position_embedding.weight', [n + 1, D])]);
  x = layerNorm(g, x, vp.take('pre_layernorm.weight', [D]), vp.take('pre_layernorm.bias', [D]), v.eps, 'pre_layernorm');
  for (let i = 0; i < v.layers; i++) {
    x = encoderLayer(g, vp.sub(`encoder.layers.${i}.`), v, x, `vision.l${i}`, (q, k, val) => selfAttention(g, q, k, val, v.heads, `vision.l${i}.mha`));
  }
  // Detection features: post_layernorm on all tokens, patch tokens times the class token, layer_norm.
  x = layerNorm(g, x, vp.take('post_layernorm.weight', [D]), vp.take('post_layernorm.bias', [D]), v.eps, 'post_layernorm');
  const clsOut = g.op1('Slice', [x, g.constI64([0]), g.constI64([1]), g.constI64([1])]);
  const patchOut = g.op1('Slice', [x, g.constI64([1]), g.constI64([n + 1]), g.constI64([1])]);
  const merged = g.op1('Mul', [patchOut, clsOut]);
  const feats = layerNorm(g, merged, p.take('layer_norm.weight', [D]), p.take('layer_norm.bias', [D]), v.eps, 'image_feats');

  // Class head: cosine similarity (eps 1e-6 on both norms), then (logits + shift) * (elu(scale) + 1).
  const ch = p.sub('class_head.');
  const Dt = c.text.hiddenSize;
  const classEmbeds = l2normalize(g, linear(g, feats, ch.take('dense0.weight', [Dt, D]), ch.take('dense0.bias', [Dt]), 'class_head.dense0'), 1e-6, 'class_embeds');
  const q = l2normalize(g, queries, 1e-6, 'query_norm');
  const sim = g.op1('MatMul', [classEmbeds, g.op1('Transpose', [q], { perm: [1, 0] })]);
  const shift = linear(g, feats, ch.take('logit_shift.weight', [1, D]), ch.take('logit_shift.bias', [1]), 'logit_shift');
  const scaleRaw = linear(g, feats, ch.take('logit_scale.weight', [1, D]), ch.take('logit_scale.bias', [1]), 'logit_scale');
  const scale = g.op1('Add', [g.op1('Elu', [scaleRaw], { alpha: { float: 1 } }), g.constF32([1], [])]);
  g.output(g.op1('Mul', [g.op1('Add', [sim, shift]), scale]), 'logits', 'F32', [1, n, 'queries']);

  g.output(reshape(g, mlpHead(g, p.sub('objectness_head.'), D, 1, feats, 'objectness_head'), [1, n], 'objectness'), 'objectness_logits', 'F32', [1, n]);
  const boxes = g.op1('Add', [mlpHead(g, p.sub('box_head.'), D, 4, feats, 'box_head'), g.constF32(boxBias(grid), [n, 4], 'box_bias')]);
  g.output(g.op1('Sigmoid', [boxes]), 'pred_boxes', 'F32', [1, n, 4]);
  if (debug) g.output(feats, 'image_feats', 'F32', [1, n, D]);
  return g;
}
