// The question text per benchmark and prompt style (hand-checked against the release's
// MGLLaVAProxyEvalDataset.getitem + MultipleChoiceDataset and VLMEvalKit's build_prompt).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchmarkFor } from '../../src/eval/benchmarks.js';
import { isCnString, itemPrompt } from '../../src/eval/prompts.js';
import { parseTsv } from '../../src/eval/tsv.js';

// Row 0: hint, options A-C with D empty (NaN), a float column (E has 2.0 and a NaN).
// Row 1: no hint, a Chinese question.
const T = parseTsv(
  'index\tquestion\thint\tA\tB\tC\tD\tE\tanswer\n' +
  '1\tWhat is it?\tLook closely.\tcat\tdog\tbird\t\t2\tA\n' +
  '2\t这是什么？\t\t猫\t狗\t\t\t\tB\n',
);
const mmb = benchmarkFor('mmbench');

test('release MCQ: [hint\\n]question\\n, "X. text\\n" per present option, then the instruction; a float column prints as Python does', () => {
  assert.equal(itemPrompt(mmb, T, 0, 'release'), "Look closely.\nWhat is it?\nA. cat\nB. dog\nC. bird\nE. 2.0\nAnswer with the option's letter from the given choices directly.");
  assert.equal(itemPrompt(mmb, T, 1, 'release'), '这是什么？\nA. 猫\nB. 狗\n请直接回答选项字母。');
});

test('VLMEvalKit MCQ: Hint:, Question:, Options: and the select instruction', () => {
  assert.equal(itemPrompt(mmb, T, 0, 'vlmevalkit'), 'Hint: Look closely.\nQuestion: What is it?\nOptions:\nA. cat\nB. dog\nC. bird\nE. 2.0\nPlease select the correct answer from the options above. \n');
  assert.equal(itemPrompt(mmb, T, 1, 'vlmevalkit'), 'Question: 这是什么？\nOptions:\nA. 猫\nB. 狗\nPlease select the correct answer from the options above. \n');
});

test('POPE, DocVQA, jsonl prompts as given, MME replacement', () => {
  const q = parseTsv('index\tquestion\tanswer\n1\tIs there a dog in the image? Please answer yes or no.\tYes\n');
  assert.equal(itemPrompt(benchmarkFor('pope'), q, 0, 'release'), 'Is there a dog in the image? Please answer yes or no.\nPlease answer the question with yes or no.');
  assert.equal(itemPrompt(benchmarkFor('pope'), q, 0, 'vlmevalkit'), 'Is there a dog in the image? Please answer yes or no.');
  assert.equal(itemPrompt(benchmarkFor('docvqa'), q, 0, 'release'), 'Is there a dog in the image? Please answer yes or no.\nAnswer the question using a single word or phrase.');
  assert.equal(itemPrompt(benchmarkFor('textvqa'), q, 0, 'release', true), 'Is there a dog in the image? Please answer yes or no.');
  assert.equal(itemPrompt(benchmarkFor('textvqa'), q, 0, 'release', false), 'Is there a dog in the image? Please answer yes or no.\nAnswer the question using a single word or phrase.');
  assert.equal(itemPrompt(benchmarkFor('mme'), q, 0, 'release'), 'Is there a dog in the image? Please answer the question only a single word yes or no.');
});

test('is_cn_string: CJK unified ideographs only', () => {
  assert.equal(isCnString('abc'), false);
  assert.equal(isCnString('选项'), true);
  assert.equal(isCnString('こんにちは'), false); // kana are not in U+4E00..U+9FFF
});
