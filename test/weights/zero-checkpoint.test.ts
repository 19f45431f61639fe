// What the release's trainer (xtuner on mmengine, under DeepSpeed) leaves behind, read back:
// `iter_N.pth` as a plain torch file (mmengine's DeepSpeedStrategy without the optimizer:
// {'state_dict': model.state_dict(), 'meta', 'message_hub', 'param_schedulers'}) and as a DeepSpeed
// folder (with the optimizer: engine.save_checkpoint(work_dir, tag='iter_N.pth')), built from the
// fixture model's weights; ZeRO-3 and model-parallel folders are refused with one line each.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY } from '../helpers/fixtures.js';
import { mgllava, assertOneLineError } from '../helpers/cli.js';
import { openWeights } from '../../src/weights/open.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { readBytes } from '../../src/weights/types.js';
import { isDeepSpeedCheckpoint } from '../../src/weights/zero-checkpoint.js';
import { resolveModelFiles } from '../../src/model/model-files.js';
import {
  FloatV, NdArrayV, ObjectV, OrderedDictV, PickleValue, SetV, TorchSizeV, TorchTensorV, tempDir, torchSave,
} from './torch-builders.js';
import { assertInputError } from '../helpers/errors.js';

const FIXTURE = SafetensorsStore.open(join(TINY, 'mgllava', 'model.safetensors'));

/** The fixture checkpoint's tensors (projector.*, fuse_module.*, bbox_projector.*, llm.*), bf16. */
function fixtureTensors(prefix = ''): OrderedDictV {
  return new OrderedDictV(FIXTURE.keys().map((k) => {
    const r = FIXTURE.get(k)!;
    assert.equal(r.dtype, 'BF16');
    return [prefix + k, new TorchTensorV('BF16', r.shape, readBytes(r))] as const;
  }), true);
}

function assertSameAsFixture(path: string): void {
  const st = openWeights(path);
  assert.deepEqual([...st.keys()].sort(), [...FIXTURE.keys()].sort());
  for (const p of ['projector.', 'fuse_module.', 'bbox_projector.', 'llm.']) assert.ok(st.keys().some((k) => k.startsWith(p)), `${p}* tensors`);
  for (const k of FIXTURE.keys()) {
    const a = st.get(k)!;
    const b = FIXTURE.get(k)!;
    assert.equal(a.dtype, b.dtype, k);
    assert.deepEqual(a.shape, b.shape, k);
    assert.equal(a.source.kind, 'file', `${k} is read in place`);
    assert.ok(Buffer.from(readBytes(a)).equals(Buffer.from(readBytes(b))), `${k} bytes`);
  }
}

/** mmengine's `meta` and `param_schedulers` for an xtuner run at iteration `iter` (plain data). */
function mmengineClientState(iter: number): { [key: string]: PickleValue } {
  const scheduler = (type: string, begin: number, end: number) => ({
    by_epoch: false, begin, end, last_step: iter, verbose: false, param_name: 'lr',
    base_values: [new FloatV(0.001)], _last_value: [new FloatV(0.0005)], type_hint: type,
  });
  return {
    meta: {
      epoch: 0, iter, cfg: "lr = 1e-3\nbatch_size = 32\n", experiment_name: 'fuse_more_vicuna7b_clip_L_14_336_pretrain_padding_20240601',
      seed: 2024, time: '20240601_120000', mmengine: '0.10.3',
    },
    param_schedulers: [scheduler('LinearLR', 0, 148), scheduler('CosineAnnealingLR', 148, 4947)],
  };
}

/**
 * mmengine's `message_hub` as MessageHub.state_dict() returns it: `log_scalars` are HistoryBuffer
 * objects holding numpy arrays (mmengine/logging/history_buffer.py), `runtime_info` plain values.
 */
function messageHub(): PickleValue {
  const buffer = (vals: number[]) => new ObjectV('mmengine.logging.history_buffer', 'HistoryBuffer', {
    max_length: 1000000, _log_history: new NdArrayV(vals), _count_history: new NdArrayV(vals.map(() => 1)),
  });
  return {
    log_scalars: new OrderedDictV([['train/lr', buffer([0.001, 0.0009])], ['train/loss', buffer([2.5, 2.25])]]),
    runtime_info: new OrderedDictV([['epoch', 0], ['iter', 500], ['max_iters', 4947]]),
    resumed_keys: new OrderedDictV([['train/lr', true], ['train/loss', true], ['epoch', true]]),
  };
}

