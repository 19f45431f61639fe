// A release box file (a JSON list of {id, boxes, labels, scores}) as an index by id, shared by
// `mgllava train` (data.ts), `--export-xtuner` and `mgllava eval` (one entry per item).

import { InputError } from '../core/errors.js';
import { parseBoxJson, type Detections } from './boxes.js';

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

/**
 * The entry `id` of the box file at `boxPath` as Detections, validated as parseBoxJson does;
 * `what` names the user of the entry in messages (e.g. "sample 12", "row 12"). Without the entry,
 * an InputError (the release fails with a KeyError).
 */
export function entryDetections(index: Map<string, unknown>, boxPath: string, id: string, what: string): Detections {
  const entry = index.get(id);
  if (entry === undefined) throw new InputError(`${boxPath}: ${what}: no box entry with this id`, boxPath);
  try {
    return parseBoxJson(JSON.stringify(entry), `${boxPath}: ${what}`);
  } catch (e) {
    // parseBoxJson's messages start with the name given; the subject is the box file.
    if (e instanceof InputError) throw new InputError(e.message, boxPath);
    throw e;
  }
}
