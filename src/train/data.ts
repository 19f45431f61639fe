// The training data of `mgllava train` as the release reads it (DESIGN.md s7 "Data"; the
// release's MGLLaVADataset in mg_llava/module/mg_llava_dataset.py over LLaVADataset in
// mg_llava/dataset/llava.py, XTuner's process_hf_dataset, and mm_collate_fn):
//   - a JSON list of LLaVA samples {id, image?, conversations: [{from, value}]} (no image: a
//     text-only sample), or pre-tokenized samples {id, image?, input_ids, labels} as XTuner's
//     processed datasets hold them;
//   - images at imageFolder/image (os.path.join: an absolute `image` stands alone), only checked
//     to exist here; the trainer loads them;
//   - a box JSON list {id, boxes, labels, scores} (or an object keyed by id) matched by String(id),
//     boxes in original-image pixels, kept as Detections for prepareBoxes with the sample's
//     BoxOptions (trainBoxOptions).
// Bad data is an InputError naming the file and the sample; samples the release drops silently
// are skipped and counted. Each JSON file is read and parsed once.

import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { readTextFile } from '../preprocess/box-file.js';
import { entryDetections, indexBoxEntries } from '../preprocess/box-index.js';
import {
  DEFAULT_BOX_LIMIT,
  DEFAULT_IOU_THRESHOLD,
  releasePerLabel,
  type BoxOptions,
  type Detections,
} from '../preprocess/boxes.js';
import type { PromptTemplate } from '../tokenizer/templates.js';
import {
  IGNORE_INDEX,
  IMAGE_TOKEN_INDEX,
  MAX_LENGTH,
  encodeTurns,
  hasLabel,
  llavaMapFn,
  type EncodedSample,
  type LabelTokenizer,
  type LlavaMessage,
} from './labels.js';

/** XTuner DEFAULT_PAD_TOKEN_INDEX: the id mm_collate_fn pads input_ids with. */
export const PAD_TOKEN_INDEX = 0;
/** Text positions this close to max_length cap the boxes at one per label. */
export const CLOSE_TO_MAX_LENGTH = 50;

export interface TrainSample {
  /** String(id) of the data file's sample. */
  readonly id: string;
  /** Absolute path of the image; absent for a text-only sample. */
  readonly image?: string;
  /** The sample's boxes in original-image pixels; absent without an image or without a box file. */
  readonly detections?: Detections;
  /** Options for prepareBoxes, from the text length (trainBoxOptions). */
  readonly boxOptions: BoxOptions;
  /** Token ids (<= maxLength), the image position a single IMAGE_TOKEN_INDEX. */
  readonly inputIds: number[];
  /** Same length; IGNORE_INDEX where no loss applies. */
  readonly labels: number[];
}

export interface SkipCount {
  readonly reason: string;
  readonly count: number;
}

export interface TrainData {
  readonly samples: TrainSample[];
  /** Samples dropped as the release drops them silently, by reason (only reasons that occurred). */
  readonly skipped: SkipCount[];
}

export interface TrainDataOptions {
  /** The sample JSON file. */
  readonly data: string;
  /** Folder that samples' `image` paths are relative to; default the data file's folder. */
  readonly imageFolder?: string;
  /** The box JSON file; without it samples carry no detections. */
  readonly boxes?: string;
  /** vocabSize, when given, bounds the ids of pre-tokenized samples. */
  readonly tokenizer: LabelTokenizer & { readonly vocabSize?: number };
  readonly template: PromptTemplate;
  /** Text positions kept (the image counts as one); default MAX_LENGTH (1472). */
  readonly maxLength?: number;
  /** limit_num of the box cap; default 100 (every released config). */
  readonly boxLimit?: number;
  /** Called after every 1000 samples and at the end. */
  readonly onProgress?: (done: number, total: number) => void;
}

export const SKIP_NO_ANSWER = 'no gpt answer after a human message';
export const SKIP_NO_LABEL = 'no answer token within max_length';

/**
 * The release's training box cap (MGLLaVADataset.__getitem__, limit_mode 'per_category'), from
 * the text length len(input_ids) after encode_fn's truncation (the image position counts as one):
 *   - close_to_max_length (length >= maxLength - 50): every image keeps its top box per label,
 *     however many boxes there are (`len(scores) > limit_num or close_to_max_length`), expressed
 *     here as limit 0 (cap whenever a box remains) with perLabel 1;
 *   - otherwise: more than `limit` boxes after NMS keep the top 20 per label (5 when limit < 50;
 *     the release leaves limit = 50 undefined, releasePerLabel gives 5).
 * NMS IoU threshold 0.2 in both cases.
 */
