// Where a model's parts live on disk: either one folder with `mgllava_config.json` naming the
// component folders (paths relative to it), or the release's layout given part by part
// (a checkpoint file plus LLM, CLIP and ConvNeXt folders), as the release's chat.py takes them.

import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { VisionSettings } from './mg-llava-vision.js';

export interface ModelSpec {
  /** Folder with mgllava_config.json (or the config file itself). */
  model?: string;
  /** The MG-LLaVA checkpoint (.pth / .safetensors / .index.json). */
  checkpoint?: string;
  llm?: string;
  visualEncoder?: string;
  visualEncoderAux?: string;
}

export interface ModelFiles {
  checkpoint: string;
  llm?: string;
  visualEncoder: string;
  visualEncoderAux: string;
  promptTemplate: string;
  vision: VisionSettings;
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
export function resolveModelFiles(spec: ModelSpec): ModelFiles {
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
  for (const [flag, p] of [['--checkpoint', files.checkpoint], ['--visual-encoder', files.visualEncoder], ['--visual-encoder-aux', files.visualEncoderAux]] as const) {
    if (!existsSync(p)) throw new InputError(`${p}: not found (${flag})`, p);
  }
  if (files.llm && !existsSync(files.llm)) throw new InputError(`${files.llm}: not found (--llm)`, files.llm);
  return files;
}

/** model.safetensors (or its index), else the one .pth/.bin file in the folder. */
function findCheckpoint(folder: string): string | undefined {
  for (const n of CHECKPOINT_NAMES) if (existsSync(join(folder, n))) return join(folder, n);
  const torch = readdirSync(folder).filter((f) => /\.(pth|bin|pt)$/.test(f));
  if (torch.length === 1) return join(folder, torch[0]!);
  if (torch.length > 1) throw new InputError(`${folder}: several checkpoints (${torch.join(', ')}); name one with "checkpoint" or --checkpoint`, folder);
  return undefined;
}
