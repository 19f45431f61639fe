// One chat turn with MG-LLaVA: conversation -> prompt text (the release's template) -> id chunks
// split at `<image>` -> the turn's sequence [text ids, visual tokens, text ids] -> prefill ->
// streamed generation. Multi-turn history is re-encoded as the release's chat does; with a
// prompt cache (prompt-cache.ts) the positions shared with an earlier turn's sequence are not
// run again, only the rest (docs/serving-cache.md).

import { F32Tensor } from '../core/tensor.js';
import { InputError } from '../core/errors.js';
import { CausalLM, KvCache, contextError } from './llm/causal-lm.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { IMAGE_TOKEN, PromptTemplate, buildPrompt, promptChunks } from '../tokenizer/templates.js';
import { VIDEO_TOKEN } from '../video/video-tokens.js';
import { generate, GeneratedToken, GenerationOptions, GenerationResult } from '../generate/generate.js';
import { PromptCache, Segment, appendIds, sequenceLength, sequencePrefix } from './prompt-cache.js';
import { tokensHash } from './visual-cache-lru.js';
import type { DetectionResult } from '../detect/owlv2.js';
import type { StepBatcher } from '../generate/step-batcher.js';

export interface ChatTurn {
  question: string;
  answer: string;
}

/** The visual tokens of one image: [N, H] and [k, H]. */
export interface ImageEmbeddings {
  imageTokens: F32Tensor;
  boxTokens: F32Tensor;
}

export interface ChatInput {
  prompt: string;
  /** Earlier turns, oldest first. */
  history?: readonly ChatTurn[];
  /** undefined: the template's system block with an empty text; null: none; a string: that text. */
  system?: string | null;
  generation?: GenerationOptions;
  /**
   * Ends the turn early: an answer stops before its next token (finishReason 'abort', the text
   * so far); aborted before the prefill ends, the result is empty ('abort'), given as soon as
   * the onnxruntime run under way returns. Nothing rejects. (generation.signal does the same.)
   */
  signal?: AbortSignal;
}

export interface ChatTimings {
  /** Image decoding, detection and vision encoding (0 when the visual tokens were cached or given). */
  encodeMs: number;
  /** Running the prompt positions not taken from the prompt cache. */
  prefillMs: number;
  /** Positions the prefill ran: promptTokens - cachedTokens (0 when aborted before it). */
  prefillTokens: number;
  decodeTokensPerS: number;
}

export interface ChatResult extends GenerationResult {
  /** Length of the multimodal prompt sequence (text ids + visual tokens). */
  promptTokens: number;
  /** Prompt positions reused from the prompt cache (an earlier turn's KV), not run again. */
  cachedTokens: number;
  timings: ChatTimings;
  /** The image's visual tokens came from the visual-token cache (no decoding, detection or vision run). */
  visualCached?: boolean;
  /** What the configured detector found in the image, when it made the boxes (now or for the cached tokens). */
  detections?: DetectionResult;
}

/** Streams generated tokens; `result` settles when generation ends (iterate it, or call complete() to run it to the end). */
export class ChatStream implements AsyncIterable<GeneratedToken> {
  private started = false;
  private resolve!: (r: ChatResult) => void;
  private reject!: (e: unknown) => void;
  readonly result: Promise<ChatResult>;

  constructor(private readonly source: () => AsyncGenerator<GeneratedToken, ChatResult>) {
    this.result = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    // Avoid an unhandled rejection when the caller only iterates.
    this.result.catch(() => undefined);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<GeneratedToken> {
    if (this.started) throw new Error('a chat stream can be iterated once');
    this.started = true;
    const it = this.source();
    let done = false;
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) {
          done = true;
          this.resolve(r.value);
          return;
        }
        yield r.value;
      }
    } catch (e) {
      done = true;
      this.reject(e);
      throw e;
    } finally {
      // The caller left early: end the turn too (no further token is computed; what it ran
      // goes to the prompt cache). `result` then never settles.
      if (!done) await it.return(undefined as unknown as ChatResult);
    }
  }

  /** Run to the end without streaming. */
  async complete(): Promise<ChatResult> {
    if (!this.started) for await (const _ of this) void _;
    return this.result;
  }
}

export interface ChatParts {
  llm: CausalLM;
  tokenizer: Tokenizer;
  template: PromptTemplate;
}

/** An image's place in a turn's sequence, its tokens produced only when the span must be run. */
export interface VisualSpan {
  /** What the visual tokens are (the prompt cache matches image spans by it). */
  key: string;
  /** Positions: image tokens + box tokens. */
  length: number;
  /** The tokens (may encode the image now); not called when the prompt cache covers the span. */
  tokens(): Promise<ImageEmbeddings>;
  /**
   * The question's marker: `<image>\n` (default) or the release's video question `<video>\n`
   * (for a video the tokens are its whole visual part in order, as boxTokens-less imageTokens).
   */
  marker?: 'image' | 'video';
}

