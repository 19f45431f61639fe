import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { TINY } from '../helpers/fixtures.js';
import { InputError } from '../../src/core/errors.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { TorchCheckpointStore } from '../../src/weights/torch-checkpoint.js';
import { readBytes, readF32 } from '../../src/weights/types.js';
import { ZipReader } from '../../src/weights/zip.js';
import { buildZip, Pickle, tempDir, ZipInput } from './torch-builders.js';

const PTH = join(TINY, 'mgllava', 'iter_1.pth');

test('iter_1.pth holds the same tensors as model.safetensors, as file ranges', () => {
  const pth = TorchCheckpointStore.open(PTH);
  const st = SafetensorsStore.open(join(TINY, 'mgllava', 'model.safetensors'));
  assert.deepEqual([...pth.keys()].sort(), [...st.keys()].sort());
  assert.ok(pth.keys().some((k) => k.startsWith('llm.')), 'has llm.* tensors');
  assert.ok(pth.keys().some((k) => k.startsWith('fuse_module.')));
  for (const k of st.keys()) {
    const a = pth.get(k)!;
    const b = st.get(k)!;
    assert.equal(a.dtype, b.dtype, k);
    assert.deepEqual(a.shape, b.shape, k);
    assert.equal(a.source.kind, 'file', k);
    assert.ok(Buffer.from(readBytes(a)).equals(Buffer.from(readBytes(b))), `${k} bytes`);
  }
});

/** Storage 0: F32 0..11. Tensors that view it in various ways, inside an mmengine-like wrapper. */
function viewsPickle(): Uint8Array {
  const s = { storageType: 'FloatStorage', key: '0', numel: 12 };
  const p = new Pickle().proto().emptyDict().mark();
  p.str('meta').emptyDict().mark().str('epoch').int(1).str('lr').mark().int(3).int(-70000).tuple().setitems();
  p.str('state_dict').orderedDict().mark();
  p.str('full').tensor({ ...s, offset: 0, size: [3, 4], stride: [4, 1] });
  p.str('offset').tensor({ ...s, offset: 3, size: [2, 3], stride: [3, 1] });
  p.str('transposed').tensor({ ...s, offset: 0, size: [4, 3], stride: [1, 4] });
  p.str('column').tensor({ ...s, offset: 1, size: [3, 1], stride: [4, 1] });
  p.str('param').global('torch._utils', '_rebuild_parameter').mark();
  p.tensor({ ...s, offset: 8, size: [4], stride: [1] }).bool(true).orderedDict().tuple().reduce();
  p.str('step').int(5); // not a tensor: ignored
  p.setitems();
  // state_dict()'s OrderedDict carries `_metadata` as instance state (BUILD).
  p.emptyDict().mark().str('_metadata').orderedDict().setitems().build();
  return p.setitems().stop().bytes();
}

function f32Bytes(n: number): Uint8Array {
  return new Uint8Array(Float32Array.from({ length: n }, (_, i) => i).buffer);
}

function checkpoint(dir: string, name: string, pickle: Uint8Array, opts: { zip64?: boolean; deflate?: boolean; byteorder?: string } = {}): string {
  const entries: ZipInput[] = [
    { name: 'archive/data.pkl', data: pickle },
    { name: 'archive/byteorder', data: Buffer.from(opts.byteorder ?? 'little') },
    { name: 'archive/data/0', data: f32Bytes(12), deflate: opts.deflate },
  ];
  const path = join(dir, name);
  writeFileSync(path, buildZip(entries, { zip64: opts.zip64, align: 64 }));
  return path;
}

