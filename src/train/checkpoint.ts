// Training checkpoints of `mgllava train`: one folder holding everything needed to resume.
//
//   model.safetensors      trainable weights, float32, under their model names
//                          (fuse_module.*, projector.model.*, bbox_projector.model.*, llm.* ...)
//   optimizer.safetensors  AdamW moments: exp_avg.<name>, exp_avg_sq.<name> (float32, the
//                          parameter's shape); __metadata__ "adamw" = JSON {betas, eps,
//                          weight_decay, steps: {<name>: step}}            (absent if not given)
//   trainer_state.json     the trainer's own JSON object (step, epoch, data order, rng state,
//                          schedule settings ...), opaque here
//   <extra files>          small files the caller adds (mgllava_config.json, an adapter ...)
//   checkpoint.json        manifest written last: format, version, every file's byte size
//
// Written atomically. The folder is built as `.<name>.tmp-<pid>-<hex>` beside the target (same
// parent, so renames stay on one file system), every file fsynced, the folder fsynced; then an
// existing checkpoint is renamed aside to `.<name>.old-<pid>-<hex>`, the new folder renamed
// into place, the parent fsynced, and the old one deleted. A kill at any point leaves either the
// previous complete checkpoint or the new complete one: between the two renames the previous one
// sits under its `.old-` name, and `recoverCheckpoint` (run by every write and read) moves it
// back. Leftover temp folders of dead writers are removed by the same recovery.

import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { InputError } from '../core/errors.js';
import { SafetensorsStore } from '../weights/safetensors.js';
import { TensorRef, readF32 } from '../weights/types.js';
import { TensorToWrite, writeSafetensors } from '../weights/write-safetensors.js';
import { AdamWParamState, AdamWState } from './optimizer.js';

export const MODEL_FILE = 'model.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const TRAINER_STATE_FILE = 'trainer_state.json';
export const MANIFEST_FILE = 'checkpoint.json';
const RESERVED = new Set([MODEL_FILE, OPTIMIZER_FILE, TRAINER_STATE_FILE, MANIFEST_FILE]);
const FORMAT = 'mgllava-train-checkpoint';
const VERSION = 1;
const ADAMW_META = 'adamw';

/** A float32 tensor: row-major data and its shape. */
export interface CheckpointTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export interface CheckpointContents {
  /** Trainable weights by name. */
  readonly model: ReadonlyMap<string, CheckpointTensor>;
  /** AdamW state (moments get the shape of the model tensor of the same name, else 1-D). */
  readonly optimizer?: AdamWState;
  /** The trainer's state: a plain JSON object. */
  readonly trainerState: Readonly<Record<string, unknown>>;
  /** Extra files by plain file name (no folders, not a reserved name, not hidden). */
  readonly files?: ReadonlyMap<string, string | Uint8Array>;
}

export interface LoadedCheckpoint {
  readonly dir: string;
  readonly model: Map<string, CheckpointTensor>;
  readonly optimizer?: AdamWState;
  readonly trainerState: Record<string, unknown>;
  readonly files: Map<string, Buffer>;
}

/** Points of `writeCheckpoint` that a fault-injection hook can observe (tests kill the process there). */
export type CheckpointStage = 'files-written' | 'complete' | 'old-moved-aside' | 'renamed';

export interface WriteCheckpointOptions {
  /** Called at each stage; for fault-injection tests. */
  readonly onStage?: (stage: CheckpointStage) => void;
}

