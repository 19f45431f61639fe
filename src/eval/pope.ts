// Yes/no scoring as VLMEvalKit does it without a judge model (vlmeval/dataset/image_yorn.py
// `ImageYORNDataset.evaluate`, vlmeval/dataset/utils/yorn.py `YOrN_Extraction`, `POPE_rating`,
// `default_rating`; commit e8e78f05).

import { npMean, processPunctuation, pyCompare, pySplit } from './vqa.js';

export type YesNo = 'Yes' | 'No' | 'Unknown';

/** `YOrN_Extraction`: `Yes` if `yes` is a word and `no` is not, `No` the other way, else `Unknown`. */
export function yornExtraction(output: string): YesNo {
  const words = new Set(pySplit(processPunctuation(output.toLowerCase())));
  const yes = words.has('yes');
  const no = words.has('no');
  if (yes && !no) return 'Yes';
  if (no && !yes) return 'No';
  return 'Unknown';
}

export interface YornInputRow {
  index: number | string;
  /** ground truth, `Yes` or `No` */
  answer: string;
  /** the prediction as VLMEvalKit scores it (`str(cell)`: an NA cell is `nan`) */
  prediction: string;
  /** comma-separated splits (POPE), or one category; null when the cell is NA */
  category?: string | null;
  'l2-category'?: string | null;
}

export interface YornScoredRow extends YornInputRow {
  extracted: YesNo;
  /** `answer == extracted` (case-sensitive) */
  score: boolean;
}

/**
 * The `_auxmatch` step: extraction per row (by index, as VLMEvalKit's `ans_map`: a repeated
 * index takes the last row's extraction) and `score`.
 */
export function scoreYorn(rows: readonly YornInputRow[]): YornScoredRow[] {
  const ansMap = new Map<string, YesNo>();
  for (const r of rows) ansMap.set(String(r.index), yornExtraction(r.prediction));
  return rows.map((r) => {
    const extracted = ansMap.get(String(r.index))!;
    return { ...r, extracted, score: r.answer === extracted };
  });
}

export interface PopeRatingRow {
  split: string;
  /** F1 x100 */
  Overall: number;
  acc: number;
  precision: number;
  recall: number;
}

export interface PopeRating {
  columns: ['split', 'Overall', 'acc', 'precision', 'recall'];
  rows: PopeRatingRow[];
}

interface Scored {
  answer: string;
  extracted: string;
  score: boolean;
}

function f1Row(split: string, sub: readonly Scored[]): PopeRatingRow {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (const r of sub) {
    const t = r.answer === 'Yes';
    const p = r.extracted === 'Yes';
    if (t && p) tp++;
    else if (!t && p) fp++;
    else if (t && !p) fn++;
  }
  const precision = tp + fp !== 0 ? tp / (tp + fp) : 0;
  const recall = tp + fn !== 0 ? tp / (tp + fn) : 0;
  const f1 = precision + recall !== 0 ? (2 * (precision * recall)) / (precision + recall) : 0;
  return {
    split,
    Overall: f1 * 100,
    acc: npMean(sub.map((r) => r.score)) * 100,
    precision: precision * 100,
    recall: recall * 100,
  };
}

/**
 * `POPE_rating`: rows are exploded on `,` (no strip) first, so a row in two splits counts twice
 * in `Overall`; then `Overall` and each split (sorted here; VLMEvalKit uses set order). An NA
 * category stays in `Overall` and gets no split row.
 */
export function popeRating(rows: readonly (Scored & { category?: string | null })[]): PopeRating {
  const exploded: (Scored & { split: string | null })[] = [];
  for (const r of rows) {
    if (typeof r.category === 'string') for (const s of r.category.split(',')) exploded.push({ ...r, split: s });
    else exploded.push({ ...r, split: null });
  }
  const out = [f1Row('Overall', exploded)];
  const splits = [...new Set(exploded.map((r) => r.split))].filter((s): s is string => s !== null).sort(pyCompare);
  for (const s of splits) out.push(f1Row(s, exploded.filter((r) => r.split === s)));
  return { columns: ['split', 'Overall', 'acc', 'precision', 'recall'], rows: out };
}

/**
 * `default_rating` (yes/no sets other than MME, Hallusion, POPE, AMBER, VSR): `Overall`, then each
 * `category` sorted, then each `l2-category` sorted; mean score x100, no explosion.
 */
export function defaultYornRating(
  rows: readonly (Scored & { category?: string | null; 'l2-category'?: string | null })[],
): Record<string, number> {
  const res: Record<string, number> = { Overall: npMean(rows.map((r) => r.score)) * 100 };
  for (const key of ['category', 'l2-category'] as const) {
    if (!rows.some((r) => r[key] !== undefined)) continue;
    const cates = [...new Set(rows.map((r) => r[key]))].filter((c): c is string => typeof c === 'string');
    for (const c of cates.sort(pyCompare)) res[c] = npMean(rows.filter((r) => r[key] === c).map((r) => r.score)) * 100;
  }
  return res;
}

/** Extraction, scores and the POPE table in one call. */
export function evaluatePope(rows: readonly YornInputRow[]): { rows: YornScoredRow[]; rating: PopeRating } {
  const scored = scoreYorn(rows);
  return { rows: scored, rating: popeRating(scored) };
}