export interface TurnOptions {
  /** Reuse and keep KV caches of earlier turns' sequences. */
  promptCache?: PromptCache;
  /** Decode steps go through it, batched with other conversations' (generate/step-batcher.ts). */
  batcher?: StepBatcher;
  /** Time already spent producing the image's tokens (ms). */
  encodeMs?: number;
}


/**
 * Generate the answer to `input.prompt`. With an image, the first question gets `<image>\n`
 * and the image's tokens go there.
 */
export async function* chatTurn(parts: ChatParts, input: ChatInput, image?: ImageEmbeddings | VisualSpan, opts: TurnOptions = {}): AsyncGenerator<GeneratedToken, ChatResult> {
  const { llm, tokenizer, template } = parts;
  const signal = input.signal ?? input.generation?.signal;
  let encodeMs = opts.encodeMs ?? 0;
  if (signal?.aborted) return abortResult(0, 0, encodeMs);
  const pc = opts.promptCache;
  const span = image === undefined || 'key' in image ? image : embeddingsSpan(image, pc !== undefined);
  const turns = [...(input.history ?? []), { question: input.prompt }];
  const video = span?.marker === 'video';
  if (video) {
    // The release's video question: `<video>\n` before the first question, split on `<video>`.
    turns[0] = { ...turns[0]!, question: `${VIDEO_TOKEN}\n${turns[0]!.question}` };
  }
  const prompt = buildPrompt(template, { system: input.system, turns, image: span !== undefined && !video });
  if (video && prompt.includes(IMAGE_TOKEN)) throw new InputError('the prompt contains <image> but a video was given: an image and a video in one conversation are not supported');
  const chunks = video ? markerChunks(tokenizer, prompt, VIDEO_TOKEN) : promptChunks(tokenizer, prompt);
  if (chunks.length > 2) throw new InputError(video ? 'the prompt has more than one <video>; one video per conversation is supported' : 'the prompt has more than one <image>; one image per conversation is supported');
  if (chunks.length === 2 && !span) throw new InputError('the prompt contains <image> but no image was given');
  const seq: Segment[] = [];
  chunks.forEach((ids, i) => {
    if (i > 0 && span) seq.push({ visual: span.key, length: span.length });
    if (ids.length) seq.push({ ids });
  });
  const promptTokens = sequenceLength(seq);
  // The prompt must fit; the answer is cut where the context ends (as HF's max_length does).
  const context = llm.config.maxPositions;
  if (promptTokens >= context) throw contextError(promptTokens, 0, context);
  const o = { ...input.generation, maxNewTokens: Math.min(input.generation?.maxNewTokens ?? 512, context - promptTokens), signal };

  // The longest prefix an earlier turn ran: at least the last position runs again (its logits).
  let cache: KvCache | undefined;
  let reused = 0;
  if (pc) {
    const m = pc.find(seq);
    const n = spanStart(seq, Math.min(m.shared, promptTokens - 1));
    if (n > 0) {
      cache = pc.take(m, n, promptTokens);
      reused = n;
    }
  }
  cache ??= llm.newCache();

  // Positions reused.. of the sequence; the rows' tokens (the sequence then the answer's fed ids)
  // go back to the prompt cache with the cache when the turn ends, however it ends, unless a
  // run failed (its rows are then unknown).
  const fed: number[] = [];
  let intact = true;
  try {
    let visual: ImageEmbeddings | undefined;
    if (span && visualEnd(seq) > reused) {
      const t = performance.now();
      visual = await span.tokens();
      encodeMs += performance.now() - t;
      checkVisual(llm, visual, span.length);
    }
    if (signal?.aborted) return abortResult(promptTokens, reused, encodeMs);
    const embeds = await embedFrom(llm, seq, reused, visual);
    const t0 = performance.now();
    intact = false;
    // The rows after the reused ones in one run (decoder.ts chunk branch at P > 0).
    const first = await llm.forward(embeds, cache);
    intact = true;
    const prefillMs = performance.now() - t0;
    const kv = cache;
    const decoder = {
      step: async (id: number) => {
        intact = false;
        const logits = opts.batcher ? await opts.batcher.step(id, kv) : (await llm.forward(await llm.embed([id]), kv)).data;
        fed.push(id);
        intact = true;
        return logits;
      },
    };
    const eosIds = [...(o.eosIds ?? defaultStops(tokenizer, template, llm))];
    const gen = generate(first.data, decoder, tokenizer.streamDecoder(), { stopWords: template.stopWords, ...o, eosIds });
    let r: IteratorResult<GeneratedToken, GenerationResult>;
    while (!(r = await gen.next()).done) yield r.value;
    const res = r.value;
    const steps = Math.max(res.ids.length - 1, 0);
    return {
      ...res,
      promptTokens,
      cachedTokens: reused,
      timings: { encodeMs, prefillMs, prefillTokens: promptTokens - reused, decodeTokensPerS: res.decodeSeconds > 0 ? steps / res.decodeSeconds : 0 },
    };
  } finally {
    if (pc && intact) {
      const all = appendIds(seq, fed);
      const keep = spanStart(all, cache.length);
      cache.truncate(keep);
      pc.put(sequencePrefix(all, keep), cache);
    }
  }
}

