// A decoder LLM ready to run: config, the embed and decoder sessions, and KV caches.
//
//   const lm = await CausalLM.load('vicuna-7b/', { checkpoint });   // checkpoint's llm.* override
//   const e = await lm.embed(ids);                                  // [n, H]
//   const cache = lm.newCache(S + maxNewTokens);                    // at most that many positions
//   let logits = await lm.forward(promptEmbeds, cache);             // [1, V]; cache.length = S
//   logits = await lm.forward(await lm.embed([next]), cache);       // [1, V]; cache.length = S + 1
//
// The folder may be one written by `mgllava quantize` (4/8-bit linears on MatMulNBits); its
// config.json says so, and the checkpoint's llm.* tensors are then already inside it.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../core/errors.js';
import { F32Tensor, numel } from '../../core/tensor.js';
import { Feed, PackedState, Session } from '../../runtime/session.js';
import { packedCacheRoot } from '../../runtime/packed-cache.js';
import { openWeights } from '../../weights/open.js';
import { WeightStore } from '../../weights/types.js';
import { Graph } from '../../graph/graph.js';
import { llmWeights } from '../llm-weights.js';
import { LlmConfig, parseLlmConfig } from './config.js';
import { DecoderOptions, NAMES, buildDecoderGraph, buildEmbedGraph, decoderKinds } from './decoder.js';
import { QuantizationInfo, quantizedLinears, readQuantizationConfig } from './quantized.js';
import { checkpointFingerprint, hasLlmTensors } from './checkpoint-fingerprint.js';

export interface CausalLMOptions {
  /** An MG-LLaVA checkpoint whose `llm.*` tensors replace the folder's own. */
  checkpoint?: WeightStore;
  /** lora_alpha of an XTuner LoRA checkpoint (model/llm-weights.ts), when no adapter_config.json says it. */
  loraAlpha?: number;
  /** Intra-op threads (default: onnxruntime's choice). */
  threads?: number;
  /** Attention implementation (default: fused GroupQueryAttention where the head size allows). */
  attention?: DecoderOptions['attention'];
  /**
   * KV cache kind. 'inplace' (default with GroupQueryAttention): buffers owned by the cache that
   * onnxruntime reads where they lie, only the new rows coming back to be written into them.
   * 'grow': a new, longer cache tensor per run (the plain-op attention's only kind).
   */
  kvCache?: DecoderOptions['cache'];
  /**
   * MatMulNBits accuracy_level for a quantized folder: 4 (default) computes in int8 (activations
   * quantized per block on the fly; fastest), 0 in float32. 8-bit weights need 4 to be fast.
   */
  accuracyLevel?: 0 | 1 | 2 | 3 | 4;
  /** Profile the decoder's nodes into files with this prefix (bench/profile-llm.ts). */
  profilePrefix?: string;
  /**
   * Folder of this machine's pre-packed quantized weights (src/runtime/packed-cache.ts; default
   * `~/.cache/mgllava/packed`, or `$MGLLAVA_CACHE_DIR/packed`); false packs them in memory at
   * every load. Float weights are not pre-packed and ignore it.
   */
  packedCache?: string | false;
  /** Told when the packed cache was asked for and not used. */
  onNote?: (message: string) => void;
  /**
   * In-place cache: conversations `forwardBatch` decodes in one run (default 1). Their rows go
   * through every linear together, so the weights are read once per step for all of them.
   */
  batchSlots?: number;
}

export interface ForwardOptions {
  /** Logits for every position [S, V] instead of the last one only [1, V]. */
  allLogits?: boolean;
}

/**
 * The keys and values of the positions seen so far, per layer. Owned by the caller.
 *
 * - 'grow': [1, kvHeads, length, headDim]; `forward` replaces the tensors with longer ones.
 * - 'inplace': [1, kvHeads, capacity, headDim] buffers (rows past `length` unused) that
 *   onnxruntime reads where they lie; `forward` writes the new rows into them. The capacity
 *   grows in steps of {@link KvCache.CHUNK} positions, never beyond `maxLength` (GroupQueryAttention
 *   clears and fills a scratch copy of the capacity's size each run: spare capacity costs time).
 */
