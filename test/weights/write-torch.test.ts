// writeTorchCheckpoint: read back by our torch reader byte for byte, and checked with CPython's
// own zipfile and pickletools (no torch here): the archive layout torch.save writes, stored and
// 64-byte aligned records with valid CRCs, a protocol-2 pickle that names only the globals
// torch.load(weights_only=True) accepts for a state dict, unpickled by a stand-in for torch.load.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../src/core/errors.js';
import { openWeights } from '../../src/weights/open.js';
import { readBytes } from '../../src/weights/types.js';
import { writeTorchCheckpoint, TorchTensorToWrite } from '../../src/weights/write-torch.js';
import { tempDir } from './torch-builders.js';

function randomBytesSeeded(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** F32 with -0, NaN payloads and infinities; bf16 and f16 raw bits; a scalar; an empty tensor. */
function sampleTensors(): TorchTensorToWrite[] {
  const f = new Float32Array([1.5, -0, Infinity, -Infinity, 3.25e-39, 7, 8, 9, 10, 11, 12, 13]);
  new Uint32Array(f.buffer)[5] = 0x7fc12345; // a NaN with a payload
  return [
    { name: 'projector.model.0.weight', dtype: 'F32', shape: [3, 4], data: f },
    { name: 'projector.model.0.bias', dtype: 'BF16', shape: [300], data: randomBytesSeeded(600, 1) },
    { name: 'fuse_module.weight', dtype: 'F16', shape: [2, 5, 7], data: randomBytesSeeded(140, 2) },
    { name: 'bbox_projector.scale', dtype: 'F32', shape: [], data: new Float32Array([0.5]) },
    { name: 'empty', dtype: 'BF16', shape: [2, 0, 3], data: new Uint8Array(0) },
    { name: 'llm.model.embed_tokens.weight', dtype: 'BF16', shape: [70000], data: randomBytesSeeded(140000, 3) },
  ];
}

const bytesOf = (t: TorchTensorToWrite) => (t.data instanceof Uint8Array ? t.data : new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function assertRoundTrip(path: string, tensors: readonly TorchTensorToWrite[]): void {
  const st = openWeights(path);
  assert.deepEqual(st.keys(), tensors.map((t) => t.name));
  for (const t of tensors) {
    const r = st.get(t.name)!;
    assert.equal(r.dtype, t.dtype, t.name);
    assert.deepEqual(r.shape, t.shape, t.name);
    // Stored and contiguous, so read in place (an empty tensor's torch strides read as non-contiguous).
    if (bytesOf(t).byteLength > 0) assert.equal(r.source.kind, 'file', `${t.name} is read in place`);
    if (r.source.kind === 'file') assert.equal(r.source.offset % 64, 0, `${t.name} data is 64-byte aligned`);
    assert.ok(Buffer.from(readBytes(r)).equals(Buffer.from(bytesOf(t))), `${t.name} bytes`);
  }
}

test('round trip through our torch reader: names, dtypes, shapes and bytes exactly', () => {
  const dir = tempDir();
  const tensors = sampleTensors();
  for (const opts of [{}, { wrapStateDict: true }, { forceZip64: true }, { wrapStateDict: true, forceZip64: true }]) {
    const path = join(dir, `stage1-${Object.keys(opts).join('-') || 'plain'}.pth`);
    writeTorchCheckpoint(path, tensors, opts);
    assertRoundTrip(path, tensors);
  }
  assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.tmp')), [], 'no temporary files left');
});

/**
 * Python: check the archive with zipfile (CRCs, stored, alignment from the local headers), the
 * pickle with pickletools (disassembles, protocol <= 2, the globals it names), then unpickle it as
 * torch.load does, with find_class limited to those globals, printing what it rebuilt as JSON.
 */
const PY_CHECK = String.raw`
import collections, hashlib, io, json, pickle, pickletools, struct, sys, zipfile
path = sys.argv[1]
ALLOWED = {'collections OrderedDict', 'torch._utils _rebuild_tensor_v2',
           'torch FloatStorage', 'torch BFloat16Storage', 'torch HalfStorage'}
ELEM = {'FloatStorage': 4, 'BFloat16Storage': 2, 'HalfStorage': 2}
zf = zipfile.ZipFile(path)
assert zf.testzip() is None, 'a CRC does not match'
names = zf.namelist()
raw = open(path, 'rb').read()
for info in zf.infolist():
    assert info.compress_type == zipfile.ZIP_STORED, info.filename + ' is compressed'
    sig, = struct.unpack_from('<I', raw, info.header_offset)
    assert sig == 0x04034b50, info.filename + ': no local header'
    nlen, xlen = struct.unpack_from('<HH', raw, info.header_offset + 26)
    data_at = info.header_offset + 30 + nlen + xlen
    assert data_at % 64 == 0, info.filename + ' data at %d' % data_at
    assert raw[data_at:data_at + info.file_size] == zf.read(info), info.filename
pkl = zf.read('archive/data.pkl')
out = io.StringIO()
pickletools.dis(pkl, out=out)
globals_seen, max_proto = set(), 0
for op, arg, pos in pickletools.genops(pkl):
    max_proto = max(max_proto, op.proto)
    if op.name == 'GLOBAL':
        globals_seen.add(arg)
    assert op.name not in ('STACK_GLOBAL', 'INST', 'OBJ', 'NEWOBJ', 'NEWOBJ_EX', 'BUILD', 'EXT1', 'EXT2', 'EXT4'), op.name
assert globals_seen <= ALLOWED, sorted(globals_seen - ALLOWED)

class Storage:
    def __init__(self, cls): self.cls = cls
def rebuild(storage, offset, size, stride, requires_grad, hooks):
    kind, key, location, numel = storage
    assert isinstance(size, tuple) and isinstance(stride, tuple) and requires_grad is False
    assert type(hooks) is collections.OrderedDict and len(hooks) == 0 and location == 'cpu'
    data = zf.read('archive/data/' + key)
    assert len(data) == numel * ELEM[kind.cls], key
    e = ELEM[kind.cls]
    n = 1
    for d in size: n *= d
    body = data[offset * e:(offset + n) * e]
    return {'storage': kind.cls, 'key': key, 'offset': offset, 'size': list(size), 'stride': list(stride), 'sha256': hashlib.sha256(body).hexdigest()}
class Loader(pickle.Unpickler):
    def find_class(self, module, name):
        q = module + ' ' + name
        if q not in ALLOWED: raise pickle.UnpicklingError('forbidden ' + q)
        if q == 'collections OrderedDict': return collections.OrderedDict
        if q == 'torch._utils _rebuild_tensor_v2': return rebuild
        return Storage(name)
    def persistent_load(self, pid):
        tag, cls, key, location, numel = pid
        assert tag == 'storage' and isinstance(key, str)
        return (cls, key, location, numel)
obj = Loader(io.BytesIO(pkl)).load()
wrapped = type(obj) is dict
sd = obj['state_dict'] if wrapped else obj
assert type(sd) is collections.OrderedDict
print(json.dumps({'names': names, 'version': zf.read('archive/version').decode(), 'byteorder': zf.read('archive/byteorder').decode(),
                  'max_proto': max_proto, 'globals': sorted(globals_seen), 'wrapped': wrapped, 'top_keys': list(obj.keys()) if wrapped else None,
                  'tensors': [[k, v] for k, v in sd.items()]}))
`;

interface PyReport {
  names: string[];
  version: string;
  byteorder: string;
  max_proto: number;
  globals: string[];
  wrapped: boolean;
  top_keys: string[] | null;
  tensors: [string, { storage: string; key: string; offset: number; size: number[]; stride: number[]; sha256: string }][];
}

function pythonCheck(path: string): PyReport {
  const r = spawnSync('python3', ['-c', PY_CHECK, path], { encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    assert.fail('python3 is not on PATH: this test checks the written file with CPython\'s zipfile and pickletools; install python3');
  }
  assert.equal(r.status, 0, `python3 check of ${path} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout) as PyReport;
}

const STORAGE = { F32: 'FloatStorage', BF16: 'BFloat16Storage', F16: 'HalfStorage' } as const;

function assertPython(path: string, tensors: readonly TorchTensorToWrite[], wrapped: boolean): void {
  const py = pythonCheck(path);
  assert.equal(py.version, '3\n');
  assert.equal(py.byteorder, 'little');
  assert.ok(py.max_proto <= 2, `protocol ${py.max_proto}`);
  assert.deepEqual(
    [...py.names].sort(),
    ['archive/data.pkl', 'archive/byteorder', 'archive/version', ...tensors.map((_, i) => `archive/data/${i}`)].sort(),
  );
  const want = ['collections OrderedDict', 'torch._utils _rebuild_tensor_v2', ...new Set(tensors.map((t) => `torch ${STORAGE[t.dtype]}`))];
  assert.deepEqual(py.globals, tensors.length ? [...new Set(want)].sort() : ['collections OrderedDict']);
  assert.equal(py.wrapped, wrapped);
  if (wrapped) assert.deepEqual(py.top_keys, ['state_dict']);
  assert.deepEqual(py.tensors.map(([k]) => k), tensors.map((t) => t.name));
  py.tensors.forEach(([, v], i) => {
    const t = tensors[i]!;
    assert.equal(v.storage, STORAGE[t.dtype], t.name);
    assert.equal(v.key, String(i));
    assert.equal(v.offset, 0);
    assert.deepEqual(v.size, t.shape, t.name);
    // torch's contiguous strides: row-major, size-0 dims counted as 1
    const stride = t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * Math.max(b, 1), 1));
    assert.deepEqual(v.stride, stride, t.name);
    assert.equal(v.sha256, sha(bytesOf(t)), `${t.name} bytes as Python reads them`);
  });
}

test('CPython zipfile + pickletools: torch.save layout, aligned stored records, only state-dict globals', () => {
  const dir = tempDir();
  const tensors = sampleTensors();
  for (const [i, opts] of [{}, { wrapStateDict: true }, { forceZip64: true }].entries()) {
    const path = join(dir, `check${i}.pth`);
    writeTorchCheckpoint(path, tensors, opts);
    assertPython(path, tensors, opts.wrapStateDict === true);
  }
});

test('over 1000 entries (pickle batches of SETITEMS), one entry (SETITEM) and none', () => {
  const dir = tempDir();
  const many: TorchTensorToWrite[] = Array.from({ length: 1203 }, (_, i) => ({
    name: `llm.model.layers.${i}.w`, dtype: (['F32', 'BF16', 'F16'] as const)[i % 3]!, shape: [1 + (i % 4)],
    data: randomBytesSeeded((1 + (i % 4)) * (i % 3 === 0 ? 4 : 2), i + 7),
  }));
  for (const [label, tensors] of [['many', many], ['one', many.slice(0, 1)], ['none', []]] as const) {
    const path = join(dir, `${label}.pth`);
    writeTorchCheckpoint(path, tensors);
    assertRoundTrip(path, tensors);
    assertPython(path, tensors, false);
  }
});

test('atomic: an existing file is replaced whole; bad input or an unwritable folder leaves nothing', () => {
  const dir = tempDir();
  const path = join(dir, 'pretrained.pth');
  writeFileSync(path, 'old contents');
  const tensors = sampleTensors();
  writeTorchCheckpoint(path, tensors, { wrapStateDict: true });
  assertRoundTrip(path, tensors);
  const before = readFileSync(path);
  // Wrong byte count, Float32Array for bf16, duplicate names: refused before anything is written.
  assert.throws(() => writeTorchCheckpoint(path, [{ name: 'x', dtype: 'BF16', shape: [3], data: new Uint8Array(5) }]), /x has 5 bytes, BF16\[3\] needs 6/);
  assert.throws(() => writeTorchCheckpoint(path, [{ name: 'x', dtype: 'BF16', shape: [1], data: new Float32Array(1) }]), /Float32Array data but dtype BF16/);
  assert.throws(() => writeTorchCheckpoint(path, [tensors[0]!, tensors[0]!]), /duplicate tensor name/);
  assert.ok(readFileSync(path).equals(before), 'the previous file is untouched');
  assert.deepEqual(readdirSync(dir), ['pretrained.pth']);
  const missing = join(dir, 'no-such-folder', 'x.pth');
  assert.throws(() => writeTorchCheckpoint(missing, tensors), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.equal(e.message, `${missing}: cannot write (ENOENT)`);
    return true;
  });
  assert.equal(existsSync(join(dir, 'no-such-folder')), false);
});
