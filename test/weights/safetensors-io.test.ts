import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync, existsSync, readdirSync, mkdirSync, copyFileSync } from 'node:fs';
import { TINY } from '../helpers/fixtures.js';
import { InputError } from '../../src/core/errors.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { ShardedStore } from '../../src/weights/sharded.js';
import { openWeights } from '../../src/weights/open.js';
import { readBytes, readF32, WeightStore } from '../../src/weights/types.js';
import { writeSafetensors, TensorToWrite } from '../../src/weights/write-safetensors.js';
import { tempDir } from './torch-builders.js';

function assertInputError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

function sameTensors(a: WeightStore, b: WeightStore): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const k of a.keys()) {
    const x = a.get(k)!;
    const y = b.get(k)!;
    assert.equal(x.dtype, y.dtype, k);
    assert.deepEqual(x.shape, y.shape, k);
    assert.ok(Buffer.from(readBytes(x)).equals(Buffer.from(readBytes(y))), k);
  }
}

test('writeSafetensors round trip: F32 from Float32Array, BF16 bytes, metadata, alignment', () => {
  const path = join(tempDir(), 'rt.safetensors');
  const f = Float32Array.from([1, -2.5, 3, 4, 5, 6]);
  const bf = new Uint8Array([0x80, 0x3f, 0x00, 0x40]); // bf16 1, 2
  writeSafetensors(path, [
    { name: 'a', dtype: 'F32', shape: [2, 3], data: f },
    { name: 'constructor', dtype: 'BF16', shape: [2], data: bf },
    { name: 'empty', dtype: 'I64', shape: [0, 4], data: new Uint8Array(0) },
  ], { format: 'pt' });
  const raw = readFileSync(path);
  const hlen = Number(raw.readBigUInt64LE(0));
  assert.equal(hlen % 8, 0);
  const st = SafetensorsStore.open(path);
  assert.deepEqual(st.metadata, { format: 'pt' });
  assert.deepEqual(Array.from(readF32(st.get('a')!)), Array.from(f));
  assert.deepEqual(st.get('a')!.shape, [2, 3]);
  assert.deepEqual(Array.from(readF32(st.get('constructor')!)), [1, 2]);
  assert.deepEqual(st.get('empty')!.shape, [0, 4]);
  assert.equal((st.get('a')!.source as { offset: number }).offset % 8, 0);
});

test('writeSafetensors leaves nothing behind when it fails', () => {
  const dir = tempDir();
  // The target is a folder: everything is written, then the rename fails.
  const target = join(dir, 'out.safetensors');
  mkdirSync(target);
  const t: TensorToWrite[] = [{ name: 'a', dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) }];
  assertInputError(() => writeSafetensors(target, t), /out\.safetensors: cannot write/);
  assert.deepEqual(readdirSync(dir), ['out.safetensors']);
  // Missing folder.
  assertInputError(() => writeSafetensors(join(dir, 'no', 'x.safetensors'), t), /x\.safetensors: cannot write/);
  // Bad data: a bug in the caller, refused before any file is made.
  assert.throws(() => writeSafetensors(join(dir, 'bad.safetensors'), [{ name: 'a', dtype: 'F32', shape: [3], data: Float32Array.from([1]) }]), /needs 12/);
  assert.deepEqual(readdirSync(dir), ['out.safetensors']);
  assert.ok(!existsSync(join(dir, 'bad.safetensors')));
});

