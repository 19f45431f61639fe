// Opens the weight files a ModelFiles names and builds the vision model from them.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import { openWeights } from '../weights/open.js';
import { clipVisionConfig } from './clip-vit.js';
import { ModelFiles } from './model-files.js';
import { VisionModel, VisionOptions } from './mg-llava-vision.js';

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`${path}: cannot read JSON (${(e as Error).message})`, path);
  }
}

export async function loadVisionModel(files: ModelFiles, opts: VisionOptions = {}): Promise<VisionModel> {
  const clipDir = files.visualEncoder;
  if (!statSync(clipDir).isDirectory()) throw new InputError(`${clipDir}: --visual-encoder must be the CLIP model folder (with config.json)`, clipDir);
  const clipCfgPath = join(clipDir, 'config.json');
  if (!existsSync(clipCfgPath)) throw new InputError(`${clipDir}: no config.json in the CLIP folder`, clipDir);
  return VisionModel.load({
    clip: openWeights(clipDir),
    clipConfig: clipVisionConfig(readJson(clipCfgPath), clipCfgPath),
    convnext: openWeights(files.visualEncoderAux),
    checkpoint: openWeights(files.checkpoint),
  }, files.vision, opts);
}