/** Write `contents` as the checkpoint folder `dir`, replacing an older checkpoint there only once the new one is complete. */
export function writeCheckpoint(dir: string, contents: CheckpointContents, opts: WriteCheckpointOptions = {}): void {
  const target = resolve(dir);
  const parent = dirname(target);
  const name = basename(target);
  validate(dir, contents);
  mkdirSync(parent, { recursive: true });
  recoverCheckpoint(dir);
  if (existsSync(target) && !isReplaceable(target)) {
    throw new InputError(`${dir}: exists and is not a training checkpoint (no ${MANIFEST_FILE}); refusing to replace it`, dir);
  }

  const tmp = join(parent, `.${name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    mkdirSync(tmp);
  } catch (e) {
    throw new InputError(`${dir}: cannot create ${tmp} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, dir);
  }
  let movedAside: string | undefined;
  try {
    const sizes: Record<string, number> = {};
    const put = (file: string, bytes: Uint8Array) => {
      writeFileSynced(join(tmp, file), bytes);
      sizes[file] = bytes.byteLength;
    };
    writeSafetensors(join(tmp, MODEL_FILE), modelTensors(contents.model), { format: 'pt' });
    sizes[MODEL_FILE] = statSync(join(tmp, MODEL_FILE)).size;
    if (contents.optimizer) {
      const { tensors, meta } = optimizerTensors(contents.optimizer, contents.model);
      writeSafetensors(join(tmp, OPTIMIZER_FILE), tensors, { format: 'pt', [ADAMW_META]: meta });
      sizes[OPTIMIZER_FILE] = statSync(join(tmp, OPTIMIZER_FILE)).size;
    }
    put(TRAINER_STATE_FILE, Buffer.from(JSON.stringify(contents.trainerState, null, 2) + '\n', 'utf8'));
    for (const [file, data] of contents.files ?? []) put(file, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    opts.onStage?.('files-written');
    put(MANIFEST_FILE, Buffer.from(JSON.stringify({ format: FORMAT, version: VERSION, files: sizes }, null, 2) + '\n', 'utf8'));
    fsyncDir(tmp);
    opts.onStage?.('complete');

    if (existsSync(target)) {
      movedAside = join(parent, `.${name}.old-${process.pid}-${randomBytes(4).toString('hex')}`);
      renameSync(target, movedAside);
      opts.onStage?.('old-moved-aside');
    }
    renameSync(tmp, target);
    fsyncDir(parent);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (movedAside && !existsSync(target)) {
      try {
        renameSync(movedAside, target);
        movedAside = undefined;
      } catch {
        // left for recoverCheckpoint
      }
    }
    const code = (e as NodeJS.ErrnoException).code;
    if (code && !(e instanceof InputError)) throw new InputError(`${dir}: cannot write the checkpoint (${code})`, dir);
    throw e;
  }
  opts.onStage?.('renamed');
  if (movedAside) rmSync(movedAside, { recursive: true, force: true });
}

/**
 * Finish or undo an interrupted `writeCheckpoint` of `dir`: when `dir` is missing, the previous
 * checkpoint left under its `.old-` name is moved back; `.old-` copies beside a complete `dir`
 * are deleted; temp folders of writers that are no longer running are deleted.
 */
export function recoverCheckpoint(dir: string): void {
  const target = resolve(dir);
  const parent = dirname(target);
  const name = basename(target);
  let entries: string[];
  try {
    entries = readdirSync(parent);
  } catch {
    return;
  }
  const olds: string[] = [];
  for (const e of entries) {
    const m = /^\.(.+)\.(tmp|old)-(\d+)-[0-9a-f]+$/.exec(e);
    if (!m || m[1] !== name) continue;
    const path = join(parent, e);
    if (m[2] === 'tmp') {
      const pid = Number(m[3]);
      if (pid === process.pid || !processAlive(pid)) rmSync(path, { recursive: true, force: true });
    } else {
      olds.push(path);
    }
  }
  if (olds.length === 0) return;
  // Newest first; only complete ones may come back.
  olds.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!existsSync(target)) {
    const good = olds.find((p) => manifestProblem(p) === undefined);
    if (good) renameSync(good, target);
    fsyncDir(parent);
  }
  if (existsSync(target) && manifestProblem(target) === undefined) {
    for (const p of olds) if (existsSync(p)) rmSync(p, { recursive: true, force: true });
  }
}

