// The official VQA evaluator's normalisation and accuracy against values from vqaEval.py itself
// (run under Python 3 with its two patterns compiled re.ASCII, which is what Python 2's `\d` is),
// side by side with VLMEvalKit's (values from vqa_eval.py `process_line`, numpy mean).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  officialProcessDigitArticle,
  officialProcessPunctuation,
  officialVqaAccuracy,
  officialVqaEvaluate,
} from '../../src/eval/official-vqa.js';
import { pyStrListRepr } from '../../src/eval/llava-jsonl.js';
import { npMean, processAnswer, processLine, processPunctuation } from '../../src/eval/vqa.js';

const vlmScore = (gt: readonly string[], pred: string): number => npMean(processLine(pyStrListRepr(gt), pred, 'vqa_score').match);

test('processPunctuation: official vs VLMEvalKit', () => {
  // [input, official processPunctuation, VLMEvalKit process_punctuation]
  const v: [string, string, string][] = [
    ['2.', '2', '2.'], // (a) a period after a digit goes in the official rule only
    ['route 66.', 'route 66', 'route 66.'],
    ['3..', '3', '3.'],
    ['٣.٤', '٣٤', '٣.٤'],
    ['x.٤', 'x٤', 'x.٤'], // (c) `(?!\d)` is ASCII in the official code
    ['١,٢ a-b', '١ ٢ a b', '١٢ ab'], // (c) the digit-comma switch is ASCII too
    ['1,000 a-b', '1000 ab', '1000 ab'],
    ['1.5', '1.5', '1.5'],
    ['a.b', 'ab', 'ab'],
    ['yes (maybe)', 'yes maybe ', 'yes maybe '],
    ['(yes)', ' yes ', ' yes '],
    ['a - b', 'a  b', 'a  b'],
    ['a/b', 'a b', 'a b'],
    ['hello...world', 'helloworld', 'helloworld'],
    ['.'.repeat(40), '.'.repeat(8), '.'.repeat(8)], // count=re.UNICODE=32 in both
    ['e.g.', 'eg', 'eg'],
    ['end.', 'end', 'end'],
  ];
  for (const [input, official, vlm] of v) {
    assert.equal(officialProcessPunctuation(input), official, `official ${JSON.stringify(input)}`);
    assert.equal(processPunctuation(input), vlm, `VLMEvalKit ${JSON.stringify(input)}`);
  }
});

test('processDigitArticle: the shared table', () => {
  assert.equal(officialProcessDigitArticle('The Two dogs'), '2 dogs');
  assert.equal(officialProcessDigitArticle('None of an apple'), '0 of apple');
  assert.equal(officialProcessDigitArticle('dont   wont'), "don't won't");
  assert.equal(officialProcessDigitArticle('Im somebody\'d'), 'im somebodyd');
  assert.equal(officialProcessDigitArticle(''), '');
  // a processed VLMEvalKit answer is processPunctuation then this
  assert.equal(processAnswer(' The two.'), officialProcessDigitArticle(processPunctuation('The two.')));
});

test('officialVqaAccuracy: values of vqaEval.py, and where VLMEvalKit differs', () => {
  const ten = (a: string): string[] => Array(10).fill(a);
  // [answers, prediction, official, VLMEvalKit]
  const v: [string[], string, number, number][] = [
    // (b) unanimous answers: nothing is normalised
    [ten('yes'), 'Yes', 0, 1],
    [ten('yes'), 'yes.', 0, 1],
    [ten('yes'), 'the yes', 0, 1],
    [ten('yes'), ' yes\n', 1, 1],
    [ten('yes'), 'yes', 1, 1],
    [ten('a b'), 'a  b', 0, 1],
    // (a) period after a digit
    [[...Array(9).fill('2'), 'two'], '2.', 1, 0],
    [[...Array(9).fill('2'), 'two'], '2', 1, 1],
    [[...Array(9).fill('2'), 'two'], 'Two', 1, 1],
    // (d) sum()/len vs np.mean
    [['a', 'b', 'c', 'd', 'e', 'f', 'g', 'yes', 'yes', 'yes'], 'yes', 0.9, 0.8999999999999998],
    [['yes', 'yes', 'yes', 'd', 'e', 'f', 'g', 'h', 'i', 'j'], 'yes', 0.9, 0.9],
    [['red', 'red', ...Array(8).fill('blue')], 'red', 0.6, 0.6],
    [['Red.', ...Array(9).fill('red')], 'RED', 1, 1],
    // (c) digits
    [[...Array(5).fill('١,٢ a-b'), ...Array(5).fill('x')], '١٢ ab', 0, 1],
    [[...Array(5).fill('١,٢ a-b'), ...Array(5).fill('x')], '١ ٢ b', 1, 0],
    [[...Array(4).fill('x.٤'), ...Array(6).fill('y')], 'x٤', 1, 0],
    [['none', '0', 'zero', 'nothing', '0', '0', '0 ', 'None', 'no', '0'], 'none', 1, 1],
    [['dont', "don't", 'do not', 'dont', 'dont', 'no', 'no', 'no', 'dont', 'dont'], 'dont', 1, 1],
  ];
  for (const [gt, pred, official, vlm] of v) {
    assert.equal(officialVqaAccuracy(gt, pred), official, `official ${JSON.stringify(pred)} vs ${JSON.stringify(gt)}`);
    assert.equal(vlmScore(gt, pred), vlm, `VLMEvalKit ${JSON.stringify(pred)} vs ${JSON.stringify(gt)}`);
  }
  assert.throws(() => officialVqaAccuracy([], 'x'));
});

test('officialVqaEvaluate: overall and per-type means x100', () => {
  const ten = (a: string): string[] => Array(10).fill(a);
  const r = officialVqaEvaluate([
    { gtAnswers: ten('yes'), pred: 'yes', questionType: 'is the', answerType: 'yes/no' },
    { gtAnswers: ten('no'), pred: 'yes', questionType: 'is the', answerType: 'yes/no' },
    { gtAnswers: ['red', 'red', ...Array(8).fill('blue')], pred: 'red', questionType: 'what color', answerType: 'other' },
  ]);
  assert.deepEqual(r.perQuestion, [1, 0, 0.6]);
  assert.equal(r.overall, (100 * 1.6) / 3);
  assert.deepEqual(r.perQuestionType, { 'is the': 50, 'what color': 60 });
  assert.deepEqual(r.perAnswerType, { 'yes/no': 50, other: 60 });
});
