// Training data as the release reads it: LLaVA samples (image, text-only, pre-tokenized), images at
// image_folder/image (checked, not loaded), boxes matched by String(id), the training box cap from
// the text length, silent drops counted, every bad-data error message, and the collator.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getTemplate } from '../../src/tokenizer/templates.js';
import { InputError } from '../../src/core/errors.js';
import { prepareBoxes, type BoxGeometry } from '../../src/preprocess/boxes.js';
import { IGNORE_INDEX, IMAGE_TOKEN_INDEX, encodeConversation } from '../../src/train/labels.js';
import {
  PAD_TOKEN_INDEX,
  SKIP_NO_ANSWER,
  SKIP_NO_LABEL,
  collate,
  loadTrainData,
  trainBoxOptions,
  type TrainDataOptions,
  type TrainSample,
} from '../../src/train/data.js';
import { TINY } from '../helpers/fixtures.js';
import { llama2Tokenizer } from '../tokenizer/load.js';

const I = IGNORE_INDEX;
const IMG = IMAGE_TOKEN_INDEX;
const VICUNA = getTemplate('vicuna');
const EXAMPLE = join(TINY, 'example.jpg');

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A fresh folder holding data.json (and boxes.json when given). */
function writeCase(samples: unknown, boxes?: unknown): { dir: string; data: string; boxes?: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mgllava-train-data-'));
  dirs.push(dir);
  const data = join(dir, 'data.json');
  writeFileSync(data, typeof samples === 'string' ? samples : JSON.stringify(samples));
  if (boxes === undefined) return { dir, data };
  const boxPath = join(dir, 'boxes.json');
  writeFileSync(boxPath, JSON.stringify(boxes));
  return { dir, data, boxes: boxPath };
}

function load(paths: { data: string; boxes?: string }, extra: Partial<TrainDataOptions> = {}) {
  return loadTrainData({ data: paths.data, boxes: paths.boxes, imageFolder: TINY, tokenizer: llama2Tokenizer(), template: VICUNA, ...extra });
}

async function rejectsWith(p: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof InputError, `not an InputError: ${String(e)}`);
    assert.equal(e.message, message);
    return true;
  });
}

const Q_IMAGE = { from: 'human', value: 'What is it?\n<image>' };
const A_CAT = { from: 'gpt', value: 'A cat.' };
const TEXT_CONV = [{ from: 'human', value: 'Why?' }, { from: 'gpt', value: 'Because.' }];
const BOX_17 = { id: '17', boxes: [[1, 2, 30, 40], [5, 5, 10, 10]], labels: ['cat', 'cat'], scores: [0.9, 0.5] };

test('image, text-only and pre-tokenized samples; boxes matched by String(id); drops counted', async () => {
  const paths = writeCase(
    [
      { id: 17, image: 'example.jpg', conversations: [{ from: 'gpt', value: 'dropped' }, Q_IMAGE, A_CAT] },
      { id: 'text-1', conversations: TEXT_CONV },
      { id: 'text-2', image: '', conversations: TEXT_CONV },
      { id: 'tok', image: 'example.jpg', input_ids: [1, 5, IMG, 7, 8, 2], labels: [I, I, I, I, 8, 2] },
      // Dropped before its image is looked at (the release never opens it): no error for it.
      { id: 'no-answer', image: 'missing.jpg', conversations: [{ from: 'human', value: '<image>\nq' }] },
      { id: 'only-gpt', conversations: [{ from: 'gpt', value: 'x' }] },
    ],
    [
      BOX_17,
      { id: 'tok', boxes: [], labels: [], scores: [] },
      { id: 'text-1', boxes: 'never read' }, // text-only samples ignore their entry
      { id: 'unused', boxes: [[1]] }, // entries no sample uses are not read (the release never reads them)
    ],
  );
  const { samples, skipped } = await load(paths);
  assert.deepEqual(samples.map((s) => s.id), ['17', 'text-1', 'text-2', 'tok']);
  assert.deepEqual(skipped, [{ reason: SKIP_NO_ANSWER, count: 2 }]);

  const [img, text1, text2, tok] = samples as [TrainSample, TrainSample, TrainSample, TrainSample];
  assert.equal(img.image, EXAMPLE);
  const enc = encodeConversation(llama2Tokenizer(), VICUNA, [Q_IMAGE, A_CAT]);
  assert.deepEqual({ inputIds: img.inputIds, labels: img.labels }, enc);
  assert.deepEqual(img.detections, {
    boxes: Float64Array.from([1, 2, 30, 40, 5, 5, 10, 10]),
    labels: ['cat', 'cat'],
    scores: Float64Array.from([0.9, 0.5]),
  });
  assert.deepEqual(img.boxOptions, { iouThreshold: 0.2, limit: 100, perLabel: 20 });

  for (const s of [text1, text2]) {
    assert.equal(s.image, undefined);
    assert.equal(s.detections, undefined);
    assert.ok(!s.inputIds.includes(IMG));
    assert.deepEqual({ inputIds: s.inputIds, labels: s.labels }, encodeConversation(llama2Tokenizer(), VICUNA, TEXT_CONV));
  }
  assert.deepEqual(tok.inputIds, [1, 5, IMG, 7, 8, 2]);
  assert.deepEqual(tok.labels, [I, I, I, I, 8, 2]);
  assert.equal(tok.detections?.labels.length, 0); // an empty box list: prepareBoxes gives the [0,0,0,0] box
});