/** Read a checkpoint written by `writeCheckpoint` (after recovering an interrupted write). */
export function readCheckpoint(dir: string): LoadedCheckpoint {
  try {
    recoverCheckpoint(dir);
  } catch {
    // best effort (a read-only folder); the checks below say what is wrong
  }
  const target = resolve(dir);
  let st;
  try {
    st = statSync(target);
  } catch {
    throw new InputError(`${dir}: no training checkpoint here (no such folder)`, dir);
  }
  if (!st.isDirectory()) throw new InputError(`${dir}: not a training checkpoint (not a folder)`, dir);
  const problem = manifestProblem(target);
  if (problem) throw new InputError(`${dir}: not a complete training checkpoint (${problem})`, dir);
  const manifest = JSON.parse(readFileSync(join(target, MANIFEST_FILE), 'utf8')) as { files: Record<string, number> };

  const model = new Map<string, CheckpointTensor>();
  const store = SafetensorsStore.open(join(target, MODEL_FILE));
  for (const k of store.keys()) {
    const ref = store.get(k)!;
    model.set(k, { shape: [...ref.shape], data: readTensorF32(ref) });
  }

  let optimizer: AdamWState | undefined;
  if (manifest.files[OPTIMIZER_FILE] !== undefined) optimizer = readOptimizer(join(target, OPTIMIZER_FILE), dir);

  let trainerState: Record<string, unknown>;
  const statePath = join(target, TRAINER_STATE_FILE);
  try {
    trainerState = JSON.parse(readFileSync(statePath, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`${statePath}: corrupt (${(e as Error).message})`, statePath);
  }
  if (!isPlainObject(trainerState)) throw new InputError(`${statePath}: corrupt (not a JSON object)`, statePath);

  const files = new Map<string, Buffer>();
  for (const f of Object.keys(manifest.files)) if (!RESERVED.has(f)) files.set(f, readFileSync(join(target, f)));
  return { dir, model, optimizer, trainerState, files };
}

// ---- contents -> safetensors ----

function modelTensors(model: ReadonlyMap<string, CheckpointTensor>): TensorToWrite[] {
  return [...model].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: t.data }));
}

function optimizerTensors(state: AdamWState, model: ReadonlyMap<string, CheckpointTensor>): { tensors: TensorToWrite[]; meta: string } {
  const tensors: TensorToWrite[] = [];
  const steps: Record<string, number> = {};
  for (const [name, s] of state.params) {
    const m = model.get(name);
    const shape = m && m.data.length === s.expAvg.length ? m.shape : [s.expAvg.length];
    tensors.push({ name: `exp_avg.${name}`, dtype: 'F32', shape, data: s.expAvg });
    tensors.push({ name: `exp_avg_sq.${name}`, dtype: 'F32', shape, data: s.expAvgSq });
    steps[name] = s.step;
  }
  const meta = JSON.stringify({ betas: [...state.betas], eps: state.eps, weight_decay: state.weightDecay, steps });
  return { tensors, meta };
}

function readOptimizer(path: string, dir: string): AdamWState {
  const store = SafetensorsStore.open(path);
  const bad = (why: string) => new InputError(`${path}: corrupt optimizer state (${why})`, dir);
  let meta: { betas?: unknown; eps?: unknown; weight_decay?: unknown; steps?: unknown };
  try {
    meta = JSON.parse(store.metadata[ADAMW_META] ?? '') as typeof meta;
  } catch {
    throw bad(`no "${ADAMW_META}" metadata`);
  }
  const { betas, eps, weight_decay: wd, steps } = meta;
  if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number')) throw bad('betas');
  if (typeof eps !== 'number' || typeof wd !== 'number') throw bad('eps or weight_decay');
  if (!isPlainObject(steps)) throw bad('steps');
  const params = new Map<string, AdamWParamState>();
  for (const [name, step] of Object.entries(steps)) {
    const m = store.get(`exp_avg.${name}`);
    const v = store.get(`exp_avg_sq.${name}`);
    if (!m || !v) throw bad(`moments of ${name} missing`);
    if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) throw bad(`step of ${name}`);
    const expAvg = readTensorF32(m);
    const expAvgSq = readTensorF32(v);
    if (expAvg.length !== expAvgSq.length) throw bad(`moments of ${name} differ in size`);
    params.set(name, { step, expAvg, expAvgSq });
  }
  return { betas: [betas[0] as number, betas[1] as number], eps, weightDecay: wd, params };
}

