// The decoder LLM as two ONNX graphs:
//
// - `embed`: token ids -> input embeddings (a Gather of `model.embed_tokens.weight`, done on the
//   stored dtype and upcast after, so a bf16 table is never copied to float32 whole).
// - `decoder`: input embeddings [1, S, H] plus the KV cache of the P positions before them ->
//   logits and the cache with the S new positions. One graph serves the prefill of a whole prompt
//   (S = prompt length, P = 0) and the one-token decode steps (S = 1).
//
// The KV cache is either
// - 'inplace': per layer one caller-owned buffer [1, kvHeads, capacity, headDim] that onnxruntime
//   reads where it lies (an input tensor wraps the caller's memory; `past_length` = P says how
//   many rows are real). The graph outputs only the S new (rotated) key and value rows,
//   new_key.i / new_value.i [1, kvHeads, S, headDim], which the caller writes into its buffer.
//   Each layer's attention is an If with two branches, so that a run executes only the nodes
//   of its case: S = 1 (a decode step), the new query against the P cached rows read where
//   they lie and its own row, one softmax over both, from MatMul/Softmax pieces; S > 1 at P = 0
//   (a prompt), the rows among themselves by onnxruntime's com.microsoft GroupQueryAttention
//   (causal); S > 1 at P > 0 (a follow-up's new rows after a cached prefix), the S queries
//   against the cached rows and each other from the same plain pieces (chunkAttention).
//   Nothing is copied per token but the S new rows. (Until 2026-11-28 one path served both:
//   GroupQueryAttention among the new rows, merged with the cached part through log-sum-exps;
//   ~40 nodes per layer at every decode step where the S = 1 branch has ~25.)
// - 'grow': past [1, kvHeads, P, headDim] in, present [1, kvHeads, P+S, headDim] out (a new,
//   longer tensor each run), with GroupQueryAttention or a plain-op attention for head sizes
//   GQA cannot take.
// Why not GQA's own shared past/present buffer (its kernel appends the new rows in place when
// past and present are the same memory)? That needs the present bound as a pre-allocated
// output, and onnxruntime-node 1.30 copies every fetched output into a new ArrayBuffer after the
// run (tensor_helper.cc, OrtValueToNapiValue): a copy of the whole cache per token, measured
// slower than growing. Nor GQA reading the buffer as its past while its present stays inside the
// run: its kernel then clears and refills that present (the whole cache) every token, about
// twice the time of the split attention per layer (docs/BENCHMARKS.md).
//
// Linear layers are FusedMatMul on float weights, or MatMulNBits on block-quantized weights
// (src/model/llm/quantized.ts). Rotary embeddings are applied before attention as HF's
// `apply_rotary_pos_emb` does (rotate_half, non-interleaved, on the first `rotaryDim` dims of
// each head) by onnxruntime's RotaryEmbedding, from cos/sin tables computed in float32 inside
// the graph (folded into constants at load).

import { Graph, Value, MS_DOMAIN } from '../../graph/graph.js';
import { rmsNorm } from '../../graph/blocks.js';
import { WeightStore } from '../../weights/types.js';
import { Params } from '../params.js';
import { LlmConfig } from './config.js';
import { LlmParams, QuantizedLinears } from './quantized.js';
import { LayerLayout } from './layout.js';
import { llamaLayout } from './llama.js';
import { phi3Layout } from './phi3.js';

/** Graph input/output names (the KV names take the layer index). */
export const NAMES = {
  ids: 'input_ids',
  embeds: 'inputs_embeds',
  logitsFrom: 'logits_from',
  logits: 'logits',
  /** int64 [1]: positions already in an in-place cache (P). */
  pastLength: 'past_length',
  /** int64 [1]: zero rows appended to the in-place cache's new rows (spare capacity; 0 = none). */
  spareRows: 'spare_rows',
  /** In-place cache: the S new key / value rows then spare_rows zero rows [1, kvHeads, S + R, headDim]. */
  newKey: (i: number) => `new_key.${i}`,
  newValue: (i: number) => `new_value.${i}`,
  pastKey: (i: number) => `past_key.${i}`,
  pastValue: (i: number) => `past_value.${i}`,
  presentKey: (i: number) => `present_key.${i}`,
  presentValue: (i: number) => `present_value.${i}`,
  /** Batched decoding (DecoderOptions.batchSlots > 1): int64 [1], 1 = one row per slot's cache. */
  batch: 'batch',
  /** Slot b >= 1's cache buffers and length (slot 0 uses past_key.i / past_length). */
  slotKey: (i: number, b: number) => `past_key.${i}.slot${b}`,
  slotValue: (i: number, b: number) => `past_value.${i}.slot${b}`,
  slotLength: (b: number) => `past_length.slot${b}`,
} as const;

