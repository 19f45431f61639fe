// Batched decoding (CausalLM.forwardBatch): conversations of different lengths decoded in one run
// per step give the logits and greedy ids each gives alone, on the LLaMA, LLaMA-3 (grouped KV
// heads) and Phi-3 (sliding window) fixtures; a graph with batch slots runs single conversations
// as before; misuse is refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TINY, relErr } from '../helpers/fixtures.js';
import { CausalLM, type KvCache } from '../../src/model/llm/causal-lm.js';
import { argmax } from '../../src/generate/sampling.js';

const PROMPTS = [
  Array.from({ length: 23 }, (_, i) => (i * 37 + 11) % 1000),
  Array.from({ length: 9 }, (_, i) => (i * 53 + 7) % 1000),
  Array.from({ length: 40 }, (_, i) => (i * 29 + 3) % 1000),
];
const STEPS = 12;

async function greedy(lm: CausalLM, batched: boolean): Promise<{ ids: number[][]; logits: Float32Array[][] }> {
  const caches: KvCache[] = PROMPTS.map(() => lm.newCache());
  const last: Float32Array[] = [];
  for (const [b, p] of PROMPTS.entries()) last.push((await lm.forward(await lm.embed(p), caches[b]!)).data);
  const ids: number[][] = PROMPTS.map(() => []);
  const logits: Float32Array[][] = PROMPTS.map(() => []);
  for (let s = 0; s < STEPS; s++) {
    const next = last.map((l) => argmax(l));
    next.forEach((id, b) => ids[b]!.push(id));
    const embeds = await Promise.all(next.map((id) => lm.embed([id])));
    const out = batched
      ? await lm.forwardBatch(embeds.map((e, b) => ({ embeds: e, cache: caches[b]! })))
      : await Promise.all(embeds.map((e, b) => lm.forward(e, caches[b]!)));
    out.forEach((o, b) => {
      last[b] = o.data;
      logits[b]!.push(o.data);
    });
  }
  return { ids, logits };
}

for (const dir of ['llm', 'llama3arch', 'phi3'])
test(`forwardBatch on the ${dir} fixture: each conversation's logits and greedy ids as alone`, async (t) => {
  const plain = await CausalLM.load(join(TINY, dir));
  const slots = await CausalLM.load(join(TINY, dir), { batchSlots: 4 });
  try {
    assert.equal(slots.batchSlots, 4);
    const alone = await greedy(plain, false);
    const single = await greedy(slots, false);
    const batch = await greedy(slots, true);
    assert.deepEqual(single.ids, alone.ids, 'a graph with slots decodes one conversation as before');
    assert.deepEqual(batch.ids, alone.ids);
    let worst = 0;
    for (let b = 0; b < PROMPTS.length; b++) for (let s = 0; s < STEPS; s++) worst = Math.max(worst, relErr(batch.logits[b]![s]!, alone.logits[b]![s]!));
    t.diagnostic(`worst relative difference of batched to alone logits: ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-5, `${worst}`);
  } finally {
    await plain.release();
    await slots.release();
  }
});

test('forwardBatch refuses more items than slots, a cache twice, and an empty cache', async () => {
  const lm = await CausalLM.load(join(TINY, 'llm'), { batchSlots: 2 });
  try {
    const e = await lm.embed([5]);
    const full = () => {
      const c = lm.newCache();
      return lm.forward(e, c).then(() => c);
    };
    const [a, b, c] = await Promise.all([full(), full(), full()]);
    await assert.rejects(lm.forwardBatch([{ embeds: e, cache: a }, { embeds: e, cache: b }, { embeds: e, cache: c }]), /3 items, the decoder has 2 batch slots/);
    await assert.rejects(lm.forwardBatch([{ embeds: e, cache: a }, { embeds: e, cache: a }]), /a cache appears twice/);
    await assert.rejects(lm.forwardBatch([{ embeds: e, cache: a }, { embeds: e, cache: lm.newCache() }]), /must hold its prompt/);
  } finally {
    await lm.release();
  }
});
