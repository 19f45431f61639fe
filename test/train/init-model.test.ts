// A model from scratch: the word tokenizer (every corpus word one token, other text through
// characters and bytes), writeNewModel's folder (sizes checked, loads, answers, trains), and the
// model-config switches it relies on: box_scale_base, fusion: false, system_prompt: false.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildWordBpe } from '../../src/tokenizer/build-word-bpe.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { NewModelSpec, writeNewModel } from '../../src/train/init-model.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { clipVisionConfig } from '../../src/model/clip-vit.js';
import { VisionModel, VisionSettings } from '../../src/model/mg-llava-vision.js';
import { MgLlava } from '../../src/model/mg-llava.js';
import { safetensorsBytes } from '../../src/weights/write-safetensors.js';
import { readF32 } from '../../src/weights/types.js';
import { wave } from '../helpers/fixtures.js';
import { mgllava } from '../helpers/cli.js';

const CORPUS = ['How many red circles are there?', 'Is there a small blue square?', 'Yes', 'No', '3', 'USER: ASSISTANT:'];
const SPEC: NewModelSpec = {
  clip: { imageSize: 64, patchSize: 16, hidden: 32, layers: 2, heads: 2, intermediate: 64 },
  convnext: { dims: [8, 16, 24, 32], depths: [1, 1, 1, 1] },
  llm: { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, maxPositions: 256 },
  imageSizeAux: 128,
};

let dir: string;
let model: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'mgllava-init-'));
  model = join(dir, 'model');
  const tok = buildWordBpe(CORPUS);
  writeNewModel(model, SPEC, { tokenizer: tok.tokenizer, tokenizerConfig: tok.config, vocabSize: tok.vocabSize }, 5);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('word tokenizer: each corpus word is one token with its ▁, other text still round-trips', () => {
  const tok = Tokenizer.fromFolder(join(model, 'llm'));
  const ids = tok.encode('How many red circles are there?', { addSpecialTokens: false });
  assert.equal(ids.length, 6, `ids ${ids}`);
  assert.equal(tok.decode(ids), 'How many red circles are there?');
  assert.equal(tok.encode('Yes', { addSpecialTokens: false }).length, 1);
  // Not in the corpus: characters (and bytes for non-ASCII) still encode and decode exactly.
  for (const text of ['purple hexagon!', 'naïve café ✓']) assert.equal(tok.decode(tok.encode(text, { addSpecialTokens: false })), text);
  const cfg = JSON.parse(readFileSync(join(model, 'llm', 'config.json'), 'utf8')) as { vocab_size: number };
  assert.equal(cfg.vocab_size, buildWordBpe(CORPUS).vocabSize);
});

test('writeNewModel: a folder chat loads and answers from; sizes are checked', async () => {
  const m = await MgLlava.load({ model });
  try {
    const r = await m.chat({ prompt: 'How many red circles are there?', image: { width: 100, height: 60, data: new Uint8Array(100 * 60 * 3).fill(200) }, generation: { maxNewTokens: 3, temperature: 0 } }).complete();
    assert.equal(r.ids.length, 3);
    // 4 x 4 image tokens + the text: a system block would add dozens of tokens (system_prompt false)
    const noSys = JSON.parse(readFileSync(join(model, 'mgllava_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(noSys['box_scale_base'], 128);
  } finally {
    await m.release();
  }
  assert.throws(() => writeNewModel(join(dir, 'bad'), { ...SPEC, imageSizeAux: 256 }, { tokenizer: {}, tokenizerConfig: {}, vocabSize: 10 }, 1), /imageSizeAux must be 32 x the CLIP grid \(128\)/);
  assert.throws(() => writeNewModel(model, SPEC, { tokenizer: {}, tokenizerConfig: {}, vocabSize: 10 }, 1), /already exists/);
  assert.ok(!existsSync(join(dir, 'bad')));
});

test('system_prompt: false leaves the system block out unless a system text is given', async () => {
  const cfgPath = join(model, 'mgllava_config.json');
  const original = readFileSync(cfgPath, 'utf8');
  const ask = async (system?: string) => {
    const m = await MgLlava.load({ model });
    try {
      return (await m.chat({ prompt: 'Yes', ...(system !== undefined ? { system } : {}), generation: { maxNewTokens: 1, temperature: 0 } }).complete()).promptTokens;
    } finally {
      await m.release();
    }
  };
  const withSystem = await ask();
  try {
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(original), system_prompt: false }));
    const without = await ask();
    assert.ok(without < withSystem - 10, `${without} vs ${withSystem} prompt tokens`);
    assert.equal(await ask(''), withSystem, 'an explicit (empty) system text brings the block back');
  } finally {
    writeFileSync(cfgPath, original);
  }
});

