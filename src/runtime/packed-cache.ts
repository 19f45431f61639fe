// A cache of onnxruntime's pre-packed weights on disk, so that a model packs its weights once
// per machine and later loads map them from the file instead of packing them into new memory.
//
// onnxruntime (1.30) can save the graph it optimised together with the pre-packed buffers of
// its kernels (MatMulNBits: the 4-bit values, scales and block sums in the layout its MLAS
// kernels read; MLAS GEMM panels for float MatMul) and, on a later load of that saved model,
// hand those buffers to the kernels straight from a file mapping. (It still packs each weight
// once more at load, into scratch memory, to check that the saved copy matches; the packing is
// cheap, the 4.7 GiB of fresh memory it used to stay in was not.) Measured on the 7B bench
// folder (docs/BENCHMARKS.md): the LLM's load went from ~30 s to ~6 s, the vision side's from
// ~13 s to ~3 s; the packed weights are file pages the kernel can share between processes.
//
// The packed layout depends on the CPU's instruction sets and onnxruntime's version, and the
// saved graph on the source graph and its weight files, so an entry's key hashes all of them:
// a changed file or another machine gets a new entry, never a wrong one. An entry is a folder
// `<name>-<source>-<key>/` holding model.onnx, model.data and entry.json (their sizes), written
// into a temporary folder and renamed when complete; writing one removes the older entries of
// the same graph and weight files (re-quantizing a folder does not pile up copies).

import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, homedir } from 'node:os';
import { join } from 'node:path';

/** Bumped when what an entry holds or how it is keyed changes. */
const FORMAT = 'mgllava-packed-1';
export const PACKED_MODEL = 'model.onnx';
export const PACKED_DATA = 'model.data';
/** The sizes of the two files, written last: mapping a file cut short would crash the process. */
const MANIFEST = 'entry.json';

/** `$MGLLAVA_CACHE_DIR/packed`, else `$XDG_CACHE_HOME/mgllava/packed`, else `~/.cache/mgllava/packed`. */
export function defaultPackedCacheRoot(): string {
  const env = process.env;
  if (env.MGLLAVA_CACHE_DIR) return join(env.MGLLAVA_CACHE_DIR, 'packed');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'mgllava', 'packed');
}

/** A packedCache option (a folder, false for none, unset for the default) -> the folder to use, if any. */
export function packedCacheRoot(option: string | false | undefined): string | undefined {
  return option === false ? undefined : option ?? defaultPackedCacheRoot();
}

/** What identifies this CPU's instruction sets: the model name and feature flags (read once). */
let cpuId: string | undefined;
function cpuIdentity(): string {
  cpuId ??= readCpuIdentity();
  return cpuId;
}

function readCpuIdentity(): string {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const first = info.split(/\n\s*\n/)[0] ?? '';
    const pick = (k: string) => first.match(new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm'))?.[1] ?? '';
    return `${pick('model name')}|${pick('flags')}`;
  } catch {
    return `${cpus()[0]?.model ?? 'unknown'}`;
  }
}

export interface PackedCacheEntry {
  /** The entry's folder (complete when it exists). */
  readonly dir: string;
  readonly model: string;
  readonly root: string;
  /** Folder-name prefix shared by every entry of the same graph and weight files. */
  readonly prefix: string;
}

/**
 * The entry for a serialized graph whose external initializers live in `externalFiles`, under
 * `root`; `runtime` names the onnxruntime build (its version).
 */
export function packedCacheEntry(root: string, name: string, bytes: Uint8Array, externalFiles: readonly string[], runtime: string): PackedCacheEntry {
  const key = createHash('sha256').update(`${FORMAT}\n${runtime}\n${process.platform}-${process.arch}\n${cpuIdentity()}\n`);
  key.update(bytes);
  for (const f of externalFiles) {
    const st = statSync(f);
    key.update(`\n${f}\n${st.size}\n${st.mtimeMs}\n${st.ino}`);
  }
  const source = createHash('sha256').update(`${name}\n${externalFiles.join('\n')}`).digest('hex').slice(0, 10);
  const safe = name.replace(/[^A-Za-z0-9_.-]/g, '_');
  const prefix = `${safe}-${source}-`;
  const dir = join(root, `${prefix}${key.digest('hex').slice(0, 20)}`);
  return { dir, model: join(dir, PACKED_MODEL), root, prefix };
}

function fileSizes(dir: string): Record<string, number> {
  return Object.fromEntries([PACKED_MODEL, PACKED_DATA].map((f) => [f, statSync(join(dir, f)).size]));
}

/** True when the entry's files are there with the sizes they were written with. */
export function entryComplete(e: PackedCacheEntry): boolean {
  try {
    const want = JSON.parse(readFileSync(join(e.dir, MANIFEST), 'utf8')) as Record<string, number>;
    const have = fileSizes(e.dir);
    return Object.keys(have).every((f) => want[f] === have[f]);
  } catch {
    return false;
  }
}

/** A fresh temporary folder beside the entry to write into, or an Error saying why not. */
export function beginEntry(e: PackedCacheEntry): string | Error {
  try {
    mkdirSync(e.root, { recursive: true });
    return mkdtempSync(join(e.root, `.tmp-${e.prefix}`));
  } catch (err) {
    return new Error(`cannot write the packed-weights cache in ${e.root} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Renames the written folder into place and removes the older entries of the same source. */
export function commitEntry(e: PackedCacheEntry, tmp: string): void {
  if (!existsSync(join(tmp, PACKED_MODEL)) || !existsSync(join(tmp, PACKED_DATA))) {
    throw new Error(`onnxruntime did not write ${PACKED_MODEL} and ${PACKED_DATA} into ${tmp}`);
  }
  writeFileSync(join(tmp, MANIFEST), JSON.stringify(fileSizes(tmp)));
  // On disk before the rename: an entry that a crash left with the right sizes but unwritten
  // blocks would be mapped as zeros.
  for (const f of [PACKED_MODEL, PACKED_DATA, MANIFEST]) syncFile(join(tmp, f));
  if (existsSync(e.dir)) rmSync(e.dir, { recursive: true, force: true });
  renameSync(tmp, e.dir);
  const own = e.dir.slice(e.root.length + 1);
  for (const d of readdirSync(e.root)) {
    if (d !== own && d.startsWith(e.prefix)) rmSync(join(e.root, d), { recursive: true, force: true });
  }
  syncFile(e.root);
}

function syncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function discardEntry(path: string): void {
  rmSync(path, { recursive: true, force: true });
}
