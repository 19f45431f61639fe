// `mgllava eval`: run a benchmark (resumable, shardable) on a local model or an OpenAI-compatible
// endpoint; `eval score`: score a predictions TSV (VLMEvalKit rules); `eval merge`: combine shards.

import { resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import type { ModelSpec } from '../model/model-files.js';
import { mergeRuns } from '../eval/merge.js';
import { PROMPT_STYLES, type PromptStyle } from '../eval/prompts.js';
import { parseShard } from '../eval/run-dir.js';
import { runEval, type EvalTarget } from '../eval/run.js';
import { scoreBenchmark, type ScoreFiles, type ScoreResult } from '../eval/score.js';
import { readVideoPredictions, scoreVideoQa } from '../eval/score-video.js';
import { benchmarkFor } from '../eval/benchmarks.js';
import { loadEvalSet } from '../eval/load-set.js';
import { noteOnStderr, Progress } from './progress.js';
import { detectionFlags } from './detect.js';

export interface EvalScoreOptions {
  bench: string;
  data: string;
  predictions: string;
  answers?: string;
  out?: string;
  json?: boolean;
  judgeUrl?: string;
  judgeModel?: string;
  judgeKeyEnv?: string;
  concurrency?: number;
  quiet?: boolean;
  officialVqaNormalisation?: boolean;
}

type Write = (s: string) => void;
const stdout: Write = (s) => process.stdout.write(s);

function fmt(v: string | number | undefined): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(4);
  return v ?? '';
}

/** The score table as aligned text lines. */
function scoreText(r: ScoreResult): string {
  const cells = [r.table.columns, ...r.table.rows.map((row) => r.table.columns.map((c) => fmt(row[c])))];
  const widths = r.table.columns.map((_, j) => Math.max(...cells.map((l) => l[j]!.length)));
  const lines = cells.map((l) => l.map((c, j) => c.padEnd(widths[j]!)).join('  ').trimEnd());
  return `${r.bench} (${r.dataset}): overall ${fmt(r.overall)} over ${r.items.length} items\n${lines.join('\n')}\n`;
}

/** Video QA: the judge protocol through --judge-url, else the labelled exact-match fallback. */
async function scoreVideo(o: EvalScoreOptions): Promise<ScoreResult & { files?: ScoreFiles }> {
  const bench = benchmarkFor(o.bench);
  const { set } = loadEvalSet(bench, { data: [resolve(o.data)], answers: o.answers && resolve(o.answers) });
  const predictions = resolve(o.predictions);
  const bar = new Progress(!o.quiet && !o.json && Boolean(o.judgeUrl)).bar('judging');
  const r = await scoreVideoQa(bench, set, readVideoPredictions(predictions), {
    judge: o.judgeUrl ? { url: o.judgeUrl, model: o.judgeModel, apiKeyEnv: o.judgeKeyEnv, concurrency: o.concurrency } : undefined,
    out: o.out && resolve(o.out),
    predictionsPath: predictions,
    onJudged: (done, total) => bar.update(done, total),
  });
  bar.end(true);
  return r;
}

export async function runEvalScore(o: EvalScoreOptions, write: Write = stdout): Promise<void> {
  const video = benchmarkFor(o.bench).route === 'video_qa';
  if (!video && (o.judgeUrl || o.answers)) throw new InputError(`--judge-url and --answers go with the video QA benchmarks (msvd_qa, msrvtt_qa)`, o.judgeUrl ? '--judge-url' : '--answers');
  const r = video
    ? await scoreVideo(o)
    : scoreBenchmark({ bench: o.bench, data: resolve(o.data), predictions: resolve(o.predictions), out: o.out ? resolve(o.out) : undefined, officialVqa: o.officialVqaNormalisation });
  if (o.json) {
    write(JSON.stringify(r) + '\n');
    return;
  }
  write(scoreText(r));
  if (r.files) write(`wrote ${r.files.score}, ${r.files.results}, ${r.files.summary}\n`);
}