async function vision(settings: Partial<VisionSettings>, checkpoint = join(model, 'model.safetensors')): Promise<VisionModel> {
  return VisionModel.load({
    clip: SafetensorsStore.open(join(model, 'clip', 'model.safetensors')),
    clipConfig: clipVisionConfig(JSON.parse(readFileSync(join(model, 'clip', 'config.json'), 'utf8')) as Record<string, unknown>, 'clip/config.json'),
    convnext: SafetensorsStore.open(join(model, 'convnext', 'open_clip_model.safetensors')),
    checkpoint: SafetensorsStore.open(checkpoint),
  }, { visualSelectLayer: -2, imageSizeAux: 128, boxFeatSize: 14, projectorDepth: 2, ...settings });
}

test('box_scale_base: a box at base 128 pools what the box 6x as large pools at the release\'s 768', async () => {
  const own = await vision({ boxScaleBase: 128 });
  const release = await vision({});
  try {
    const enc = await own.encodeImage({ dims: [1, 3, 64, 64], data: wave(1, 3, 64, 64, 0.3) }, { dims: [1, 3, 128, 128], data: wave(1, 3, 128, 128, 0.7) });
    const box = [10, 20, 70, 50];
    const a = await own.encodeBoxes(enc.stages, new Float32Array(box));
    const b = await release.encodeBoxes(enc.stages, new Float32Array(box.map((x) => x * 6)));
    assert.deepEqual(a.pooled.dims, b.pooled.dims);
    for (let i = 0; i < a.pooled.data.length; i++) assert.ok(Math.abs(a.pooled.data[i]! - b.pooled.data[i]!) < 1e-5, `pooled[${i}]`);
    const c = await release.encodeBoxes(enc.stages, new Float32Array(box));
    assert.ok(a.pooled.data.some((x, i) => Math.abs(x - c.pooled.data[i]!) > 1e-4), 'the base changes where the box reads');
  } finally {
    await Promise.all([own.release(), release.release()]);
  }
});

test('fusion: false gives the tokens of a fuse_module that adds nothing (projector over the CLIP features)', async () => {
  // fast_proj = 0 keeps l = L; gate.2 = 0 makes tanh(g) = 0: fused = L exactly.
  const store = SafetensorsStore.open(join(model, 'model.safetensors'));
  const tensors = store.keys().map((k) => {
    const r = store.get(k)!;
    const data = readF32(r);
    if (/^fuse_module\.(fast_proj|gate\.2)\./.test(k)) data.fill(0);
    return { name: k, dtype: 'F32' as const, shape: [...r.shape], data };
  });
  const zeroed = join(dir, 'zeroed.safetensors');
  writeFileSync(zeroed, safetensorsBytes(tensors));
  const plain = await vision({ fusion: false });
  const neutral = await vision({}, zeroed);
  const fused = await vision({});
  try {
    const px = { dims: [1, 3, 64, 64], data: wave(1, 3, 64, 64, 0.2) };
    const aux = { dims: [1, 3, 128, 128], data: wave(1, 3, 128, 128, 0.9) };
    const [a, b, c] = await Promise.all([plain.encodeImage(px, aux), neutral.encodeImage(px, aux), fused.encodeImage(px, aux)]);
    for (let i = 0; i < a.imageTokens.data.length; i++) assert.ok(Math.abs(a.imageTokens.data[i]! - b.imageTokens.data[i]!) < 1e-5, `token value ${i}`);
    assert.ok(a.imageTokens.data.some((x, i) => Math.abs(x - c.imageTokens.data[i]!) > 1e-4), 'the real fusion differs');
  } finally {
    await Promise.all([plain.release(), neutral.release(), fused.release()]);
  }
});

