// The benchmark's LLMs on disk: a random-weight decoder in the Hugging Face layout (config.json,
// bf16 safetensors shards with their index, the tiny fixture's tokenizer), and the same weights
// as a llama.cpp GGUF in Q4_0 for the llama.cpp peer.

import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLlmConfig, LlmConfig } from '../src/model/llm/config.js';
import { openWeights } from '../src/weights/open.js';
import { readF32 } from '../src/weights/types.js';
import { writeSafetensors, TensorToWrite } from '../src/weights/write-safetensors.js';
import { GgmlType, GgufMeta, GgufTensor, meta, toF16Bytes, writeGguf } from './gguf.js';
import { GGML_BLOCK, GgmlBlockType } from '../src/quant/ggml-blocks.js';
import { GgmlPool } from '../src/quant/ggml-parallel.js';
import { LlamaCppFtype, llamaCppType, matrixRole } from '../src/quant/formats.js';

/** A decoder's shape, as its config.json states it. */
export interface LlmShape {
  arch: 'llama' | 'phi3';
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  vocab: number;
  maxPositions: number;
  /** Phi-3-mini-4k's 2047 (HF semantics); undefined = full causal attention. */
  slidingWindow?: number;
}

export function llmConfigJson(s: LlmShape): Record<string, unknown> {
  const common = {
    model_type: s.arch, hidden_size: s.hidden, num_hidden_layers: s.layers, num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads, intermediate_size: s.intermediate, vocab_size: s.vocab,
    max_position_embeddings: s.maxPositions, hidden_act: 'silu', rope_theta: 10000.0,
    bos_token_id: 1, tie_word_embeddings: false,
  };
  return s.arch === 'llama'
    ? { ...common, architectures: ['LlamaForCausalLM'], rms_norm_eps: 1e-6, eos_token_id: 2, attention_bias: false, mlp_bias: false }
    : { ...common, architectures: ['Phi3ForCausalLM'], rms_norm_eps: 1e-5, eos_token_id: 32000, sliding_window: s.slidingWindow ?? null };
}

/** Parameters held by the decoder (all matrices, norms and the embedding table). */
export function llmParams(s: LlmShape): number {
  const hd = s.hidden / s.heads;
  const attn = s.hidden * (s.heads * hd) * 2 + s.hidden * (s.kvHeads * hd) * 2;
  const mlp = 3 * s.hidden * s.intermediate;
  return s.layers * (attn + mlp + 2 * s.hidden) + 2 * s.vocab * s.hidden + s.hidden;
}