test('sharded safetensors (index.json) read the same tensors as the single file', () => {
  const dir = tempDir();
  const src = SafetensorsStore.open(join(TINY, 'clip', 'model.safetensors'));
  const keys = src.keys();
  const half = Math.ceil(keys.length / 2);
  const shardKeys = [keys.slice(0, half), keys.slice(half)];
  const weightMap: Record<string, string> = {};
  shardKeys.forEach((ks, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(join(dir, file), ks.map((k) => {
      const r = src.get(k)!;
      return { name: k, dtype: r.dtype, shape: r.shape, data: readBytes(r) };
    }));
    for (const k of ks) weightMap[k] = file;
  });
  const index = join(dir, 'model.safetensors.index.json');
  writeFileSync(index, JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  sameTensors(ShardedStore.open(index), src);
  sameTensors(openWeights(index), src);
  sameTensors(openWeights(dir), src);
  assert.equal(openWeights(index).get(keys[0]!)!.source.kind, 'file');

  // A shard the index names but the folder lacks.
  const broken = join(dir, 'broken.safetensors.index.json');
  writeFileSync(broken, JSON.stringify({ weight_map: { ...weightMap, extra: 'model-00003-of-00003.safetensors' } }));
  assertInputError(() => ShardedStore.open(broken), /shard model-00003-of-00003\.safetensors is missing/);
  // A tensor its shard does not hold.
  writeFileSync(broken, JSON.stringify({ weight_map: { ...weightMap, ghost: 'model-00001-of-00002.safetensors' } }));
  assertInputError(() => ShardedStore.open(broken), /tensor ghost is not in its shard/);
  writeFileSync(broken, '{"weight_map": ');
  assertInputError(() => ShardedStore.open(broken), /broken\.safetensors\.index\.json: weight index is not valid JSON/);
});

test('truncated and corrupt safetensors give InputErrors naming the path', () => {
  const dir = tempDir();
  const whole = readFileSync(join(TINY, 'clip', 'model.safetensors'));
  const cut = join(dir, 'cut.safetensors');
  writeFileSync(cut, whole.subarray(0, whole.length - 100));
  assertInputError(() => openWeights(cut), /cut\.safetensors: .*truncated/);
  const tiny = join(dir, 'tiny.safetensors');
  writeFileSync(tiny, whole.subarray(0, 5));
  assertInputError(() => openWeights(tiny), /tiny\.safetensors: not a valid safetensors file/);
  const header = join(dir, 'header.safetensors');
  const bad = Buffer.from(whole);
  bad.write('!!!!', 8); // corrupt the JSON
  writeFileSync(header, bad);
  assertInputError(() => openWeights(header), /header\.safetensors: .*header is not JSON/);
  const huge = join(dir, 'huge.safetensors');
  const h = Buffer.from(whole);
  h.writeBigUInt64LE(1n << 40n, 0);
  writeFileSync(huge, h);
  assertInputError(() => openWeights(huge), /huge\.safetensors: not a valid safetensors file/);
});

test('openWeights dispatches on names, folders and magic bytes', () => {
  const dir = tempDir();
  assert.ok(openWeights(join(TINY, 'clip')).keys().includes('vision_model.embeddings.patch_embedding.weight'));
  assert.ok(openWeights(join(TINY, 'convnext')).keys().length > 0, 'single open_clip_model.safetensors');
  assert.ok(openWeights(join(TINY, 'mgllava', 'iter_1.pth')).keys().includes('projector.model.0.weight'));
  // magic bytes decide for names without a known extension
  copyFileSync(join(TINY, 'mgllava', 'iter_1.pth'), join(dir, 'checkpoint'));
  copyFileSync(join(TINY, 'mgllava', 'model.safetensors'), join(dir, 'weights'));
  sameTensors(openWeights(join(dir, 'checkpoint')), openWeights(join(dir, 'weights')));
  // a folder with pytorch_model.bin
  const bin = join(dir, 'hf');
  mkdirSync(bin);
  copyFileSync(join(TINY, 'mgllava', 'iter_1.pth'), join(bin, 'pytorch_model.bin'));
  sameTensors(openWeights(bin), openWeights(join(TINY, 'mgllava', 'model.safetensors')));
  assertInputError(() => openWeights(join(dir, 'missing.safetensors')), /missing\.safetensors: no such file/);
  const empty = join(dir, 'empty');
  mkdirSync(empty);
  assertInputError(() => openWeights(empty), /empty: no weights found/);
  // the tiny mgllava folder has both model.safetensors and iter_1.pth: the conventional name wins
  assert.equal(openWeights(join(TINY, 'mgllava')).get('projector.model.0.weight')!.source.kind, 'file');
});
