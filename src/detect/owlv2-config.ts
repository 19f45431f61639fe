// OWLv2 (HF `Owlv2ForObjectDetection`) configuration: config.json's text_config / vision_config /
// projection_dim with transformers' defaults for the keys a saved config leaves out (HF writes
// only values that differ from the defaults), and the image processor settings of
// preprocessor_config.json when the folder has one.

import { InputError } from '../core/errors.js';
import { CLIP_MEAN, CLIP_STD } from '../preprocess/clip-image.js';
import { Rgb } from '../preprocess/image.js';

export interface Owlv2TextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  /** Query length: every query is padded (or cut) to this many tokens (16). */
  maxPositions: number;
  act: string;
  eps: number;
}

export interface Owlv2VisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  channels: number;
  /** Side of the square model input (960 for OWLv2-L, 96 for the tiny fixture). */
  imageSize: number;
  patchSize: number;
  act: string;
  eps: number;
}

export interface Owlv2Config {
  text: Owlv2TextConfig;
  vision: Owlv2VisionConfig;
  projectionDim: number;
}

export interface Owlv2ProcessorConfig {
  mean: Rgb;
  std: Rgb;
  /** Rescale factor for 8-bit pixels (1/255). */
  rescale: number;
}

type Json = Record<string, unknown>;

/** Patches per side: the patch conv (stride = kernel = patch) floors, e.g. 960 / 14 -> 68. */
export function patchGrid(v: Owlv2VisionConfig): number {
  return Math.floor(v.imageSize / v.patchSize);
}

function section(json: Json, key: string, source: string): Json {
  const v = json[key] ?? {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InputError(`${source}: "${key}" must be an object`, source);
  return v as Json;
}

function reader(obj: Json, where: string, source: string) {
  const int = (k: string, dflt: number): number => {
    const x = obj[k] ?? dflt;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1) throw new InputError(`${source}: ${where}${k} must be a positive integer, got ${JSON.stringify(x)}`, source);
    return x;
  };
  const num = (k: string, dflt: number): number => {
    const x = obj[k] ?? dflt;
    if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) throw new InputError(`${source}: ${where}${k} must be a positive number, got ${JSON.stringify(x)}`, source);
    return x;
  };
  const str = (k: string, dflt: string): string => {
    const x = obj[k] ?? dflt;
    if (typeof x !== 'string') throw new InputError(`${source}: ${where}${k} must be a string`, source);
    return x;
  };
  return { int, num, str };
}

/** Parse an OWLv2 config.json (already read); `source` names the file in errors. */
export function owlv2Config(json: Json, source: string): Owlv2Config {
  if (json['model_type'] !== undefined && json['model_type'] !== 'owlv2') {
    throw new InputError(`${source}: model_type is ${JSON.stringify(json['model_type'])}, expected "owlv2" (an Owlv2ForObjectDetection folder)`, source);
  }
  const t = reader(section(json, 'text_config', source), 'text_config.', source);
  const v = reader(section(json, 'vision_config', source), 'vision_config.', source);
  const top = reader(json, '', source);
  const cfg: Owlv2Config = {
    text: {
      vocabSize: t.int('vocab_size', 49408),
      hiddenSize: t.int('hidden_size', 512),
      intermediateSize: t.int('intermediate_size', 2048),
      layers: t.int('num_hidden_layers', 12),
      heads: t.int('num_attention_heads', 8),
      maxPositions: t.int('max_position_embeddings', 16),
      act: t.str('hidden_act', 'quick_gelu'),
      eps: t.num('layer_norm_eps', 1e-5),
    },
    vision: {
      hiddenSize: v.int('hidden_size', 768),
      intermediateSize: v.int('intermediate_size', 3072),
      layers: v.int('num_hidden_layers', 12),
      heads: v.int('num_attention_heads', 12),
      channels: v.int('num_channels', 3),
      imageSize: v.int('image_size', 768),
      patchSize: v.int('patch_size', 16),
      act: v.str('hidden_act', 'quick_gelu'),
      eps: v.num('layer_norm_eps', 1e-5),
    },
    projectionDim: top.int('projection_dim', 512),
  };
  for (const [name, c] of [['text', cfg.text], ['vision', cfg.vision]] as const) {
    if (c.hiddenSize % c.heads !== 0) throw new InputError(`${source}: ${name} hidden_size ${c.hiddenSize} is not divisible by its ${c.heads} heads`, source);
  }
  if (cfg.vision.channels !== 3) throw new InputError(`${source}: vision_config.num_channels is ${cfg.vision.channels}; only RGB (3) is supported`, source);
  if (cfg.vision.patchSize > cfg.vision.imageSize) throw new InputError(`${source}: patch_size ${cfg.vision.patchSize} exceeds image_size ${cfg.vision.imageSize}`, source);
  if (cfg.text.hiddenSize !== cfg.projectionDim) {
    // The class head maps image features to text_config.hidden_size and compares them with the
    // projected queries (projection_dim); HF only works when the two agree.
    throw new InputError(`${source}: text hidden_size ${cfg.text.hiddenSize} differs from projection_dim ${cfg.projectionDim}; the class head needs them equal`, source);
  }
  return cfg;
}

/** preprocessor_config.json (optional): mean/std and rescale factor; defaults are CLIP's. */
export function owlv2ProcessorConfig(json: Json | undefined, source: string, imageSize: number): Owlv2ProcessorConfig {
  const out: Owlv2ProcessorConfig = { mean: CLIP_MEAN, std: CLIP_STD, rescale: 1 / 255 };
  if (!json) return out;
  const triple = (k: string, dflt: Rgb): Rgb => {
    const x = json[k];
    if (x === undefined || x === null) return dflt;
    if (!Array.isArray(x) || x.length !== 3 || x.some((e) => typeof e !== 'number' || !Number.isFinite(e))) {
      throw new InputError(`${source}: ${k} must be three numbers`, source);
    }
    return [x[0] as number, x[1] as number, x[2] as number];
  };
  out.mean = triple('image_mean', CLIP_MEAN);
  out.std = triple('image_std', CLIP_STD);
  if (out.std.some((s) => s <= 0)) throw new InputError(`${source}: image_std must be positive`, source);
  const r = json['rescale_factor'];
  if (r !== undefined && r !== null) {
    if (typeof r !== 'number' || !(r > 0)) throw new InputError(`${source}: rescale_factor must be a positive number`, source);
    out.rescale = r;
  }
  const size = json['size'];
  if (size !== undefined && size !== null) {
    const sz = size as Json;
    const ok = typeof size === 'object' && sz['height'] === imageSize && sz['width'] === imageSize;
    if (!ok) throw new InputError(`${source}: size ${JSON.stringify(size)} differs from the model's image_size ${imageSize}`, source);
  }
  for (const k of ['do_pad', 'do_resize', 'do_normalize', 'do_rescale']) {
    if (json[k] === false) throw new InputError(`${source}: ${k}=false is not supported (the release uses the defaults)`, source);
  }
  return out;
}
