// Benchmark names for `mgllava eval score`: the scoring route and VLMEvalKit's dataset name
// (VLMEvalKit picks its method from the dataset name).

import { InputError } from '../core/errors.js';

export type ScoreRoute = 'mcq_circular' | 'mcq_vanilla' | 'pope' | 'vqa';

export interface Benchmark {
  name: string;
  route: ScoreRoute;
  /** VLMEvalKit's dataset name (routes the VQA method, names the output files) */
  dataset: string;
}

export const BENCHMARKS: readonly Benchmark[] = [
  { name: 'mmbench', route: 'mcq_circular', dataset: 'MMBench_DEV_EN' },
  { name: 'mmbench_cn', route: 'mcq_circular', dataset: 'MMBench_DEV_CN' },
  { name: 'seed', route: 'mcq_vanilla', dataset: 'SEEDBench_IMG' },
  { name: 'mmstar', route: 'mcq_vanilla', dataset: 'MMStar' },
  { name: 'ai2d', route: 'mcq_vanilla', dataset: 'AI2D_TEST' },
  { name: 'sqa', route: 'mcq_vanilla', dataset: 'ScienceQA_TEST' },
  { name: 'pope', route: 'pope', dataset: 'POPE' },
  { name: 'textvqa', route: 'vqa', dataset: 'TextVQA_VAL' },
  { name: 'docvqa', route: 'vqa', dataset: 'DocVQA_VAL' },
  { name: 'chartqa', route: 'vqa', dataset: 'ChartQA_TEST' },
  { name: 'gqa', route: 'vqa', dataset: 'GQA_TestDev_Balanced' },
];

/** Known benchmarks with no scorer yet. */
export const NOT_SCORED_YET: readonly string[] = ['vqav2', 'mme', 'msvd_qa', 'msrvtt_qa'];

/** The benchmark named `name` (case-insensitive); an InputError for an unknown or unscored one. */
export function benchmarkFor(name: string): Benchmark {
  const n = name.toLowerCase();
  const b = BENCHMARKS.find((x) => x.name === n);
  if (b) return b;
  if (NOT_SCORED_YET.includes(n)) throw new InputError(`benchmark ${name} is not scored yet (scored: ${BENCHMARKS.map((x) => x.name).join(', ')})`, '--bench');
  throw new InputError(`unknown benchmark ${JSON.stringify(name)}; known: ${BENCHMARKS.map((x) => x.name).join(', ')} (not scored yet: ${NOT_SCORED_YET.join(', ')})`, '--bench');
}