const LAYOUTS: Record<LlmConfig['arch'], LayerLayout> = { llama: llamaLayout, phi3: phi3Layout };

/** How the architecture stores a decoder layer (its Linear modules included). */
export function layerLayout(c: LlmConfig): LayerLayout {
  return LAYOUTS[c.arch];
}

/** Attention and cache kinds the options resolve to for this model. */
export function decoderKinds(c: LlmConfig, opts: DecoderOptions = {}): { attention: 'gqa' | 'ops'; cache: 'inplace' | 'grow' } {
  // onnxruntime's GroupQueryAttention (1.30, CPU) takes head sizes that are multiples of 8; the
  // plain-op attention serves any other size.
  const attention = opts.attention ?? (c.headDim % 8 === 0 ? 'gqa' : 'ops');
  const cache = opts.cache ?? (attention === 'gqa' ? 'inplace' : 'grow');
  if (cache === 'inplace' && attention !== 'gqa') throw new Error('the in-place KV cache needs GroupQueryAttention (attention: gqa)');
  return { attention, cache };
}

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
  const table = new Params(g, store).raw(key, [c.vocabSize, c.hiddenSize]);
  let rows = g.op1('Gather', [table.value, ids], { axis: 0 }, { name: 'embed.rows' });
  if (table.dtype !== 'F32') rows = g.op1('Cast', [rows], { to: 1 }, { name: 'embed.f32' });
  g.output(rows, NAMES.embeds, 'F32', ['n', c.hiddenSize]);
  return g;
}

/**
 * inputs_embeds [1, S, H], logits_from int64 [1] (first position to compute logits for: 0 for
 * every position, S-1 for the last only), and the cache:
 * - 'grow': past_key.i / past_value.i [1, kvHeads, P, headDim] -> present_key.i /
 *   present_value.i [1, kvHeads, P+S, headDim];
 * - 'inplace': past_length int64 [1] = P, spare_rows int64 [1] = R, past_key.i / past_value.i
 *   [1, kvHeads, C, headDim] of any capacity C >= P (rows P.. ignored) -> new_key.i /
 *   new_value.i [1, kvHeads, S + R, headDim], the rows for positions P..P+S-1 then R zero rows;
 * -> logits [1, S - logits_from, V].
 */
