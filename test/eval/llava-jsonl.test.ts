// The LLaVA jsonl readers against fixtures/eval/llava, with the values the release's own code
// gives on them (prompt_processor + its annotation dict, TextVQAAccuracyEvaluator, eval_func,
// Python repr), and the tables going through the VLMEvalKit scorer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { InputError } from '../../src/core/errors.js';
import { rowKeys } from '../../src/eval/dataset.js';
import {
  gqaReleaseAccuracy,
  gqaReleasePrediction,
  popeReleaseScore,
  pyStrListRepr,
  pyStrRepr,
  readGqaJsonl,
  readJsonlObjects,
  readPopeJsonl,
  readTextVqaJsonl,
  readVqav2Jsonl,
  textVqaPromptQuestion,
} from '../../src/eval/llava-jsonl.js';
import { evaluatePope } from '../../src/eval/pope.js';
import { benchmarkFor } from '../../src/eval/benchmarks.js';
import { scoreTables } from '../../src/eval/score.js';
import { TsvTable } from '../../src/eval/tsv.js';
import { answerList, evaluateVqa, mmfTextVqaAccuracy } from '../../src/eval/vqa.js';

const DIR = join(ROOT, 'fixtures', 'eval', 'llava');
const IMAGES = join(DIR, 'images');

function inputError(re: RegExp): (e: unknown) => boolean {
  return (e: unknown) => e instanceof InputError && re.test(e.message);
}

function tmpFile(name: string, text: string): string {
  const d = mkdtempSync(join(tmpdir(), 'llava-jsonl-'));
  const f = join(d, name);
  writeFileSync(f, text);
  return f;
}

test('pyStrRepr / pyStrListRepr: Python repr', () => {
  // [s, repr(s)] from Python 3.11
  const v: [string, string][] = [
    ["it's", `"it's"`],
    ['say "hi"', `'say "hi"'`],
    [`both ' and "`, `'both \\' and "'`],
    ['back\\slash', `'back\\\\slash'`],
    ['new\nline\ttab\r', `'new\\nline\\ttab\\r'`],
    ['\x00\x7f', `'\\x00\\x7f'`],
    ['\u200b', `'\\u200b'`],
    ['\xa0', `'\\xa0'`],
    ['é', `'é'`],
    ['😀', `'😀'`],
    ['\u{e0001}', `'\\U000e0001'`],
    ['\ud800', `'\\ud800'`],
    ['\u2028', `'\\u2028'`],
    ['\u0378', `'\\u0378'`],
    ['\x85', `'\\x85'`],
    [' ', `' '`],
    ['', `''`],
  ];
  for (const [s, r] of v) assert.equal(pyStrRepr(s), r, JSON.stringify(s));
  assert.equal(pyStrListRepr(["it's", 'say "hi"', `both ' and "`, 'back\\slash']), `["it's", 'say "hi"', 'both \\' and "', 'back\\\\slash']`);
  assert.equal(pyStrListRepr([]), '[]');
  // and the VQA scorer reads it back
  const tricky = v.map((x) => x[0]);
  assert.deepEqual(answerList(pyStrListRepr(tricky)), tricky);
});

test('textVqaPromptQuestion: the release prompt_processor', () => {
  const S = '\nAnswer the question using a single word or phrase.';
  assert.equal(textVqaPromptQuestion('What is it?\nReference OCR token: A, B' + S), 'what is it?');
  assert.equal(textVqaPromptQuestion('What is it?' + S), 'what is it?');
  assert.equal(textVqaPromptQuestion('OCR tokens: a\nb. Question: Multi\nline? Short answer: x'), 'multi\nline?');
  assert.equal(textVqaPromptQuestion('q\nReference OCR token: x\ny'), 'q');
  assert.equal(textVqaPromptQuestion('Reference OCR token: x\nQ2\nz'), 'q2');
  assert.equal(textVqaPromptQuestion('Q\n'), 'q');
  // Python: assert False
  assert.throws(() => textVqaPromptQuestion('Reference OCR token:x\nQ\nz'));
  assert.throws(() => textVqaPromptQuestion('single'));
  assert.throws(() => textVqaPromptQuestion('a\nb\nc'));
  assert.throws(() => textVqaPromptQuestion('OCR tokens: no question here'));
});

