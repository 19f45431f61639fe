// `mgllava eval score`: score a predictions TSV against its benchmark TSV (VLMEvalKit rules).

import { resolve } from 'node:path';
import { scoreBenchmark } from '../eval/score.js';

export interface EvalScoreOptions {
  bench: string;
  data: string;
  predictions: string;
  out?: string;
  json?: boolean;
}

function fmt(v: string | number | undefined): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(4);
  return v ?? '';
}

export function runEvalScore(o: EvalScoreOptions, write: (s: string) => void = (s) => process.stdout.write(s)): void {
  const r = scoreBenchmark({ bench: o.bench, data: resolve(o.data), predictions: resolve(o.predictions), out: o.out ? resolve(o.out) : undefined });
  if (o.json) {
    write(JSON.stringify(r) + '\n');
    return;
  }
  const cells = [r.table.columns, ...r.table.rows.map((row) => r.table.columns.map((c) => fmt(row[c])))];
  const widths = r.table.columns.map((_, j) => Math.max(...cells.map((l) => l[j]!.length)));
  const lines = cells.map((l) => l.map((c, j) => c.padEnd(widths[j]!)).join('  ').trimEnd());
  write(`${r.bench} (${r.dataset}): overall ${fmt(r.overall)} over ${r.items.length} items\n${lines.join('\n')}\n`);
  if (r.files) write(`wrote ${r.files.score}, ${r.files.results}, ${r.files.summary}\n`);
}
