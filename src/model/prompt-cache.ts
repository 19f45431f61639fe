// The prompt (KV) prefix cache: after a chat turn its KvCache is kept with the sequence that
// produced it (the text token ids, and for an image's span the key of its visual tokens and its
// length, so that two different images never match), and a later turn starts from the entry
// sharing the longest prefix with its own sequence: only the positions after the shared prefix
// are run. A position's keys and values depend on the inputs at it and before it only (causal
// attention), so equal prefixes have equal cache rows.
//
// Ownership: a turn that continues an entry whole (a follow-up question) takes its cache out of
// the cache and puts it back, longer, when the turn ends; a turn that shares part of an entry
// (another question about the same image, the same question again) gets a copy of the shared
// rows and leaves the entry. Entries are bounded by the bytes of their tensors (an in-place
// cache's whole capacity), least recently used out first.

import { KvCache } from './llm/causal-lm.js';
import { ByteLru } from './visual-cache-lru.js';

/** A run of text token ids, or an image's visual tokens (by key) taking `length` positions. */
export type Segment = { readonly ids: readonly number[] } | { readonly visual: string; readonly length: number };

export function sequenceLength(seq: readonly Segment[]): number {
  let n = 0;
  for (const s of seq) n += 'ids' in s ? s.ids.length : s.length;
  return n;
}

/** The sequence with `ids` appended (merged into a last run of ids). */
export function appendIds(seq: readonly Segment[], ids: readonly number[]): Segment[] {
  if (ids.length === 0) return [...seq];
  const last = seq[seq.length - 1];
  if (last && 'ids' in last) return [...seq.slice(0, -1), { ids: [...last.ids, ...ids] }];
  return [...seq, { ids: [...ids] }];
}

/** The first `n` positions of a sequence (a visual span is kept whole or not at all: n must not cut one). */
export function sequencePrefix(seq: readonly Segment[], n: number): Segment[] {
  const out: Segment[] = [];
  let left = n;
  for (const s of seq) {
    if (left <= 0) break;
    if ('ids' in s) {
      out.push(left >= s.ids.length ? s : { ids: s.ids.slice(0, left) });
      left -= s.ids.length;
    } else {
      if (left < s.length) throw new Error('a sequence prefix cannot end inside a visual span');
      out.push(s);
      left -= s.length;
    }
  }
  return out;
}

/**
 * Positions two sequences share from the start. A visual span matches only whole, with the
 * same key and length; runs of ids match id by id, across segment boundaries.
 */
export function commonPrefix(a: readonly Segment[], b: readonly Segment[]): number {
  let n = 0;
  let i = 0;
  let j = 0;
  let oi = 0; // offset into a[i] (ids only)
  let oj = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if ('ids' in x && x.ids.length === 0) {
      i++;
      continue;
    }
    if ('ids' in y && y.ids.length === 0) {
      j++;
      continue;
    }
    if (!('ids' in x) || !('ids' in y)) {
      if ('ids' in x || 'ids' in y || oi || oj || x.visual !== y.visual || x.length !== y.length) break;
      n += x.length;
      i++;
      j++;
      continue;
    }
    while (oi < x.ids.length && oj < y.ids.length && x.ids[oi] === y.ids[oj]) {
      oi++;
      oj++;
      n++;
    }
    if (oi < x.ids.length && oj < y.ids.length) break;
    if (oi === x.ids.length) {
      i++;
      oi = 0;
    }
    if (oj === y.ids.length) {
      j++;
      oj = 0;
    }
  }
  return n;
}

interface Entry {
  seq: Segment[];
  length: number;
  cache: KvCache;
}

export interface PrefixMatch {
  /** Positions shared with the best entry (0: none). */
  shared: number;
  /** @internal */
  readonly entry?: number;
}

export class PromptCache {
  private readonly lru: ByteLru<number, Entry>;
  private next = 0;
  /** Turns that reused positions, and the positions they reused. */
  hits = 0;
  reusedTokens = 0;

  constructor(budget: number) {
    this.lru = new ByteLru(budget);
  }

  get bytes(): number {
    return this.lru.bytes;
  }

  get size(): number {
    return this.lru.size;
  }

  /** The entry sharing the longest prefix with `seq` (the most recent among equals). */
  find(seq: readonly Segment[]): PrefixMatch {
    let best: PrefixMatch = { shared: 0 };
    for (const [id, e] of this.lru.entries()) {
      const n = commonPrefix(seq, e.seq);
      if (n > 0 && n >= best.shared) best = { shared: n, entry: id };
    }
    return best;
  }

  /**
   * A cache of the match's first `positions` rows (0 < positions <= match.shared), owned by the
   * caller: the entry itself when it is used whole, else a copy with room for `room` positions.
   */
  take(match: PrefixMatch, positions: number, room: number): KvCache {
    const e = match.entry === undefined ? undefined : this.lru.peek(match.entry);
    if (!e || !(positions > 0 && positions <= match.shared)) throw new Error('prompt cache: no such match');
    this.hits++;
    this.reusedTokens += positions;
    if (positions === e.length) {
      this.lru.delete(match.entry!);
      return e.cache;
    }
    this.lru.get(match.entry!); // the most recent now
    return e.cache.clone(positions, room);
  }

  /**
   * Keep `cache`, whose positions are `seq` (sequenceLength(seq) === cache.length). Entries
   * whose sequence is a prefix of `seq` go: the new one serves every request they would.
   */
  put(seq: readonly Segment[], cache: KvCache): void {
    const length = sequenceLength(seq);
    if (length !== cache.length) throw new Error(`prompt cache: a sequence of ${length} positions for a cache of ${cache.length}`);
    if (length === 0) return;
    for (const [id, e] of [...this.lru.entries()]) {
      if (e.length <= length && commonPrefix(seq, e.seq) === e.length) this.lru.delete(id);
    }
    this.lru.set(this.next++, { seq: [...seq], length, cache }, cache.bytes);
  }

  /** The length of the visual span with this key in some entry (its tokens are then not needed to build the sequence). */
  visualLength(key: string): number | undefined {
    for (const [, e] of this.lru.entries()) {
      for (const s of e.seq) if (!('ids' in s) && s.visual === key) return s.length;
    }
    return undefined;
  }

  clear(): void {
    this.lru.clear();
  }
}
