// PyTorch zip checkpoints (`torch.save` since 1.6: `.pth`, `.pt`, `.bin`) as a WeightStore.
//
// Archive layout: `<prefix>/data.pkl` (the pickled object), `<prefix>/byteorder` ("little"),
// `<prefix>/data/<key>` (one raw storage per key, STORED, 64-byte aligned by newer torch).
// Tensors in the pickle are `(storage, storage_offset, size, stride)` views of those storages, so
// a contiguous tensor in a stored entry is just a byte range of the checkpoint file, which is what
// the graphs hand to onnxruntime as external data. Anything else (a transposed view, a deflated
// entry) is materialised as a contiguous copy in memory, on demand.

import { readHead, readRange } from './file-io.js';
import { InputError } from '../core/errors.js';
import { DType, DTYPE_BYTES, numel } from '../core/tensor.js';
import { TensorRef, WeightStore } from './types.js';
import { ZipReader, ZipEntry, ZIP_STORED, looksLikeZip } from './zip.js';
import { unpickle, PyDict, PyTensor, PyPersistent, PyTuple, PyGlobal, PyValue } from './unpickle.js';

const STORAGE_DTYPE: Record<string, DType> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64', LongStorage: 'I64',
  IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

/** Keys under which training frameworks wrap the state dict (mmengine/xtuner, DeepSpeed, ...). */
const WRAPPER_KEYS = ['state_dict', 'model', 'module'];

/** One tensor of the checkpoint: a strided view of a storage entry. Units: elements. */
interface Slot {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
  readonly storageOffset: number;
  readonly entry: ZipEntry;
  /** Absolute file offset of the entry's data (stored entries only). */
  readonly dataOffset: number;
  readonly contiguous: boolean;
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) return false;
    expect *= shape[i]!;
  }
  return true;
}


export class TorchCheckpointStore implements WeightStore {
  private readonly slots: Map<string, Slot>;

  private constructor(
    readonly path: string,
    private readonly zip: ZipReader,
    slots: readonly Slot[],
  ) {
    this.slots = new Map(slots.map((s) => [s.name, s]));
  }

  static open(path: string): TorchCheckpointStore {
    const magic = readHead(path, 4);
    if (!looksLikeZip(magic)) {
      // Pre-1.6 torch.save (and `_use_new_zipfile_serialization=False`) writes a bare pickle
      // stream with tensors appended after it: no offsets to point at, so we do not read it.
      const why = magic[0] === 0x80 ? 'it uses the legacy (non-zip) PyTorch format' : 'it is not a zip archive';
      throw new InputError(
        `${path}: cannot read this PyTorch checkpoint: ${why}; re-save it with torch.save(obj, path) ` +
          '(zip format, the default since PyTorch 1.6) or convert it to safetensors',
        path,
      );
    }
    const zip = ZipReader.open(path);
    const pkl = zip.entries().find((e) => /^[^/]*\/data\.pkl$/.test(e.name) || e.name === 'data.pkl');
    if (!pkl) throw new InputError(`${path}: zip archive has no data.pkl; it is not a torch.save checkpoint`, path);
    const prefix = pkl.name.slice(0, -'data.pkl'.length);
    const bo = zip.get(`${prefix}byteorder`);
    if (bo) {
      const order = Buffer.from(zip.read(bo)).toString('latin1').trim();
      if (order !== 'little') throw new InputError(`${path}: checkpoint byte order is '${order}'; only little-endian is supported`, path);
    }
    const root = unpickle(zip.read(pkl), path);
    const sd = pickStateDict(root, path);
    const dataOffsets = new Map<string, number>();
    const slots: Slot[] = [];
    for (const [k, v] of sd.entries()) {
      if (typeof k !== 'string' || !(v instanceof PyTensor)) continue; // e.g. `_extra_state`, ints
      slots.push(resolveSlot(path, zip, prefix, k, v, dataOffsets));
    }
    return new TorchCheckpointStore(path, zip, slots);
  }

  keys(): string[] {
    return [...this.slots.keys()];
  }

  get(name: string): TensorRef | undefined {
    const s = this.slots.get(name);
    if (!s) return undefined;
    const e = DTYPE_BYTES[s.dtype];
    const length = numel(s.shape) * e;
    if (s.contiguous && s.entry.method === ZIP_STORED) {
      return { name, dtype: s.dtype, shape: s.shape, source: { kind: 'file', path: this.zip.path, offset: s.dataOffset + s.storageOffset * e, length } };
    }
    return { name, dtype: s.dtype, shape: s.shape, source: { kind: 'memory', bytes: this.materialise(s) } };
  }