export function buildDecoderGraph(store: WeightStore, c: LlmConfig, opts: DecoderOptions = {}): Graph {
  const g = new Graph('llm_decoder');
  const layout = LAYOUTS[c.arch];
  const p = new LlmParams(g, store, opts.quantization);
  const H = c.hiddenSize;
  const { attention: kind, cache } = decoderKinds(c, opts);
  const kvDims = [1, c.kvHeads, cache === 'inplace' ? 'capacity' : 'past', c.headDim];
  const embeds = g.input(NAMES.embeds, 'F32', [1, 'seq', H]);
  const logitsFrom = g.input(NAMES.logitsFrom, 'I64', [1]);
  const pastLength = cache === 'inplace' ? g.input(NAMES.pastLength, 'I64', [1]) : undefined;
  // The new rows come out padded with `spare` zero rows: a prompt's rows then form a whole cache
  // buffer with room to grow, which the caller keeps as it is (no copy into fresh memory).
  const spare = cache === 'inplace' ? g.input(NAMES.spareRows, 'I64', [1]) : undefined;
  const padRows = spare && g.op1('Concat', [g.constI64([0, 0, 0, 0, 0, 0]), spare, g.constI64([0])], { axis: 0 }, { name: 'spare_pads' }); // [8]
  const past: { k: Value; v: Value }[] = [];
  for (let i = 0; i < c.layers; i++) {
    past.push({ k: g.input(NAMES.pastKey(i), 'F32', kvDims), v: g.input(NAMES.pastValue(i), 'F32', kvDims) });
  }
  // Batched decoding: N slots, each a conversation's cache; a batch run has one row per slot.
  const N = cache === 'inplace' ? Math.max(1, opts.batchSlots ?? 1) : 1;
  const batch = N > 1 ? g.input(NAMES.batch, 'I64', [1]) : undefined;
  const slotPast: { k: Value; v: Value }[][] = [];
  const slotLength: Value[] = [];
  for (let b = 1; b < N; b++) {
    slotLength.push(g.input(NAMES.slotLength(b), 'I64', [1]));
    slotPast.push(Array.from({ length: c.layers }, (_, i) => ({
      k: g.input(NAMES.slotKey(i, b), 'F32', [1, c.kvHeads, `capacity${b}`, c.headDim]),
      v: g.input(NAMES.slotValue(i, b), 'F32', [1, c.kvHeads, `capacity${b}`, c.headDim]),
    })));
  }

  // Positions P..P+S-1: P from the past's shape, or given when the cache has spare capacity.
  const P = pastLength ?? g.op1('Shape', [past[0]!.k], { start: 2, end: 3 }, { name: 'past_len' }); // [1]
  const S = g.op1('Shape', [embeds], { start: 1, end: 2 }, { name: 'seq_len' }); // [1]
  const total = g.op1('Add', [P, S], {}, { name: 'total_len' }); // [1]
  // GroupQueryAttention: seqlens_k = total - 1 (int32 [batch]), total_sequence_length int32 scalar,
  // where total counts the keys it sees: past and new ('grow'), the new rows only ('inplace').
  const gqaTotal = cache === 'inplace' ? S : total;
  const seqlensK = g.op1('Cast', [g.op1('Sub', [gqaTotal, g.constI64([1])])], { to: 6 }, { name: 'seqlens_k' });
  const totalLen = g.op1('Cast', [g.op1('Squeeze', [gqaTotal, g.constI64([0])])], { to: 6 }, { name: 'total_seq' });
  const rope = rotaryTables(g, c);
  const mask = kind === 'ops' ? causalMask(g, c, P, total) : undefined;
  // In-place cache: one new row (decode) or a prompt at P = 0, told apart once per run.
  const oneRow = cache === 'inplace' ? g.op1('Equal', [S, g.constI64([1])], {}, { name: 'one_new_row' }) : undefined; // bool [1]
  // A batch run: row b at its slot's own position P_b; otherwise rows at P..P+S-1.
  const isBatch = batch && g.op1('Equal', [batch, g.constI64([1])], {}, { name: 'is_batch' });
  let positions: Value = P;
  if (isBatch) {
    const pb = g.branch('batch_positions');
    const bp = pb.op1('Unsqueeze', [pb.op1('Concat', [P, ...slotLength], { axis: 0 }), g.constI64([0])]); // [1, N]
    pb.output(bp, bp.name, 'I64');
    const pr = g.branch('run_positions');
    const sq = (x: Value) => pr.op1('Squeeze', [x, g.constI64([0])]);
    const rp = pr.op1('Unsqueeze', [pr.op1('Range', [sq(P), sq(total), g.constI64([1], [])]), g.constI64([0])]); // [1, S]
    pr.output(rp, rp.name, 'I64');
    positions = g.op1('If', [isBatch], { then_branch: { graph: pb }, else_branch: { graph: pr } }, { name: 'positions' });
  }
  const slotRows = slotPast.map((sp, b) => oneRowCachedRows(g, c, slotLength[b]!, sp[0]!.k, `slot${b + 1}`));
  // Several rows: a prompt (no cached rows) or a chunk after cached ones.
  const fresh = cache === 'inplace' ? g.op1('Equal', [P, g.constI64([0])], {}, { name: 'no_cached_rows' }) : undefined; // bool [1]
  const cachedRows = cache === 'inplace' ? oneRowCachedRows(g, c, P, past[0]!.k) : undefined;

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
    const qr = applyRotary(g, q, c.heads, c, rope, positions, `${name}.q_rope`);
    const kr = applyRotary(g, k, c.kvHeads, c, rope, positions, `${name}.k_rope`);
    let att: Value;
    if (cache === 'inplace') {
      // Two branches, so each run executes only its own nodes: one new row against the cached
      // rows (decode), or the prompt's rows among themselves (prefill, P = 0).
      const one = g.branch(`${name}.one_row`);
      const r = oneRowAttention(one, c, qr, kr, v, past[i]!, cachedRows!, padRows!, name);
      for (const x of [r.att, r.newK, r.newV]) one.output(x, x.name);
      const many = g.branch(`${name}.many_rows`);
      const rows = many.branch(`${name}.prompt_rows`);
      const [onPrompt, newK, newV] = rows.op('GroupQueryAttention', [qr, kr, v, null, null, seqlensK, totalLen], gqaAttrs,
        { domain: MS_DOMAIN, outputs: 3, name: `${name}.gqa` });
      const promptOut = [onPrompt!, rows.op1('Pad', [newK!, padRows!], {}, { name: `${name}.pad_key` }), rows.op1('Pad', [newV!, padRows!], {}, { name: `${name}.pad_value` })];
      for (const x of promptOut) rows.output(x, x.name);
      // Several rows after cached ones (a follow-up's new part): all at once, from plain ops.
      const chunk = many.branch(`${name}.chunk_rows`);
      const cr = chunkAttention(chunk, c, qr, kr, v, past[i]!, P, padRows!, name);
      for (const x of [cr.att, cr.newK, cr.newV]) chunk.output(x, x.name);
      const [m0, m1, m2] = many.op('If', [fresh!], { then_branch: { graph: rows }, else_branch: { graph: chunk } }, { outputs: 3, name: `${name}.rows_attention` });
      for (const x of [m0!, m1!, m2!]) many.output(x, x.name);
      // With batch slots the unbatched attention is itself a branch (a batch run skips it).
      const alone = isBatch ? g.branch(`${name}.unbatched`) : g;
      let [a0, k0, v0] = alone.op('If', [oneRow!], { then_branch: { graph: one }, else_branch: { graph: many } }, { outputs: 3, name: `${name}.attention` });
      if (isBatch) {
        // One row per slot: row b against slot b's cache (the one-row attention, N times).
        for (const x of [a0!, k0!, v0!]) alone.output(x, x.name);
        const bb = g.branch(`${name}.batched`);
        const row = (x: Value, b: number) => bb.op1('Slice', [x, g.constI64([b]), g.constI64([b + 1]), g.constI64([1])]);
        const parts = Array.from({ length: N }, (_, b) => oneRowAttention(bb, c, row(qr, b), row(kr, b), row(v, b), b === 0 ? past[i]! : slotPast[b - 1]![i]!, b === 0 ? cachedRows! : slotRows[b - 1]!, padRows!, `${name}.slot${b}`));
        const outs = [
          bb.op1('Concat', parts.map((x) => x.att), { axis: 1 }, { name: `${name}.batch_attn` }),
          bb.op1('Concat', parts.map((x) => x.newK), { axis: 2 }, { name: `${name}.batch_key` }),
          bb.op1('Concat', parts.map((x) => x.newV), { axis: 2 }, { name: `${name}.batch_value` }),
        ];
        for (const x of outs) bb.output(x, x.name);
        [a0, k0, v0] = g.op('If', [isBatch], { then_branch: { graph: bb }, else_branch: { graph: alone } }, { outputs: 3, name: `${name}.batch_or_not` });
      }
      g.output(k0!, NAMES.newKey(i), 'F32', [1, c.kvHeads, 'rows', c.headDim]);
      g.output(v0!, NAMES.newValue(i), 'F32', [1, c.kvHeads, 'rows', c.headDim]);
      att = a0!;
    } else {
      const [a0, presentK, presentV] = kind === 'gqa'
        ? g.op('GroupQueryAttention', [qr, kr, v, past[i]!.k, past[i]!.v, seqlensK, totalLen], gqaAttrs,
          { domain: MS_DOMAIN, outputs: 3, name: `${name}.gqa` })
        : opsAttention(g, c, qr, kr, v, past[i]!, mask!, name);
      att = a0!;
      g.output(presentK!, NAMES.presentKey(i), 'F32', [1, c.kvHeads, 'total', c.headDim]);
      g.output(presentV!, NAMES.presentValue(i), 'F32', [1, c.kvHeads, 'total', c.headDim]);
    }
    const o = a.linear(att, 'o_proj', H, c.heads * c.headDim, layout.outBias(c, 'o_proj'), `${name}.o_proj`);
    x = g.op1('Add', [x, o], {}, { name: `${name}.attn_res` });

    x = mlpResidual(g, l, layout, c, x, name);
  }

  const big = g.constI64([Number.MAX_SAFE_INTEGER]);
  const kept = g.op1('Slice', [x, logitsFrom, big, g.constI64([1])], {}, { name: 'logit_positions' }); // [1, S', H]
  const normed = rmsNorm(g, kept, p.take('model.norm.weight', [H]), c.rmsEps, 'final_norm');
  // A tied head reads the embedding table, unless the folder holds a quantized copy as lm_head.
  const head = c.tieWordEmbeddings && !p.isQuantized('lm_head') ? 'model.embed_tokens' : 'lm_head';
  const logits = p.linear(normed, head, c.vocabSize, H, false, 'lm_head');
  g.output(logits, NAMES.logits, 'F32', [1, 'kept', c.vocabSize]);
  return g;
}

