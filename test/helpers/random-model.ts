// Random-weight MG-LLaVA model folders in the release's layout (HF CLIP folder, open_clip ConvNeXt
// folder, a bf16 checkpoint with mgllava_config.json), for shapes the fixtures do not cover: the
// tests use small odd sizes, the benchmark the real MG-LLaVA-7B vision shapes.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors, TensorToWrite } from '../../src/weights/write-safetensors.js';

export interface RandomModelShape {
  clip: { width: number; layers: number; heads: number; mlp: number; act: 'quick_gelu' | 'gelu' };
  convnext: { dims: number[]; depths: number[] };
  llmWidth: number;
  seed?: number;
}

/** The real MG-LLaVA-7B vision side: CLIP ViT-L/14-336, ConvNeXt-L, projectors to 4096. */
export const REAL_7B_SHAPE: RandomModelShape = {
  clip: { width: 1024, layers: 24, heads: 16, mlp: 4096, act: 'quick_gelu' },
  convnext: { dims: [192, 384, 768, 1536], depths: [3, 3, 27, 3] },
  llmWidth: 4096,
};

function random(seed: number): (n: number, scale: number) => Float32Array {
  let s = seed >>> 0;
  return (n, scale) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0; // LCG: fast, deterministic
      out[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
    }
    return out;
  };
}

function toBf16(x: Float32Array): Uint8Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = u[i]! >>> 16;
  return new Uint8Array(out.buffer);
}

/**
 * Writes clip/, convnext/ and mg/ under `root`; returns the mg/ folder (with mgllava_config.json).
 * Weights are uniform with scale 1/sqrt(fan-in), norms near 1, so activations stay tame.
 */