test('without a box file samples carry no detections; image folder defaults to the data file folder; absolute images', async () => {
  const paths = writeCase([
    { id: 1, image: 'a.jpg', conversations: [Q_IMAGE, A_CAT] },
    { id: 2, image: 'sub/b.jpg', conversations: [Q_IMAGE, A_CAT] },
    { id: 3, image: EXAMPLE, conversations: [Q_IMAGE, A_CAT] },
  ]);
  // Only existence is checked: empty files do.
  writeFileSync(join(paths.dir, 'a.jpg'), '');
  mkdirSync(join(paths.dir, 'sub'));
  writeFileSync(join(paths.dir, 'sub', 'b.jpg'), '');
  const progress: [number, number][] = [];
  const { samples } = await loadTrainData({
    data: paths.data,
    tokenizer: llama2Tokenizer(),
    template: VICUNA,
    onProgress: (done, total) => progress.push([done, total]),
  });
  assert.deepEqual(samples.map((s) => s.image), [join(paths.dir, 'a.jpg'), join(paths.dir, 'sub', 'b.jpg'), EXAMPLE]);
  assert.ok(samples.every((s) => s.detections === undefined));
  assert.deepEqual(progress, [[3, 3]]);
});

test('truncation to maxLength, samples left without a label dropped, the box cap near max_length', async () => {
  // Vicuna lengths (labels.test.ts): TEXT_CONV 15 ids, labels from position 10; [Q_IMAGE, A_CAT] 22 ids, labels from 16.
  const longTok = { input_ids: Array.from({ length: 40 }, (_, i) => 3 + i), labels: Array.from({ length: 40 }, (_, i) => (i < 30 ? I : 3 + i)) };
  const paths = writeCase([
    { id: 'short', conversations: TEXT_CONV },
    { id: 'image', image: 'example.jpg', conversations: [Q_IMAGE, A_CAT] },
    { id: 'cut-answer', image: 'example.jpg', conversations: [Q_IMAGE, A_CAT, { from: 'human', value: 'More?' }, { from: 'gpt', value: 'No.' }] },
    { id: 'tok-cut', ...longTok },
    { id: 'tok-kept', input_ids: longTok.input_ids, labels: longTok.input_ids.map((t, i) => (i < 5 ? I : t)) },
  ]);
  // maxLength 25: close_to_max_length from 25 - 50 < 0, so every sample caps at one box per label.
  const a = await load(paths, { maxLength: 25 });
  assert.deepEqual(a.samples.map((s) => [s.id, s.inputIds.length]), [['short', 15], ['image', 22], ['cut-answer', 25], ['tok-kept', 25]]);
  assert.deepEqual(a.skipped, [{ reason: SKIP_NO_LABEL, count: 1 }]);
  assert.ok(a.samples.every((s) => s.boxOptions.limit === 0 && s.boxOptions.perLabel === 1));
  const tokKept = a.samples[3]!;
  assert.deepEqual(tokKept.inputIds, longTok.input_ids.slice(0, 25));

  // maxLength 70: the threshold is 20; 15 ids are below it, 22 and more are close.
  const b = await load(paths, { maxLength: 70 });
  assert.deepEqual(b.skipped, []);
  assert.deepEqual(
    b.samples.map((s) => [s.id, s.inputIds.length, s.boxOptions.perLabel]),
    [['short', 15, 20], ['image', 22, 1], ['cut-answer', 37, 1], ['tok-cut', 40, 1], ['tok-kept', 40, 1]],
  );
  // The cut keeps a prefix of the full encoding.
  const full = encodeConversation(llama2Tokenizer(), VICUNA, [Q_IMAGE, A_CAT, { from: 'human', value: 'More?' }, { from: 'gpt', value: 'No.' }]);
  assert.deepEqual(a.samples[2]!.inputIds, full.inputIds.slice(0, 25));
  assert.deepEqual(a.samples[2]!.labels, full.labels.slice(0, 25));
});

