// The question an evaluated model is asked for one benchmark item (the text after `<image>\n`).
//
// release (default): the release's MGLLaVAProxyEvalDataset.getitem with MultipleChoiceDataset's
//   option layout (mg_llava/evaluation/mg_llava_proxy_eval_dataset.py,
//   xtuner/dataset/evaluation/multiple_choice_dataset.py);
// vlmevalkit: VLMEvalKit's default build_prompt for the dataset type (ImageMCQDataset: "Hint:",
//   "Question:", "Options:" and the select instruction; ImageVQADataset: the short-answer suffix;
//   ImageYORNDataset: the question as is).
// Cells are written as Python's str() of what pandas holds (a float option column prints `5.0`).

import { InputError } from '../core/errors.js';
import type { Benchmark } from './benchmarks.js';
import type { TsvTable } from './tsv.js';

export type PromptStyle = 'release' | 'vlmevalkit';

export const PROMPT_STYLES: readonly PromptStyle[] = ['release', 'vlmevalkit'];

export const MCQ_INSTRUCTION = "Answer with the option's letter from the given choices directly.";
export const MCQ_INSTRUCTION_CN = '请直接回答选项字母。';
export const SHORT_ANSWER = '\nAnswer the question using a single word or phrase.';
export const YES_NO = '\nPlease answer the question with yes or no.';
const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** xtuner's is_cn_string: any CJK unified ideograph (U+4E00..U+9FFF). */
export function isCnString(s: string): boolean {
  return /[\u4e00-\u9fff]/.test(s);
}

/** A cell as text, or null when the column is absent or the cell is NA (`load_from_df`). */
function cell(t: TsvTable, row: number, column: string): string | null {
  if (!t.has(column) || t.isNa(row, column)) return null;
  return t.str(row, column);
}

function question(t: TsvTable, row: number): string {
  const q = cell(t, row, 'question');
  if (q === null) throw new InputError(`row ${t.str(row, 'index')}: the question is empty`, 'question');
  return q;
}

/** `A. text\n` for every letter column present and not NA, in letter order. */
function optionLines(t: TsvTable, row: number): string {
  let s = '';
  for (const c of LETTERS) {
    const v = cell(t, row, c);
    if (v !== null) s += `${c}. ${v}\n`;
  }
  return s;
}

function releaseMcq(t: TsvTable, row: number): string {
  const hint = cell(t, row, 'hint');
  const body = `${hint !== null ? `${hint}\n` : ''}${question(t, row)}\n${optionLines(t, row)}`;
  // The release tests `<image>\n` + text, which contains no CJK, so only the text decides.
  return body + (isCnString(body) ? MCQ_INSTRUCTION_CN : MCQ_INSTRUCTION);
}

function vlmevalkitMcq(t: TsvTable, row: number): string {
  const hint = cell(t, row, 'hint');
  const options = optionLines(t, row);
  let s = hint !== null ? `Hint: ${hint}\n` : '';
  s += `Question: ${question(t, row)}\n`;
  if (options) s += `Options:\n${options}Please select the correct answer from the options above. \n`;
  return s;
}

/**
 * The question for row `row`. `fromJsonl`: the table came from a LLaVA jsonl file whose text is
 * the whole prompt (TextVQA, GQA, VQAv2, POPE as the release reads them).
 */
export function itemPrompt(bench: Benchmark, t: TsvTable, row: number, style: PromptStyle, fromJsonl = false): string {
  const q = () => question(t, row);
  if (style === 'vlmevalkit') {
    switch (bench.prompt) {
      case 'mcq':
        return vlmevalkitMcq(t, row);
      case 'short':
        return q() + SHORT_ANSWER;
      case 'given':
        return fromJsonl ? q() : q() + SHORT_ANSWER;
      default:
        return q();
    }
  }
  switch (bench.prompt) {
    case 'mcq':
      return releaseMcq(t, row);
    case 'yorn':
      return q() + YES_NO;
    case 'short':
      return q() + SHORT_ANSWER;
    case 'given':
      return fromJsonl ? q() : q() + SHORT_ANSWER;
    case 'mme':
      return q().replaceAll('Please answer yes or no.', 'Please answer the question only a single word yes or no.');
    case 'video':
      return q();
  }
}
