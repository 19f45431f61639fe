// `mgllava eval` as a library call: read the benchmark, open (or continue) the run folder, answer
// the items of this shard that are not done, then write the predictions TSV VLMEvalKit users know
// and, for a whole (unsharded) run, score it exactly as `eval score` does. Video QA (MSVD-QA,
// MSRVTT-QA): each item's video sampled as the release samples it (`frames`, default 8, part of
// the run's identity), scored after the run through the judge (--judge-url) or the labelled
// exact-match fallback, as `eval score` scores video predictions.

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { resolveModelFiles, type ModelSpec } from '../model/model-files.js';
import type { DetectionSettings } from '../model/mg-llava.js';
import { indexBoxEntries } from '../preprocess/box-index.js';
import { parseVideoBoxJson, videoBoxEntry } from '../video/boxes.js';
import { EndpointAnswerer } from './answer-endpoint.js';
import { evalVideoSettings, LocalAnswerer, localModelIdentity, type BoxSource, type EvalVideoSettings } from './answer-local.js';
import { benchmarkFor, NOT_SCORED_FROM_TSV, type Benchmark } from './benchmarks.js';
import type { EvalSet } from './dataset.js';
import { loadEvalSet, type SetInputs } from './load-set.js';
import type { PromptStyle } from './prompts.js';
import { dataFileId, fileSha256, RunDir, shardRows, type PredictionRecord, type RunIdentity, type Shard } from './run-dir.js';
import { runItems, type Answerer, type RunProgress } from './runner.js';
import { checkOfficialVqa, scoreAndWrite, type ScoreFiles, type ScoreResult } from './score.js';
import { formatTsvQuoteAll, parseTsv, type Cell, type ColumnKind } from './tsv.js';
import { releaseScore, type ReleaseScore } from './release-score.js';
import { scoreVideoQa, type JudgeSettings } from './score-video.js';
import { formatVqav2Upload, readVqav2TestSplit, vqav2UploadFile } from './vqav2.js';

export const DEFAULT_EVAL_MAX_NEW_TOKENS = 100;

export type EvalTarget =
  | { kind: 'local'; spec: ModelSpec; threads?: number; template?: string; packedCache?: string | false; detection?: DetectionSettings }
  | { kind: 'endpoint'; url: string; model?: string; apiKey?: string; concurrency: number };

export interface EvalRunOptions extends SetInputs {
  bench: string;
  out: string;
  target: EvalTarget;
  /** the release's box file for this benchmark */
  boxes?: string;
  /** no boxes at all (the object branch sees one empty box) */
  noBoxes?: boolean;
  limit?: number;
  shard?: Shard | null;
  style: PromptStyle;
  maxNewTokens?: number;
  maxPixels?: number;
  /** TextVQA: score with the official (MMF m4c) evaluator */
  officialVqa?: boolean;
  /** video QA: frames sampled per video (default 8, the release's) */
  frames?: number;
  /** video QA: score through this judge (judge.ts) instead of the exact-match fallback */
  judge?: JudgeSettings;
  /** video QA: judge verdicts made (or found in the run folder's judge.jsonl) so far */
  onJudged?: (done: number, total: number) => void;
  onProgress?: (p: RunProgress) => void;
  onNote?: (m: string) => void;
  /** called once the model is loaded (or found unneeded) */
  onReady?: (what: string) => void;
}

export interface EvalRunResult {
  bench: string;
  dataset: string;
  out: string;
  /** items in this run (its shard, after --limit) */
  total: number;
  made: number;
  resumed: number;
  predictions: string;
  /** the score of a whole run (null: sharded, or no answers to score with) */
  score: (ScoreResult & { files?: ScoreFiles }) | null;
  /** why there is no score */
  note?: string;
  /** the release's own score, where it differs from VLMEvalKit's (release-score.ts) */
  release?: ReleaseScore;
}

