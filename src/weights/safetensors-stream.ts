// A safetensors writer that streams: the header is written from the tensors' names, dtypes and
// shapes, then each tensor's bytes are appended in header order, in as many pieces as convenient.
// Memory stays at one piece, whatever the model's size (writeSafetensors holds every tensor).
// It writes to the path given; making the result appear atomically is the caller's part (write
// into a temporary folder or name, rename when done; `abort` removes the file).

import { closeSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { InputError } from '../core/errors.js';
import { DType, DTYPE_BYTES, numel } from '../core/tensor.js';

export interface TensorSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export class SafetensorsStreamWriter {
  private index = 0;
  /** Bytes of the current tensor written so far. */
  private written = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly specs: readonly TensorSpec[],
    private readonly sizes: readonly number[],
  ) {}

  /** Create `path` (it must not exist) and write the header. */
  static create(path: string, specs: readonly TensorSpec[], metadata?: Readonly<Record<string, string>>): SafetensorsStreamWriter {
    if (endianness() !== 'LE') throw new Error('SafetensorsStreamWriter assumes a little-endian host');
    // Null prototype: tensor names such as `constructor` or `__proto__` are plain keys.
    const header = Object.create(null) as Record<string, unknown>;
    if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
    const sizes: number[] = [];
    let offset = 0;
    for (const t of specs) {
      if (t.name === '__metadata__' || t.name in header) throw new Error(`safetensors: duplicate or reserved tensor name ${t.name}`);
      if (!(t.dtype in DTYPE_BYTES)) throw new Error(`safetensors: unknown dtype ${String(t.dtype)} for ${t.name}`);
      const size = numel(t.shape) * DTYPE_BYTES[t.dtype];
      header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + size] };
      sizes.push(size);
      offset += size;
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (Buffer.byteLength(json, 'utf8') % 8)) % 8); // keeps the data 8-byte aligned
    const headerBytes = Buffer.from(json, 'utf8');
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(headerBytes.length), 0);
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (e) {
      throw new InputError(`${path}: cannot create (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, path);
    }
    const w = new SafetensorsStreamWriter(path, fd, specs, sizes);
    try {
      w.raw(prefix);
      w.raw(headerBytes);
    } catch (e) {
      w.abort();
      throw e;
    }
    w.skipEmpty();
    return w;
  }

  /** The tensor whose bytes come next (undefined when all are written). */
  get current(): TensorSpec | undefined {
    return this.specs[this.index];
  }

  /** Append bytes of the current tensor; a tensor may come in several pieces. */
  append(bytes: Uint8Array): void {
    const spec = this.specs[this.index];
    if (!spec) throw new Error(`safetensors ${this.path}: all tensors are written already`);
    const size = this.sizes[this.index]!;
    if (this.written + bytes.byteLength > size) {
      throw new Error(`safetensors ${this.path}: ${spec.name} takes ${size} bytes, got ${this.written + bytes.byteLength}`);
    }
    this.raw(bytes);
    this.written += bytes.byteLength;
    if (this.written === size) {
      this.index++;
      this.written = 0;
      this.skipEmpty();
    }
  }

  /** Flush to disk and close; every tensor must be complete. */
  close(): void {
    const spec = this.specs[this.index];
    if (spec) throw new Error(`safetensors ${this.path}: ${spec.name} and ${this.specs.length - this.index - 1} more tensors were not written`);
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.closed = true;
  }

  /** Close (if open) and remove the file. */
  abort(): void {
    if (!this.closed) {
      this.closed = true;
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
    }
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }

  private skipEmpty(): void {
    while (this.index < this.specs.length && this.sizes[this.index] === 0) this.index++;
  }

  private raw(bytes: Uint8Array): void {
    let done = 0;
    try {
      while (done < bytes.byteLength) done += writeSync(this.fd, bytes, done, bytes.byteLength - done);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code) throw new InputError(`${this.path}: cannot write (${code})`, this.path);
      throw e;
    }
  }
}
