// OWLv2 against the reference fixtures: case O (model outputs from O.input_ids and the wave input,
// post-processing at O.threshold for a 500 x 500 target, Owlv2ImageProcessor at 240 px) and case
// O2 (the release's box generator end to end on example.jpg), plus the CLIP tokenizer's ids.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY, absErr, fixture, fixtureI64, relErr, wave } from '../helpers/fixtures.js';
import { Owlv2Detector, detectionsJson, toDetections } from '../../src/detect/owlv2.js';
import { owlv2Preprocess } from '../../src/detect/owlv2-image.js';
import { postProcess } from '../../src/detect/post-process.js';
import { promptFor } from '../../src/detect/tags.js';
import { decodeImage } from '../../src/preprocess/decode.js';

const extra = JSON.parse(readFileSync(join(TINY, 'extra_cases.json'), 'utf8')) as Record<string, unknown>;
const PHASE = (JSON.parse(readFileSync(join(TINY, 'cases.json'), 'utf8')) as { phase: number }).phase;
/** Boxes are float32 pixels; ours differ from the reference by float rounding only. */
const BOX_TOL = 1e-3;
const SCORE_TOL = 1e-5;

let detector: Owlv2Detector | undefined;
async function owl(): Promise<Owlv2Detector> {
  detector ??= await Owlv2Detector.load(join(TINY, 'owlv2'));
  return detector;
}
after(async () => detector?.release());

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('the CLIP tokenizer reproduces O.input_ids / O.attention_mask and O2.input_ids (padded to 16)', async () => {
  const d = await owl();
  const o = d.tokenize(extra['O.queries'] as string[]);
  assert.deepEqual(o.ids, extra['O.input_ids']);
  assert.deepEqual(o.attentionMask, extra['O.attention_mask']);
  assert.deepEqual(o.eosIndex, [5, 5, 6]);
  const o2 = d.tokenize((extra['O2.tags'] as string[]).map(promptFor));
  assert.deepEqual(o2.ids, extra['O2.input_ids']);
});

test('case O: logits, objectness_logits and pred_boxes from O.input_ids and the wave input (rel err < 1e-4)', async () => {
  const d = await owl();
  const q = await d.embedTokens(d.tokenize(extra['O.queries'] as string[]));
  const out = await d.run({ dims: [1, 3, 96, 96], data: wave(1, 3, 96, 96, PHASE) }, q);
  assert.deepEqual(out.logits.dims, [1, 36, 3]);
  assert.deepEqual(out.objectnessLogits.dims, [1, 36]);
  assert.deepEqual(out.predBoxes.dims, [1, 36, 4]);
  for (const [ours, ref] of [[out.logits, 'O.logits'], [out.objectnessLogits, 'O.objectness_logits'], [out.predBoxes, 'O.pred_boxes']] as const) {
    const e = relErr(ours.data, fixture(ref).data);
    assert.ok(e < 1e-4, `${ref}: ${e}`);
  }
  // Post-processing on our outputs at O.threshold, target 500 x 500.
  const pp = postProcess({ logits: out.logits.data, predBoxes: out.predBoxes.data, queries: 3 }, extra['O.threshold'] as number, 500);
  assert.deepEqual(Array.from(pp.labels), fixtureI64('O.post_labels'));
  assert.ok(maxDiff(pp.boxes, fixture('O.post_boxes').data) < BOX_TOL, `boxes ${maxDiff(pp.boxes, fixture('O.post_boxes').data)}`);
  assert.ok(maxDiff(pp.scores, fixture('O.post_scores').data) < SCORE_TOL);
});

test('post-processing the reference outputs gives O.post_boxes/scores/labels', () => {
  const pp = postProcess({ logits: fixture('O.logits').data, predBoxes: fixture('O.pred_boxes').data, queries: 3 }, extra['O.threshold'] as number, 500);
  assert.deepEqual(Array.from(pp.labels), fixtureI64('O.post_labels'));
  // Same float32 arithmetic as torch: equal up to the last bit of sigmoid/exp.
  assert.ok(maxDiff(pp.boxes, fixture('O.post_boxes').data) < 1e-4);
  assert.ok(maxDiff(pp.scores, fixture('O.post_scores').data) < 1e-6);
});

test('O.processed_example_240: Owlv2ImageProcessor at 240 px on example.jpg', async () => {
  const d = await owl();
  const img = await decodeImage(join(TINY, 'example.jpg'));
  const ours = owlv2Preprocess(img, { size: 240, mean: d.processor.mean, std: d.processor.std });
  const e = absErr(ours, fixture('O.processed_example_240').data);
  // README tolerance for preprocessing: max 0.03, mean 0.003; this reproduces it to float rounding.
  assert.ok(e.max < 2e-4 && e.mean < 1e-5, JSON.stringify(e));
});

test('case O2 end to end: example.jpg, O2.tags at O2.threshold -> O2.pixel_values, O2.boxes/scores/labels', async () => {
  const d = await owl();
  const img = await decodeImage(join(TINY, 'example.jpg'));
  const e = absErr(d.preprocess(img).data, fixture('O2.pixel_values').data);
  assert.ok(e.max < 1e-4 && e.mean < 1e-5, JSON.stringify(e));
  const r = await d.detect(img, extra['O2.tags'] as string[], { threshold: extra['O2.threshold'] as number });
  const ref = { boxes: (extra['O2.boxes'] as number[][]).flat(), scores: extra['O2.scores'] as number[], labels: extra['O2.labels'] as string[] };
  assert.deepEqual(r.labels, ref.labels);
  assert.ok(maxDiff(r.boxes, ref.boxes) < BOX_TOL, `boxes differ by ${maxDiff(r.boxes, ref.boxes)}`);
  assert.ok(maxDiff(r.scores, ref.scores) < SCORE_TOL, `scores differ by ${maxDiff(r.scores, ref.scores)}`);
  // The release's JSON: integer boxes (boxes.int()), scores and tag labels.
  const j = detectionsJson(r, true);
  assert.deepEqual(j.boxes, (extra['O2.boxes'] as number[][]).map((b) => b.map(Math.trunc)));
  assert.deepEqual(Array.from(toDetections(r).boxes), j.boxes.flat());
});

test('the default threshold is the release\'s 0.2 and a higher one keeps a subset', async () => {
  const d = await owl();
  const img = await decodeImage(join(TINY, 'example.jpg'));
  const tags = extra['O2.tags'] as string[];
  const all = await d.detect(img, tags);
  assert.equal(all.threshold, 0.2);
  assert.ok(all.scores.every((s) => s > 0.2));
  const hi = await d.detect(img, tags, { threshold: extra['O2.threshold'] as number });
  assert.ok(hi.labels.length <= all.labels.length);
  // Query embeddings are cached per prompt: a second run with a reordered list gives the same boxes, labels swapped.
  const rev = await d.detect(img, [...tags].reverse(), { threshold: extra['O2.threshold'] as number });
  assert.deepEqual(rev.labels, hi.labels);
  assert.ok(maxDiff(rev.boxes, hi.boxes) === 0);
});