/** The release's video box JSON (a list of {video, frames}), every row's video in it with an entry per sampled frame. */
function readVideoBoxSource(o: EvalRunOptions, boxes: string, set: EvalSet, rows: readonly number[], frames: number): { source: BoxSource; id: Promise<string> } {
  const path = resolve(boxes);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`--boxes ${boxes}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (e as Error).message}`, '--boxes');
  }
  let index;
  try {
    index = parseVideoBoxJson(text, boxes);
  } catch (e) {
    if (e instanceof InputError) throw new InputError(`--boxes for ${o.bench} is the release's video box JSON ([{"video": "name.ext", "frames": [{boxes, labels, scores}, ...]}]): ${e.message}`, '--boxes');
    throw e;
  }
  for (const r of rows) videoBoxEntry(index, boxes, set.boxKeys(r)[0]!, frames);
  return { source: { kind: 'video-file', path: boxes, index }, id: fileSha256(path).then((h) => `video file sha256:${h}`) };
}

function readBoxSource(o: EvalRunOptions, set: EvalSet, rows: readonly number[], video: EvalVideoSettings | null): { source: BoxSource; id: Promise<string> } {
  if (o.boxes && o.noBoxes) throw new InputError('give --boxes FILE or --no-boxes, not both', '--boxes');
  if (video && o.boxes && o.target.kind === 'local') return readVideoBoxSource(o, o.boxes, set, rows, video.frames);
  if (o.noBoxes) return { source: { kind: 'none' }, id: Promise.resolve('none') };
  if (!o.boxes) {
    if (o.target.kind === 'endpoint') return { source: { kind: 'none' }, id: Promise.resolve('the endpoint\'s own') };
    if (!resolveModelFiles(o.target.spec).detector) {
      throw new InputError('no box file and no detector: give --boxes FILE (the release\'s box JSON for this benchmark), --detector DIR (or a model with one), or --no-boxes', '--boxes');
    }
    const d = o.target.detection;
    const tags = d?.tags === undefined ? 'config' : Array.isArray(d.tags) ? d.tags : (d.tags as { name: string }).name;
    return { source: { kind: 'detector' }, id: Promise.resolve(`detector ${JSON.stringify({ tags, threshold: d?.threshold ?? 'config' })}`) };
  }
  if (o.target.kind === 'endpoint') throw new InputError('--boxes is for a local model; an endpoint finds its own boxes', '--boxes');
  const path = resolve(o.boxes);
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`--boxes ${o.boxes}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : `not valid JSON (${(e as Error).message})`}`, '--boxes');
  }
  const index = indexBoxEntries(doc, o.boxes);
  for (const r of rows) {
    const keys = set.boxKeys(r);
    if (!keys.some((k) => index.has(k))) throw new InputError(`${o.boxes}: no box entry for row ${keys[0]} (entries are matched by the item's index / question_id)`, '--boxes');
  }
  return { source: { kind: 'file', path: o.boxes, index }, id: fileSha256(path).then((h) => `file sha256:${h}`) };
}

/** Predictions TSV: every data column but `image`, plus `prediction`, rows in data order. */
export function predictionsTsv(set: EvalSet, done: ReadonlyMap<string, PredictionRecord>): string {
  const t = set.table;
  const keep = t.columns.map((c, j) => (c === 'image' ? -1 : j)).filter((j) => j >= 0);
  const columns = [...keep.map((j) => t.columns[j]!), 'prediction'];
  const kinds: ColumnKind[] = [...keep.map((j) => t.kinds[j]!), 'str'];
  const rows: Cell[][] = [];
  for (let r = 0; r < t.length; r++) {
    const p = done.get(t.str(r, 'index'));
    if (p) rows.push([...keep.map((j) => t.data[r]![j]!), p.prediction]);
  }
  return formatTsvQuoteAll(columns, rows, kinds);
}

