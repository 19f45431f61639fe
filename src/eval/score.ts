// `mgllava eval score`: a benchmark TSV and a predictions TSV (every benchmark column but
// `image`, plus `prediction`, rows matched by `index`) scored the VLMEvalKit way.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import { tsvScoredBenchmark, type Benchmark } from './benchmarks.js';
import { mcqResultColumns, scoreMcqCircular, scoreMcqVanilla } from './mcq.js';
import { evaluatePope } from './pope.js';
import { evaluateMme } from './mme.js';
import { loadTsvFile } from './tsv-set.js';
import { formatTsvQuoteAll, pyFloatRepr, pyStr, pyStrRepr, type Cell, type ColumnKind, type TsvTable } from './tsv.js';
import { answerList, evaluateVqa, mmfTextVqaAccuracy, type VqaInputRow } from './vqa.js';

export interface ScoreTable {
  columns: string[];
  rows: Record<string, string | number>[];
}

export interface ScoreItem {
  /** the row's index (circular MCQ: the group's main index) */
  index: number | string;
  prediction: string;
  /** MCQ: the letter (or `Z`; circular: '' when the main row gave none); POPE: Yes/No/Unknown; VQA: eval_pred */
  extracted: string;
  /** MCQ hit 0/1, POPE 0/1, VQA the row's hit */
  score: number;
}

export interface ScoreResult {
  bench: string;
  dataset: string;
  /** MCQ: accuracy (fraction); POPE: F1 x100; VQA: Overall x100 */
  overall: number;
  /** the rows of the score file (`*_acc.csv` / `*_score.csv`) */
  table: ScoreTable;
  items: ScoreItem[];
}

export interface ScoreFiles {
  score: string;
  results: string;
  summary: string;
  markdown: string;
}

interface Scored extends ScoreResult {
  /** the per-item results file: columns, rows (cells), kinds */
  resultColumns: string[];
  resultRows: Cell[][];
  resultKinds: ColumnKind[];
}

function need(t: TsvTable, cols: string[], what: string, path: string): void {
  for (const c of cols) if (!t.has(c)) throw new InputError(`${what} TSV ${path} has no ${c} column`, path);
}

function keyOf(t: TsvTable, r: number): string {
  return t.str(r, 'index');
}

function pyRepr(x: string | number | boolean): string {
  if (typeof x === 'boolean') return x ? 'True' : 'False';
  if (typeof x === 'number') return pyFloatRepr(x);
  return pyStrRepr(x);
}

function pyList(xs: readonly (string | number | boolean)[]): string {
  return `[${xs.map((x) => pyRepr(x)).join(', ')}]`;
}

function cellStr(t: TsvTable, r: number, c: string): string | null {
  const v = t.get(r, c);
  return v === null ? null : t.str(r, c);
}

export interface ScoringOptions {
  /** TextVQA: the official evaluator (MMF's m4c TextVQAAccuracyEvaluator, which the release uses) */
  officialVqa?: boolean;
}

/** --official-vqa-normalisation applies to TextVQA only (the other VQA sets are not VQA-accuracy scored). */
export function checkOfficialVqa(bench: Benchmark): void {
  if (bench.name !== 'textvqa') throw new InputError(`--official-vqa-normalisation is for textvqa (the official TextVQA evaluator); ${bench.name} has no such variant here`, '--official-vqa-normalisation');
}

