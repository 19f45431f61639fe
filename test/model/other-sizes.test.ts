// The same code must serve any model of the release's layout: build a random-weight model folder
// with other widths, depths and head counts (and bf16 checkpoint weights in a .pth-free
// safetensors), encode an image through the CLI path, and check the object features against the
// literal reference chain (resize, concat, RoiAlign aligned=False, mean) run by onnxruntime.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY, relErr } from '../helpers/fixtures.js';
import { writeSafetensors, TensorToWrite } from '../../src/weights/write-safetensors.js';
import { MgLlava } from '../../src/model/mg-llava.js';
import { decodeImage } from '../../src/preprocess/decode.js';
import { parseBoxJson } from '../../src/preprocess/boxes.js';
import { Graph } from '../../src/graph/graph.js';
import { resizeBilinear, roiAlign } from '../../src/graph/blocks.js';
import { Session } from '../../src/runtime/session.js';
import { tempDir } from '../weights/torch-builders.js';

/** Deterministic pseudo-random weights (xorshift), scaled to keep activations tame. */
function rng(seed: number): (n: number, scale: number) => Float32Array {
  let s = seed >>> 0 || 1;
  return (n, scale) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
    }
    return out;
  };
}

function toBf16(x: Float32Array): Uint8Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint8Array(x.length * 2);
  for (let i = 0; i < x.length; i++) {
    const b = u[i]! >>> 16; // truncation is fine for random weights
    out[2 * i] = b & 0xff;
    out[2 * i + 1] = b >>> 8;
  }
  return out;
}

const D = 48, HEADS = 3, LAYERS = 4, MLP = 96; // CLIP
const DIMS = [12, 24, 36, 48], DEPTHS = [1, 2, 1, 1]; // ConvNeXt
const H = 24; // LLM width

function buildFolder(): string {
  const dir = tempDir();
  const r = rng(7);
  const t = (name: string, shape: number[], scale = 0.2, one = false): TensorToWrite => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = one ? Float32Array.from(r(n, 0.1), (v) => 1 + v) : r(n, scale);
    return { name, dtype: 'F32', shape, data };
  };
  const clip: TensorToWrite[] = [
    t('vision_model.embeddings.class_embedding', [D]),
    t('vision_model.embeddings.patch_embedding.weight', [D, 3, 14, 14], 0.05),
    t('vision_model.embeddings.position_embedding.weight', [577, D]),
    t('vision_model.pre_layrnorm.weight', [D], 0, true), t('vision_model.pre_layrnorm.bias', [D]),
    t('text_model.embeddings.token_embedding.weight', [10, 8]),
  ];
  for (let i = 0; i < LAYERS; i++) {
    const p = `vision_model.encoder.layers.${i}.`;
    for (const ln of ['layer_norm1', 'layer_norm2']) clip.push(t(`${p}${ln}.weight`, [D], 0, true), t(`${p}${ln}.bias`, [D]));
    for (const q of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) clip.push(t(`${p}self_attn.${q}.weight`, [D, D]), t(`${p}self_attn.${q}.bias`, [D]));
    clip.push(t(`${p}mlp.fc1.weight`, [MLP, D]), t(`${p}mlp.fc1.bias`, [MLP]), t(`${p}mlp.fc2.weight`, [D, MLP]), t(`${p}mlp.fc2.bias`, [D]));
  }
  mkdirSync(join(dir, 'clip'));
  writeSafetensors(join(dir, 'clip', 'model.safetensors'), clip);
  writeFileSync(join(dir, 'clip', 'config.json'), JSON.stringify({
    model_type: 'clip_vision_model', hidden_size: D, intermediate_size: MLP, num_attention_heads: HEADS,
    num_hidden_layers: LAYERS, patch_size: 14, image_size: 336, layer_norm_eps: 1e-5, hidden_act: 'gelu',
  }));

  const cnx: TensorToWrite[] = [
    t('visual.trunk.stem.0.weight', [DIMS[0]!, 3, 4, 4]), t('visual.trunk.stem.0.bias', [DIMS[0]!]),
    t('visual.trunk.stem.1.weight', [DIMS[0]!], 0, true), t('visual.trunk.stem.1.bias', [DIMS[0]!]),
    t('visual.head.proj.weight', [4, 48]),
  ];
  DIMS.forEach((C, s) => {
    const p = `visual.trunk.stages.${s}.`;
    if (s > 0) {
      const Cin = DIMS[s - 1]!;
      cnx.push(t(`${p}downsample.0.weight`, [Cin], 0, true), t(`${p}downsample.0.bias`, [Cin]),
        t(`${p}downsample.1.weight`, [C, Cin, 2, 2]), t(`${p}downsample.1.bias`, [C]));
    }
    for (let b = 0; b < DEPTHS[s]!; b++) {
      const q = `${p}blocks.${b}.`;
      cnx.push(t(`${q}conv_dw.weight`, [C, 1, 7, 7]), t(`${q}conv_dw.bias`, [C]), t(`${q}norm.weight`, [C], 0, true), t(`${q}norm.bias`, [C]),
        t(`${q}mlp.fc1.weight`, [4 * C, C]), t(`${q}mlp.fc1.bias`, [4 * C]), t(`${q}mlp.fc2.weight`, [C, 4 * C]), t(`${q}mlp.fc2.bias`, [C]),
        t(`${q}gamma`, [C], 0.5));
    }
  });
  mkdirSync(join(dir, 'convnext'));
  writeSafetensors(join(dir, 'convnext', 'open_clip_model.safetensors'), cnx);

  const Ch = DIMS[3]!;
  const sumC = DIMS.reduce((a, b) => a + b, 0);
  const ck = [
    t('fuse_module.slow_conv.weight', [Ch, Ch, 1, 1]), t('fuse_module.slow_conv.bias', [Ch]),
    t('fuse_module.slow_proj.weight', [D, Ch, 1, 1]), t('fuse_module.slow_proj.bias', [D]),
    t('fuse_module.fast_conv.weight', [D, 1, 7, 7]), t('fuse_module.fast_conv.bias', [D]),
    t('fuse_module.fast_proj.weight', [D, D, 1, 1]), t('fuse_module.fast_proj.bias', [D]),
    t('fuse_module.gate.0.weight', [D / 2, 2 * D]), t('fuse_module.gate.0.bias', [D / 2]),
    t('fuse_module.gate.2.weight', [1, D / 2]), t('fuse_module.gate.2.bias', [1], 1),
    t('projector.model.0.weight', [H, D]), t('projector.model.0.bias', [H]),
    t('projector.model.2.weight', [H, H]), t('projector.model.2.bias', [H]),
    t('bbox_projector.model.0.weight', [H, sumC]), t('bbox_projector.model.0.bias', [H]),
    t('bbox_projector.model.2.weight', [H, H]), t('bbox_projector.model.2.bias', [H]),
  ].map((x) => ({ ...x, dtype: 'BF16' as const, data: toBf16(x.data as Float32Array) }));
  mkdirSync(join(dir, 'mg'));
  writeSafetensors(join(dir, 'mg', 'model.safetensors'), ck);
  writeFileSync(join(dir, 'mg', 'mgllava_config.json'), JSON.stringify({
    llm: join(TINY, 'llm'), visual_encoder: '../clip', visual_encoder_aux: '../convnext', visual_select_layer: -2,
  }));
  return join(dir, 'mg');
}

