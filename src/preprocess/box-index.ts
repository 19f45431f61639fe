// The training box file as an index by sample id, shared by `mgllava train` (data.ts) and
// `--export-xtuner` (export-xtuner.ts), which read the file each in their own way.

import { InputError } from '../core/errors.js';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/**
 * The parsed box file `doc` (read from `path`, named in messages) as a map from String(id) to its
 * raw entry (the release: `{str(item['id']): item}` for a list, later entries replacing earlier
 * ones; an object is used as keyed). Entries are validated when a sample uses them.
 */
export function indexBoxEntries(doc: unknown, path: string): Map<string, unknown> {
  const index = new Map<string, unknown>();
  if (Array.isArray(doc)) {
    doc.forEach((entry, i) => {
      const id = isObject(entry) ? entry['id'] : undefined;
      if (typeof id !== 'string' && typeof id !== 'number') {
        throw new InputError(`${path}: entry at index ${i}: expected an object with "id" (a string or number), got ${show(entry)}`, path);
      }
      index.set(String(id), entry);
    });
  } else if (isObject(doc)) {
    for (const [id, entry] of Object.entries(doc)) index.set(id, entry);
  } else {
    throw new InputError(`${path}: expected a JSON list of {id, boxes, labels, scores}`, path);
  }
  return index;
}
