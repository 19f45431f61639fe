// DeepSpeed checkpoint folders as a WeightStore: what xtuner's trainer leaves as `iter_N.pth/`
// when it trains under `--deepspeed` and saves the optimizer with the model.
//
// How the folder comes about: mmengine's DeepSpeedStrategy.save_checkpoint, when it saves the
// optimizer, calls DeepSpeed's `engine.save_checkpoint(work_dir, tag='iter_N.pth',
// save_latest=False)`, so the tag folder is the `.pth` name itself (without the optimizer it writes
// a plain torch file `{'state_dict': ...}` instead; torch-checkpoint.ts reads that). xtuner's
// guess_load_checkpoint reads such a folder as get_fp32_state_dict_from_zero_checkpoint(dirname,
// basename). The folder holds (DeepSpeed engine._get_ckpt_name, _get_zero_ckpt_name):
//   mp_rank_00_model_states.pt            ZeRO 0-2: `module` = the model's state_dict() (xtuner's
//                                         LLaVA models return only the trained parts: projector.*,
//                                         fuse_module.*, bbox_projector.*, llm.* after SFT), in
//                                         the training dtype, next to `buffer_names`,
//                                         `param_shapes`, `ds_config`, `ds_version` and mmengine's
//                                         client state (meta, message_hub, param_schedulers)
//   zero_pp_rank_<dp>_mp_rank_00_model_states.pt   ZeRO-3: one per data-parallel rank, and
//                                         `module` holds empty placeholders (the parameters are
//                                         partitioned across the ranks' optimizer shards)
//   [bf16_]zero_pp_rank_<dp>_mp_rank_<mp>_optim_states.pt   optimizer shards (fp32 master slices)
// and DeepSpeed's own `save_checkpoint` default (save_latest=True) adds `<save_dir>/latest`
// holding the newest tag (zero_to_fp32.py reads it when no tag is given).
//
// ZeRO-1/2 replicate the full weights on every rank, so `module` is complete: we read it. Those
// values are the training-dtype copies (bf16 under xtuner's deepspeed_zero2), i.e. the fp32 master
// weights DeepSpeed's zero_to_fp32.py would rebuild from the optimizer shards, rounded to bf16,
// the precision the model ran at. ZeRO-3 needs that reconstruction; we do not do it and say how.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InputError } from '../core/errors.js';
import { numel } from '../core/tensor.js';
import { TorchCheckpointStore } from './torch-checkpoint.js';
import { PrefixStore, TensorRef, WeightStore } from './types.js';
import { unpickle, PyDict, PyTensor, PyTuple, PyValue } from './unpickle.js';
import { ZipReader } from './zip.js';

/** `[zero_pp_rank_<dp>_]mp_rank_<mp>_model_states.pt` (the dp part only under ZeRO-3). */
const MODEL_STATES = /^(zero_pp_rank_(\d+)_)?mp_rank_(\d+)_model_states\.pt$/;
const OPTIM_STATES = /_optim_states\.pt$/;
const RANK0_STATES = 'mp_rank_00_model_states.pt';
/** The file DeepSpeed writes beside its tag folders when saving with save_latest. */
const LATEST = 'latest';

/**
 * True when `dir` is a DeepSpeed checkpoint folder (model states or optimizer shards), or a save
 * folder whose `latest` names one.
 */
export function isDeepSpeedCheckpoint(dir: string): boolean {
  return tagFolder(dir) !== undefined;
}

/** The tag folder: `dir` itself when it holds DeepSpeed's files, else the one `dir/latest` names. */
function tagFolder(dir: string): string | undefined {
  const holdsStates = (d: string) => {
    try {
      return readdirSync(d).some((n) => MODEL_STATES.test(n) || OPTIM_STATES.test(n));
    } catch {
      return false;
    }
  };
  if (holdsStates(dir)) return dir;
  const latest = join(dir, LATEST);
  if (!existsSync(latest) || !statSync(latest).isFile()) return undefined;
  const tag = readFileSync(latest, 'utf8').trim();
  if (!tag || tag.includes('/') || tag.includes('\\')) return undefined;
  return holdsStates(join(dir, tag)) ? join(dir, tag) : undefined;
}

/** A ZeRO-0/1/2 checkpoint folder's model weights (`module` of mp_rank_00_model_states.pt). */
export class ZeroCheckpointStore implements WeightStore {
  private constructor(
    /** The folder the user named. */
    readonly path: string,
    private readonly inner: WeightStore,
  ) {}