export function writeRandomModel(root: string, shape: RandomModelShape, extraConfig: Record<string, unknown> = {}): string {
  const r = random(shape.seed ?? 1);
  const t = (name: string, dims: number[], fan: number, one = false): TensorToWrite => {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = one ? Float32Array.from(r(n, 0.05), (v) => 1 + v) : r(n, 1 / Math.sqrt(fan));
    return { name, dtype: 'F32', shape: dims, data };
  };
  const bias = (name: string, n: number) => t(name, [n], 100);

  const { width: D, layers, heads, mlp, act } = shape.clip;
  const clip: TensorToWrite[] = [
    t('vision_model.embeddings.class_embedding', [D], 1),
    t('vision_model.embeddings.patch_embedding.weight', [D, 3, 14, 14], 588),
    t('vision_model.embeddings.position_embedding.weight', [577, D], 1),
    t('vision_model.pre_layrnorm.weight', [D], 1, true), bias('vision_model.pre_layrnorm.bias', D),
    t('text_model.embeddings.token_embedding.weight', [10, 8], 1), // a text tower to be ignored
  ];
  for (let i = 0; i < layers; i++) {
    const p = `vision_model.encoder.layers.${i}.`;
    for (const ln of ['layer_norm1', 'layer_norm2']) clip.push(t(`${p}${ln}.weight`, [D], 1, true), bias(`${p}${ln}.bias`, D));
    for (const q of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) clip.push(t(`${p}self_attn.${q}.weight`, [D, D], D), bias(`${p}self_attn.${q}.bias`, D));
    clip.push(t(`${p}mlp.fc1.weight`, [mlp, D], D), bias(`${p}mlp.fc1.bias`, mlp), t(`${p}mlp.fc2.weight`, [D, mlp], mlp), bias(`${p}mlp.fc2.bias`, D));
  }
  mkdirSync(join(root, 'clip'), { recursive: true });
  writeSafetensors(join(root, 'clip', 'model.safetensors'), clip);
  writeFileSync(join(root, 'clip', 'config.json'), JSON.stringify({
    vision_config: { hidden_size: D, intermediate_size: mlp, num_attention_heads: heads, num_hidden_layers: layers,
      patch_size: 14, image_size: 336, layer_norm_eps: 1e-5, hidden_act: act },
  }));

  const { dims, depths } = shape.convnext;
  const cnx: TensorToWrite[] = [
    t('visual.trunk.stem.0.weight', [dims[0]!, 3, 4, 4], 48), bias('visual.trunk.stem.0.bias', dims[0]!),
    t('visual.trunk.stem.1.weight', [dims[0]!], 1, true), bias('visual.trunk.stem.1.bias', dims[0]!),
    t('visual.head.proj.weight', [4, dims[3]!], dims[3]!), // a head to be ignored
  ];
  dims.forEach((C, s) => {
    const p = `visual.trunk.stages.${s}.`;
    if (s > 0) {
      const Cin = dims[s - 1]!;
      cnx.push(t(`${p}downsample.0.weight`, [Cin], 1, true), bias(`${p}downsample.0.bias`, Cin),
        t(`${p}downsample.1.weight`, [C, Cin, 2, 2], 4 * Cin), bias(`${p}downsample.1.bias`, C));
    }
    for (let b = 0; b < depths[s]!; b++) {
      const q = `${p}blocks.${b}.`;
      cnx.push(t(`${q}conv_dw.weight`, [C, 1, 7, 7], 49), bias(`${q}conv_dw.bias`, C), t(`${q}norm.weight`, [C], 1, true), bias(`${q}norm.bias`, C),
        t(`${q}mlp.fc1.weight`, [4 * C, C], C), bias(`${q}mlp.fc1.bias`, 4 * C), t(`${q}mlp.fc2.weight`, [C, 4 * C], 4 * C), bias(`${q}mlp.fc2.bias`, C),
        t(`${q}gamma`, [C], 4));
    }
  });
  mkdirSync(join(root, 'convnext'), { recursive: true });
  writeSafetensors(join(root, 'convnext', 'open_clip_model.safetensors'), cnx);

  const Ch = dims[3]!;
  const H = shape.llmWidth;
  const sumC = dims.reduce((a, b) => a + b, 0);
  const half = Math.floor(D / 2);
  const ck = [
    t('fuse_module.slow_conv.weight', [Ch, Ch, 1, 1], Ch), bias('fuse_module.slow_conv.bias', Ch),
    t('fuse_module.slow_proj.weight', [D, Ch, 1, 1], Ch), bias('fuse_module.slow_proj.bias', D),
    t('fuse_module.fast_conv.weight', [D, 1, 7, 7], 49), bias('fuse_module.fast_conv.bias', D),
    t('fuse_module.fast_proj.weight', [D, D, 1, 1], D), bias('fuse_module.fast_proj.bias', D),
    t('fuse_module.gate.0.weight', [half, 2 * D], 2 * D), bias('fuse_module.gate.0.bias', half),
    t('fuse_module.gate.2.weight', [1, half], half), t('fuse_module.gate.2.bias', [1], 1),
    t('projector.model.0.weight', [H, D], D), bias('projector.model.0.bias', H),
    t('projector.model.2.weight', [H, H], H), bias('projector.model.2.bias', H),
    t('bbox_projector.model.0.weight', [H, sumC], sumC), bias('bbox_projector.model.0.bias', H),
    t('bbox_projector.model.2.weight', [H, H], H), bias('bbox_projector.model.2.bias', H),
  ].map((x) => ({ ...x, dtype: 'BF16' as const, data: toBf16(x.data as Float32Array) }));
  mkdirSync(join(root, 'mg'), { recursive: true });
  writeSafetensors(join(root, 'mg', 'model.safetensors'), ck);
  writeFileSync(join(root, 'mg', 'mgllava_config.json'), JSON.stringify({
    visual_encoder: '../clip', visual_encoder_aux: '../convnext', visual_select_layer: -2,
    image_size_aux: 768, box_feat_size: 56, projector_depth: 2, ...extraConfig,
  }));
  return join(root, 'mg');
}
