// `mgllava encode`: image (+ boxes) -> visual-token cache in a safetensors file.

import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { MgLlava, VisualTokens } from '../model/mg-llava.js';
import { ModelSpec } from '../model/model-files.js';
import { decodeImage } from '../preprocess/decode.js';
import { readBoxFile } from '../preprocess/box-file.js';
import { writeSafetensors } from '../weights/write-safetensors.js';
import { Progress } from './progress.js';

export interface EncodeArgs extends ModelSpec {
  image: string;
  boxes?: string;
  out: string;
  boxLimit: number;
  maxPixels: number;
  threads?: number;
  quiet?: boolean;
}

export async function runEncode(a: EncodeArgs): Promise<void> {
  const progress = new Progress(!a.quiet);
  checkOutputPath(a.out);
  // Inputs first: a bad image or box file fails before the model is loaded.
  const image = await decodeImage(a.image, { maxPixels: a.maxPixels });
  const detections = a.boxes ? await readBoxFile(a.boxes) : undefined;
  const model = await progress.step('loading model', () => MgLlava.load(a, { threads: a.threads }));
  try {
    const tokens = await progress.step(`encoding ${a.image} (${image.width}x${image.height})`, () =>
      model.encode(image, detections, { limit: a.boxLimit === 0 ? null : a.boxLimit }));
    await progress.step(`writing ${a.out}`, () => writeTokens(a.out, tokens, a));
  } finally {
    await model.release();
  }
}

function checkOutputPath(out: string): void {
  const abs = resolve(out);
  if (existsSync(abs) && statSync(abs).isDirectory()) throw new InputError(`${out}: --out is a folder, expected a file path`, out);
  if (!existsSync(dirname(abs))) throw new InputError(`${out}: folder ${dirname(abs)} does not exist (--out)`, out);
}

function writeTokens(out: string, t: VisualTokens, a: EncodeArgs): void {
  const tensor = (name: string, x: { dims: readonly number[]; data: Float32Array }) => ({ name, dtype: 'F32' as const, shape: x.dims, data: x.data });
  writeSafetensors(out, [
    tensor('image_tokens', t.imageTokens),
    tensor('box_tokens', t.boxTokens),
    tensor('boxes', t.boxes),
    tensor('pixel_values', t.pixelValues),
    tensor('pixel_values_aux', t.pixelValuesAux),
  ], {
    format: 'mgllava-visual-tokens',
    labels: JSON.stringify(t.labels),
    image: a.image,
  });
}
