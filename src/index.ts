// Public API.

export { MgLlava } from './model/mg-llava.js';
export type { VisualTokens } from './model/mg-llava.js';
export type { ModelSpec, ModelFiles } from './model/model-files.js';
export { decodeImage } from './preprocess/decode.js';
export type { RgbImage } from './preprocess/image.js';
export { parseBoxJson, prepareBoxes } from './preprocess/boxes.js';
export type { Detections, BoxOptions } from './preprocess/boxes.js';
export { readBoxFile } from './preprocess/box-file.js';
export { InputError } from './core/errors.js';

import { MgLlava } from './model/mg-llava.js';
import { ModelSpec } from './model/model-files.js';
import { VisionOptions } from './model/mg-llava-vision.js';

/** Load a model from a folder with mgllava_config.json, or from its parts. */
export function loadModel(spec: string | ModelSpec, opts: VisionOptions = {}): Promise<MgLlava> {
  return MgLlava.load(typeof spec === 'string' ? { model: spec } : spec, opts);
}
