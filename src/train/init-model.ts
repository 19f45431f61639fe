// A new MG-LLaVA of any size with freshly initialised weights, written as a model folder that
// `mgllava train --model` starts from (training from scratch) and `chat --model` loads:
//
//   DIR/mgllava_config.json           the parts and the vision settings
//   DIR/model.safetensors             fuse_module.*, projector.*, bbox_projector.*
//   DIR/clip/                         HF CLIPVisionModel layout (config.json, model.safetensors)
//   DIR/convnext/                     open_clip layout (visual.trunk.*)
//   DIR/llm/                          HF LLaMA layout with a tokenizer.json
//
// Initialisation follows each source library's own rule, so a model made here starts where one
// made there would: LLaMA and ConvNeXt (timm) draw weights from N(0, 0.02) (timm truncated at
// +-2 std), biases 0, norms 1, ConvNeXt's layer scale 1e-6; CLIP uses HF's CLIP init (factor 1);
// the fusion and projectors are PyTorch's default Linear/Conv2d init (uniform +-1/sqrt(fan_in)),
// as the release builds them.

import { mkdirSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { Rng } from './rng.js';
import { TensorToWrite, writeSafetensors } from '../weights/write-safetensors.js';

export interface NewModelSpec {
  clip: { imageSize: number; patchSize: number; hidden: number; layers: number; heads: number; intermediate: number };
  convnext: { dims: [number, number, number, number]; depths: [number, number, number, number] };
  llm: { hidden: number; layers: number; heads: number; kvHeads: number; intermediate: number; maxPositions: number; ropeTheta?: number };
  /** ConvNeXt input side; must be 32 x the CLIP grid side */
  imageSizeAux: number;
  boxFeatSize?: number;
  projectorDepth?: number;
  promptTemplate?: string;
  visualSelectLayer?: number;
}

export interface NewModelFiles {
  /** tokenizer.json and tokenizer_config.json objects (vocab size from the tokenizer's vocab) */
  tokenizer: object;
  tokenizerConfig: object;
  vocabSize: number;
}

type Init = { name: string; shape: number[]; fill: (n: number) => Float32Array };

/** Check a spec's sizes fit together; an InputError naming the field otherwise. */
export function checkSpec(s: NewModelSpec): void {
  const int = (v: number, what: string) => {
    if (!Number.isInteger(v) || v <= 0) throw new InputError(`model spec: ${what} must be a positive integer, got ${v}`, what);
  };
  Object.entries(s.clip).forEach(([k, v]) => int(v, `clip.${k}`));
  Object.entries(s.llm).forEach(([k, v]) => int(v as number, `llm.${k}`));
  s.convnext.dims.forEach((v, i) => int(v, `convnext.dims[${i}]`));
  s.convnext.depths.forEach((v, i) => int(v, `convnext.depths[${i}]`));
  if (s.clip.imageSize % s.clip.patchSize) throw new InputError(`model spec: clip.imageSize ${s.clip.imageSize} is not a multiple of clip.patchSize ${s.clip.patchSize}`, 'clip.imageSize');
  const grid = s.clip.imageSize / s.clip.patchSize;
  if (s.imageSizeAux !== 32 * grid) throw new InputError(`model spec: imageSizeAux must be 32 x the CLIP grid (${32 * grid}), got ${s.imageSizeAux}`, 'imageSizeAux');
  if (s.clip.hidden % s.clip.heads) throw new InputError('model spec: clip.hidden must divide by clip.heads', 'clip.heads');
  if (s.llm.hidden % s.llm.heads || s.llm.heads % s.llm.kvHeads) throw new InputError('model spec: llm.hidden must divide by llm.heads, and llm.heads by llm.kvHeads', 'llm.heads');
}

/** Write a freshly initialised model folder at `dir` (atomically: built beside it, then renamed). */
export function writeNewModel(dir: string, spec: NewModelSpec, files: NewModelFiles, seed: number): void {
  checkSpec(spec);
  const out = resolve(dir);
  if (existsSync(out)) throw new InputError(`${dir}: already exists`, dir);
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const rng = Rng.seeded(seed, 7);
  const normal = (std: number, trunc = Infinity) => (n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let x: number;
      do x = gaussian(rng); while (Math.abs(x) > trunc);
      a[i] = x * std;
    }
    return a;
  };
  const uniform = (bound: number) => (n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rng.nextFloat() * 2 - 1) * bound;
    return a;
  };
  const constant = (v: number) => (n: number) => new Float32Array(n).fill(v);
  try {
    for (const sub of ['clip', 'convnext', 'llm']) mkdirSync(join(tmp, sub), { recursive: true });
    writeClip(tmp, spec, normal, constant);
    writeConvNext(tmp, spec, normal, constant);
    writeLlm(tmp, spec, files, normal, constant);
    writeMgLlava(tmp, spec, uniform);
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

function materialise(inits: readonly Init[]): TensorToWrite[] {
  return inits.map((t) => ({ name: t.name, dtype: 'F32', shape: t.shape, data: t.fill(t.shape.reduce((a, b) => a * b, 1)) }));
}

type Normal = (std: number, trunc?: number) => (n: number) => Float32Array;
type Constant = (v: number) => (n: number) => Float32Array;

function writeClip(dir: string, spec: NewModelSpec, normal: Normal, constant: Constant): void {
  const c = spec.clip;
  const C = c.hidden;
  const grid = c.imageSize / c.patchSize;
  // HF CLIPPreTrainedModel._init_weights with initializer_factor 1 and range 0.02.
  const attnStd = C ** -0.5 * (2 * c.layers) ** -0.5;
  const outStd = C ** -0.5;
  const fcStd = (2 * C) ** -0.5;
  const t: Init[] = [
    { name: 'vision_model.embeddings.class_embedding', shape: [C], fill: normal(C ** -0.5) },
    { name: 'vision_model.embeddings.patch_embedding.weight', shape: [C, 3, c.patchSize, c.patchSize], fill: normal(0.02) },
    { name: 'vision_model.embeddings.position_embedding.weight', shape: [grid * grid + 1, C], fill: normal(0.02) },
    { name: 'vision_model.pre_layrnorm.weight', shape: [C], fill: constant(1) },
    { name: 'vision_model.pre_layrnorm.bias', shape: [C], fill: constant(0) },
  ];
  for (let i = 0; i < c.layers; i++) {
    const p = `vision_model.encoder.layers.${i}`;
    for (const n of ['q_proj', 'k_proj', 'v_proj']) {
      t.push({ name: `${p}.self_attn.${n}.weight`, shape: [C, C], fill: normal(attnStd) }, { name: `${p}.self_attn.${n}.bias`, shape: [C], fill: constant(0) });
    }
    t.push(
      { name: `${p}.self_attn.out_proj.weight`, shape: [C, C], fill: normal(outStd * (2 * c.layers) ** -0.5) },
      { name: `${p}.self_attn.out_proj.bias`, shape: [C], fill: constant(0) },
      { name: `${p}.layer_norm1.weight`, shape: [C], fill: constant(1) },
      { name: `${p}.layer_norm1.bias`, shape: [C], fill: constant(0) },
      { name: `${p}.mlp.fc1.weight`, shape: [c.intermediate, C], fill: normal(fcStd) },
      { name: `${p}.mlp.fc1.bias`, shape: [c.intermediate], fill: constant(0) },
      { name: `${p}.mlp.fc2.weight`, shape: [C, c.intermediate], fill: normal(attnStd) },
      { name: `${p}.mlp.fc2.bias`, shape: [C], fill: constant(0) },
      { name: `${p}.layer_norm2.weight`, shape: [C], fill: constant(1) },
      { name: `${p}.layer_norm2.bias`, shape: [C], fill: constant(0) },
    );
  }
  t.push({ name: 'vision_model.post_layernorm.weight', shape: [C], fill: constant(1) }, { name: 'vision_model.post_layernorm.bias', shape: [C], fill: constant(0) });
  writeSafetensors(join(dir, 'clip', 'model.safetensors'), materialise(t));
  const config = {
    model_type: 'clip_vision_model',
    hidden_act: 'quick_gelu',
    hidden_size: C,
    image_size: c.imageSize,
    intermediate_size: c.intermediate,
    layer_norm_eps: 1e-5,
    num_attention_heads: c.heads,
    num_channels: 3,
    num_hidden_layers: c.layers,
    patch_size: c.patchSize,
    attention_dropout: 0,
    initializer_factor: 1,
    initializer_range: 0.02,
  };
  writeJson(join(dir, 'clip', 'config.json'), config);
  writeJson(join(dir, 'clip', 'preprocessor_config.json'), {
    crop_size: c.imageSize, do_center_crop: true, do_normalize: true, do_resize: true, feature_extractor_type: 'CLIPFeatureExtractor',
    image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], resample: 3, size: c.imageSize,
  });
}

