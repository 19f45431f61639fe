// Multiple-choice scoring exactly as VLMEvalKit's rule-based path (judge `exact_matching`, no
// LLM) does it: `vlmeval/utils/matching_util.py` (can_infer, can_infer_option, can_infer_text),
// `vlmeval/dataset/utils/multiple_choice.py` (mcq_vanilla_eval / eval_vanilla, mcq_circular_eval /
// prefetch_circular_group, report_acc) and `vlmeval/tools.py::CIRCULAR` (abnormal entries), at
// VLMEvalKit commit e8e78f05f3080fe28154f2130321f17951c3be94.

import { type Cell, TsvTable, pyStr } from './tsv.js';

/** Option label -> option text (already `str()`-ed). */
export type Choices = Record<string, string>;

/** A letter, `Z`, or false (nothing inferred). */
export type Inferred = string | false;

const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** Python `str.split()` whitespace. */
const PY_WS = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

function pySplit(s: string): string[] {
  return s.split(PY_WS).filter((x) => x.length > 0);
}

/** Python `len()` (code points). */
function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

const REJECT_TO_ANSWER = [
  "Sorry, I can't help with images of people yet.",
  "I can't process this file.",
  "I'm sorry, but without the image provided",
  'Cannot determine the answer',
];

const VERBOSE_ANSWER_RE = /(?:correct\s+)?answer\s+is\s+\**([ABCD])\**/iu;

export interface InferOptions {
  /** VLMEvalKit's `VERBOSE` environment variable is set (non-empty): default from process.env. */
  verbose?: boolean;
}

function isVerbose(opts?: InferOptions): boolean {
  if (opts?.verbose !== undefined) return opts.verbose;
  const v = process.env.VERBOSE;
  return v !== undefined && v !== '';
}

/** `can_infer_option`: a letter, `Z`, or false. */
export function canInferOption(answer: string, choices: Choices, opts?: InferOptions): Inferred {
  if (answer.includes('Failed to obtain answer via API')) return false;
  for (const err of REJECT_TO_ANSWER) if (answer.includes(err)) return 'Z';
  let mod = answer;
  for (const c of '.()[],:;!*#{}') mod = mod.split(c).join(' ');
  const splits = pySplit(mod);
  const keys = Object.keys(choices);
  const count = keys.filter((c) => splits.includes(c)).length;
  if (count === 1) {
    const verbose = isVerbose(opts);
    for (const ch of keys) {
      if (splits.includes('A') && splits.length > 3 && verbose) return false;
      if (splits.includes(ch) && splits.indexOf(ch) > splits.length - 5) return ch;
    }
  } else if (count === 0 && splits.includes('Z')) {
    return 'Z';
  }
  const m = VERBOSE_ANSWER_RE.exec(answer);
  if (m) {
    const l = m[1]!.toUpperCase();
    if (Object.prototype.hasOwnProperty.call(choices, l)) return l;
  }
  return false;
}

/** `can_infer_text`: the one option whose lower-cased text is in the lower-cased answer. */
export function canInferText(answer: string, choices: Choices): Inferred {
  const a = answer.toLowerCase();
  let total = 0;
  for (const v of Object.values(choices)) total += pyLen(v);
  if (pyLen(a) > 2 * total) return false;
  const cands: string[] = [];
  for (const [k, v] of Object.entries(choices)) {
    if (!UPPER.includes(k) || k.length !== 1) throw new Error(`can_infer_text: bad label ${k}`);
    if (a.includes(v.toLowerCase())) cands.push(k);
  }
  return cands.length === 1 ? cands[0]! : false;
}

/** `can_infer`: can_infer_option, else can_infer_text. */
export function canInfer(answer: string, choices: Choices, opts?: InferOptions): Inferred {
  const copt = canInferOption(answer, choices, opts);
  return copt ? copt : canInferText(answer, choices);
}

