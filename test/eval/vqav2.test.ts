// The EvalAI answer processor and the VQAv2 upload file, against values from the release's own
// EvalAIAnswerProcessor (xtuner/dataset/evaluation/vqav2_utils.py, run under Python 3) and
// `json.dump` of the release's `all_answers`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { InputError } from '../../src/core/errors.js';
import { readVqav2Jsonl } from '../../src/eval/llava-jsonl.js';
import { evalAiAnswer, formatVqav2Upload, pyJsonDumps, readVqav2TestSplit, vqav2UploadFile } from '../../src/eval/vqav2.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

const DIR = join(ROOT, 'fixtures', 'eval', 'llava');

// [input, EvalAIAnswerProcessor()(input)]
const VECTORS: [string, string][] = [
  ["Yes.", "yes"],
  ["The answer is 2.", "answer is 2"],
  ["It's John's dog", "it 's john 's dog"],
  ["3.5 meters.", "3.5 meters"],
  ["1,000", "1000"],
  ["a-b", "b"],
  ["a - b", "b"],
  ["None of the above", "0 of above"],
  ["an apple", "apple"],
  ["dont", "don't"],
  ["Don't", "don't"],
  ["hello...world", "helloworld"],
  ["........................................x", "........x"],
  ["what?!", "what"],
  ["\tYes\n", "yes"],
  ["Two dogs", "2 dogs"],
  ["Im", "im"],
  ["(yes)", "yes"],
  ["yes (maybe)", "yes maybe"],
  ["x.5", "x.5"],
  ["5.", "5"],
  ["\u00c9COLE", "\u00e9cole"],
  ["\u00a0yes\u00a0", "yes"],
  ["yes\u2028no", "yes no"],
  ["the", ""],
  ["", ""],
  ["A", ""],
  ["ten", "10"],
  ["e.g. this", "eg this"],
  ["$1,50", "$150"],
  ["'s", "'s"],
  ["Let's go", "let 's go"],
  ["somebody'd", "somebodyd"],
  ["yall'll", "y'all'll"],
  ["@home", "home"],
  ["a@ b", "b"],
  ["1/2", "1 2"],
  ["1 / 2", "1 2"],
  ["re: yes", "re: yes"],
  ["yes,no", "yesno"],
  ["Yes, it is.", "yes it is"],
  ["one.two", "onetwo"],
  ["2.5.", "2.5"],
  ["a\\b", "b"],
  ["x_y", "x y"],
  ["it is `red`", "it is red"],
  ["#1", "#1"],
  ["100%", "100%"],
  ["1.000,5", "1.0005"],
  ["Is it? Yes!", "is it yes"],
  ["\u0660.\u0661", "\u0660.\u0661"],
  ["\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c2"],
  ["a;b; c", "ab c"],
  ["x = y", "x y"],
  ["<b>", "b"],
  ["wheres", "where's"],
  ["whats up", "what's up"],
  ["twas", "'twas"],
  ["no\ttab", "no tab"],
  ["  multiple   spaces  ", "multiple spaces"],
  ["\u0130stanbul", "i\u0307stanbul"],
  ["\u03a3\u0391\u03a3.", "\u03c3\u03b1\u03c2"],
  ["\u01c5", "\u01c6"],
  ["\u1e9e", "\u00df"],
  ["x\u180ey", "x\u180ey"],
  ["a\u200bb", "a\u200bb"],
  ["\u1680yes", "yes"],
  ["yes\u001c", "yes"],
  ["\u0391\u03a3, ok", "\u03b1\u03c2 ok"],
  ["\ud835\udc00", "\ud835\udc00"],
  ["1.\u0662", "1.\u0662"],
  ["end...", "end"],
  ["a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.b", "aaaaaaaaaaaaaaaaaaaab"],
  ["\"quoted\"", "quoted"],
  ["it's", "it 's"],
  ["its", "its"],
  ["hes", "he's"],
  ["I've", "i've"],
  ["he's", "he 's"],
];