/** (name, [out, in] or [n], fan-in; 0 = a norm weight near 1) for each tensor, in file order. */
function llmTensors(s: LlmShape): [string, number[], number][] {
  const hd = s.hidden / s.heads;
  const [q, kv, H, I] = [s.heads * hd, s.kvHeads * hd, s.hidden, s.intermediate];
  const out: [string, number[], number][] = [['model.embed_tokens.weight', [s.vocab, H], 1]];
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}.`;
    out.push([`${p}input_layernorm.weight`, [H], 0], [`${p}post_attention_layernorm.weight`, [H], 0]);
    if (s.arch === 'llama') {
      out.push([`${p}self_attn.q_proj.weight`, [q, H], H], [`${p}self_attn.k_proj.weight`, [kv, H], H], [`${p}self_attn.v_proj.weight`, [kv, H], H]);
      out.push([`${p}mlp.gate_proj.weight`, [I, H], H], [`${p}mlp.up_proj.weight`, [I, H], H]);
    } else {
      out.push([`${p}self_attn.qkv_proj.weight`, [q + 2 * kv, H], H], [`${p}mlp.gate_up_proj.weight`, [2 * I, H], H]);
    }
    out.push([`${p}self_attn.o_proj.weight`, [H, q], q], [`${p}mlp.down_proj.weight`, [H, I], I]);
  }
  out.push(['model.norm.weight', [H], 0], ['lm_head.weight', [s.vocab, H], H]);
  return out;
}

/** Uniform bf16 values in [-scale, scale) (or 1 +- 0.05 for norms) from a 32-bit LCG. */
function randomBf16(n: number, fan: number, state: { s: number }): Uint8Array {
  const out = new Uint16Array(n);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const scale = fan > 0 ? 1 / Math.sqrt(fan) : 0.05;
  const base = fan > 0 ? 0 : 1;
  let s = state.s;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    f[0] = base + (s / 2 ** 32 - 0.5) * 2 * scale;
    out[i] = u[0]! >>> 16;
  }
  state.s = s;
  return new Uint8Array(out.buffer);
}

const SHARD_BYTES = 2 ** 31;

/**
 * Writes a random-weight LLM folder in the HF layout under `dir` (atomically: a `.partial`
 * folder renamed at the end), bf16 shards of at most 2 GiB, the tiny fixture's tokenizer.
 */
export function writeRandomLlm(dir: string, s: LlmShape, tokenizerDir: string, seed = 7, log: (m: string) => void = () => {}): void {
  const tmp = `${dir}.partial`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const state = { s: seed >>> 0 };
  const shards: TensorToWrite[][] = [[]];
  let bytes = 0;
  for (const [name, shape] of llmTensors(s)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (bytes > 0 && bytes + 2 * n > SHARD_BYTES) {
      shards.push([]);
      bytes = 0;
    }
    shards[shards.length - 1]!.push({ name, dtype: 'BF16', shape, data: new Uint8Array(0) });
    bytes += 2 * n;
  }
  const weightMap: Record<string, string> = {};
  const fans = new Map(llmTensors(s).map(([n, , f]) => [n, f]));
  let total = 0;
  shards.forEach((list, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    log(`  writing ${file}`);
    const filled = list.map((t) => {
      const n = t.shape.reduce((a, b) => a * b, 1);
      total += 2 * n;
      weightMap[t.name] = file;
      return { ...t, data: randomBf16(n, fans.get(t.name)!, state) };
    });
    writeSafetensors(join(tmp, file), filled);
  });
  writeFileSync(join(tmp, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 1));
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(llmConfigJson(s), null, 2));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
    if (existsSync(join(tokenizerDir, f))) copyFileSync(join(tokenizerDir, f), join(tmp, f));
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
}

// ---- GGUF ----

/** llama.cpp's tensor names for a HF decoder layer's tensors (suffix after `model.layers.{i}.`). */
const LAYER_NAMES: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.qkv_proj.weight': 'attn_qkv.weight',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.gate_up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
};

/** HF name -> GGUF name, or undefined for a tensor llama.cpp does not read. */
export function ggufName(hf: string): string | undefined {
  if (hf === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hf === 'model.norm.weight') return 'output_norm.weight';
  if (hf === 'lm_head.weight') return 'output.weight';
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  const tail = m && LAYER_NAMES[m[2]!];
  return tail ? `blk.${m![1]}.${tail}` : undefined;
}

/**
 * HF LLaMA's q/k rows are laid out for rotate-half rotary; llama.cpp's `llama` arch rotates
 * adjacent pairs, so its converter interleaves the two halves of each head's rows. Same here.
 */
function permuteRows(x: Float32Array, heads: number, cols: number): Float32Array {
  const rowsPerHead = x.length / cols / heads;
  const half = rowsPerHead / 2;
  const out = new Float32Array(x.length);
  for (let h = 0; h < heads; h++) {
    for (let r = 0; r < rowsPerHead; r++) {
      const src = h * rowsPerHead + (r % 2) * half + (r >> 1);
      out.set(x.subarray(src * cols, (src + 1) * cols), (h * rowsPerHead + r) * cols);
    }
  }
  return out;
}

/** Phi-3's added tokens from id 32000 (llama.cpp's phi3 vocabulary looks some up by text). */
const PHI3_ADDED = ['<|endoftext|>', '<|assistant|>', '<|placeholder1|>', '<|placeholder2|>', '<|placeholder3|>',
  '<|placeholder4|>', '<|system|>', '<|end|>', '<|placeholder5|>', '<|placeholder6|>', '<|user|>'];

/** The tokenizer.json vocabulary as a SentencePiece-style GGUF vocabulary of `size` entries. */
function vocabMeta(tokenizerJson: string | undefined, size: number, c: LlmConfig): [string, GgufMeta][] {
  const tokens: string[] = Array.from({ length: size }, (_, i) => `<extra_${i}>`);
  const types: number[] = new Array<number>(size).fill(4); // user-defined
  if (c.arch === 'phi3') PHI3_ADDED.forEach((t, i) => { if (32000 + i < size) { tokens[32000 + i] = t; types[32000 + i] = 3; } });
  if (tokenizerJson && existsSync(tokenizerJson)) {
    const tj = JSON.parse(readFileSync(tokenizerJson, 'utf8')) as { model?: { vocab?: Record<string, number> } };
    for (const [tok, id] of Object.entries(tj.model?.vocab ?? {})) {
      if (id < size) { tokens[id] = tok; types[id] = /^<0x[0-9A-F]{2}>$/.test(tok) ? 6 : 1; }
    }
  } else {
    for (let b = 0; b < 256 && b + 3 < size; b++) { tokens[b + 3] = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`; types[b + 3] = 6; }
  }
  [tokens[0], tokens[1], tokens[2]] = ['<unk>', '<s>', '</s>'];
  [types[0], types[1], types[2]] = [2, 3, 3];
  const eos = c.eosTokenIds[0] ?? 2;
  if (eos >= 3 && eos < size) types[eos] = 3;
  return [
    ['tokenizer.ggml.model', meta.str('llama')],
    ['tokenizer.ggml.tokens', meta.arr('STRING', tokens)],
    ['tokenizer.ggml.scores', meta.arr('F32', tokens.map((_, i) => (types[i] === 1 ? -i : 0)))],
    ['tokenizer.ggml.token_type', meta.arr('I32', types)],
    ['tokenizer.ggml.bos_token_id', meta.u32(c.bosTokenId ?? 1)],
    ['tokenizer.ggml.eos_token_id', meta.u32(eos)],
    ['tokenizer.ggml.unknown_token_id', meta.u32(0)],
    ['tokenizer.ggml.add_bos_token', meta.bool(true)],
  ];
}