test('TextVQA: table, annotation matching, media, box keys', () => {
  const set = readTextVqaJsonl(join(DIR, 'textvqa_val.jsonl'), { images: IMAGES, annotations: join(DIR, 'textvqa_val_annotations.json') });
  const t = set.table;
  assert.deepEqual(t.columns, ['index', 'question_id', 'question', 'answer', 'image_path']);
  assert.deepEqual(t.kinds, ['int', 'str', 'str', 'str', 'str']);
  assert.equal(t.length, 5);
  assert.deepEqual(rowKeys(set), ['0', '1', '2', '3', '4']);
  // question_id is the TextVQA image id: it repeats
  assert.deepEqual(Array.from({ length: 5 }, (_, r) => t.str(r, 'question_id')), [
    '003a8ae2ef43b901', '003a8ae2ef43b901', 'b9dc400eb20bad64', '2b538a43dd933fc1', '0a1b2c3d4e5f6071',
  ]);
  assert.equal(t.str(0, 'question'), 'What is the brand of this camera?\nReference OCR token: DAKOTA, DIGITAL, Single-Use, Camera\nAnswer the question using a single word or phrase.');
  // str(annotation['answers']) as the release's matching finds them (a repeated key keeps the last entry)
  const want = [
    "['nous les gosses', 'dakota', 'clos culombu', 'dakota digital', 'dakota', 'dakota', 'dakota digital', 'dakota', 'dakota', 'dakota']",
    "['copenhagen', 'copenhagen', 'copenhagen', 'copenhagen', 'copenhagen', 'copenhagen', 'copenhagen', 'copenhagen', 'thursday', 'copenhagen']",
    `['open', 'open', "it's open", 'open', '"open"', 'open', 'back\\\\slash', 'open', 'both \\' and "', 'ouvert é']`,
    "['ale', 'ale', 'ale', 'ale', 'ale', 'ale', 'sublimely self-righteous ale', 'sublimely self-righteous ale', 'sublimely self-righteous ale', 'sublimely self-righteous ale']",
    "['24 hours', '24 hours', '24 hours', '24 hours', '24 hours', '24 hours', '24 hours', '24 hours', '24 hours', '24']",
  ];
  want.forEach((w, r) => assert.equal(t.str(r, 'answer'), w, `row ${r}`));
  assert.deepEqual(set.media(0), { kind: 'image', path: join(IMAGES, 'a.png') });
  assert.deepEqual(set.media(4), { kind: 'image', path: join(IMAGES, 'sub', 'd.jpg') }); // not checked at read time
  assert.deepEqual(set.boxKeys(1), ['003a8ae2ef43b901']);
  assert.deepEqual(set.files, [join(DIR, 'textvqa_val.jsonl'), join(DIR, 'textvqa_val_annotations.json')]);

  // the release's score (MMF TextVQAAccuracyEvaluator) from the table: 72.0 in Python
  const preds = ['Dakota', 'Copenhagen.', "It's open", 'Ale', '24'];
  const m = mmfTextVqaAccuracy(preds.map((p, r) => ({ gtAnswers: answerList(t.str(r, 'answer')), predAnswer: p })));
  assert.deepEqual(m.rows.map((x) => x.score), [1, 1, 0.3, 1, 0.3]);
  assert.equal(100 * m.accuracy, 72);
  // and VLMEvalKit's scorer takes the same table
  const v = evaluateVqa(preds.map((p, r) => ({ answer: t.str(r, 'answer'), prediction: p })), 'TextVQA_VAL');
  assert.equal(v.rows.length, 5);
});

