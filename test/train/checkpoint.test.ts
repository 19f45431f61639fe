// Training checkpoints: round trip (weights, AdamW state, trainer state, extra files), atomic
// replacement (an exception or a SIGKILL at every stage leaves the last complete checkpoint and,
// after recovery, no stray folders), clear errors for missing or corrupt folders; the seeded
// generator whose state goes into trainer_state.json.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync, readFileSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from '../helpers/fixtures.js';
import { AdamW } from '../../src/train/optimizer.js';
import {
  CheckpointContents,
  CheckpointStage,
  CheckpointTensor,
  readCheckpoint,
  recoverCheckpoint,
  writeCheckpoint,
} from '../../src/train/checkpoint.js';
import { Rng, epochOrder, shuffleInPlace } from '../../src/train/rng.js';
import { assertInputError } from '../helpers/errors.js';

/** Run `fn` with a fresh temporary folder, removed afterwards. */
function inTempParent(fn: (parent: string) => void): void {
  const parent = mkdtempSync(join(tmpdir(), 'mgllava-ckpt-'));
  try {
    fn(parent);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
}

function tensor(shape: number[], f: (i: number) => number): CheckpointTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, (_, i) => f(i)) };
}

/** Contents whose every part depends on `step`, so two checkpoints are told apart. */
function contents(step: number): CheckpointContents {
  const model = new Map([
    ['fuse_module.gate.0.weight', tensor([4, 3], (i) => Math.sin(i + step))],
    ['projector.model.0.bias', tensor([5], (i) => i * 0.25 - step)],
  ]);
  const opt = new AdamW({ betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 });
  const params = new Map([...model].map(([k, t]) => [k, t.data.slice()]));
  for (let s = 0; s < step; s++) opt.step(params, new Map([...params].map(([k, p]) => [k, p.map((x) => Math.cos(x + s))])), 1e-3);
  return {
    model,
    optimizer: opt.getState(),
    trainerState: { step, epoch: 0, seed: 2024, rng: Rng.seeded(2024, step).getState(), schedule: { baseLr: 1e-3, warmupRatio: 0.03 } },
    files: new Map<string, string | Uint8Array>([
      ['mgllava_config.json', JSON.stringify({ step })],
      ['adapter.bin', new Uint8Array([step, 1, 2, 3])],
    ]),
  };
}

function stepOf(dir: string): number {
  return readCheckpoint(dir).trainerState.step as number;
}

test('round trip: weights, optimizer state (resumes bit-identically), trainer state, extra files', () =>
  inTempParent((parent) => {
    const dir = join(parent, 'iter_3');
    const c = contents(3);
    writeCheckpoint(dir, c);
    assert.deepEqual(readdirSync(dir).sort(), ['adapter.bin', 'checkpoint.json', 'mgllava_config.json', 'model.safetensors', 'optimizer.safetensors', 'trainer_state.json']);
    const r = readCheckpoint(dir);
    assert.deepEqual([...r.model.keys()], [...c.model.keys()]);
    for (const [k, t] of c.model) {
      assert.deepEqual(r.model.get(k)!.shape, t.shape);
      assert.deepEqual(r.model.get(k)!.data, t.data);
    }
    assert.deepEqual(r.trainerState, JSON.parse(JSON.stringify(c.trainerState)));
    assert.equal(r.files.get('mgllava_config.json')!.toString('utf8'), JSON.stringify({ step: 3 }));
    assert.deepEqual([...r.files.get('adapter.bin')!], [3, 1, 2, 3]);

    const o = r.optimizer!;
    assert.deepEqual(o.betas, [0.9, 0.999]);
    assert.equal(o.eps, 1e-8);
    assert.equal(o.weightDecay, 0.01);
    for (const [k, s] of c.optimizer!.params) {
      const t = o.params.get(k)!;
      assert.equal(t.step, 3);
      assert.deepEqual(t.expAvg, s.expAvg);
      assert.deepEqual(t.expAvgSq, s.expAvgSq);
    }
    // moments keep the parameter's shape in the file
    const hdr = readFileSync(join(dir, 'optimizer.safetensors'));
    const json = JSON.parse(hdr.subarray(8, 8 + Number(hdr.readBigUInt64LE(0))).toString('utf8')) as Record<string, { shape: number[] }>;
    assert.deepEqual(json['exp_avg.fuse_module.gate.0.weight']!.shape, [4, 3]);

    // a restored optimiser continues exactly like the original would
    const live = new AdamW({ betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 });
    const pLive = new Map([...c.model].map(([k, t]) => [k, t.data.slice()]));
    for (let s = 0; s < 3; s++) live.step(pLive, new Map([...pLive].map(([k, p]) => [k, p.map((x) => Math.cos(x + s))])), 1e-3);
    // (the checkpoint's model holds the step-0 weights; resume from the live weights)
    const pResumed = new Map([...pLive].map(([k, p]) => [k, p.slice()]));
    const resumed = AdamW.fromState(o);
    const g = new Map([...pLive].map(([k, p]) => [k, p.map((x) => x * 0.5 - 0.1)]));
    live.step(pLive, g, 7e-4);
    resumed.step(pResumed, g, 7e-4);
    for (const [k, p] of pLive) assert.deepEqual(pResumed.get(k), p, k);

    // weights-only checkpoint: no optimizer file
    const dir2 = join(parent, 'weights_only');
    writeCheckpoint(dir2, { model: c.model, trainerState: { step: 0 } });
    assert.equal(readCheckpoint(dir2).optimizer, undefined);
    assert.deepEqual(readCheckpoint(dir2).files.size, 0);
  }));