/** What a GGUF's matrices are stored as: one of llama.cpp's file types, or every matrix in F16. */
export interface GgufWeights {
  ftype: LlamaCppFtype | 'F16';
  /**
   * true: every matrix (token embedding and output too) in the file type's base block type, as
   * `llama-quantize --pure` makes them; false: llama.cpp's own per-tensor choices
   * (src/quant/formats.ts: the output in Q6_K, Q4_K_M's Q5_K/Q6_K layers).
   */
  pure?: boolean;
}

const FILE_TYPE: Record<GgufWeights['ftype'], number> = { F16: 1, Q4_0: 2, Q8_0: 7, Q4_K_M: 15 };
const BASE_TYPE: Record<LlamaCppFtype, GgmlBlockType> = { Q4_0: 'Q4_0', Q8_0: 'Q8_0', Q4_K_M: 'Q4_K' };

/**
 * The storage type of one HF tensor of `shape` in a GGUF of `w`; with tied embeddings the token
 * embedding is also the output head and gets the head's type, as llama.cpp gives it.
 */
export function ggufTensorType(key: string, shape: readonly number[], layers: number, w: GgufWeights, tied = false): GgmlType {
  if (shape.length !== 2) return 'F32';
  if (w.ftype === 'F16') return 'F16';
  const K = shape[1]!;
  const embed = key === 'model.embed_tokens.weight';
  let t: GgmlType;
  if (w.pure || (embed && !tied)) t = BASE_TYPE[w.ftype];
  else t = llamaCppType(w.ftype, embed ? { kind: 'head', layers } : matrixRole(key, layers), K);
  if (t === 'Q4_K' && K % 256 !== 0) t = 'Q5_0'; // llama.cpp's fallback for the embedding
  return t !== 'F16' && K % GGML_BLOCK[t].values !== 0 ? 'F16' : t;
}

/**
 * Writes the HF LLM folder's weights as a llama.cpp GGUF (default: every matrix in Q4_0, as the
 * bench's race has used since the start; F16 where a row is not a whole number of blocks);
 * norms in F32.
 */
export function writeGgufFromHf(hfDir: string, out: string, weights: GgufWeights = { ftype: 'Q4_0', pure: true }): void {
  const cfgPath = join(hfDir, 'config.json');
  const c = parseLlmConfig(JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>, cfgPath);
  const store = openWeights(hfDir);
  const a = c.arch;
  const metadata: [string, GgufMeta][] = [
    ['general.architecture', meta.str(a)],
    ['general.name', meta.str(`mgllava-bench random ${a}`)],
    ['general.file_type', meta.u32(FILE_TYPE[weights.ftype])], // llama_ftype: MOSTLY_F16, _Q4_0, _Q8_0, _Q4_K_M
    ['general.quantization_version', meta.u32(2)],
    ['general.alignment', meta.u32(32)],
    [`${a}.context_length`, meta.u32(c.maxPositions)],
    [`${a}.embedding_length`, meta.u32(c.hiddenSize)],
    [`${a}.block_count`, meta.u32(c.layers)],
    [`${a}.feed_forward_length`, meta.u32(c.intermediateSize)],
    [`${a}.attention.head_count`, meta.u32(c.heads)],
    [`${a}.attention.head_count_kv`, meta.u32(c.kvHeads)],
    [`${a}.rope.dimension_count`, meta.u32(c.rotaryDim)],
    [`${a}.rope.freq_base`, meta.f32(c.ropeTheta)],
    [`${a}.attention.layer_norm_rms_epsilon`, meta.f32(c.rmsEps)],
  ];
  if (c.slidingWindow !== undefined) metadata.push([`${a}.attention.sliding_window`, meta.u32(c.slidingWindow)]);
  metadata.push(...vocabMeta(join(hfDir, 'tokenizer.json'), c.vocabSize, c));

  const tensors: GgufTensor[] = [];
  for (const key of store.keys()) {
    const name = ggufName(key);
    if (!name) continue;
    const ref = store.get(key)!;
    const shape = [...ref.shape];
    const type = ggufTensorType(key, shape, c.layers, weights, c.tieWordEmbeddings);
    const permute = a === 'llama' && /attn_[qk]\.weight$/.test(name) ? (name.endsWith('attn_q.weight') ? c.heads : c.kvHeads) : 0;
    tensors.push({
      name, shape, type,
      data: () => {
        let x = readF32(ref);
        if (permute) x = permuteRows(x, permute, shape[1]!);
        return type === 'F32' ? new Uint8Array(x.buffer, x.byteOffset, x.byteLength) : type === 'F16' ? toF16Bytes(x) : pool.quantize(type, x);
      },
    });
  }
  const tmp = `${out}.partial`;
  const pool = new GgmlPool();
  try {
    writeGguf(tmp, metadata, tensors);
  } finally {
    pool.close();
  }
  renameSync(tmp, out);
}
