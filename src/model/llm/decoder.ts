// The decoder LLM as two ONNX graphs:
//
// - `embed`: token ids -> input embeddings (a Gather of `model.embed_tokens.weight`, done on the
//   stored dtype and upcast after, so a bf16 table is never copied to float32 whole).
// - `decoder`: input embeddings [1, S, H] plus the KV cache of the P positions before them ->
//   logits and the grown cache (P + S positions). One graph serves the prefill of a whole prompt
//   (S = prompt length, P = 0) and the one-token decode steps (S = 1).
//
// Attention is onnxruntime's com.microsoft GroupQueryAttention (causal, with past/present KV in
// BNSH layout). Rotary embeddings are applied before it with plain ops, as HF's
// `apply_rotary_pos_emb` does (rotate_half, non-interleaved, on the first `rotaryDim` dims of each
// head), with cos/sin computed in float32 for the S positions P..P+S-1 inside the graph, so no
// cache of max_position_embeddings rows is needed.

import { Graph, Value, MS_DOMAIN } from '../../graph/graph.js';
import { linear, rmsNorm } from '../../graph/blocks.js';
import { InputError } from '../../core/errors.js';
import { WeightStore } from '../../weights/types.js';
import { Params } from '../params.js';
import { LlmConfig } from './config.js';
import { LayerLayout } from './layout.js';
import { llamaLayout } from './llama.js';
import { phi3Layout } from './phi3.js';

/** Graph input/output names (the KV names take the layer index). */
export const NAMES = {
  ids: 'input_ids',
  embeds: 'inputs_embeds',
  logitsFrom: 'logits_from',
  logits: 'logits',
  pastKey: (i: number) => `past_key.${i}`,
  pastValue: (i: number) => `past_value.${i}`,
  presentKey: (i: number) => `present_key.${i}`,
  presentValue: (i: number) => `present_value.${i}`,
} as const;

const LAYOUTS: Record<LlmConfig['arch'], LayerLayout> = { llama: llamaLayout, phi3: phi3Layout };

/** HF's default rope inverse frequencies, in float32 as torch computes them. */
export function ropeInvFreq(theta: number, rotaryDim: number): Float32Array {
  const out = new Float32Array(rotaryDim / 2);
  for (let i = 0; i < out.length; i++) {
    const e = Math.fround((2 * i) / rotaryDim);
    out[i] = Math.fround(1 / Math.fround(Math.pow(theta, e)));
  }
  return out;
}

/** input_ids int64 [n] -> inputs_embeds float32 [n, H]. */
export function buildEmbedGraph(store: WeightStore, c: LlmConfig): Graph {
  const g = new Graph('llm_embed');
  const ids = g.input(NAMES.ids, 'I64', ['n']);
  const key = 'model.embed_tokens.weight';
  const table = rawWeight(g, store, key, [c.vocabSize, c.hiddenSize]);
  let rows = g.op1('Gather', [table.value, ids], { axis: 0 }, { name: 'embed.rows' });
  if (table.dtype !== 'F32') rows = g.op1('Cast', [rows], { to: 1 }, { name: 'embed.f32' });
  g.output(rows, NAMES.embeds, 'F32', ['n', c.hiddenSize]);
  return g;
}

/**
 * inputs_embeds [1, S, H], logits_from int64 [1] (first position to compute logits for: 0 for
 * every position, S-1 for the last only), past_key.i / past_value.i [1, kvHeads, P, headDim]
 * -> logits [1, S - logits_from, V], present_key.i / present_value.i [1, kvHeads, P+S, headDim].
 */