/** Write `text` to `path` through a temporary file (never half-written). */
export function writeAtomic(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

export interface FinishOptions {
  /** a shard: written, not scored */
  sharded: boolean;
  /** more fields for summary.json */
  extra?: Record<string, unknown>;
  /** VQAv2: the full test split for the upload file */
  testSplit?: string;
  /** TextVQA: the official (MMF m4c) evaluator instead of VLMEvalKit's */
  officialVqa?: boolean;
}

/** Write the predictions file of `done` into `out` and score it when it can be. */
export function finishPredictions(bench: Benchmark, set: EvalSet, done: ReadonlyMap<string, PredictionRecord>, out: string, f: FinishOptions): Pick<EvalRunResult, 'predictions' | 'score' | 'note' | 'release'> {
  const { sharded, extra = {}, testSplit } = f;
  const predictions = join(out, `${bench.dataset}_predictions.tsv`);
  const text = predictionsTsv(set, done);
  writeAtomic(predictions, text);
  if (sharded) return { predictions, score: null, note: 'a shard: merge the shards (mgllava eval merge) to score them' };
  if (done.size === 0) return { predictions, score: null, note: 'no predictions yet' };
  if (bench.route === 'vqav2') {
    // The EvalAI upload file over the whole test split (the questions file when none is given).
    const ids = testSplit ? readVqav2TestSplit(testSplit) : Array.from({ length: set.table.length }, (_, r) => set.table.get(r, 'index') as number | string);
    const upload = join(out, `${bench.dataset}_upload.json`);
    writeAtomic(upload, formatVqav2Upload(vqav2UploadFile(ids, new Map([...done].map(([k, p]) => [k, p.prediction])))));
    return { predictions, score: null, note: `VQAv2 test-dev is scored by the EvalAI server: upload ${upload}` };
  }
  if (NOT_SCORED_FROM_TSV.includes(bench.route) && bench.route !== 'video_qa') return { predictions, score: null, note: `${bench.name} is not scored here yet` };
  if (!set.table.has('answer')) return { predictions, score: null, note: 'the data has no answers to score with' };
  if (bench.route === 'video_qa') {
    return { predictions, score: null, note: `score the predictions with: mgllava eval score --bench ${bench.name} --data QUESTIONS --answers ANSWERS --predictions ${predictions} [--judge-url URL]` };
  }
  // Scored from the file as written, read back the pandas way (as VLMEvalKit scores its own dump).
  // An index held as text (ids with leading zeros) stays text; the official TextVQA evaluator
  // reads the answers as the model gave them (the release's jsonl), not through pandas.
  const pred = parseTsv(text, [...(set.table.kind('index') === 'str' ? ['index'] : []), ...(f.officialVqa ? ['prediction'] : [])]);
  const release = releaseScore(bench, set.table, new Map([...done].map(([k, p]) => [k, p.prediction])));
  const score = scoreAndWrite(bench, set.table, pred, { data: set.files[0]!, predictions }, out, { ...extra, ...(release ? { release_score: release } : {}) }, { officialVqa: f.officialVqa });
  return { predictions, score, ...(release ? { release } : {}) };
}

export async function runEval(o: EvalRunOptions): Promise<EvalRunResult> {
  const bench = benchmarkFor(o.bench);
  if (o.officialVqa) checkOfficialVqa(bench);
  const maxNewTokens = o.maxNewTokens ?? DEFAULT_EVAL_MAX_NEW_TOKENS;
  const isVideo = bench.route === 'video_qa';
  if (!isVideo && o.frames !== undefined) throw new InputError(`--frames goes with the video QA benchmarks (msvd_qa, msrvtt_qa), not ${bench.name}`, '--frames');
  if (!isVideo && o.judge) throw new InputError(`--judge-url goes with the video QA benchmarks (msvd_qa, msrvtt_qa), not ${bench.name}`, '--judge-url');
  if (o.frames !== undefined && (!Number.isInteger(o.frames) || o.frames < 1)) throw new InputError(`--frames ${o.frames}: expected a positive integer`, '--frames');
  const video = isVideo ? evalVideoSettings(o.frames, bench.boxLimit) : null;
  const { set, fromJsonl } = loadEvalSet(bench, o);
  let rows = shardRows(set.table.length, o.shard ?? null);
  if (o.limit !== undefined) rows = rows.slice(0, o.limit);
  const boxes = readBoxSource(o, set, rows, video);

  let answerer: Answerer | undefined;
  let modelId: string;
  if (o.target.kind === 'endpoint') {
    answerer = await EndpointAnswerer.connect({ ...o.target, maxNewTokens, ...(video ? { video } : {}) });
    modelId = answerer.identity;
  } else {
    modelId = localModelIdentity(o.target.spec, o.target.template);
  }
  // A video run's sampling is part of what decides its answers: kept in `boxes` (the field the
  // visual input is compared by) and, readable, in `video`.
  const boxesId = await boxes.id;
  const identity: RunIdentity & { video?: EvalVideoSettings } = {
    bench: bench.name,
    dataset: bench.dataset,
    data: await Promise.all([...o.data, ...(o.answers ? [o.answers] : [])].map(dataFileId)),
    model: modelId,
    promptStyle: o.style,
    maxNewTokens,
    boxes: video ? `${boxesId}; video frames ${video.frames}, pad ${video.pad}, box limit ${video.limit ?? 'none'}` : boxesId,
    shard: o.shard && o.shard.n > 1 ? o.shard : null,
    ...(video ? { video } : {}),
  };
  const run = RunDir.open(o.out, identity, { data: o.data.map((d) => resolve(d)), images: o.images ? resolve(o.images) : null, answers: o.answers ? resolve(o.answers) : null });
  try {
    const todo = rows.filter((r) => !run.done.has(set.table.str(r, 'index'))).length;
    let result = { made: 0, resumed: rows.length };
    if (todo > 0) {
      if (!answerer && o.target.kind === 'local') {
        answerer = await LocalAnswerer.load({ ...o.target, boxes: boxes.source, boxLimit: bench.boxLimit, maxNewTokens, runDir: o.out, maxPixels: o.maxPixels, ...(video ? { frames: video.frames } : {}), onNote: o.onNote });
      }
      o.onReady?.(`${todo} of ${rows.length} items to answer`);
      result = await runItems({ bench, set, style: o.style, fromJsonl, run, answerer: answerer!, rows, onProgress: o.onProgress });
    } else {
      o.onReady?.(`all ${rows.length} items are done`);
    }
    const keys = new Set(rows.map((r) => set.table.str(r, 'index')));
    const inRun = new Map([...run.done].filter(([k]) => keys.has(k)));
    const fin = finishPredictions(bench, set, inRun, o.out, { sharded: identity.shard !== null, extra: { identity }, testSplit: bench.route === 'vqav2' ? o.answers : undefined, officialVqa: o.officialVqa });
    if (isVideo && identity.shard === null && inRun.size > 0) {
      // Scored as `eval score` scores video predictions; the judge's verdicts kept in judge.jsonl.
      const score = await scoreVideoQa(bench, set, new Map([...inRun].map(([k, p]) => [k, p.prediction])), { judge: o.judge, out: o.out, predictionsPath: fin.predictions, onJudged: o.onJudged });
      if (score.files) {
        const summary = JSON.parse(readFileSync(score.files.summary, 'utf8')) as Record<string, unknown>;
        writeAtomic(score.files.summary, JSON.stringify({ ...summary, identity }, null, 2) + '\n');
      }
      return { bench: bench.name, dataset: bench.dataset, out: o.out, total: rows.length, ...result, predictions: fin.predictions, score };
    }
    return { bench: bench.name, dataset: bench.dataset, out: o.out, total: rows.length, ...result, ...fin };
  } finally {
    run.close();
    await answerer?.close();
  }
}
