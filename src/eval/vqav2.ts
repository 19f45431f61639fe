// VQAv2 test-dev: the upload file for the EvalAI server, as the MG-LLaVA release writes it
// (mg_llava/evaluation/vqav2_llava_eval_dataset.py `evaluate`, the same as
// xtuner/dataset/evaluation/vqav2_dataset.py and LLaVA's scripts/convert_vqav2_for_submission.py).
//
// The release runs the questions of `llava_vqav2_mscoco_test-dev2015.jsonl` (llava-jsonl.ts
// readVqav2Jsonl) and writes one entry for every question of the *full* test split,
// `llava_vqav2_mscoco_test2015.jsonl`, in that file's order: the EvalAI-processed prediction where
// there is one, '' where there is none (every test-std question outside test-dev).

import { InputError } from '../core/errors.js';
import { readJsonlObjects } from './llava-jsonl.js';
import { mmfProcessAnswer } from './vqa.js';

/**
 * The EvalAI answer processor (`EvalAIAnswerProcessor.__call__` of xtuner's vqav2_utils.py /
 * LLaVA's m4c_evaluator.py, from MMF), rules in order:
 *  1. `word_tokenize`: lower-case; delete every `,` and every `?`; `'s` -> ` 's`; strip.
 *  2. `\n` and `\t` -> space; strip (Python's whitespace set).
 *  3. `process_punctuation`: for each of ``; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !`` in turn:
 *     deleted everywhere if the text from step 2 has it followed or preceded by a space, else
 *     replaced by a space everywhere (the digit-comma test can never fire: step 1 removed the
 *     commas); then the first 32 `.` not followed by a digit are deleted (`re.sub(..., re.UNICODE)`
 *     passes 32 as the count; the pattern's `(?!<=\d)` is a no-op lookahead, so a period after a
 *     digit goes too).
 *  4. `process_digit_article`: lower-case, split on whitespace, number words `none`..`ten` to
 *     digits, drop `a`/`an`/`the` (after the number mapping), expand the contraction table, join
 *     with single spaces.
 * It is MMF's processor, which vqa.ts implements (and tests) as `mmfProcessAnswer`.
 */
export function evalAiAnswer(text: string): string {
  return mmfProcessAnswer(text);
}

/** The question ids of the full test split file (`llava_vqav2_mscoco_test2015.jsonl`), in file order. */
export function readVqav2TestSplit(path: string): (number | string)[] {
  return readJsonlObjects(path, 'VQAv2 test split').map(({ line, obj }) => {
    const v = obj['question_id'];
    if (typeof v === 'string' || (typeof v === 'number' && Number.isSafeInteger(v))) return v;
    throw new InputError(`${path}:${line}: ${v === undefined ? 'no "question_id" field' : '"question_id" is neither a string nor an integer'}`, path);
  });
}

export interface Vqav2UploadEntry {
  question_id: number | string;
  answer: string;
}

/**
 * The upload array: for each test-split question id in order, `evalAiAnswer(prediction)` or ''
 * without one. `predictions` is keyed by `String(question_id)` (the run's `str(index)`); the
 * release keys a dict by the id itself, which is the same for the integer ids VQAv2 has.
 */
export function vqav2UploadFile(testSplitQuestionIds: readonly (number | string)[], predictions: ReadonlyMap<string, string>): Vqav2UploadEntry[] {
  return testSplitQuestionIds.map((id) => {
    const p = predictions.get(String(id));
    return { question_id: id, answer: p === undefined ? '' : evalAiAnswer(p) };
  });
}

/**
 * Python's `json.dumps` of a value with its defaults (`ensure_ascii=True`, separators `, ` and
 * `: `): every character outside printable ASCII (0x20..0x7e) as `\uXXXX` (lower-case hex, UTF-16
 * units), object keys in insertion order.
 */
export function pyJsonDumps(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v).replace(/[^\x20-\x7e]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
    if (Number.isInteger(v)) return String(v);
    throw new Error('pyJsonDumps: only integers are written here (a float needs Python repr)');
  }
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) return `[${v.map(pyJsonDumps).join(', ')}]`;
  if (typeof v === 'object') {
    return `{${Object.entries(v as Record<string, unknown>).map(([k, x]) => `${pyJsonDumps(k)}: ${pyJsonDumps(x)}`).join(', ')}}`;
  }
  throw new Error(`pyJsonDumps: cannot write a ${typeof v}`);
}

/** The upload file's text, byte for byte as the release's `json.dump(all_answers, f)` writes it (no final newline). */
export function formatVqav2Upload(entries: readonly Vqav2UploadEntry[]): string {
  return pyJsonDumps(entries.map((e) => ({ question_id: e.question_id, answer: e.answer })));
}