export function trainBoxOptions(textLength: number, maxLength: number = MAX_LENGTH, limit: number = DEFAULT_BOX_LIMIT): BoxOptions {
  if (textLength >= maxLength - CLOSE_TO_MAX_LENGTH) return { iouThreshold: DEFAULT_IOU_THRESHOLD, limit: 0, perLabel: 1 };
  return { iouThreshold: DEFAULT_IOU_THRESHOLD, limit, perLabel: releasePerLabel(limit) };
}

async function readJsonFile(path: string, what: string): Promise<unknown> {
  const text = await readTextFile(path, what);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message})`, path);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/** The box file by String(id) (see indexBoxEntries). */
async function readBoxIndex(path: string): Promise<Map<string, unknown>> {
  return indexBoxEntries(await readJsonFile(path, 'box file'), path);
}

/** The `conversations` field as messages; wrong types are errors. */
function readMessages(v: unknown): LlavaMessage[] {
  if (!Array.isArray(v)) throw new InputError(`"conversations" must be a list of {from, value} messages, got ${show(v)}`);
  return v.map((m, i) => {
    if (!isObject(m)) throw new InputError(`conversations[${i}] must be an object {from, value}, got ${show(m)}`);
    const { from, value } = m;
    if (typeof from !== 'string') throw new InputError(`conversations[${i}]: "from" must be a string, got ${show(from)}`);
    if (typeof value !== 'string') throw new InputError(`conversations[${i}]: "value" must be a string, got ${show(value)}`);
    return { from, value };
  });
}

/**
 * A pre-tokenized sample (XTuner's encode_fn output): integer ids, -200 only at the image
 * position, labels either -100 or the id at that position (-100 at the image position).
 */
function readTokenized(ids: unknown, labels: unknown, vocabSize: number | undefined): EncodedSample {
  const isIntList = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => Number.isInteger(x));
  if (!isIntList(ids)) throw new InputError(`"input_ids" must be a list of integers`);
  if (!isIntList(labels)) throw new InputError(`"labels" must be a list of integers`);
  if (labels.length !== ids.length) {
    throw new InputError(`"input_ids" has ${ids.length} ids but "labels" has ${labels.length} (need one each)`);
  }
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    const label = labels[i]!;
    if (id === IMAGE_TOKEN_INDEX) {
      if (label !== IGNORE_INDEX) throw new InputError(`labels[${i}] = ${label} at the image position (input_ids[${i}] = ${IMAGE_TOKEN_INDEX}) must be ${IGNORE_INDEX}`);
      continue;
    }
    if (id < 0 || (vocabSize !== undefined && id >= vocabSize)) {
      const range = vocabSize === undefined ? '>= 0' : `0..${vocabSize - 1}`;
      throw new InputError(`input_ids[${i}] = ${id} is not a token id (${range}) nor ${IMAGE_TOKEN_INDEX} (the image)`);
    }
    if (label !== IGNORE_INDEX && label !== id) {
      throw new InputError(`labels[${i}] = ${label} must be ${IGNORE_INDEX} or input_ids[${i}] (${id})`);
    }
  }
  return { inputIds: ids, labels };
}

/** The box entry for a sample as Detections (see entryDetections). */
function sampleDetections(index: Map<string, unknown>, boxPath: string, id: string): Detections {
  return entryDetections(index, boxPath, id, `sample ${id}`);
}

/**
 * Read, validate and tokenize the training samples. Per sample, as the release: llava_map_fn,
 * template_map_fn, encode_fn (truncation to maxLength); samples without any turn and samples
 * without a labelled token are skipped and counted (process_hf_dataset filters both silently),
 * before their image is looked at (the release never opens their image). Then the image must
 * exist and, with a box file, the sample's box entry must exist and be well-formed.
 * Errors: `<data file>: sample <id>: <what>` (`sample at index <i>` where the id is unusable).
 */
export async function loadTrainData(opts: TrainDataOptions): Promise<TrainData> {
  const { data, tokenizer, template } = opts;
  const maxLength = opts.maxLength ?? MAX_LENGTH;
  const boxLimit = opts.boxLimit ?? DEFAULT_BOX_LIMIT;
  const imageFolder = opts.imageFolder ?? dirname(data);
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new InputError(`max length must be a positive integer, got ${maxLength}`);

  const doc = await readJsonFile(data, 'training data');
  if (!Array.isArray(doc)) throw new InputError(`${data}: expected a JSON list of samples`, data);
  const boxIndex = opts.boxes === undefined ? undefined : await readBoxIndex(opts.boxes);

  const samples: TrainSample[] = [];
  const skipped = new Map<string, number>();
  const skip = (reason: string): void => void skipped.set(reason, (skipped.get(reason) ?? 0) + 1);

  for (let i = 0; i < doc.length; i++) {
    const raw: unknown = doc[i];
    doc[i] = null; // the parsed sample is not needed again: let it go as the loop advances
    let where = `sample at index ${i}`;
    try {
      if (!isObject(raw)) throw new InputError(`expected an object {id, image?, conversations}, got ${show(raw)}`);
      const rawId = raw['id'];
      // The release turns int ids into str and needs an id for every sample.
      if (typeof rawId !== 'string' && typeof rawId !== 'number') throw new InputError(`"id" must be a string or a number, got ${show(rawId)}`);
      const id = String(rawId);
      where = `sample ${id}`;

      // An empty or null image means a text-only sample (the release tests `data_dict.get('image')`).
      const rawImage = raw['image'];
      if (rawImage !== undefined && rawImage !== null && typeof rawImage !== 'string') {
        throw new InputError(`"image" must be a string (a path under the image folder), got ${show(rawImage)}`);
      }
      if (raw['video']) throw new InputError('video samples are not supported');
      const image = rawImage ? resolve(imageFolder, rawImage) : undefined;

      let encoded: EncodedSample;
      if ('input_ids' in raw || 'labels' in raw) {
        encoded = readTokenized(raw['input_ids'], raw['labels'], tokenizer.vocabSize);
        // The release's __getitem__ cuts pre-tokenized ids at max_length as well.
        if (encoded.inputIds.length > maxLength) encoded = { inputIds: encoded.inputIds.slice(0, maxLength), labels: encoded.labels.slice(0, maxLength) };
      } else {
        const turns = llavaMapFn(readMessages(raw['conversations']));
        if (turns.length === 0) {
          skip(SKIP_NO_ANSWER);
          continue;
        }
        encoded = encodeTurns(tokenizer, template, turns, { maxLength });
      }
      if (!hasLabel(encoded.labels)) {
        skip(SKIP_NO_LABEL);
        continue;
      }

      let images = 0;
      for (const t of encoded.inputIds) if (t === IMAGE_TOKEN_INDEX) images++;
      // The release's model takes one image per <image>, from the batch's list of one per sample:
      // more than one, or one without an image (it would get a zero image), is a data error here.
      if (images > 1) throw new InputError(`${images} <image> positions (the release supports one image per sample)`);
      if (images === 1 && image === undefined) throw new InputError('<image> in the text but the sample has no "image"');

      let detections: Detections | undefined;
      if (image !== undefined) {
        const st = statSync(image, { throwIfNoEntry: false });
        if (!st) throw new InputError(`image not found: ${image}`);
        if (!st.isFile()) throw new InputError(`image is not a file: ${image}`);
        if (boxIndex) detections = sampleDetections(boxIndex, opts.boxes!, id);
      }

      samples.push({
        id,
        ...(image !== undefined ? { image } : {}),
        ...(detections !== undefined ? { detections } : {}),
        boxOptions: trainBoxOptions(encoded.inputIds.length, maxLength, boxLimit),
        inputIds: encoded.inputIds,
        labels: encoded.labels,
      });
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      // Box-file errors already name their file and sample.
      if (opts.boxes !== undefined && e.subject === opts.boxes) throw e;
      throw new InputError(`${data}: ${where}: ${e.message}`, data);
    } finally {
      if (opts.onProgress && ((i + 1) % 1000 === 0 || i + 1 === doc.length)) opts.onProgress(i + 1, doc.length);
    }
  }
  return { samples, skipped: [...skipped].map(([reason, count]) => ({ reason, count })) };
}

export interface TrainBatch {
  /** [B][T] ids right-padded with PAD_TOKEN_INDEX (0) to the longest sample; -200 kept. */
  readonly inputIds: number[][];
  /** [B][T] labels right-padded with IGNORE_INDEX. */
  readonly labels: number[][];
  /** Unpadded length of each row. */
  readonly lengths: number[];
  /** The samples, in row order (image, detections, boxOptions for the trainer). */
  readonly samples: readonly TrainSample[];
}

/**
 * mm_collate_fn: right padding to the longest sample, ids with 0 and labels with -100 (one sample:
 * no padding). The release's attention mask is meant to mark the unpadded positions but sets whole
 * rows (`attention_mask[:i] = True`), so every position is attended; with right padding and causal
 * attention the pad positions come after all real ones and carry no loss, so the loss is the same
 * as with a proper mask built from `lengths`.
 */
export function collate(samples: readonly TrainSample[]): TrainBatch {
  if (samples.length === 0) throw new Error('collate needs at least one sample');
  const lengths = samples.map((s) => s.inputIds.length);
  const T = Math.max(...lengths);
  const pad = (row: readonly number[], value: number): number[] => {
    const out = row.slice();
    while (out.length < T) out.push(value);
    return out;
  };
  return {
    inputIds: samples.map((s) => pad(s.inputIds, PAD_TOKEN_INDEX)),
    labels: samples.map((s) => pad(s.labels, IGNORE_INDEX)),
    lengths,
    samples,
  };
}
