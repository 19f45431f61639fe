// Test builders: a tiny ZIP writer (stored or deflated entries, optional forced ZIP64, torch-style
// data alignment) and a pickle assembler, to make torch.save-like checkpoints by hand.

import { crc32, deflateRawSync } from 'node:zlib';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'mgllava-weights-'));
}

export interface ZipInput {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
}

/** A ZIP archive; `zip64` writes ZIP64 records even when not needed, `align` pads entry data. */
export function buildZip(entries: readonly ZipInput[], opts: { zip64?: boolean; align?: number } = {}): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let off = 0;
  const push = (b: Buffer) => {
    parts.push(b);
    off += b.length;
  };
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const body = e.deflate ? deflateRawSync(e.data) : Buffer.from(e.data);
    const crc = crc32(e.data);
    const lho = off;
    let pad = 0;
    if (opts.align) {
      const bare = (lho + 30 + name.length) % opts.align;
      pad = bare === 0 ? 0 : opts.align - bare;
      if (pad > 0 && pad < 4) pad += opts.align; // room for the extra block's own 4-byte header
    }
    const extra = Buffer.alloc(pad);
    if (pad) {
      extra.writeUInt16LE(0x4246, 0); // an unknown extra block, as torch's alignment padding
      extra.writeUInt16LE(pad - 4, 2);
    }
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(opts.zip64 ? 45 : 20, 4);
    lh.writeUInt16LE(e.deflate ? 8 : 0, 8);
    lh.writeUInt16LE(0x21, 12); // 1980-01-01
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(body.length, 18);
    lh.writeUInt32LE(e.data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    lh.writeUInt16LE(pad, 28);
    push(Buffer.concat([lh, name, extra, body]));

    const z64 = Buffer.alloc(opts.zip64 ? 28 : 0);
    if (opts.zip64) {
      z64.writeUInt16LE(0x0001, 0);
      z64.writeUInt16LE(24, 2);
      z64.writeBigUInt64LE(BigInt(e.data.length), 4);
      z64.writeBigUInt64LE(BigInt(body.length), 12);
      z64.writeBigUInt64LE(BigInt(lho), 20);
    }
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(45, 4);
    ch.writeUInt16LE(opts.zip64 ? 45 : 20, 6);
    ch.writeUInt16LE(e.deflate ? 8 : 0, 10);
    ch.writeUInt16LE(0x21, 14);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(opts.zip64 ? 0xffffffff : body.length, 20);
    ch.writeUInt32LE(opts.zip64 ? 0xffffffff : e.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt16LE(z64.length, 30);
    ch.writeUInt32LE(opts.zip64 ? 0xffffffff : lho, 42);
    central.push(Buffer.concat([ch, name, z64]));
  }
  const cdOffset = off;
  const cd = Buffer.concat(central);
  push(cd);
  if (opts.zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(entries.length), 24);
    rec.writeBigUInt64LE(BigInt(entries.length), 32);
    rec.writeBigUInt64LE(BigInt(cd.length), 40);
    rec.writeBigUInt64LE(BigInt(cdOffset), 48);
    const recAt = off;
    push(rec);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(recAt), 8);
    loc.writeUInt32LE(1, 16);
    push(loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : entries.length, 8);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : entries.length, 10);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cd.length, 12);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cdOffset, 16);
  push(eocd);
  return Buffer.concat(parts);
}

