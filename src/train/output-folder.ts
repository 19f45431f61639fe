// The output folder of `mgllava train`, a model folder and a training checkpoint at once: the
// input checkpoint's tensors with the trained ones in their place, under the release's names;
// an mgllava_config.json naming the frozen parts, so that `chat --model` loads it; with LoRA the
// merged weights under llm.* and the adapter alone in PEFT's names; the optimiser and trainer
// state for `--resume`. Written atomically (checkpoint.ts).

import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { InputError } from '../core/errors.js';
import { WeightStore, readF32 } from '../weights/types.js';
import { SafetensorsStore } from '../weights/safetensors.js';
import { safetensorsBytes } from '../weights/write-safetensors.js';
import { LoraSettings, LoraTarget, adapterConfig, loraA, loraB, mergedWeight, peftName } from './lora.js';
import { StepRunner, TrainModel } from './step-runner.js';
import { AdamW } from './optimizer.js';
import { CheckpointTensor, writeCheckpoint } from './checkpoint.js';

export const LORA_TENSOR = /^llm\..*\.lora_[AB]\.weight$/;

export interface LoraState {
  settings: LoraSettings;
  targets: LoraTarget[];
  /** The frozen LLM's tensors the adapters merge into. */
  base: WeightStore;
}

export const ADAPTER_FILE = 'adapter_model.safetensors';
const ADAPTER_CONFIG = 'adapter_config.json';

/** What the trainer state records of the run (the settings a resume must repeat). */
export interface OutputState {
  iteration: number;
  settings: { readonly stage: number };
}

/**
 * The output folder: the input checkpoint's tensors with the trained ones in their place (all
 * float32), the optimiser and trainer state, and an mgllava_config.json naming the frozen parts
 * (paths relative to the folder) so that it loads as a model.
 */
export function saveCheckpoint(out: string, model: TrainModel, runner: StepRunner, values: Map<string, Float32Array>, adam: AdamW, state: OutputState, lora?: LoraState): void {
  const tensors = new Map<string, CheckpointTensor>();
  for (const key of model.checkpoint.keys()) {
    const ref = model.checkpoint.get(key)!;
    tensors.set(key, { shape: ref.shape, data: values.get(key) ?? readF32(ref) });
  }
  for (const t of runner.trainable) if (!LORA_TENSOR.test(t.name)) tensors.set(t.name, { shape: t.shape, data: values.get(t.name)! });
  const files = new Map<string, string | Uint8Array>();
  if (lora) {
    // Chat reads the merged weights under llm.*; the adapter goes alone, in PEFT's names.
    const adapter = [];
    for (const t of lora.targets) {
      const A = values.get(`llm.${loraA(t.module)}`)!;
      const B = values.get(`llm.${loraB(t.module)}`)!;
      // Over a quantized LLM (QLoRA) there is no float weight to merge into: the adapter alone.
      if (!model.quantization) tensors.set(`llm.${t.module}.weight`, { shape: [t.out, t.in], data: mergedWeight(lora.base, t, A, B, lora.settings) });
      adapter.push({ name: peftName(loraA(t.module)), dtype: 'F32' as const, shape: [lora.settings.r, t.in], data: A });
      adapter.push({ name: peftName(loraB(t.module)), dtype: 'F32' as const, shape: [t.out, lora.settings.r], data: B });
    }
    files.set(ADAPTER_FILE, safetensorsBytes(adapter));
    files.set(ADAPTER_CONFIG, JSON.stringify(adapterConfig(lora.settings, lora.targets, model.files.llm!), null, 1) + '\n');
  }
  const f = model.files;
  // Relative paths while the parts sit near the output (a project folder), else absolute.
  const rel = (p: string) => {
    const r = relative(out, p);
    return r.split(/[\\/]/).filter((x) => x === '..').length <= 2 ? r || '.' : p;
  };
  const config = {
    llm: rel(f.llm!),
    visual_encoder: rel(f.visualEncoder),
    visual_encoder_aux: rel(f.visualEncoderAux),
    prompt_template: f.promptTemplate,
    visual_select_layer: f.vision.visualSelectLayer,
    image_size_aux: f.vision.imageSizeAux,
    box_feat_size: f.vision.boxFeatSize,
    projector_depth: f.vision.projectorDepth,
    ...(f.vision.boxScaleBase !== undefined ? { box_scale_base: f.vision.boxScaleBase } : {}),
    ...(f.vision.fusion === false ? { fusion: false } : {}),
    ...(f.systemPrompt === false ? { system_prompt: false } : {}),
    trained: {
      stage: state.settings.stage,
      iterations: state.iteration,
      frozen: [
        ...(runner.trainable.some((t) => t.name.startsWith('visual_encoder.')) ? [] : ['visual_encoder']),
        ...(runner.trainable.some((t) => t.name.startsWith('visual_encoder_aux.')) ? [] : ['visual_encoder_aux']),
        ...(state.settings.stage === 1 || lora ? ['llm'] : []),
      ],
      ...(lora ? { lora: { r: lora.settings.r, alpha: lora.settings.alpha, merged_into: model.quantization ? null : 'llm.*', adapter: ADAPTER_FILE } } : {}),
    },
  };
  writeCheckpoint(out, {
    model: tensors,
    optimizer: adam.getState(),
    trainerState: { ...state },
    files: new Map([...files, ['mgllava_config.json', JSON.stringify(config, null, 1) + '\n']]),
  });
}

/** The adapters of a checkpoint folder, under the training names (`<module>.lora_A.weight`). */
export function readAdapters(dir: string, targets: readonly LoraTarget[]): Map<string, { shape: number[]; data: Float32Array }> {
  const path = join(dir, ADAPTER_FILE);
  if (!existsSync(path)) throw new InputError(`${dir}: no ${ADAPTER_FILE} (was this run trained with --lora?)`, dir);
  const store = SafetensorsStore.open(path);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const t of targets) {
    for (const key of [loraA(t.module), loraB(t.module)]) {
      const ref = store.get(peftName(key));
      if (!ref) throw new InputError(`${path}: lacks ${peftName(key)}`, path);
      out.set(key, { shape: [...ref.shape], data: Float32Array.from(readF32(ref)) });
    }
  }
  return out;
}