test('TextVQA: prediction-only, absolute images, errors', () => {
  const set = readTextVqaJsonl(join(DIR, 'textvqa_val.jsonl'), { images: IMAGES });
  assert.deepEqual(set.table.columns, ['index', 'question_id', 'question', 'image_path']);
  assert.deepEqual(set.files, [join(DIR, 'textvqa_val.jsonl')]);

  const abs = tmpFile('q.jsonl', JSON.stringify({ question_id: 'x', image: '/abs/i.jpg', text: 'Q?\nA.' }) + '\n');
  assert.deepEqual(readTextVqaJsonl(abs, { images: IMAGES }).media(0), { kind: 'image', path: '/abs/i.jpg' });

  const ann = join(DIR, 'textvqa_val_annotations.json');
  const noAnn = tmpFile('q.jsonl', JSON.stringify({ question_id: '003a8ae2ef43b901', image: 'a.png', text: 'Unknown question?\nA.' }) + '\n');
  assert.throws(() => readTextVqaJsonl(noAnn, { images: IMAGES, annotations: ann }), inputError(/q\.jsonl:1: no annotation .* "unknown question\?"/));
  // an integer question_id never matches a string image_id (a tuple key in Python)
  const intId = tmpFile('q.jsonl', JSON.stringify({ question_id: 34602, image: 'a.png', text: 'What is the brand of this camera?\nA.' }) + '\n');
  assert.throws(() => readTextVqaJsonl(intId, { images: IMAGES, annotations: ann }), inputError(/no annotation/));
  const badPrompt = tmpFile('q.jsonl', '\n' + JSON.stringify({ question_id: 'a', image: 'a.png', text: 'one line' }) + '\n');
  assert.throws(() => readTextVqaJsonl(badPrompt, { images: IMAGES, annotations: ann }), inputError(/q\.jsonl:2: cannot take the question/));
  assert.throws(() => readTextVqaJsonl(badPrompt, { images: IMAGES, annotations: join(DIR, 'nope.json') }), inputError(/not found/));
  const badAnn = tmpFile('a.json', '{"data": [{"image_id": "a", "question": "q"}]}');
  assert.throws(() => readTextVqaJsonl(badPrompt, { images: IMAGES, annotations: badAnn }), inputError(/data\[0\] has no list of answers/));
  assert.throws(() => readTextVqaJsonl(badPrompt, { images: IMAGES, annotations: tmpFile('a.json', '{"x": 1}') }), inputError(/no "data" list/));
});

test('jsonl lines: malformed, missing, mistyped, repeated', () => {
  const f = tmpFile('q.jsonl', '{"question_id": 1, "image": "a.png", "text": "t", "category": "c"}\r\n\r\n{"question_id": 2, "image": "a.png", "text": "t"\n');
  assert.throws(() => readVqav2Jsonl(f, { images: IMAGES }), inputError(/q\.jsonl:3: not valid JSON/));
  assert.throws(() => readJsonlObjects(tmpFile('q.jsonl', '[1]\n')), inputError(/:1: not a JSON object/));
  const missing = tmpFile('q.jsonl', '{"question_id": 1, "image": "a.png", "text": "t", "category": "c"}\n{"question_id": 2, "image": "a.png", "text": "t"}\n');
  assert.throws(() => readVqav2Jsonl(missing, { images: IMAGES }), inputError(/q\.jsonl:2: no "category" field/));
  const typed = tmpFile('q.jsonl', '{"question_id": 1, "image": 5, "text": "t", "category": "c"}\n');
  assert.throws(() => readVqav2Jsonl(typed, { images: IMAGES }), inputError(/q\.jsonl:1: "image" is not a string/));
  const badId = tmpFile('q.jsonl', '{"question_id": [1], "image": "a.png", "text": "t", "category": "c"}\n');
  assert.throws(() => readVqav2Jsonl(badId, { images: IMAGES }), inputError(/:1: "question_id" is neither/));
  const rep = tmpFile('q.jsonl', ['1', '2', '1'].map((q) => JSON.stringify({ question_id: Number(q), image: 'a.png', text: 't', category: 'c' })).join('\n'));
  assert.throws(() => readVqav2Jsonl(rep, { images: IMAGES }), inputError(/q\.jsonl:3: question_id 1 repeats line 1/));
  // 1 and "1" differ in Python but not as str(index), the key predictions are matched by
  const mixed = tmpFile('q.jsonl', [1, '1'].map((q) => JSON.stringify({ question_id: q, image: 'a.png', text: 't', category: 'c' })).join('\n'));
  assert.throws(() => readVqav2Jsonl(mixed, { images: IMAGES }), inputError(/:2: question_id "1" repeats line 1/));
  const mixedOk = tmpFile('q.jsonl', [1, '2'].map((q) => JSON.stringify({ question_id: q, image: 'a.png', text: 't', category: 'c' })).join('\n'));
  assert.equal(readVqav2Jsonl(mixedOk, { images: IMAGES }).table.kind('index'), 'str');
  assert.throws(() => readVqav2Jsonl(join(DIR, 'none.jsonl'), { images: IMAGES }), inputError(/question file not found/));
  // \r line ends and a BOM are read as Python reads them
  const cr = tmpFile('q.jsonl', '\ufeff{"question_id": 1, "image": "a.png", "text": "t", "category": "c"}\r{"question_id": 2, "image": "b.png", "text": "u", "category": "c"}');
  assert.equal(readVqav2Jsonl(cr, { images: IMAGES }).table.length, 2);
});

