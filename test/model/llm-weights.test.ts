// The checkpoint's `llm.*` tensors replace the base LLM's; keys the checkpoint lacks come from
// the base (a stage-1 checkpoint has no `llm.*` at all).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TINY } from '../helpers/fixtures.js';
import { openWeights } from '../../src/weights/open.js';
import { readBytes, WeightStore } from '../../src/weights/types.js';
import { llmWeights } from '../../src/model/llm-weights.js';

const base = openWeights(join(TINY, 'llm'));
const ckpt = openWeights(join(TINY, 'mgllava', 'iter_1.pth'));

test('llm.* of the checkpoint overrides the base LLM', () => {
  const llm = llmWeights(base, ckpt);
  assert.deepEqual(new Set(llm.keys()), new Set(base.keys()));
  let differing = 0;
  for (const k of base.keys()) {
    const got = readBytes(llm.get(k)!);
    assert.deepEqual(got, readBytes(ckpt.get(`llm.${k}`)!), k);
    if (Buffer.compare(Buffer.from(got), Buffer.from(readBytes(base.get(k)!))) !== 0) differing++;
  }
  assert.ok(differing > 0, 'the fine-tuned LLM differs from the base');
});

test('without llm.* in the checkpoint the base tensors are used', () => {
  const visionOnly: WeightStore = {
    path: 'stage1.pth',
    keys: () => ckpt.keys().filter((k) => !k.startsWith('llm.')),
    get: (k) => (k.startsWith('llm.') ? undefined : ckpt.get(k)),
  };
  const llm = llmWeights(base, visionOnly);
  for (const k of base.keys()) assert.deepEqual(readBytes(llm.get(k)!), readBytes(base.get(k)!), k);
});
