// A trained model folder as one self-contained folder (`mgllava export`): `mgllava train`
// writes every trained tensor into its model.safetensors under the release's names and points
// at the frozen parts' folders; this writes each part whole, with the trained tensors in place,
// so nothing is stored twice and the folder moves as one:
//
//   OUT/mgllava_config.json   the source's settings, parts at clip/, convnext/, llm/
//   OUT/model.safetensors     fuse_module.*, projector.*, bbox_projector.* only
//   OUT/clip/                 the CLIP folder's files, model.safetensors = base + visual_encoder.*
//   OUT/convnext/             open_clip config, open_clip_model.safetensors = base + visual_encoder_aux.*
//   OUT/llm/                  config and tokenizer files, model.safetensors = base + llm.*
//
// Floats are written as float32, float16 or bfloat16 (`dtype`). Written beside OUT and renamed.

import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { f32ToBf16, f32ToF16 } from '../core/tensor.js';
import { resolveModelFiles } from '../model/model-files.js';
import { encoderStores } from '../model/load-vision.js';
import { llmWeights } from '../model/llm-weights.js';
import { openWeights } from '../weights/open.js';
import { readF32, WeightStore } from '../weights/types.js';
import { TensorToWrite, writeSafetensors } from '../weights/write-safetensors.js';
import { readLlmFolderConfig } from '../model/llm/causal-lm.js';

export type ExportDType = 'F32' | 'F16' | 'BF16';

export interface ExportOptions {
  dtype?: ExportDType;
  /** mgllava_config.json entries to set in the output (e.g. {"system_prompt": false}) */
  config?: Record<string, unknown>;
}

export interface ExportSummary {
  out: string;
  tensors: number;
  bytes: number;
}

const PART_FILES = /^(config\.json|preprocessor_config\.json|open_clip_config\.json|tokenizer\.json|tokenizer\.model|tokenizer_config\.json|special_tokens_map\.json|generation_config\.json|vocab\.json|merges\.txt)$/;

export function exportModel(model: string, outDir: string, opts: ExportOptions = {}): ExportSummary {
  const files = resolveModelFiles({ model });
  if (!files.llm) throw new InputError(`${model}: no LLM folder in mgllava_config.json`, model);
  if (readLlmFolderConfig(files.llm).quantization) throw new InputError(`${files.llm}: a quantized LLM folder; export a float model (quantize the exported one afterwards)`, files.llm);
  const out = resolve(outDir);
  if (existsSync(out)) throw new InputError(`${outDir}: already exists`, outDir);
  const dtype = opts.dtype ?? 'F32';
  const checkpoint = openWeights(files.checkpoint);
  const enc = encoderStores(openWeights(files.visualEncoder), openWeights(files.visualEncoderAux), checkpoint);
  const llm = llmWeights(openWeights(files.llm), checkpoint, files.loraAlpha);
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  let tensors = 0;
  let bytes = 0;
  const write = (path: string, store: WeightStore, keep: (k: string) => boolean = () => true) => {
    const list: TensorToWrite[] = store.keys().filter(keep).sort().map((k) => cast(k, store, dtype));
    writeSafetensors(path, list);
    tensors += list.length;
    bytes += statSync(path).size;
  };
  try {
    const parts: [string, string, WeightStore, string][] = [
      ['clip', files.visualEncoder, enc.clip, 'model.safetensors'],
      ['convnext', files.visualEncoderAux, enc.convnext, 'open_clip_model.safetensors'],
      ['llm', files.llm, llm, 'model.safetensors'],
    ];
    for (const [name, src, store, file] of parts) {
      const dir = join(tmp, name);
      mkdirSync(dir, { recursive: true });
      const from = statSync(src).isDirectory() ? src : undefined;
      if (from) for (const f of readdirSync(from)) if (PART_FILES.test(f)) copyFileSync(join(from, f), join(dir, f));
      // open_clip and CLIP folders carry a text tower the model never uses: only the vision tensors go.
      write(join(dir, file), store, name === 'clip' ? (k) => k.startsWith('vision_model.') : name === 'convnext' ? (k) => k.startsWith('visual.trunk.') : undefined);
    }
    write(join(tmp, 'model.safetensors'), checkpoint, (k) => !/^(llm|visual_encoder|visual_encoder_aux)\./.test(k));
    const cfgPath = join(resolve(model), 'mgllava_config.json');
    const src = existsSync(cfgPath) ? (JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>) : {};
    delete src['checkpoint'];
    const config = { ...src, llm: 'llm', visual_encoder: 'clip', visual_encoder_aux: 'convnext', ...(opts.config ?? {}) };
    writeFileSync(join(tmp, 'mgllava_config.json'), JSON.stringify(config, null, 1) + '\n');
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { out, tensors, bytes };
}

function cast(name: string, store: WeightStore, dtype: ExportDType): TensorToWrite {
  const ref = store.get(name)!;
  const shape = [...ref.shape];
  if (!['F32', 'F16', 'BF16', 'F64'].includes(ref.dtype)) throw new InputError(`${store.path}: tensor ${name} is ${ref.dtype}; export writes float tensors`, store.path);
  const f = readF32(ref);
  if (dtype === 'F32') return { name, dtype, shape, data: f };
  return { name, dtype, shape, data: dtype === 'F16' ? f32ToF16(f) : f32ToBf16(f) };
}