function writeConvNext(dir: string, spec: NewModelSpec, normal: Normal, constant: Constant): void {
  const { dims, depths } = spec.convnext;
  const w = normal(0.02, 2);
  const t: Init[] = [
    { name: 'visual.trunk.stem.0.weight', shape: [dims[0], 3, 4, 4], fill: w },
    { name: 'visual.trunk.stem.0.bias', shape: [dims[0]], fill: constant(0) },
    { name: 'visual.trunk.stem.1.weight', shape: [dims[0]], fill: constant(1) },
    { name: 'visual.trunk.stem.1.bias', shape: [dims[0]], fill: constant(0) },
  ];
  for (let s = 0; s < 4; s++) {
    const C = dims[s]!;
    const p = `visual.trunk.stages.${s}`;
    if (s > 0) {
      t.push(
        { name: `${p}.downsample.0.weight`, shape: [dims[s - 1]!], fill: constant(1) },
        { name: `${p}.downsample.0.bias`, shape: [dims[s - 1]!], fill: constant(0) },
        { name: `${p}.downsample.1.weight`, shape: [C, dims[s - 1]!, 2, 2], fill: w },
        { name: `${p}.downsample.1.bias`, shape: [C], fill: constant(0) },
      );
    }
    for (let b = 0; b < depths[s]!; b++) {
      const q = `${p}.blocks.${b}`;
      t.push(
        { name: `${q}.conv_dw.weight`, shape: [C, 1, 7, 7], fill: w },
        { name: `${q}.conv_dw.bias`, shape: [C], fill: constant(0) },
        { name: `${q}.norm.weight`, shape: [C], fill: constant(1) },
        { name: `${q}.norm.bias`, shape: [C], fill: constant(0) },
        { name: `${q}.mlp.fc1.weight`, shape: [4 * C, C], fill: w },
        { name: `${q}.mlp.fc1.bias`, shape: [4 * C], fill: constant(0) },
        { name: `${q}.mlp.fc2.weight`, shape: [C, 4 * C], fill: w },
        { name: `${q}.mlp.fc2.bias`, shape: [C], fill: constant(0) },
        { name: `${q}.gamma`, shape: [C], fill: constant(1e-6) },
      );
    }
  }
  writeSafetensors(join(dir, 'convnext', 'open_clip_model.safetensors'), materialise(t));
  writeJson(join(dir, 'convnext', 'open_clip_config.json'), {
    model_cfg: { embed_dim: dims[3], vision_cfg: { timm_model_name: 'convnext_custom', timm_pool: '', timm_proj: 'mlp', image_size: spec.imageSizeAux, depths, dims } },
    preprocess_cfg: { mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] },
  });
}

