// A VLMEvalKit benchmark TSV as an EvalSet: read as its `load()` reads it, images resolved as
// ImageBaseDataset does (an image cell of 64 characters or fewer names another row's index), or
// from `image_path` under an image folder for meta-only files.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import type { Benchmark } from './benchmarks.js';
import type { EvalSet, MediaRef } from './dataset.js';
import { readTsv, resolveImages, type TsvTable } from './tsv.js';

/** Read a TSV benchmark file the pandas way, with one-line errors naming the file. */
export function loadTsvFile(path: string, what: string, textColumns: readonly string[] = []): TsvTable {
  if (!existsSync(path)) throw new InputError(`${what} file not found: ${path}`, path);
  if (statSync(path).isDirectory()) throw new InputError(`${what} ${path} is a directory, not a TSV file`, path);
  try {
    return readTsv(path, textColumns);
  } catch (e) {
    throw new InputError(`cannot read ${what} TSV ${path}: ${(e as Error).message}`, path);
  }
}

function requiredColumns(bench: Benchmark): string[] {
  if (bench.prompt === 'mcq') return ['index', 'question', 'A'];
  return ['index', 'question'];
}

export interface TsvSetOptions {
  /** folder for `image_path` cells when the TSV has no `image` column */
  images?: string;
}

/** The EvalSet of a VLMEvalKit TSV for `bench`. */
export function readTsvSet(path: string, bench: Benchmark, o: TsvSetOptions = {}): EvalSet {
  const table = loadTsvFile(path, 'data');
  for (const c of requiredColumns(bench)) {
    if (!table.has(c)) throw new InputError(`data TSV ${path} has no ${c} column (a ${bench.name} file has ${requiredColumns(bench).join(', ')}, ...)`, path);
  }
  const hasImage = table.has('image');
  if (!hasImage && !(table.has('image_path') && o.images)) {
    throw new InputError(`data TSV ${path} has no image column${table.has('image_path') ? ' (it has image_path: give --images DIR)' : ''}`, path);
  }
  const seen = new Map<string, number>();
  for (let r = 0; r < table.length; r++) {
    const k = table.str(r, 'index');
    const prev = seen.get(k);
    if (prev !== undefined) throw new InputError(`data TSV ${path}: index ${k} appears twice (rows ${prev + 2} and ${r + 2})`, path);
    seen.set(k, r);
  }
  let images: (string | string[])[] = [];
  if (hasImage) {
    try {
      images = resolveImages(table);
    } catch (e) {
      throw new InputError(`data TSV ${path}: ${(e as Error).message}`, path);
    }
  }
  // The index of the row whose image a short cell names (circular MMBench copies).
  const sharedWith = (r: number): string | null => {
    if (!hasImage || table.isNa(r, 'image')) return null;
    const v = table.str(r, 'image');
    return [...v].length <= 64 ? v : null;
  };
  const media = (r: number): MediaRef | null => {
    if (hasImage) {
      const img = images[r]!;
      if (Array.isArray(img)) throw new InputError(`data TSV ${path}: row ${table.str(r, 'index')} has ${img.length} images; one image per item is supported`, path);
      if (img !== '') return { kind: 'base64', data: img };
    }
    if (o.images && table.has('image_path') && !table.isNa(r, 'image_path')) return { kind: 'image', path: join(o.images, table.str(r, 'image_path')) };
    return null;
  };
  return {
    table,
    files: [path],
    media,
    boxKeys: (r) => {
      const own = table.str(r, 'index');
      const other = sharedWith(r);
      return other !== null && other !== own ? [own, other] : [own];
    },
  };
}