test('a model of other sizes encodes, and its object features follow the reference RoIAlign chain', async () => {
  const model = await MgLlava.load({ model: buildFolder() });
  try {
    // Portrait crop of the example (other geometry than the fixtures) with a few boxes.
    const img = await decodeImage(join(TINY, 'example.jpg'));
    const w = 300, h = 514;
    const data = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) data.set(img.data.subarray((y * img.width + 100) * 3, (y * img.width + 100 + w) * 3), y * w * 3);
    const det = parseBoxJson(JSON.stringify({
      boxes: [[10, 20, 200, 300], [0, 0, 300, 514], [150.5, 400.25, 299, 513], [40, 60, 41, 61]],
      labels: ['cat', 'table', 'cup', 'cat'], scores: [0.9, 0.5, 0.7, 0.3],
    }), 'boxes');
    const tokens = await model.encode({ width: w, height: h, data }, det);
    assert.deepEqual(tokens.imageTokens.dims, [576, H]);
    assert.deepEqual(tokens.boxTokens.dims, [4, H]);
    assert.ok(tokens.imageTokens.data.every(Number.isFinite));

    // Object features against resize + RoiAlign + mean, on the same stages.
    const enc = await model.vision.encodeImage({ dims: [1, 3, 336, 336], data: tokens.pixelValues.data },
      { dims: [1, 3, 768, 768], data: tokens.pixelValuesAux.data });
    const ours = await model.vision.encodeBoxes(enc.stages, tokens.boxes.data);
    const g = new Graph('reference_roi');
    const ins = enc.stages.map((s, l) => g.input(`s${l}`, 'F32', s.dims));
    const cat = g.op1('Concat', ins.map((v, l) => (l === 0 ? v : resizeBilinear(g, v, 192, 192))), { axis: 1 });
    const bins = roiAlign(g, cat, g.input('rois', 'F32', [4, 4]), g.constI64([0, 0, 0, 0]), { outputSize: 56, spatialScale: 192 / 768 });
    g.output(g.op1('ReduceMean', [bins, g.constI64([2, 3])], { keepdims: 0 }), 'pooled');
    const { bytes } = g.serialize();
    const s = await Session.create('reference_roi', bytes);
    const feeds: Record<string, { dims: readonly number[]; data: Float32Array }> = { rois: tokens.boxes };
    enc.stages.forEach((st, l) => (feeds[`s${l}`] = st));
    const ref = (await s.run(feeds)).pooled!;
    await s.release();
    const e = relErr(ours.pooled.data, ref.data);
    assert.ok(e < 1e-4, `pooled relative error ${e}`);
  } finally {
    await model.release();
  }
});
