// A minimal ZIP reader (central directory, ZIP64, stored and deflated entries).
//
// Hand-written on purpose: PyTorch checkpoints are ZIP archives of up to tens of GB whose tensor
// storages are STORED (uncompressed, and 64-byte aligned by newer torch). What we need is the
// absolute byte offset of each stored entry's data so that onnxruntime can reference the bytes in
// place (external data). Streaming zip libraries hand out decompressed data streams, not file
// offsets, and would copy multi-GB payloads into memory. Here only the central directory and the
// 30-byte local headers are read; entry data is never touched until asked for.
//
// Layout facts used (APPNOTE 6.3): the end-of-central-directory record (EOCD, 22 bytes plus a
// comment of up to 65535 bytes) closes the file; when any count/size/offset overflows 32 bits a
// ZIP64 EOCD locator (20 bytes) sits just before it and points at the ZIP64 EOCD record; each
// central-directory header may carry a ZIP64 extra field (id 0x0001) with the 64-bit values of
// those fields that read 0xFFFFFFFF, in the order: size, compressed size, local header offset.

import { fstatSync, closeSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { InputError } from '../core/errors.js';
import { openForRead, readAt, readRange, realPath } from './file-io.js';

export const ZIP_STORED = 0;
export const ZIP_DEFLATED = 8;

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflated; others are refused when read. */
  readonly method: number;
  readonly compressedSize: number;
  /** Uncompressed size in bytes. */
  readonly size: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
  /** General-purpose flags; bit 0 = encrypted. */
  readonly flags: number;
}

// Record signatures and the 32-bit "see ZIP64" marker (write-torch.ts writes the same records).
export const SIG_EOCD = 0x06054b50;
export const SIG_ZIP64_LOCATOR = 0x07064b50;
export const SIG_ZIP64_EOCD = 0x06064b50;
export const SIG_CENTRAL = 0x02014b50;
export const SIG_LOCAL = 0x04034b50;
export const U32_MAX = 0xffffffff;

function u64(buf: Buffer, at: number, path: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new InputError(`${path}: zip field value ${v} is too large`, path);
  return Number(v);
}

/** True when the file starts like a ZIP archive (local header, or the EOCD of an empty one). */
export function looksLikeZip(head: Uint8Array): boolean {
  if (head.length < 4) return false;
  const sig = (head[0]! | (head[1]! << 8) | (head[2]! << 16) | (head[3]! << 24)) >>> 0;
  return sig === SIG_LOCAL || sig === SIG_EOCD;
}

export class ZipReader {
  private readonly byName: Map<string, ZipEntry>;

  private constructor(
    /** Absolute path of the archive. */
    readonly path: string,
    /** The path as given, for messages. */
    readonly displayPath: string,
    readonly size: number,
    private readonly list: readonly ZipEntry[],
  ) {
    this.byName = new Map(list.map((e) => [e.name, e]));
  }

