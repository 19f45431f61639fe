// Where a model's parts live on disk: either one folder with `mgllava_config.json` naming the
// component folders (paths relative to it), or the release's layout given part by part
// (a checkpoint file plus LLM, CLIP and ConvNeXt folders), as the release's chat.py takes them.

import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../core/errors.js';
import { VisionSettings } from './mg-llava-vision.js';
import { isDeepSpeedCheckpoint } from '../weights/zero-checkpoint.js';

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/**
 * The demo model shipped with the package (models/demo: trained on the synthetic shapes world,
 * recipes/demo-model.ts): what chat, encode, serve, eval and MgLlava.load use when no model part
 * is named.
 */
export const DEMO_MODEL = join(PACKAGE_ROOT, 'models', 'demo');
/** The tiny random-weight reference fixture: the parity tests' model and `mgllava train`'s default start. */
export const TINY_MODEL = join(PACKAGE_ROOT, 'fixtures', 'tiny', 'mgllava');
/**
 * The model chat, encode, serve, eval and MgLlava.load use when no model part is named: the demo
 * model (docs/demo-model.md). Training starts from TINY_MODEL unless told otherwise.
 */
export const DEFAULT_MODEL = DEMO_MODEL;

export interface ModelSpec {
  /** Folder with mgllava_config.json (or the config file itself). */
  model?: string;
  /** The MG-LLaVA checkpoint (.pth / .safetensors / .index.json). */
  checkpoint?: string;
  llm?: string;
  visualEncoder?: string;
  visualEncoderAux?: string;
  /** OWLv2 detector folder (overrides mgllava_config.json's "detector"). */
  detector?: string;
}

/**
 * The object detector a model folder names: mgllava_config.json "detector" is a folder path, or
 * {"path": folder, "tags": "coco" | [tags] | "tag1,tag2", "threshold": 0.2, "processing": "transformers5"}.
 */
export interface DetectorFiles {
  path: string;
  tags?: readonly string[] | 'coco';
  threshold?: number;
  /** "transformers5" (default) or "transformers4" image processing (detect/owlv2-image.ts). */
  processing?: 'transformers5' | 'transformers4';
}

export interface ModelFiles {
  checkpoint: string;
  llm?: string;
  visualEncoder: string;
  visualEncoderAux: string;
  promptTemplate: string;
  vision: VisionSettings;
  /** mgllava_config.json "lora_alpha": the scale numerator of an XTuner LoRA checkpoint's adapters. */
  loraAlpha?: number;
  /**
   * false (mgllava_config.json "system_prompt": false): the model was trained without the
   * template's system block, and chat and serve leave it out unless a system text is given.
   * Absent: the release's evaluation form (the system block with an empty text).
   */
  systemPrompt?: false;
  /** Set when a detector is configured: chat/encode then find boxes themselves when none are given. */
  detector?: DetectorFiles;
}

export const DEFAULT_VISION_SETTINGS: VisionSettings = {
  visualSelectLayer: -2,
  imageSizeAux: 768,
  boxFeatSize: 56,
  projectorDepth: 2,
};

const CONFIG_NAME = 'mgllava_config.json';
const CHECKPOINT_NAMES = ['model.safetensors', 'model.safetensors.index.json'];

/** Resolve every part's path; explicit flags override the config file's entries. */
/** `spec`, or DEFAULT_MODEL in its `model` when it names no part at all. */
export function withDefaultModel<T extends ModelSpec>(spec: T): T {
  return spec.model || spec.checkpoint || spec.llm || spec.visualEncoder || spec.visualEncoderAux ? spec : { ...spec, model: DEFAULT_MODEL };
}

