// VLMEvalKit's open-answer scoring against fixtures/eval (vectors.json and the VQA expected files).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import {
  anlsCompute, anlsHit, answerList, evaluateVqa, mmfProcessAnswer, mmfTextVqaAccuracy, npMean, processAnswer,
  processLine, processPunctuation, pyFloat, relaxedCorrectness, vqaMethodFor,
} from '../../src/eval/vqa.js';

const EVAL = join(ROOT, 'fixtures', 'eval');
const load = (name: string): any => JSON.parse(readFileSync(join(EVAL, name), 'utf8'));
const TOL = 1e-9;

function close(a: number, b: number, what: string): void {
  if (Number.isNaN(b)) assert.ok(Number.isNaN(a), what);
  else assert.ok(Math.abs(a - b) <= TOL, `${what}: ${a} vs ${b}`);
}

test('process_answer, process_punctuation and MMF EvalAI vectors', () => {
  const v = load('vectors.json').process_answer as { input: string; output: string; punctuation_only: string; mmf_evalai: string }[];
  assert.equal(v.length, 42);
  for (const x of v) {
    assert.equal(processAnswer(x.input), x.output, `process_answer ${JSON.stringify(x.input)}`);
    assert.equal(processPunctuation(x.input), x.punctuation_only, `process_punctuation ${JSON.stringify(x.input)}`);
    assert.equal(mmfProcessAnswer(x.input), x.mmf_evalai, `mmf ${JSON.stringify(x.input)}`);
  }
});

test('process_punctuation removes only the first 32 periods (re.UNICODE passed as count)', () => {
  const s = 'a.'.repeat(40);
  assert.equal(processPunctuation(s), 'a'.repeat(32) + 'a.'.repeat(8));
  assert.equal(processPunctuation('3.5 x.'), '3.5 x');
  // Unicode digits count as \d
  assert.equal(processPunctuation('٣,٤'), '٣٤');
});

test('anls vectors', () => {
  const v = load('vectors.json').anls as { groundtruth: string; prediction: string; distance: number; anls: number }[];
  assert.equal(v.length, 14);
  for (const x of v) {
    const d = anlsCompute(x.groundtruth, x.prediction);
    close(d, x.distance, `distance ${x.groundtruth}/${x.prediction}`);
    close(anlsHit([d]), x.anls, `anls ${x.groundtruth}/${x.prediction}`);
  }
});

test('relaxed_correctness vectors and Python float()', () => {
  const v = load('vectors.json').relaxed_correctness as { target: string; prediction: string; correct: boolean }[];
  assert.equal(v.length, 19);
  for (const x of v) assert.equal(relaxedCorrectness(x.target, x.prediction), x.correct, `${x.target} vs ${x.prediction}`);
  assert.equal(pyFloat(' 1_000.5e1 '), 10005);
  assert.equal(pyFloat('1__0'), null);
  assert.equal(pyFloat('_1'), null);
  assert.equal(pyFloat('-Infinity'), -Infinity);
  assert.ok(Number.isNaN(pyFloat('NaN')!));
  assert.equal(pyFloat('.5'), 0.5);
  assert.equal(pyFloat('5.'), 5);
  assert.equal(pyFloat('0x10'), null);
  assert.equal(pyFloat('١٢'), 12);
  assert.equal(pyFloat(''), null);
});

test('answer cells: Python list literals and plain strings', () => {
  assert.deepEqual(answerList("['a', \"it's\", 'x\\'y']"), ['a', "it's", "x'y"]);
  assert.deepEqual(answerList('Total amount'), ['Total amount']);
  assert.deepEqual(answerList('12.5'), ['12.5']);
  assert.deepEqual(answerList('[]'), []);
  assert.deepEqual(answerList("['a',]"), ['a']);
});

test('np.mean sums pairwise', () => {
  const a = Array.from({ length: 10 }, () => 0.1);
  let seq = 0;
  for (const x of a) seq += x;
  assert.equal(seq, 0.9999999999999999);
  assert.equal(npMean(a), 0.1);
  assert.ok(Number.isNaN(npMean([])));
});

