// A local MG-LLaVA as an eval Answerer, set as the release evaluates (DESIGN.md, Evaluation):
// BOS + the template's instruction with `<image>\n` + the question and no system text, greedy,
// max_new_tokens 100, the template's stop words, the benchmark's box cap; the answer decoded
// without special tokens and stripped. Boxes come from the release's box file (by the item's
// index / question_id), or from the configured detector (kept in the run folder's
// detections.jsonl, so that a rerun does not detect again), or are none at all (--no-boxes).

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { toDetections } from '../detect/owlv2.js';
import { MgLlava, type DetectionSettings } from '../model/mg-llava.js';
import { resolveModelFiles, type ModelSpec } from '../model/model-files.js';
import { entryDetections } from '../preprocess/box-index.js';
import { parseBoxJson, type Detections } from '../preprocess/boxes.js';
import { decodeImage } from '../preprocess/decode.js';
import type { RgbImage } from '../preprocess/image.js';
import type { MediaRef } from './dataset.js';
import { DETECTIONS_FILE, JsonlLog } from './run-dir.js';
import { pyStrip } from './vqa.js';
import type { Answerer, EvalItem } from './runner.js';

/** Where an item's boxes come from. */
export type BoxSource =
  | { kind: 'file'; path: string; index: Map<string, unknown> }
  | { kind: 'detector' }
  | { kind: 'none' };

export interface LocalAnswererOptions {
  spec: ModelSpec;
  /** detector tags and threshold (when the boxes come from the detector) */
  detection?: DetectionSettings;
  threads?: number;
  template?: string;
  packedCache?: string | false;
  boxes: BoxSource;
  /** the benchmark's box cap (null: none) */
  boxLimit: number | null;
  maxNewTokens: number;
  /** the run folder (detector boxes are kept there) */
  runDir: string;
  maxPixels?: number;
  onNote?: (m: string) => void;
}

interface DetectionLine {
  key: string;
  boxes: number[][];
  labels: string[];
  scores: number[];
}

/** Text naming the model files, changing when the config or the weights named in it move. */
export function localModelIdentity(spec: ModelSpec, template?: string): string {
  const files = resolveModelFiles(spec);
  const parts: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(spec)) if (typeof v === 'string') parts[k] = resolve(v);
  const config = spec.model ? (existsSync(join(spec.model, 'mgllava_config.json')) ? join(spec.model, 'mgllava_config.json') : spec.model) : undefined;
  if (config && existsSync(config)) parts['config_sha256'] = createHash('sha256').update(readFileSync(config)).digest('hex').slice(0, 16);
  parts['template'] = template ?? null;
  parts['detector'] = files.detector?.path ?? null;
  return `local ${JSON.stringify(parts)}`;
}

export async function decodeMedia(m: MediaRef, key: string, maxPixels?: number): Promise<RgbImage> {
  if (m.kind === 'video') throw new InputError(`row ${key}: a video item; video evaluation comes with video support (issue 15)`, 'video');
  if (m.kind === 'image') {
    if (!existsSync(m.path)) throw new InputError(`row ${key}: image not found: ${m.path}`, m.path);
    return decodeImage(m.path, { maxPixels });
  }
  const bytes = Buffer.from(m.data, 'base64');
  if (bytes.length === 0) throw new InputError(`row ${key}: the image cell is not base64`, 'image');
  try {
    return await decodeImage(bytes, { name: `row ${key}`, maxPixels });
  } catch (e) {
    if (e instanceof InputError) throw new InputError(`row ${key}: the image cell is not a decodable image (${e.message.replace(/^row \S+: /, '')})`, 'image');
    throw e;
  }
}

export class LocalAnswerer implements Answerer {
  readonly concurrency = 1;
  private readonly detections: JsonlLog<DetectionLine>;
  private readonly detected = new Map<string, DetectionLine>();

  private constructor(
    private readonly model: MgLlava,
    private readonly o: LocalAnswererOptions,
    readonly identity: string,
  ) {
    this.detections = new JsonlLog(join(o.runDir, DETECTIONS_FILE));
    if (o.boxes.kind === 'detector') for (const d of this.detections.read((v) => v as DetectionLine)) this.detected.set(d.key, d);
  }

  static async load(o: LocalAnswererOptions): Promise<LocalAnswerer> {
    const identity = localModelIdentity(o.spec, o.template);
    const model = await MgLlava.load(o.spec, { threads: o.threads, template: o.template, packedCache: o.packedCache, onNote: o.onNote, ...(o.boxes.kind === 'detector' ? { detection: o.detection } : {}) });
    return new LocalAnswerer(model, o, identity);
  }

  /** The item's boxes: its box-file entry (own key first), detected ones, or none. */
  private async boxesFor(item: EvalItem, image: RgbImage): Promise<Detections | null> {
    const src = this.o.boxes;
    if (src.kind === 'none') return null;
    if (src.kind === 'file') {
      const key = item.boxKeys.find((k) => src.index.has(k)) ?? item.key;
      return entryDetections(src.index, src.path, key, `row ${item.key}`);
    }
    const key = item.boxKeys[item.boxKeys.length - 1]!; // the image's own row
    let d = this.detected.get(key);
    if (!d) {
      const found = toDetections(await this.model.detectObjects(image));
      d = { key, boxes: Array.from({ length: found.labels.length }, (_, i) => Array.from(found.boxes.subarray(i * 4, i * 4 + 4))), labels: [...found.labels], scores: Array.from(found.scores) };
      this.detections.append(d);
      this.detected.set(key, d);
    }
    return parseBoxJson(JSON.stringify(d), join(this.o.runDir, DETECTIONS_FILE));
  }

  async answer(item: EvalItem): Promise<string> {
    if (!item.media) throw new InputError(`row ${item.key} has no image`, 'image');
    const image = await decodeMedia(item.media, item.key, this.o.maxPixels);
    const boxes = await this.boxesFor(item, image);
    const visual = await this.model.encode(image, boxes, { limit: this.o.boxLimit });
    const r = await this.model.chat({
      prompt: item.prompt,
      system: null,
      visualTokens: visual,
      generation: { maxNewTokens: this.o.maxNewTokens, temperature: 0, topLogprobs: 0 },
    }).complete();
    return pyStrip(r.text);
  }

  async close(): Promise<void> {
    this.detections.close();
    await this.model.release();
  }
}
