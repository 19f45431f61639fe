// The run loop of `mgllava eval`: each item of the shard not yet in the run folder is asked,
// its prediction appended (and flushed) as soon as it is made; up to `concurrency` items at once
// (endpoints), one at a time for a local model. The first failure stops the run after the items
// in flight have been recorded, so that a rerun loses nothing and repeats nothing.

import type { Benchmark } from './benchmarks.js';
import type { EvalSet, MediaRef } from './dataset.js';
import { itemScore } from './item-score.js';
import { itemPrompt, type PromptStyle } from './prompts.js';
import type { RunDir } from './run-dir.js';

export interface EvalItem {
  row: number;
  /** str(index) */
  key: string;
  /** the question after `<image>\n` */
  prompt: string;
  media: MediaRef | null;
  boxKeys: string[];
}

/** Something that answers benchmark items: a local model or an OpenAI-compatible endpoint. */
export interface Answerer {
  /** identifies the model in run.json: a rerun with another identity is refused */
  readonly identity: string;
  /** items it may be asked at once */
  readonly concurrency: number;
  answer(item: EvalItem): Promise<string>;
  close(): Promise<void>;
}

export interface RunProgress {
  done: number;
  total: number;
  /** mean item score so far over the items with an answer (null: none scored yet) */
  score: number | null;
  /** estimated milliseconds left (null until one item was made in this process) */
  etaMs: number | null;
  key: string;
}

export interface RunItemsOptions {
  bench: Benchmark;
  set: EvalSet;
  style: PromptStyle;
  /** the LLaVA jsonl prompts are complete as given */
  fromJsonl: boolean;
  run: RunDir;
  answerer: Answerer;
  /** the table rows of this run (its shard, after --limit) */
  rows: readonly number[];
  onProgress?: (p: RunProgress) => void;
}

export interface RunItemsResult {
  /** items answered by this process */
  made: number;
  /** items found done in the run folder */
  resumed: number;
}

export function evalItem(o: Pick<RunItemsOptions, 'bench' | 'set' | 'style' | 'fromJsonl'>, row: number): EvalItem {
  const t = o.set.table;
  return { row, key: t.str(row, 'index'), prompt: itemPrompt(o.bench, t, row, o.style, o.fromJsonl), media: o.set.media(row), boxKeys: o.set.boxKeys(row) };
}

export async function runItems(o: RunItemsOptions): Promise<RunItemsResult> {
  const t = o.set.table;
  const total = o.rows.length;
  const todo = o.rows.filter((r) => !o.run.done.has(t.str(r, 'index')));
  const resumed = total - todo.length;
  let sum = 0;
  let scored = 0;
  for (const r of o.rows) {
    const p = o.run.done.get(t.str(r, 'index'));
    const s = p ? itemScore(o.bench, t, r, p.prediction) : null;
    if (s !== null) (sum += s), scored++;
  }
  let done = resumed;
  let made = 0;
  const t0 = performance.now();
  const report = (key: string) =>
    o.onProgress?.({
      done, total, key,
      score: scored ? sum / scored : null,
      etaMs: made ? ((performance.now() - t0) / made) * (total - done) : null,
    });
  report('');

  let next = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < todo.length) {
      const row = todo[next++]!;
      try {
        const item = evalItem(o, row);
        const s0 = performance.now();
        const prediction = await o.answerer.answer(item);
        o.run.record({ index: item.key, prediction, ms: Math.round(performance.now() - s0) });
        const s = itemScore(o.bench, t, row, prediction);
        if (s !== null) (sum += s), scored++;
        done++;
        made++;
        report(item.key);
      } catch (e) {
        failure ??= e;
      }
    }
  };
  const n = Math.max(1, Math.min(o.answerer.concurrency, todo.length));
  await Promise.all(Array.from({ length: n }, worker));
  if (failure !== undefined) throw failure;
  return { made, resumed };
}
