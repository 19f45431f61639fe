// The run folder of `mgllava eval`: what the run is (run.json) and its predictions so far
// (predictions.jsonl, one line per item, appended and flushed as each is made).
//
//   RUN_DIR/run.json            {version, identity: {bench, data files (size, sha256), model,
//                                prompt style, generation, boxes, shard}, created}
//   RUN_DIR/predictions.jsonl   {"index": "12", "prediction": "B", "ms": 812}
//   RUN_DIR/detections.jsonl    detector boxes per box key, when the detector made them
//
// A rerun with the same folder continues: items already in predictions.jsonl are skipped. A torn
// last line (the process was killed mid-write) is cut off before appending. A different identity
// is refused, so that two models or prompt styles are never mixed in one file.

import { closeSync, createReadStream, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';

export const RUN_FILE = 'run.json';
export const PREDICTIONS_FILE = 'predictions.jsonl';
export const DETECTIONS_FILE = 'detections.jsonl';

export interface DataFileId {
  path: string;
  bytes: number;
  sha256: string;
}

export interface Shard {
  /** 1-based */
  i: number;
  n: number;
}

/** Everything that decides the predictions; two runs with equal identities may share a folder. */
export interface RunIdentity {
  bench: string;
  dataset: string;
  data: DataFileId[];
  /** the model or endpoint, as a text that changes when it does */
  model: string;
  promptStyle: string;
  maxNewTokens: number;
  /** where boxes come from: a box file (with its sha256), the detector, or none */
  boxes: string;
  shard: Shard | null;
}

export interface PredictionRecord {
  index: string;
  prediction: string;
  /** milliseconds the item took */
  ms?: number;
}

export async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export async function dataFileId(path: string): Promise<DataFileId> {
  const p = resolve(path);
  return { path: p, bytes: statSync(p).size, sha256: await fileSha256(p) };
}

/** The first field where two identities differ, as "field: a vs b", or null. */
export function identityDifference(a: RunIdentity, b: RunIdentity): string | null {
  const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));
  const fields: (keyof RunIdentity)[] = ['bench', 'dataset', 'model', 'promptStyle', 'maxNewTokens', 'boxes', 'shard'];
  for (const f of fields) if (JSON.stringify(a[f]) !== JSON.stringify(b[f])) return `${f}: ${show(a[f])} vs ${show(b[f])}`;
  const da = a.data.map((d) => d.sha256).join(',');
  const db = b.data.map((d) => d.sha256).join(',');
  if (da !== db) return `data: ${a.data.map((d) => d.path).join(', ')} (sha256 ${da.slice(0, 12)}) vs ${b.data.map((d) => d.path).join(', ')} (sha256 ${db.slice(0, 12)})`;
  return null;
}

/** A JSON-lines file appended one flushed line at a time; reading it drops a torn last line. */
export class JsonlLog<T> {
  private fd: number | undefined;

  constructor(readonly path: string) {}