/** x + down(silu(gate(h)) * up(h)), h = RMSNorm(x): a decoder layer's MLP half. `l` is under `model.layers.{i}.`. */
export function mlpResidual(g: Graph, l: LlmParams, layout: LayerLayout, c: LlmConfig, x: Value, name: string): Value {
  const m = l.sub('mlp.');
  const h = rmsNorm(g, x, l.take('post_attention_layernorm.weight', [c.hiddenSize]), c.rmsEps, `${name}.ln2`);
  const { gate, up } = layout.gateUp(g, m, c, h, name);
  const act = g.op1('Mul', [gate, g.op1('Sigmoid', [gate])], {}, { name: `${name}.silu` });
  const down = m.linear(g.op1('Mul', [act, up], {}, { name: `${name}.gated` }), 'down_proj', c.hiddenSize, c.intermediateSize, layout.outBias(c, 'down_proj'), `${name}.down_proj`);
  return g.op1('Add', [x, down], {}, { name: `${name}.mlp_res` });
}

export interface DecoderOptions {
  /**
   * 'gqa': onnxruntime's fused GroupQueryAttention (default when head_dim is a multiple of 8);
   * 'ops': the same attention from MatMul/Softmax, for any head size.
   */
  attention?: 'gqa' | 'ops';
  /** KV cache kind (default 'inplace' with GQA, 'grow' with the plain-op attention, which only has that). */
  cache?: 'inplace' | 'grow';
  /** Run linears stored quantized (`X.weight.qweight`) on MatMulNBits with these settings. */
  quantization?: QuantizedLinears;
  /**
   * In-place cache: conversations a batch run can decode together (one row each, one decoder run
   * for all; default 1: no batch inputs). Each slot past the first adds its buffers as inputs.
   */
  batchSlots?: number;
}

