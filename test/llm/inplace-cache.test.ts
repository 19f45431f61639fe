// The in-place KV cache (caller-owned buffers that onnxruntime reads where they lie; only the new
// rows come back and are written into them): the logits of the copying cache on case C (the
// prefill bit for bit, the steps to float rounding) and across a capacity growth; the buffers are
// the ones the decoder reads and are only written at the new positions; a multi-token chunk after
// the prefill; the length limit of newCache(maxLength).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TINY, relErr } from '../helpers/fixtures.js';
import { CausalLM, KvCache } from '../../src/model/llm/causal-lm.js';
import { openWeights } from '../../src/weights/open.js';
import { InputError } from '../../src/core/errors.js';
import { GREEDY, runCaseC } from '../quantize/case-c.js';

const load = (kvCache: 'inplace' | 'grow') =>
  CausalLM.load(join(TINY, 'llm'), { checkpoint: openWeights(join(TINY, 'mgllava', 'model.safetensors')), kvCache });

async function both<T>(f: (inplace: CausalLM, grow: CausalLM) => Promise<T>): Promise<T> {
  const a = await load('inplace');
  const b = await load('grow');
  try {
    assert.equal(a.cacheKind, 'inplace');
    assert.equal(b.cacheKind, 'grow');
    return await f(a, b);
  } finally {
    await a.release();
    await b.release();
  }
}

test('case C: the in-place cache gives the logits of the copying cache (prefill bit for bit, decode steps to float rounding)', async (t) => {
  await both(async (inplace, grow) => {
    const a = await runCaseC(inplace, 722 + 13);
    const b = await runCaseC(grow);
    assert.deepEqual(a.ids, GREEDY);
    assert.deepEqual(a.ids, b.ids);
    assert.equal(a.logits.length, 13);
    // Prefill: no cached rows, GroupQueryAttention alone in both.
    assert.deepEqual(a.logits[0], b.logits[0]);
    // Steps: the attention over cached and new rows is summed in another order.
    const worst = Math.max(...a.logits.slice(1).map((l, i) => relErr(l, b.logits[i + 1]!)));
    t.diagnostic(`decode steps: worst relative difference to the copying cache ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-5, `relative difference ${worst}`);
  });
});

test('the buffers stay the same arrays, get the new rows only, and are what the decoder reads', async () => {
  await both(async (lm) => {
    const ids = [1, 450, 4996, 17354, 1701, 29916];
    const cache = lm.newCache(16);
    await lm.forward(await lm.embed(ids.slice(0, 4)), cache);
    assert.equal(cache.capacity, 16, 'capacity: min(maxLength, needed + chunk)');
    const { kvHeads, headDim } = lm.config;
    const keys = cache.keys[1]!.data;
    const values = cache.values[0]!.data;
    assert.deepEqual(cache.keys[1]!.dims, [1, kvHeads, 16, headDim]);
    const row = (d: Float32Array, h: number, p: number) => d.subarray((h * 16 + p) * headDim, (h * 16 + p + 1) * headDim);
    assert.ok(row(keys, 0, 3).some((v) => v !== 0), 'prefill rows written');
    // Sentinels in unused rows: only the new rows are written.
    row(keys, 0, 9).fill(7);
    row(values, kvHeads - 1, 15).fill(-3);
    const before = row(keys, 0, 2).slice();
    await lm.forward(await lm.embed([ids[4]!]), cache);
    await lm.forward(await lm.embed([ids[5]!]), cache);
    assert.equal(cache.keys[1]!.data, keys, 'the same array, updated in place');
    assert.equal(cache.values[0]!.data, values);
    assert.ok(row(keys, 0, 4).some((v) => v !== 0) && row(keys, 0, 5).some((v) => v !== 0), 'the decode rows written');
    assert.deepEqual(row(keys, 0, 2), before, 'earlier rows untouched');
    assert.ok(row(keys, 0, 9).every((v) => v === 7) && row(values, kvHeads - 1, 15).every((v) => v === -3), 'rows past the length untouched');
    assert.ok(row(keys, 0, 6).every((v) => v === 0), 'nothing written past the length');
    // The decoder reads these very arrays: changing a held row changes the next logits.
    const e = await lm.embed([ids[0]!]);
    const probe = lm.newCache(16);
    await lm.forward(await lm.embed(ids), probe);
    const clean = (await lm.forward(e, probe)).data;
    const again = lm.newCache(16);
    await lm.forward(await lm.embed(ids), again);
    again.keys[0]!.data.subarray(0, headDim).fill(5);
    const changed = (await lm.forward(e, again)).data;
    assert.notDeepEqual(changed, clean);
  });
});

test('growing past the capacity keeps the rows and the logits of the copying cache', async () => {
  await both(async (inplace, grow) => {
    const a = inplace.newCache();
    const b = grow.newCache();
    const prompt = await inplace.embed([1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278]);
    assert.deepEqual((await inplace.forward(prompt, a)).data, (await grow.forward(prompt, b)).data);
    assert.equal(a.capacity, 10 + KvCache.CHUNK);
    let id = 100;
    for (let step = 0; step < KvCache.CHUNK + 5; step++) {
      const e = await inplace.embed([id]);
      const la = await inplace.forward(e, a);
      const lb = await grow.forward(e, b);
      assert.ok(relErr(la.data, lb.data) < 1e-5, `step ${step} (capacity ${a.capacity}): ${relErr(la.data, lb.data)}`);
      id = (id * 31 + 7) % 32000;
    }
    assert.equal(a.length, 10 + KvCache.CHUNK + 5);
    // Grew once, when position 10 + CHUNK + 1 was needed: to that plus a chunk.
    assert.equal(a.capacity, 10 + KvCache.CHUNK + 1 + KvCache.CHUNK);
  });
});

test('newCache(maxLength): the cache refuses positions past it; the length is capped by the model\'s context', async () => {
  const lm = await load('inplace');
  try {
    const cache = lm.newCache(6);
    await lm.forward(await lm.embed([1, 2, 3, 4, 5]), cache);
    assert.equal(cache.capacity, 6);
    await assert.rejects(lm.forward(await lm.embed([6, 7]), cache), /holds at most 6 positions, 7 asked/);
    assert.equal(cache.length, 5, 'a chunk that does not fit is refused whole');
    await lm.forward(await lm.embed([6]), cache);
    await assert.rejects(lm.forward(await lm.embed([7]), cache), (e: unknown) => e instanceof InputError && /holds at most 6 positions, 7 asked/.test(e.message));
    assert.equal(cache.length, 6, 'a refused step leaves the cache as it was');
    assert.equal(lm.newCache(1e9).maxLength, lm.config.maxPositions);
    assert.throws(() => lm.newCache(0), RangeError);
    const other = new KvCache(lm.config.layers, lm.config.kvHeads, lm.config.headDim, 'grow');
    await assert.rejects(lm.forward(await lm.embed([1]), other), /KV cache is 'grow', this model's decoder takes 'inplace'/);
  } finally {
    await lm.release();
  }
});
