// The decoder LLM's configuration, read from a Hugging Face `config.json` of model_type `llama`
// (Vicuna, LLaMA-3, Yi) or `phi3` (Phi-3-mini). Both the transformers 5 spelling
// (`rope_parameters: { rope_theta, rope_type, partial_rotary_factor }`) and the older one
// (top-level `rope_theta`, `rope_scaling`, `partial_rotary_factor`) are read.

import { InputError } from '../../core/errors.js';

export type LlmArch = 'llama' | 'phi3';

export interface LlmConfig {
  arch: LlmArch;
  hiddenSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediateSize: number;
  rmsEps: number;
  ropeTheta: number;
  /** Rotated leading dims of each head: int(headDim * partial_rotary_factor), even. */
  rotaryDim: number;
  maxPositions: number;
  vocabSize: number;
  bosTokenId?: number;
  /** Every id that ends generation (HF configs may give one id or a list). */
  eosTokenIds: number[];
  tieWordEmbeddings: boolean;
  /** q/k/v/o projections carry biases (LLaMA `attention_bias`). */
  attentionBias: boolean;
  /** gate/up/down projections carry biases (LLaMA `mlp_bias`). */
  mlpBias: boolean;
  /**
   * Causal sliding window (HF semantics: a query at i sees keys j with i - j < slidingWindow),
   * as Phi-3-mini-4k's 2047; undefined = full causal attention.
   */
  slidingWindow?: number;
}

const ARCHS: readonly LlmArch[] = ['llama', 'phi3'];

/** Parse a config.json object; `source` names the file in error messages. */
export function parseLlmConfig(json: Record<string, unknown>, source: string): LlmConfig {
  const bad = (msg: string) => new InputError(`${source}: ${msg}`, source);
  const type = json['model_type'];
  if (typeof type !== 'string') throw bad('no model_type');
  if (!ARCHS.includes(type as LlmArch)) {
    throw bad(`model_type '${type}' is not supported as the LLM (supported: ${ARCHS.join(', ')})`);
  }
  const arch = type as LlmArch;
  const num = (k: string, dflt?: number): number => {
    const v = json[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(`lacks a numeric ${k}`);
    return v;
  };
  const int = (k: string, dflt?: number): number => {
    const v = num(k, dflt);
    if (!Number.isInteger(v) || v <= 0) throw bad(`${k} must be a positive integer, got ${v}`);
    return v;
  };
  const optId = (k: string): number | undefined => {
    const v = json[k];
    return typeof v === 'number' && Number.isInteger(v) ? v : undefined;
  };

  const hiddenSize = int('hidden_size');
  const heads = int('num_attention_heads');
  const kvHeads = int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) throw bad(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const headDim = json['head_dim'] == null ? hiddenSize / heads : int('head_dim');
  if (!Number.isInteger(headDim)) throw bad(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${heads}`);

  const act = json['hidden_act'] ?? 'silu';
  if (act !== 'silu') throw bad(`hidden_act '${String(act)}' is not implemented (only silu)`);

  // Rope: transformers 5 nests everything under rope_parameters; older configs use top-level
  // rope_theta / rope_scaling / partial_rotary_factor.
  const rp = json['rope_parameters'];
  const params = rp && typeof rp === 'object' && !Array.isArray(rp) ? (rp as Record<string, unknown>) : undefined;
  const scaling = json['rope_scaling'];
  const scalingObj = scaling && typeof scaling === 'object' ? (scaling as Record<string, unknown>) : undefined;
  const ropeType = params?.['rope_type'] ?? params?.['type'] ?? scalingObj?.['rope_type'] ?? scalingObj?.['type'] ?? 'default';
  if (ropeType !== 'default') {
    throw bad(`rope scaling type '${String(ropeType)}' is not implemented (only the default rope)`);
  }
  const theta = params?.['rope_theta'] ?? json['rope_theta'] ?? 10000;
  if (typeof theta !== 'number' || !(theta > 0)) throw bad(`rope_theta must be a positive number, got ${String(theta)}`);
  const prf = params?.['partial_rotary_factor'] ?? json['partial_rotary_factor'] ?? 1;
  if (typeof prf !== 'number' || !(prf > 0 && prf <= 1)) throw bad(`partial_rotary_factor must be in (0, 1], got ${String(prf)}`);
  const rotaryDim = Math.floor(headDim * prf);
  if (rotaryDim % 2 !== 0 || rotaryDim === 0) throw bad(`rotary dimension ${rotaryDim} (head_dim ${headDim} x ${prf}) must be even and positive`);

  const eos = json['eos_token_id'];
  const eosTokenIds = typeof eos === 'number' ? [eos] : Array.isArray(eos) ? eos.filter((x): x is number => typeof x === 'number') : [];

  let slidingWindow: number | undefined;
  // Only Phi-3's modeling applies `sliding_window` (LLaMA's ignores it).
  if (arch === 'phi3' && json['sliding_window'] != null) slidingWindow = int('sliding_window');

  return {
    arch,
    hiddenSize,
    layers: int('num_hidden_layers'),
    heads,
    kvHeads,
    headDim,
    intermediateSize: int('intermediate_size'),
    rmsEps: num('rms_norm_eps', arch === 'phi3' ? 1e-5 : 1e-6),
    ropeTheta: theta,
    rotaryDim,
    maxPositions: int('max_position_embeddings'),
    vocabSize: int('vocab_size'),
    bosTokenId: optId('bos_token_id'),
    eosTokenIds,
    tieWordEmbeddings: json['tie_word_embeddings'] === true,
    attentionBias: arch === 'llama' && json['attention_bias'] === true,
    mlpBias: arch === 'llama' && json['mlp_bias'] === true,
    slidingWindow,
  };
}