test('GQA: table with answers, release accuracy vs VLMEvalKit', () => {
  const set = readGqaJsonl(join(DIR, 'gqa_testdev_balanced.jsonl'), { images: IMAGES, answers: join(DIR, 'gqa_testdev_balanced_questions.json') });
  const t = set.table;
  assert.deepEqual(t.columns, ['index', 'question', 'answer', 'structural', 'category', 'image_path']);
  assert.deepEqual(t.kinds, ['str', 'str', 'str', 'str', 'str', 'str']);
  // a leading zero survives: the index is the id's text
  assert.deepEqual(rowKeys(set), ['201307251', '20968379', '201640614', '05451384']);
  assert.deepEqual(set.boxKeys(3), ['05451384']);
  assert.deepEqual(set.media(1), { kind: 'image', path: join(IMAGES, 'b.png') });
  const col = (c: string): string[] => Array.from({ length: t.length }, (_, r) => t.str(r, c));
  assert.deepEqual(col('answer'), ['no', 'woman', 'white', 'yes']);
  assert.deepEqual(col('structural'), ['verify', 'query', 'query', 'logical']);
  assert.deepEqual(col('category'), ['default', 'default', 'default', 'default']);

  const preds = ['No.', 'woman ', 'White', 'yes\n'];
  const r = gqaReleaseAccuracy(preds.map((p, i) => ({ answer: col('answer')[i]!, prediction: p, structural: col('structural')[i] })));
  assert.deepEqual(r.rows.map((x) => x.predicted), ['no', 'woman ', 'white', 'yes\n']);
  assert.deepEqual(r.rows.map((x) => x.correct), [true, false, true, false]);
  assert.equal(r.accuracy, 50);
  assert.equal(r.binary, 50);
  assert.equal(r.open, 50);
  // VLMEvalKit's GQA (strip + lower, no period removal) gets 75 on the same predictions
  const v = evaluateVqa(preds.map((p, i) => ({ answer: col('answer')[i]!, prediction: p })), 'GQA_TestDev_Balanced');
  assert.deepEqual(v.rows.map((x) => x.hit), [0, 1, 1, 1]);
  assert.equal(v.acc.Overall, 75);

  assert.equal(gqaReleasePrediction('Yes...'), 'yes');
  assert.equal(gqaReleasePrediction('Yes. '), 'yes. ');
  assert.equal(gqaReleasePrediction('.'), '');
  const untyped = gqaReleaseAccuracy([{ answer: 'no', prediction: 'no' }]);
  assert.equal(untyped.accuracy, 100);
  assert.equal(untyped.binary, null);
  assert.equal(gqaReleaseAccuracy([]).accuracy, 0);
});