/** Score a predictions table against its benchmark table. */
export function scoreTables(bench: Benchmark, data: TsvTable, pred: TsvTable, paths = { data: 'data', predictions: 'predictions' }, opts: ScoringOptions = {}): Scored {
  need(data, ['index', 'answer'], 'data', paths.data);
  need(pred, ['index', 'prediction'], 'predictions', paths.predictions);
  const dataRow = new Map<string, number>();
  for (let r = 0; r < data.length; r++) dataRow.set(keyOf(data, r), r);
  for (let r = 0; r < pred.length; r++) {
    if (!dataRow.has(keyOf(pred, r))) throw new InputError(`prediction row with index ${keyOf(pred, r)} is not in the data ${paths.data}`, paths.predictions);
  }
  if (pred.length === 0) throw new InputError(`predictions TSV ${paths.predictions} has no rows`, paths.predictions);
  const base = { bench: bench.name, dataset: bench.dataset };
  const predCols = pred.columns;
  const predKinds = pred.kinds;
  const rowCells = (r: number): Cell[] => [...pred.data[r]!];

  if (bench.route === 'mcq_vanilla' || bench.route === 'mcq_circular') {
    const circular = bench.route === 'mcq_circular';
    const cols = mcqResultColumns(pred, circular);
    const extraKinds: ColumnKind[] = circular && !pred.has('g_index') ? ['int', 'int', 'str'] : ['int', 'str'];
    const kinds = [...predKinds, ...extraKinds];
    if (circular) {
      const { groups, reportAcc } = scoreMcqCircular(pred, data);
      const items = groups.map((g) => {
        const main = g.members.find((m) => m.index === g.index) ?? g.members[0]!;
        return { index: g.index, prediction: main.prediction, extracted: main.canInfer || '', score: g.hit };
      });
      const rows = groups.map((g) => [...rowCells(g.row), ...(pred.has('g_index') ? [] : [g.index]), g.hit, g.log]);
      const overall = groups.reduce((s, g) => s + g.hit, 0) / groups.length;
      return { ...base, overall, table: reportAcc, items, resultColumns: cols, resultRows: rows, resultKinds: kinds };
    }
    const { rows, accuracy, reportAcc } = scoreMcqVanilla(pred, data);
    const items = rows.map((x) => ({ index: x.index, prediction: x.prediction, extracted: x.extracted, score: x.hit }));
    const out = rows.map((x) => [...rowCells(x.row), x.hit, x.log]);
    return { ...base, overall: accuracy, table: reportAcc, items, resultColumns: cols, resultRows: out, resultKinds: kinds };
  }

  const answerOf = (r: number): string => data.str(dataRow.get(keyOf(pred, r))!, 'answer');
  const idx = (r: number): number | string => {
    const v = pred.get(r, 'index');
    return typeof v === 'number' ? v : keyOf(pred, r);
  };

  if (bench.route === 'pope') {
    const input = Array.from({ length: pred.length }, (_, r) => ({
      index: idx(r), answer: answerOf(r), prediction: pred.str(r, 'prediction'),
      ...(pred.has('category') ? { category: cellStr(pred, r, 'category') } : {}),
    }));
    const ev = evaluatePope(input);
    const items = ev.rows.map((x) => ({ index: x.index, prediction: x.prediction, extracted: x.extracted, score: x.score ? 1 : 0 }));
    const rows = ev.rows.map((x, r) => [...rowCells(r), x.extracted, x.score]);
    const table: ScoreTable = { columns: [...ev.rating.columns], rows: ev.rating.rows.map((x) => ({ ...x })) };
    return {
      ...base, overall: ev.rating.rows[0]!.Overall, table, items,
      resultColumns: [...predCols, 'extracted', 'score'], resultRows: rows, resultKinds: [...predKinds, 'str', 'bool'],
    };
  }

  if (bench.route === 'mme') {
    need(data, ['category', 'image_path'], 'data', paths.data);
    const input = Array.from({ length: pred.length }, (_, r) => {
      const d = dataRow.get(keyOf(pred, r))!;
      return { index: idx(r), category: data.str(d, 'category'), image_path: cellStr(data, d, 'image_path'), answer: answerOf(r), prediction: pred.str(r, 'prediction') };
    });
    // A subset (--limit, a missing category) is rated as far as it goes (VLMEvalKit fails on it).
    const ev = evaluateMme(input, { partial: true });
    const items = ev.rows.map((x) => ({ index: x.index, prediction: x.prediction, extracted: x.extracted, score: x.score ? 1 : 0 }));
    const rows = ev.rows.map((x, r) => [...rowCells(r), x.extracted, x.score]);
    const table: ScoreTable = { columns: [...ev.rating.columns], rows: ev.rating.rows.map((x) => ({ ...x })) };
    return {
      ...base, overall: ev.rating.perception, table, items,
      resultColumns: [...predCols, 'extracted', 'score'], resultRows: rows, resultKinds: [...predKinds, 'str', 'bool'],
    };
  }

  if (opts.officialVqa) {
    checkOfficialVqa(bench);
    const entries = Array.from({ length: pred.length }, (_, r) => ({ gtAnswers: answerList(answerOf(r)), predAnswer: pred.str(r, 'prediction') }));
    const mmf = mmfTextVqaAccuracy(entries);
    const items = mmf.rows.map((x, r) => ({ index: idx(r), prediction: entries[r]!.predAnswer, extracted: x.pred, score: x.score }));
    const rows = mmf.rows.map((x, r) => [...rowCells(r), pyList(x.gt), x.pred, x.score]);
    const table: ScoreTable = { columns: ['Overall'], rows: [{ Overall: mmf.accuracy * 100 }] };
    return {
      ...base, overall: mmf.accuracy * 100, table, items,
      resultColumns: [...predCols, 'eval_gt', 'eval_pred', 'eval_score'], resultRows: rows, resultKinds: [...predKinds, 'str', 'str', 'float'],
    };
  }

  const input: VqaInputRow[] = Array.from({ length: pred.length }, (_, r) => ({
    answer: answerOf(r), prediction: pred.str(r, 'prediction'),
    ...(pred.has('split') ? { split: cellStr(pred, r, 'split') } : {}),
    ...(pred.has('category') ? { category: cellStr(pred, r, 'category') } : {}),
  }));
  const ev = evaluateVqa(input, bench.dataset);
  const items = ev.rows.map((x, r) => ({ index: idx(r), prediction: input[r]!.prediction, extracted: x.pred, score: x.hit }));
  const rows = ev.rows.map((x, r) => [...rowCells(r), pyList(x.gt), x.pred, (ev.method === 'accuracy' ? `[${x.match.map(Number).join(', ')}]` : pyList(x.match)), x.score]);
  const table: ScoreTable = { columns: [...ev.accColumns], rows: [{ ...ev.acc }] };
  return {
    ...base, overall: ev.acc.Overall!, table, items,
    resultColumns: [...predCols, 'eval_gt', 'eval_pred', 'eval_match', 'eval_score'], resultRows: rows,
    resultKinds: [...predKinds, 'str', 'str', 'str', 'float'],
  };
}