/** The fields of DeepSpeed engine._save_checkpoint's `state` (ZeRO-2, xtuner's exclude_frozen_parameters). */
function modelStates(module: OrderedDictV, opts: { stage?: number; extra?: { [key: string]: PickleValue } } = {}): PickleValue {
  const shapes = module.entries.map(([k, t]) => [k, new TorchSizeV((t as TorchTensorV).shape)] as const);
  return {
    module,
    buffer_names: [],
    optimizer: null,
    param_shapes: [new OrderedDictV(shapes)],
    frozen_param_shapes: null,
    shared_params: {},
    frozen_param_fragments: null,
    lr_scheduler: null,
    data_sampler: null,
    random_ltd: null,
    skipped_steps: 0,
    global_steps: 500,
    global_samples: 128000,
    dp_world_size: 8,
    mp_world_size: 1,
    ds_config: {
      gradient_accumulation_steps: 1, train_micro_batch_size_per_gpu: 32, gradient_clipping: new FloatV(1),
      zero_allow_untested_optimizer: true, zero_force_ds_cpu_optimizer: false,
      zero_optimization: { stage: opts.stage ?? 2, overlap_comm: true },
      fp16: { enabled: false, initial_scale_power: 16 }, bf16: { enabled: true },
    },
    ds_version: '0.14.4',
    ...mmengineClientState(500),
    optim_wrapper: {},
    ...opts.extra,
  };
}

/** A ZeRO optimizer shard (contents not read; present as in a real folder). */
function optimShard(rank: number): Buffer {
  return torchSave({
    optimizer_state_dict: { zero_stage: 2, partition_count: [8], single_partition_of_fp32_groups: [new TorchTensorV('F32', [4], new Uint8Array(16))], rank },
    ds_config: {}, ds_version: '0.14.4',
  }, `zero_pp_rank_${rank}_mp_rank_00_optim_states`);
}

/** `<work_dir>/iter_500.pth/` as DeepSpeed writes it for ZeRO-2 on `ranks` data-parallel ranks. */
function zero2Folder(workDir: string, states: PickleValue, tag = 'iter_500.pth', ranks = 2): string {
  const dir = join(workDir, tag);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'mp_rank_00_model_states.pt'), torchSave(states, 'mp_rank_00_model_states'));
  for (let r = 0; r < ranks; r++) writeFileSync(join(dir, `bf16_zero_pp_rank_${r}_mp_rank_00_optim_states.pt`), optimShard(r));
  return dir;
}

// --- (a) the plain file ---------------------------------------------------------------------

test('xtuner iter_N.pth as a plain file: the state dict under `state_dict`, beside meta and schedulers', () => {
  const path = join(tempDir(), 'iter_500.pth');
  writeFileSync(path, torchSave({ state_dict: fixtureTensors(), ...mmengineClientState(500) }, 'iter_500'));
  assertSameAsFixture(path);
});

test('xtuner iter_N.pth with mmengine\'s message_hub (HistoryBuffer, numpy arrays) is read', () => {
  const path = join(tempDir(), 'iter_500.pth');
  writeFileSync(path, torchSave({ state_dict: fixtureTensors(), ...mmengineClientState(500), message_hub: messageHub() }, 'iter_500'));
  assertSameAsFixture(path);
});

// --- (b) the DeepSpeed folder ---------------------------------------------------------------

test('ZeRO-2 folder iter_N.pth/: openWeights reads `module` of mp_rank_00_model_states.pt in place', () => {
  const dir = zero2Folder(tempDir(), modelStates(fixtureTensors()));
  assert.ok(isDeepSpeedCheckpoint(dir));
  assertSameAsFixture(dir);
});

test('ZeRO-2 folder: a `module.` prefix on every key is dropped; `latest` in the save folder names the tag', () => {
  const work = tempDir();
  zero2Folder(work, modelStates(fixtureTensors('module.')), 'global_step500', 1);
  writeFileSync(join(work, 'latest'), 'global_step500\n');
  assert.ok(isDeepSpeedCheckpoint(work));
  assertSameAsFixture(join(work, 'global_step500'));
  assertSameAsFixture(work);
});

test('DeepSpeed model states as written for real (set(), message_hub) are read', () => {
  const dir = zero2Folder(tempDir(), modelStates(fixtureTensors(), { extra: { sparse_tensor_module_names: new SetV([]), message_hub: messageHub() } }));
  assertSameAsFixture(dir);
});

