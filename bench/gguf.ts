// GGUF v3 files for the llama.cpp peer: a streaming writer (the tensor bytes of a 7B model are
// produced one tensor at a time, never all in memory), a reader of the header and tensor table
// (for tests), and fp16 tensors. The block formats (Q4_0, Q4_K, ...) are src/quant/ggml-blocks.ts.
//
// Layout (little-endian): "GGUF", u32 version 3, u64 tensor count, u64 metadata count; metadata
// (string key, u32 value type, value); tensor infos (string name, u32 n_dims, u64 ne[n_dims] with
// the innermost dimension first, u32 ggml type, u64 offset into the data section); padding to
// `general.alignment` (32); the data section, each tensor starting at an aligned offset.
// Strings are a u64 byte length and UTF-8 bytes, without terminator.

import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { GGML_BLOCK, GGML_TYPE_ID } from '../src/quant/ggml-blocks.js';

export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types. */
export const GGUF_TYPE = {
  U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12,
} as const;
type ScalarType = Exclude<keyof typeof GGUF_TYPE, 'ARRAY'>;

/** ggml tensor types used here (ids as GGUF stores them). */
export const GGML_TYPE = GGML_TYPE_ID;
export type GgmlType = keyof typeof GGML_TYPE;

export type GgufMeta =
  | { readonly type: ScalarType; readonly value: number | bigint | string | boolean }
  | { readonly type: 'ARRAY'; readonly of: ScalarType; readonly values: readonly (number | string | boolean)[] };

export const meta = {
  str: (value: string): GgufMeta => ({ type: 'STRING', value }),
  u32: (value: number): GgufMeta => ({ type: 'U32', value }),
  f32: (value: number): GgufMeta => ({ type: 'F32', value }),
  bool: (value: boolean): GgufMeta => ({ type: 'BOOL', value }),
  arr: (of: ScalarType, values: readonly (number | string | boolean)[]): GgufMeta => ({ type: 'ARRAY', of, values }),
};

export interface GgufTensor {
  readonly name: string;
  /** PyTorch order (outermost first), e.g. a Linear weight [out, in]. */
  readonly shape: readonly number[];
  readonly type: GgmlType;
  /** The tensor's bytes in `type`, produced when the writer reaches it. */
  readonly data: () => Uint8Array;
}

export function ggmlBytes(type: GgmlType, shape: readonly number[]): number {
  const n = shape.reduce((a, b) => a * b, 1);
  if (type === 'F32') return 4 * n;
  if (type === 'F16') return 2 * n;
  const { values, bytes } = GGML_BLOCK[type];
  if (shape[shape.length - 1]! % values !== 0) throw new Error(`${type} needs rows that are a multiple of ${values}, got [${shape.join(', ')}]`);
  return (n / values) * bytes;
}