/** Pickle assembler: each method appends one opcode (protocol 2 encodings). */
export class Pickle {
  private readonly out: number[] = [];
  private raw(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }
  op(code: number): this {
    return this.raw(code);
  }
  proto(n = 2): this {
    return this.raw(0x80, n);
  }
  mark(): this {
    return this.raw(0x28);
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const n = Buffer.alloc(4);
    n.writeUInt32LE(b.length);
    return this.raw(0x58, ...n, ...b);
  }
  int(v: number): this {
    if (v >= 0 && v < 256) return this.raw(0x4b, v);
    if (v >= 0 && v < 65536) return this.raw(0x4d, v & 0xff, v >> 8);
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return this.raw(0x4a, ...b);
  }
  global(module: string, name: string): this {
    return this.raw(0x63, ...Buffer.from(`${module}\n${name}\n`, 'utf8'));
  }
  tuple(): this {
    return this.raw(0x74);
  }
  emptyTuple(): this {
    return this.raw(0x29);
  }
  emptyDict(): this {
    return this.raw(0x7d);
  }
  setitems(): this {
    return this.raw(0x75);
  }
  reduce(): this {
    return this.raw(0x52);
  }
  build(): this {
    return this.raw(0x62);
  }
  put(i: number): this {
    return this.raw(0x71, i);
  }
  get(i: number): this {
    return this.raw(0x68, i);
  }
  bool(v: boolean): this {
    return this.raw(v ? 0x88 : 0x89);
  }
  none(): this {
    return this.raw(0x4e);
  }
  stop(): this {
    return this.raw(0x2e);
  }
  ints(vs: readonly number[]): this {
    this.mark();
    for (const v of vs) this.int(v);
    return this.tuple();
  }
  orderedDict(): this {
    return this.global('collections', 'OrderedDict').emptyTuple().reduce();
  }
  /** `_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())`. */
  tensor(t: { storageType: string; key: string; numel: number; offset: number; size: readonly number[]; stride: readonly number[] }): this {
    this.global('torch._utils', '_rebuild_tensor_v2').mark();
    this.mark().str('storage').global('torch', t.storageType).str(t.key).str('cpu').int(t.numel).tuple().op(0x51);
    return this.int(t.offset).ints(t.size).ints(t.stride).bool(false).orderedDict().tuple().reduce();
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

// ---------------------------------------------------------------------------------------------
// torch.save from JS values: whole trainer checkpoints (mmengine / xtuner `iter_N.pth`, DeepSpeed
// `*_model_states.pt`), written the way torch.save writes them (pickle protocol 2, one storage
// entry per tensor, `<name>/data.pkl`, `<name>/byteorder`, `<name>/version`).

/** A tensor with its own storage. `bytes` are little-endian, row-major, contiguous. */
export class TorchTensorV {
  constructor(readonly dtype: 'F32' | 'F16' | 'BF16', readonly shape: readonly number[], readonly bytes: Uint8Array) {}
}
/** A Python tuple. */
export class TupleV {
  constructor(readonly items: readonly PickleValue[]) {}
}
/** `torch.Size([...])`, as DeepSpeed's `param_shapes` hold. */
export class TorchSizeV {
  constructor(readonly dims: readonly number[]) {}
}
/** A Python float even when the value is integral (JS numbers that are integers become ints). */
export class FloatV {
  constructor(readonly value: number) {}
}
/** `collections.OrderedDict`; `metadata` adds the `_metadata` attribute a module state_dict() carries. */
export class OrderedDictV {
  constructor(readonly entries: readonly (readonly [string, PickleValue])[], readonly metadata = false) {}
}
/** `set(items)`: protocol 2 has no set opcode, so it is `__builtin__.set([items])` (DeepSpeed's `sparse_tensor_module_names`). */
export class SetV {
  constructor(readonly items: readonly PickleValue[]) {}
}
/**
 * An instance of a plain Python class: protocol 2 writes `cls`, `()`, NEWOBJ, then its `__dict__`
 * and BUILD (mmengine's `HistoryBuffer` in `message_hub`).
 */
export class ObjectV {
  constructor(readonly module: string, readonly name: string, readonly state: PickleValue) {}
}
/**
 * A 1-D float64 numpy array, as `ndarray.__reduce__` writes it under protocol 2:
 * `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` then BUILD
 * `(1, (n,), numpy.dtype('f8', False, True) + BUILD (3, '<', ...), False, raw bytes)`; bytes objects
 * become `_codecs.encode(latin-1 text, 'latin1')` under protocol 2.
 */
export class NdArrayV {
  constructor(readonly values: readonly number[]) {}
}

export type PickleValue =
  | null
  | boolean
  | number
  | string
  | readonly PickleValue[]
  | { readonly [key: string]: PickleValue }
  | TorchTensorV
  | TupleV
  | TorchSizeV
  | FloatV
  | OrderedDictV
  | SetV
  | ObjectV
  | NdArrayV;

const TORCH_STORAGE: Record<TorchTensorV['dtype'], string> = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage' };
const TORCH_ELEMENT_BYTES: Record<TorchTensorV['dtype'], number> = { F32: 4, F16: 2, BF16: 2 };

function pickleFloat(p: Pickle, v: number): void {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(v);
  p.op(0x47); // BINFLOAT
  for (const x of b) p.op(x);
}

function pickleBytesProto2(p: Pickle, bytes: Uint8Array): void {
  p.global('_codecs', 'encode').mark().str(Buffer.from(bytes).toString('latin1')).str('latin1').tuple().reduce();
}

function pickleInto(p: Pickle, v: PickleValue, storages: Uint8Array[]): void {
  if (v === null) p.none();
  else if (typeof v === 'boolean') p.bool(v);
  else if (typeof v === 'number') {
    if (Number.isInteger(v)) p.int(v);
    else pickleFloat(p, v);
  } else if (typeof v === 'string') p.str(v);
  else if (v instanceof FloatV) pickleFloat(p, v.value);
  else if (v instanceof TupleV) {
    p.mark();
    for (const x of v.items) pickleInto(p, x, storages);
    p.tuple();
  } else if (v instanceof TorchSizeV) p.global('torch', 'Size').mark().ints(v.dims).tuple().reduce();
  else if (v instanceof TorchTensorV) {
    const key = String(storages.length);
    storages.push(v.bytes);
    const numel = v.bytes.length / TORCH_ELEMENT_BYTES[v.dtype];
    const stride = v.shape.map((_, i) => v.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    p.tensor({ storageType: TORCH_STORAGE[v.dtype], key, numel, offset: 0, size: v.shape, stride });
  } else if (v instanceof OrderedDictV) {
    p.orderedDict();
    if (v.entries.length) {
      p.mark();
      for (const [k, x] of v.entries) {
        p.str(k);
        pickleInto(p, x, storages);
      }
      p.setitems();
    }
    if (v.metadata) p.emptyDict().mark().str('_metadata').orderedDict().setitems().build();
  } else if (v instanceof SetV) {
    p.global('__builtin__', 'set').mark().op(0x5d); // EMPTY_LIST
    if (v.items.length) {
      p.mark();
      for (const x of v.items) pickleInto(p, x, storages);
      p.op(0x65); // APPENDS
    }
    p.tuple().reduce();
  } else if (v instanceof ObjectV) {
    p.global(v.module, v.name).emptyTuple().op(0x81); // NEWOBJ
    pickleInto(p, v.state, storages);
    p.build();
  } else if (v instanceof NdArrayV) {
    p.global('numpy.core.multiarray', '_reconstruct').mark().global('numpy', 'ndarray').ints([0]);
    pickleBytesProto2(p, Buffer.from('b'));
    p.tuple().reduce();
    p.mark().int(1).ints([v.values.length]);
    p.global('numpy', 'dtype').mark().str('f8').bool(false).bool(true).tuple().reduce();
    p.mark().int(3).str('<').none().none().none().int(-1).int(-1).int(0).tuple().build();
    p.bool(false);
    pickleBytesProto2(p, new Uint8Array(Float64Array.from(v.values).buffer));
    p.tuple().build();
  } else if (Array.isArray(v)) {
    p.op(0x5d); // EMPTY_LIST
    if (v.length) {
      p.mark();
      for (const x of v) pickleInto(p, x, storages);
      p.op(0x65); // APPENDS
    }
  } else {
    p.emptyDict();
    const entries = Object.entries(v as { [key: string]: PickleValue });
    if (entries.length) {
      p.mark();
      for (const [k, x] of entries) {
        p.str(k);
        pickleInto(p, x, storages);
      }
      p.setitems();
    }
  }
}

/** The bytes torch.save(value, `<archive>.pt`) would write (zip, 64-byte aligned storages). */
export function torchSave(value: PickleValue, archive = 'archive'): Buffer {
  const storages: Uint8Array[] = [];
  const p = new Pickle().proto();
  pickleInto(p, value, storages);
  const entries: ZipInput[] = [
    { name: `${archive}/data.pkl`, data: p.stop().bytes() },
    { name: `${archive}/byteorder`, data: Buffer.from('little') },
    ...storages.map((data, i) => ({ name: `${archive}/data/${i}`, data })),
    { name: `${archive}/version`, data: Buffer.from('3\n') },
  ];
  return buildZip(entries, { align: 64 });
}
