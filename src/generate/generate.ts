// The decode loop: prefill once, then one token at a time until EOS, a stop word or the token
// budget, streaming text as it completes. Depends only on small interfaces (a Decoder that turns
// a token into next-token logits, a text stream), not on the engine.

import { Sampler, SamplingOptions, logSoftmax, topIndices } from './sampling.js';

/** Next-token logits [V] after the prompt, then after each chosen token. */
export interface Decoder {
  step(tokenId: number): Promise<Float32Array>;
}

/** Incremental detokeniser: text completed by each id (never half a character), then the rest. */
export interface TextStream {
  push(id: number): string;
  flush(): string;
}

export interface GenerationOptions extends SamplingOptions {
  /** Default 512. */
  maxNewTokens?: number;
  /** Text that ends the answer (cut from it), e.g. the template's stop words. */
  stopWords?: readonly string[];
  /** Token ids that end the answer (not part of it). */
  eosIds?: readonly number[];
  /** Alternatives reported per token (default 5; 0 = no logprobs). */
  topLogprobs?: number;
  /**
   * Stops the answer before its next token once aborted (a decode step already running ends
   * first); the result then has finishReason 'abort' and the text so far.
   */
  signal?: AbortSignal;
}

export interface TokenLogprob {
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

/** One streamed piece: the token and the text it completed (may be ''). */
export interface GeneratedToken extends TokenLogprob {
  text: string;
}

/** 'abort': GenerationOptions.signal (or a chat request's signal) was aborted. */
export type FinishReason = 'eos' | 'stop_word' | 'length' | 'abort';

export interface GenerationResult {
  text: string;
  ids: number[];
  logprobs: TokenLogprob[];
  finishReason: FinishReason;
  /** Seconds spent in decode steps (after the first token). */
  decodeSeconds: number;
}

/**
 * Yields each generated token with the text it completed; returns the whole result. `first` is
 * the prefill's logits for the first new token.
 */
export async function* generate(
  first: Float32Array,
  decoder: Decoder,
  stream: TextStream,
  o: GenerationOptions = {},
): AsyncGenerator<GeneratedToken, GenerationResult> {
  const sampler = new Sampler(o);
  const max = o.maxNewTokens ?? 512;
  const eos = new Set(o.eosIds ?? []);
  const stops = (o.stopWords ?? []).filter((s) => s.length > 0);
  const nTop = o.topLogprobs ?? 5;
  const ids: number[] = [];
  const logprobs: TokenLogprob[] = [];
  let text = '';
  let held = ''; // text not yet yielded because it might be the start of a stop word
  let logits = first;
  let finishReason: FinishReason = 'length';
  let decodeSeconds = 0;

  for (let n = 0; n < max; n++) {
    if (o.signal?.aborted) {
      finishReason = 'abort';
      break;
    }
    const id = sampler.next(logits, ids);
    const lp = nTop > 0 ? tokenLogprob(logits, id, nTop) : { id, logprob: 0, top: [] };
    if (eos.has(id)) {
      finishReason = 'eos';
      break;
    }
    ids.push(id);
    logprobs.push(lp);
    held += stream.push(id);
    const stop = findStop(text + held, stops);
    if (stop >= 0) {
      const piece = (text + held).slice(text.length, stop);
      text += piece;
      held = '';
      finishReason = 'stop_word';
      yield { ...lp, text: piece };
      break;
    }
    // Yield what can no longer become part of a stop word.
    const safe = held.length - longestStopPrefix(text + held, stops);
    const piece = held.slice(0, Math.max(safe, 0));
    held = held.slice(piece.length);
    text += piece;
    yield { ...lp, text: piece };
    // Aborted while the caller held this token: no step for a token nobody will take.
    if (o.signal?.aborted && n + 1 < max) {
      finishReason = 'abort';
      break;
    }
    if (n + 1 < max) {
      const t0 = performance.now();
      logits = await decoder.step(id);
      decodeSeconds += (performance.now() - t0) / 1000;
    }
  }
  if (finishReason !== 'stop_word') {
    const rest = held + stream.flush();
    const stop = findStop(text + rest, stops);
    text += stop >= 0 ? (text + rest).slice(text.length, stop) : rest;
  }
  return { text, ids, logprobs, finishReason, decodeSeconds };
}

function tokenLogprob(logits: Float32Array, id: number, k: number): TokenLogprob {
  const lsm = logSoftmax(logits);
  return { id, logprob: lsm[id]!, top: topIndices(lsm, k).map((i) => ({ id: i, logprob: lsm[i]! })) };
}

/** Start of the first stop word in `s`, or -1. */
function findStop(s: string, stops: readonly string[]): number {
  let at = -1;
  for (const w of stops) {
    const i = s.indexOf(w);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

/** Length of the longest suffix of `s` that is a proper prefix of some stop word. */
function longestStopPrefix(s: string, stops: readonly string[]): number {
  let best = 0;
  for (const w of stops) {
    for (let n = Math.min(w.length - 1, s.length); n > best; n--) {
      if (s.endsWith(w.slice(0, n))) {
        best = n;
        break;
      }
    }
  }
  return best;
}