/**
 * Which keys each query may see: [S, T] booleans for queries at P..total-1 and keys 0..total-1,
 * causal, and within the sliding window when the model has one (i - j < W, as HF).
 */
function causalMask(g: Graph, c: LlmConfig, P: Value, total: Value): Value {
  const squeeze = (v: Value) => g.op1('Squeeze', [v, g.constI64([0])]);
  const one = g.constI64([1], []);
  const q = g.op1('Unsqueeze', [g.op1('Range', [squeeze(P), squeeze(total), one]), g.constI64([1])]); // [S, 1]
  const k = g.op1('Unsqueeze', [g.op1('Range', [g.constI64([0], []), squeeze(total), one]), g.constI64([0])]); // [1, T]
  let allowed = g.op1('LessOrEqual', [k, q]);
  if (c.slidingWindow !== undefined) {
    allowed = g.op1('And', [allowed, g.op1('Less', [g.op1('Sub', [q, k]), g.constI64([c.slidingWindow], [])])]);
  }
  return g.op1('Unsqueeze', [allowed, g.constI64([0, 1])], {}, { name: 'attn_mask' }); // [1, 1, S, T]
}

/**
 * For the one-row attention, computed once per run from the buffers' capacity C: `mask`, which
 * buffer rows (0..C-1) the one new query, at position P, may see ([C, 1] booleans: rows below P,
 * and within the sliding window when the model has one, P - j < W, as HF); `split`, the sizes
 * [C, 1] of the cached and own parts of its softmax row.
 */
function oneRowCachedRows(g: Graph, c: LlmConfig, P: Value, buffer: Value, prefix = ''): { mask: Value; split: Value } {
  const n = (x: string) => (prefix ? `${prefix}.${x}` : x);
  const C = g.op1('Shape', [buffer], { start: 2, end: 3 }, { name: n('cache_capacity') });
  const j = g.op1('Range', [g.constI64([0], []), g.op1('Squeeze', [C, g.constI64([0])]), g.constI64([1], [])]); // [C]
  let ok = g.op1('Less', [j, P]);
  if (c.slidingWindow !== undefined) ok = g.op1('And', [ok, g.op1('Less', [g.op1('Sub', [P, j]), g.constI64([c.slidingWindow], [])])]);
  return {
    mask: g.op1('Unsqueeze', [ok, g.constI64([1])], {}, { name: n('cached_rows') }),
    split: g.op1('Concat', [C, g.constI64([1])], { axis: 0 }, { name: n('cached_own_split') }),
  };
}

