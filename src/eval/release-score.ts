// The release's own score where it differs from VLMEvalKit's and the paper reports it: POPE as
// the mean of the three files' F1 (POPEDataset.evaluate), GQA as the official eval_gqa accuracy
// after `rstrip('.').lower()` (GQADataset), TextVQA through MMF's m4c evaluator on the answers as
// given (TextVQADataset). Reported beside the VLMEvalKit score in summary.json, never instead of it.

import type { Benchmark } from './benchmarks.js';
import { gqaReleaseAccuracy, popeReleaseScore } from './llava-jsonl.js';
import type { TsvTable } from './tsv.js';
import { answerList, mmfTextVqaAccuracy } from './vqa.js';

export interface ReleaseScore {
  /** what it is, in words */
  method: string;
  /** in the release's units: POPE a fraction, GQA and TextVQA x100 */
  value: number;
  detail?: Record<string, number | null>;
}

/**
 * The release's score of `predictions` (index -> the model's answer, as given) over the rows of
 * `data` that have one; null where the release scores as VLMEvalKit does or the data lacks what
 * its scorer needs.
 */
export function releaseScore(bench: Benchmark, data: TsvTable, predictions: ReadonlyMap<string, string>): ReleaseScore | null {
  if (!data.has('answer')) return null;
  const rows = Array.from({ length: data.length }, (_, r) => r).filter((r) => predictions.has(data.str(r, 'index')));
  if (rows.length === 0) return null;
  const pred = (r: number) => predictions.get(data.str(r, 'index'))!;
  switch (bench.name) {
    case 'pope': {
      if (!data.has('category')) return null;
      const s = popeReleaseScore(rows.map((r) => ({ answer: data.str(r, 'answer'), prediction: pred(r), category: data.str(r, 'category') })));
      return { method: "the release's POPE score: mean F1 of the splits (files)", value: s.score, detail: Object.fromEntries(s.splits.map((x) => [x.split, x.f1])) };
    }
    case 'gqa': {
      const g = gqaReleaseAccuracy(rows.map((r) => ({ answer: data.str(r, 'answer'), prediction: pred(r), ...(data.has('structural') ? { structural: data.str(r, 'structural') } : {}) })));
      return { method: "the release's GQA accuracy (official eval_gqa after rstrip('.').lower())", value: g.accuracy, detail: { binary: g.binary, open: g.open } };
    }
    case 'textvqa': {
      const answers = rows.map((r) => answerList(data.str(r, 'answer')));
      if (answers.some((a) => a.length !== 10)) return null;
      const m = mmfTextVqaAccuracy(rows.map((r, i) => ({ gtAnswers: answers[i]!, predAnswer: pred(r) })));
      return { method: "the release's TextVQA accuracy (MMF m4c evaluator)", value: m.accuracy * 100 };
    }
    default:
      return null;
  }
}
