// The benchmark's items from the files the user has: a VLMEvalKit TSV (`.tsv`), or the LLaVA
// jsonl files the release uses (TextVQA, GQA, POPE, VQAv2), or the release's video QA files.

import { dirname, extname } from 'node:path';
import { InputError } from '../core/errors.js';
import type { Benchmark } from './benchmarks.js';
import type { EvalSet } from './dataset.js';
import { readTsvSet } from './tsv-set.js';
import { readVideoQa } from './video-qa.js';

export interface SetInputs {
  /** the data file(s): one TSV; or the jsonl question file(s); or the video questions JSON */
  data: string[];
  /** image (or video) folder for files that name their pictures */
  images?: string;
  /** TextVQA annotations, GQA answers, or video answers */
  answers?: string;
}

export interface LoadedSet {
  set: EvalSet;
  /** the questions are complete prompts (LLaVA jsonl) */
  fromJsonl: boolean;
}

export function loadEvalSet(bench: Benchmark, i: SetInputs): LoadedSet {
  if (i.data.length === 0) throw new InputError('give --data FILE', '--data');
  const first = i.data[0]!;
  const ext = extname(first).toLowerCase();
  if (bench.route === 'video_qa') {
    if (i.data.length > 1) throw new InputError(`give one --data questions JSON for ${bench.name} (got ${i.data.length})`, '--data');
    if (!i.answers) throw new InputError(`${bench.name} needs --answers FILE (the answers JSON, matched to the questions by position)`, '--answers');
    return { set: readVideoQa(first, i.answers, { videos: i.images ?? dirname(first) }), fromJsonl: false };
  }
  if (ext === '.tsv') {
    if (i.data.length > 1) throw new InputError(`give one --data TSV (got ${i.data.length})`, '--data');
    if (i.answers) throw new InputError('--answers goes with LLaVA jsonl and video QA files; a TSV holds its answers', '--answers');
    return { set: readTsvSet(first, bench, { images: i.images }), fromJsonl: false };
  }
  throw new InputError(`--data ${first}: ${bench.name} is read from a VLMEvalKit .tsv file here`, '--data');
}
