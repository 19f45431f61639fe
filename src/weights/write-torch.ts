// torch.save-compatible writer: a `.pth` that `torch.load` reads (XTuner's stage 2 loads its
// `pretrained_pth` with torch.load, so a stage-1 result must exist in this form too).
//
// Format facts followed (torch/serialization.py `_save`, caffe2/serialize/inline_container.cc):
// - The file is a ZIP archive whose entries all sit in one folder, the archive name (torch uses
//   `archive` when saving to a stream; the reader takes the folder of the first entry).
// - `archive/data.pkl`: the object, pickled with protocol 2 (torch's DEFAULT_PROTOCOL). A tensor
//   pickles as `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
//   requires_grad, backward_hooks)`, backward_hooks being `collections.OrderedDict()`; `storage`
//   is a persistent id (BINPERSID) `('storage', torch.<Dtype>Storage, key, location, numel)` with
//   key `str(n)` for the n-th storage, location 'cpu' and numel counted in elements.
// - `archive/byteorder`: "little"; `archive/data/<key>`: each storage's raw bytes;
//   `archive/version`: the file format version torch.save produces, "3\n" (the reader requires a
//   `version` record; newer torch also writes optional `.format_version`, `.storage_alignment`,
//   `.data/serialization_id`, which readers do not need).
// - Records are STORED (uncompressed) and each one's data starts on a 64-byte boundary
//   (kFieldAlignment): the local header's extra field ends with a block tagged 'FB' whose payload
//   is the padding, always present. ZIP64 fields are used once a size or offset needs them.
// A state dict is an OrderedDict of such tensors; `wrapStateDict` puts it under `state_dict` in a
// plain dict, as mmengine's checkpoints hold it (xtuner's guess_load_checkpoint unwraps that).
//
// Written atomically, as write-safetensors.ts does (file-io.ts writeFileAtomically): a temporary
// file in the destination folder, fsynced and renamed over the target; removed on any error.

import { endianness } from 'node:os';
import { crc32 } from 'node:zlib';
import { writeFileAtomically } from './file-io.js';
import { SIG_CENTRAL, SIG_EOCD, SIG_LOCAL, SIG_ZIP64_EOCD, SIG_ZIP64_LOCATOR, U32_MAX } from './zip.js';

export type TorchDType = 'F32' | 'BF16' | 'F16';

export interface TorchTensorToWrite {
  readonly name: string;
  readonly dtype: TorchDType;
  readonly shape: readonly number[];
  /** Little-endian bytes in row-major order; a Float32Array is taken as F32 data. */
  readonly data: Uint8Array | Float32Array;
}

export interface WriteTorchOptions {
  /** Save `{'state_dict': OrderedDict(...)}` (mmengine's layout) instead of the bare OrderedDict. */
  readonly wrapStateDict?: boolean;
  /** Write ZIP64 records even where 32-bit fields would do (tests of the > 4 GiB layout). */
  readonly forceZip64?: boolean;
}

/** torch's typed-storage class per dtype (TypedStorage._pickle_storage_type()). */
const STORAGE_CLASS: Record<TorchDType, string> = { F32: 'FloatStorage', BF16: 'BFloat16Storage', F16: 'HalfStorage' };
const ELEMENT_BYTES: Record<TorchDType, number> = { F32: 4, BF16: 2, F16: 2 };
const ARCHIVE = 'archive';
/** torch's kProducedFileFormatVersion for torch.save archives. */
const FILE_FORMAT_VERSION = '3\n';
const ALIGN = 64;

/** Write `tensors` to `path` as torch.save(OrderedDict(...)) would. Throws InputError when the file cannot be written. */
export function writeTorchCheckpoint(path: string, tensors: readonly TorchTensorToWrite[], opts: WriteTorchOptions = {}): void {
  if (endianness() !== 'LE') throw new Error('writeTorchCheckpoint assumes a little-endian host');
  const storages = tensors.map(checkTensor);
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new Error(`writeTorchCheckpoint: duplicate tensor name ${t.name}`);
    seen.add(t.name);
  }
  const records: { name: string; data: Uint8Array }[] = [
    { name: 'data.pkl', data: statePickle(tensors, opts.wrapStateDict ?? false) },
    { name: 'byteorder', data: Buffer.from('little') },
    // torch writes the storages in sorted key order (string sort: 0, 1, 10, 11, 2, ...).
    ...storages.map((data, i) => ({ name: `data/${i}`, data })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    { name: 'version', data: Buffer.from(FILE_FORMAT_VERSION) },
  ];
  writeFileAtomically(path, zipParts(records.map((r) => ({ name: `${ARCHIVE}/${r.name}`, data: r.data })), opts.forceZip64 ?? false));
}

