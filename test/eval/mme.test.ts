// VLMEvalKit's MME rating (rule path) against values from its own YOrN_Extraction and MME_rating
// (vlmeval/dataset/utils/yorn.py at e8e78f05, run on these rows; for the three-category fixture
// with the one line `base += scores[c]` made `scores.get(c, 0)`, since the original stops with a
// KeyError when a category is missing).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { InputError } from '../../src/core/errors.js';
import { evaluateMme, MME_SUPER_CATEGORIES, mmeRating, type MmeInputRow } from '../../src/eval/mme.js';
import { readTsv } from '../../src/eval/tsv.js';

const DIR = join(ROOT, 'fixtures', 'eval', 'llava');

function fixtureRows(): MmeInputRow[] {
  const t = readTsv(join(DIR, 'mme.tsv'));
  return Array.from({ length: t.length }, (_, r) => ({
    index: t.get(r, 'index') as number,
    category: t.str(r, 'category'),
    image_path: t.isNa(r, 'image_path') ? null : t.str(r, 'image_path'),
    answer: t.str(r, 'answer'),
    prediction: t.str(r, 'prediction'), // an empty cell is NaN, scored as the text `nan`
  }));
}

test('MME: extraction and scores per row', () => {
  const { rows } = evaluateMme(fixtureRows(), { partial: true });
  assert.deepEqual(rows.map((r) => r.extracted), ['Yes', 'No', 'Unknown', 'Yes', 'Yes', 'No', 'Yes', 'Yes', 'Unknown', 'No', 'Yes', 'Unknown']);
  assert.deepEqual(rows.map((r) => r.score), [true, true, false, true, true, true, true, false, false, true, true, false]);
  assert.equal(rows[8]!.prediction, 'nan');
});

test('MME: the rating of a three-category table (partial)', () => {
  const { rating } = evaluateMme(fixtureRows(), { partial: true });
  // columns: the two sums, then categories in order of first appearance
  assert.deepEqual(rating.columns, ['perception', 'reasoning', 'color', 'code_reasoning', 'OCR']);
  assert.deepEqual(rating.rows, [{ perception: 175, reasoning: 125, color: 125, code_reasoning: 125, OCR: 50 }]);
  assert.deepEqual(
    rating.categories.map((c) => [c.category, c.questions, c.images, c.acc, c.accPlus, c.score]),
    [
      ['color', 4, 2, 75, 50, 125],
      ['code_reasoning', 4, 2, 75, 50, 125],
      ['OCR', 4, 2, 50, 0, 50],
    ],
  );
  assert.equal(rating.perception, 175);
  assert.equal(rating.reasoning, 125);
  assert.deepEqual(rating.missing, [
    'artwork', 'celebrity', 'count', 'existence', 'landmark', 'position', 'posters', 'scene',
    'commonsense_reasoning', 'numerical_calculation', 'text_translation',
  ]);
  assert.deepEqual(rating.incompleteImages, []);
});

test('MME: strict rating fails where VLMEvalKit fails', () => {
  assert.throws(() => evaluateMme(fixtureRows()), (e: unknown) => e instanceof InputError && /no rows of category artwork/.test(e.message));
  const one = fixtureRows().slice(0, 3); // the second color image has one question
  assert.throws(() => evaluateMme(one), (e: unknown) => e instanceof InputError && /image color\/000000015254\.jpg \(category color\) has 1 question/.test(e.message));
  const r = evaluateMme(one, { partial: true }).rating;
  assert.deepEqual(r.incompleteImages, [{ category: 'color', image_path: 'color/000000015254.jpg' }]);
  assert.deepEqual(r.categories.map((c) => [c.acc, c.accPlus]), [[(2 / 3) * 100, 100]]);
  assert.throws(() => mmeRating([{ category: null, image_path: 'x', score: true }]), InputError);
});

test('MME: all 14 categories (strict), values of VLMEvalKit MME_rating', () => {
  const cats = [...MME_SUPER_CATEGORIES.perception, ...MME_SUPER_CATEGORIES.reasoning].reverse();
  const rows: MmeInputRow[] = [];
  cats.forEach((c, k) => {
    for (let im = 0; im < 2; im++) {
      for (let q = 0; q < 2; q++) {
        const answer = q === 0 ? 'Yes' : 'No';
        const wrong = (k % 3 === 0 && im === 1 && q === 1) || (k % 3 === 1 && q === 0);
        rows.push({ index: rows.length, category: c, image_path: `${c}/${im}.jpg`, answer, prediction: wrong ? (answer === 'Yes' ? 'No' : 'Yes') : answer });
      }
    }
  });
  const { rating } = evaluateMme(rows);
  const want: Record<string, number> = {
    perception: 1175, reasoning: 500, text_translation: 125, numerical_calculation: 50, commonsense_reasoning: 200,
    code_reasoning: 125, scene: 50, posters: 200, position: 125, landmark: 50, existence: 200, count: 125, color: 50,
    celebrity: 200, artwork: 125, OCR: 50,
  };
  assert.deepEqual(rating.columns, Object.keys(want));
  assert.deepEqual(rating.rows, [want]);
  assert.deepEqual(rating.missing, []);
});

test('MME_rating: only an image\'s first two questions enter acc_plus; NaN image paths stand alone', () => {
  const r = mmeRating([
    { category: 'color', image_path: 'a', score: true },
    { category: 'color', image_path: 'a', score: true },
    { category: 'color', image_path: 'a', score: false },
    { category: 'color', image_path: null, score: true },
    { category: 'color', image_path: null, score: true },
  ], { partial: true });
  assert.deepEqual(r.categories.map((c) => [c.questions, c.images, c.acc, c.accPlus]), [[5, 3, 80, 100]]);
  assert.deepEqual(r.incompleteImages, [{ category: 'color', image_path: null }, { category: 'color', image_path: null }]);
});
