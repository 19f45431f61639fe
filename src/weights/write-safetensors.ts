// safetensors writer (for quantized weights, converted checkpoints, test shards).
//
// Written atomically (file-io.ts writeFileAtomically): readers never see a half-written file,
// and an interrupted `quantize` leaves nothing behind.

import { endianness } from 'node:os';
import { writeFileAtomically } from './file-io.js';
import { DType, DTYPE_BYTES, numel } from '../core/tensor.js';

export interface TensorToWrite {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Little-endian bytes in row-major order; a Float32Array is taken as F32 data. */
  readonly data: Uint8Array | Float32Array;
}

function asBytes(d: Uint8Array | Float32Array): Uint8Array {
  return d instanceof Uint8Array ? d : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/**
 * Write `tensors` to `path` as one safetensors file: u64 header length, JSON header (padded with
 * spaces to a multiple of 8 bytes so the data block stays 8-byte aligned), data in the given order.
 */
export function writeSafetensors(path: string, tensors: readonly TensorToWrite[], metadata?: Readonly<Record<string, string>>): void {
  const { prefix, headerBytes, blobs } = encode(tensors, metadata);
  writeFileAtomically(path, [prefix, headerBytes, ...blobs]);
}

/** The whole safetensors file in memory (small files: adapters, test data). */
export function safetensorsBytes(tensors: readonly TensorToWrite[], metadata?: Readonly<Record<string, string>>): Uint8Array {
  const { prefix, headerBytes, blobs } = encode(tensors, metadata);
  return Buffer.concat([prefix, headerBytes, ...blobs]);
}

function encode(tensors: readonly TensorToWrite[], metadata?: Readonly<Record<string, string>>): { prefix: Buffer; headerBytes: Buffer; blobs: Uint8Array[] } {
  if (endianness() !== 'LE') throw new Error('writeSafetensors assumes a little-endian host');
  // Null prototype: tensor names such as `constructor` or `__proto__` are plain keys.
  const header = Object.create(null) as Record<string, unknown>;
  const seen = new Set<string>();
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let offset = 0;
  const blobs: Uint8Array[] = [];
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name)) throw new Error(`writeSafetensors: duplicate or reserved tensor name ${t.name}`);
    if (!(t.dtype in DTYPE_BYTES)) throw new Error(`writeSafetensors: unknown dtype ${String(t.dtype)} for ${t.name}`);
    if (t.data instanceof Float32Array && t.dtype !== 'F32') throw new Error(`writeSafetensors: ${t.name} has Float32Array data but dtype ${t.dtype}`);
    const bytes = asBytes(t.data);
    const want = numel(t.shape) * DTYPE_BYTES[t.dtype];
    if (bytes.byteLength !== want) {
      throw new Error(`writeSafetensors: ${t.name} has ${bytes.byteLength} bytes, ${t.dtype}[${t.shape.join(',')}] needs ${want}`);
    }
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + want] };
    seen.add(t.name);
    offset += want;
    blobs.push(bytes);
  }
  let json = JSON.stringify(header);
  const jsonLen = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (jsonLen % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  return { prefix, headerBytes, blobs };
}
