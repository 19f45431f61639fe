// The pieces of the chat caches: KvCache.truncate / clone / bytes on both cache kinds (a prefix
// continued gives a full prefill's logits), the sequence matching of the prompt cache (a visual
// span only whole and by key), its take/copy ownership and LRU budget, and ByteLru.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TINY, relErr } from '../helpers/fixtures.js';
import { CausalLM, KvCache } from '../../src/model/llm/causal-lm.js';
import { openWeights } from '../../src/weights/open.js';
import { PromptCache, Segment, appendIds, commonPrefix, sequenceLength, sequencePrefix } from '../../src/model/prompt-cache.js';
import { ByteLru, visualKey, imageHash } from '../../src/model/visual-cache-lru.js';

const load = (kvCache: 'inplace' | 'grow') =>
  CausalLM.load(join(TINY, 'llm'), { checkpoint: openWeights(join(TINY, 'mgllava', 'model.safetensors')), kvCache });

const IDS = [1, 450, 4996, 17354, 1701, 29916, 432, 975, 278, 17366, 11203];

for (const kind of ['inplace', 'grow'] as const) {
  test(`KvCache (${kind}): truncate and clone keep a prefix that continues like a full prefill`, async () => {
    const lm = await load(kind);
    try {
      const full = await lm.forward(await lm.embed(IDS), lm.newCache());
      const other = [...IDS.slice(0, 6), 100, 200, 300];
      const fullOther = await lm.forward(await lm.embed(other), lm.newCache());

      const cache = lm.newCache();
      await lm.forward(await lm.embed(IDS), cache);
      const bytes = cache.bytes;
      assert.equal(bytes, cache.capacity * lm.config.layers * 2 * lm.config.kvHeads * lm.config.headDim * 4);
      const copy = cache.clone(6, other.length);
      assert.equal(copy.length, 6);
      if (kind === 'inplace') assert.equal(copy.capacity, other.length + KvCache.CHUNK);
      else assert.equal(copy.capacity, 6);
      // the copy continued with other ids; the original truncated and continued with its own
      const a = await lm.forward(await lm.embed(other.slice(6)), copy);
      assert.ok(relErr(a.data, fullOther.data) < 1e-5, 'copy continues as a full prefill');
      assert.equal(cache.length, IDS.length, 'the original is untouched by the copy');
      cache.truncate(6);
      assert.equal(cache.length, 6);
      if (kind === 'inplace') assert.equal(cache.bytes, bytes, 'in place: the buffers stay');
      else assert.equal(cache.capacity, 6);
      const b = await lm.forward(await lm.embed(IDS.slice(6)), cache);
      assert.ok(relErr(b.data, full.data) < 1e-5, 'truncated cache continues as a full prefill');
      assert.throws(() => cache.truncate(cache.length + 1), RangeError);
      assert.throws(() => cache.clone(cache.length + 1), RangeError);
      cache.truncate(0);
      const c = await lm.forward(await lm.embed(IDS), cache);
      assert.deepEqual(c.data, full.data, 'a cache truncated to nothing prefills afresh');
    } finally {
      await lm.release();
    }
  });
}

const V = (key: string, length: number): Segment => ({ visual: key, length });

test('commonPrefix: ids id by id across runs, a visual span whole and by key', () => {
  const a: Segment[] = [{ ids: [1, 2, 3] }, V('x', 5), { ids: [7, 8, 9] }];
  assert.equal(commonPrefix(a, a), 11);
  assert.equal(commonPrefix(a, [{ ids: [1, 2, 3] }, V('y', 5), { ids: [7, 8, 9] }]), 3);
  assert.equal(commonPrefix(a, [{ ids: [1, 2, 3] }, V('x', 4), { ids: [7, 8, 9] }]), 3);
  assert.equal(commonPrefix(a, [{ ids: [1, 2] }, V('x', 5)]), 2);
  assert.equal(commonPrefix(a, [{ ids: [1, 2, 3] }, V('x', 5), { ids: [7] }, { ids: [8, 0] }]), 10);
  assert.equal(commonPrefix(a, [{ ids: [] }, { ids: [1, 2, 3] }, V('x', 5), { ids: [7, 8, 9, 10] }]), 11);
  assert.equal(commonPrefix([{ ids: [1, 2, 3, 4] }], a), 3);
  assert.equal(commonPrefix([], a), 0);
  assert.equal(sequenceLength(a), 11);
  assert.deepEqual(appendIds(a, [10, 11]), [{ ids: [1, 2, 3] }, V('x', 5), { ids: [7, 8, 9, 10, 11] }]);
  assert.deepEqual(appendIds([V('x', 5)], [1]), [V('x', 5), { ids: [1] }]);
  assert.deepEqual(sequencePrefix(a, 9), [{ ids: [1, 2, 3] }, V('x', 5), { ids: [7] }]);
  assert.throws(() => sequencePrefix(a, 5), /inside a visual span/);
});

