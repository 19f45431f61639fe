// Readers for the LLaVA-format question files the MG-LLaVA release evaluates on (its sft config's
// `test_dataset`: xtuner/dataset/evaluation/{textvqa,pope}_dataset.py and
// mg_llava/evaluation/{gqa,vqav2}_llava_eval_dataset.py), each giving an `EvalSet` whose table is
// in VLMEvalKit's form, so that the same prompts, run loop and scorer (score.ts) serve them; plus
// the two release scores that VLMEvalKit has no equivalent for (GQA's official accuracy after the
// release's answer clean-up, POPE's mean per-file F1).
//
// The files (LLaVA's playground/data/eval layout):
//   TextVQA  llava_textvqa_val_v051_ocr.jsonl   {question_id, image, text, category}
//            + TextVQA_0.5.1_val.json            {"data": [{image_id, question, answers[10], question_id, ...}]}
//   GQA      llava_gqa_testdev_balanced.jsonl    {question_id, image, text, category}
//            + testdev_balanced_questions.json   {qid: {answer, isBalanced, types: {structural, ...}, ...}}
//   POPE     coco_pope_{adversarial,popular,random}.json (one JSON object a line, despite the name)
//                                                {question_id, image, text, label: yes|no}
//   VQAv2    llava_vqav2_mscoco_test-dev2015.jsonl {question_id, image, text, category} (no answers:
//            test-dev is scored by the EvalAI server; see vqav2.ts for the upload file)
//
// Reading: one JSON object a line, as `[json.loads(q) for q in open(f)]` (text mode: `\r\n`, `\r`
// and `\n` end a line); blank lines are skipped (Python would fail on them). A line that is not a JSON object, a missing or mistyped field, a
// `question_id` repeated within one file (TextVQA excepted, see there) or a TextVQA/GQA question
// without its annotation is an InputError naming the file and line. Image files are not looked
// at here: `media(row)` is the image folder joined with the line's `image` (`os.path.join`: an
// absolute `image` stands alone), and the run reports a missing file per item.
//
// Index and box keys: where the file's question_id is unique (GQA, VQAv2) it is the table's
// `index`, as it is the release's `index`. Where it is not (TextVQA: the file's question_id is the
// TextVQA *image* id, shared by every question on that image; POPE: ids restart at 1 in each of
// the three files) the index is the row's position over everything read (0, 1, ...), which is
// exactly the release's `img_id`, the key it matches predictions to rows by; the file's own id is
// kept in a `question_id` column. `boxKeys(row)` is always `[str(question_id)]`: the release's
// box lookup is `json_data[data['question_id']]` for TextVQA and `json_data[data['index']]`
// (= the question_id) for the others.

import { readFileSync } from 'node:fs';
import { basename, extname, isAbsolute, join } from 'node:path';
import { InputError } from '../core/errors.js';
import type { EvalSet, MediaRef } from './dataset.js';
import { yornExtraction } from './pope.js';
import { pyStrListRepr, TsvTable, type Cell, type ColumnKind } from './tsv.js';

// Python literals: pyStrRepr / pyStrListRepr live in tsv.ts (re-exported here).
export { pyStrListRepr, pyStrRepr } from './tsv.js';

// ---------------------------------------------------------------------------------------------
// jsonl

interface Line {
  /** 1-based line number in the file */
  line: number;
  obj: Record<string, unknown>;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `${what} file not found: ${path}` : `cannot read ${what} file ${path}: ${(e as Error).message}`, path);
  }
}