test('a model from writeNewModel trains with every part learning, and the output keeps its settings', async () => {
  const data = join(dir, 'data.json');
  const boxes = join(dir, 'boxes.json');
  const img = join(dir, 'img.png');
  const sharp = (await import('sharp')).default;
  await sharp(Buffer.from(new Uint8Array(90 * 70 * 3).map((_, i) => (i * 7) % 251)), { raw: { width: 90, height: 70, channels: 3 } }).png().toFile(img);
  writeFileSync(data, JSON.stringify([{ id: 1, image: 'img.png', conversations: [{ from: 'human', value: '<image>\nHow many red circles are there?' }, { from: 'gpt', value: '3' }] }]));
  writeFileSync(boxes, JSON.stringify([{ id: 1, boxes: [[5, 5, 40, 30]], labels: ['red circle'], scores: [1] }]));
  const out = join(dir, 'trained');
  const r = await mgllava(['train', '--model', model, '--stage', '2', '--trainable', 'visual_encoder.*,visual_encoder_aux.*', '--data', data, '--boxes', boxes, '--out', out, '--max-steps', '2', '--lr', '1e-3', '--warmup-ratio', '0', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const cfg = JSON.parse(readFileSync(join(out, 'mgllava_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(cfg['box_scale_base'], 128);
  assert.deepEqual((cfg['trained'] as { frozen: string[] }).frozen, []);
  const names = SafetensorsStore.open(join(out, 'model.safetensors')).keys();
  for (const p of ['visual_encoder.vision_model.', 'visual_encoder_aux.visual.trunk.', 'llm.model.', 'fuse_module.', 'bbox_projector.']) assert.ok(names.some((n) => n.startsWith(p)), p);

  // export: one folder with the trained tensors in each part; float32 answers exactly as the
  // training output does, float16 within rounding.
  const ask = async (m: string) => {
    const x = await MgLlava.load({ model: m });
    try {
      const r = await x.chat({ prompt: 'How many red circles are there?', image: { width: 90, height: 70, data: new Uint8Array(90 * 70 * 3).fill(120) }, generation: { maxNewTokens: 4, temperature: 0 } }).complete();
      return r.logprobs.map((l) => l.logprob);
    } finally {
      await x.release();
    }
  };
  const f32 = join(dir, 'export-f32');
  const f16 = join(dir, 'export-f16');
  const e32 = await mgllava(['export', '--model', out, '--out', f32]);
  assert.equal(e32.code, 0, e32.stderr);
  assert.equal((await mgllava(['export', '--model', out, '--out', f16, '--dtype', 'f16'])).code, 0);
  for (const part of ['clip', 'convnext', 'llm']) assert.ok(existsSync(join(f32, part)), part);
  assert.deepEqual(SafetensorsStore.open(join(f32, 'model.safetensors')).keys().filter((k) => /^(llm|visual_encoder)/.test(k)), []);
  const [a, b, c] = [await ask(out), await ask(f32), await ask(f16)];
  assert.deepEqual(b, a);
  c.forEach((x, i) => assert.ok(Math.abs(x - a[i]!) < 2e-2, `f16 logprob ${i}: ${x} vs ${a[i]}`));
  const again = await mgllava(['export', '--model', out, '--out', f32]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /already exists/);
});
