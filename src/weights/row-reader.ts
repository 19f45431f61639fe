// Rows of a float matrix in a weight file read as float32, a piece at a time, into buffers reused
// from piece to piece (fresh ones cost a page fault per 4 KiB each time): what quantizers and the
// quantization error report stream a 7B model's matrices through.

import { closeSync, readSync } from 'node:fs';
import { InputError } from '../core/errors.js';
import { DTYPE_BYTES, bytesToF32 } from '../core/tensor.js';
import { openForRead } from './file-io.js';
import { TensorRef } from './types.js';

/** A growable array kept between uses. */
export class Reusable<T extends Uint8Array | Float32Array> {
  private a?: T;
  constructor(private readonly make: (n: number) => T) {}
  get(n: number): T {
    if (!this.a || this.a.length < n) this.a = this.make(Math.max(n, Math.ceil((this.a?.length ?? 0) * 1.5)));
    return this.a.subarray(0, n) as T;
  }
}

/** Reads rows of float matrices as float32 into reused buffers, keeping one file open at a time. */
export class RowReader {
  private fd?: number;
  private path?: string;
  private readonly bytes = new Reusable((n) => new Uint8Array(n));
  private readonly floats = new Reusable((n) => new Float32Array(n));

  /** Rows r0 .. r0+rows-1 of the [N, K] matrix `t` (valid until the next call). */
  read(t: TensorRef, r0: number, rows: number, K: number): Float32Array {
    const rowBytes = K * DTYPE_BYTES[t.dtype];
    const n = rows * K;
    let bytes: Uint8Array;
    if (t.source.kind === 'memory') {
      bytes = t.source.bytes.subarray(r0 * rowBytes, (r0 + rows) * rowBytes);
    } else {
      if (this.path !== t.source.path) {
        this.close();
        this.fd = openForRead(t.source.path);
        this.path = t.source.path;
      }
      bytes = this.bytes.get(rows * rowBytes);
      const at = t.source.offset + r0 * rowBytes;
      let done = 0;
      while (done < bytes.length) {
        const got = readSync(this.fd!, bytes, done, bytes.length - done, at + done);
        if (got === 0) throw new InputError(`${t.source.path}: truncated (tensor ${t.name}: wanted ${bytes.length} bytes at offset ${at})`, t.source.path);
        done += got;
      }
    }
    const out = this.floats.get(n);
    if (t.dtype === 'BF16') {
      const src = bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, n) : new Uint16Array(new Uint8Array(bytes).buffer);
      const o32 = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) o32[i] = src[i]! << 16;
    } else if (t.dtype === 'F32' && bytes.byteOffset % 4 === 0) {
      out.set(new Float32Array(bytes.buffer, bytes.byteOffset, n));
    } else {
      out.set(bytesToF32(t.dtype, bytes));
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.path = undefined;
  }
}