/**
 * Attention of one new query q [1, 1, heads*hd] (rotated) over the cached rows of the buffers
 * (past [1, kvH, C, hd], the rows `cached.mask` allows) and its own key and value k, v
 * [1, 1, kvH*hd]: one softmax over both. The buffers are read where they lie: the scores as
 * K q^T (MatMul over K's rows, measured 1.4x faster than q K^T through FusedMatMul's transB
 * here), the output as p V. -> the output [1, 1, heads*hd] and the new key and value rows
 * [1, kvH, 1 + R, hd] (R = spare zero rows).
 */
function oneRowAttention(g: Graph, c: LlmConfig, q: Value, k: Value, v: Value, past: { k: Value; v: Value }, cached: { mask: Value; split: Value }, padRows: Value, name: string) {
  const hd = c.headDim;
  const kvH = c.kvHeads;
  const rep = c.heads / kvH;
  const I = (x: number[]) => g.constI64(x);
  // The query heads grouped by the kv head they share, scaled: [1, kvH, rep, hd].
  const q4 = g.op1('Reshape', [g.op1('Mul', [q, g.constF32([1 / Math.sqrt(hd)], [])]), I([1, kvH, rep, hd])]);
  const k4 = g.op1('Reshape', [k, I([1, kvH, 1, hd])]);
  const v4 = g.op1('Reshape', [v, I([1, kvH, 1, hd])]);
  // [1, kvH, rep, hd] -> [1, kvH, hd, rep] and [1, kvH, C, rep] -> [1, kvH, rep, C]: reshapes when rep = 1.
  const swap = (x: Value, to: number[]) => (rep === 1 ? g.op1('Reshape', [x, I(to)]) : g.op1('Transpose', [x], { perm: [0, 1, 3, 2] }));
  const cachedScores = g.op1('MatMul', [past.k, swap(q4, [1, kvH, hd, 1])], {}, { name: `${name}.cached_scores` }); // [1, kvH, C, rep]
  // A finite floor instead of -inf: rows not yet written hold stale values, never NaN weights.
  const masked = swap(g.op1('Where', [cached.mask, cachedScores, g.constF32([-1e30], [])]), [1, kvH, 1, -1]); // [1, kvH, rep, C]
  const own = g.op1('ReduceSum', [g.op1('Mul', [q4, k4]), I([-1])], { keepdims: 1 }); // [1, kvH, rep, 1]
  const probs = g.op1('Softmax', [g.op1('Concat', [masked, own], { axis: -1 })], { axis: -1 }); // [1, kvH, rep, C + 1]
  const [pCached, pOwn] = g.op('Split', [probs, cached.split], { axis: -1 }, { outputs: 2 });
  const out = g.op1('Add', [g.op1('MatMul', [pCached!, past.v]), g.op1('Mul', [pOwn!, v4])]); // [1, kvH, rep, hd]
  return {
    att: g.op1('Reshape', [out, I([1, 1, c.heads * hd])], {}, { name: `${name}.attn` }),
    newK: g.op1('Pad', [k4, padRows], {}, { name: `${name}.new_key` }),
    newV: g.op1('Pad', [v4, padRows], {}, { name: `${name}.new_value` }),
  };
}

/**
 * Attention of S new queries q [1, S, heads*hd] (rotated, at positions P..P+S-1) over the P
 * cached rows of the buffers (past [1, kvH, C, hd], read where they lie) and their own keys and
 * values k, v [1, S, kvH*hd], causally: one softmax over both parts, as oneRowAttention does for
 * one row. Queries are grouped by kv head as rows s*rep + r of [1, kvH, S*rep, hd]. Masks allow
 * cached row j < P and own row t <= s, and with a sliding window W only keys within W of the
 * query (position - key < W, as HF). -> the output [1, S, heads*hd] and the new key and value
 * rows [1, kvH, S + R, hd] (R = spare zero rows).
 */