test('GQA: without answers; a question missing from the answers file', () => {
  const set = readGqaJsonl(join(DIR, 'gqa_testdev_balanced.jsonl'), { images: IMAGES });
  assert.deepEqual(set.table.columns, ['index', 'question', 'category', 'image_path']);
  const extra = tmpFile('q.jsonl', JSON.stringify({ question_id: '42', image: 'a.png', text: 't', category: 'default' }) + '\n');
  assert.throws(() => readGqaJsonl(extra, { images: IMAGES, answers: join(DIR, 'gqa_testdev_balanced_questions.json') }), inputError(/q\.jsonl:1: question 42 is not in/));
  assert.throws(() => readGqaJsonl(extra, { images: IMAGES, answers: tmpFile('a.json', '[]') }), inputError(/not a JSON object of questions/));
  assert.throws(() => readGqaJsonl(extra, { images: IMAGES, answers: tmpFile('a.json', '{"42": {"types": {}}}') }), inputError(/question 42 has no answer/));
});

test('POPE: three files, running index, question_id box keys, both scores', () => {
  const files = ['adversarial', 'popular', 'random'].map((s) => join(DIR, `coco_pope_${s}.json`));
  const set = readPopeJsonl(files, { images: IMAGES });
  const t = set.table;
  assert.deepEqual(t.columns, ['index', 'question_id', 'question', 'answer', 'category', 'image_path']);
  assert.deepEqual(t.kinds, ['int', 'int', 'str', 'str', 'str', 'str']);
  assert.equal(t.length, 10);
  assert.deepEqual(rowKeys(set), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  const col = (c: string): string[] => Array.from({ length: t.length }, (_, r) => t.str(r, c));
  assert.deepEqual(col('question_id'), ['1', '2', '3', '4', '1', '2', '3', '1', '2', '3']);
  assert.deepEqual(col('answer'), ['Yes', 'No', 'Yes', 'No', 'Yes', 'No', 'Yes', 'Yes', 'No', 'No']);
  assert.deepEqual([...new Set(col('category'))], ['coco_pope_adversarial', 'coco_pope_popular', 'coco_pope_random']);
  assert.deepEqual(set.boxKeys(4), ['1']);
  assert.deepEqual(set.media(9), { kind: 'image', path: join(IMAGES, 'c.png') });
  assert.deepEqual(set.files, files);

  const preds = ['Yes, there is.', 'No', 'yes', 'There is a car.', 'Yes', 'Yes', 'no', 'yes', 'No.', "I don't know"];
  const rows = preds.map((p, r) => ({ answer: col('answer')[r]!, prediction: p, category: col('category')[r]! }));
  // the release: mean of the per-file F1 (Python: 1.0, 0.5, 1.0 -> 0.8333333333333334)
  const rel = popeReleaseScore(rows);
  assert.deepEqual(rel.splits.map((s) => s.f1), [1, 0.5, 1]);
  assert.equal(rel.score, 0.8333333333333334);
  assert.deepEqual(rel.splits.map((s) => [s.tp, s.fp, s.tn, s.fn]), [[2, 0, 2, 0], [1, 1, 0, 1], [1, 0, 2, 0]]);
  assert.deepEqual(rel.splits.map((s) => s.samples), [4, 3, 3]);
  assert.equal(rel.splits[1]!.yesRatio, 2 / 3);
  assert.equal(rel.splits[2]!.accuracy, 1);
  // VLMEvalKit's POPE_rating reads the same table (Overall = F1 of all rows pooled)
  const ev = evaluatePope(rows.map((r, i) => ({ index: i, ...r })));
  assert.deepEqual(ev.rating.rows.map((x) => x.split), ['Overall', 'coco_pope_adversarial', 'coco_pope_popular', 'coco_pope_random']);
  assert.ok(Math.abs(ev.rating.rows[0]!.Overall - 80) < 1e-9); // tp 4, fp 1, fn 1
  // no yes at all: Python divides by zero; here NaN
  assert.ok(Number.isNaN(popeReleaseScore([{ answer: 'No', prediction: 'no', category: 'x' }]).score));
});

test('POPE: errors', () => {
  assert.throws(() => readPopeJsonl([], { images: IMAGES }), inputError(/no question files/));
  const bad = tmpFile('coco_pope_x.json', JSON.stringify({ question_id: 1, image: 'a.png', text: 't', label: 'Yes' }) + '\n');
  assert.throws(() => readPopeJsonl([bad], { images: IMAGES }), inputError(/coco_pope_x\.json:1: label "Yes" is neither/));
  const rep = tmpFile('coco_pope_x.json', [1, 1].map((q) => JSON.stringify({ question_id: q, image: 'a.png', text: 't', label: 'no' })).join('\n'));
  assert.throws(() => readPopeJsonl([rep], { images: IMAGES }), inputError(/coco_pope_x\.json:2: question_id 1 repeats line 1/));
  const noLabel = tmpFile('coco_pope_x.json', JSON.stringify({ question_id: 1, image: 'a.png', text: 't' }) + '\n');
  assert.throws(() => readPopeJsonl([noLabel], { images: IMAGES }), inputError(/:1: no "label" field/));
});

test('VQAv2 test-dev: table without answers', () => {
  const set = readVqav2Jsonl(join(DIR, 'vqav2_test-dev2015.jsonl'), { images: '/coco/test2015' });
  const t = set.table;
  assert.deepEqual(t.columns, ['index', 'question', 'category', 'image_path']);
  assert.deepEqual(t.kinds, ['int', 'str', 'str', 'str']);
  assert.deepEqual(rowKeys(set), ['262144000', '262144001', '262144003', '262144005']);
  assert.deepEqual(set.boxKeys(2), ['262144003']);
  assert.deepEqual(set.media(0), { kind: 'image', path: join('/coco/test2015', 'COCO_test2015_000000262144.jpg') });
  assert.equal(t.get(0, 'index'), 262144000);
});

/** A run's predictions table: every data column (there is no `image`) plus `prediction`. */
function predictionsOf(data: TsvTable, preds: readonly string[]): TsvTable {
  return new TsvTable([...data.columns, 'prediction'], [...data.kinds, 'str'], data.data.map((r, i) => [...r, preds[i]!]));
}

test('the tables go through score.ts scoreTables', () => {
  const tv = readTextVqaJsonl(join(DIR, 'textvqa_val.jsonl'), { images: IMAGES, annotations: join(DIR, 'textvqa_val_annotations.json') }).table;
  const tvPreds = ['Dakota', 'Copenhagen.', "It's open", 'Ale', '24'];
  const a = scoreTables(benchmarkFor('textvqa'), tv, predictionsOf(tv, tvPreds));
  const direct = evaluateVqa(tvPreds.map((p, r) => ({ answer: tv.str(r, 'answer'), prediction: p })), 'TextVQA_VAL');
  assert.equal(a.overall, direct.acc.Overall);

  const gqa = readGqaJsonl(join(DIR, 'gqa_testdev_balanced.jsonl'), { images: IMAGES, answers: join(DIR, 'gqa_testdev_balanced_questions.json') }).table;
  const g = scoreTables(benchmarkFor('gqa'), gqa, predictionsOf(gqa, ['No.', 'woman ', 'White', 'yes\n']));
  assert.equal(g.overall, 75);

  const files = ['adversarial', 'popular', 'random'].map((s) => join(DIR, `coco_pope_${s}.json`));
  const pope = readPopeJsonl(files, { images: IMAGES }).table;
  const p = scoreTables(benchmarkFor('pope'), pope, predictionsOf(pope, ['Yes, there is.', 'No', 'yes', 'There is a car.', 'Yes', 'Yes', 'no', 'yes', 'No.', "I don't know"]));
  assert.ok(Math.abs(p.overall - 80) < 1e-9);
  assert.deepEqual(p.table.rows.map((r) => r['split']), ['Overall', 'coco_pope_adversarial', 'coco_pope_popular', 'coco_pope_random']);
});
