// Batched decoding through MgLlava (parallel > 1): concurrent chat() calls decode together, in
// fewer decoder runs than steps, and each gives the greedy answer it gives alone.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY } from '../helpers/fixtures.js';
import { MgLlava } from '../../src/model/mg-llava.js';
import { parseBoxJson } from '../../src/preprocess/boxes.js';

const IMAGE = readFileSync(join(TINY, 'example.jpg'));
const BOXES = parseBoxJson(readFileSync(join(TINY, 'boxes_raw.json'), 'utf8'), 'boxes');

const asks = [
  { prompt: 'What is shown in this image?', image: IMAGE, boxes: BOXES },
  { prompt: 'Hello there' },
  { prompt: 'Count from one to twenty.' },
  { prompt: 'Describe the colours.', image: IMAGE, boxes: BOXES },
  { prompt: 'A longer question, with more words in it, about nothing much at all.' },
  { prompt: 'Short' },
];

test('parallel 4: six concurrent greedy chats decode in batches and answer as alone', async () => {
  const alone = await MgLlava.load({ model: join(TINY, 'mgllava') }, { cache: false });
  const together = await MgLlava.load({ model: join(TINY, 'mgllava') }, { cache: false, parallel: 4 });
  try {
    const want: number[][] = [];
    for (const a of asks) want.push((await alone.chat({ ...a, generation: { maxNewTokens: 20 + want.length * 7, temperature: 0 } }).complete()).ids);
    const got = await Promise.all(asks.map((a, i) => together.chat({ ...a, generation: { maxNewTokens: 20 + i * 7, temperature: 0 } }).complete()));
    assert.deepEqual(got.map((r) => r.ids), want);
    const stats = together.decodeBatches!;
    const steps = got.reduce((s, r) => s + r.ids.length - 1, 0);
    assert.equal(stats.rows, steps, 'every decode step went through the batcher');
    assert.ok(stats.runs < steps * 0.6, `${stats.runs} runs for ${steps} steps: batching`);
    assert.equal(alone.decodeBatches, undefined);
  } finally {
    await alone.release();
    await together.release();
  }
});