for (const variant of [{}, { zip64: true }, { deflate: true }]) {
  test(`strided views, offsets, wrappers (${JSON.stringify(variant)})`, () => {
    const path = checkpoint(tempDir(), 'views.pth', viewsPickle(), variant);
    const st = TorchCheckpointStore.open(path);
    assert.deepEqual(st.keys(), ['full', 'offset', 'transposed', 'column', 'param']);
    const v = (k: string) => Array.from(readF32(st.get(k)!));
    assert.deepEqual(v('full'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert.deepEqual(v('offset'), [3, 4, 5, 6, 7, 8]);
    assert.deepEqual(v('transposed'), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    assert.deepEqual(v('column'), [1, 5, 9]);
    assert.deepEqual(v('param'), [8, 9, 10, 11]);
    assert.deepEqual(st.get('transposed')!.shape, [4, 3]);
    assert.equal(st.get('transposed')!.source.kind, 'memory');
    for (const k of ['full', 'offset', 'param']) {
      const src = st.get(k)!.source;
      assert.equal(src.kind, variant.deflate ? 'memory' : 'file', k);
      if (src.kind === 'file') assert.equal(src.offset % 4, 0);
    }
  });
}

test('zip reader: ZIP64 records, local-header padding, data offsets', () => {
  const dir = tempDir();
  const path = checkpoint(dir, 'z64.pth', viewsPickle(), { zip64: true });
  const zip = ZipReader.open(path);
  assert.deepEqual(zip.entries().map((e) => e.name), ['archive/data.pkl', 'archive/byteorder', 'archive/data/0']);
  const e = zip.get('archive/data/0')!;
  assert.equal(e.size, 48);
  assert.equal(zip.dataOffset(e) % 64, 0);
  assert.deepEqual(Buffer.from(zip.read(e)), Buffer.from(f32Bytes(12)));
});

function assertInputError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

test('a pickle referencing os.system is refused, even inside ignored parts', () => {
  const dir = tempDir();
  const evil = new Pickle().proto().emptyDict().mark();
  evil.str('meta').global('os', 'system').mark().str('echo pwned').tuple().reduce();
  evil.str('w').tensor({ storageType: 'FloatStorage', key: '0', numel: 12, offset: 0, size: [12], stride: [1] });
  const path = checkpoint(dir, 'evil.pth', evil.setitems().stop().bytes());
  assertInputError(() => TorchCheckpointStore.open(path), /forbidden global os\.system/);
  assertInputError(() => TorchCheckpointStore.open(path), new RegExp(path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  // STACK_GLOBAL spelling
  const sg = new Pickle().proto(4).str('builtins').str('eval').op(0x93).stop().bytes();
  assertInputError(() => TorchCheckpointStore.open(checkpoint(dir, 'sg.pth', sg)), /forbidden global builtins\.eval/);
});

test('malformed checkpoints give InputErrors naming the file', () => {
  const dir = tempDir();
  // legacy torch.save stream: PROTO 2, LONG1 magic number ...
  const legacy = join(dir, 'legacy.pth');
  writeFileSync(legacy, Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]));
  assertInputError(() => TorchCheckpointStore.open(legacy), /legacy \(non-zip\) PyTorch format.*torch\.save/);
  // big-endian checkpoint
  assertInputError(() => TorchCheckpointStore.open(checkpoint(dir, 'be.pth', viewsPickle(), { byteorder: 'big' })), /byte order is 'big'/);
  // unknown opcode (PERSID, protocol 0 text form)
  const op = new Pickle().proto().op(0x50).stop().bytes();
  assertInputError(() => TorchCheckpointStore.open(checkpoint(dir, 'op.pth', op)), /unsupported pickle opcode 0x50/);
  // storage key with no entry
  const missing = new Pickle().proto().emptyDict().str('w');
  missing.tensor({ storageType: 'FloatStorage', key: '7', numel: 4, offset: 0, size: [4], stride: [1] }).op(0x73).stop();
  assertInputError(() => TorchCheckpointStore.open(checkpoint(dir, 'missing.pth', missing.bytes())), /archive\/data\/7 is missing/);
  // a view past the end of its storage
  const past = new Pickle().proto().emptyDict().str('w');
  past.tensor({ storageType: 'FloatStorage', key: '0', numel: 12, offset: 10, size: [4], stride: [1] }).op(0x73).stop();
  assertInputError(() => TorchCheckpointStore.open(checkpoint(dir, 'past.pth', past.bytes())), /exceeds its storage/);
  // the real checkpoint cut short
  const cut = join(dir, 'cut.pth');
  const whole = readFileSync(PTH);
  writeFileSync(cut, whole.subarray(0, whole.length - 1000));
  assertInputError(() => TorchCheckpointStore.open(cut), /cut\.pth: .*zip/);
  // missing file
  assertInputError(() => TorchCheckpointStore.open(join(dir, 'nope.pth')), /nope\.pth: cannot open/);
});

test('transposed views of 1-, 2- and 8-byte storages are copied bit-exactly', () => {
  const i64 = new BigInt64Array([1n, -2n, 3n, -4n, 5n, 1n << 60n]);
  const bf16 = new Uint16Array([0x3f80, 0x7fc1, 0xff81, 0x0001, 0x4000, 0xc000]); // incl. NaN payloads
  const u8 = new Uint8Array([10, 20, 30, 40, 50, 60]);
  const p = new Pickle().proto().emptyDict().mark();
  for (const [name, type, key] of [['l', 'LongStorage', '0'], ['b', 'BFloat16Storage', '1'], ['u', 'ByteStorage', '2']] as const) {
    p.str(name).tensor({ storageType: type, key, numel: 6, offset: 0, size: [3, 2], stride: [1, 3] });
  }
  const pk = p.setitems().stop().bytes();
  const path = join(tempDir(), 'types.pt');
  writeFileSync(path, buildZip([
    { name: 'types/data.pkl', data: pk },
    { name: 'types/data/0', data: new Uint8Array(i64.buffer) },
    { name: 'types/data/1', data: new Uint8Array(bf16.buffer) },
    { name: 'types/data/2', data: u8, deflate: true },
  ], { align: 64 }));
  const st = TorchCheckpointStore.open(path);
  const order = [0, 3, 1, 4, 2, 5];
  const l = st.get('l')!;
  assert.equal(l.dtype, 'I64');
  assert.deepEqual(Array.from(new BigInt64Array(new Uint8Array(readBytes(l)).buffer)), order.map((i) => i64[i]!));
  assert.deepEqual(Array.from(new Uint16Array(new Uint8Array(readBytes(st.get('b')!)).buffer)), order.map((i) => bf16[i]!));
  assert.deepEqual(Array.from(readBytes(st.get('u')!)), order.map((i) => u8[i]!));
});
