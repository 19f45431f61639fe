// One item's score while a run goes on (the progress bar's running score). The final numbers
// come from score.ts over the whole predictions file; this is the same rule applied row by row
// (circular MCQ: per row, not per group; VQA: the row's hit).

import type { Benchmark } from './benchmarks.js';
import { buildChoices, canInfer } from './mcq.js';
import { yornExtraction } from './pope.js';
import type { TsvTable } from './tsv.js';
import { hitCalculate, processLine, vqaMethodFor } from './vqa.js';

/** The row's score in [0, 1], or null when the row has no answer to compare with. */
export function itemScore(bench: Benchmark, t: TsvTable, row: number, prediction: string): number | null {
  if (!t.has('answer') || t.isNa(row, 'answer')) return null;
  const answer = t.str(row, 'answer');
  switch (bench.route) {
    case 'mcq_circular':
    case 'mcq_vanilla': {
      const got = canInfer(prediction, buildChoices(t, row));
      return got === answer ? 1 : 0;
    }
    case 'pope':
    case 'mme':
      return yornExtraction(prediction) === answer ? 1 : 0;
    case 'vqa':
      return hitCalculate([processLine(answer, prediction, vqaMethodFor(bench.dataset))], bench.dataset)[0]!;
    default:
      return null;
  }
}
