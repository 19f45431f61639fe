// The library API a TypeScript user calls: loadModel + model.chat streaming tokens, the final
// result, multi-turn history, and a chat awaited without iterating.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TINY, casesJson } from '../helpers/fixtures.js';
import { loadModel, readBoxFile, MgLlava } from '../../src/index.js';

let model: MgLlava;
before(async () => {
  model = await loadModel(join(TINY, 'mgllava'));
});
after(async () => model?.release());

test('chat streams case C greedy tokens and resolves the result', async () => {
  const stream = model.chat({
    image: join(TINY, 'example.jpg'),
    boxes: await readBoxFile(join(TINY, 'boxes_raw.json')),
    prompt: 'What is shown in this image?',
    generation: { temperature: 0, maxNewTokens: 12 },
  });
  const ids: number[] = [];
  let text = '';
  for await (const t of stream) {
    ids.push(t.id);
    text += t.text;
  }
  const r = await stream.result;
  assert.deepEqual(ids, casesJson()['C.greedy_ids']);
  assert.deepEqual(r.ids, ids);
  assert.equal(r.text, text);
  assert.equal(r.promptTokens, 722);
  assert.equal(r.finishReason, 'length');
  assert.ok(r.timings.encodeMs > 0 && r.timings.prefillMs > 0);
});

test('multi-turn history is part of the prompt; complete() runs without iterating', async () => {
  const first = await model.chat({ prompt: 'Hello', generation: { temperature: 0, maxNewTokens: 4 } }).complete();
  const alone = await model.chat({ prompt: 'And then?', generation: { temperature: 0, maxNewTokens: 4 } }).complete();
  const second = await model.chat({
    prompt: 'And then?',
    history: [{ question: 'Hello', answer: first.text }],
    generation: { temperature: 0, maxNewTokens: 4 },
  }).complete();
  assert.ok(second.promptTokens > alone.promptTokens);
  assert.equal(second.ids.length, 4);
});