export class KvCache {
  /** Spare positions allocated when an in-place cache grows. */
  static readonly CHUNK = 128;
  /** Positions held. */
  length = 0;
  keys: F32Tensor[];
  values: F32Tensor[];

  constructor(
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly kind: 'inplace' | 'grow' = 'grow',
    /** Most positions the cache may hold. */
    readonly maxLength = Number.MAX_SAFE_INTEGER,
  ) {
    const empty = (): F32Tensor => ({ dims: [1, kvHeads, 0, headDim], data: new Float32Array(0) });
    this.keys = Array.from({ length: layers }, empty);
    this.values = Array.from({ length: layers }, empty);
  }

  /** Positions the tensors have room for (= length for a growing cache). */
  get capacity(): number {
    return this.keys[0]?.dims[2] ?? 0;
  }

  /** In-place cache: rows [1, kvHeads, S, headDim] into `buffer` at positions length..length+S-1. */
  write(buffer: F32Tensor, rows: F32Tensor): void {
    const S = rows.dims[2]!;
    const cap = buffer.dims[2]!;
    const hd = this.headDim;
    if (this.length + S > cap) throw new Error(`KV cache: ${S} rows at ${this.length} do not fit a capacity of ${cap}`);
    for (let h = 0; h < this.kvHeads; h++) buffer.data.set(rows.data.subarray(h * S * hd, (h + 1) * S * hd), (h * cap + this.length) * hd);
  }

  /** The capacity an in-place cache grows to when it must hold `positions` positions. */
  capacityFor(positions: number): number {
    if (positions > this.maxLength) throw new InputError(`the KV cache holds at most ${this.maxLength} positions, ${positions} asked (make it with a larger newCache(maxLength))`);
    return Math.min(this.maxLength, positions + KvCache.CHUNK);
  }

  /**
   * In-place cache, empty: take per-layer buffers [1, kvHeads, capacity, headDim] whose first
   * `positions` rows are the new ones (the decoder's padded output for a prompt).
   */
  adopt(keys: F32Tensor[], values: F32Tensor[], positions: number): void {
    if (this.length !== 0) throw new Error('KV cache: only an empty cache adopts buffers');
    const cap = keys[0]!.dims[2]!;
    if (keys.length !== this.layers || values.length !== this.layers || positions > cap) throw new Error('KV cache: adopted buffers do not match the cache');
    this.keys = keys;
    this.values = values;
    this.length = positions;
  }

  /** Bytes the key and value tensors hold (capacity x layers x 2 x kvHeads x headDim x 4). */
  get bytes(): number {
    let n = 0;
    for (const t of this.keys) n += t.data.byteLength;
    for (const t of this.values) n += t.data.byteLength;
    return n;
  }

