// `mgllava eval merge`: the predictions of the shards of one run (or of runs that stopped early,
// continued elsewhere) combined, written and scored as one run. The runs must be of the same
// benchmark, data (by sha256), model, prompt style, generation and boxes; an item answered in two
// of them must have the same answer.

import { existsSync, mkdirSync } from 'node:fs';
import { InputError } from '../core/errors.js';
import { benchmarkFor } from './benchmarks.js';
import { loadEvalSet } from './load-set.js';
import { dataFileId, identityDifference, readPredictions, readRunFile, type PredictionRecord, type RunIdentity } from './run-dir.js';
import { finishPredictions, type EvalRunResult } from './run.js';
import { checkOfficialVqa } from './score.js';

export interface MergeOptions {
  runs: string[];
  out: string;
  /** where the data files are now, when not where the runs read them */
  data?: string[];
  images?: string;
  answers?: string;
  /** TextVQA: score with the official (MMF m4c) evaluator */
  officialVqa?: boolean;
}

export interface MergeResult extends Pick<EvalRunResult, 'predictions' | 'score' | 'note' | 'release'> {
  bench: string;
  dataset: string;
  out: string;
  /** items in the data */
  total: number;
  /** items with a prediction */
  merged: number;
  /** shards seen (sorted), when the runs were shards */
  shards: string[];
}

export async function mergeRuns(o: MergeOptions): Promise<MergeResult> {
  if (o.runs.length === 0) throw new InputError('name the run folders to merge', 'RUN_DIR');
  const runs = o.runs.map((dir) => ({ dir, ...readRunFile(dir) }));
  const first = runs[0]!;
  const sameRun = (a: RunIdentity, b: RunIdentity): string | null => identityDifference({ ...a, shard: null }, { ...b, shard: null });
  for (const r of runs.slice(1)) {
    const d = sameRun(first.identity, r.identity);
    if (d) throw new InputError(`${r.dir} is another run than ${first.dir} (${d})`, r.dir);
  }
  const shardNames = runs.map((r) => (r.identity.shard ? `${r.identity.shard.i}/${r.identity.shard.n}` : 'whole'));
  const seenShard = new Map<string, string>();
  runs.forEach((r, k) => {
    const s = shardNames[k]!;
    if (s !== 'whole' && seenShard.has(s)) throw new InputError(`${r.dir} and ${seenShard.get(s)} are both shard ${s}`, r.dir);
    seenShard.set(s, r.dir);
  });

  const bench = benchmarkFor(first.identity.bench);
  if (o.officialVqa) checkOfficialVqa(bench);
  const inputs = { data: o.data ?? first.inputs.data, images: o.images ?? first.inputs.images ?? undefined, answers: o.answers ?? first.inputs.answers ?? undefined };
  for (const p of [...inputs.data, ...(inputs.answers ? [inputs.answers] : [])]) {
    if (!existsSync(p)) throw new InputError(`${p} (the data the runs read) is not here; give --data (and --answers) where it is now`, p);
  }
  const ids = await Promise.all([...inputs.data, ...(inputs.answers ? [inputs.answers] : [])].map(dataFileId));
  if (ids.map((d) => d.sha256).join() !== first.identity.data.map((d) => d.sha256).join()) {
    throw new InputError(`the data files ${inputs.data.join(', ')} are not the ones the runs read (sha256 differs)`, '--data');
  }
  const { set } = loadEvalSet(bench, inputs);

  const merged = new Map<string, PredictionRecord>();
  const from = new Map<string, string>();
  for (const r of runs) {
    for (const [k, p] of readPredictions(r.dir)) {
      const prev = merged.get(k);
      if (prev && prev.prediction !== p.prediction) {
        throw new InputError(`item ${k} has different predictions in ${from.get(k)} and ${r.dir}`, r.dir);
      }
      merged.set(k, p);
      from.set(k, r.dir);
    }
  }
  const keys = new Set(Array.from({ length: set.table.length }, (_, i) => set.table.str(i, 'index')));
  for (const k of merged.keys()) if (!keys.has(k)) throw new InputError(`prediction for index ${k} is not in the data ${inputs.data.join(', ')}`, from.get(k)!);

  mkdirSync(o.out, { recursive: true });
  const fin = finishPredictions(bench, set, merged, o.out, { sharded: false, extra: { merged_from: o.runs }, testSplit: bench.route === 'vqav2' ? inputs.answers : undefined, officialVqa: o.officialVqa });
  return { bench: bench.name, dataset: bench.dataset, out: o.out, total: set.table.length, merged: merged.size, shards: [...seenShard.keys()].sort(), ...fin };
}