export function buildDecoderGraph(store: WeightStore, c: LlmConfig): Graph {
  const g = new Graph('llm_decoder');
  const layout = LAYOUTS[c.arch];
  const p = new Params(g, store);
  const H = c.hiddenSize;
  if (c.headDim % 8 !== 0) {
    throw new InputError(`head_dim ${c.headDim} is not supported: onnxruntime's GroupQueryAttention needs a multiple of 8`);
  }
  const kvDims = [1, c.kvHeads, 'past', c.headDim];
  const embeds = g.input(NAMES.embeds, 'F32', [1, 'seq', H]);
  const logitsFrom = g.input(NAMES.logitsFrom, 'I64', [1]);
  const past: { k: Value; v: Value }[] = [];
  for (let i = 0; i < c.layers; i++) {
    past.push({ k: g.input(NAMES.pastKey(i), 'F32', kvDims), v: g.input(NAMES.pastValue(i), 'F32', kvDims) });
  }

  // Positions P..P+S-1 from the shapes of the inputs.
  const P = g.op1('Shape', [past[0]!.k], { start: 2, end: 3 }, { name: 'past_len' }); // [1]
  const S = g.op1('Shape', [embeds], { start: 1, end: 2 }, { name: 'seq_len' }); // [1]
  const total = g.op1('Add', [P, S], {}, { name: 'total_len' }); // [1]
  // GroupQueryAttention: seqlens_k = total - 1 (int32 [batch]), total_sequence_length int32 scalar.
  const seqlensK = g.op1('Cast', [g.op1('Sub', [total, g.constI64([1])])], { to: 6 }, { name: 'seqlens_k' });
  const totalLen = g.op1('Cast', [g.op1('Squeeze', [total, g.constI64([0])])], { to: 6 }, { name: 'total_seq' });
  const rope = rotaryTables(g, c, P, total);

  const gqaAttrs: Record<string, number> = { num_heads: c.heads, kv_num_heads: c.kvHeads };
  // HF's sliding window keeps keys j with i - j < W for the query at i, i.e. W keys, the query's
  // own included; so does onnxruntime's (1.30, CPU) local_window_size = W (measured; 0 is not
  // usable there). test/llm/kv-cache.test.ts pins this down.
  if (c.slidingWindow !== undefined) gqaAttrs.local_window_size = c.slidingWindow;

  let x = embeds;
  for (let i = 0; i < c.layers; i++) {
    const l = p.sub(`model.layers.${i}.`);
    const name = `l${i}`;
    const a = l.sub('self_attn.');
    const h = rmsNorm(g, x, l.take('input_layernorm.weight', [H]), c.rmsEps, `${name}.ln1`);
    const { q, k, v } = layout.qkv(g, a, c, h, name);
    const qr = applyRotary(g, q, c.heads, c, rope, `${name}.q_rope`);
    const kr = applyRotary(g, k, c.kvHeads, c, rope, `${name}.k_rope`);
    const [att, presentK, presentV] = g.op(
      'GroupQueryAttention',
      [qr, kr, v, past[i]!.k, past[i]!.v, seqlensK, totalLen],
      gqaAttrs,
      { domain: MS_DOMAIN, outputs: 3, name: `${name}.gqa` },
    );
    g.output(presentK!, NAMES.presentKey(i), 'F32', [1, c.kvHeads, 'total', c.headDim]);
    g.output(presentV!, NAMES.presentValue(i), 'F32', [1, c.kvHeads, 'total', c.headDim]);
    const oBias = layout.outBias(c, 'o_proj') ? a.take('o_proj.bias', [H]) : null;
    const o = linear(g, att!, a.take('o_proj.weight', [H, c.heads * c.headDim]), oBias, `${name}.o_proj`);
    x = g.op1('Add', [x, o], {}, { name: `${name}.attn_res` });

    const m = l.sub('mlp.');
    const h2 = rmsNorm(g, x, l.take('post_attention_layernorm.weight', [H]), c.rmsEps, `${name}.ln2`);
    const { gate, up } = layout.gateUp(g, m, c, h2, name);
    const act = g.op1('Mul', [gate, g.op1('Sigmoid', [gate])], {}, { name: `${name}.silu` });
    const dBias = layout.outBias(c, 'down_proj') ? m.take('down_proj.bias', [H]) : null;
    const down = linear(g, g.op1('Mul', [act, up]), m.take('down_proj.weight', [H, c.intermediateSize]), dBias, `${name}.down_proj`);
    x = g.op1('Add', [x, down], {}, { name: `${name}.mlp_res` });
  }

  const big = g.constI64([Number.MAX_SAFE_INTEGER]);
  const kept = g.op1('Slice', [x, logitsFrom, big, g.constI64([1])], {}, { name: 'logit_positions' }); // [1, S', H]
  const normed = rmsNorm(g, kept, p.take('model.norm.weight', [H]), c.rmsEps, 'final_norm');
  const head = c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const logits = linear(g, normed, p.take(head, [c.vocabSize, H]), null, 'lm_head');
  g.output(logits, NAMES.logits, 'F32', [1, 'kept', c.vocabSize]);
  return g;
}

