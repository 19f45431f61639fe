// The release's box pipeline against fixture case B, plus the rules it is made of.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BoxGeometry,
  BoxSet,
  Detections,
  capPerLabel,
  nmsPerLabel,
  detectionsFromObject,
  parseBoxJson,
  prepareBoxes,
  releasePerLabel,
  roundHalfEven,
  shiftBoxes,
  toCropSpace,
} from '../../src/preprocess/boxes.js';
import { readBoxFile } from '../../src/preprocess/box-file.js';
import { InputError } from '../../src/core/errors.js';
import { TINY, casesJson, fixture } from '../helpers/fixtures.js';

// example.jpg is 640x514: padded to 640x640 with the image at y offset 63.
const B_GEOM: BoxGeometry = { padX: 0, padY: 63, paddedWidth: 640, paddedHeight: 640, size: 768 };

function det(boxes: number[][], labels: string[], scores: number[]): Detections {
  return { boxes: Float64Array.from(boxes.flat()), labels, scores: Float64Array.from(scores) };
}
function set(boxes: number[][], labels: string[], scores: number[]): BoxSet {
  return { boxes: Float32Array.from(boxes.flat()), labels, scores: Float32Array.from(scores) };
}
function rows(b: Float32Array): number[][] {
  return Array.from({ length: b.length / 4 }, (_, i) => [...b.subarray(4 * i, 4 * i + 4)]);
}

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mgllava-boxes-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('case B: NMS, cap and final boxes equal the fixture exactly', async () => {
  const json = casesJson();
  const raw = await readBoxFile(join(TINY, 'boxes_raw.json'));
  assert.equal(raw.labels.length, 150);

  const nms = nmsPerLabel(shiftBoxes(raw, B_GEOM.padX, B_GEOM.padY));
  assert.deepEqual([...nms.boxes], [...fixture('B.nms_boxes').data]);
  assert.deepEqual([...nms.scores], [...fixture('B.nms_scores').data]);
  assert.deepEqual(nms.labels, json['B.nms_labels']);

  const capped = capPerLabel(nms, 100);
  assert.deepEqual([...capped.boxes], [...fixture('B.capped_boxes').data]);
  assert.deepEqual(capped.labels, json['B.capped_labels']);

  const final = prepareBoxes(raw, B_GEOM);
  assert.equal(final.placeholder, false);
  assert.equal(final.count, 97);
  assert.deepEqual([...final.boxes], [...fixture('B.final_boxes').data]);
  assert.deepEqual(final.labels, json['B.final_labels']);
  assert.equal(final.scores.length, 97);
});

test('NMS: torchvision IoU (no +1), float32 IoU > 0.2 suppresses, per label, by score', () => {
  // vs [0,0,10,10]: [0,0,10,1.9] has IoU 0.19 -> kept (with +1 areas it would be 0.26);
  // [0,0,10,3] has 0.3 -> suppressed. Other labels never suppress each other.
  const s = set(
    [
      [0, 0, 10, 1.9],
      [0, 0, 10, 10],
      [0, 0, 10, 3],
      [0, 0, 10, 10],
    ],
    ['a', 'a', 'a', 'b'],
    [0.5, 0.9, 0.7, 0.8],
  );
  const r = nmsPerLabel(s);
  assert.deepEqual(rows(r.boxes), [
    [0, 0, 10, 10],
    [0, 0, 10, 10],
    [0, 0, 10, Math.fround(1.9)],
  ]);
  assert.deepEqual(r.labels, ['a', 'b', 'a']);
  assert.deepEqual([...r.scores], [0.9, 0.8, 0.5].map(Math.fround));
  // An IoU of exactly 0.2 is float32(0.2) = 0.20000000298 in torchvision's float32 arithmetic,
  // which is > 0.2 as a double: suppressed.
  const t = nmsPerLabel(set([[0, 0, 10, 10], [0, 0, 10, 2]], ['a', 'a'], [0.9, 0.5]));
  assert.equal(t.labels.length, 1);
});