/** `build_choices`: the A..Z columns of a row that exist and are not NaN, as `str()` text. */
export function buildChoices(t: TsvTable, row: number): Choices {
  const ret: Choices = {};
  for (const ch of UPPER) {
    if (t.has(ch) && !t.isNa(row, ch)) ret[ch] = t.str(row, ch);
  }
  return ret;
}

/**
 * CIRCULAR's `abnormal_entry`: an option whose text (non-letters, non-spaces made spaces) has two
 * or more distinct labels as words, or an option text that is a substring of A..Z.
 * `options` holds the non-NaN options (label -> text).
 */
export function circularAbnormal(options: Record<string, string>): boolean {
  let hasLabel = false;
  for (const k of Object.keys(options)) {
    const text = options[k]!;
    const proc = Array.from(text, (c) => (/^[A-Za-z ]$/.test(c) ? c : ' ')).join('');
    const hits = new Set(pySplit(proc).filter((x) => Object.prototype.hasOwnProperty.call(options, x)));
    if (hits.size > 1) return true;
    if (UPPER.includes(text)) hasLabel = true;
  }
  return hasLabel;
}

/** Lower-case every column name except single A..Z labels (evaluate_heuristic does this). */
function colName(t: TsvTable, name: string): string {
  const j = t.columns.findIndex((c) => (UPPER.includes(c) && c.length === 1 ? c : c.toLowerCase()) === name);
  if (j < 0) throw new Error(`MCQ: no column ${name}`);
  return t.columns[j]!;
}

function hasCol(t: TsvTable, name: string): boolean {
  return t.columns.some((c) => (UPPER.includes(c) && c.length === 1 ? c : c.toLowerCase()) === name);
}

function indexOf(t: TsvTable, row: number): number {
  const v = t.get(row, colName(t, 'index'));
  if (typeof v !== 'number') throw new Error(`MCQ: index ${String(v)} is not a number`);
  return v;
}

/** Row order of `data.sort_values(by='index')`. */
function sortedRows(t: TsvTable): number[] {
  const idx = Array.from({ length: t.length }, (_, i) => i);
  return idx.sort((a, b) => indexOf(t, a) - indexOf(t, b));
}

function answerMap(meta: TsvTable): Map<number, string> {
  const m = new Map<number, string>();
  const ic = colName(meta, 'index');
  const ac = colName(meta, 'answer');
  for (let i = 0; i < meta.length; i++) {
    const k = meta.get(i, ic);
    if (typeof k === 'number') m.set(k, meta.str(i, ac));
  }
  return m;
}

const NO_GPT = 'Failed in Prefetch, no GPT-based answer matching under `exact_matching` policy.';

export interface VanillaRow {
  /** Position of the row in the prediction table. */
  row: number;
  index: number;
  /** GT letter (meta's answer). */
  answer: string;
  /** `str(prediction)`. */
  prediction: string;
  canInfer: Inferred;
  /** can_infer's letter, or `Z`. */
  extracted: string;
  hit: 0 | 1;
  log: string;
}

/**
 * `mcq_vanilla_eval` with model None: rows sorted by index, kept if their index is in meta,
 * scored by `eval_vanilla`.
 */
export function mcqVanillaEval(data: TsvTable, meta: TsvTable, opts?: InferOptions): VanillaRow[] {
  const amap = answerMap(meta);
  const pc = colName(data, 'prediction');
  const out: VanillaRow[] = [];
  for (const r of sortedRows(data)) {
    const index = indexOf(data, r);
    const gt = amap.get(index);
    if (gt === undefined) continue;
    const prediction = data.str(r, pc);
    const ci = canInfer(prediction, buildChoices(data, r), opts);
    const extracted = ci ? ci : 'Z';
    const matchLog = ci ? prediction : NO_GPT;
    out.push({
      row: r, index, answer: gt, prediction, canInfer: ci, extracted,
      hit: extracted === gt ? 1 : 0, log: `Match Log: ${matchLog}. `,
    });
  }
  return out;
}

export interface CircularMember {
  row: number;
  index: number;
  gIndex: number;
  answer: string;
  prediction: string;
  canInfer: Inferred;
}