  /** The complete lines (a torn last line is cut off the file). */
  read(parse: (v: unknown, line: number) => T): T[] {
    if (!existsSync(this.path)) return [];
    const text = readFileSync(this.path, 'utf8');
    const end = text.lastIndexOf('\n') + 1;
    if (end < text.length) truncateSync(this.path, Buffer.byteLength(text.slice(0, end)));
    const out: T[] = [];
    text.slice(0, end).split('\n').forEach((line, i) => {
      if (!line) return;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        throw new InputError(`${this.path}: line ${i + 1} is not JSON`, this.path);
      }
      out.push(parse(v, i + 1));
    });
    return out;
  }

  append(value: T): void {
    this.fd ??= openSync(this.path, 'a');
    writeSync(this.fd, JSON.stringify(value) + '\n');
    fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function parsePrediction(path: string) {
  return (v: unknown, line: number): PredictionRecord => {
    const o = v as Partial<PredictionRecord> | null;
    if (!o || typeof o.index !== 'string' || typeof o.prediction !== 'string') {
      throw new InputError(`${path}: line ${line} is not {"index": ..., "prediction": ...}`, path);
    }
    return { index: o.index, prediction: o.prediction, ...(typeof o.ms === 'number' ? { ms: o.ms } : {}) };
  };
}

/** The files a run read, as given (merge reads them again; not part of the identity). */
export interface RunInputs {
  data: string[];
  images: string | null;
  answers: string | null;
}

interface RunFile {
  version: 1;
  identity: RunIdentity;
  inputs: RunInputs;
  created: string;
}

/** Read RUN_DIR/run.json (an InputError naming the folder when it is not a run folder). */
export function readRunFile(dir: string): { identity: RunIdentity; inputs: RunInputs } {
  const p = join(dir, RUN_FILE);
  if (!existsSync(p)) throw new InputError(`${dir} is not an eval run folder (no ${RUN_FILE})`, dir);
  try {
    const f = JSON.parse(readFileSync(p, 'utf8')) as RunFile;
    if (f.version !== 1 || !f.identity || !f.inputs) throw new Error('unknown layout');
    return { identity: f.identity, inputs: f.inputs };
  } catch (e) {
    throw new InputError(`${p}: not a readable run file (${(e as Error).message})`, p);
  }
}

/** Every prediction of a run folder, in the order they were made (the last of a repeated index wins). */
export function readPredictions(dir: string): Map<string, PredictionRecord> {
  const log = new JsonlLog<PredictionRecord>(join(dir, PREDICTIONS_FILE));
  return new Map(log.read(parsePrediction(log.path)).map((r) => [r.index, r]));
}

export class RunDir {
  readonly predictions: JsonlLog<PredictionRecord>;
  /** index -> prediction, for the items already done */
  readonly done: Map<string, PredictionRecord>;

  private constructor(readonly dir: string, readonly identity: RunIdentity) {
    this.predictions = new JsonlLog(join(dir, PREDICTIONS_FILE));
    this.done = new Map(this.predictions.read(parsePrediction(this.predictions.path)).map((r) => [r.index, r]));
  }

  /** Create the folder for `identity`, or continue the run in it (refused if it is another run). */
  static open(dir: string, identity: RunIdentity, inputs: RunInputs): RunDir {
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new InputError(`--out ${dir} is a file, not a folder`, '--out');
    mkdirSync(dir, { recursive: true });
    const runFile = join(dir, RUN_FILE);
    const predictions = join(dir, PREDICTIONS_FILE);
    const answered = existsSync(predictions) && statSync(predictions).size > 0;
    let write = !existsSync(runFile);
    if (!write) {
      const before = readRunFile(dir).identity;
      const diff = identityDifference(before, identity);
      // A run that answered nothing yet (it failed before its first item) may be started over.
      if (diff && answered) throw new InputError(`${dir} holds another run (${diff}); use another --out to keep both`, '--out');
      write = diff !== null;
      // Nothing answered under the old identity: its detector boxes (other settings) go too.
      if (write) rmSync(join(dir, DETECTIONS_FILE), { force: true });
    } else if (answered) {
      throw new InputError(`${dir} has ${PREDICTIONS_FILE} but no ${RUN_FILE}; use another --out`, '--out');
    }
    if (write) {
      const tmp = `${runFile}.tmp`;
      const fd = openSync(tmp, 'w');
      writeSync(fd, JSON.stringify({ version: 1, identity, inputs, created: new Date().toISOString() } satisfies RunFile, null, 2) + '\n');
      fsyncSync(fd);
      closeSync(fd);
      renameSync(tmp, runFile);
    }
    return new RunDir(dir, identity);
  }

  record(r: PredictionRecord): void {
    this.predictions.append(r);
    this.done.set(r.index, r);
  }

  close(): void {
    this.predictions.close();
  }
}

/** "I/N" -> {i, n} (1 <= I <= N). */
export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const i = m ? Number(m[1]) : NaN;
  const n = m ? Number(m[2]) : NaN;
  if (!m || !(n >= 1) || !(i >= 1) || i > n) throw new InputError(`--shard ${s}: expected I/N with 1 <= I <= N (e.g. 1/4)`, '--shard');
  return { i, n };
}

/** The rows of shard I of N among `count`: a contiguous block, sizes differing by at most one. */
export function shardRows(count: number, shard: Shard | null): number[] {
  const s = shard ?? { i: 1, n: 1 };
  const lo = Math.floor(((s.i - 1) * count) / s.n);
  const hi = Math.floor((s.i * count) / s.n);
  return Array.from({ length: hi - lo }, (_, k) => lo + k);
}