test('cap: only above the limit; top-k per label, labels in order of first appearance', () => {
  const s = set(
    Array.from({ length: 7 }, (_, i) => [i, i, i + 1, i + 1]),
    ['x', 'y', 'x', 'x', 'y', 'z', 'x'],
    [0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4],
  );
  assert.equal(capPerLabel(s, 7, 2), s);
  const r = capPerLabel(s, 6, 2);
  assert.deepEqual(r.labels, ['x', 'x', 'y', 'y', 'z']);
  assert.deepEqual(rows(r.boxes).map((b) => b[0]), [0, 2, 1, 4, 5]);
  assert.equal(releasePerLabel(100), 20);
  assert.equal(releasePerLabel(30), 5);
});

test('round half to even (torch.round)', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, 284.4, 284.6, 2.5000001].map(roundHalfEven), [0, 2, 2, 4, 0, -2, 284, 285, 3]);
});

test('scaling is float32 then half-to-even', () => {
  // Side 512 -> scale 1.5: 3 -> 4.5 -> 4 (Math.round would give 5), 5 -> 7.5 -> 8.
  const g: BoxGeometry = { padX: 0, padY: 0, paddedWidth: 512, paddedHeight: 512, size: 768 };
  assert.deepEqual([...toCropSpace(set([[3, 3, 5, 5]], ['a'], [1]), g).boxes], [4, 4, 8, 8]);
  // Side 640 -> scale 1.2: 23.75 * float32(1.2) = 28.500002 in float32 -> 29 (float64 gives 28.5 -> 28).
  const g2: BoxGeometry = { padX: 0, padY: 0, paddedWidth: 640, paddedHeight: 640, size: 768 };
  assert.equal(toCropSpace(set([[23.75, 0, 30, 30]], ['a'], [1]), g2).boxes[0], 29);
});

test('crop offset, clamping, dropping, and the zero-box placeholder', () => {
  // Not padded, 1000x500 with S = 100: scale 0.2, resized 200x100, crop starts at x = 50.
  const g: BoxGeometry = { padX: 0, padY: 0, paddedWidth: 1000, paddedHeight: 500, size: 100 };
  const r = toCropSpace(
    set(
      [
        [0, 0, 100, 100], // x 0..20 -> -50..-30: wholly left, dropped
        [200, 0, 600, 500], // x 40..120 -> -10..70 -> clamped to 0..70
        [250, 0, 250, 10], // x1 - start = 0: degenerate but kept (release keeps it)
        [900, 0, 1000, 500], // x 180..200 -> 130..150 -> x0 > S: dropped
      ],
      ['a', 'b', 'c', 'd'],
      [1, 0.9, 0.8, 0.7],
    ),
    g,
  );
  assert.deepEqual(rows(r.boxes), [
    [0, 0, 70, 100],
    [0, 0, 0, 2],
  ]);
  assert.deepEqual(r.labels, ['b', 'c']);

  const none = toCropSpace(set([[0, 0, 100, 100]], ['a'], [1]), g);
  assert.equal(none.placeholder, true);
  assert.equal(none.count, 1);
  assert.deepEqual([...none.boxes], [0, 0, 0, 0]);
  assert.deepEqual(none.labels, ['']);

  const empty = prepareBoxes(det([], [], []), g);
  assert.equal(empty.placeholder, true);
  assert.deepEqual([...empty.boxes], [0, 0, 0, 0]);
});

test("the release's resized-size truncation (side 47, S 768) shifts boxes by one pixel", () => {
  // int(47 * (768 / 47)) = 767 in float64, so the release's crop start is (767 - 768) // 2 = -1.
  const g: BoxGeometry = { padX: 0, padY: 0, paddedWidth: 47, paddedHeight: 47, size: 768 };
  assert.deepEqual([...toCropSpace(set([[0, 0, 47, 47]], ['a'], [1]), g).boxes], [1, 1, 768, 768]);
});

test('padding shift happens in float64 before float32 rounding', () => {
  const s = shiftBoxes(det([[0.1, 16777216.4, 1, 16777217]], ['a'], [0.5]), 0, 1);
  assert.deepEqual([...s.boxes], [Math.fround(0.1), Math.fround(16777217.4), 1, Math.fround(16777218)]);
});