const align = (n: number) => Math.ceil(n / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;

/** Serialises the header, metadata and tensor table into growing byte chunks. */
class Out {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.push(b); }
  u64(v: number | bigint): void { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b); }
  str(s: string): void { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.push(b); }
  scalar(type: ScalarType, v: number | bigint | string | boolean): void {
    const b = Buffer.alloc(8);
    switch (type) {
      case 'STRING': return this.str(String(v));
      case 'BOOL': return this.push(Buffer.of(v ? 1 : 0));
      case 'U8': b.writeUInt8(Number(v)); return this.push(b.subarray(0, 1));
      case 'I8': b.writeInt8(Number(v)); return this.push(b.subarray(0, 1));
      case 'U16': b.writeUInt16LE(Number(v)); return this.push(b.subarray(0, 2));
      case 'I16': b.writeInt16LE(Number(v)); return this.push(b.subarray(0, 2));
      case 'U32': b.writeUInt32LE(Number(v)); return this.push(b.subarray(0, 4));
      case 'I32': b.writeInt32LE(Number(v)); return this.push(b.subarray(0, 4));
      case 'F32': b.writeFloatLE(Number(v)); return this.push(b.subarray(0, 4));
      case 'U64': b.writeBigUInt64LE(BigInt(v)); return this.push(b);
      case 'I64': b.writeBigInt64LE(BigInt(v)); return this.push(b);
      case 'F64': b.writeDoubleLE(Number(v)); return this.push(b);
    }
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Writes a GGUF v3 file; tensor data is pulled from each tensor's `data()` in order. */
export function writeGguf(path: string, metadata: readonly (readonly [string, GgufMeta])[], tensors: readonly GgufTensor[]): void {
  const o = new Out();
  o.push(Buffer.from('GGUF', 'latin1'));
  o.u32(3);
  o.u64(tensors.length);
  o.u64(metadata.length);
  for (const [key, m] of metadata) {
    o.str(key);
    o.u32(GGUF_TYPE[m.type]);
    if (m.type === 'ARRAY') {
      o.u32(GGUF_TYPE[m.of]);
      o.u64(m.values.length);
      for (const v of m.values) o.scalar(m.of, v);
    } else {
      o.scalar(m.type, m.value);
    }
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    o.str(t.name);
    o.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) o.u64(t.shape[i]!); // ne[0] is the innermost
    o.u32(GGML_TYPE[t.type]);
    o.u64(offset);
    const size = ggmlBytes(t.type, t.shape);
    sizes.push(size);
    offset = align(offset + size);
  }
  o.push(Buffer.alloc(align(o.length) - o.length));

  const fd = openSync(path, 'w');
  try {
    writeAll(fd, o.bytes());
    tensors.forEach((t, i) => {
      const data = t.data();
      if (data.byteLength !== sizes[i]) throw new Error(`GGUF tensor ${t.name}: ${data.byteLength} bytes, ${t.type}[${t.shape.join(', ')}] needs ${sizes[i]}`);
      writeAll(fd, data);
      const pad = align(data.byteLength) - data.byteLength;
      if (pad > 0 && i < tensors.length - 1) writeAll(fd, new Uint8Array(pad));
    });
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}

export interface GgufTensorInfo {
  name: string;
  /** PyTorch order (outermost first). */
  shape: number[];
  type: number;
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, unknown>;
  tensors: GgufTensorInfo[];
  dataOffset: number;
}

/** Reads the header, metadata and tensor table (not the tensor data). */
export function readGgufHeader(path: string, maxHeaderBytes = 64 << 20): GgufHeader {
  const fd = openSync(path, 'r');
  let buf: Buffer;
  try {
    buf = Buffer.alloc(maxHeaderBytes);
    buf = buf.subarray(0, readSync(fd, buf, 0, maxHeaderBytes, 0));
  } finally {
    closeSync(fd);
  }
  let p = 0;
  const u32 = () => { const v = buf.readUInt32LE(p); p += 4; return v; };
  const u64 = () => { const v = Number(buf.readBigUInt64LE(p)); p += 8; return v; };
  const str = () => { const n = u64(); const s = buf.toString('utf8', p, p + n); p += n; return s; };
  const names = Object.fromEntries(Object.entries(GGUF_TYPE).map(([k, v]) => [v, k])) as Record<number, keyof typeof GGUF_TYPE>;
  const scalar = (t: number): unknown => {
    const n = names[t];
    let v: unknown;
    switch (n) {
      case 'STRING': return str();
      case 'BOOL': v = buf.readUInt8(p) !== 0; p += 1; return v;
      case 'U8': v = buf.readUInt8(p); p += 1; return v;
      case 'I8': v = buf.readInt8(p); p += 1; return v;
      case 'U16': v = buf.readUInt16LE(p); p += 2; return v;
      case 'I16': v = buf.readInt16LE(p); p += 2; return v;
      case 'U32': return u32();
      case 'I32': v = buf.readInt32LE(p); p += 4; return v;
      case 'F32': v = buf.readFloatLE(p); p += 4; return v;
      case 'U64': return u64();
      case 'I64': v = Number(buf.readBigInt64LE(p)); p += 8; return v;
      case 'F64': v = buf.readDoubleLE(p); p += 8; return v;
      default: throw new Error(`GGUF: unknown value type ${t}`);
    }
  };
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${path}: not a GGUF file`);
  p = 4;
  const version = u32();
  const nTensors = u64();
  const nMeta = u64();
  const metadata = new Map<string, unknown>();
  for (let i = 0; i < nMeta; i++) {
    const key = str();
    const t = u32();
    if (t === GGUF_TYPE.ARRAY) {
      const of = u32();
      const n = u64();
      metadata.set(key, Array.from({ length: n }, () => scalar(of)));
    } else {
      metadata.set(key, scalar(t));
    }
  }
  const raw: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const ne = Array.from({ length: nd }, u64);
    const type = u32();
    raw.push({ name, shape: ne.reverse(), type, offset: u64() });
  }
  const alignment = Number(metadata.get('general.alignment') ?? GGUF_ALIGNMENT);
  const dataOffset = Math.ceil(p / alignment) * alignment;
  return { version, metadata, dataOffset, tensors: raw.map((t) => ({ ...t, offset: dataOffset + t.offset })) };
}

// ---- fp16 ----

export { toHalf, fromHalf } from '../src/quant/half.js';
import { toHalf } from '../src/quant/half.js';

/** float32 -> fp16 bytes. */
export function toF16Bytes(x: Float32Array): Uint8Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = toHalf(x[i]!);
  return new Uint8Array(out.buffer);
}
