// safetensors reader: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}, then the data block.
// Only the header is read; tensors stay in the file as byte ranges.

import { fstatSync, closeSync } from 'node:fs';
import { InputError } from '../core/errors.js';
import { DType, DTYPE_BYTES, numel } from '../core/tensor.js';
import { TensorRef, WeightStore } from './types.js';
import { openForRead, readAt, realPath } from './file-io.js';

const MAX_HEADER = 100 * 1024 * 1024;

export class SafetensorsStore implements WeightStore {
  private constructor(
    readonly path: string,
    private readonly tensors: Map<string, TensorRef>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  static open(path: string): SafetensorsStore {
    const abs = realPath(path);
    const fd = openForRead(abs, path);
    try {
      const size = fstatSync(fd).size;
      const bad = (why: string) => new InputError(`${path}: not a valid safetensors file (${why})`, path);
      if (size < 8) throw bad(`only ${size} bytes`);
      const lenBuf = readAt(fd, path, 0, 8, 'header length');
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen > MAX_HEADER || 8 + headerLen > size) throw bad(`header of ${headerLen} bytes in a ${size}-byte file`);
      const hbuf = readAt(fd, path, 8, headerLen, 'header');
      let header: Record<string, unknown>;
      try {
        header = JSON.parse(hbuf.toString('utf8')) as Record<string, unknown>;
      } catch {
        throw bad('header is not JSON');
      }
      const base = 8 + headerLen;
      const tensors = new Map<string, TensorRef>();
      let metadata: Record<string, string> = {};
      for (const [name, v] of Object.entries(header)) {
        if (name === '__metadata__') {
          metadata = (v ?? {}) as Record<string, string>;
          continue;
        }
        const e = v as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
        if (!e || typeof e.dtype !== 'string' || !Array.isArray(e.shape) || !Array.isArray(e.data_offsets)) {
          throw bad(`entry ${name} lacks dtype, shape or data_offsets`);
        }
        if (!(e.dtype in DTYPE_BYTES)) throw new InputError(`${path}: tensor ${name} has unsupported dtype ${e.dtype}`, path);
        const dtype = e.dtype as DType;
        const [b, end] = e.data_offsets;
        const want = numel(e.shape) * DTYPE_BYTES[dtype];
        if (end - b !== want) throw bad(`tensor ${name} has ${end - b} bytes, ${dtype}[${e.shape.join(',')}] needs ${want}`);
        if (base + end > size) throw bad(`truncated: tensor ${name} ends at byte ${base + end}, file has ${size}`);
        tensors.set(name, { name, dtype, shape: e.shape, source: { kind: 'file', path: abs, offset: base + b, length: want } });
      }
      return new SafetensorsStore(path, tensors, metadata);
    } finally {
      closeSync(fd);
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  get(name: string): TensorRef | undefined {
    return this.tensors.get(name);
  }
}