test('ZeRO-3 folders are refused with the zero_to_fp32.py command, by file names, ds_config or placeholders', () => {
  // ZeRO-3: zero_pp_rank_<dp>_mp_rank_00_model_states.pt per rank, `module` of empty placeholders.
  const work = tempDir();
  const dir = join(work, 'iter_500.pth');
  mkdirSync(dir);
  const placeholders = new OrderedDictV(FIXTURE.keys().map((k) => [k, new TorchTensorV('BF16', [0], new Uint8Array(0))] as const), true);
  const shapes = new OrderedDictV(FIXTURE.keys().map((k) => [k, new TorchSizeV(FIXTURE.get(k)!.shape)] as const));
  for (const r of [0, 1]) {
    writeFileSync(join(dir, `zero_pp_rank_${r}_mp_rank_00_model_states.pt`), torchSave({ ...(modelStates(placeholders, { stage: 3 }) as object), param_shapes: [shapes] }));
    writeFileSync(join(dir, `bf16_zero_pp_rank_${r}_mp_rank_00_optim_states.pt`), optimShard(r));
  }
  const expect = new RegExp(`^${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: DeepSpeed ZeRO-3 checkpoint .*zero_to_fp32\\.py .*--tag iter_500\\.pth`);
  assertInputError(() => openWeights(dir), expect);
  // A rank-0 file whose ds_config says stage 3.
  const byConfig = zero2Folder(tempDir(), modelStates(fixtureTensors(), { stage: 3 }));
  assertInputError(() => openWeights(byConfig), /ZeRO-3 checkpoint.*zero_to_fp32\.py/);
  // Placeholders in `module` where param_shapes says otherwise (a config given as a file path).
  const byShape = zero2Folder(tempDir(), { ...(modelStates(placeholders) as object), param_shapes: [shapes], ds_config: '/cluster/ds.json' });
  assertInputError(() => openWeights(byShape), /ZeRO-3 checkpoint/);
});

test('model-parallel folders and folders without model states give one-line errors', () => {
  const mp = zero2Folder(tempDir(), modelStates(fixtureTensors()));
  writeFileSync(join(mp, 'mp_rank_01_model_states.pt'), torchSave(modelStates(fixtureTensors())));
  assertInputError(() => openWeights(mp), /model-parallel ranks; only single-rank/);
  const optimOnly = join(tempDir(), 'iter_9.pth');
  mkdirSync(optimOnly);
  writeFileSync(join(optimOnly, 'zero_pp_rank_0_mp_rank_00_optim_states.pt'), optimShard(0));
  assertInputError(() => openWeights(optimOnly), /iter_9\.pth: DeepSpeed folder with optimizer shards but no \*_model_states\.pt/);
  const noModule = zero2Folder(tempDir(), { buffer_names: [], ds_config: {} });
  assertInputError(() => openWeights(noModule), /mp_rank_00_model_states\.pt: no 'module' state dict/);
});

// --- model folders and `mgllava chat` -------------------------------------------------------

/** A model folder naming the fixture's components, its checkpoint a ZeRO-2 folder. */
function zeroModelFolder(tag: string): string {
  const model = tempDir();
  writeFileSync(join(model, 'mgllava_config.json'), JSON.stringify({
    llm: join(TINY, 'llm'), visual_encoder: join(TINY, 'clip'), visual_encoder_aux: join(TINY, 'convnext'),
    prompt_template: 'vicuna', visual_select_layer: -2, image_size_aux: 768, box_feat_size: 56, projector_depth: 2,
  }));
  zero2Folder(model, modelStates(fixtureTensors()), tag);
  return model;
}

test('a model folder finds its ZeRO checkpoint folder, named iter_N.pth or global_stepN', () => {
  for (const tag of ['iter_500.pth', 'global_step500']) {
    const model = zeroModelFolder(tag);
    assert.equal(resolveModelFiles({ model }).checkpoint, join(model, tag));
  }
});

test('mgllava chat --model on a folder whose checkpoint is a ZeRO folder gives the plain checkpoint\'s greedy ids', async () => {
  const args = ['--image', join(TINY, 'example.jpg'), '--boxes', join(TINY, 'boxes_raw.json'),
    '--max-new-tokens', '4', '--temperature', '0', '--json', 'What is shown in this image?'];
  const plain = await mgllava(['chat', '--model', join(TINY, 'mgllava'), ...args]);
  assert.equal(plain.code, 0, plain.stderr);
  const zero = await mgllava(['chat', '--model', zeroModelFolder('iter_500.pth'), ...args]);
  assert.equal(zero.code, 0, zero.stderr);
  const ids = (r: { stdout: string }) => (JSON.parse(r.stdout) as { ids: number[] }).ids;
  assert.equal(ids(plain).length, 4);
  assert.deepEqual(ids(zero), ids(plain));
});

test('mgllava chat on a ZeRO-3 checkpoint folder: one line naming zero_to_fp32.py', async () => {
  const dir = join(tempDir(), 'iter_500.pth');
  mkdirSync(dir);
  writeFileSync(join(dir, 'zero_pp_rank_0_mp_rank_00_model_states.pt'), torchSave(modelStates(fixtureTensors(), { stage: 3 })));
  const r = await mgllava(['chat', '--checkpoint', dir, '--llm', join(TINY, 'llm'), '--visual-encoder', join(TINY, 'clip'),
    '--visual-encoder-aux', join(TINY, 'convnext'), '--max-new-tokens', '4', '--temperature', '0', '-q', 'Hello']);
  assertOneLineError(r, /ZeRO-3 checkpoint.*zero_to_fp32\.py/);
});
