// Reading box JSON files (and the text of other files the user names) from disk (Node only; boxes.ts
// stays free of file-system code so the pipeline also runs in a browser build).

import { readFile } from 'node:fs/promises';
import { InputError } from '../core/errors.js';
import { Detections, parseBoxJson } from './boxes.js';

/** Read and validate the release's per-image box JSON (see parseBoxJson). */
export async function readBoxFile(path: string): Promise<Detections> {
  return parseBoxJson(await readTextFile(path, 'box file'), path);
}

/** A text file the user named (`what` says which, for the message `<path>: cannot read <what>: <why>`). */
export async function readTextFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
    throw new InputError(`${path}: cannot read ${what}: ${why}`, path);
  }
}
