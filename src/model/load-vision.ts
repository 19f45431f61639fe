// Opens the weight files a ModelFiles names and builds the vision model from them.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import { openWeights } from '../weights/open.js';
import { OverlayStore, PrefixStore, WeightStore } from '../weights/types.js';
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
  const checkpoint = openWeights(files.checkpoint);
  return VisionModel.load({
    ...encoderStores(openWeights(clipDir), openWeights(files.visualEncoderAux), checkpoint),
    clipConfig: clipVisionConfig(readJson(clipCfgPath), clipCfgPath),
    checkpoint,
  }, files.vision, opts);
}

/**
 * The encoders' tensors with a checkpoint's trained ones in their place: `visual_encoder.*`
 * over the CLIP folder's keys (`vision_model.*`), `visual_encoder_aux.*` over the open_clip
 * ConvNeXt's (`visual.trunk.*`), as `mgllava train --trainable visual_encoder*` writes them.
 */
export function encoderStores(clip: WeightStore, convnext: WeightStore, checkpoint: WeightStore): { clip: WeightStore; convnext: WeightStore } {
  const over = (base: WeightStore, prefix: string) =>
    checkpoint.keys().some((k) => k.startsWith(prefix)) ? new OverlayStore(`${base.path} + ${checkpoint.path} (${prefix}*)`, [base, new PrefixStore(checkpoint, prefix)]) : base;
  return { clip: over(clip, 'visual_encoder.'), convnext: over(convnext, 'visual_encoder_aux.') };
}