/** The tensor's bytes, after checking dtype, shape and length agree. */
function checkTensor(t: TorchTensorToWrite): Uint8Array {
  const what = `writeTorchCheckpoint: ${t.name}`;
  if (!(t.dtype in STORAGE_CLASS)) throw new Error(`${what} has unsupported dtype ${String(t.dtype)} (F32, BF16, F16)`);
  if (t.data instanceof Float32Array && t.dtype !== 'F32') throw new Error(`${what} has Float32Array data but dtype ${t.dtype}`);
  if (t.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new Error(`${what} has an invalid shape [${t.shape.join(',')}]`);
  const bytes = t.data instanceof Uint8Array ? t.data : new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const want = t.shape.reduce((a, b) => a * b, 1) * ELEMENT_BYTES[t.dtype];
  if (bytes.byteLength !== want) throw new Error(`${what} has ${bytes.byteLength} bytes, ${t.dtype}[${t.shape.join(',')}] needs ${want}`);
  return bytes;
}

/** Row-major strides in elements, as torch computes them for a contiguous tensor (size-0 dims count as 1). */
function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= Math.max(shape[i]!, 1);
  }
  return s;
}

// --- the pickle ---------------------------------------------------------------------------

/** Protocol-2 opcodes used (Lib/pickle.py names). */
const OP = {
  PROTO: 0x80, STOP: 0x2e, MARK: 0x28, EMPTY_DICT: 0x7d, EMPTY_TUPLE: 0x29, TUPLE: 0x74, TUPLE1: 0x85,
  TUPLE2: 0x86, TUPLE3: 0x87, SETITEM: 0x73, SETITEMS: 0x75, GLOBAL: 0x63, REDUCE: 0x52, BINPERSID: 0x51,
  BINUNICODE: 0x58, BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d, LONG1: 0x8a, NEWFALSE: 0x89, BINPUT: 0x71,
  LONG_BINPUT: 0x72, BINGET: 0x68, LONG_BINGET: 0x6a,
} as const;

/** Python's pickler writes dict items in batches of this many (pickle._BATCHSIZE). */
const BATCH = 1000;

class PickleWriter {
  private readonly parts: Buffer[] = [];
  /** GLOBALs are memoised (BINPUT on first use, BINGET after), as Python's pickler does. */
  private readonly memo = new Map<string, number>();

