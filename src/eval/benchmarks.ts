// Benchmark names for `mgllava eval`: the scoring route, VLMEvalKit's dataset name (VLMEvalKit
// picks its method from the dataset name), the release's prompt for the benchmark and its box cap.

import { InputError } from '../core/errors.js';

export type ScoreRoute = 'mcq_circular' | 'mcq_vanilla' | 'pope' | 'vqa' | 'vqav2' | 'mme' | 'video_qa';

/**
 * How the release turns an item into its question (mg_llava_proxy_eval_dataset.py `getitem`):
 * - mcq: `[hint\n]question\nA. ...\n` + the letter instruction;
 * - yorn: question + "\nPlease answer the question with yes or no." (POPE);
 * - short: question + "\nAnswer the question using a single word or phrase." (DocVQA, ChartQA);
 * - given: the question as the file has it (the LLaVA jsonl prompts of TextVQA, GQA, VQAv2; from
 *   a VLMEvalKit TSV, which has the bare question, the short-answer suffix is added);
 * - mme: "Please answer yes or no." becomes "Please answer the question only a single word yes or no.";
 * - video: the question after `<video>\n`.
 */
export type PromptKind = 'mcq' | 'yorn' | 'short' | 'given' | 'mme' | 'video';

export interface Benchmark {
  name: string;
  route: ScoreRoute;
  /** VLMEvalKit's dataset name (routes the VQA method, names the output files) */
  dataset: string;
  prompt: PromptKind;
  /** the release's limit_num for this benchmark's boxes (null: no cap) */
  boxLimit: number | null;
}

export const BENCHMARKS: readonly Benchmark[] = [
  { name: 'mmbench', route: 'mcq_circular', dataset: 'MMBench_DEV_EN', prompt: 'mcq', boxLimit: 100 },
  { name: 'mmbench_cn', route: 'mcq_circular', dataset: 'MMBench_DEV_CN', prompt: 'mcq', boxLimit: 100 },
  { name: 'seed', route: 'mcq_vanilla', dataset: 'SEEDBench_IMG', prompt: 'mcq', boxLimit: 100 },
  { name: 'mmstar', route: 'mcq_vanilla', dataset: 'MMStar', prompt: 'mcq', boxLimit: 100 },
  { name: 'ai2d', route: 'mcq_vanilla', dataset: 'AI2D_TEST', prompt: 'mcq', boxLimit: 100 },
  { name: 'sqa', route: 'mcq_vanilla', dataset: 'ScienceQA_TEST', prompt: 'mcq', boxLimit: 100 },
  { name: 'pope', route: 'pope', dataset: 'POPE', prompt: 'yorn', boxLimit: 100 },
  { name: 'textvqa', route: 'vqa', dataset: 'TextVQA_VAL', prompt: 'given', boxLimit: 100 },
  { name: 'docvqa', route: 'vqa', dataset: 'DocVQA_VAL', prompt: 'short', boxLimit: 100 },
  { name: 'chartqa', route: 'vqa', dataset: 'ChartQA_TEST', prompt: 'short', boxLimit: 100 },
  { name: 'gqa', route: 'vqa', dataset: 'GQA_TestDev_Balanced', prompt: 'given', boxLimit: 100 },
  { name: 'vqav2', route: 'vqav2', dataset: 'VQAv2_TestDev', prompt: 'given', boxLimit: null },
  { name: 'mme', route: 'mme', dataset: 'MME', prompt: 'mme', boxLimit: 100 },
  { name: 'msvd_qa', route: 'video_qa', dataset: 'MSVD_QA', prompt: 'video', boxLimit: 100 },
  { name: 'msrvtt_qa', route: 'video_qa', dataset: 'MSRVTT_QA', prompt: 'video', boxLimit: 100 },
];

/** Routes `eval score` cannot score from a data TSV and a predictions TSV alone. */
export const NOT_SCORED_FROM_TSV: readonly ScoreRoute[] = ['vqav2', 'video_qa'];

const names = (): string => BENCHMARKS.map((x) => x.name).join(', ');

/** The benchmark named `name` (case-insensitive); an InputError listing the known ones otherwise. */
export function benchmarkFor(name: string): Benchmark {
  const b = BENCHMARKS.find((x) => x.name === name.toLowerCase());
  if (b) return b;
  throw new InputError(`unknown benchmark ${JSON.stringify(name)}; known: ${names()}`, '--bench');
}

/** benchmarkFor, for a benchmark scored from TSVs (score.ts). */
export function tsvScoredBenchmark(name: string): Benchmark {
  const b = benchmarkFor(name);
  if (NOT_SCORED_FROM_TSV.includes(b.route)) {
    throw new InputError(`benchmark ${b.name} is not scored from a predictions TSV yet (scored: ${BENCHMARKS.filter((x) => !NOT_SCORED_FROM_TSV.includes(x.route)).map((x) => x.name).join(', ')})`, '--bench');
  }
  return b;
}