test('trainBoxOptions: the release cap (100 -> 20 per label; within 50 of max_length -> 1 per label)', () => {
  assert.deepEqual(trainBoxOptions(1421), { iouThreshold: 0.2, limit: 100, perLabel: 20 });
  assert.deepEqual(trainBoxOptions(1422), { iouThreshold: 0.2, limit: 0, perLabel: 1 });
  assert.deepEqual(trainBoxOptions(1472), { iouThreshold: 0.2, limit: 0, perLabel: 1 });
  assert.deepEqual(trainBoxOptions(100, 2048, 30), { iouThreshold: 0.2, limit: 30, perLabel: 5 });

  // Through prepareBoxes (768 px square, no padding: boxes unchanged): 3 boxes of 2 labels.
  const geom: BoxGeometry = { padX: 0, padY: 0, paddedWidth: 768, paddedHeight: 768, size: 768 };
  const det = {
    boxes: Float64Array.from([0, 0, 10, 10, 100, 100, 200, 200, 300, 300, 400, 400]),
    labels: ['a', 'b', 'a'],
    scores: Float64Array.from([0.5, 0.7, 0.9]),
  };
  const normal = prepareBoxes(det, geom, trainBoxOptions(10));
  assert.deepEqual([...normal.labels], ['a', 'b', 'a']); // few boxes: no cap (NMS order by score)
  const close = prepareBoxes(det, geom, trainBoxOptions(1430));
  assert.deepEqual([...close.labels], ['a', 'b']); // one per label, labels in order of first appearance
  assert.deepEqual([...close.boxes], [300, 300, 400, 400, 100, 100, 200, 200]);
  // More than 100 boxes: 20 per label.
  const many = {
    boxes: Float64Array.from({ length: 120 * 4 }, (_, i) => Math.floor(i / 4) * 6 + (i % 4 >= 2 ? 5 : 0)),
    labels: Array.from({ length: 120 }, (_, i) => (i < 60 ? 'x' : 'y')),
    scores: Float64Array.from({ length: 120 }, (_, i) => 1 - i / 200),
  };
  assert.equal(prepareBoxes(many, geom, trainBoxOptions(10)).count, 40);
});

