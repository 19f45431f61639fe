// One entry point for every weight format a model folder may hold: a file (safetensors, a
// sharded index, a torch zip checkpoint), a DeepSpeed checkpoint folder (xtuner's `iter_N.pth/`
// under ZeRO), or a folder holding one of these under a conventional name.

import { statSync, readdirSync } from 'node:fs';
import { readHead } from './file-io.js';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import { WeightStore } from './types.js';
import { SafetensorsStore } from './safetensors.js';
import { ShardedStore } from './sharded.js';
import { TorchCheckpointStore } from './torch-checkpoint.js';
import { ZeroCheckpointStore, isDeepSpeedCheckpoint } from './zero-checkpoint.js';
import { looksLikeZip } from './zip.js';

/**
 * File names tried in a folder, in this order: the Hugging Face conventions. A DeepSpeed
 * checkpoint folder (model states files, or a `latest` file naming one) is recognised first and
 * read by zero-checkpoint.ts.
 */
export const WEIGHT_FILE_NAMES = [
  'model.safetensors',
  'model.safetensors.index.json',
  'pytorch_model.bin',
  'pytorch_model.bin.index.json',
];

/** Any weight file in a folder, when none of the conventional names is there. */
const WEIGHT_FILE_PATTERN = /\.(safetensors|safetensors\.index\.json|bin\.index\.json|bin|pth|pt|ckpt)$/;

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
  if (isDeepSpeedCheckpoint(dir)) return ZeroCheckpointStore.open(dir);
  const names = readdirSync(dir);
  for (const n of WEIGHT_FILE_NAMES) if (names.includes(n)) return openFile(join(dir, n));
  // e.g. open_clip's `open_clip_model.safetensors`: accept a single unambiguous weight file
  // (safetensors preferred over torch pickles), ignoring the shards an index would name.
  const found = names.filter((n) => WEIGHT_FILE_PATTERN.test(n) && !/-\d+-of-\d+\./.test(n)).sort();
  const safe = found.filter((n) => /\.safetensors(\.index\.json)?$/.test(n));
  if (safe.length === 1) return openFile(join(dir, safe[0]!));
  if (found.length === 1) return openFile(join(dir, found[0]!));
  if (found.length > 1) {
    throw new InputError(`${dir}: several weight files (${found.join(', ')}); name the one to load`, dir);
  }
  throw new InputError(`${dir}: no weights found (looked for ${WEIGHT_FILE_NAMES.join(', ')})`, dir);
}

function openFile(path: string): WeightStore {
  if (path.endsWith('.index.json')) return ShardedStore.open(path);
  if (path.endsWith('.safetensors')) return SafetensorsStore.open(path);
  if (/\.(pth|pt|bin|ckpt)$/.test(path)) return TorchCheckpointStore.open(path);
  // Any other name: go by the first bytes.
  const head = readHead(path, 4);
  const got = head.length;
  // A legacy torch.save stream starts with PROTO 2 and LONG1 of the 10-byte torch magic number;
  // the torch reader rejects it with advice.
  const legacy = got === 4 && head[0] === 0x80 && head[1] === 0x02 && head[2] === 0x8a && head[3] === 0x0a;
  if (legacy || looksLikeZip(head.subarray(0, got))) return TorchCheckpointStore.open(path);
  return SafetensorsStore.open(path);
}