export interface CircularGroup {
  /** g_index (= the original question's index). */
  index: number;
  /** Position of the original row in the prediction table. */
  row: number;
  /** Member indices, in index order. */
  group: number[];
  members: CircularMember[];
  hit: 0 | 1;
  log: string;
}

/**
 * `mcq_circular_eval` with model None: g_index = int(index % 1e6) (or the `g_index` column),
 * one group per row whose index equals its g_index, members in index order, each prefetched
 * with can_infer (`prefetch_circular_group`). can_infer is run on members up to the first one
 * that stops the group, as VLMEvalKit does; later members get `canInfer` computed too (for
 * reporting) but never change the outcome.
 */
export function mcqCircularEval(data: TsvTable, meta: TsvTable, opts?: InferOptions): CircularGroup[] {
  const amap = answerMap(meta);
  const pc = colName(data, 'prediction');
  const gc = hasCol(data, 'g_index') ? colName(data, 'g_index') : null;
  const members: CircularMember[] = [];
  for (const r of sortedRows(data)) {
    const index = indexOf(data, r);
    const gt = amap.get(index);
    if (gt === undefined) continue;
    if (!Number.isInteger(index)) throw new Error(`MCQ: index ${index} is not an integer`);
    let gIndex: number;
    if (gc) {
      const g = data.get(r, gc);
      if (typeof g !== 'number') throw new Error(`MCQ: g_index ${String(g)} is not a number`);
      gIndex = g;
    } else {
      gIndex = Math.trunc(index % 1e6);
    }
    const prediction = data.str(r, pc);
    members.push({ row: r, index, gIndex, answer: gt, prediction, canInfer: canInfer(prediction, buildChoices(data, r), opts) });
  }
  const byG = new Map<number, CircularMember[]>();
  for (const m of members) {
    const l = byG.get(m.gIndex);
    if (l) l.push(m);
    else byG.set(m.gIndex, [m]);
  }
  const groups: CircularGroup[] = [];
  for (const main of members) {
    if (main.index !== main.gIndex) continue;
    const sub = byG.get(main.index)!;
    let hit: 0 | 1 = 1;
    let log = 'Succeed During Pre-fetching';
    let stopped = false;
    for (let i = 0; i < sub.length; i++) {
      const m = sub[i]!;
      if (m.canInfer && m.canInfer !== m.answer) {
        hit = 0;
        log = `Failed in Prefetching Rolling ${i}: Answer is ${m.answer}, Prediction is ${m.prediction}, Pre-fetched is ${m.canInfer}. `;
        stopped = true;
        break;
      }
    }
    if (!stopped && sub.some((m) => m.canInfer !== m.answer)) {
      hit = 0;
      log = NO_GPT;
    }
    groups.push({ index: main.index, row: main.row, group: sub.map((m) => m.index), members: sub, hit, log });
  }
  return groups;
}

/** MMBench l2-category abbreviations (`MMB_abbrs`). */
export const MMB_ABBRS: Readonly<Record<string, string>> = {
  coarse_perception: 'CP',
  'finegrained_perception (instance-level)': 'FP-S',
  'finegrained_perception (cross-instance)': 'FP-C',
  logic_reasoning: 'LR',
  relation_reasoning: 'RR',
  attribute_reasoning: 'AR',
};

/** A scored row for report_acc: hit plus optional split / category / l2-category cells. */
export interface AccRow {
  hit: number;
  split?: Cell;
  category?: Cell;
  'l2-category'?: Cell;
}

export interface AccTable {
  columns: string[];
  rows: Record<string, string | number>[];
}

function cmpPy(a: string, b: string): number {
  // Python compares str by code point
  const A = Array.from(a, (c) => c.codePointAt(0)!);
  const B = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(A.length, B.length); i++) if (A[i] !== B[i]) return A[i]! - B[i]!;
  return A.length - B.length;
}