function writeLlm(dir: string, spec: NewModelSpec, files: NewModelFiles, normal: Normal, constant: Constant): void {
  const l = spec.llm;
  const H = l.hidden;
  const headDim = H / l.heads;
  const w = normal(0.02);
  const t: Init[] = [{ name: 'model.embed_tokens.weight', shape: [files.vocabSize, H], fill: w }];
  for (let i = 0; i < l.layers; i++) {
    const p = `model.layers.${i}`;
    t.push(
      { name: `${p}.input_layernorm.weight`, shape: [H], fill: constant(1) },
      { name: `${p}.self_attn.q_proj.weight`, shape: [H, H], fill: w },
      { name: `${p}.self_attn.k_proj.weight`, shape: [l.kvHeads * headDim, H], fill: w },
      { name: `${p}.self_attn.v_proj.weight`, shape: [l.kvHeads * headDim, H], fill: w },
      { name: `${p}.self_attn.o_proj.weight`, shape: [H, H], fill: w },
      { name: `${p}.post_attention_layernorm.weight`, shape: [H], fill: constant(1) },
      { name: `${p}.mlp.gate_proj.weight`, shape: [l.intermediate, H], fill: w },
      { name: `${p}.mlp.up_proj.weight`, shape: [l.intermediate, H], fill: w },
      { name: `${p}.mlp.down_proj.weight`, shape: [H, l.intermediate], fill: w },
    );
  }
  t.push({ name: 'model.norm.weight', shape: [H], fill: constant(1) }, { name: 'lm_head.weight', shape: [files.vocabSize, H], fill: w });
  writeSafetensors(join(dir, 'llm', 'model.safetensors'), materialise(t));
  writeJson(join(dir, 'llm', 'config.json'), {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    attention_bias: false,
    attention_dropout: 0,
    bos_token_id: 1,
    eos_token_id: 2,
    head_dim: headDim,
    hidden_act: 'silu',
    hidden_size: H,
    initializer_range: 0.02,
    intermediate_size: l.intermediate,
    max_position_embeddings: l.maxPositions,
    mlp_bias: false,
    num_attention_heads: l.heads,
    num_hidden_layers: l.layers,
    num_key_value_heads: l.kvHeads,
    pad_token_id: null,
    rms_norm_eps: 1e-5,
    rope_theta: l.ropeTheta ?? 10000,
    tie_word_embeddings: false,
    vocab_size: files.vocabSize,
  });
  writeJson(join(dir, 'llm', 'tokenizer.json'), files.tokenizer);
  writeJson(join(dir, 'llm', 'tokenizer_config.json'), files.tokenizerConfig);
}