function csvQuoteAll(t: ScoreTable): string {
  const q = (s: string): string => `"${s.replace(/"/g, '""')}"`;
  const cell = (v: string | number | undefined): string => (v === undefined ? '""' : q(typeof v === 'number' ? pyFloatRepr(v) : pyStr(v)));
  return [t.columns.map(q).join(','), ...t.rows.map((r) => t.columns.map((c) => cell(r[c])).join(','))].join('\n') + '\n';
}

export interface ScoreOptions extends ScoringOptions {
  bench: string;
  data: string;
  predictions: string;
  /** write the score file, the results TSV and summary.json here */
  out?: string;
}

/** A Markdown table of the score table (numbers as VLMEvalKit's units, 4 decimals). */
export function markdownTable(t: ScoreTable): string {
  const fmt = (v: string | number | undefined): string => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : (v ?? ''));
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const lines = [`| ${t.columns.map(esc).join(' | ')} |`, `|${t.columns.map(() => ' --- |').join('')}`];
  for (const r of t.rows) lines.push(`| ${t.columns.map((c) => esc(fmt(r[c]))).join(' | ')} |`);
  return lines.join('\n') + '\n';
}

/** Score `pred` against `data` and (with `out`) write the score file, the results TSV, summary.json and summary.md. */
export function scoreAndWrite(bench: Benchmark, data: TsvTable, pred: TsvTable, paths: { data: string; predictions: string }, out?: string, extra: Record<string, unknown> = {}, opts: ScoringOptions = {}): ScoreResult & { files?: ScoreFiles } {
  const s = scoreTables(bench, data, pred, paths, opts);
  const result: ScoreResult = { bench: s.bench, dataset: s.dataset, overall: s.overall, table: s.table, items: s.items };
  if (!out) return result;
  mkdirSync(out, { recursive: true });
  const mcq = bench.route.startsWith('mcq');
  const files: ScoreFiles = {
    score: join(out, `${bench.dataset}_${mcq ? 'acc' : 'score'}.csv`),
    results: join(out, `${bench.dataset}_results.tsv`),
    summary: join(out, 'summary.json'),
    markdown: join(out, 'summary.md'),
  };
  writeFileSync(files.score, csvQuoteAll(s.table));
  writeFileSync(files.results, formatTsvQuoteAll(s.resultColumns, s.resultRows, s.resultKinds));
  writeFileSync(files.summary, JSON.stringify({ ...result, data: paths.data, predictions: paths.predictions, ...(opts.officialVqa ? { evaluator: 'official (MMF m4c TextVQAAccuracyEvaluator)' } : {}), ...extra, files }, null, 2) + '\n');
  writeFileSync(files.markdown, `# ${bench.name} (${bench.dataset})\n\n${markdownTable(s.table)}`);
  return { ...result, files };
}

/** Read, score and (with `out`) write the files. */
export function scoreBenchmark(o: ScoreOptions): ScoreResult & { files?: ScoreFiles } {
  const bench = tsvScoredBenchmark(o.bench);
  const data = loadTsvFile(o.data, 'data');
  // The official TextVQA evaluator reads the answers as given (the release's jsonl), not through pandas.
  const pred = loadTsvFile(o.predictions, 'predictions', o.officialVqa ? ['prediction'] : []);
  return scoreAndWrite(bench, data, pred, { data: o.data, predictions: o.predictions }, o.out, {}, { officialVqa: o.officialVqa });
}