/** The JSON objects of a jsonl file, one a line, blank lines skipped. */
export function readJsonlObjects(path: string, what = 'question'): { line: number; obj: Record<string, unknown> }[] {
  const text = readText(path, what);
  const out: Line[] = [];
  // Python's text mode reads \r\n, \r and \n as line ends
  const lines = text.split(/\r\n|\r|\n/);
  lines.forEach((l, i) => {
    if (l.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(i === 0 && l.charCodeAt(0) === 0xfeff ? l.slice(1) : l);
    } catch (e) {
      throw new InputError(`${path}:${i + 1}: not valid JSON (${(e as Error).message})`, path);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InputError(`${path}:${i + 1}: not a JSON object`, path);
    out.push({ line: i + 1, obj: v as Record<string, unknown> });
  });
  return out;
}

function readJson(path: string, what: string): unknown {
  const text = readText(path, what);
  try {
    return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (e) {
    throw new InputError(`${what} file ${path} is not valid JSON (${(e as Error).message})`, path);
  }
}

function str(path: string, l: Line, field: string): string {
  const v = l.obj[field];
  if (v === undefined) throw new InputError(`${path}:${l.line}: no "${field}" field`, path);
  if (typeof v !== 'string') throw new InputError(`${path}:${l.line}: "${field}" is not a string`, path);
  return v;
}

/** A question_id: a string or an integer (as the files have them). */
function qid(path: string, l: Line): string | number {
  const v = l.obj['question_id'];
  if (v === undefined) throw new InputError(`${path}:${l.line}: no "question_id" field`, path);
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  throw new InputError(`${path}:${l.line}: "question_id" is neither a string nor an integer`, path);
}

/** Ids must differ by their text (`str(index)` is the key predictions are matched by, so 1 and "1" clash too). */
function checkUnique(path: string, lines: readonly Line[], ids: readonly (string | number)[]): void {
  const seen = new Map<string, number>();
  ids.forEach((id, i) => {
    const k = String(id);
    const prev = seen.get(k);
    if (prev !== undefined) throw new InputError(`${path}:${lines[i]!.line}: question_id ${JSON.stringify(id)} repeats line ${prev}`, path);
    seen.set(k, lines[i]!.line);
  });
}

/** The column of question ids: `int` when every id is an integer, else their text. */
function idColumn(ids: readonly (string | number)[]): { kind: ColumnKind; cells: Cell[] } {
  if (ids.every((x) => typeof x === 'number')) return { kind: 'int', cells: [...ids] };
  return { kind: 'str', cells: ids.map(String) };
}

function imagePath(images: string, image: string): string {
  return isAbsolute(image) ? image : join(images, image);
}

interface Built {
  columns: string[];
  kinds: ColumnKind[];
  cols: Cell[][];
}

function build(spec: [name: string, kind: ColumnKind, cells: Cell[]][]): TsvTable {
  const b: Built = { columns: spec.map((s) => s[0]), kinds: spec.map((s) => s[1]), cols: spec.map((s) => s[2]) };
  const n = b.cols[0]?.length ?? 0;
  const data = Array.from({ length: n }, (_, r) => b.cols.map((c) => c[r]!));
  return new TsvTable(b.columns, b.kinds, data);
}

function evalSet(table: TsvTable, files: string[], images: string, imageOf: readonly string[], boxKeyOf: readonly string[]): EvalSet {
  return {
    table,
    files,
    media: (row: number): MediaRef | null => {
      const im = imageOf[row];
      return im === undefined ? null : { kind: 'image', path: imagePath(images, im) };
    },
    boxKeys: (row: number): string[] => [boxKeyOf[row]!],
  };
}

// ---------------------------------------------------------------------------------------------
// TextVQA

/**
 * The question a TextVQA prompt asks, lower-cased: the release's (and LLaVA eval_textvqa.py's)
 * `prompt_processor`. A BLIP-style `OCR tokens: ... Question: <q> Short answer:` prompt gives
 * `<q>`; a three-line prompt with `Reference OCR token: ` gives its first line (its second when
 * the prompt starts with the OCR line); a two-line prompt its first line. Anything else is an
 * error (Python: `assert False`).
 */
export function textVqaPromptQuestion(prompt: string): string {
  let q: string;
  const lines = prompt.split('\n');
  if (prompt.startsWith('OCR tokens: ')) {
    const m = /Question: ([\s\S]*?) Short answer:/.exec(prompt);
    if (!m) throw new Error('an "OCR tokens: " prompt without "Question: ... Short answer:"');
    q = m[1]!;
  } else if (prompt.includes('Reference OCR token: ') && lines.length === 3) {
    q = prompt.startsWith('Reference OCR token:') ? lines[1]! : lines[0]!;
  } else if (lines.length === 2) {
    q = lines[0]!;
  } else {
    throw new Error(`a prompt of ${lines.length} lines that is none of the forms the release reads`);
  }
  return q.toLowerCase();
}

export interface TextVqaOptions {
  /** the image folder (`train_images`) */
  images: string;
  /** TextVQA_0.5.1_val.json; without it the table has no `answer` column (a prediction-only run) */
  annotations?: string;
}

/**
 * `llava_textvqa_val_v051_ocr.jsonl` (+ `TextVQA_0.5.1_val.json`). Columns: `index` (the row's
 * position, the release's img_id), `question_id` (the file's, which is the TextVQA image id and
 * repeats over an image's questions, so it is not checked for uniqueness), `question` (the line's
 * `text` as given: the question, its `Reference OCR token: ...` line and the `Answer the question
 * using a single word or phrase.` line; a prompt builder must not append the suffix again),
 * `answer` (with annotations: the 10 answers as a Python list, like VLMEvalKit's TextVQA_VAL),
 * `image_path` (the line's `image`).
 *
 * Annotations are matched as the release's evaluate() matches them: annotation key
 * `(image_id, question.lower())` against `(question_id, textVqaPromptQuestion(text))`; a repeated
 * annotation key keeps the last entry (a dict comprehension), a line without one is an error
 * (Python: KeyError).
 */
export function readTextVqaJsonl(questions: string, o: TextVqaOptions): EvalSet {
  const lines = readJsonlObjects(questions);
  const ids = lines.map((l) => qid(questions, l));
  const images = lines.map((l) => str(questions, l, 'image'));
  const texts = lines.map((l) => str(questions, l, 'text'));
  const idc = idColumn(ids);
  const spec: [string, ColumnKind, Cell[]][] = [
    ['index', 'int', lines.map((_, i) => i)],
    ['question_id', idc.kind, idc.cells],
    ['question', 'str', texts],
  ];
  const files = [questions];
  if (o.annotations !== undefined) {
    const ann = o.annotations;
    files.push(ann);
    const root = readJson(ann, 'TextVQA annotation');
    const data = (root as { data?: unknown } | null)?.data;
    if (!Array.isArray(data)) throw new InputError(`TextVQA annotation file ${ann} has no "data" list`, ann);
    const byKey = new Map<string, string[]>();
    data.forEach((a: unknown, k) => {
      const e = a as { image_id?: unknown; question?: unknown; answers?: unknown } | null;
      if (e === null || typeof e !== 'object') throw new InputError(`${ann}: data[${k}] is not an object`, ann);
      const imageId = e.image_id;
      if (typeof imageId !== 'string' && typeof imageId !== 'number') throw new InputError(`${ann}: data[${k}] has no image_id`, ann);
      if (typeof e.question !== 'string') throw new InputError(`${ann}: data[${k}] has no question`, ann);
      if (!Array.isArray(e.answers) || !e.answers.every((x) => typeof x === 'string')) throw new InputError(`${ann}: data[${k}] has no list of answers`, ann);
      byKey.set(JSON.stringify([imageId, e.question.toLowerCase()]), e.answers as string[]);
    });
    const answers = lines.map((l, i) => {
      let q: string;
      try {
        q = textVqaPromptQuestion(texts[i]!);
      } catch (e) {
        throw new InputError(`${questions}:${l.line}: cannot take the question out of the text: ${(e as Error).message}`, questions);
      }
      const a = byKey.get(JSON.stringify([ids[i], q]));
      if (a === undefined) throw new InputError(`${questions}:${l.line}: no annotation in ${ann} for image_id ${JSON.stringify(ids[i])} and question ${JSON.stringify(q)}`, questions);
      return pyStrListRepr(a);
    });
    spec.push(['answer', 'str', answers]);
  }
  spec.push(['image_path', 'str', images]);
  return evalSet(build(spec), files, o.images, images, ids.map(String));
}

// ---------------------------------------------------------------------------------------------
// GQA

export interface GqaOptions {
  /** the image folder (`gqa/images`) */
  images: string;
  /** testdev_balanced_questions.json; without it the table has no `answer` column */
  answers?: string;
}

/**
 * `llava_gqa_testdev_balanced.jsonl` (+ `testdev_balanced_questions.json`). Columns: `index`
 * (question_id), `question` (text as given), `answer` and `structural` (the question's
 * `types.structural`, which the official evaluator splits into Binary/Open by; null when absent)
 * when the answers are given, `category`, `image_path`. A question missing from the answers
 * file is an error (the official evaluator needs the gold answer of each).
 */
export function readGqaJsonl(questions: string, o: GqaOptions): EvalSet {
  const lines = readJsonlObjects(questions);
  const ids = lines.map((l) => qid(questions, l));
  checkUnique(questions, lines, ids);
  const images = lines.map((l) => str(questions, l, 'image'));
  const texts = lines.map((l) => str(questions, l, 'text'));
  const cats = lines.map((l) => str(questions, l, 'category'));
  const idc = idColumn(ids);
  const spec: [string, ColumnKind, Cell[]][] = [
    ['index', idc.kind, idc.cells],
    ['question', 'str', texts],
  ];
  const files = [questions];
  if (o.answers !== undefined) {
    const path = o.answers;
    files.push(path);
    const root = readJson(path, 'GQA questions');
    if (root === null || typeof root !== 'object' || Array.isArray(root)) throw new InputError(`GQA questions file ${path} is not a JSON object of questions`, path);
    const qs = root as Record<string, unknown>;
    const answers: Cell[] = [];
    const structural: Cell[] = [];
    lines.forEach((l, i) => {
      const key = String(ids[i]);
      const q = Object.prototype.hasOwnProperty.call(qs, key) ? (qs[key] as { answer?: unknown; types?: { structural?: unknown } } | null) : undefined;
      if (q === undefined) throw new InputError(`${questions}:${l.line}: question ${key} is not in ${path}`, questions);
      if (q === null || typeof q.answer !== 'string') throw new InputError(`${path}: question ${key} has no answer`, path);
      answers.push(q.answer);
      const s = q.types?.structural;
      structural.push(typeof s === 'string' ? s : null);
    });
    spec.push(['answer', 'str', answers], ['structural', 'str', structural]);
  }
  spec.push(['category', 'str', cats], ['image_path', 'str', images]);
  return evalSet(build(spec), files, o.images, images, ids.map(String));
}

/** The release's clean-up of a GQA prediction before the official evaluator: `text.rstrip('.').lower()`. */
export function gqaReleasePrediction(text: string): string {
  return text.replace(/\.+$/, '').toLowerCase();
}

export interface GqaReleaseRow {
  /** the gold answer (`answer` of testdev_balanced_questions.json) */
  answer: string;
  /** the model's raw text */
  prediction: string;
  /** `types.structural`; `query` questions are Open, the rest Binary */
  structural?: string | null;
}

export interface GqaReleaseResult {
  rows: { predicted: string; correct: boolean }[];
  /** x100, as the evaluator prints it (0 for no rows, its `avg`) */
  accuracy: number;
  /** x100 over non-`query` questions; null unless every row has `structural` */
  binary: number | null;
  /** x100 over `query` questions; null unless every row has `structural` */
  open: number | null;
}

function avg100(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  let s = 0;
  for (const x of xs) s += x; // Python sum(): left to right
  return (s / xs.length) * 100;
}

/**
 * The release's GQA score (gqa_llava_eval_dataset.py + eval_gqa.py, as LLaVA's
 * convert_gqa_for_eval.py + the official GQA eval.py): the prediction `rstrip('.')`-ed and
 * lower-cased, then compared for exact equality with the gold answer, averaged x100. The official
 * evaluator covers every balanced question of the questions file (and refuses to run with one
 * missing); this scores the rows given.
 *
 * VLMEvalKit's GQA (`process_line` method `accuracy`, vqa.ts) instead compares
 * `pred.strip().lower()` with `answer.strip().lower()`: it strips whitespace where the release
 * does not (`'yes\n'`, `' yes'` are right there, wrong here), keeps trailing periods where the
 * release drops them (`'Yes.'` is wrong there, right here), and lower-cases the gold answer too.
 */
export function gqaReleaseAccuracy(rows: readonly GqaReleaseRow[]): GqaReleaseResult {
  const out = rows.map((r) => {
    const predicted = gqaReleasePrediction(r.prediction);
    return { predicted, correct: predicted === r.answer };
  });
  const scores = out.map((r) => (r.correct ? 1 : 0));
  const typed = rows.length > 0 && rows.every((r) => typeof r.structural === 'string');
  return {
    rows: out,
    accuracy: avg100(scores),
    binary: typed ? avg100(scores.filter((_, i) => rows[i]!.structural !== 'query')) : null,
    open: typed ? avg100(scores.filter((_, i) => rows[i]!.structural === 'query')) : null,
  };
}

// ---------------------------------------------------------------------------------------------
// POPE

export interface ImageFolderOptions {
  /** the image folder the lines' `image` is relative to (POPE: `coco/val2014`) */
  images: string;
}

/**
 * The three `coco_pope_{adversarial,popular,random}.json` files, in the order given. Columns:
 * `index` (the row's position over all files, the release's img_id: question_ids restart in each
 * file, so they cannot be the index; a running number keeps the index an integer column like
 * VLMEvalKit's POPE TSV), `question_id` (the file's), `question` (text), `answer` (`Yes`/`No`
 * from the `label`, capitalised as in VLMEvalKit's POPE TSV, so pope.ts scores it), `category`
 * (the file's name without extension, the release's split name, e.g. `coco_pope_random`),
 * `image_path`. A label other than `yes`/`no` is an error (the release asserts it).
 */
export function readPopeJsonl(files: readonly string[], o: ImageFolderOptions): EvalSet {
  if (files.length === 0) throw new InputError('POPE: no question files given', 'files');
  const ids: (string | number)[] = [];
  const texts: string[] = [];
  const answers: string[] = [];
  const cats: string[] = [];
  const images: string[] = [];
  for (const f of files) {
    const lines = readJsonlObjects(f);
    const fileIds = lines.map((l) => qid(f, l));
    checkUnique(f, lines, fileIds);
    const split = basename(f, extname(f));
    lines.forEach((l, i) => {
      const label = str(f, l, 'label');
      if (label !== 'yes' && label !== 'no') throw new InputError(`${f}:${l.line}: label ${JSON.stringify(label)} is neither "yes" nor "no"`, f);
      ids.push(fileIds[i]!);
      texts.push(str(f, l, 'text'));
      images.push(str(f, l, 'image'));
      answers.push(label === 'yes' ? 'Yes' : 'No');
      cats.push(split);
    });
  }
  const idc = idColumn(ids);
  const table = build([
    ['index', 'int', ids.map((_, i) => i)],
    ['question_id', idc.kind, idc.cells],
    ['question', 'str', texts],
    ['answer', 'str', answers],
    ['category', 'str', cats],
    ['image_path', 'str', images],
  ]);
  return evalSet(table, [...files], o.images, images, ids.map(String));
}

export interface PopeReleaseSplit {
  split: string;
  samples: number;
  tp: number;
  fp: number;
  tn: number;
  fn: number;
  /** fractions, as the release prints them; NaN where Python would divide by zero */
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  yesRatio: number;
}

/**
 * The release's POPE score (pope_dataset.py `evaluate` / `eval_func`): for each file (`category`,
 * in order of first appearance) the prediction counts as yes when `YOrN_Extraction` gives `Yes`
 * (so `Unknown` counts as no), precision/recall/F1 of yes; the score is the mean of the files'
 * F1 (a fraction). VLMEvalKit's POPE_rating (pope.ts) reports the F1 of all rows pooled as
 * `Overall` instead, and counts an `Unknown` as neither yes nor no in its accuracy.
 */
export function popeReleaseScore(rows: readonly { answer: string; prediction: string; category: string }[]): {
  splits: PopeReleaseSplit[];
  score: number;
} {
  const names: string[] = [];
  for (const r of rows) if (!names.includes(r.category)) names.push(r.category);
  const div = (a: number, b: number): number => (b === 0 ? NaN : a / b);
  const splits = names.map((split) => {
    const sub = rows.filter((r) => r.category === split);
    let tp = 0, fp = 0, tn = 0, fn = 0, yes = 0;
    for (const r of sub) {
      const p = yornExtraction(r.prediction) === 'Yes';
      const t = yornExtraction(r.answer) === 'Yes';
      if (p) yes++;
      if (p && t) tp++;
      else if (p && !t) fp++;
      else if (!p && !t) tn++;
      else fn++;
    }
    const precision = div(tp, tp + fp);
    const recall = div(tp, tp + fn);
    return {
      split, samples: sub.length, tp, fp, tn, fn,
      accuracy: div(tp + tn, tp + tn + fp + fn), precision, recall,
      f1: div(2 * precision * recall, precision + recall), yesRatio: div(yes, sub.length),
    };
  });
  let s = 0;
  for (const x of splits) s += x.f1;
  return { splits, score: s / splits.length };
}

// ---------------------------------------------------------------------------------------------
// VQAv2

/**
 * `llava_vqav2_mscoco_test-dev2015.jsonl`. Columns: `index` (question_id), `question` (text),
 * `category`, `image_path`. No answers: test-dev is scored on the EvalAI server from the upload
 * file (vqav2.ts).
 */
export function readVqav2Jsonl(questions: string, o: ImageFolderOptions): EvalSet {
  const lines = readJsonlObjects(questions);
  const ids = lines.map((l) => qid(questions, l));
  checkUnique(questions, lines, ids);
  const images = lines.map((l) => str(questions, l, 'image'));
  const idc = idColumn(ids);
  const table = build([
    ['index', idc.kind, idc.cells],
    ['question', 'str', lines.map((l) => str(questions, l, 'text'))],
    ['category', 'str', lines.map((l) => str(questions, l, 'category'))],
    ['image_path', 'str', images],
  ]);
  return evalSet(table, [questions], o.images, images, ids.map(String));
}