  /** Read the central directory of `path`. Throws InputError when it is not a readable zip. */
  static open(path: string): ZipReader {
    const abs = realPath(path);
    const fd = openForRead(abs, path);
    try {
      const size = fstatSync(fd).size;
      const bad = (why: string) => new InputError(`${path}: not a valid zip archive (${why})`, path);
      if (size < 22) throw bad(`only ${size} bytes`);
      // The EOCD is in the last 22 + 65535 bytes; scan backwards for its signature.
      const tailLen = Math.min(size, 22 + 0xffff);
      const tailStart = size - tailLen;
      const tail = readAt(fd, path, tailStart, tailLen, 'zip directory');
      let eocd = -1;
      for (let i = tailLen - 22; i >= 0; i--) {
        if (tail.readUInt32LE(i) === SIG_EOCD && i + 22 + tail.readUInt16LE(i + 20) <= tailLen) {
          eocd = i;
          break;
        }
      }
      if (eocd < 0) throw bad('no end-of-central-directory record; the file may be truncated');
      let count = tail.readUInt16LE(eocd + 10);
      let cdSize = tail.readUInt32LE(eocd + 12);
      let cdOffset = tail.readUInt32LE(eocd + 16);
      const eocdAbs = tailStart + eocd;
      if (eocdAbs >= 20) {
        const loc = readAt(fd, path, eocdAbs - 20, 20, 'zip directory');
        if (loc.readUInt32LE(0) === SIG_ZIP64_LOCATOR) {
          const z64At = u64(loc, 8, path);
          if (z64At + 56 > size) throw bad('ZIP64 end-of-central-directory record is past the end of the file');
          const z = readAt(fd, path, z64At, 56, 'zip directory');
          if (z.readUInt32LE(0) !== SIG_ZIP64_EOCD) throw bad('bad ZIP64 end-of-central-directory signature');
          count = u64(z, 32, path);
          cdSize = u64(z, 40, path);
          cdOffset = u64(z, 48, path);
        }
      }
      if (cdOffset + cdSize > size) throw bad(`central directory (${cdSize} bytes at ${cdOffset}) is past the end of the ${size}-byte file`);
      const cd = readAt(fd, path, cdOffset, cdSize, 'zip directory');
      const list: ZipEntry[] = [];
      let p = 0;
      for (let i = 0; i < count; i++) {
        if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) throw bad(`central directory entry ${i} is malformed`);
        const flags = cd.readUInt16LE(p + 8);
        const method = cd.readUInt16LE(p + 10);
        const crc32 = cd.readUInt32LE(p + 16);
        let compressedSize = cd.readUInt32LE(p + 20);
        let usize = cd.readUInt32LE(p + 24);
        const nameLen = cd.readUInt16LE(p + 28);
        const extraLen = cd.readUInt16LE(p + 30);
        const commentLen = cd.readUInt16LE(p + 32);
        let localHeaderOffset = cd.readUInt32LE(p + 42);
        const end = p + 46 + nameLen + extraLen + commentLen;
        if (end > cd.length) throw bad(`central directory entry ${i} runs past the directory`);
        // Bit 11 = UTF-8 names; torch writes ASCII, and UTF-8 is a superset, so decode as UTF-8.
        const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
        // ZIP64 extra field: only the fields that overflowed are present, in this fixed order.
        let x = p + 46 + nameLen;
        const xEnd = x + extraLen;
        while (x + 4 <= xEnd) {
          const id = cd.readUInt16LE(x);
          const len = cd.readUInt16LE(x + 2);
          if (id === 0x0001) {
            let q = x + 4;
            const take = () => {
              if (q + 8 > x + 4 + len) throw bad(`entry ${name} has a short ZIP64 extra field`);
              const v = u64(cd, q, path);
              q += 8;
              return v;
            };
            if (usize === U32_MAX) usize = take();
            if (compressedSize === U32_MAX) compressedSize = take();
            if (localHeaderOffset === U32_MAX) localHeaderOffset = take();
          }
          x += 4 + len;
        }
        list.push({ name, method, compressedSize, size: usize, crc32, localHeaderOffset, flags });
        p = end;
      }
      return new ZipReader(abs, path, size, list);
    } finally {
      closeSync(fd);
    }
  }

  entries(): readonly ZipEntry[] {
    return this.list;
  }

  get(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /**
   * Absolute offset in the archive of the entry's (possibly compressed) data, found from its
   * local header: 30 fixed bytes + name + extra (the extra length there may differ from the
   * central directory's, e.g. torch's alignment padding, so it must be read here).
   */
  dataOffset(entry: ZipEntry): number {
    const h = readRange(this.path, entry.localHeaderOffset, 30, `local header of ${entry.name}`, this.displayPath);
    if (h.readUInt32LE(0) !== SIG_LOCAL) {
      throw new InputError(`${this.displayPath}: zip entry ${entry.name} has no local header at offset ${entry.localHeaderOffset}`, this.displayPath);
    }
    const at = entry.localHeaderOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
    if (at + entry.compressedSize > this.size) {
      throw new InputError(`${this.displayPath}: truncated zip archive (entry ${entry.name} ends at ${at + entry.compressedSize}, file has ${this.size} bytes)`, this.displayPath);
    }
    return at;
  }

  /** The whole uncompressed content of an entry, in memory (stored: read; deflated: inflated). */
  read(entry: ZipEntry): Uint8Array {
    const where = `${this.displayPath}: zip entry ${entry.name}`;
    if (entry.flags & 1) throw new InputError(`${where} is encrypted`, this.displayPath);
    if (entry.method !== ZIP_STORED && entry.method !== ZIP_DEFLATED) {
      throw new InputError(`${where} uses unsupported compression method ${entry.method}`, this.displayPath);
    }
    const offset = this.dataOffset(entry);
    const raw = readRange(this.path, offset, entry.compressedSize, `entry ${entry.name}`, this.displayPath);
    if (entry.method === ZIP_STORED) return raw;
    let out: Buffer;
    try {
      out = inflateRawSync(raw);
    } catch (e) {
      throw new InputError(`${where} is corrupt (${(e as Error).message})`, this.displayPath);
    }
    if (out.length !== entry.size) throw new InputError(`${where} inflates to ${out.length} bytes, expected ${entry.size}`, this.displayPath);
    return out;
  }
}
