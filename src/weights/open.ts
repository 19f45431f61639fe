// One entry point for every weight format a model folder may hold: a file (safetensors, a
// sharded index, a torch zip checkpoint) or a folder holding one under a conventional name.

import { statSync, readdirSync, openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import { WeightStore } from './types.js';
import { SafetensorsStore } from './safetensors.js';
import { ShardedStore } from './sharded.js';
import { TorchCheckpointStore } from './torch-checkpoint.js';
import { looksLikeZip } from './zip.js';

/** File names tried in a folder, in this order (the Hugging Face conventions). */
export const WEIGHT_FILE_NAMES = [
  'model.safetensors',
  'model.safetensors.index.json',
  'pytorch_model.bin',
  'pytorch_model.bin.index.json',
];

/** Any weight file in a folder, when none of the conventional names is there. */
const WEIGHT_FILE_PATTERN = /\.(safetensors|safetensors\.index\.json|bin\.index\.json|bin|pth|pt)$/;

export function openWeights(path: string): WeightStore {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `${path}: no such file or folder` : `${path}: cannot open weights (${code ?? (e as Error).message})`, path);
  }
  return isDir ? openFolder(path) : openFile(path);
}

function openFolder(dir: string): WeightStore {
  const names = readdirSync(dir);
  for (const n of WEIGHT_FILE_NAMES) if (names.includes(n)) return openFile(join(dir, n));
  // e.g. open_clip's `open_clip_model.safetensors`: accept a single unambiguous weight file,
  // ignoring the shards an index would name.
  const found = names.filter((n) => WEIGHT_FILE_PATTERN.test(n) && !/-\d+-of-\d+\./.test(n)).sort();
  if (found.length === 1) return openFile(join(dir, found[0]!));
  if (found.length > 1) {
    throw new InputError(`${dir}: several weight files (${found.join(', ')}); name the one to load`, dir);
  }
  throw new InputError(`${dir}: no weights found (looked for ${WEIGHT_FILE_NAMES.join(', ')})`, dir);
}

function openFile(path: string): WeightStore {
  if (path.endsWith('.index.json')) return ShardedStore.open(path);
  const head = new Uint8Array(8);
  const fd = openSync(path, 'r');
  let got: number;
  try {
    got = readSync(fd, head, 0, 8, 0);
  } finally {
    closeSync(fd);
  }
  // Torch checkpoints: zip magic, or a legacy pickle stream (0x80 = PROTO), which the torch
  // reader rejects with advice; the extensions catch files too short to have either.
  if (looksLikeZip(head.subarray(0, got)) || (got > 0 && head[0] === 0x80) || /\.(pth|pt|bin)$/.test(path)) {
    return TorchCheckpointStore.open(path);
  }
  return SafetensorsStore.open(path);
}
