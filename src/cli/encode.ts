// `mgllava encode`: image (+ boxes) -> visual-token cache in a safetensors file.

import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { MgLlava } from '../model/mg-llava.js';
import { writeVisualCache } from '../model/visual-cache.js';
import { ModelSpec } from '../model/model-files.js';
import { decodeImage } from '../preprocess/decode.js';
import { readBoxFile } from '../preprocess/box-file.js';
import { Progress, noteOnStderr } from './progress.js';
import { detectionFlags } from './detect.js';
import { toDetections } from '../detect/owlv2.js';

export interface EncodeArgs extends ModelSpec {
  image: string;
  boxes?: string;
  out: string;
  boxLimit: number;
  maxPixels: number;
  threads?: number;
  /** --packed-cache DIR, or false for --no-packed-cache. */
  packedCache?: string | false;
  quiet?: boolean;
  /** Detector tags / COCO-80 / threshold, used when no --boxes are given and a detector is configured. */
  tags?: string;
  coco?: boolean;
  threshold?: number;
}

export async function runEncode(a: EncodeArgs): Promise<void> {
  const progress = new Progress(!a.quiet);
  checkOutputPath(a.out);
  const detection = detectionFlags(a);
  // Inputs first: a bad image or box file fails before the model is loaded.
  const image = await decodeImage(a.image, { maxPixels: a.maxPixels });
  const detections = a.boxes ? await readBoxFile(a.boxes) : undefined;
  const model = await progress.step('loading model', () => MgLlava.load(a, { threads: a.threads, llm: false, detection, packedCache: a.packedCache, onNote: noteOnStderr(a.quiet) }));
  try {
    let boxes = detections;
    if (!boxes && model.detectsBoxes) {
      const found = await progress.step(`detecting objects in ${a.image} (${model.tagSource.name})`, () => model.detectObjects(image));
      boxes = toDetections(found);
    }
    const tokens = await progress.step(`encoding ${a.image} (${image.width}x${image.height})`, () =>
      model.encode(image, boxes, { limit: a.boxLimit === 0 ? null : a.boxLimit }));
    await progress.step(`writing ${a.out}`, () => writeVisualCache(a.out, tokens, { image: a.image }));
  } finally {
    await model.release();
  }
}

function checkOutputPath(out: string): void {
  const abs = resolve(out);
  if (existsSync(abs) && statSync(abs).isDirectory()) throw new InputError(`${out}: --out is a folder, expected a file path`, out);
  if (!existsSync(dirname(abs))) throw new InputError(`${out}: folder ${dirname(abs)} does not exist (--out)`, out);
}
