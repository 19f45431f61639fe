// Reading byte ranges of weight files, with errors that name the file. Every reader in this
// folder goes through these, so a missing or truncated file reads the same way everywhere.
// And the one way the writers (safetensors, torch) put a file down: atomically.

import { closeSync, fsyncSync, openSync, readSync, realpathSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { InputError } from '../core/errors.js';

/**
 * The file's absolute path with symbolic links resolved. Tensor byte ranges carry this path:
 * onnxruntime resolves links itself and refuses external data whose real path leaves the
 * folder it was given, which a Hugging Face cache (snapshot links into blobs/) would do.
 */
export function realPath(path: string, shown = path): string {
  try {
    return realpathSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `${shown}: no such file` : `${shown}: cannot open (${code ?? (e as Error).message})`, shown);
  }
}

/** Open for reading; `shown` is the path as the user gave it, for messages. */
export function openForRead(path: string, shown = path): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw new InputError(`${shown}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, shown);
  }
}

/** Exactly `length` bytes at `position` of an open file, or an InputError saying what was cut short. */
export function readAt(fd: number, shown: string, position: number, length: number, what: string): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new InputError(`${shown}: truncated (${what}: wanted ${length} bytes at offset ${position})`, shown);
    done += n;
  }
  return buf;
}

/** Open, read exactly one range, close. */
export function readRange(path: string, position: number, length: number, what: string, shown = path): Buffer {
  const fd = openForRead(path, shown);
  try {
    return readAt(fd, shown, position, length, what);
  } finally {
    closeSync(fd);
  }
}

/** Up to `n` first bytes of a file (fewer if it is shorter). */
export function readHead(path: string, n: number): Uint8Array {
  const fd = openForRead(path);
  try {
    const b = new Uint8Array(n);
    return b.subarray(0, readSync(fd, b, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

/**
 * Write `parts`, one after another, to `path` atomically: the bytes go to a temporary file in the
 * destination folder (same file system, so the final rename is atomic) which is fsynced and
 * renamed over the target only when complete; on any error the temporary file is removed.
 * Readers therefore never see a half-written file. A file-system failure is an InputError
 * `<path>: cannot write (CODE)`.
 */
export function writeFileAtomically(path: string, parts: readonly Uint8Array[]): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx');
  } catch (e) {
    throw new InputError(`${path}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, path);
  }
  try {
    try {
      for (const b of parts) writeAll(fd, b);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    const code = (e as NodeJS.ErrnoException).code;
    if (code) throw new InputError(`${path}: cannot write (${code})`, path);
    throw e;
  }
}

/** writeSync may write less than asked (large buffers, signals): loop until done. */
function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}