function expectBad(text: string, re: RegExp): void {
  assert.throws(
    () => parseBoxJson(text, 'dets.json'),
    (e: unknown) => e instanceof InputError && e.subject === 'dets.json' && e.message.startsWith('dets.json: ') && re.test(e.message),
  );
}

test('box JSON validation names the file and the problem', async () => {
  expectBad('{"boxes": [', /not valid JSON/);
  expectBad('[1, 2]', /expected an object/);
  expectBad('{"boxes": [], "labels": []}', /"scores" must be an array/);
  expectBad('{"boxes": [[0,0,1,1]], "labels": ["a", "b"], "scores": [1]}', /1 boxes but 2 labels and 1 scores/);
  expectBad('{"boxes": [[0,0,1]], "labels": ["a"], "scores": [1]}', /boxes\[0\] must be \[x0, y0, x1, y1\]/);
  expectBad('{"boxes": [[0,"0",1,1]], "labels": ["a"], "scores": [1]}', /boxes\[0\]\[1\] is not a number: "0"/);
  expectBad('{"boxes": [[0,0,1,null]], "labels": ["a"], "scores": [1]}', /boxes\[0\]\[3\] is not a number/);
  expectBad('{"boxes": [[5,0,1,1]], "labels": ["a"], "scores": [1]}', /x1 < x0/);
  expectBad('{"boxes": [[0,0,1,1]], "labels": [3], "scores": [1]}', /labels\[0\] is not a string/);
  expectBad('{"boxes": [[0,0,1,1]], "labels": ["a"], "scores": ["high"]}', /scores\[0\] is not a number/);

  const ok = parseBoxJson('{"boxes": [[1.5, 2, 3, 4]], "labels": ["cat"], "scores": [0.25]}', 'dets.json');
  assert.deepEqual([...ok.boxes], [1.5, 2, 3, 4]);

  const parsed = detectionsFromObject({ boxes: [[1.5, 2, 3, 4]], labels: ['cat'], scores: [0.25] }, 'request');
  assert.deepEqual([...parsed.boxes], [1.5, 2, 3, 4]);
  assert.throws(() => detectionsFromObject({ boxes: [[0, 0, 1]], labels: ['a'], scores: [1] }, 'request'), /^InputError: request: boxes\[0\] must be/);

  const missing = join(dir, 'missing.json');
  await assert.rejects(readBoxFile(missing), (e: unknown) => e instanceof InputError && e.subject === missing && /no such file/.test(e.message));
  const bad = join(dir, 'bad.json');
  await writeFile(bad, '{"boxes": 1}');
  await assert.rejects(readBoxFile(bad), (e: unknown) => e instanceof InputError && e.message.startsWith(`${bad}: `));
});

test('prepareBoxes refuses detections that would pool nothing (nested, short, not finite)', () => {
  const refuse = (d: unknown, re: RegExp) =>
    assert.throws(() => prepareBoxes(d as Detections, B_GEOM), (e: unknown) => e instanceof InputError && re.test(e.message));
  // The JSON form handed straight in: every coordinate would read as NaN.
  refuse({ boxes: [[0, 0, 10, 10]], labels: ['a'], scores: [1] }, /must be flat.*detectionsFromObject/);
  refuse({ boxes: new Float64Array(3), labels: ['a'], scores: new Float64Array(1) }, /1 labels need 4 box numbers and 1 scores, got 3 and 1/);
  refuse({ boxes: Float64Array.from([0, 0, NaN, 1]), labels: ['a'], scores: new Float64Array(1) }, /box number 2 is not a finite number/);
  refuse({ boxes: new Float64Array(4), labels: ['a'] }, /got 4 and none/);
  // A plain number array of the right length is fine.
  const ok = prepareBoxes({ boxes: [0, 0, 10, 10] as unknown as Float64Array, labels: ['a'], scores: [1] as unknown as Float64Array }, B_GEOM);
  assert.equal(ok.labels.length, 1);
});