  static open(dir: string): ZeroCheckpointStore {
    const tagDir = tagFolder(dir);
    if (!tagDir) throw new InputError(`${dir}: not a DeepSpeed checkpoint folder (no *_model_states.pt, no 'latest' naming one)`, dir);
    const names = readdirSync(tagDir);
    const states = names.map((n) => MODEL_STATES.exec(n)).filter((m): m is RegExpExecArray => m !== null);
    if (states.length === 0) throw new InputError(`${tagDir}: DeepSpeed folder with optimizer shards but no *_model_states.pt; the model weights are not in it`, tagDir);
    const mpRanks = new Set(states.map((m) => Number(m[3])));
    if (mpRanks.size > 1 || !mpRanks.has(0)) {
      throw new InputError(`${tagDir}: DeepSpeed checkpoint split over ${mpRanks.size} model-parallel ranks; only single-rank (mp_rank_00) checkpoints can be read`, tagDir);
    }
    // ZeRO-3 names its model states per data-parallel rank (zero_to_fp32.get_model_state_file).
    if (!names.includes(RANK0_STATES)) throw zero3Error(tagDir, states.length);
    const file = join(tagDir, RANK0_STATES);
    const root = readRoot(file);
    const module = root.get('module');
    if (!(module instanceof PyDict)) throw new InputError(`${file}: no 'module' state dict; not a DeepSpeed model states file`, file);
    if (zeroStage(root.get('ds_config')) >= 3) throw zero3Error(tagDir, states.length);
    checkNotPartitioned(tagDir, module, root.get('param_shapes'), states.length);

    const store = TorchCheckpointStore.open(file);
    // The torch reader picks the wrapped state dict by key; make sure it took `module`.
    const moduleKeys = [...module.entries()].filter(([k, v]) => typeof k === 'string' && v instanceof PyTensor).map(([k]) => k as string);
    const got = store.keys();
    if (got.length !== moduleKeys.length || moduleKeys.some((k) => store.get(k) === undefined)) {
      throw new InputError(`${file}: its state dict could not be told apart from the other entries of the file`, file);
    }
    // A model wrapped once more before DeepSpeed saw it (DataParallel-style) prefixes `module.`;
    // xtuner's models are saved bare (engine.module is the LLaVA model itself).
    const wrapped = got.length > 0 && got.every((k) => k.startsWith('module.'));
    return new ZeroCheckpointStore(dir, wrapped ? new PrefixStore(store, 'module.') : store);
  }

  keys(): string[] {
    return this.inner.keys();
  }

  get(name: string): TensorRef | undefined {
    return this.inner.get(name);
  }
}

/** The unpickled top-level dict of a model states file (torch zip). */
function readRoot(file: string): PyDict {
  const zip = ZipReader.open(file);
  const pkl = zip.entries().find((e) => /^[^/]*\/data\.pkl$/.test(e.name) || e.name === 'data.pkl');
  if (!pkl) throw new InputError(`${file}: zip archive has no data.pkl; it is not a torch.save checkpoint`, file);
  const root = unpickle(zip.read(pkl), file);
  if (!(root instanceof PyDict)) throw new InputError(`${file}: does not hold a dict; not a DeepSpeed model states file`, file);
  return root;
}

/** `ds_config.zero_optimization.stage` (0 when absent: DeepSpeed's default). */
function zeroStage(cfg: PyValue | undefined): number {
  if (!(cfg instanceof PyDict)) return 0; // a config file path, or missing: decide by the files
  const zero = cfg.get('zero_optimization');
  if (!(zero instanceof PyDict)) return 0;
  const stage = zero.get('stage');
  return typeof stage === 'number' ? stage : 0;
}

/**
 * ZeRO-3 leaves empty placeholders in `module` for partitioned parameters; `param_shapes` (a list
 * of {name: torch.Size} per parameter group) keeps their real shapes.
 */
function checkNotPartitioned(tagDir: string, module: PyDict, paramShapes: PyValue | undefined, files: number): void {
  if (!Array.isArray(paramShapes)) return;
  for (const group of paramShapes) {
    if (!(group instanceof PyDict)) continue;
    for (const [name, shape] of group.entries()) {
      const t = module.get(name);
      if (!(t instanceof PyTensor) || !(shape instanceof PyTuple)) continue;
      const full = numel(shape.items.map((d) => (typeof d === 'number' ? d : 0)));
      if (numel(t.size) === 0 && full > 0) throw zero3Error(tagDir, files);
    }
  }
}

function zero3Error(tagDir: string, files: number): InputError {
  const saveDir = dirname(tagDir);
  return new InputError(
    `${tagDir}: DeepSpeed ZeRO-3 checkpoint (${files} model states file${files === 1 ? '' : 's'}; every rank holds only a slice of each weight); ` +
      `convert it first with DeepSpeed's zero_to_fp32.py (DeepSpeed copies it to ${saveDir}): ` +
      `python ${join(saveDir, 'zero_to_fp32.py')} ${saveDir} ${tagDir}.fp32 --tag ${basename(tagDir)} --safe_serialization, then load ${tagDir}.fp32`,
    tagDir,
  );
}