function mean(xs: number[]): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/**
 * `report_acc`: one row per split (`none` when no row has a split; VLMEvalKit takes splits in set
 * order, here they are sorted), columns `split, Overall`, then the sorted l2-categories (MMBench
 * names abbreviated), then the sorted categories; values are mean hit (fractions). A later
 * column with the same name replaces an earlier one's values but keeps its place (a Python dict).
 */
export function reportAcc(rows: readonly AccRow[]): AccTable {
  const hasSplit = rows.length > 0 && rows.some((r) => r.split !== undefined);
  const splitOf = (r: AccRow): string => (hasSplit ? pyStr(r.split ?? null) : 'none');
  const splits = hasSplit ? [...new Set(rows.map(splitOf))].sort(cmpPy) : ['none'];
  const res = new Map<string, number[]>();
  res.set('Overall', splits.map((sp) => mean(rows.filter((r) => splitOf(r) === sp).map((r) => r.hit))));
  for (const group of ['l2-category', 'category'] as const) {
    if (!rows.some((r) => r[group] !== undefined)) continue;
    const val = (r: AccRow): string => pyStr(r[group] ?? null);
    const abilities = [...new Set(rows.map(val))].sort(cmpPy);
    for (const ab of abilities) {
      const name = Object.prototype.hasOwnProperty.call(MMB_ABBRS, ab) ? MMB_ABBRS[ab]! : ab;
      const sub = rows.filter((r) => val(r) === ab);
      res.set(name, splits.map((sp) => mean(sub.filter((r) => splitOf(r) === sp).map((r) => r.hit))));
    }
  }
  const columns = ['split', ...res.keys()];
  const out = splits.map((sp, i) => {
    const o: Record<string, string | number> = { split: sp };
    for (const [k, v] of res) o[k] = v[i]!;
    return o;
  });
  return { columns, rows: out };
}

/** AccRows from a table's split / category / l2-category columns and per-row hits. */
export function accRowsFrom(t: TsvTable, scored: readonly { row: number; hit: number }[]): AccRow[] {
  const pick = (name: string): string | null => (hasCol(t, name) ? colName(t, name) : null);
  const sc = pick('split');
  const cc = pick('category');
  const lc = pick('l2-category');
  return scored.map((s) => {
    const r: AccRow = { hit: s.hit };
    if (sc) r.split = t.get(s.row, sc);
    if (cc) r.category = t.get(s.row, cc);
    if (lc) r['l2-category'] = t.get(s.row, lc);
    return r;
  });
}

/** Vanilla MCQ: per-row results, accuracy and the report_acc table. */
export function scoreMcqVanilla(data: TsvTable, meta: TsvTable, opts?: InferOptions) {
  const rows = mcqVanillaEval(data, meta, opts);
  const acc = reportAcc(accRowsFrom(data, rows));
  return { rows, accuracy: mean(rows.map((r) => r.hit)), reportAcc: acc };
}

/** Circular MCQ (MMBench): per-group results and the report_acc table over the originals. */
export function scoreMcqCircular(data: TsvTable, meta: TsvTable, opts?: InferOptions) {
  const groups = mcqCircularEval(data, meta, opts);
  const acc = reportAcc(accRowsFrom(data, groups));
  return { groups, reportAcc: acc };
}

export interface CircularOptions {
  /** Append the `g_index` column CIRCULAR writes (official MMBench TSVs have none). Default true. */
  gIndex?: boolean;
}

/**
 * `vlmeval/tools.py::CIRCULAR` on a benchmark table: an n-option question (n >= 2, answer one of
 * its labels, not abnormal) gets n-1 copies, copy i with index + i*OFFSET (OFFSET 1e6, times 10
 * while an index reaches it), image = the original index, labels rotated right by i (option
 * texts and the answer letter). Rows come out group by group in the order the groups first
 * appear (originals, copy 1, copy 2, ... per option count), then the abnormal rows.
 */
