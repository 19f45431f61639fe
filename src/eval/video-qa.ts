// The release's video QA files (MSVD-QA, MSRVTT-QA, ... in the Video-ChatGPT / Video-LLaVA
// layout) read into an EvalSet, as MG-LLaVA's `VIDEOQADataset.load_data_list` reads them:
//
//   questions JSON: [{"question_id": ..., "video_name": "<file stem>", "question": "..."}, ...]
//   answers JSON:   [{"answer": "...", "question_id": ...?}, ...]
//
// The two lists are matched by POSITION (answer i belongs to question i; the release never looks
// at the answers' question_id). Where an answer does carry a question_id, it must agree with the
// question at the same position; a disagreement means the files are out of step and is refused.
//
// The table: index (the question_id as given: all integers -> an int column, all strings -> a
// str column), video (video_name), question, answer. An answer given as a JSON number is kept as
// Python's str() of it (the judge's f-string prints it that way).
//
// The video of a row (media): the release (VideoObjectLLaVAProxyEvalDataset) joins the video
// folder with `video_name + '.' + fmt`, where fmt is ONE extension for the whole set, taken from
// the first entry of the set's box JSON (`json_data[0]['video'].split('.')[-1]`). Here:
//   - `format` given ('avi', '.mp4'): that extension, no existence check (as the release);
//   - else `boxes` given (the release box JSON): the extension of its first entry's `video`;
//   - else each row's file is looked for with the extensions Video-LLaVA's / Video-ChatGPT's
//     inference scripts try, in their order: .mp4, .avi, .mov, .mkv (then .webm); the first that
//     exists wins, and a row with none is an InputError when its media is asked for.
// boxKeys(row): [video_name] (the release keys its box JSON by the video's file stem).

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import type { EvalSet, MediaRef } from './dataset.js';
import { pyFloatRepr, TsvTable, type Cell, type ColumnKind } from './tsv.js';

/** The extensions tried, in order, when neither `format` nor `boxes` fixes one. */
export const VIDEO_EXTENSIONS: readonly string[] = ['.mp4', '.avi', '.mov', '.mkv', '.webm'];

export interface VideoQaOptions {
  /** the folder holding the videos (`video_folder`) */
  videos: string;
  /** the videos' extension for the whole set ('avi' or '.avi'); wins over `boxes` */
  format?: string;
  /** the release box JSON of the set: its first entry's `video` gives the extension */
  boxes?: string;
}

function readJson(path: string, what: string): unknown {
  if (!existsSync(path)) throw new InputError(`video QA ${what} file not found: ${path}`, path);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read video QA ${what} file ${path}: ${(e as Error).message}`, path);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`video QA ${what} file ${path} is not valid JSON: ${(e as Error).message}`, path);
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Python's str() of a JSON scalar a text field may be given as. */
function textOf(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isInteger(v) && !Object.is(v, -0) && Math.abs(v) < 2 ** 53 ? String(v) : pyFloatRepr(v);
  return null;
}

function idText(v: string | number): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** The extension (with its dot) of the first entry of a release box JSON. */
export function videoFormatFromBoxFile(path: string): string {
  const data = readJson(path, 'box');
  if (!Array.isArray(data) || data.length === 0) throw new InputError(`box file ${path} is not a non-empty JSON list`, path);
  const first = data[0];
  if (!isObject(first) || typeof first.video !== 'string') {
    throw new InputError(`box file ${path}: entry 0 has no "video" string (the release's video box JSON is a list of {"video": "name.ext", "frames": [...]})`, path);
  }
  const parts = first.video.split('.');
  if (parts.length < 2 || parts[parts.length - 1] === '') {
    throw new InputError(`box file ${path}: entry 0's video ${JSON.stringify(first.video)} has no extension`, path);
  }
  return '.' + parts[parts.length - 1]!;
}

function normFormat(f: string): string {
  if (f === '' || f === '.') throw new InputError('video format is empty', 'format');
  return f.startsWith('.') ? f : '.' + f;
}

