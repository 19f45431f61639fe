// Video QA scores (MSVD-QA, MSRVTT-QA): the Video-ChatGPT judge protocol through an
// OpenAI-compatible endpoint (judge.ts) when a judge is given, else the exact-match fallback,
// labelled as such: it is not the paper's number. Predictions come as our predictions TSV
// (index, ..., prediction) or as the release's prediction JSON ([{id, question, answer, pred}]).

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import type { Benchmark } from './benchmarks.js';
import type { EvalSet } from './dataset.js';
import { exactMatchVideoQa, judgeItems, DEFAULT_JUDGE_MODEL, type JudgeItem } from './judge.js';
import type { ScoreFiles, ScoreResult } from './score.js';
import { markdownTable } from './score.js';
import { loadTsvFile } from './tsv-set.js';

export interface JudgeSettings {
  url: string;
  model?: string;
  apiKeyEnv?: string;
  concurrency?: number;
}

/** index -> prediction from a predictions TSV or the release's prediction JSON. */
export function readVideoPredictions(path: string): Map<string, string> {
  if (!existsSync(path)) throw new InputError(`predictions file not found: ${path}`, path);
  if (path.toLowerCase().endsWith('.json')) {
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new InputError(`${path}: not valid JSON (${(e as Error).message})`, path);
    }
    if (!Array.isArray(doc)) throw new InputError(`${path}: expected the release's list of {id, question, answer, pred}`, path);
    const out = new Map<string, string>();
    doc.forEach((e: unknown, i) => {
      const o = e as { id?: unknown; pred?: unknown } | null;
      if (!o || (typeof o.id !== 'string' && typeof o.id !== 'number') || typeof o.pred !== 'string') throw new InputError(`${path}: entry ${i} is not {id, pred, ...}`, path);
      out.set(String(o.id), o.pred);
    });
    return out;
  }
  const t = loadTsvFile(path, 'predictions');
  for (const c of ['index', 'prediction']) if (!t.has(c)) throw new InputError(`predictions TSV ${path} has no ${c} column`, path);
  return new Map(Array.from({ length: t.length }, (_, r) => [t.str(r, 'index'), t.str(r, 'prediction')]));
}

export async function scoreVideoQa(bench: Benchmark, set: EvalSet, predictions: ReadonlyMap<string, string>, o: { judge?: JudgeSettings; out?: string; predictionsPath: string; onJudged?: (done: number, total: number) => void }): Promise<ScoreResult & { files?: ScoreFiles }> {
  const t = set.table;
  const keys = new Set(Array.from({ length: t.length }, (_, r) => t.str(r, 'index')));
  for (const k of predictions.keys()) if (!keys.has(k)) throw new InputError(`prediction for index ${k} is not in the data ${set.files[0]}`, o.predictionsPath);
  const rows = Array.from({ length: t.length }, (_, r) => r).filter((r) => predictions.has(t.str(r, 'index')));
  if (rows.length === 0) throw new InputError(`${o.predictionsPath} has no predictions for ${set.files[0]}`, o.predictionsPath);
  const items: JudgeItem[] = rows.map((r) => ({ id: t.str(r, 'index'), question: t.str(r, 'question'), answer: t.str(r, 'answer'), prediction: predictions.get(t.str(r, 'index'))! }));
  let result: ScoreResult;
  if (o.judge) {
    if (o.out) mkdirSync(o.out, { recursive: true });
    const run = await judgeItems(items, {
      baseURL: o.judge.url,
      model: o.judge.model ?? DEFAULT_JUDGE_MODEL,
      apiKeyEnv: o.judge.apiKeyEnv,
      concurrency: o.judge.concurrency,
      ...(o.out ? { cache: join(o.out, 'judge.jsonl') } : {}),
      onResult: (_r, p) => o.onJudged?.(p.done, p.total),
    });
    const s = run.summary;
    result = {
      bench: bench.name,
      dataset: bench.dataset,
      overall: s.accuracy ?? NaN,
      table: { columns: ['method', 'accuracy', 'average_score', 'yes', 'no', 'judged', 'errors'], rows: [{ method: `judge ${run.model}`, accuracy: s.accuracy ?? NaN, average_score: s.averageScore ?? NaN, yes: s.yes, no: s.no, judged: s.judged, errors: s.errors }] },
      items: run.results.map((x) => ({ index: String(x.id), prediction: x.prediction, extracted: x.ok ? x.verdict.pred : '', score: x.ok ? x.verdict.score : NaN })),
    };
  } else {
    const m = exactMatchVideoQa(items);
    result = {
      bench: bench.name,
      dataset: bench.dataset,
      overall: m.accuracy ?? NaN,
      table: { columns: ['method', 'accuracy', 'hits', 'total'], rows: [{ method: m.method, accuracy: m.accuracy ?? NaN, hits: m.hits, total: m.total }] },
      items: items.map((x, i) => ({ index: String(x.id), prediction: x.prediction, extracted: '', score: m.rows[i]!.hit })),
    };
  }
  if (!o.out) return result;
  mkdirSync(o.out, { recursive: true });
  const files: ScoreFiles = {
    score: join(o.out, `${bench.dataset}_score.csv`),
    results: join(o.out, `${bench.dataset}_results.json`),
    summary: join(o.out, 'summary.json'),
    markdown: join(o.out, 'summary.md'),
  };
  const q = (v: unknown) => `"${String(v).replace(/"/g, '""')}"`;
  writeFileSync(files.score, [result.table.columns.map(q).join(','), ...result.table.rows.map((r) => result.table.columns.map((c) => q(r[c])).join(','))].join('\n') + '\n');
  // The release's prediction file layout, with the verdict when judged.
  writeFileSync(files.results, JSON.stringify(items.map((x, i) => ({ id: x.id, question: x.question, answer: x.answer, pred: x.prediction, extracted: result.items[i]!.extracted, score: result.items[i]!.score }))) + '\n');
  writeFileSync(files.summary, JSON.stringify({ ...result, data: set.files, predictions: o.predictionsPath, files }, null, 2) + '\n');
  writeFileSync(files.markdown, `# ${bench.name} (${bench.dataset})\n\n${markdownTable(result.table)}`);
  return { ...result, files };
}