test('bad data: one line naming the file and the sample', async () => {
  const box = (entry: object) => writeCase([{ id: 17, image: 'example.jpg', conversations: [Q_IMAGE, A_CAT] }], [entry]);
  let p = box({ ...BOX_17, boxes: [[1, 2, 30, 40], [1, 2, 3]] });
  await rejectsWith(load(p), `${p.boxes}: sample 17: boxes[1] must be [x0, y0, x1, y1], got [1,2,3]`);
  p = box({ ...BOX_17, boxes: [[1, 2, 30, 40], [5, 5, 'a', 10]] });
  await rejectsWith(load(p), `${p.boxes}: sample 17: boxes[1][2] is not a number: "a"`);
  p = box({ ...BOX_17, labels: ['cat'] });
  await rejectsWith(load(p), `${p.boxes}: sample 17: 2 boxes but 1 labels and 2 scores (need one each per box)`);
  p = box({ ...BOX_17, scores: [0.9, '0.5'] });
  await rejectsWith(load(p), `${p.boxes}: sample 17: scores[1] is not a number: "0.5"`);
  p = box({ ...BOX_17, id: 18 });
  await rejectsWith(load(p), `${p.boxes}: sample 17: no box entry with this id`);
  p = box({ boxes: [] });
  await rejectsWith(load(p), `${p.boxes}: entry at index 0: expected an object with "id" (a string or number), got {"boxes":[]}`);

  const one = (sample: unknown) => writeCase([{ id: 1, conversations: TEXT_CONV }, sample]);
  const cases: [unknown, string][] = [
    [{ id: 17, image: 'nope.jpg', conversations: [Q_IMAGE, A_CAT] }, `sample 17: image not found: ${join(TINY, 'nope.jpg')}`],
    [{ id: 17, image: 'llm', conversations: [Q_IMAGE, A_CAT] }, `sample 17: image is not a file: ${join(TINY, 'llm')}`],
    [{ id: 17, conversations: [Q_IMAGE, { from: 'bot', value: 'x' }] }, 'sample 17: conversations[1]: unknown "from" "bot" (expected "human" or "gpt")'],
    [{ id: 'a', conversations: [{ from: 'human', value: 3 }, A_CAT] }, 'sample a: conversations[0]: "value" must be a string, got 3'],
    [{ id: 'a', conversations: [{ value: 'q' }, A_CAT] }, 'sample a: conversations[0]: "from" must be a string, got undefined'],
    [{ id: 'a', conversations: ['hi'] }, 'sample a: conversations[0] must be an object {from, value}, got "hi"'],
    [{ id: 'a', conversations: 'hi' }, 'sample a: "conversations" must be a list of {from, value} messages, got "hi"'],
    [{ id: 'a' }, 'sample a: "conversations" must be a list of {from, value} messages, got undefined'],
    [{ id: { n: 1 }, conversations: TEXT_CONV }, 'sample at index 1: "id" must be a string or a number, got {"n":1}'],
    [{ conversations: TEXT_CONV }, 'sample at index 1: "id" must be a string or a number, got undefined'],
    [[1, 2], 'sample at index 1: expected an object {id, image?, conversations}, got [1,2]'],
    [{ id: 'a', image: 5, conversations: TEXT_CONV }, 'sample a: "image" must be a string (a path under the image folder), got 5'],
    [{ id: 'a', video: 'v.mp4', conversations: TEXT_CONV }, 'sample a: video samples are not supported'],
    [{ id: 'a', conversations: [Q_IMAGE, A_CAT] }, 'sample a: <image> in the text but the sample has no "image"'],
    [{ id: 'a', image: 'example.jpg', conversations: [Q_IMAGE, A_CAT, Q_IMAGE, A_CAT] }, 'sample a: 2 <image> positions (the release supports one image per sample)'],
    [{ id: 'a', conversations: [{ from: 'human', value: '<image>' }, { from: 'human', value: '<image>' }, A_CAT] }, 'sample a: a turn holds 2 <image> tokens (the release allows one per turn)'],
    [{ id: 't', input_ids: [1, IMG, 5], labels: [I, 7, 5] }, 'sample t: labels[1] = 7 at the image position (input_ids[1] = -200) must be -100'],
    [{ id: 't', input_ids: [1, 5], labels: [I] }, 'sample t: "input_ids" has 2 ids but "labels" has 1 (need one each)'],
    [{ id: 't', input_ids: [1, 5, 6], labels: [I, 5, 7] }, 'sample t: labels[2] = 7 must be -100 or input_ids[2] (6)'],
    [{ id: 't', input_ids: [1, 32000], labels: [I, 32000] }, 'sample t: input_ids[1] = 32000 is not a token id (0..31999) nor -200 (the image)'],
    [{ id: 't', input_ids: [1, -5], labels: [I, I] }, 'sample t: input_ids[1] = -5 is not a token id (0..31999) nor -200 (the image)'],
    [{ id: 't', input_ids: [1, 2.5], labels: [I, I] }, 'sample t: "input_ids" must be a list of integers'],
    [{ id: 't', input_ids: [1, 2] }, 'sample t: "labels" must be a list of integers'],
    [{ id: 't', image: 'example.jpg', input_ids: [IMG, 5, IMG, 6], labels: [I, 5, I, 6] }, 'sample t: 2 <image> positions (the release supports one image per sample)'],
  ];
  for (const [sample, message] of cases) {
    p = one(sample);
    await rejectsWith(load(p), `${p.data}: ${message}`);
  }

  p = writeCase({ id: 1 });
  await rejectsWith(load(p), `${p.data}: expected a JSON list of samples`);
  p = writeCase('[{"id": 1,');
  await assert.rejects(load(p), (e: unknown) => e instanceof InputError && e.message.startsWith(`${p.data}: not valid JSON (`));
  const missing = join(p.dir, 'absent.json');
  await rejectsWith(load({ data: missing }), `${missing}: cannot read training data: no such file`);
  await rejectsWith(load({ data: p.dir }), `${p.dir}: cannot read training data: is a directory`);
  p = writeCase([], 'not a list');
  await rejectsWith(load(p), `${p.boxes}: expected a JSON list of {id, boxes, labels, scores}`);
});

test('a box file may also be an object keyed by id', async () => {
  const p = writeCase([{ id: 17, image: 'example.jpg', conversations: [Q_IMAGE, A_CAT] }], { 17: BOX_17 });
  const { samples } = await load(p);
  assert.deepEqual(samples[0]!.detections?.labels, ['cat', 'cat']);
});

test('collate: right padding with id 0 and label -100, -200 kept, lengths', () => {
  const sample = (id: string, inputIds: number[], labels: number[]): TrainSample => ({ id, boxOptions: {}, inputIds, labels });
  const a = sample('a', [1, IMG, 5, 6, 2], [I, I, I, 6, 2]);
  const b = sample('b', [1, 7, 2], [I, 7, 2]);
  const batch = collate([a, b]);
  assert.equal(PAD_TOKEN_INDEX, 0);
  assert.deepEqual(batch.inputIds, [[1, IMG, 5, 6, 2], [1, 7, 2, 0, 0]]);
  assert.deepEqual(batch.labels, [[I, I, I, 6, 2], [I, 7, 2, I, I]]);
  assert.deepEqual(batch.lengths, [5, 3]);
  assert.deepEqual(batch.samples, [a, b]);
  // The rows are copies: padding never touches the samples.
  assert.deepEqual(b.inputIds, [1, 7, 2]);
  assert.deepEqual(collate([b]).inputIds, [[1, 7, 2]]);
  assert.throws(() => collate([]));
});
