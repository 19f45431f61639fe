// The decoder LLM's forward pass for training: inputs_embeds [B, T, H] at positions 0..T-1 ->
// logits [B, T, V], with no KV cache and only ops that have VJP rules (src/graph/vjp-*.ts):
// causal attention from MatMul/Softmax (GroupQueryAttention has no VJP), rotary embeddings from
// Cos/Sin tables and plain ops (HF's apply_rotary_pos_emb: rotate_half, non-interleaved, on the
// first rotaryDim dims of each head), RMSNorm as SimplifiedLayerNormalization, SiLU as
// x * sigmoid(x). The same weights and layouts (llama.ts, phi3.ts) as the inference decoder.
// Right padding needs no attention mask beyond the causal one: real tokens never see the
// padding after them, and the padding's own outputs carry no label.

import { Graph, Value } from '../../graph/graph.js';
import { rmsNorm } from '../../graph/blocks.js';
import { WeightStore } from '../../weights/types.js';
import { TrainableInputs } from '../params.js';
import { LlmConfig } from './config.js';
import { LlmParams, QuantizedLinears } from './quantized.js';
import { layerLayout, mlpResidual, ropeInvFreq } from './decoder.js';

export interface TrainDecoderOptions {
  /** The tensors fed as inputs (trainable); the rest are initializers. */
  trainable?: TrainableInputs;
  /** Frozen linears stored quantized run on MatMulNBits (no gradient into their weights). */
  quantization?: QuantizedLinears;
  /** LoRA's alpha / r, when the store holds adapters (src/train/lora.ts). */
  loraScale?: number;
  /**
   * int64 [n] flat positions (b * T + t): logits only for these rows, [n, V] (the loss needs
   * the labelled positions alone; the head over every position is most of a step's work).
   */
  positions?: Value;
}

/** inputs_embeds [B, T, H] -> logits [B, T, V] (or [n, V] at `positions`). */
export function trainDecoder(g: Graph, store: WeightStore, c: LlmConfig, embeds: Value, o: TrainDecoderOptions = {}): Value {
  const p = new LlmParams(g, store, o.quantization, '', o.trainable, o.loraScale);
  const layout = layerLayout(c);
  const H = c.hiddenSize;
  const rope = ropeTables(g, c, embeds);
  const mask = trainingMask(g, c, embeds);
  let x = embeds;
  for (let i = 0; i < c.layers; i++) {
    const l = p.sub(`model.layers.${i}.`);
    const name = `l${i}`;
    const a = l.sub('self_attn.');
    const h = rmsNorm(g, x, l.take('input_layernorm.weight', [H]), c.rmsEps, `${name}.ln1`);
    const { q, k, v } = layout.qkv(g, a, c, h, name);
    const att = causalAttention(g, c, q, k, v, rope, mask, name);
    x = g.op1('Add', [x, a.linear(att, 'o_proj', H, c.heads * c.headDim, layout.outBias(c, 'o_proj'), `${name}.o_proj`)], {}, { name: `${name}.attn_res` });
    x = mlpResidual(g, l, layout, c, x, name);
  }
  if (o.positions) x = g.op1('Gather', [g.op1('Reshape', [x, g.constI64([-1, H])]), o.positions], { axis: 0 }, { name: 'labelled_rows' });
  const normed = rmsNorm(g, x, p.take('model.norm.weight', [H]), c.rmsEps, 'final_norm');
  const head = c.tieWordEmbeddings && !p.isQuantized('lm_head') ? 'model.embed_tokens' : 'lm_head';
  return p.linear(normed, head, c.vocabSize, H, false, 'lm_head');
}

interface Rope {
  /** [T, rotaryDim] each, float32 as HF computes them (cat(freqs, freqs)). */
  cos: Value;
  sin: Value;
}

/** cos/sin of position * inv_freq for positions 0..T-1, T from the embeddings' shape. */
function ropeTables(g: Graph, c: LlmConfig, embeds: Value): Rope {
  const T = g.op1('Squeeze', [g.op1('Shape', [embeds], { start: 1, end: 2 }), g.constI64([0])]);
  const pos = g.op1('Cast', [g.op1('Unsqueeze', [g.op1('Range', [g.constI64([0], []), T, g.constI64([1], [])]), g.constI64([1])])], { to: 1 }); // [T, 1]
  const freqs = g.op1('Mul', [pos, g.constF32(ropeInvFreq(c.ropeTheta, c.rotaryDim), [1, c.rotaryDim / 2], 'rope.inv_freq')]);
  const emb = g.op1('Concat', [freqs, freqs], { axis: -1 }); // [T, rotaryDim]
  return { cos: g.op1('Cos', [emb], {}, { name: 'rope.cos' }), sin: g.op1('Sin', [emb], {}, { name: 'rope.sin' }) };
}

