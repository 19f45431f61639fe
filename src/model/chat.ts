// One chat turn with MG-LLaVA: conversation -> prompt text (the release's template) -> id chunks
// split at `<image>` -> input embeddings [text, image tokens, box tokens, text] -> prefill ->
// streamed generation. Multi-turn history is re-encoded as the release's chat does.

import { F32Tensor } from '../core/tensor.js';
import { InputError } from '../core/errors.js';
import { CausalLM, contextError } from './llm/causal-lm.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { PromptTemplate, buildPrompt, promptChunks } from '../tokenizer/templates.js';
import { generate, GeneratedToken, GenerationOptions, GenerationResult } from '../generate/generate.js';

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
}

export interface ChatTimings {
  encodeMs: number;
  prefillMs: number;
  decodeTokensPerS: number;
}

export interface ChatResult extends GenerationResult {
  /** Length of the multimodal prompt sequence (text ids + visual tokens). */
  promptTokens: number;
  timings: ChatTimings;
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
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) {
          this.resolve(r.value);
          return;
        }
        yield r.value;
      }
    } catch (e) {
      this.reject(e);
      throw e;
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

/**
 * Generate the answer to `input.prompt`. With `image`, the first question gets `<image>\n` and
 * the image's tokens go there; `encodeMs` is the time already spent producing them.
 */
export async function* chatTurn(parts: ChatParts, input: ChatInput, image?: ImageEmbeddings, encodeMs = 0): AsyncGenerator<GeneratedToken, ChatResult> {
  const { llm, tokenizer, template } = parts;
  const turns = [...(input.history ?? []), { question: input.prompt }];
  const prompt = buildPrompt(template, { system: input.system, turns, image: image !== undefined });
  const chunks = promptChunks(tokenizer, prompt);
  const embeds = await assemble(llm, chunks, image);
  const promptTokens = embeds.dims[0]!;
  // The prompt must fit; the answer is cut where the context ends (as HF's max_length does).
  const context = llm.config.maxPositions;
  if (promptTokens >= context) throw contextError(promptTokens, 0, context);
  const o = { ...input.generation, maxNewTokens: Math.min(input.generation?.maxNewTokens ?? 512, context - promptTokens) };

  const cache = llm.newCache();
  const t0 = performance.now();
  const first = await llm.forward(embeds, cache);
  const prefillMs = performance.now() - t0;
  const decoder = {
    step: async (id: number) => (await llm.forward(await llm.embed([id]), cache)).data,
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
    timings: { encodeMs, prefillMs, decodeTokensPerS: res.decodeSeconds > 0 ? steps / res.decodeSeconds : 0 },
  };
}

/** [ids_0, visual, ids_1, ...] -> embeddings [S, H]. */
async function assemble(llm: CausalLM, chunks: number[][], image?: ImageEmbeddings): Promise<F32Tensor> {
  if (chunks.length > 2) throw new InputError('the prompt has more than one <image>; one image per conversation is supported');
  const H = llm.config.hiddenSize;
  const parts: Float32Array[] = [];
  for (let i = 0; i < chunks.length; i++) {
    if (i > 0 && image) {
      for (const t of [image.imageTokens, image.boxTokens]) {
        if (t.dims[1] !== H) throw new InputError(`visual tokens are ${t.dims[1]} wide, the LLM expects ${H}: the visual tokens come from another model`);
        parts.push(t.data);
      }
    }
    if (chunks[i]!.length) parts.push((await llm.embed(chunks[i]!)).data);
  }
  if (chunks.length === 2 && !image) throw new InputError('the prompt contains <image> but no image was given');
  const total = parts.reduce((a, p) => a + p.length, 0);
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
