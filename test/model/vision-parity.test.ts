// Case A of the reference fixtures, stage by stage: CLIP hidden states, low-res features,
// ConvNeXt stages, fusion, image tokens, pooled box features and box tokens.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { TINY, fixture, relErr, wave } from '../helpers/fixtures.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { clipVisionConfig } from '../../src/model/clip-vit.js';
import { VisionModel, ImageEncoding } from '../../src/model/mg-llava-vision.js';

const TOL = 1e-4;
let model: VisionModel;
let enc: ImageEncoding;

before(async () => {
  const clipCfg = JSON.parse(readFileSync(join(TINY, 'clip', 'config.json'), 'utf8')) as Record<string, unknown>;
  model = await VisionModel.load({
    clip: SafetensorsStore.open(join(TINY, 'clip', 'model.safetensors')),
    clipConfig: clipVisionConfig(clipCfg, 'clip/config.json'),
    convnext: SafetensorsStore.open(join(TINY, 'convnext', 'open_clip_model.safetensors')),
    checkpoint: SafetensorsStore.open(join(TINY, 'mgllava', 'model.safetensors')),
  }, { visualSelectLayer: -2, imageSizeAux: 768, boxFeatSize: 56, projectorDepth: 2 }, { debugOutputs: true });
  const p = 0.25;
  enc = await model.encodeImage(
    { dims: [1, 3, 336, 336], data: wave(1, 3, 336, 336, p) },
    { dims: [1, 3, 768, 768], data: wave(1, 3, 768, 768, p + 0.5) },
  );
});

after(async () => model?.release());

type T = { diagnostic(msg: string): void };

function close(t: T, name: string, out: { dims: readonly number[]; data: Float32Array }, ref: { dims: number[]; data: Float32Array }): void {
  assert.deepEqual(out.dims.filter((d, i) => !(i === 0 && d === 1 && out.dims.length > ref.dims.length)), ref.dims, `${name} shape`);
  const e = relErr(out.data, ref.data);
  assert.ok(e < TOL, `${name}: relative error ${e.toExponential(2)} >= ${TOL}`);
  t.diagnostic(`${name}: relative error ${e.toExponential(2)}`);
}

test('CLIP hidden states (every layer run, CLS first)', (t) => {
  const ref = fixture('A.clip_hidden_states'); // [layers+1, 577, D]; we build layers up to -2
  const [, n, d] = ref.dims as [number, number, number];
  const per = n * d;
  const hidden = Object.keys(enc.debug).filter((k) => k.startsWith('hidden_state_'));
  assert.equal(hidden.length, ref.dims[0]! - 1);
  hidden.forEach((k, i) => {
    close(t, k, enc.debug[k]!, { dims: [n, d], data: ref.data.subarray(i * per, (i + 1) * per) });
  });
});

test('low-res features = layer -2 without CLS', (t) => close(t, 'low_res_feat', enc.debug.low_res_feat!, fixture('A.low_res_feat')));

test('ConvNeXt stages', (t) => {
  for (let l = 0; l < 4; l++) close(t, `stage_${l}`, enc.stages[l]!, fixture(`A.stage_${l}`));
});

test('Conv-Gate fusion', (t) => close(t, 'fused', enc.debug.fused!, fixture('A.fused')));

test('image tokens (projector)', (t) => close(t, 'image_tokens', enc.imageTokens, fixture('A.image_tokens')));

test('pooled box features and box tokens', async (t) => {
  const boxes = fixture('A.boxes').data;
  const b = await model.encodeBoxes(enc.stages, boxes);
  close(t, 'box_pooled', b.pooled, fixture('A.box_pooled'));
  close(t, 'box_tokens', b.boxTokens, fixture('A.box_tokens'));
});