  /** A contiguous row-major copy of a strided view. */
  private materialise(s: Slot): Uint8Array {
    const e = DTYPE_BYTES[s.dtype];
    const n = numel(s.shape);
    const out = new Uint8Array(n * e);
    if (n === 0) return out;
    // Only the span [storageOffset, last element] of the storage is needed.
    const span = (extent(s) - s.storageOffset) * e;
    let src: Uint8Array;
    if (s.entry.method === ZIP_STORED) {
      src = readRange(this.zip.path, s.dataOffset + s.storageOffset * e, span, `tensor ${s.name}`, this.path);
    } else {
      src = this.zip.read(s.entry).subarray(s.storageOffset * e, s.storageOffset * e + span);
    }
    if (s.contiguous) {
      out.set(src.subarray(0, n * e));
      return out;
    }
    return gather(src, out, s.shape, s.stride, e);
  }
}

/**
 * Copy the strided view `src` (element 0 at byte 0; strides in elements) into `out` in row-major
 * order. Elements move as 1-, 2- or 4-byte words (8-byte ones as two words) so NaN payloads and
 * bf16 bit patterns are copied exactly and no per-element allocation happens.
 */
function gather(src: Uint8Array, out: Uint8Array, shape: readonly number[], stride: readonly number[], e: number): Uint8Array {
  const aligned = src.byteOffset % 4 === 0 ? src : new Uint8Array(src); // typed views need alignment
  const word = e >= 4 ? 4 : e;
  const w = e / word; // words per element
  const view = (b: Uint8Array) =>
    word === 4 ? new Uint32Array(b.buffer, b.byteOffset, b.byteLength >> 2) : word === 2 ? new Uint16Array(b.buffer, b.byteOffset, b.byteLength >> 1) : b;
  const from = view(aligned.subarray(0, aligned.byteLength - (aligned.byteLength % word)));
  const to = view(out);
  // Odometer over all but the innermost index; the innermost dimension is a strided run.
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  const inner = shape[rank - 1]!;
  const innerStep = stride[rank - 1]! * w;
  let o = 0;
  for (;;) {
    let base = 0;
    for (let d = 0; d < rank - 1; d++) base += idx[d]! * stride[d]!;
    base *= w;
    for (let i = 0; i < inner; i++, base += innerStep) for (let k = 0; k < w; k++) to[o++] = from[base + k]!;
    let d = rank - 2;
    while (d >= 0 && ++idx[d]! === shape[d]!) idx[d--] = 0;
    if (d < 0) break;
  }
  return out;
}

/** One past the storage index of the view's last element (elements). Assumes numel > 0. */
function extent(s: { shape: readonly number[]; stride: readonly number[]; storageOffset: number }): number {
  let last = s.storageOffset;
  for (let i = 0; i < s.shape.length; i++) last += (s.shape[i]! - 1) * s.stride[i]!;
  return last + 1;
}

/** The dict of tensors: the top-level object itself, or the state dict a trainer wrapped. */
function pickStateDict(root: PyValue, path: string): PyDict {
  if (!(root instanceof PyDict)) throw new InputError(`${path}: checkpoint does not hold a dict of tensors`, path);
  for (const v of root.entries()) if (v[1] instanceof PyTensor) return root;
  for (const k of WRAPPER_KEYS) {
    const v = root.get(k);
    if (v instanceof PyDict) return v;
  }
  return root; // no tensors at all: an empty store
}

function resolveSlot(path: string, zip: ZipReader, prefix: string, name: string, t: PyTensor, dataOffsets: Map<string, number>): Slot {
  const bad = (why: string) => new InputError(`${path}: tensor ${name}: ${why}`, path);
  if (!(t.storage instanceof PyPersistent) || !(t.storage.pid instanceof PyTuple)) throw bad('storage is not a persistent storage reference');
  // ('storage', torch.<Dtype>Storage, key, location, numel)
  const [tag, cls, key, , count] = t.storage.pid.items;
  if (tag !== 'storage' || !(cls instanceof PyGlobal) || (typeof key !== 'string' && typeof key !== 'number') || typeof count !== 'number') {
    throw bad('malformed storage reference');
  }
  const dtype = STORAGE_DTYPE[cls.name];
  if (cls.module !== 'torch' || !dtype) throw bad(`unsupported storage type ${cls.qualified}`);
  const entryName = `${prefix}data/${key}`;
  const entry = zip.get(entryName);
  if (!entry) throw bad(`storage entry ${entryName} is missing from the archive`);
  const e = DTYPE_BYTES[dtype];
  if (entry.size < count * e) throw bad(`storage entry ${entryName} has ${entry.size} bytes, ${count} ${dtype} elements need ${count * e}`);
  const view = { shape: t.size, stride: t.stride, storageOffset: t.storageOffset };
  if (t.storageOffset < 0 || (numel(t.size) > 0 && extent(view) > count)) {
    throw bad(`view (offset ${t.storageOffset}, size [${t.size.join(',')}], stride [${t.stride.join(',')}]) exceeds its storage of ${count} elements`);
  }
  let dataOffset = dataOffsets.get(entryName);
  if (dataOffset === undefined) {
    dataOffset = entry.method === ZIP_STORED ? zip.dataOffset(entry) : -1;
    dataOffsets.set(entryName, dataOffset);
  }
  return { name, dtype, shape: t.size, stride: t.stride, storageOffset: t.storageOffset, entry, dataOffset, contiguous: isContiguous(t.size, t.stride) };
}