/** Read a questions JSON and an answers JSON (matched by position) into an EvalSet. */
export function readVideoQa(questions: string, answers: string, options: VideoQaOptions): EvalSet {
  const qs = readJson(questions, 'questions');
  const as = readJson(answers, 'answers');
  if (!Array.isArray(qs)) throw new InputError(`video QA questions file ${questions} is not a JSON list`, questions);
  if (!Array.isArray(as)) throw new InputError(`video QA answers file ${answers} is not a JSON list`, answers);
  if (qs.length !== as.length) {
    throw new InputError(
      `video QA files differ in length: ${qs.length} questions in ${questions}, ${as.length} answers in ${answers} (they are matched by position)`,
      answers,
    );
  }

  const ids: (string | number)[] = [];
  const videos: string[] = [];
  const questionTexts: string[] = [];
  const answerTexts: string[] = [];
  const seen = new Map<string, number>();
  let idType: 'string' | 'number' | undefined;
  for (let i = 0; i < qs.length; i++) {
    const q = qs[i];
    const at = `${questions}, position ${i}`;
    if (!isObject(q)) throw new InputError(`video QA questions: ${at} is not an object`, questions);
    const id = q.question_id;
    if (typeof id !== 'string' && !(typeof id === 'number' && Number.isFinite(id))) {
      throw new InputError(`video QA questions: ${at} has no question_id (a string or a number)`, questions);
    }
    if (idType === undefined) idType = typeof id as 'string' | 'number';
    else if (typeof id !== idType) {
      throw new InputError(`video QA questions: ${at} has question_id ${idText(id)}, a ${typeof id}, but earlier ones are ${idType}s`, questions);
    }
    const key = String(id);
    const prev = seen.get(key);
    if (prev !== undefined) throw new InputError(`video QA questions: ${at} repeats question_id ${idText(id)} (first at position ${prev})`, questions);
    seen.set(key, i);
    if (typeof q.video_name !== 'string' || q.video_name === '') {
      throw new InputError(`video QA questions: ${at} has no video_name string`, questions);
    }
    const question = textOf(q.question);
    if (question === null) throw new InputError(`video QA questions: ${at} has no question string`, questions);

    const a = as[i];
    const aAt = `${answers}, position ${i}`;
    if (!isObject(a)) throw new InputError(`video QA answers: ${aAt} is not an object`, answers);
    const answer = textOf(a.answer);
    if (answer === null) throw new InputError(`video QA answers: ${aAt} has no answer (a string or a number)`, answers);
    if (a.question_id !== undefined && a.question_id !== id) {
      throw new InputError(
        `video QA files out of step at position ${i}: ${questions} has question_id ${idText(id)}, ` +
          `${answers} has question_id ${typeof a.question_id === 'string' || typeof a.question_id === 'number' ? idText(a.question_id) : JSON.stringify(a.question_id)} (they are matched by position)`,
        answers,
      );
    }
    ids.push(id);
    videos.push(q.video_name);
    questionTexts.push(question);
    answerTexts.push(answer);
  }

  const indexKind: ColumnKind =
    idType === 'number' ? (ids.every((x) => Number.isInteger(x)) ? 'int' : 'float') : 'str';
  const columns = ['index', 'video', 'question', 'answer'];
  const kinds: ColumnKind[] = [indexKind, 'str', 'str', 'str'];
  const data: Cell[][] = ids.map((id, i) => [id, videos[i]!, questionTexts[i]!, answerTexts[i]!]);
  const table = new TsvTable(columns, kinds, data);

  const fixed = options.format !== undefined ? normFormat(options.format) : options.boxes !== undefined ? videoFormatFromBoxFile(options.boxes) : undefined;
  const files = [questions, answers, ...(options.boxes !== undefined && options.format === undefined ? [options.boxes] : [])];
  const found = new Map<number, string>();
  const media = (row: number): MediaRef | null => {
    if (!Number.isInteger(row) || row < 0 || row >= table.length) throw new RangeError(`row ${row} out of range (0..${table.length - 1})`);
    const stem = videos[row]!;
    if (fixed !== undefined) return { kind: 'video', path: join(options.videos, stem + fixed) };
    let path = found.get(row);
    if (path === undefined) {
      for (const ext of VIDEO_EXTENSIONS) {
        const p = join(options.videos, stem + ext);
        if (existsSync(p)) {
          path = p;
          break;
        }
      }
      if (path === undefined) {
        throw new InputError(
          `no video for ${JSON.stringify(stem)} (question ${idText(ids[row]!)}, position ${row} of ${questions}) in ${options.videos}: tried ${VIDEO_EXTENSIONS.join(', ')}`,
          options.videos,
        );
      }
      found.set(row, path);
    }
    return { kind: 'video', path };
  };
  return { table, files, media, boxKeys: (row) => [videos[row]!] };
}