export interface EvalRunCliOptions extends ModelSpec {
  bench: string;
  data: string[];
  images?: string;
  answers?: string;
  /** a path, or false for --no-boxes */
  boxes?: string | false;
  tags?: string;
  coco?: boolean;
  threshold?: number;
  endpoint?: string;
  endpointModel?: string;
  apiKeyEnv: string;
  concurrency: number;
  out: string;
  limit?: number;
  shard?: string;
  promptStyle: string;
  maxNewTokens: number;
  maxPixels: number;
  officialVqaNormalisation?: boolean;
  /** video QA: frames sampled per video */
  frames?: number;
  judgeUrl?: string;
  judgeModel?: string;
  judgeKeyEnv?: string;
  threads?: number;
  template?: string;
  packedCache?: string | false;
  json?: boolean;
  quiet?: boolean;
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export async function runEvalRun(o: EvalRunCliOptions, write: Write = stdout): Promise<void> {
  if (!PROMPT_STYLES.includes(o.promptStyle as PromptStyle)) throw new InputError(`--prompt-style ${o.promptStyle}: expected ${PROMPT_STYLES.join(' or ')}`, '--prompt-style');
  const spec: ModelSpec = { model: o.model, checkpoint: o.checkpoint, llm: o.llm, visualEncoder: o.visualEncoder, visualEncoderAux: o.visualEncoderAux, detector: o.detector };
  const named = Object.values(spec).some((v) => v !== undefined);
  const detection = detectionFlags({ ...o, boxes: typeof o.boxes === 'string' ? o.boxes : undefined });
  const detectorGiven = o.detector !== undefined || o.tags !== undefined || o.coco === true || o.threshold !== undefined;
  if (detectorGiven && o.boxes === false) throw new InputError('--no-boxes and the detector flags (--detector/--tags/--coco/--threshold) contradict each other', '--no-boxes');
  let target: EvalTarget;
  if (o.endpoint) {
    if (detectorGiven) throw new InputError('the detector flags are for a local model; an endpoint finds its own boxes', '--endpoint');
    if (named) throw new InputError('give a local model (--model, ...) or --endpoint, not both', '--endpoint');
    target = { kind: 'endpoint', url: o.endpoint, model: o.endpointModel, apiKey: process.env[o.apiKeyEnv], concurrency: o.concurrency };
  } else {
    if (o.endpointModel) throw new InputError('--endpoint-model goes with --endpoint', '--endpoint-model');
    target = { kind: 'local', spec, threads: o.threads, template: o.template, packedCache: o.packedCache, detection };
  }
  const video = benchmarkFor(o.bench).route === 'video_qa';
  if (!video) {
    if (o.frames !== undefined) throw new InputError(`--frames goes with the video QA benchmarks (msvd_qa, msrvtt_qa), not ${o.bench}`, '--frames');
    if (o.judgeUrl) throw new InputError(`--judge-url goes with the video QA benchmarks (msvd_qa, msrvtt_qa), not ${o.bench}`, '--judge-url');
  }
  if (o.judgeUrl === undefined && (o.judgeModel !== undefined || o.judgeKeyEnv !== undefined)) {
    throw new InputError(`${o.judgeModel !== undefined ? '--judge-model' : '--judge-key-env'} goes with --judge-url`, o.judgeModel !== undefined ? '--judge-model' : '--judge-key-env');
  }
  const progress = new Progress(!o.quiet && !o.json);
  const bar = progress.bar(`eval ${o.bench}`);
  const judging = progress.bar('judging');
  let judged = false;
  let ok = false;
  try {
    const r = await runEval({
      bench: o.bench,
      data: o.data.map((d) => resolve(d)),
      images: o.images && resolve(o.images),
      answers: o.answers && resolve(o.answers),
      boxes: typeof o.boxes === 'string' ? resolve(o.boxes) : undefined,
      noBoxes: o.boxes === false,
      out: resolve(o.out),
      target,
      limit: o.limit,
      shard: o.shard ? parseShard(o.shard) : null,
      style: o.promptStyle as PromptStyle,
      maxNewTokens: o.maxNewTokens,
      maxPixels: o.maxPixels,
      officialVqa: o.officialVqaNormalisation,
      ...(o.frames !== undefined ? { frames: o.frames } : {}),
      ...(o.judgeUrl ? { judge: { url: o.judgeUrl, model: o.judgeModel, apiKeyEnv: o.judgeKeyEnv ?? 'OPENAI_API_KEY', concurrency: o.concurrency } } : {}),
      onJudged: (done, total) => {
        if (!judged) bar.end(true);
        judged = true;
        judging.update(done, total);
      },
      onNote: noteOnStderr(o.quiet),
      onProgress: (p) => {
        const parts = [p.etaMs !== null && p.done < p.total ? `ETA ${duration(p.etaMs)}` : '', p.score !== null ? `score ${p.score.toFixed(3)}` : ''].filter((x) => x);
        bar.update(p.done, p.total, parts.join(', '));
      },
    });
    ok = true;
    if (judged) judging.end(true);
    else bar.end(true);
    if (o.json) {
      const { score, ...rest } = r;
      write(JSON.stringify({ ...rest, ...(score ? { overall: score.overall, table: score.table, files: score.files } : {}) }) + '\n');
      return;
    }
    write(`${r.out}: ${r.total} items (${r.made} answered now, ${r.resumed} before); predictions in ${r.predictions}\n`);
    if (r.score) {
      write(scoreText(r.score));
      if (r.release) write(`${r.release.method}: ${fmt(r.release.value)}\n`);
      if (r.score.files) write(`wrote ${r.score.files.score}, ${r.score.files.results}, ${r.score.files.summary}, ${r.score.files.markdown}\n`);
    } else if (r.note) {
      write(`not scored: ${r.note}\n`);
    }
  } finally {
    if (!ok) (judged ? judging : bar).end(false);
  }
}

export interface EvalMergeCliOptions {
  out?: string;
  data?: string[];
  images?: string;
  answers?: string;
  json?: boolean;
  officialVqaNormalisation?: boolean;
}

export async function runEvalMerge(runs: string[], o: EvalMergeCliOptions, write: Write = stdout): Promise<void> {
  const dirs = runs.map((d) => resolve(d));
  const out = resolve(o.out ?? `${dirs[0]}.merged`);
  const r = await mergeRuns({ runs: dirs, out, data: o.data?.map((d) => resolve(d)), images: o.images && resolve(o.images), answers: o.answers && resolve(o.answers), officialVqa: o.officialVqaNormalisation });
  if (o.json) {
    const { score, ...rest } = r;
    write(JSON.stringify({ ...rest, ...(score ? { overall: score.overall, table: score.table, files: score.files } : {}) }) + '\n');
    return;
  }
  write(`${r.out}: ${r.merged} of ${r.total} items from ${runs.length} runs (shards ${r.shards.join(', ')}); predictions in ${r.predictions}\n`);
  if (r.merged < r.total) write(`note: ${r.total - r.merged} items have no prediction yet\n`);
  if (r.score) {
    write(scoreText(r.score));
    if (r.release) write(`${r.release.method}: ${fmt(r.release.value)}\n`);
  } else if (r.note) {
    write(`not scored: ${r.note}\n`);
  }
}
