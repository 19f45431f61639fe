// A decoder LLM ready to run: config, the embed and decoder sessions, and KV caches.
//
//   const lm = await CausalLM.load('vicuna-7b/', { checkpoint });   // checkpoint's llm.* override
//   const e = await lm.embed(ids);                                  // [n, H]
//   const cache = lm.newCache();
//   let logits = await lm.forward(promptEmbeds, cache);             // [1, V]; cache.length = S
//   logits = await lm.forward(await lm.embed([next]), cache);       // [1, V]; cache.length = S + 1

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../core/errors.js';
import { F32Tensor, numel } from '../../core/tensor.js';
import { Feed, Session } from '../../runtime/session.js';
import { openWeights } from '../../weights/open.js';
import { WeightStore } from '../../weights/types.js';
import { Graph } from '../../graph/graph.js';
import { llmWeights } from '../llm-weights.js';
import { LlmConfig, parseLlmConfig } from './config.js';
import { DecoderOptions, NAMES, buildDecoderGraph, buildEmbedGraph } from './decoder.js';

export interface CausalLMOptions {
  /** An MG-LLaVA checkpoint whose `llm.*` tensors replace the folder's own. */
  checkpoint?: WeightStore;
  /** Intra-op threads (default: onnxruntime's choice). */
  threads?: number;
  /** Attention implementation (default: fused GroupQueryAttention where the head size allows). */
  attention?: DecoderOptions['attention'];
}

export interface ForwardOptions {
  /** Logits for every position [S, V] instead of the last one only [1, V]. */
  allLogits?: boolean;
}

/**
 * The keys and values of the positions seen so far, per layer [1, kvHeads, length, headDim].
 * Owned by the caller; `forward` replaces the tensors with the grown ones.
 */
export class KvCache {
  /** Positions held. */
  length = 0;
  keys: F32Tensor[];
  values: F32Tensor[];

  constructor(readonly layers: number, readonly kvHeads: number, readonly headDim: number) {
    const empty = (): F32Tensor => ({ dims: [1, kvHeads, 0, headDim], data: new Float32Array(0) });
    this.keys = Array.from({ length: layers }, empty);
    this.values = Array.from({ length: layers }, empty);
  }
}

export function contextError(promptTokens: number, newTokens: number, context: number): InputError {
  return new InputError(
    newTokens > 0
      ? `prompt of ${promptTokens} tokens + ${newTokens} new tokens exceeds the model's context of ${context}`
      : `prompt of ${promptTokens} tokens exceeds the model's context of ${context}`,
  );
}

export class CausalLM {
  private constructor(
    readonly config: LlmConfig,
    private readonly embedSession: Session,
    private readonly decoderSession: Session,
  ) {}

  /** The model folder holds config.json and the weights (safetensors, sharded or torch). */
  static async load(folder: string, opts: CausalLMOptions = {}): Promise<CausalLM> {
    const cfgPath = join(folder, 'config.json');
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new InputError(code === 'ENOENT' ? `${cfgPath}: no such file (the LLM folder needs its config.json)` : `${cfgPath}: cannot read JSON (${(e as Error).message})`, cfgPath);
    }
    const base = openWeights(folder);
    const store = opts.checkpoint ? llmWeights(base, opts.checkpoint) : base;
    return CausalLM.fromStore(parseLlmConfig(json, cfgPath), store, opts);
  }

  /** From a parsed config and the LLM's tensors (keys as in the HF folder). */
  static async fromStore(config: LlmConfig, store: WeightStore, opts: Omit<CausalLMOptions, 'checkpoint'> = {}): Promise<CausalLM> {
    const threads = opts.threads;
    const session = (g: Graph) => {
      const { bytes, externalDataFolder } = g.serialize();
      return Session.create(g.name, bytes, { externalDataFolder, threads });
    };
    // Build both graphs first so a missing or misshapen tensor fails before any session starts.
    const eg = buildEmbedGraph(store, config);
    const dg = buildDecoderGraph(store, config, { attention: opts.attention });
    const embed = await session(eg);
    try {
      return new CausalLM(config, embed, await session(dg));
    } catch (e) {
      await embed.release();
      throw e;
    }
  }

  /** Token ids -> input embeddings [n, H]. */
  async embed(ids: readonly number[]): Promise<F32Tensor> {
    const V = this.config.vocabSize;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new InputError(`token id ${id} is outside the vocabulary of ${V}`);
    }
    const out = await this.embedSession.run({ [NAMES.ids]: { dims: [ids.length], data: BigInt64Array.from(ids, (i) => BigInt(i)) } });
    const e = out[NAMES.embeds]!;
    return { dims: [ids.length, this.config.hiddenSize], data: e.data };
  }

  newCache(): KvCache {
    return new KvCache(this.config.layers, this.config.kvHeads, this.config.headDim);
  }

  /** Throws the context error unless `promptTokens + newTokens` positions fit the model. */
  checkContext(promptTokens: number, newTokens: number): void {
    if (promptTokens + newTokens > this.config.maxPositions) throw contextError(promptTokens, newTokens, this.config.maxPositions);
  }

  /**
   * embeds [S, H] (or [1, S, H]) at positions cache.length .. cache.length+S-1 -> logits [1, V]
   * for the last position ([S, V] for all with `allLogits`); the cache grows by S.
   */
  async forward(embeds: F32Tensor, cache: KvCache, opts: ForwardOptions = {}): Promise<F32Tensor> {
    const c = this.config;
    const dims = embeds.dims.length === 3 && embeds.dims[0] === 1 ? embeds.dims.slice(1) : embeds.dims;
    if (dims.length !== 2 || dims[1] !== c.hiddenSize || embeds.data.length !== numel(dims)) {
      throw new InputError(`input embeddings have shape [${embeds.dims.join(', ')}], expected [S, ${c.hiddenSize}]`);
    }
    const S = dims[0]!;
    if (S === 0) throw new InputError('no input embeddings to run');
    if (cache.layers !== c.layers || cache.kvHeads !== c.kvHeads || cache.headDim !== c.headDim) {
      throw new Error('KV cache belongs to a model of another shape');
    }
    if (cache.length + S > c.maxPositions) {
      throw cache.length > 0 ? contextError(cache.length, S, c.maxPositions) : contextError(S, 0, c.maxPositions);
    }
    const feeds: Record<string, Feed> = {
      [NAMES.embeds]: { dims: [1, S, c.hiddenSize], data: embeds.data },
      [NAMES.logitsFrom]: { dims: [1], data: BigInt64Array.of(BigInt(opts.allLogits ? 0 : S - 1)) },
    };
    const outputs: string[] = [NAMES.logits];
    for (let i = 0; i < c.layers; i++) {
      feeds[NAMES.pastKey(i)] = cache.keys[i]!;
      feeds[NAMES.pastValue(i)] = cache.values[i]!;
      outputs.push(NAMES.presentKey(i), NAMES.presentValue(i));
    }
    const out = await this.decoderSession.run(feeds, outputs);
    for (let i = 0; i < c.layers; i++) {
      cache.keys[i] = out[NAMES.presentKey(i)]!;
      cache.values[i] = out[NAMES.presentValue(i)]!;
    }
    cache.length += S;
    const logits = out[NAMES.logits]!;
    return { dims: [logits.dims[1]!, c.vocabSize], data: logits.data };
  }

  async release(): Promise<void> {
    await this.embedSession.release();
    await this.decoderSession.release();
  }
}