/** promptChunks' split at another marker (`<video>`): BOS by hand before the first chunk, no special tokens. */
function markerChunks(tokenizer: Tokenizer, prompt: string, marker: string): number[][] {
  return prompt.split(marker).map((chunk, i) => {
    const ids = tokenizer.encode(chunk, { addSpecialTokens: false });
    return i === 0 && tokenizer.bosId !== undefined ? [tokenizer.bosId, ...ids] : ids;
  });
}

/** A result for a turn aborted before its answer started. */
function abortResult(promptTokens: number, cachedTokens: number, encodeMs: number, prefillMs = 0, prefillTokens = 0): ChatResult {
  return {
    text: '',
    ids: [],
    logprobs: [],
    finishReason: 'abort',
    decodeSeconds: 0,
    promptTokens,
    cachedTokens,
    timings: { encodeMs, prefillMs, prefillTokens, decodeTokensPerS: 0 },
  };
}

/** Visual tokens given as they are: their key is their hash (only needed with a prompt cache). */
function embeddingsSpan(image: ImageEmbeddings, keyed: boolean): VisualSpan {
  return { key: keyed ? tokensHash(image) : '', length: image.imageTokens.dims[0]! + image.boxTokens.dims[0]!, tokens: async () => image };
}

function checkVisual(llm: CausalLM, image: ImageEmbeddings, length: number): void {
  const H = llm.config.hiddenSize;
  for (const t of [image.imageTokens, image.boxTokens]) {
    if (t.dims[1] !== H) throw new InputError(`visual tokens are ${t.dims[1]} wide, the LLM expects ${H}: the visual tokens come from another model`);
  }
  if (image.imageTokens.dims[0]! + image.boxTokens.dims[0]! !== length) throw new Error('visual tokens of another length than their span');
}

/** n, or the start of the visual span n falls inside (a cache never holds part of one). */
function spanStart(seq: readonly Segment[], n: number): number {
  let pos = 0;
  for (const s of seq) {
    const len = 'ids' in s ? s.ids.length : s.length;
    if (!('ids' in s) && n > pos && n < pos + len) return pos;
    pos += len;
    if (pos >= n) break;
  }
  return n;
}

/** Where the sequence's visual span ends (0 without one). */
function visualEnd(seq: readonly Segment[]): number {
  let pos = 0;
  let end = 0;
  for (const s of seq) {
    pos += 'ids' in s ? s.ids.length : s.length;
    if (!('ids' in s)) end = pos;
  }
  return end;
}

/** Input embeddings [S - from, H] of the sequence's positions from..S-1 ([ids, visual, ids]). */
async function embedFrom(llm: CausalLM, seq: readonly Segment[], from: number, image?: ImageEmbeddings): Promise<F32Tensor> {
  const H = llm.config.hiddenSize;
  const parts: Float32Array[] = [];
  let pos = 0;
  for (const s of seq) {
    const len = 'ids' in s ? s.ids.length : s.length;
    const a = Math.max(from - pos, 0);
    if (a < len) {
      if ('ids' in s) {
        parts.push((await llm.embed(a ? s.ids.slice(a) : s.ids)).data);
      } else {
        if (!image) throw new Error('visual tokens needed but not given');
        const N = image.imageTokens.dims[0]!;
        if (a < N) parts.push(image.imageTokens.data.subarray(a * H, N * H));
        parts.push(image.boxTokens.data.subarray(Math.max(a - N, 0) * H, (len - N) * H));
      }
    }
    pos += len;
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const data = new Float32Array(total);
  let o = 0;
  for (const p of parts) {
    data.set(p, o);
    o += p.length;
  }
  return { dims: [total / H, H], data };
}

/**
 * Ids that end an answer: the model's EOS ids, the tokenizer's EOS, and stop words that are a
 * single token (special tokens such as <|eot_id|> never show up in decoded text).
 */
function defaultStops(tokenizer: Tokenizer, template: PromptTemplate, llm: CausalLM): Set<number> {
  const ids = new Set<number>(llm.config.eosTokenIds);
  if (tokenizer.eosId !== undefined) ids.add(tokenizer.eosId);
  for (const w of template.stopWords) {
    const id = tokenizer.tokenId(w);
    if (id !== undefined) ids.add(id);
  }
  return ids;
}