  /**
   * Keep the first `length` positions only (a shared prompt prefix). In place the buffers keep
   * their rows and capacity (the rows past `length` are ignored, and overwritten as it grows
   * again); a growing cache gets tensors of `length` rows.
   */
  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.length) throw new RangeError(`KV cache: cannot truncate ${this.length} positions to ${length}`);
    if (length === this.length) return;
    if (this.kind === 'grow') {
      const cut = (t: F32Tensor) => this.rows(t, length, length);
      this.keys = this.keys.map(cut);
      this.values = this.values.map(cut);
    }
    this.length = length;
  }

  /**
   * A new cache holding a copy of the first `length` positions. An in-place copy gets room for
   * `room` positions (and the usual spare chunk), so that a prompt continuing the prefix fits
   * without growing again.
   */
  clone(length = this.length, room = length): KvCache {
    if (!Number.isInteger(length) || length < 0 || length > this.length) throw new RangeError(`KV cache: cannot copy ${length} of ${this.length} positions`);
    const c = new KvCache(this.layers, this.kvHeads, this.headDim, this.kind, this.maxLength);
    if (length === 0) return c;
    const cap = this.kind === 'inplace' ? c.capacityFor(Math.max(length, room)) : length;
    c.keys = this.keys.map((t) => this.rows(t, length, cap));
    c.values = this.values.map((t) => this.rows(t, length, cap));
    c.length = length;
    return c;
  }

  /** The first `length` rows of a [1, kvHeads, C, headDim] tensor in a new one of `cap` rows. */
  private rows(t: F32Tensor, length: number, cap: number): F32Tensor {
    const hd = this.headDim;
    const old = t.dims[2]!;
    const data = new Float32Array(this.kvHeads * cap * hd);
    for (let h = 0; h < this.kvHeads; h++) data.set(t.data.subarray(h * old * hd, (h * old + length) * hd), h * cap * hd);
    return { dims: [1, this.kvHeads, cap, hd], data };
  }

  /** In-place cache: make room for `positions` positions, keeping the rows held. */
  reserve(positions: number): void {
    if (this.kind !== 'inplace' || positions <= this.capacity) return;
    const cap = this.capacityFor(positions);
    const old = this.capacity;
    const hd = this.headDim;
    const grow = (t: F32Tensor): F32Tensor => {
      const data = new Float32Array(this.kvHeads * cap * hd);
      for (let h = 0; h < this.kvHeads; h++) data.set(t.data.subarray(h * old * hd, (h * old + this.length) * hd), h * cap * hd);
      return { dims: [1, this.kvHeads, cap, hd], data };
    };
    this.keys = this.keys.map(grow);
    this.values = this.values.map(grow);
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
    /** The decoder's KV cache kind. */
    readonly cacheKind: 'inplace' | 'grow',
    /** Set when the weights are block-quantized (a folder written by `mgllava quantize`). */
    readonly quantization?: QuantizationInfo,
    /** Conversations forwardBatch can decode in one run (1: no batch inputs in the graph). */
    readonly batchSlots = 1,
  ) {}

  /**
   * Where the decoder's pre-packed weights came from: 'mapped' from the packed cache, 'saved'
   * (packed now and written to it), 'none' (packed in memory, or float weights).
   */
  get packed(): PackedState {
    return this.decoderSession.packed;
  }

  /** Why the packed cache was asked for and not used (a folder that cannot be written...). */
  get packedNote(): string | undefined {
    return this.decoderSession.packedNote;
  }

  /** The model folder holds config.json and the weights (safetensors, sharded or torch). */
  static async load(folder: string, opts: CausalLMOptions = {}): Promise<CausalLM> {
    const { config, quantization } = readLlmFolderConfig(folder);
    const base = openWeights(folder);
    let store = base;
    if (opts.checkpoint) {
      if (quantization) checkQuantizedAgainstCheckpoint(folder, quantization, opts.checkpoint);
      else store = llmWeights(base, opts.checkpoint, opts.loraAlpha);
    }
    return CausalLM.fromStore(config, store, { ...opts, quantization });
  }

  /**
   * From a parsed config and the LLM's tensors (keys as in the HF folder); with `quantization`,
   * linears stored quantized run on MatMulNBits.
   */
  static async fromStore(config: LlmConfig, store: WeightStore, opts: Omit<CausalLMOptions, 'checkpoint'> & { quantization?: QuantizationInfo } = {}): Promise<CausalLM> {
    const threads = opts.threads;
    const q = opts.quantization;
    // MatMulNBits packs its weights at load (pre-packing); without that it unpacks them on every
    // run. Float weights keep pre-packing off (src/runtime/session.ts). No memory pattern for
    // either session (the decoder's reason is in SessionOptions.memPattern; the embedding
    // session is too small to care).
    const packedCache = packedCacheRoot(opts.packedCache);
    const session = (g: Graph, prepack = false, profilePrefix?: string) =>
      Session.fromGraph(g, { threads, prepack, profilePrefix, memPattern: false, packedCache, onNote: opts.onNote });
    const dopts: DecoderOptions = {
      attention: opts.attention,
      cache: opts.kvCache,
      quantization: q && quantizedLinears(q, opts.accuracyLevel ?? 4),
      batchSlots: opts.batchSlots,
    };
    const kinds = decoderKinds(config, dopts);
    // Build both graphs first so a missing or misshapen tensor fails before any session starts.
    const eg = buildEmbedGraph(store, config);
    const dg = buildDecoderGraph(store, config, dopts);
    const embed = await session(eg);
    try {
      const slots = kinds.cache === 'inplace' ? Math.max(1, opts.batchSlots ?? 1) : 1;
      return new CausalLM(config, embed, await session(dg, q !== undefined, opts.profilePrefix), kinds.cache, q, slots);
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

  /**
   * An empty KV cache for one conversation of at most `maxLength` positions (prompt + new
   * tokens; default and upper bound: the model's max_position_embeddings).
   */
  newCache(maxLength = this.config.maxPositions): KvCache {
    const c = this.config;
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new RangeError(`KV cache length must be a positive integer, got ${maxLength}`);
    return new KvCache(c.layers, c.kvHeads, c.headDim, this.cacheKind, Math.min(maxLength, c.maxPositions));
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
    if (cache.kind !== this.cacheKind) throw new Error(`KV cache is '${cache.kind}', this model's decoder takes '${this.cacheKind}' (make it with newCache())`);
    if (cache.length + S > c.maxPositions) {
      throw cache.length > 0 ? contextError(cache.length, S, c.maxPositions) : contextError(S, 0, c.maxPositions);
    }
    const feeds: Record<string, Feed> = {
      [NAMES.embeds]: { dims: [1, S, c.hiddenSize], data: embeds.data },
      [NAMES.logitsFrom]: { dims: [1], data: BigInt64Array.of(BigInt(opts.allLogits ? 0 : S - 1)) },
    };
    let out: Record<string, F32Tensor>;
    if (cache.kind === 'inplace') {
      // (Both checks refuse a chunk that cannot fit before running any of it.)
      const fresh = cache.length === 0;
      const spare = fresh ? cache.capacityFor(S) - S : 0;
      if (!fresh) cache.reserve(cache.length + S);
      // onnxruntime reads the buffers without a copy and returns the S new rows, written here;
      // a prompt's rows come padded to the whole capacity and become the buffers (fresh memory
      // is slow to touch: writing them into a new buffer cost seconds at a 666-token prompt).
      // Before any row is cached a one-row stand-in (hidden by past_length = 0) will do.
      feeds[NAMES.pastLength] = { dims: [1], data: BigInt64Array.of(BigInt(cache.length)) };
      feeds[NAMES.spareRows] = { dims: [1], data: BigInt64Array.of(BigInt(spare)) };
      this.idleSlots(feeds, 1);
      const outputs: string[] = [NAMES.logits];
      const none: F32Tensor = { dims: [1, c.kvHeads, 1, c.headDim], data: new Float32Array(c.kvHeads * c.headDim) };
      for (let i = 0; i < c.layers; i++) {
        feeds[NAMES.pastKey(i)] = cache.length > 0 ? cache.keys[i]! : none;
        feeds[NAMES.pastValue(i)] = cache.length > 0 ? cache.values[i]! : none;
        outputs.push(NAMES.newKey(i), NAMES.newValue(i));
      }
      out = await this.decoderSession.run(feeds, outputs);
      const rows = (name: (i: number) => string) => Array.from({ length: c.layers }, (_, i) => out[name(i)]!);
      if (fresh) {
        cache.adopt(rows(NAMES.newKey), rows(NAMES.newValue), S);
      } else {
        for (let i = 0; i < c.layers; i++) {
          cache.write(cache.keys[i]!, out[NAMES.newKey(i)]!);
          cache.write(cache.values[i]!, out[NAMES.newValue(i)]!);
        }
        cache.length += S;
      }
    } else {
      const outputs: string[] = [NAMES.logits];
      for (let i = 0; i < c.layers; i++) {
        feeds[NAMES.pastKey(i)] = cache.keys[i]!;
        feeds[NAMES.pastValue(i)] = cache.values[i]!;
        outputs.push(NAMES.presentKey(i), NAMES.presentValue(i));
      }
      out = await this.decoderSession.run(feeds, outputs);
      for (let i = 0; i < c.layers; i++) {
        cache.keys[i] = out[NAMES.presentKey(i)]!;
        cache.values[i] = out[NAMES.presentValue(i)]!;
      }
      cache.length += S;
    }
    const logits = out[NAMES.logits]!;
    return { dims: [logits.dims[1]!, c.vocabSize], data: logits.data };
  }

  /** Batch inputs of a graph with slots: off (batch 0), slots from `from` on as one-row stand-ins. */
  private idleSlots(feeds: Record<string, Feed>, from: number): void {
    if (this.batchSlots <= 1) return;
    const c = this.config;
    if (from === 1) feeds[NAMES.batch] = { dims: [1], data: BigInt64Array.of(0n) };
    this.standIn ??= { dims: [1, c.kvHeads, 1, c.headDim], data: new Float32Array(c.kvHeads * c.headDim) };
    for (let b = from; b < this.batchSlots; b++) {
      feeds[NAMES.slotLength(b)] = { dims: [1], data: BigInt64Array.of(0n) };
      for (let i = 0; i < c.layers; i++) {
        feeds[NAMES.slotKey(i, b)] = this.standIn;
        feeds[NAMES.slotValue(i, b)] = this.standIn;
      }
    }
  }

  private standIn?: F32Tensor;

  /**
   * One decode step for several conversations in one run: each item's embeddings [1, H] at its
   * cache's next position -> its logits [1, V]; each cache grows by one. Up to `batchSlots`
   * items (a graph built with that many slots, in-place cache); one item is a plain forward().
   */
  async forwardBatch(items: readonly { embeds: F32Tensor; cache: KvCache }[]): Promise<F32Tensor[]> {
    const c = this.config;
    const n = items.length;
    if (n === 0) return [];
    if (n === 1) return [await this.forward(items[0]!.embeds, items[0]!.cache)];
    if (this.cacheKind !== 'inplace' || n > this.batchSlots) throw new Error(`forwardBatch: ${n} items, the decoder has ${this.batchSlots} batch slots (${this.cacheKind} cache)`);
    const N = this.batchSlots;
    const H = c.hiddenSize;
    const rows = new Float32Array(N * H);
    items.forEach((it, b) => {
      if (it.embeds.data.length !== H) throw new InputError(`forwardBatch: item ${b} has embeddings of ${it.embeds.data.length} values, expected one row of ${H}`);
      if (it.cache.length === 0) throw new Error('forwardBatch: every cache must hold its prompt already');
      if (it.cache.length + 1 > c.maxPositions) throw contextError(it.cache.length, 1, c.maxPositions);
      rows.set(it.embeds.data, b * H);
    });
    if (new Set(items.map((it) => it.cache)).size !== n) throw new Error('forwardBatch: a cache appears twice');
    for (const it of items) it.cache.reserve(it.cache.length + 1);
    const feeds: Record<string, Feed> = {
      [NAMES.embeds]: { dims: [1, N, H], data: rows },
      [NAMES.logitsFrom]: { dims: [1], data: BigInt64Array.of(0n) },
      [NAMES.pastLength]: { dims: [1], data: BigInt64Array.of(BigInt(items[0]!.cache.length)) },
      [NAMES.spareRows]: { dims: [1], data: BigInt64Array.of(0n) },
      [NAMES.batch]: { dims: [1], data: BigInt64Array.of(1n) },
    };
    this.idleSlots(feeds, n);
    const outputs: string[] = [NAMES.logits];
    for (let i = 0; i < c.layers; i++) {
      feeds[NAMES.pastKey(i)] = items[0]!.cache.keys[i]!;
      feeds[NAMES.pastValue(i)] = items[0]!.cache.values[i]!;
      outputs.push(NAMES.newKey(i), NAMES.newValue(i));
    }
    for (let b = 1; b < n; b++) {
      const cache = items[b]!.cache;
      feeds[NAMES.slotLength(b)] = { dims: [1], data: BigInt64Array.of(BigInt(cache.length)) };
      for (let i = 0; i < c.layers; i++) {
        feeds[NAMES.slotKey(i, b)] = cache.keys[i]!;
        feeds[NAMES.slotValue(i, b)] = cache.values[i]!;
      }
    }
    const out = await this.decoderSession.run(feeds, outputs);
    // New rows [1, kvH, N, hd]: row b belongs to item b's cache.
    const hd = c.headDim;
    const rowOf = (t: F32Tensor, b: number): F32Tensor => {
      const data = new Float32Array(c.kvHeads * hd);
      for (let h = 0; h < c.kvHeads; h++) data.set(t.data.subarray((h * N + b) * hd, (h * N + b + 1) * hd), h * hd);
      return { dims: [1, c.kvHeads, 1, hd], data };
    };
    items.forEach((it, b) => {
      for (let i = 0; i < c.layers; i++) {
        it.cache.write(it.cache.keys[i]!, rowOf(out[NAMES.newKey(i)]!, b));
        it.cache.write(it.cache.values[i]!, rowOf(out[NAMES.newValue(i)]!, b));
      }
      it.cache.length += 1;
    });
    const logits = out[NAMES.logits]!;
    const V = c.vocabSize;
    return items.map((_, b) => ({ dims: [1, V], data: logits.data.slice(b * V, (b + 1) * V) }));
  }

  /** Writes the decoder's profile (when loaded with `profilePrefix`). */
  endProfiling(): void {
    this.decoderSession.endProfiling();
  }

  async release(): Promise<void> {
    await this.embedSession.release();
    await this.decoderSession.release();
  }
}

/** config.json of an LLM folder, and its quantization block when `mgllava quantize` wrote it. */
export function readLlmFolderConfig(folder: string): { config: LlmConfig; quantization?: QuantizationInfo; json: Record<string, unknown> } {
  const cfgPath = join(folder, 'config.json');
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `${cfgPath}: no such file (the LLM folder needs its config.json)` : `${cfgPath}: cannot read JSON (${(e as Error).message})`, cfgPath);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InputError(`${cfgPath}: expected a JSON object`, cfgPath);
  return { config: parseLlmConfig(json, cfgPath), quantization: readQuantizationConfig(json, cfgPath), json };
}

/**
 * A quantized folder already holds the LLM weights it was made from, the checkpoint's llm.*
 * included when one was given to `mgllava quantize`. The checkpoint given now must be that one
 * (same llm.* fingerprint), or one without llm.* when none was applied; otherwise the weights
 * would silently not be the fine-tuned ones.
 */
export function checkQuantizedAgainstCheckpoint(folder: string, q: QuantizationInfo, checkpoint: WeightStore): void {
  const has = hasLlmTensors(checkpoint);
  const redo = `re-run \`mgllava quantize --llm BASE --checkpoint ${checkpoint.path} --out ...\``;
  if (q.checkpointFingerprint === null) {
    if (has) throw new InputError(`${folder} was quantized from the base LLM alone, but ${checkpoint.path} carries fine-tuned llm.* weights; ${redo}`, folder);
    return;
  }
  if (!has) throw new InputError(`${folder} was quantized with a checkpoint's fine-tuned llm.* weights, but ${checkpoint.path} has none: it belongs to another model`, folder);
  if (checkpointFingerprint(checkpoint) !== q.checkpointFingerprint) {
    throw new InputError(`${folder} was quantized with the llm.* weights of another checkpoint than ${checkpoint.path}; ${redo}`, folder);
  }
}