/** A tensor as float32; F32 file ranges are read straight into the array (one copy). */
function readTensorF32(ref: TensorRef): Float32Array {
  if (ref.dtype !== 'F32' || ref.source.kind !== 'file') return readF32(ref);
  const { path, offset, length } = ref.source;
  const out = new Float32Array(length / 4);
  const bytes = new Uint8Array(out.buffer);
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < length) {
      const n = readSync(fd, bytes, done, length - done, offset + done);
      if (n === 0) throw new InputError(`${path}: truncated (tensor ${ref.name})`, path);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

// ---- checks ----

function validate(dir: string, c: CheckpointContents): void {
  const bad = (why: string) => new InputError(`${dir}: cannot write the checkpoint (${why})`, dir);
  if (!isPlainObject(c.trainerState)) throw bad('trainerState must be a plain JSON object');
  for (const [name, t] of c.model) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw bad(`model tensor ${name} has ${t.data.length} values, shape [${t.shape.join(',')}] needs ${n}`);
  }
  for (const file of c.files?.keys() ?? []) {
    if (RESERVED.has(file) || file.startsWith('.') || !/^[A-Za-z0-9._-]+$/.test(file)) throw bad(`bad extra file name ${JSON.stringify(file)}`);
  }
}

/** Why `dir` is not a complete checkpoint, or undefined when its manifest and file sizes check out. */
function manifestProblem(dir: string): string | undefined {
  let manifest: unknown;
  try {
    manifest = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8'));
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? `${MANIFEST_FILE} missing` : `${MANIFEST_FILE} is not JSON`;
  }
  if (!isPlainObject(manifest) || manifest.format !== FORMAT || !isPlainObject(manifest.files)) return `${MANIFEST_FILE} is not a ${FORMAT} manifest`;
  if (manifest.version !== VERSION) return `format version ${String(manifest.version)}, this build reads ${VERSION}`;
  const files = manifest.files as Record<string, unknown>;
  for (const need of [MODEL_FILE, TRAINER_STATE_FILE]) if (files[need] === undefined) return `${need} not listed`;
  for (const [f, size] of Object.entries(files)) {
    let actual: number;
    try {
      actual = statSync(join(dir, f)).size;
    } catch {
      return `${f} missing`;
    }
    if (actual !== size) return `${f} has ${actual} bytes, ${String(size)} expected`;
  }
  return undefined;
}

/** A folder `writeCheckpoint` may replace: one of its checkpoints (complete or not), or empty. */
/** Whether `dir` may become a checkpoint: absent, an empty folder, or a checkpoint already. */
export function checkpointTargetOk(dir: string): boolean {
  return !existsSync(resolve(dir)) || isReplaceable(resolve(dir));
}

function isReplaceable(path: string): boolean {
  try {
    if (!statSync(path).isDirectory()) return false;
    const entries = readdirSync(path);
    return entries.length === 0 || entries.includes(MANIFEST_FILE);
  } catch {
    return false;
  }
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---- durable writes ----

function writeFileSynced(path: string, bytes: Uint8Array): void {
  const fd = openSync(path, 'wx');
  try {
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync a folder so renames and new entries in it are durable (not possible on every platform). */
function fsyncDir(path: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    if (fstatSync(fd).isDirectory()) fsyncSync(fd);
  } catch {
    // Windows cannot open folders for fsync; the renames are still atomic there
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