export interface RopeTables {
  /** [1, S, 1, rotaryDim/2] */
  cos: Value;
  sin: Value;
}

/** cos/sin of (position * inv_freq) for positions P..total-1, float32 as HF computes them. */
export function rotaryTables(g: Graph, c: LlmConfig, P: Value, total: Value): RopeTables {
  const squeeze = (v: Value) => g.op1('Squeeze', [v, g.constI64([0])]);
  const pos = g.op1('Range', [squeeze(P), squeeze(total), g.constI64([1], [])], {}, { name: 'positions' }); // [S]
  const posF = g.op1('Cast', [g.op1('Unsqueeze', [pos, g.constI64([1])])], { to: 1 }); // [S, 1]
  const half = c.rotaryDim / 2;
  const freqs = g.op1('Mul', [posF, g.constF32(ropeInvFreq(c.ropeTheta, c.rotaryDim), [1, half], 'rope.inv_freq')], {}, { name: 'rope.freqs' });
  const shape = g.constI64([1, -1, 1, half], [4], 'rope.shape');
  return {
    cos: g.op1('Reshape', [g.op1('Cos', [freqs]), shape], {}, { name: 'rope.cos' }),
    sin: g.op1('Reshape', [g.op1('Sin', [freqs]), shape], {}, { name: 'rope.sin' }),
  };
}

/**
 * x [1, S, heads*headDim] -> the same with HF's rotary applied per head:
 * rot = x[..., :rotaryDim] = [x1, x2] -> [x1 cos - x2 sin, x2 cos + x1 sin]; x[..., rotaryDim:] passes.
 */
export function applyRotary(g: Graph, x: Value, heads: number, c: LlmConfig, r: RopeTables, name: string): Value {
  const half = c.rotaryDim / 2;
  const x4 = g.op1('Reshape', [x, g.constI64([0, 0, heads, c.headDim])], {}, { name: `${name}.heads` });
  const pass = c.headDim - c.rotaryDim;
  const sizes = pass > 0 ? [half, half, pass] : [half, half];
  const parts = g.op('Split', [x4, g.constI64(sizes)], { axis: -1 }, { outputs: sizes.length, name: `${name}.split` });
  const [x1, x2] = [parts[0]!, parts[1]!];
  const a = g.op1('Sub', [g.op1('Mul', [x1, r.cos]), g.op1('Mul', [x2, r.sin])]);
  const b = g.op1('Add', [g.op1('Mul', [x2, r.cos]), g.op1('Mul', [x1, r.sin])]);
  const joined = g.op1('Concat', pass > 0 ? [a, b, parts[2]!] : [a, b], { axis: -1 });
  return g.op1('Reshape', [joined, g.constI64([0, 0, heads * c.headDim])], {}, { name });
}

/** A checkpoint tensor as an initializer in its stored dtype (no upcast), shape checked. */
function rawWeight(g: Graph, store: WeightStore, key: string, shape: readonly number[]): { value: Value; dtype: string } {
  const t = store.get(key);
  if (!t) throw new InputError(`${store.path}: missing tensor ${key} (expected shape [${shape.join(', ')}])`, store.path);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new InputError(`${store.path}: tensor ${key} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`, store.path);
  }
  if (!['F32', 'BF16', 'F16'].includes(t.dtype)) {
    throw new InputError(`${store.path}: tensor ${key} is ${t.dtype}, expected a float type`, store.path);
  }
  const data = t.source.kind === 'file'
    ? { kind: 'external' as const, path: t.source.path, offset: t.source.offset, length: t.source.length }
    : { kind: 'inline' as const, bytes: t.source.bytes };
  return { value: g.initializer(key, t.dtype, t.shape, data), dtype: t.dtype };
}
