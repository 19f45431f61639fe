// An evaluation set: one benchmark's items in VLMEvalKit's table form, whichever file format they
// came from (a VLMEvalKit TSV, the LLaVA jsonl files the release uses, the release's video QA
// files). Every reader produces this; the prompts, the run loop and the scorer read only it.
//
//   table: the data rows, columns as VLMEvalKit names them (index, question, answer, hint, A..Z,
//          category, l2-category, split, image / image_path, ...); a run's predictions file is
//          every column but `image`, plus `prediction`
//   media(row): where the row's picture or video is
//   boxKey(row): the key of the row's entry in a release box file (`index` / `question_id`)

import type { TsvTable } from './tsv.js';

/** Where an item's image or video is. */
export type MediaRef =
  /** a base64-encoded image (a VLMEvalKit TSV's `image` cell, resolved) */
  | { kind: 'base64'; data: string }
  /** an image file (LLaVA jsonl: the image folder joined with the item's `image`) */
  | { kind: 'image'; path: string }
  /** a video file (the release's video QA files) */
  | { kind: 'video'; path: string };

export interface EvalSet {
  /** the table in VLMEvalKit's form; `index` is the item's key */
  table: TsvTable;
  /** the files it was read from (the first is the question / data file) */
  files: string[];
  /** the row's media, or null for a row without one */
  media(row: number): MediaRef | null;
  /**
   * Keys to look the row up by in a release box file, in order of preference: its own index,
   * then (MMBench circular copies) the index of the row whose image it shares.
   */
  boxKeys(row: number): string[];
}

/** `str(index)` of every row, the key predictions are matched by. */
export function rowKeys(set: EvalSet): string[] {
  return Array.from({ length: set.table.length }, (_, r) => set.table.str(r, 'index'));
}