/** A fake in-place cache of `length` positions (no model needed for the bookkeeping). */
function fakeCache(length: number, capacity = length + 8): KvCache {
  const c = new KvCache(1, 1, 2, 'inplace');
  const t = () => ({ dims: [1, 1, capacity, 2], data: Float32Array.from({ length: capacity * 2 }, (_, i) => i) });
  c.adopt([t()], [t()], length);
  return c;
}

test('PromptCache: the longest prefix; a whole entry is taken, a part copied; prefixes of a new entry go; LRU by bytes', () => {
  const pc = new PromptCache(1000);
  const s1: Segment[] = [{ ids: [1, 2] }, V('img', 4), { ids: [5, 6, 7] }];
  const c1 = fakeCache(9);
  pc.put(s1, c1);
  assert.equal(pc.size, 1);
  assert.equal(pc.bytes, c1.bytes);
  assert.equal(pc.visualLength('img'), 4);
  assert.equal(pc.visualLength('other'), undefined);
  assert.throws(() => pc.put(s1, fakeCache(8)), /sequence of 9 positions for a cache of 8/);

  // A follow-up: the whole entry, taken out.
  const follow: Segment[] = [...s1.slice(0, 2), { ids: [5, 6, 7, 8, 9] }];
  const m = pc.find(follow);
  assert.equal(m.shared, 9);
  const taken = pc.take(m, 9, 11);
  assert.equal(taken, c1);
  assert.equal(pc.size, 0);
  pc.put(follow, fakeCache(11));

  // Another question about the image: a copy of the shared rows, the entry stays.
  const other: Segment[] = [...s1.slice(0, 2), { ids: [40, 41] }];
  const m2 = pc.find(other);
  assert.equal(m2.shared, 6);
  const copy = pc.take(m2, 6, 8);
  assert.equal(copy.length, 6);
  assert.equal(pc.size, 1);
  assert.deepEqual(Array.from(copy.keys[0]!.data.subarray(0, 12)), Array.from({ length: 12 }, (_, i) => i));
  assert.throws(() => pc.take(m2, 7, 8), /no such match/);

  // An entry whose sequence is a prefix of the new one is dropped.
  pc.put(appendIds(other, [1]), fakeCache(9));
  assert.equal(pc.size, 2);
  pc.put(appendIds(other, [1, 2, 3]), fakeCache(11));
  assert.equal(pc.size, 2, 'the shorter entry went');

  // No match: different first id.
  assert.equal(pc.find([{ ids: [9] }]).shared, 0);

  // Budget: each fake cache is (n + 8) x 2 x 2 x 4 bytes; 1000 bytes hold ~3.
  for (let i = 0; i < 5; i++) pc.put([{ ids: [100 + i] }, V(`k${i}`, 10)], fakeCache(11));
  assert.ok(pc.bytes <= 1000);
  assert.equal(pc.find([{ ids: [100] }, V('k0', 10)]).shared, 0, 'the oldest were evicted');
  assert.equal(pc.find([{ ids: [104] }, V('k4', 10)]).shared, 11);
});

test('ByteLru: evicts the least recently used, get refreshes, too large is not kept', () => {
  const evicted: string[] = [];
  const lru = new ByteLru<string, number>(10, (k) => evicted.push(k));
  lru.set('a', 1, 4);
  lru.set('b', 2, 4);
  assert.equal(lru.get('a'), 1);
  lru.set('c', 3, 4);
  assert.deepEqual(evicted, ['b']);
  assert.equal(lru.bytes, 8);
  assert.equal(lru.set('big', 4, 11), false);
  assert.equal(lru.has('big'), false);
  assert.deepEqual([...lru.entries()].map(([k]) => k), ['a', 'c']);
  lru.set('a', 5, 2);
  assert.equal(lru.bytes, 6);
  assert.equal(lru.delete('a'), 5);
  assert.equal(lru.bytes, 4);
  assert.throws(() => new ByteLru(-1), RangeError);
});

test('visualKey: image, boxes, detector settings and box options all count', () => {
  const img = imageHash(new Uint8Array([1, 2, 3]));
  assert.notEqual(img, imageHash(new Uint8Array([1, 2, 4])));
  assert.notEqual(img, imageHash({ width: 1, height: 1, data: new Uint8Array([1, 2, 3]) }));
  const boxes = { boxes: new Float64Array([0, 0, 5, 5]), labels: ['cat'], scores: new Float64Array([0.9]) };
  const k = visualKey(img, boxes);
  assert.equal(k, visualKey(img, { boxes: new Float64Array([0, 0, 5, 5]), labels: ['cat'], scores: new Float64Array([0.9]) }));
  assert.notEqual(k, visualKey(img, { ...boxes, labels: ['dog'] }));
  assert.notEqual(k, visualKey(img, boxes, { limit: 1 }));
  assert.notEqual(k, visualKey(img, null));
  assert.notEqual(visualKey(img, { detector: 'a' }), visualKey(img, { detector: 'b' }));
  assert.notEqual(k, visualKey(imageHash(new Uint8Array([9])), boxes));
});
