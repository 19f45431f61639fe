// The packed-weights cache (src/runtime/packed-cache.ts): the first load packs and saves, later
// loads map the saved buffers and give bit-identical outputs; a changed weight file gets a new
// entry and the old one goes; a cache folder that cannot be written or an entry cut short falls
// back to packing in memory; float MatMul weights (vision) and MatMulNBits (quantized LLM) alike.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, readdirSync, rmSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { Graph } from '../../src/graph/graph.js';
import { Session } from '../../src/runtime/session.js';
import { PACKED_DATA, PACKED_MODEL, defaultPackedCacheRoot, packedCacheRoot } from '../../src/runtime/packed-cache.js';
import { CausalLM } from '../../src/model/llm/causal-lm.js';
import { quantizeLlm } from '../../src/index.js';
import { TINY } from '../helpers/fixtures.js';
import { tempDir } from '../weights/torch-builders.js';

const K = 256;
const N = 192;
let tmp: string;
let weights: string;
let q4: string;

before(async () => {
  tmp = tempDir();
  // A float weight [K, N] as raw bytes in a file: the graph reads it as external data.
  weights = join(tmp, 'w.bin');
  const w = new Float32Array(K * N).map((_, i) => Math.sin(i * 0.37) * 0.1);
  writeFileSync(weights, new Uint8Array(w.buffer));
  q4 = join(tmp, 'llm-q4');
  await quantizeLlm({ llm: join(TINY, 'llm'), out: q4 });
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function matmulGraph(): Graph {
  const g = new Graph('cached_matmul');
  const x = g.input('x', 'F32', ['m', K]);
  const w = g.initializer('w', 'F32', [K, N], { kind: 'external', path: weights, offset: 0, length: K * N * 4 });
  g.output(g.op1('MatMul', [x, w]), 'y', 'F32', ['m', N]);
  return g;
}

const x = { dims: [3, K], data: new Float32Array(3 * K).map((_, i) => Math.cos(i * 0.11)) };

async function runOnce(cache: string | undefined, prepack = true): Promise<{ packed: string; note?: string; y: Float32Array }> {
  const s = await Session.fromGraph(matmulGraph(), { prepack, packedCache: cache });
  try {
    return { packed: s.packed, note: s.packedNote, y: (await s.run({ x })).y!.data };
  } finally {
    await s.release();
  }
}

const entries = (root: string) => readdirSync(root).filter((d) => !d.startsWith('.'));

test('float weights: packed and saved once, then mapped with identical outputs', async () => {
  const root = join(tmp, 'cache-float');
  const plain = await runOnce(undefined);
  assert.equal(plain.packed, 'none');
  const first = await runOnce(root);
  assert.equal(first.packed, 'saved', first.note);
  const [entry] = entries(root);
  assert.ok(entry, 'one entry written');
  for (const f of [PACKED_MODEL, PACKED_DATA, 'entry.json']) assert.ok(existsSync(join(root, entry, f)), f);
  const second = await runOnce(root);
  assert.equal(second.packed, 'mapped');
  assert.deepEqual(second.y, first.y);
  assert.deepEqual(first.y, plain.y);
  assert.deepEqual(entries(root), [entry], 'no new entry for the same graph and file');
  // No temporary folders left behind.
  assert.deepEqual(readdirSync(root).filter((d) => d.startsWith('.')), []);
});

test('a changed weight file gets a new entry and the old one is removed', async () => {
  const root = join(tmp, 'cache-changed');
  await runOnce(root);
  const [old] = entries(root);
  utimesSync(weights, new Date(), new Date(Date.now() + 5000));
  const again = await runOnce(root);
  assert.equal(again.packed, 'saved');
  const now = entries(root);
  assert.equal(now.length, 1);
  assert.notEqual(now[0], old);
});

test('an entry cut short is not mapped: packed again', async () => {
  const root = join(tmp, 'cache-cut');
  const first = await runOnce(root);
  const [entry] = entries(root);
  truncateSync(join(root, entry!, PACKED_DATA), 100);
  const again = await runOnce(root);
  assert.equal(again.packed, 'saved');
  assert.deepEqual(again.y, first.y);
  assert.equal((await runOnce(root)).packed, 'mapped');
});

test('a cache folder that cannot be made: loads without it and says why', async () => {
  const blocker = join(tmp, 'a-file');
  writeFileSync(blocker, 'not a folder');
  const r = await runOnce(join(blocker, 'cache'));
  assert.equal(r.packed, 'none');
  assert.match(r.note ?? '', /cannot write the packed-weights cache in .*a-file\/cache/);
  assert.deepEqual(r.y, (await runOnce(undefined)).y);
});

test('without pre-packing, or without weight files, there is nothing to cache', async () => {
  const root = join(tmp, 'cache-off');
  assert.equal((await runOnce(root, false)).packed, 'none');
  const g = new Graph('no_weights');
  g.output(g.op1('Relu', [g.input('x', 'F32', [2])]), 'y', 'F32', [2]);
  const s = await Session.fromGraph(g, { prepack: true, packedCache: root });
  assert.equal(s.packed, 'none');
  await s.release();
  assert.equal(existsSync(root), false);
});

test('quantized LLM: MatMulNBits weights saved, then mapped; logits bit-identical to packing in memory', async () => {
  const root = join(tmp, 'cache-llm');
  const ids = [1, 5, 9, 200, 31, 7];
  const run = async (packedCache: string | false) => {
    const lm = await CausalLM.load(q4, { packedCache });
    try {
      const cache = lm.newCache(16);
      const prompt = await lm.forward(await lm.embed(ids), cache);
      const step = await lm.forward(await lm.embed([42]), cache);
      return { packed: lm.packed, prompt: prompt.data, step: step.data };
    } finally {
      await lm.release();
    }
  };
  const plain = await run(false);
  assert.equal(plain.packed, 'none');
  const first = await run(root);
  assert.equal(first.packed, 'saved');
  const second = await run(root);
  assert.equal(second.packed, 'mapped');
  for (const r of [first, second]) {
    assert.deepEqual(r.prompt, plain.prompt);
    assert.deepEqual(r.step, plain.step);
  }
  assert.equal(entries(root).length, 1, 'one entry: the decoder (the embedding table is not pre-packed)');
});

test('the default folder: $MGLLAVA_CACHE_DIR/packed, false for none', () => {
  const saved = process.env.MGLLAVA_CACHE_DIR;
  try {
    process.env.MGLLAVA_CACHE_DIR = '/some/where';
    assert.equal(defaultPackedCacheRoot(), '/some/where/packed');
    assert.equal(packedCacheRoot(undefined), '/some/where/packed');
    assert.equal(packedCacheRoot('/mine'), '/mine');
    assert.equal(packedCacheRoot(false), undefined);
    delete process.env.MGLLAVA_CACHE_DIR;
    assert.match(defaultPackedCacheRoot(), /mgllava\/packed$/);
  } finally {
    process.env.MGLLAVA_CACHE_DIR = saved;
  }
});