  op(...codes: number[]): this {
    this.parts.push(Buffer.from(codes));
    return this;
  }

  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const n = Buffer.alloc(5);
    n[0] = OP.BINUNICODE;
    n.writeUInt32LE(b.length, 1);
    this.parts.push(n, b);
    return this;
  }

  /** An int the way pickle.save_long writes it under protocol 2. */
  int(v: number): this {
    if (!Number.isSafeInteger(v)) throw new Error(`pickle: ${v} is not a safe integer`);
    if (v >= 0 && v < 0x100) return this.op(OP.BININT1, v);
    if (v >= 0 && v < 0x10000) return this.op(OP.BININT2, v & 0xff, v >> 8);
    if (v >= -0x80000000 && v < 0x80000000) {
      const b = Buffer.alloc(5);
      b[0] = OP.BININT;
      b.writeInt32LE(v, 1);
      this.parts.push(b);
      return this;
    }
    // LONG1: the shortest little-endian two's complement.
    let x = BigInt(v);
    const bytes: number[] = [];
    for (;;) {
      bytes.push(Number(x & 0xffn));
      x >>= 8n;
      const sign = (bytes[bytes.length - 1]! & 0x80) !== 0;
      if ((x === 0n && !sign) || (x === -1n && sign)) break;
    }
    return this.op(OP.LONG1, bytes.length, ...bytes);
  }

  global(module: string, name: string): this {
    const q = `${module}\n${name}\n`;
    const slot = this.memo.get(q);
    if (slot !== undefined) return slot < 0x100 ? this.op(OP.BINGET, slot) : this.op(OP.LONG_BINGET, ...u32(slot));
    this.op(OP.GLOBAL);
    this.parts.push(Buffer.from(q, 'utf8'));
    const i = this.memo.size;
    this.memo.set(q, i);
    return i < 0x100 ? this.op(OP.BINPUT, i) : this.op(OP.LONG_BINPUT, ...u32(i));
  }

  /** A tuple of ints (pickle.save_tuple: EMPTY_TUPLE, TUPLE1-3, else MARK ... TUPLE). */
  intTuple(vs: readonly number[]): this {
    if (vs.length === 0) return this.op(OP.EMPTY_TUPLE);
    if (vs.length > 3) this.op(OP.MARK);
    for (const v of vs) this.int(v);
    return this.op(vs.length > 3 ? OP.TUPLE : [OP.TUPLE1, OP.TUPLE2, OP.TUPLE3][vs.length - 1]!);
  }

  /** `collections.OrderedDict()`: the class called with no arguments. */
  emptyOrderedDict(): this {
    return this.global('collections', 'OrderedDict').op(OP.EMPTY_TUPLE, OP.REDUCE);
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function u32(v: number): number[] {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return [...b];
}

/** data.pkl: OrderedDict{name: _rebuild_tensor_v2(...)}, optionally inside {'state_dict': ...}. */
function statePickle(tensors: readonly TorchTensorToWrite[], wrap: boolean): Buffer {
  const p = new PickleWriter().op(OP.PROTO, 2);
  if (wrap) p.op(OP.EMPTY_DICT).str('state_dict');
  p.emptyOrderedDict();
  // Dict items go in batches: MARK k v ... SETITEMS, a lone item as k v SETITEM (pickle._batch_setitems).
  for (let start = 0; start < tensors.length; start += BATCH) {
    const batch = tensors.slice(start, start + BATCH);
    if (batch.length > 1) p.op(OP.MARK);
    batch.forEach((t, j) => {
      p.str(t.name);
      p.global('torch._utils', '_rebuild_tensor_v2').op(OP.MARK);
      // The persistent id of the tensor's own storage (one storage per tensor, key = its index).
      p.op(OP.MARK).str('storage').global('torch', STORAGE_CLASS[t.dtype]).str(String(start + j)).str('cpu');
      p.int(t.shape.reduce((a, b) => a * b, 1)).op(OP.TUPLE, OP.BINPERSID);
      p.int(0).intTuple(t.shape).intTuple(contiguousStrides(t.shape)).op(OP.NEWFALSE).emptyOrderedDict();
      p.op(OP.TUPLE, OP.REDUCE);
    });
    p.op(batch.length > 1 ? OP.SETITEMS : OP.SETITEM);
  }
  if (wrap) p.op(OP.SETITEM);
  return p.op(OP.STOP).bytes();
}

// --- the zip ------------------------------------------------------------------------------

/** MS-DOS date 1980-01-01, time 00:00 (a fixed timestamp keeps the output reproducible). */
const DOS_DATE = 0x21;

/** Byte chunks in file order (record data by reference, not copied), with the running length. */
class Parts {
  readonly list: Uint8Array[] = [];
  pos = 0;

  write(b: Uint8Array): void {
    this.list.push(b);
    this.pos += b.byteLength;
  }
}

/**
 * The fields local and central headers share, from "version needed" to "extra field length"
 * (26 bytes at `at`: 4 in a local header, 6 in a central one); method STORED, no flags.
 */
function writeSharedHeaderFields(h: Buffer, at: number, f: { version: number; crc: number; size: number; nameLength: number; extraLength: number }): void {
  h.writeUInt16LE(f.version, at); // version needed: 4.5 for ZIP64
  h.writeUInt16LE(0, at + 2); // flags
  h.writeUInt16LE(0, at + 4); // method: stored
  h.writeUInt16LE(0, at + 6); // time
  h.writeUInt16LE(DOS_DATE, at + 8);
  h.writeUInt32LE(f.crc, at + 10);
  h.writeUInt32LE(f.size, at + 14); // compressed size
  h.writeUInt32LE(f.size, at + 18); // uncompressed size
  h.writeUInt16LE(f.nameLength, at + 22);
  h.writeUInt16LE(f.extraLength, at + 24);
}

/** A STORED zip of `records` as byte chunks, each record's data 64-byte aligned (APPNOTE 6.3 layout). */
function zipParts(records: readonly { name: string; data: Uint8Array }[], forceZip64: boolean): Uint8Array[] {
  const out = new Parts();
  const central: Buffer[] = [];
  for (const r of records) {
    const name = Buffer.from(r.name, 'utf8');
    const size = r.data.byteLength;
    const crc = crc32(r.data);
    const offset = out.pos;
    const bigSize = forceZip64 || size >= U32_MAX;
    const bigOffset = forceZip64 || offset >= U32_MAX;
    // Local ZIP64 extra: both sizes, when the sizes overflow.
    const localZ64 = bigSize ? zip64Extra([size, size]) : Buffer.alloc(0);
    // The 'FB' padding block: data starts at the next multiple of 64 after the headers.
    const start = offset + 30 + name.length + localZ64.length + 4;
    const pad = (ALIGN - (start % ALIGN)) % ALIGN;
    const fb = Buffer.alloc(4 + pad, 'Z');
    fb.write('FB', 0, 'latin1');
    fb.writeUInt16LE(pad, 2);
    const extra = Buffer.concat([localZ64, fb]);

    const version = bigSize || bigOffset ? 45 : 20;
    const size32 = bigSize ? U32_MAX : size;

    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(SIG_LOCAL, 0);
    writeSharedHeaderFields(lh, 4, { version, crc, size: size32, nameLength: name.length, extraLength: extra.length });
    out.write(lh);
    out.write(name);
    out.write(extra);
    if ((out.pos % ALIGN) !== 0) throw new Error(`writeTorchCheckpoint: ${r.name} data is not ${ALIGN}-byte aligned`);
    out.write(r.data);

    // Central ZIP64 extra: only the overflowing fields, in the order size, compressed size, offset.
    const cz = zip64Extra([...(bigSize ? [size, size] : []), ...(bigOffset ? [offset] : [])]);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(SIG_CENTRAL, 0);
    ch.writeUInt16LE(version, 4); // version made by (MS-DOS)
    writeSharedHeaderFields(ch, 6, { version, crc, size: size32, nameLength: name.length, extraLength: cz.length });
    // comment length, disk number, internal and external attributes: 0
    ch.writeUInt32LE(bigOffset ? U32_MAX : offset, 42);
    central.push(ch, name, cz);
  }
  const cdOffset = out.pos;
  const cd = Buffer.concat(central);
  out.write(cd);
  const n = records.length;
  const big = forceZip64 || n >= 0xffff || cd.length >= U32_MAX || cdOffset >= U32_MAX;
  if (big) {
    // ZIP64 end-of-central-directory record (56 bytes) and its locator (20 bytes).
    const at = out.pos;
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(SIG_ZIP64_EOCD, 0);
    rec.writeBigUInt64LE(44n, 4); // size of the rest of the record
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(n), 24);
    rec.writeBigUInt64LE(BigInt(n), 32);
    rec.writeBigUInt64LE(BigInt(cd.length), 40);
    rec.writeBigUInt64LE(BigInt(cdOffset), 48);
    out.write(rec);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(SIG_ZIP64_LOCATOR, 0);
    loc.writeBigUInt64LE(BigInt(at), 8);
    loc.writeUInt32LE(1, 16); // total number of disks
    out.write(loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(SIG_EOCD, 0);
  eocd.writeUInt16LE(big ? 0xffff : n, 8);
  eocd.writeUInt16LE(big ? 0xffff : n, 10);
  eocd.writeUInt32LE(big ? U32_MAX : cd.length, 12);
  eocd.writeUInt32LE(big ? U32_MAX : cdOffset, 16);
  out.write(eocd);
  return out.list;
}

/** A ZIP64 extended-information extra field (id 0x0001) holding `values` as u64; empty for none. */
function zip64Extra(values: readonly number[]): Buffer {
  if (values.length === 0) return Buffer.alloc(0);
  const b = Buffer.alloc(4 + 8 * values.length);
  b.writeUInt16LE(0x0001, 0);
  b.writeUInt16LE(8 * values.length, 2);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), 4 + 8 * i));
  return b;
}
