// The benchmark's items from the files the user has: a VLMEvalKit TSV (`.tsv`), or the LLaVA
// jsonl files the release uses (TextVQA, GQA, POPE, VQAv2), or the release's video QA files.

import { dirname, extname } from 'node:path';
import { InputError } from '../core/errors.js';
import type { Benchmark } from './benchmarks.js';
import type { EvalSet } from './dataset.js';
import { readTsvSet } from './tsv-set.js';
import { readVideoQa } from './video-qa.js';
import { readGqaJsonl, readPopeJsonl, readTextVqaJsonl, readVqav2Jsonl } from './llava-jsonl.js';

export interface SetInputs {
  /** the data file(s): one TSV; or the jsonl question file(s); or the video questions JSON */
  data: string[];
  /** image (or video) folder for files that name their pictures */
  images?: string;
  /** TextVQA annotations, GQA answers, or video answers */
  answers?: string;
  /**
   * Video QA: the release's video box JSON; the extension of its first entry's `video` is the
   * extension of every video of the set (as the release resolves them). Other benchmarks: unused here.
   */
  boxes?: string;
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
    return { set: readVideoQa(first, i.answers, { videos: i.images ?? dirname(first), ...(i.boxes !== undefined ? { boxes: i.boxes } : {}) }), fromJsonl: false };
  }
  if (ext === '.tsv') {
    if (i.data.length > 1) throw new InputError(`give one --data TSV (got ${i.data.length})`, '--data');
    if (i.answers && bench.route !== 'vqav2') throw new InputError('--answers goes with LLaVA jsonl and video QA files; a TSV holds its answers', '--answers');
    return { set: readTsvSet(first, bench, { images: i.images }), fromJsonl: false };
  }
  if (ext === '.jsonl' || ext === '.json') {
    const images = i.images ?? dirname(first);
    const one = (): string => {
      if (i.data.length > 1) throw new InputError(`give one --data jsonl file for ${bench.name} (got ${i.data.length})`, '--data');
      return first;
    };
    switch (bench.name) {
      case 'textvqa':
        return { set: readTextVqaJsonl(one(), { images, annotations: i.answers }), fromJsonl: true };
      case 'gqa':
        return { set: readGqaJsonl(one(), { images, answers: i.answers }), fromJsonl: true };
      case 'pope':
        if (i.answers) throw new InputError('POPE jsonl files hold their labels; --answers is not used', '--answers');
        return { set: readPopeJsonl(i.data, { images }), fromJsonl: true };
      case 'vqav2':
        // --answers: the full test split (llava_vqav2_mscoco_test2015.jsonl) for the upload file.
        return { set: readVqav2Jsonl(one(), { images }), fromJsonl: true };
    }
  }
  throw new InputError(`--data ${first}: ${bench.name} is read from a VLMEvalKit .tsv file${['textvqa', 'gqa', 'pope', 'vqav2'].includes(bench.name) ? ' or the LLaVA .jsonl question file' : ''}`, '--data');
}