test('replacing: the new checkpoint replaces the old one, nothing else is left', () =>
  inTempParent((parent) => {
    const dir = join(parent, 'latest');
    writeCheckpoint(dir, contents(1));
    writeCheckpoint(dir, contents(2));
    assert.equal(stepOf(dir), 2);
    assert.deepEqual(readdirSync(parent), ['latest']);
  }));

test('a failure mid-write leaves the previous checkpoint intact and no temp folder', () =>
  inTempParent((parent) => {
    const dir = join(parent, 'latest');
    writeCheckpoint(dir, contents(1));
    const before = readFileSync(join(dir, 'model.safetensors'));
    for (const stage of ['files-written', 'complete', 'old-moved-aside'] as CheckpointStage[]) {
      assert.throws(
        () =>
          writeCheckpoint(dir, contents(2), {
            onStage: (s) => {
              if (s === stage) throw new Error(`injected at ${s}`);
            },
          }),
        new RegExp(`injected at ${stage}`),
      );
      assert.equal(stepOf(dir), 1, stage);
      assert.ok(readFileSync(join(dir, 'model.safetensors')).equals(before), stage);
      assert.deepEqual(readdirSync(parent), ['latest'], stage);
    }
    // invalid contents are refused before anything is written
    const bad = contents(2);
    const model = new Map(bad.model);
    model.set('x', { shape: [2, 2], data: new Float32Array(3) });
    assertInputError(() => writeCheckpoint(dir, { ...bad, model }), /latest: cannot write the checkpoint \(model tensor x has 3 values, shape \[2,2\] needs 4\)/);
    assertInputError(() => writeCheckpoint(dir, { ...bad, files: new Map([['../evil', 'x']]) }), /bad extra file name/);
    assertInputError(() => writeCheckpoint(dir, { ...bad, files: new Map([['trainer_state.json', 'x']]) }), /bad extra file name/);
    assertInputError(() => writeCheckpoint(dir, { ...bad, trainerState: [] as unknown as Record<string, unknown> }), /plain JSON object/);
    // an unserialisable trainer state fails inside the temp folder
    assert.throws(() => writeCheckpoint(dir, { ...bad, trainerState: { big: 1n } }), /BigInt/);
    assert.equal(stepOf(dir), 1);
    assert.deepEqual(readdirSync(parent), ['latest']);
  }));

test('a SIGKILL at any stage leaves the last complete checkpoint; recovery removes the debris', () =>
  inTempParent((parent) => {
    const dir = join(parent, 'latest');
    const ckptUrl = pathToFileURL(join(ROOT, 'dist', 'src', 'train', 'checkpoint.js')).href;
    const expected: Record<CheckpointStage, number> = { 'files-written': 1, complete: 1, 'old-moved-aside': 1, renamed: 2 };
    for (const [stage, want] of Object.entries(expected) as [CheckpointStage, number][]) {
      rmSync(dir, { recursive: true, force: true });
      writeCheckpoint(dir, contents(1));
      // A child process writes a small step-2 checkpoint over it and kills itself at `stage`.
      const script = `
        const { writeCheckpoint } = await import(${JSON.stringify(ckptUrl)});
        const model = new Map([['w', { shape: [3], data: new Float32Array([1, 2, 3]) }]]);
        writeCheckpoint(${JSON.stringify(dir)}, { model, trainerState: { step: 2 } }, {
          onStage: (s) => { if (s === ${JSON.stringify(stage)}) process.kill(process.pid, 'SIGKILL'); },
        });`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
      assert.equal(r.signal, 'SIGKILL', `${stage}: child ended with ${r.status} ${r.stderr}`);
      assert.equal(stepOf(dir), want, stage); // readCheckpoint recovers first
      assert.deepEqual(readdirSync(parent), ['latest'], stage);
    }
    // the state between the renames, seen directly: no target, the old one aside
    rmSync(dir, { recursive: true, force: true });
    writeCheckpoint(dir, contents(1));
    const script = `
      const { writeCheckpoint } = await import(${JSON.stringify(ckptUrl)});
      writeCheckpoint(${JSON.stringify(dir)}, { model: new Map(), trainerState: { step: 2 } }, {
        onStage: (s) => { if (s === 'old-moved-aside') process.kill(process.pid, 'SIGKILL'); },
      });`;
    spawnSync(process.execPath, ['--input-type=module', '-e', script]);
    const left = readdirSync(parent).sort();
    assert.equal(left.length, 2);
    assert.ok(left.every((e) => /^\.latest\.(old|tmp)-\d+-[0-9a-f]+$/.test(e)), left.join(' '));
    recoverCheckpoint(dir);
    assert.deepEqual(readdirSync(parent), ['latest']);
    assert.equal(stepOf(dir), 1);
  }));

