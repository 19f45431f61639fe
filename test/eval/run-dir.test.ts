// The eval run folder: shards partition the items, a torn last line is dropped, another run's
// identity is refused with the field that differs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../weights/torch-builders.js';
import { InputError } from '../../src/core/errors.js';
import { parseShard, RunDir, shardRows, type RunIdentity } from '../../src/eval/run-dir.js';

test('shards: contiguous blocks that partition the rows, sizes within one', () => {
  for (const count of [0, 1, 7, 42, 100]) {
    for (const n of [1, 2, 3, 8]) {
      const all = Array.from({ length: n }, (_, k) => shardRows(count, { i: k + 1, n })).flat();
      assert.deepEqual(all, Array.from({ length: count }, (_, k) => k));
      const sizes = Array.from({ length: n }, (_, k) => shardRows(count, { i: k + 1, n }).length);
      assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1);
    }
  }
  assert.deepEqual(parseShard('2/4'), { i: 2, n: 4 });
  for (const bad of ['0/2', '3/2', '1', 'a/b', '1/0']) assert.throws(() => parseShard(bad), InputError);
});

const ID: RunIdentity = { bench: 'mmbench', dataset: 'MMBench_DEV_EN', data: [{ path: '/d.tsv', bytes: 1, sha256: 'ab' }], model: 'local x', promptStyle: 'release', maxNewTokens: 100, boxes: 'none', shard: null };
const INPUTS = { data: ['/d.tsv'], images: null, answers: null };

test('run folder: predictions survive a reopen, a torn last line is cut off, another identity is refused', () => {
  const dir = join(tempDir(), 'run');
  const a = RunDir.open(dir, ID, INPUTS);
  a.record({ index: '1', prediction: 'A' });
  a.record({ index: '2', prediction: 'line\nbreak "quoted"' });
  a.close();
  appendFileSync(join(dir, 'predictions.jsonl'), '{"index": "3", "predic');
  const b = RunDir.open(dir, ID, INPUTS);
  assert.deepEqual([...b.done.keys()], ['1', '2']);
  assert.equal(b.done.get('2')!.prediction, 'line\nbreak "quoted"');
  b.record({ index: '3', prediction: 'C' });
  b.close();
  assert.equal(readFileSync(join(dir, 'predictions.jsonl'), 'utf8').split('\n').filter((l) => l).length, 3);
  assert.throws(() => RunDir.open(dir, { ...ID, promptStyle: 'vlmevalkit' }, INPUTS), /holds another run \(promptStyle: release vs vlmevalkit\)/);
  assert.throws(() => RunDir.open(dir, { ...ID, data: [{ path: '/d.tsv', bytes: 1, sha256: 'cd' }] }, INPUTS), /holds another run \(data: /);
  assert.throws(() => RunDir.open(dir, { ...ID, shard: { i: 1, n: 2 } }, INPUTS), /holds another run \(shard: /);
});

test('run folder: a run that answered nothing may be started over with other settings', () => {
  const dir = join(tempDir(), 'fresh');
  RunDir.open(dir, ID, INPUTS).close();
  const b = RunDir.open(dir, { ...ID, boxes: 'detector {}' }, INPUTS);
  b.record({ index: '1', prediction: 'A' });
  b.close();
  assert.throws(() => RunDir.open(dir, ID, INPUTS), /holds another run \(boxes: detector \{\} vs none\)/);
});