test('EvalAIAnswerProcessor vectors', () => {
  assert.equal(VECTORS.length, 79);
  for (const [input, output] of VECTORS) assert.equal(evalAiAnswer(input), output, JSON.stringify(input));
});

test('EvalAI processor: the order of its rules', () => {
  // the article goes after the punctuation turned `a-b` into `a b`
  assert.equal(evalAiAnswer('a-b'), 'b');
  // `'s` is split off before the contraction table could see `let's`
  assert.equal(evalAiAnswer("Let's"), "let 's");
  // the comma is gone before the punctuation step looks for a digit-comma
  assert.equal(evalAiAnswer('1,000 a-b'), '1000 b');
  // a period after a digit goes, one before a digit stays
  assert.equal(evalAiAnswer('5. 2.5'), '5 2.5');
  // number words map before articles drop; `none` is 0
  assert.equal(evalAiAnswer('None'), '0');
});

test('test split ids and the upload file', () => {
  const ids = readVqav2TestSplit(join(DIR, 'vqav2_test2015.jsonl'));
  assert.deepEqual(ids, [262144000, 262144001, 262144002, 262144003, 262144005, 5]);
  const dev = readVqav2Jsonl(join(DIR, 'vqav2_test-dev2015.jsonl'), { images: '/coco/test2015' });
  assert.equal(dev.table.length, 4);
  const raw = ['Yes.', 'The ÉCOLE "x"', 'a\\b\x7f', '😀 two'];
  const preds = new Map(Array.from({ length: dev.table.length }, (_, r) => [dev.table.str(r, 'index'), raw[r]!]));
  const up = vqav2UploadFile(ids, preds);
  assert.deepEqual(up.map((e) => e.question_id), ids);
  assert.deepEqual(up.map((e) => e.answer), ['yes', 'école x', '', 'b\x7f', '😀 2', '']);
  // byte for byte what the release's json.dump(all_answers, f) wrote for this case
  assert.equal(
    formatVqav2Upload(up),
    '[{"question_id": 262144000, "answer": "yes"}, {"question_id": 262144001, "answer": "\\u00e9cole x"}, ' +
      '{"question_id": 262144002, "answer": ""}, {"question_id": 262144003, "answer": "b\\u007f"}, ' +
      '{"question_id": 262144005, "answer": "\\ud83d\\ude00 2"}, {"question_id": 5, "answer": ""}]',
  );
  assert.equal(formatVqav2Upload([]), '[]');
});

test('pyJsonDumps: Python json.dumps defaults', () => {
  assert.equal(pyJsonDumps([{ question_id: 'abc', answer: '\u2028\x00' }]), '[{"question_id": "abc", "answer": "\\u2028\\u0000"}]');
  assert.equal(pyJsonDumps({ a: [1, true, null], 'b"\\': 'tab\there\n' }), '{"a": [1, true, null], "b\\"\\\\": "tab\\there\\n"}');
  assert.equal(pyJsonDumps('\ud800'), '"\\ud800"');
  assert.throws(() => pyJsonDumps(1.5));
});

test('test split: bad lines are InputErrors naming the line', () => {
  const d = mkdtempSync(join(tmpdir(), 'vqav2-'));
  const f = join(d, 'split.jsonl');
  writeFileSync(f, '{"question_id": 1}\n{"image": "x.jpg"}\n');
  assert.throws(() => readVqav2TestSplit(f), (e: unknown) => e instanceof InputError && /split\.jsonl:2: no "question_id"/.test(e.message));
  writeFileSync(f, '{"question_id": 1.5}\n');
  assert.throws(() => readVqav2TestSplit(f), (e: unknown) => e instanceof InputError && /:1: "question_id" is neither/.test(e.message));
  assert.throws(() => readVqav2TestSplit(join(d, 'none.jsonl')), (e: unknown) => e instanceof InputError && /not found/.test(e.message));
});
