// The KV cache and the decoder's other paths, checked against the decoder itself: a prompt run in
// chunks or token by token gives the logits of one prefill run; Phi-3's sliding window matches
// HF's mask (i - j < window); tied embeddings; the context limit.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { TINY, fixture, relErr } from '../helpers/fixtures.js';
import { CausalLM } from '../../src/model/llm/causal-lm.js';
import { parseLlmConfig } from '../../src/model/llm/config.js';
import { openWeights } from '../../src/weights/open.js';
import { OverlayStore, WeightStore } from '../../src/weights/types.js';
import { InputError } from '../../src/core/errors.js';
import { F32Tensor } from '../../src/core/tensor.js';

const TOL = 1e-5;
let tmp: string;

before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'llm-test-'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A model folder: a fixture's weights (copied) with some config.json fields changed. */
function variant(fixtureDir: string, name: string, changes: Record<string, unknown>): string {
  const cfg = JSON.parse(readFileSync(join(TINY, fixtureDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const dir = join(tmp, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, ...changes }));
  copyFileSync(join(TINY, fixtureDir, 'model.safetensors'), join(dir, 'model.safetensors'));
  return dir;
}

function rows(t: F32Tensor, from: number, to: number): F32Tensor {
  const H = t.dims[1]!;
  return { dims: [to - from, H], data: t.data.subarray(from * H, to * H) };
}

const phi3Embeds = (): F32Tensor => fixture('E.phi3.inputs_embeds');

async function withModel<T>(lm: CausalLM, f: (lm: CausalLM) => Promise<T>): Promise<T> {
  try {
    return await f(lm);
  } finally {
    await lm.release();
  }
}

/** Logits of every position, run as chunks of the given sizes against one cache. */
async function chunked(lm: CausalLM, x: F32Tensor, sizes: readonly number[]): Promise<Float32Array> {
  const cache = lm.newCache();
  const parts: Float32Array[] = [];
  let at = 0;
  for (const n of sizes) {
    parts.push((await lm.forward(rows(x, at, at + n), cache, { allLogits: true })).data);
    at += n;
  }
  assert.equal(at, x.dims[0]);
  assert.equal(cache.length, at);
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

test('chunked prefill and token-by-token decoding give the logits of one prefill run', async (t) => {
  await withModel(await CausalLM.load(join(TINY, 'llama3arch')), async (lm) => {
    const ids = Array.from({ length: 29 }, (_, i) => (i * 37 + 11) % 1000);
    const x = await lm.embed(ids);
    const full = (await lm.forward(x, lm.newCache(), { allLogits: true })).data;
    const eChunks = relErr(await chunked(lm, x, [10, 1, 12, 6]), full);
    const eSteps = relErr(await chunked(lm, x, Array(29).fill(1)), full);
    t.diagnostic(`chunks: ${eChunks.toExponential(2)}, one token at a time: ${eSteps.toExponential(2)}`);
    assert.ok(eChunks < TOL && eSteps < TOL);
  });
});

for (const attention of ['gqa', 'ops'] as const)
test(`Phi-3 sliding window (${attention} attention): a query sees the last \`sliding_window\` positions, itself included`, async (t) => {
  // Window 2, two layers: the logits at position i depend on inputs i-2..i only, so they equal the
  // last logits of those three inputs run alone (rope is relative). A window one wider or one
  // narrower (GQA's local_window_size off by one) would not.
  const x = phi3Embeds();
  await withModel(await CausalLM.load(variant('phi3', `phi3-window2-${attention}`, { sliding_window: 2 }), { attention }), async (lm) => {
    assert.equal(lm.config.slidingWindow, 2);
    const full = await lm.forward(x, lm.newCache(), { allLogits: true });
    const V = lm.config.vocabSize;
    let worst = 0;
    for (let i = 2; i < x.dims[0]!; i++) {
      const alone = await lm.forward(rows(x, i - 2, i + 1), lm.newCache());
      worst = Math.max(worst, relErr(full.data.subarray(i * V, (i + 1) * V), alone.data));
    }
    t.diagnostic(`window 2: worst relative error vs the 3-input runs ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-4);
    const two = await lm.forward(rows(x, 11, 13), lm.newCache());
    assert.ok(relErr(full.data.subarray(12 * V, 13 * V), two.data) > 1e-3, 'the window reaches back further than a 1-wide one');
    // The windowed cache path (one token at a time) agrees with the windowed prefill.
    const eSteps = relErr(await chunked(lm, x, [5, ...Array(32).fill(1)]), full.data);
    const eChunks = relErr(await chunked(lm, x, [4, 7, 1, 9, 16]), full.data);
    t.diagnostic(`window 2, chunks after cached rows: ${eChunks.toExponential(2)}`);
    assert.ok(eChunks < TOL);
    t.diagnostic(`window 2, decoding token by token: ${eSteps.toExponential(2)}`);
    assert.ok(eSteps < TOL);
  });
  await withModel(await CausalLM.load(variant('phi3', `phi3-window3-${attention}`, { sliding_window: 3 }), { attention }), async (lm) => {
    const full = await lm.forward(x, lm.newCache(), { allLogits: true });
    const alone = await lm.forward(rows(x, 10, 13), lm.newCache());
    const V = lm.config.vocabSize;
    assert.ok(relErr(full.data.subarray(12 * V, 13 * V), alone.data) > 1e-3, 'a wider window sees more inputs');
  });
  // A window as long as the sequence is full causal attention: the fixture's logits again.
  await withModel(await CausalLM.load(variant('phi3', `phi3-window37-${attention}`, { sliding_window: 37 }), { attention }), async (lm) => {
    const last = await lm.forward(x, lm.newCache());
    assert.ok(relErr(last.data, fixture('E.phi3.logits_last').data) < 1e-4);
  });
});

test('tied word embeddings: lm_head is model.embed_tokens.weight', async () => {
  const base = openWeights(join(TINY, 'llama3arch'));
  const cfg = parseLlmConfig(JSON.parse(readFileSync(join(TINY, 'llama3arch', 'config.json'), 'utf8')) as Record<string, unknown>, 'x');
  // Untied with lm_head := embed_tokens, vs tied with no lm_head at all.
  const asHead: WeightStore = {
    path: 'embed-as-head',
    keys: () => ['lm_head.weight'],
    get: (k) => (k === 'lm_head.weight' ? base.get('model.embed_tokens.weight') : undefined),
  };
  const withoutHead: WeightStore = {
    path: base.path,
    keys: () => base.keys().filter((k) => k !== 'lm_head.weight'),
    get: (k) => (k === 'lm_head.weight' ? undefined : base.get(k)),
  };
  const ids = [5, 17, 900, 3];
  const a = await withModel(await CausalLM.fromStore(cfg, new OverlayStore('x', [base, asHead])), async (lm) => lm.forward(await lm.embed(ids), lm.newCache()));
  const b = await withModel(await CausalLM.fromStore({ ...cfg, tieWordEmbeddings: true }, withoutHead), async (lm) => lm.forward(await lm.embed(ids), lm.newCache()));
  assert.deepEqual(b.data, a.data);
  await assert.rejects(CausalLM.fromStore(cfg, withoutHead), /missing tensor lm_head\.weight/);
});

test('context overflow is a clear error, before and during generation', async () => {
  await withModel(await CausalLM.load(variant('llm', 'llm-ctx8', { max_position_embeddings: 8 })), async (lm) => {
    assert.throws(() => lm.checkContext(6, 3), (e: unknown) => e instanceof InputError && e.message === "prompt of 6 tokens + 3 new tokens exceeds the model's context of 8");
    lm.checkContext(6, 2);
    const x = await lm.embed([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await assert.rejects(lm.forward(x, lm.newCache()), (e: unknown) => e instanceof InputError && e.message === "prompt of 9 tokens exceeds the model's context of 8");
    const cache = lm.newCache();
    await lm.forward(rows(x, 0, 6), cache);
    await lm.forward(rows(x, 6, 7), cache);
    await lm.forward(rows(x, 7, 8), cache);
    assert.equal(cache.length, 8);
    await assert.rejects(lm.forward(rows(x, 8, 9), cache), (e: unknown) => e instanceof InputError && e.message === "prompt of 8 tokens + 1 new tokens exceeds the model's context of 8");
    assert.equal(cache.length, 8, 'a refused step leaves the cache as it was');
  });
});

test('bad inputs: token ids outside the vocabulary, embeddings of the wrong width, missing config', async () => {
  await withModel(await CausalLM.load(join(TINY, 'llama3arch')), async (lm) => {
    await assert.rejects(lm.embed([1000]), /token id 1000 is outside the vocabulary of 1000/);
    await assert.rejects(lm.embed([-1]), InputError);
    await assert.rejects(lm.forward({ dims: [2, 16], data: new Float32Array(32) }, lm.newCache()), /expected \[S, 32\]/);
    const other = await CausalLM.load(join(TINY, 'phi3'));
    await assert.rejects(lm.forward(await lm.embed([1]), other.newCache()), /another shape/);
    await other.release();
  });
  await assert.rejects(CausalLM.load(join(TINY, 'mgllava')), (e: unknown) => e instanceof InputError && /config\.json: no such file/.test(e.message));
});

test('partial rotary (Phi-3 partial_rotary_factor) runs, changes the logits, and its cache paths agree', async () => {
  const x = phi3Embeds();
  const full = await withModel(await CausalLM.load(join(TINY, 'phi3')), (lm) => lm.forward(x, lm.newCache()));
  await withModel(await CausalLM.load(variant('phi3', 'phi3-partial', { rope_parameters: { rope_type: 'default', rope_theta: 10000, partial_rotary_factor: 0.5 } })), async (lm) => {
    assert.equal(lm.config.rotaryDim, 4);
    const all = await lm.forward(x, lm.newCache(), { allLogits: true });
    const V = lm.config.vocabSize;
    assert.ok(relErr(all.data.subarray(36 * V), full.data) > 1e-3, 'rotating half the dims changes the logits');
    assert.ok(relErr(await chunked(lm, x, [20, ...Array(17).fill(1)]), all.data) < TOL);
  });
});

test('head dims that GroupQueryAttention cannot take run on the plain-op attention, cache included', async () => {
  // head_dim 4 with 4 query heads over the tiny LLM's 16-wide q_proj; 2 kv heads share k/v_proj's 8 rows.
  await withModel(await CausalLM.load(variant('llm', 'llm-hd4', { head_dim: 4, num_attention_heads: 4, num_key_value_heads: 2 })), async (lm) => {
    const x = rows(phi3Embeds(), 0, 20);
    const all = await lm.forward(x, lm.newCache(), { allLogits: true });
    assert.ok(all.data.every(Number.isFinite));
    assert.ok(relErr(await chunked(lm, x, [7, 1, 1, 11]), all.data) < TOL);
  });
});