type Row = {
  index: number; answer: string; prediction_cell: string; prediction: string; eval_gt: string[]; eval_pred: string;
  eval_match: (number | boolean)[]; eval_score: number; hit: number; split?: string; category?: string;
  mmf_gt?: string[]; mmf_pred?: string; mmf_score?: number; vqa_score_if_cell_read_as_text?: number;
};

function checkDataset(file: string): void {
  const exp = load(file);
  const rows = exp.rows as Row[];
  assert.equal(vqaMethodFor(exp.dataset_name), exp.method);
  const input = rows.map((r) => ({
    answer: r.answer,
    prediction: r.prediction,
    ...(r.split !== undefined ? { split: r.split } : {}),
    ...(r.category !== undefined ? { category: r.category } : {}),
  }));
  const ev = evaluateVqa(input, exp.dataset_name);
  assert.equal(ev.method, exp.method);
  ev.rows.forEach((got, i) => {
    const r = rows[i]!;
    const w = `${file} row ${r.index}`;
    assert.deepEqual(got.gt, r.eval_gt, `${w} eval_gt`);
    assert.equal(got.pred, r.eval_pred, `${w} eval_pred`);
    assert.equal(got.match.length, r.eval_match.length, `${w} eval_match length`);
    got.match.forEach((m, k) => {
      const e = r.eval_match[k]!;
      if (typeof e === 'boolean') assert.equal(m, e, `${w} eval_match[${k}]`);
      else close(Number(m), e, `${w} eval_match[${k}]`);
    });
    close(got.score, r.eval_score, `${w} eval_score`);
    close(got.hit, r.hit, `${w} hit`);
  });
  assert.deepEqual(ev.accColumns, exp.acc_file_columns);
  for (const k of exp.acc_file_columns as string[]) close(ev.acc[k]!, exp.acc[k], `${file} acc ${k}`);
}

test('TextVQA_VAL: vqa_score rows and table', () => checkDataset('textvqa_expected.json'));
test('DocVQA_VAL: anls rows and table', () => checkDataset('docvqa_expected.json'));
test('GQA_TestDev_Balanced: exact accuracy, Overall then categories', () => checkDataset('gqa_expected.json'));
test('ChartQA_TEST: relaxed accuracy, splits then Overall', () => checkDataset('chartqa_expected.json'));

test('TextVQA: MMF official accuracy from the raw cells', () => {
  const exp = load('textvqa_expected.json');
  const rows = exp.rows as Row[];
  const mmf = mmfTextVqaAccuracy(rows.map((r) => ({ gtAnswers: answerList(r.answer), predAnswer: r.prediction_cell })));
  mmf.rows.forEach((got, i) => {
    const r = rows[i]!;
    assert.deepEqual(got.gt, r.mmf_gt, `row ${r.index} mmf_gt`);
    assert.equal(got.pred, r.mmf_pred, `row ${r.index} mmf_pred`);
    close(got.score, r.mmf_score!, `row ${r.index} mmf_score`);
  });
  close(mmf.accuracy, exp.mmf_accuracy, 'mmf_accuracy');
  // row 11 differs in the last bit: Python sum against np.mean
  assert.equal(mmf.rows[11]!.score, rows[11]!.mmf_score);
  for (const r of rows) {
    if (r.vqa_score_if_cell_read_as_text === undefined) continue;
    const m = processLine(r.answer, r.prediction_cell, 'vqa_score').match;
    close(npMean(m), r.vqa_score_if_cell_read_as_text, `row ${r.index} as text`);
  }
});

test('ANLS: best answer counts, threshold is inclusive at 0.5 and configurable', () => {
  const r = processLine("['1/2', '0.5']", '0.50', 'anls');
  assert.deepEqual(r.match.map(Number), [1, 0.25]);
  assert.equal(anlsHit(r.match.map(Number)), 0.75);
  assert.equal(anlsHit([0.75, 0.25]), 0.75);
  assert.equal(anlsHit([0.5]), 0.5);
  assert.equal(anlsHit([0.3], 0.8), 0);
  const ev = evaluateVqa([{ answer: "['abc']", prediction: 'abd' }], 'DocVQA_VAL', 0.7);
  assert.equal(ev.rows[0]!.hit, 0);
  assert.deepEqual(ev.acc, { Overall: 0 });
});
