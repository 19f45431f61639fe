// VLMEvalKit's yes/no extraction and POPE table against fixtures/eval.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { defaultYornRating, evaluatePope, popeRating, scoreYorn, yornExtraction } from '../../src/eval/pope.js';

const EVAL = join(ROOT, 'fixtures', 'eval');
const load = (name: string): any => JSON.parse(readFileSync(join(EVAL, name), 'utf8'));

function close(a: number, b: number, what: string): void {
  assert.ok(Math.abs(a - b) <= 1e-9, `${what}: ${a} vs ${b}`);
}

test('YOrN_Extraction vectors', () => {
  const v = load('vectors.json').yorn as { input: string; output: string }[];
  assert.equal(v.length, 27);
  for (const x of v) assert.equal(yornExtraction(x.input), x.output, JSON.stringify(x.input));
});

type Row = { index: number; answer: string; category: string; prediction_cell: string; prediction: string; extracted: string; score: boolean };

test('POPE: rows and POPE_rating table', () => {
  const exp = load('pope_expected.json');
  const rows = exp.rows as Row[];
  const ev = evaluatePope(rows.map((r) => ({ index: r.index, answer: r.answer, prediction: r.prediction, category: r.category })));
  ev.rows.forEach((got, i) => {
    assert.equal(got.extracted, rows[i]!.extracted, `row ${rows[i]!.index} extracted`);
    assert.equal(got.score, rows[i]!.score, `row ${rows[i]!.index} score`);
  });
  assert.deepEqual(ev.rating.columns, exp.pope_rating.columns);
  const want = exp.pope_rating.rows as Record<string, number | string>[];
  assert.deepEqual(ev.rating.rows.map((r) => r.split), want.map((r) => r.split));
  ev.rating.rows.forEach((got, i) => {
    for (const k of ['Overall', 'acc', 'precision', 'recall'] as const) close(got[k], want[i]![k] as number, `${got.split} ${k}`);
  });
});

test('POPE_rating: F1 0 when precision+recall is 0, NA category only in Overall', () => {
  const r = popeRating([
    { answer: 'Yes', extracted: 'No', score: false, category: 'a' },
    { answer: 'No', extracted: 'Unknown', score: false, category: null },
  ]);
  assert.deepEqual(r.rows.map((x) => x.split), ['Overall', 'a']);
  assert.equal(r.rows[0]!.Overall, 0);
  assert.equal(r.rows[0]!.acc, 0);
});

test('default_rating: Overall, categories, l2-categories', () => {
  const s = scoreYorn([
    { index: 1, answer: 'Yes', prediction: 'yes', category: 'b', 'l2-category': 'x' },
    { index: 2, answer: 'No', prediction: 'yes', category: 'a', 'l2-category': 'x' },
  ]);
  assert.deepEqual(defaultYornRating(s), { Overall: 50, a: 0, b: 100, x: 50 });
});