test('errors name the folder: missing, not a checkpoint, truncated, corrupt state', () =>
  inTempParent((parent) => {
    const dir = join(parent, 'ckpt');
    assertInputError(() => readCheckpoint(dir), /ckpt: no training checkpoint here \(no such folder\)/);
    mkdirSync(dir);
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    assertInputError(() => readCheckpoint(dir), /ckpt: not a complete training checkpoint \(checkpoint.json missing\)/);
    assertInputError(() => writeCheckpoint(dir, contents(1)), /ckpt: exists and is not a training checkpoint .*refusing to replace it/);
    assert.equal(readFileSync(join(dir, 'notes.txt'), 'utf8'), 'mine');
    rmSync(dir, { recursive: true });

    writeCheckpoint(dir, contents(1));
    const model = join(dir, 'model.safetensors');
    const size = statSync(model).size;
    truncateSync(model, size - 4);
    assertInputError(() => readCheckpoint(dir), new RegExp(`ckpt: not a complete training checkpoint \\(model.safetensors has ${size - 4} bytes, ${size} expected\\)`));

    writeCheckpoint(dir, contents(1)); // an incomplete checkpoint of ours may be replaced
    const state = join(dir, 'trainer_state.json');
    const n = statSync(state).size;
    writeFileSync(state, '{'.padEnd(n, ' '));
    assertInputError(() => readCheckpoint(dir), /trainer_state\.json: corrupt/);

    writeCheckpoint(dir, contents(1));
    writeFileSync(join(dir, 'checkpoint.json'), 'not json');
    assertInputError(() => readCheckpoint(dir), /ckpt: not a complete training checkpoint \(checkpoint.json is not JSON\)/);
  }));

test('Rng: xoshiro128** reference outputs, state round trip through JSON, seeded shuffles', () => {
  // Reference sequence of xoshiro128** from state (1, 2, 3, 4).
  const r = Rng.fromState([1, 2, 3, 4]);
  assert.deepEqual(Array.from({ length: 10 }, () => r.nextU32()), [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804]);

  const a = Rng.seeded(2024);
  for (let i = 0; i < 5; i++) a.nextU32();
  const saved = JSON.parse(JSON.stringify({ rng: a.getState() })) as { rng: number[] };
  const b = Rng.fromState(saved.rng);
  assert.deepEqual(Array.from({ length: 20 }, () => a.nextInt(1000)), Array.from({ length: 20 }, () => b.nextInt(1000)));
  assert.deepEqual(Rng.seeded(7).getState(), Rng.seeded(7).getState());
  assert.notDeepEqual(Rng.seeded(7).getState(), Rng.seeded(8).getState());
  assert.notDeepEqual(Rng.seeded(7, 0).getState(), Rng.seeded(7, 1).getState());
  assert.notDeepEqual(Rng.seeded(2 ** 40).getState(), Rng.seeded(0).getState());
  const f = Rng.seeded(1).nextFloat();
  assert.ok(f >= 0 && f < 1);
  assert.throws(() => Rng.fromState([0, 0, 0, 0]), RangeError);
  assert.throws(() => Rng.fromState([1, 2, 3]), RangeError);
  assert.throws(() => Rng.seeded(-1), RangeError);

  const o = epochOrder(1000, 2024, 0);
  assert.deepEqual([...o].sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
  assert.deepEqual(epochOrder(1000, 2024, 0), o);
  assert.notDeepEqual(epochOrder(1000, 2024, 1), o);
  assert.deepEqual(epochOrder(0, 1, 0), []);
  // unbiased enough: each of 3 items lands first about a third of the time
  const first = [0, 0, 0];
  const g = Rng.seeded(99);
  for (let i = 0; i < 30000; i++) first[shuffleInPlace([0, 1, 2], g)[0]!]!++;
  for (const c of first) assert.ok(Math.abs(c - 10000) < 500, `counts ${first}`);
});