function chunkAttention(g: Graph, c: LlmConfig, q: Value, k: Value, v: Value, past: { k: Value; v: Value }, P: Value, padRows: Value, name: string) {
  const hd = c.headDim;
  const kvH = c.kvHeads;
  const rep = c.heads / kvH;
  const I = (x: number[]) => g.constI64(x);
  const scalar = (x: number) => g.constI64([x], []);
  const sq = (x: Value) => g.op1('Squeeze', [x, I([0])]);
  const S = g.op1('Shape', [q], { start: 1, end: 2 }); // [1]
  const C = g.op1('Shape', [past.k], { start: 2, end: 3 }); // [1]
  // [1, S, heads*hd] -> [1, kvH, S*rep, hd], row s*rep + r.
  const q5 = g.op1('Transpose', [g.op1('Reshape', [g.op1('Mul', [q, g.constF32([1 / Math.sqrt(hd)], [])]), I([1, -1, kvH, rep, hd])])], { perm: [0, 2, 1, 3, 4] });
  const qq = g.op1('Reshape', [q5, I([1, kvH, -1, hd])]);
  const kk = g.op1('Transpose', [g.op1('Reshape', [k, I([1, -1, kvH, hd])])], { perm: [0, 2, 1, 3] }); // [1, kvH, S, hd]
  const vv = g.op1('Transpose', [g.op1('Reshape', [v, I([1, -1, kvH, hd])])], { perm: [0, 2, 1, 3] });
  // The query's index s of each row, and its position P + s: [S*rep, 1].
  const rowsN = g.op1('Mul', [sq(S), scalar(rep)]);
  const s = g.op1('Unsqueeze', [g.op1('Div', [g.op1('Range', [scalar(0), rowsN, scalar(1)]), scalar(rep)]), I([1])]);
  const pos = g.op1('Add', [s, P]);
  const j = g.op1('Unsqueeze', [g.op1('Range', [scalar(0), sq(C), scalar(1)]), I([0])]); // [1, C]
  const t = g.op1('Unsqueeze', [g.op1('Range', [scalar(0), sq(S), scalar(1)]), I([0])]); // [1, S]
  let cachedOk = g.op1('Less', [j, P]); // [1, C]
  let ownOk = g.op1('LessOrEqual', [t, s]); // [S*rep, S]
  if (c.slidingWindow !== undefined) {
    const W = scalar(c.slidingWindow);
    cachedOk = g.op1('And', [cachedOk, g.op1('Less', [g.op1('Sub', [pos, j]), W])]); // [S*rep, C]
    ownOk = g.op1('And', [ownOk, g.op1('Less', [g.op1('Sub', [s, t]), W])]);
  }
  const floor = g.constF32([-1e30], []);
  // K q^T as in the one-row case (K's rows read where they lie), then to [1, kvH, S*rep, C].
  const cachedScores = g.op1('Transpose', [g.op1('MatMul', [past.k, g.op1('Transpose', [qq], { perm: [0, 1, 3, 2] })])], { perm: [0, 1, 3, 2] }, { name: `${name}.chunk_cached_scores` });
  const ownScores = g.op1('MatMul', [qq, g.op1('Transpose', [kk], { perm: [0, 1, 3, 2] })]); // [1, kvH, S*rep, S]
  const scores = g.op1('Concat', [g.op1('Where', [cachedOk, cachedScores, floor]), g.op1('Where', [ownOk, ownScores, floor])], { axis: -1 });
  const probs = g.op1('Softmax', [scores], { axis: -1 });
  const [pCached, pOwn] = g.op('Split', [probs, g.op1('Concat', [C, S], { axis: 0 })], { axis: -1 }, { outputs: 2 });
  const out = g.op1('Add', [g.op1('MatMul', [pCached!, past.v]), g.op1('MatMul', [pOwn!, vv])]); // [1, kvH, S*rep, hd]
  const back = g.op1('Transpose', [g.op1('Reshape', [out, I([1, kvH, -1, rep, hd])])], { perm: [0, 2, 1, 3, 4] }); // [1, S, kvH, rep, hd]
  return {
    att: g.op1('Reshape', [back, I([1, -1, c.heads * hd])], {}, { name: `${name}.chunk_attn` }),
    newK: g.op1('Pad', [kk, padRows], {}, { name: `${name}.chunk_key` }),
    newV: g.op1('Pad', [vv, padRows], {}, { name: `${name}.chunk_value` }),
  };
}