export function resolveModelFiles(spec: ModelSpec): ModelFiles {
  spec = withDefaultModel(spec);
  let base: string | undefined;
  let cfg: Record<string, unknown> = {};
  let cfgPath = '';
  if (spec.model) {
    cfgPath = resolve(spec.model);
    if (!existsSync(cfgPath)) throw new InputError(`${spec.model}: no such model folder`, spec.model);
    if (statSync(cfgPath).isDirectory()) cfgPath = join(cfgPath, CONFIG_NAME);
    if (!existsSync(cfgPath)) throw new InputError(`${spec.model}: no ${CONFIG_NAME} in this folder`, spec.model);
    try {
      cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new InputError(`${cfgPath}: not valid JSON (${(e as Error).message})`, cfgPath);
    }
    if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new InputError(`${cfgPath}: expected a JSON object`, cfgPath);
    base = dirname(cfgPath);
  }
  const str = (key: string): string | undefined => {
    const v = cfg[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw new InputError(`${cfgPath}: "${key}" must be a string path`, cfgPath);
    return resolve(base!, v);
  };
  const int = (key: string, dflt: number): number => {
    const v = cfg[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new InputError(`${cfgPath}: "${key}" must be an integer`, cfgPath);
    return v;
  };
  const need = (value: string | undefined, flag: string, key: string): string => {
    if (value) return value;
    throw new InputError(base ? `${cfgPath}: "${key}" is not set (or pass ${flag})` : `missing ${flag} (or --model with a ${CONFIG_NAME})`, flag);
  };

  const checkpoint = spec.checkpoint ? resolve(spec.checkpoint) : str('checkpoint') ?? (base ? findCheckpoint(base) : undefined);
  const files: ModelFiles = {
    checkpoint: need(checkpoint, '--checkpoint', 'checkpoint'),
    llm: spec.llm ? resolve(spec.llm) : str('llm'),
    visualEncoder: need(spec.visualEncoder ? resolve(spec.visualEncoder) : str('visual_encoder'), '--visual-encoder', 'visual_encoder'),
    visualEncoderAux: need(spec.visualEncoderAux ? resolve(spec.visualEncoderAux) : str('visual_encoder_aux'), '--visual-encoder-aux', 'visual_encoder_aux'),
    promptTemplate: typeof cfg['prompt_template'] === 'string' ? (cfg['prompt_template'] as string) : 'vicuna',
    vision: {
      visualSelectLayer: int('visual_select_layer', DEFAULT_VISION_SETTINGS.visualSelectLayer),
      imageSizeAux: int('image_size_aux', DEFAULT_VISION_SETTINGS.imageSizeAux),
      boxFeatSize: int('box_feat_size', DEFAULT_VISION_SETTINGS.boxFeatSize),
      projectorDepth: int('projector_depth', DEFAULT_VISION_SETTINGS.projectorDepth),
    },
  };
  if (cfg['box_scale_base'] !== undefined && cfg['box_scale_base'] !== null) {
    const b = int('box_scale_base', 768);
    if (b <= 0) throw new InputError(`${cfgPath}: "box_scale_base" must be a positive integer`, cfgPath);
    files.vision.boxScaleBase = b;
  }
  const sys = cfg['system_prompt'];
  if (sys !== undefined && sys !== null) {
    if (typeof sys !== 'boolean') throw new InputError(`${cfgPath}: "system_prompt" must be true or false`, cfgPath);
    if (!sys) files.systemPrompt = false;
  }
  const fusion = cfg['fusion'];
  if (fusion !== undefined && fusion !== null) {
    if (typeof fusion !== 'boolean') throw new InputError(`${cfgPath}: "fusion" must be true or false`, cfgPath);
    if (!fusion) files.vision.fusion = false;
  }
  const alpha = cfg['lora_alpha'];
  if (alpha !== undefined && alpha !== null) {
    if (typeof alpha !== 'number' || !(alpha > 0)) throw new InputError(`${cfgPath}: "lora_alpha" must be a positive number`, cfgPath);
    files.loraAlpha = alpha;
  }
  const detector = detectorFiles(cfg['detector'], spec.detector, base, cfgPath);
  if (detector) files.detector = detector;
  for (const [flag, p] of [['--checkpoint', files.checkpoint], ['--visual-encoder', files.visualEncoder], ['--visual-encoder-aux', files.visualEncoderAux]] as const) {
    if (!existsSync(p)) throw new InputError(`${p}: not found (${flag})`, p);
  }
  if (files.llm && !existsSync(files.llm)) throw new InputError(`${files.llm}: not found (--llm)`, files.llm);
  return files;
}

function detectorFiles(entry: unknown, flag: string | undefined, base: string | undefined, cfgPath: string): DetectorFiles | undefined {
  const bad = (why: string) => new InputError(`${cfgPath}: "detector" ${why}`, cfgPath);
  let out: DetectorFiles | undefined;
  if (typeof entry === 'string') {
    out = { path: resolve(base!, entry) };
  } else if (entry !== undefined && entry !== null) {
    if (typeof entry !== 'object' || Array.isArray(entry)) throw bad('must be a folder path or an object {"path", "tags", "threshold"}');
    const o = entry as Record<string, unknown>;
    if (typeof o['path'] !== 'string' || o['path'] === '') throw bad('needs a "path" (the OWLv2 folder)');
    out = { path: resolve(base!, o['path']) };
    const tags = o['tags'];
    if (tags === 'coco') out.tags = 'coco';
    else if (typeof tags === 'string') out.tags = tags.split(',').map((t) => t.trim()).filter((t) => t);
    else if (Array.isArray(tags)) out.tags = tags.map((t) => (typeof t === 'string' ? t.trim() : ''));
    else if (tags !== undefined && tags !== null) throw bad('"tags" must be "coco", a list of tags or a comma-separated string');
    if (Array.isArray(out.tags) && (out.tags.length === 0 || out.tags.some((t) => t === ''))) throw bad('"tags" must hold non-empty tags');
    const proc = o['processing'];
    if (proc === 'transformers5' || proc === 'transformers4') out.processing = proc;
    else if (proc !== undefined && proc !== null) throw bad('"processing" must be "transformers5" or "transformers4"');
    const thr = o['threshold'];
    if (thr !== undefined && thr !== null) {
      if (typeof thr !== 'number' || !(thr >= 0 && thr <= 1)) throw bad('"threshold" must be a number in [0, 1]');
      out.threshold = thr;
    }
  }
  if (flag) out = { ...out, path: resolve(flag) };
  if (out && !existsSync(out.path)) throw new InputError(`${out.path}: detector folder not found (${flag ? '--detector' : `"detector" in ${cfgPath}`})`, out.path);
  return out;
}

/**
 * model.safetensors (or its index), else the one .pth/.bin file in the folder: a torch file, or a
 * DeepSpeed checkpoint folder (xtuner names those `iter_N.pth/` too; DeepSpeed's own default tag
 * is `global_stepN/`, so any DeepSpeed folder counts whatever its name).
 */
function findCheckpoint(folder: string): string | undefined {
  for (const n of CHECKPOINT_NAMES) if (existsSync(join(folder, n))) return join(folder, n);
  const torch = readdirSync(folder).filter((f) => /\.(pth|bin|pt)$/.test(f) || isDeepSpeedCheckpoint(join(folder, f)));
  if (torch.length === 1) return join(folder, torch[0]!);
  if (torch.length > 1) throw new InputError(`${folder}: several checkpoints (${torch.join(', ')}); name one with "checkpoint" or --checkpoint`, folder);
  return undefined;
}