export function circularExpand(t: TsvTable, opts: CircularOptions = {}): TsvTable {
  const withG = opts.gIndex ?? true;
  const ic = t.col('index');
  let offset = 1e6;
  let maxIdx = -Infinity;
  for (let i = 0; i < t.length; i++) maxIdx = Math.max(maxIdx, t.data[i]![ic] as number);
  while (maxIdx >= offset) offset *= 10;
  let nOpt = 2;
  for (let i = 0; i < UPPER.length; i++) {
    if (t.has(UPPER[i]!)) nOpt = i + 1;
    else {
      for (let j = i + 1; j < UPPER.length; j++) {
        if (t.has(UPPER[j]!)) throw new Error(`CIRCULAR: option ${UPPER[j]} without ${UPPER[i]}`);
      }
      break;
    }
  }
  const labels = UPPER.slice(0, nOpt);
  const groups = new Map<number | 'abnormal', number[]>();
  const push = (k: number | 'abnormal', r: number): void => {
    const l = groups.get(k);
    if (l) l.push(r);
    else groups.set(k, [r]);
  };
  for (let r = 0; r < t.length; r++) {
    let thisN = 0;
    for (let j = 0; j < nOpt; j++) {
      if (!t.isNa(r, labels[j]!)) thisN = j + 1;
      else {
        for (let k = j + 1; k < nOpt; k++) {
          if (!t.isNa(r, labels[k]!)) throw new Error(`CIRCULAR: row ${r} has a gap in its options`);
        }
        break;
      }
    }
    if (!(thisN >= 2 || thisN === 0)) throw new Error(`CIRCULAR: row ${r} has one option`);
    const options: Record<string, string> = {};
    for (const ch of UPPER) if (t.has(ch) && !t.isNa(r, ch)) options[ch] = t.str(r, ch);
    const answer = t.str(r, 'answer');
    if (circularAbnormal(options) || thisN === 0) push('abnormal', r);
    else if (pyLen(answer) > 1 || !UPPER.slice(0, thisN).includes(answer)) push('abnormal', r);
    else push(thisN, r);
  }
  const columns = [...t.columns];
  const kinds = [...t.kinds];
  kinds[ic] = 'int';
  const hasImage = t.has('image');
  if (hasImage) kinds[t.col('image')] = 'str';
  if (withG) {
    columns.push('g_index');
    kinds.push('int');
  }
  const answerCol = t.col('answer');
  const out: Cell[][] = [];
  const emit = (row: Cell[], g: number): void => {
    if (withG) row.push(g);
    out.push(row);
  };
  for (const [k, rows] of groups) {
    if (k === 'abnormal') {
      for (const r of rows) emit([...t.data[r]!], t.data[r]![ic] as number);
      continue;
    }
    const lab = UPPER.slice(0, k);
    for (let i = 0; i < k; i++) {
      // deque.rotate(i): label lab[j] -> lab[(j - i) mod k] (copy 1 of ABCD: A -> D, B -> A)
      const cmap = new Map<string, string>();
      for (let j = 0; j < k; j++) cmap.set(lab[j]!, lab[(j - i + k) % k]!);
      for (const r of rows) {
        const src = t.data[r]!;
        const row = [...src];
        const idx = src[ic] as number;
        if (i === 0) {
          emit(row, idx);
          continue;
        }
        const ni = Math.trunc(idx + offset * i);
        const g = Math.trunc(ni % offset);
        row[ic] = ni;
        if (hasImage) row[t.col('image')] = String(g);
        row[answerCol] = cmap.get(t.str(r, 'answer'))!;
        for (const [s, d] of cmap) row[t.col(d)] = src[t.col(s)]!;
        emit(row, g);
      }
    }
  }
  return new TsvTable(columns, kinds, out);
}

/**
 * Columns of VLMEvalKit's `*_exact_matching_result` file: the prediction table's columns (names
 * lower-cased except A..Z), then `g_index` (circular, when the table has none), `hit`, `log`.
 */
export function mcqResultColumns(data: TsvTable, circular: boolean): string[] {
  const cols = data.columns.map((c) => (UPPER.includes(c) && c.length === 1 ? c : c.toLowerCase()));
  if (circular && !cols.includes('g_index')) cols.push('g_index');
  return [...cols, 'hit', 'log'];
}