function writeMgLlava(dir: string, spec: NewModelSpec, uniform: (bound: number) => (n: number) => Float32Array): void {
  const C = spec.clip.hidden;
  const Ch = spec.convnext.dims[3];
  const H = spec.llm.hidden;
  const sumC = spec.convnext.dims.reduce((a, b) => a + b, 0);
  const depth = spec.projectorDepth ?? 2;
  const half = Math.floor(C / 2);
  const t: Init[] = [];
  // PyTorch's default init: weight and bias uniform in +-1/sqrt(fan_in).
  const layer = (name: string, out: number, fanIn: number, kernel: number[] = []) => {
    const b = 1 / Math.sqrt(fanIn * kernel.reduce((a, x) => a * x, 1));
    t.push({ name: `${name}.weight`, shape: [out, fanIn, ...kernel], fill: uniform(b) }, { name: `${name}.bias`, shape: [out], fill: uniform(b) });
  };
  layer('fuse_module.slow_conv', Ch, Ch, [1, 1]);
  layer('fuse_module.slow_proj', C, Ch, [1, 1]);
  // depthwise 7x7: fan_in 49, weight [C, 1, 7, 7]
  const dwBound = 1 / Math.sqrt(49);
  t.push({ name: 'fuse_module.fast_conv.weight', shape: [C, 1, 7, 7], fill: uniform(dwBound) }, { name: 'fuse_module.fast_conv.bias', shape: [C], fill: uniform(dwBound) });
  layer('fuse_module.fast_proj', C, C, [1, 1]);
  layer('fuse_module.gate.0', half, 2 * C);
  layer('fuse_module.gate.2', 1, half);
  for (let i = 0; i < depth; i++) layer(`projector.model.${2 * i}`, H, i === 0 ? C : H);
  for (let i = 0; i < depth; i++) layer(`bbox_projector.model.${2 * i}`, H, i === 0 ? sumC : H);
  writeSafetensors(join(dir, 'model.safetensors'), materialise(t));
  writeJson(join(dir, 'mgllava_config.json'), {
    llm: 'llm',
    visual_encoder: 'clip',
    visual_encoder_aux: 'convnext',
    prompt_template: spec.promptTemplate ?? 'vicuna',
    visual_select_layer: spec.visualSelectLayer ?? -2,
    image_size_aux: spec.imageSizeAux,
    box_feat_size: spec.boxFeatSize ?? 56,
    projector_depth: depth,
    // RoIAlign over this model's own ConvNeXt size (the release's literal 768 fits only 768-px models)
    box_scale_base: spec.imageSizeAux,
  });
}

function writeJson(path: string, v: unknown): void {
  writeFileSync(path, JSON.stringify(v, null, 1) + '\n');
}

/** A standard normal draw (Box-Muller on the generator's floats). */
function gaussian(rng: Rng): number {
  let u = 0;
  while (u === 0) u = rng.nextFloat();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.nextFloat());
}
