// Reading a box JSON file from disk (Node only; boxes.ts stays free of file-system code so the
// pipeline also runs in a browser build).

import { readFile } from 'node:fs/promises';
import { InputError } from '../core/errors.js';
import { Detections, parseBoxJson } from './boxes.js';

/** Read and validate the release's per-image box JSON (see parseBoxJson). */
export async function readBoxFile(path: string): Promise<Detections> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
    throw new InputError(`${path}: cannot read box file: ${why}`, path);
  }
  return parseBoxJson(text, path);
}
