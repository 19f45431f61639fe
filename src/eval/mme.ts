// MME scored the way VLMEvalKit does it without a judge model (vlmeval/dataset/image_yorn.py
// `ImageYORNDataset.evaluate` with `exact_matching`, vlmeval/dataset/utils/yorn.py `MME_rating`;
// commit e8e78f05). The MG-LLaVA release's MMEDataset (xtuner/dataset/evaluation/mme_dataset.py
// and utils.py) computes the same numbers from the same TSV, after sorting the rows by index.
//
//   1. per row: `extracted` = YOrN_Extraction(str(prediction)) (by index: a repeated index takes
//      the last row's), `score` = (answer == extracted), case-sensitive (`Yes`/`No`)
//   2. rows grouped by category, then by image_path within it, both in order of first appearance
//   3. per category: acc = mean of all its scores x100; acc_plus = mean over its images of
//      `scores[0] * scores[1]` (both of an image's first two questions right) x100;
//      score = acc + acc_plus (0..200)
//   4. perception = the sum of the scores of OCR, artwork, celebrity, color, count, existence,
//      landmark, position, posters, scene; reasoning = the sum of code_reasoning,
//      commonsense_reasoning, numerical_calculation, text_translation (plain left-to-right sums)
//   5. the table (`_score.csv`, one row): perception, reasoning, then each category's score in
//      order of first appearance
//
// VLMEvalKit fails (KeyError) when a category of the two lists has no rows, and (IndexError) when
// an image has a single question; `partial: true` instead sums the categories present (listing
// the others in `missing`) and leaves single-question images out of acc_plus (`incompleteImages`),
// for runs over part of MME.

import { InputError } from '../core/errors.js';
import { scoreYorn, type YesNo } from './pope.js';
import { npMean } from './vqa.js';

export const MME_SUPER_CATEGORIES: Readonly<Record<'perception' | 'reasoning', readonly string[]>> = {
  perception: ['OCR', 'artwork', 'celebrity', 'color', 'count', 'existence', 'landmark', 'position', 'posters', 'scene'],
  reasoning: ['code_reasoning', 'commonsense_reasoning', 'numerical_calculation', 'text_translation'],
};

export interface MmeInputRow {
  index: number | string;
  category: string;
  /** the image the question is about (MME TSV `image_path`); null for an NA cell */
  image_path: string | null;
  /** `Yes` or `No` */
  answer: string;
  /** the prediction as VLMEvalKit scores it (`str(cell)`: an NA cell is `nan`) */
  prediction: string;
}

export interface MmeScoredRow extends MmeInputRow {
  extracted: YesNo;
  score: boolean;
}

export interface MmeCategory {
  category: string;
  /** questions and images counted */
  questions: number;
  images: number;
  /** x100 */
  acc: number;
  /** x100 */
  accPlus: number;
  /** acc + accPlus */
  score: number;
}

export interface MmeRating {
  /** the `_score.csv` columns: perception, reasoning, then the categories in order of first appearance */
  columns: string[];
  /** its one row */
  rows: Record<string, number>[];
  perception: number;
  reasoning: number;
  categories: MmeCategory[];
  /** super-category members with no rows (partial mode only; VLMEvalKit fails on any) */
  missing: string[];
  /** images with fewer than two questions, left out of acc_plus (partial mode); a NaN image_path is null */
  incompleteImages: { category: string; image_path: string | null }[];
}

export interface MmeOptions {
  /** allow missing categories and single-question images (see the file comment) */
  partial?: boolean;
}

/** `MME_rating` over scored rows. */
export function mmeRating(rows: readonly { category: string | null; image_path: string | null; score: boolean }[], o: MmeOptions = {}): MmeRating {
  const stats = new Map<string, Map<string | symbol, boolean[]>>();
  for (const r of rows) {
    if (typeof r.category !== 'string') throw new InputError('MME: a row has no category', 'category');
    let cat = stats.get(r.category);
    if (!cat) stats.set(r.category, (cat = new Map()));
    // a NaN image_path never equals another (a fresh float each time): its own image
    const key: string | symbol = r.image_path === null ? Symbol('nan') : r.image_path;
    let scores = cat.get(key);
    if (!scores) cat.set(key, (scores = []));
    scores.push(r.score);
  }
  const incompleteImages: { category: string; image_path: string | null }[] = [];
  const categories: MmeCategory[] = [];
  for (const [category, images] of stats) {
    const all: boolean[] = [];
    const plus: number[] = [];
    for (const [image, scores] of images) {
      all.push(...scores);
      if (scores.length < 2) {
        const path = typeof image === 'string' ? image : null;
        if (!o.partial) throw new InputError(`MME: image ${path ?? 'nan'} (category ${category}) has ${scores.length} question; MME_rating needs two per image (use partial scoring for a subset)`, 'image_path');
        incompleteImages.push({ category, image_path: path });
        continue;
      }
      plus.push(Number(scores[0]!) * Number(scores[1]!));
    }
    const acc = npMean(all) * 100;
    const accPlus = npMean(plus) * 100;
    categories.push({ category, questions: all.length, images: images.size, acc, accPlus, score: acc + accPlus });
  }
  const scoreOf = new Map(categories.map((c) => [c.category, c.score]));
  const missing: string[] = [];
  const sum = (names: readonly string[]): number => {
    let base = 0;
    for (const c of names) {
      const s = scoreOf.get(c);
      if (s === undefined) {
        if (!o.partial) throw new InputError(`MME: no rows of category ${c}; MME_rating needs all 14 (use partial scoring for a subset)`, 'category');
        missing.push(c);
        continue;
      }
      base += s;
    }
    return base;
  };
  const perception = sum(MME_SUPER_CATEGORIES.perception);
  const reasoning = sum(MME_SUPER_CATEGORIES.reasoning);
  const row: Record<string, number> = { perception, reasoning };
  const columns = ['perception', 'reasoning'];
  for (const c of categories) {
    // d2df of {perception, reasoning, **scores}: a category named like a super-category overwrites it in place
    if (!columns.includes(c.category)) columns.push(c.category);
    row[c.category] = c.score;
  }
  return { columns, rows: [row], perception, reasoning, categories, missing, incompleteImages };
}

/** Extraction, scores and the MME table in one call. */
export function evaluateMme(rows: readonly MmeInputRow[], o: MmeOptions = {}): { rows: MmeScoredRow[]; rating: MmeRating } {
  const scored = scoreYorn(rows).map((r, i) => ({ ...rows[i]!, extracted: r.extracted, score: r.score }));
  return { rows: scored, rating: mmeRating(scored, o) };
}