/** [1, 1, T, T] additive bias: 0 where key j is visible from query i (j <= i, and i - j < window), -inf elsewhere. */
function trainingMask(g: Graph, c: LlmConfig, embeds: Value): Value {
  const T = g.op1('Squeeze', [g.op1('Shape', [embeds], { start: 1, end: 2 }), g.constI64([0])]);
  const r = g.op1('Range', [g.constI64([0], []), T, g.constI64([1], [])]);
  const q = g.op1('Unsqueeze', [r, g.constI64([1])]); // [T, 1]
  const k = g.op1('Unsqueeze', [r, g.constI64([0])]); // [1, T]
  let ok = g.op1('LessOrEqual', [k, q]);
  if (c.slidingWindow !== undefined) ok = g.op1('And', [ok, g.op1('Less', [g.op1('Sub', [q, k]), g.constI64([c.slidingWindow], [])])]);
  const bias = g.op1('Where', [ok, g.constF32([0], []), g.constF32([-Infinity], [])]);
  return g.op1('Unsqueeze', [bias, g.constI64([0, 1])], {}, { name: 'train_mask' });
}

/** x [B, heads, T, hd] with HF's rotary on its first rotaryDim dims. */
function rotate(g: Graph, c: LlmConfig, x: Value, r: Rope): Value {
  const hd = c.headDim;
  const rd = c.rotaryDim;
  const half = rd / 2;
  // Splits, not Slices: onnxruntime 1.30's optimizer rewrote the backward pass of two Slices
  // over one axis (the partial-rotary case) into a Gather reading past its input (measured).
  const split = (v: Value, sizes: number[]) => g.op('Split', [v, g.constI64(sizes)], { axis: -1 }, { outputs: sizes.length });
  const [rot, pass] = rd === hd ? [x, undefined] : split(x, [rd, hd - rd]);
  const [x1, x2] = split(rot!, [half, half]);
  const rotated = g.op1('Concat', [g.op1('Neg', [x2!]), x1!], { axis: -1 });
  const out = g.op1('Add', [g.op1('Mul', [rot!, r.cos]), g.op1('Mul', [rotated, r.sin])]);
  return pass ? g.op1('Concat', [out, pass], { axis: -1 }) : out;
}

/**
 * q [B, T, heads*hd], k/v [B, T, kvH*hd] -> [B, T, heads*hd]: each kv head serves heads/kvH
 * query heads; scores scaled by 1/sqrt(hd), causal.
 */
function causalAttention(g: Graph, c: LlmConfig, q: Value, k: Value, v: Value, rope: Rope, mask: Value, name: string): Value {
  const hd = c.headDim;
  const rep = c.heads / c.kvHeads;
  const I = (x: number[]) => g.constI64(x);
  const bhsd = (x: Value, heads: number) => g.op1('Transpose', [g.op1('Reshape', [x, I([0, 0, heads, hd])])], { perm: [0, 2, 1, 3] });
  const repeat = (x: Value) => rep === 1 ? x : g.op1('Reshape', [
    g.op1('Expand', [g.op1('Unsqueeze', [x, I([2])]), I([1, 1, rep, 1, 1])]),
    I([0, c.heads, -1, hd]),
  ]);
  // Memory: the backward pass keeps only what its rules read, so the [B, heads, T, T] tensors are
  // made once: the scale goes on q (a [B, heads, T, hd] tensor), the mask is an additive bias
  // (its VJP passes dy through), and Softmax's VJP reads only its output.
  const qr = g.op1('Mul', [rotate(g, c, bhsd(q, c.heads), rope), g.constF32([1 / Math.sqrt(hd)], [])]);
  const kr = repeat(rotate(g, c, bhsd(k, c.kvHeads), rope));
  const vr = repeat(bhsd(v, c.kvHeads));
  const scores = g.op1('Add', [g.op1('MatMul', [qr, g.op1('Transpose', [kr], { perm: [0, 1, 3, 2] })]), mask]);
  const probs = g.op1('Softmax', [scores], { axis: -1 }, { name: `${name}.probs` });
  const out = g.op1('Transpose', [g.op1('MatMul', [probs, vr])], { perm: [0, 2, 1, 3] });
  return g.op1('Reshape', [out, I([0, 0, c.heads * hd])], {}, { name: `${name}.attn` });
}