/**
 * Causal attention with a growing cache from plain ops: q [1, S, heads*hd], k/v [1, S, kvH*hd]
 * (k already rotated), past [1, kvH, P, hd] -> out [1, S, heads*hd], present [1, kvH, P+S, hd].
 */
function opsAttention(g: Graph, c: LlmConfig, q: Value, k: Value, v: Value, past: { k: Value; v: Value }, mask: Value, name: string): Value[] {
  const hd = c.headDim;
  const rep = c.heads / c.kvHeads;
  const bnsh = (x: Value, heads: number) =>
    g.op1('Transpose', [g.op1('Reshape', [x, g.constI64([0, 0, heads, hd])])], { perm: [0, 2, 1, 3] });
  const presentK = g.op1('Concat', [past.k, bnsh(k, c.kvHeads)], { axis: 2 }, { name: `${name}.present_k` });
  const presentV = g.op1('Concat', [past.v, bnsh(v, c.kvHeads)], { axis: 2 }, { name: `${name}.present_v` });
  // Each kv head serves `rep` query heads: [1, kvH, T, hd] -> [1, heads, T, hd]
  const repeat = (x: Value) => rep === 1 ? x : g.op1('Reshape', [
    g.op1('Expand', [g.op1('Unsqueeze', [x, g.constI64([2])]), g.constI64([1, 1, rep, 1, 1])]),
    g.constI64([0, c.heads, -1, hd]),
  ]);
  const scores = g.op1('Mul', [
    g.op1('MatMul', [bnsh(q, c.heads), g.op1('Transpose', [repeat(presentK)], { perm: [0, 1, 3, 2] })]),
    g.constF32([1 / Math.sqrt(hd)], []),
  ]); // [1, heads, S, T]
  const masked = g.op1('Where', [mask, scores, g.constF32([-Infinity], [])]);
  const probs = g.op1('Softmax', [masked], { axis: -1 });
  const out = g.op1('Transpose', [g.op1('MatMul', [probs, repeat(presentV)])], { perm: [0, 2, 1, 3] }); // [1, S, heads, hd]
  return [g.op1('Reshape', [out, g.constI64([0, 0, c.heads * hd])], {}, { name: `${name}.attn` }), presentK, presentV];
}

export interface RopeTables {
  /** [maxPositions, rotaryDim/2] float32 */
  cos: Value;
  sin: Value;
}

/**
 * cos/sin of (position * inv_freq) for every position the model takes, float32 as HF computes
 * them. Built from constant ops, which onnxruntime folds into two tables when the session loads
 * (the graph stays small; the tables cost maxPositions x rotaryDim x 4 bytes).
 */
export function rotaryTables(g: Graph, c: LlmConfig): RopeTables {
  const half = c.rotaryDim / 2;
  const pos = g.op1('Range', [g.constI64([0], []), g.constI64([c.maxPositions], []), g.constI64([1], [])], {}, { name: 'rope.positions' });
  const posF = g.op1('Cast', [g.op1('Unsqueeze', [pos, g.constI64([1])])], { to: 1 }); // [maxPositions, 1]
  const freqs = g.op1('Mul', [posF, g.constF32(ropeInvFreq(c.ropeTheta, c.rotaryDim), [1, half], 'rope.inv_freq')], {}, { name: 'rope.freqs' });
  return { cos: g.op1('Cos', [freqs], {}, { name: 'rope.cos' }), sin: g.op1('Sin', [freqs], {}, { name: 'rope.sin' }) };
}

/**
 * x [1, S, heads*headDim] at positions P..P+S-1 (P int64 [1]; or the positions [1, S] themselves) -> the same with HF's rotary
 * applied per head: rot = x[..., :rotaryDim] = [x1, x2] -> [x1 cos - x2 sin, x2 cos + x1 sin];
 * x[..., rotaryDim:] passes. One com.microsoft RotaryEmbedding node (non-interleaved), which
 * reads the tables at the S positions (a node per step matters: a decode step runs thousands).
 */
export function applyRotary(g: Graph, x: Value, heads: number, c: LlmConfig, r: RopeTables, P: Value, name: string): Value {
  return g.op1('RotaryEmbedding', [x, P, r.cos, r.sin], {
    interleaved: 0,
    num_heads: heads,
    rotary_embedding_dim: c.rotaryDim,
  }, { domain: MS_DOMAIN, name });
}
