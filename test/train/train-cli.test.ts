// `mgllava train` as a user runs it: fixture case D through the CLI with a pre-tokenized sample
// (first-step gradients, loss, one AdamW step), stage 1 then stage 2 overfitting 20 samples until
// `mgllava chat` gives back training answers, LoRA, resume equivalence, a killed run, bad data.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TINY, casesJson, fixture, relErr } from '../helpers/fixtures.js';
import { CLI, assertOneLineError, mgllava } from '../helpers/cli.js';
import { openWeights } from '../../src/weights/open.js';
import { readF32 } from '../../src/weights/types.js';
import { readCheckpoint } from '../../src/train/checkpoint.js';
import { encoderStores } from '../../src/model/load-vision.js';

let dir: string;
const boxes = JSON.parse(readFileSync(join(TINY, 'boxes_raw.json'), 'utf8')) as Record<string, unknown>;
const write = (name: string, v: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(v));
  return p;
};
const tensors = (path: string) => {
  const s = openWeights(path);
  return new Map(s.keys().map((k) => [k, readF32(s.get(k)!)]));
};
const losses = (stdout: string) => stdout.trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'mgllava-train-'));
  copyFileSync(join(TINY, 'example.jpg'), join(dir, 'example.jpg'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Case D as XTuner's processed datasets hold it: -200 at the image, labels on the answer. */
function caseDData(): { data: string; boxes: string } {
  const c = casesJson();
  const answer = c['D.answer_ids'] as number[];
  const ids = [...(c['C.ids_before_image'] as number[]), -200, ...(c['C.ids_after_image'] as number[]), ...answer];
  const labels = ids.map((id, i) => (i >= ids.length - answer.length ? id : -100));
  return {
    data: write('d.json', [{ id: 'D', image: 'example.jpg', input_ids: ids, labels }]),
    boxes: write('d-boxes.json', [{ id: 'D', ...boxes }]),
  };
}

test('case D1 through the CLI: loss, first-step gradients, one AdamW step', async () => {
  const d = caseDData();
  const grads = join(dir, 'd1-grads.safetensors');
  const out = join(dir, 'd1');
  const r = await mgllava(['train', '--stage', '1', '--data', d.data, '--boxes', d.boxes, '--out', out, '--max-steps', '1',
    '--max-grad-norm', '0', '--save-first-grads', grads, '--json', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const [loss] = losses(r.stdout);
  const ref = fixture('D1.loss').data[0]!;
  assert.ok(Math.abs(loss! - ref) / ref < 1e-5, `loss ${loss} vs ${ref}`);
  const g = tensors(grads);
  assert.equal(g.size, 20);
  for (const [name, v] of g) assert.ok(relErr(v, fixture(`D1.grad.${name}`).data) < 1e-3, name);
  // One step at lr 1e-3 (a 1-step run has no warm-up; its cosine starts at the base lr).
  const w = tensors(join(out, 'model.safetensors'));
  for (const name of [...g.keys()].filter((n) => n.startsWith('fuse_module.'))) {
    const e = relErr(w.get(name)!, fixture(`D1.after_adamw.${name}`).data);
    assert.ok(e < 1e-3, `after AdamW ${name}: ${e}`);
  }
});

test('case D2 through the CLI: stage-2 gradients of the LLM', async () => {
  const d = caseDData();
  const grads = join(dir, 'd2-grads.safetensors');
  const r = await mgllava(['train', '--stage', '2', '--data', d.data, '--boxes', d.boxes, '--out', join(dir, 'd2'), '--max-steps', '1',
    '--save-first-grads', grads, '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const g = tensors(grads);
  for (const name of ['llm.model.layers.0.input_layernorm.weight', 'llm.model.layers.0.mlp.down_proj.weight', 'llm.model.layers.1.self_attn.q_proj.weight', 'llm.model.norm.weight', 'projector.model.0.weight']) {
    assert.ok(relErr(g.get(name)!, fixture(`D2.grad.${name}`).data) < 1e-3, name);
  }
});

// 16 text-only samples and 4 about the image: distinct answers to memorise.
const COLORS = ['red', 'blue', 'green', 'yellow', 'black', 'white', 'pink', 'brown'];
const THINGS = ['cup', 'dog', 'cat', 'table', 'window', 'person', 'chair', 'book'];
const IMAGE_QA: [string, string][] = [
  ['Describe the image.', 'A cat sits by a window.'],
  ['What is on the table?', 'Two cups and a plate.'],
  ['Is there a dog?', 'No, there is no dog.'],
  ['What time of day is it?', 'It is morning.'],
];
function overfitData(): { data: string; boxes: string; images: string } {
  const text = THINGS.flatMap((t, i) => [
    { id: `c${i}`, conversations: [{ from: 'human', value: `What color is the ${t}?` }, { from: 'gpt', value: `The ${t} is ${COLORS[i]}.` }] },
    { id: `n${i}`, conversations: [{ from: 'human', value: `How many ${t}s are there?` }, { from: 'gpt', value: `There are ${i + 2} ${t}s.` }] },
  ]);
  const image = IMAGE_QA.map(([q, a], i) => ({ id: 100 + i, image: 'example.jpg', conversations: [{ from: 'human', value: `<image>\n${q}` }, { from: 'gpt', value: a }] }));
  return {
    data: write('overfit.json', [...text, ...image]),
    images: write('captions.json', image),
    boxes: write('overfit-boxes.json', image.map((s) => ({ id: s.id, ...boxes }))),
  };
}

test('stage 1 then stage 2 overfit 20 samples; chat gives back training answers', async () => {
  const d = overfitData();
  const s1 = join(dir, 'stage1');
  const r1 = await mgllava(['train', '--stage', '1', '--data', d.images, '--boxes', d.boxes, '--out', s1, '--epochs', '4', '--batch-size', '2', '--lr', '1e-2', '--json', '--quiet']);
  assert.equal(r1.code, 0, r1.stderr);
  const l1 = losses(r1.stdout);
  assert.equal(l1.length, 8);
  assert.ok(l1.at(-1)! < l1[0]!, `stage 1: ${l1.join(' ')}`);

  const s2 = join(dir, 'stage2');
  const r2 = await mgllava(['train', '--stage', '2', '--model', s1, '--data', d.data, '--boxes', d.boxes, '--out', s2, '--epochs', '50', '--batch-size', '5', '--lr', '1e-2', '--json', '--quiet']);
  assert.equal(r2.code, 0, r2.stderr);
  const l2 = losses(r2.stdout);
  const last = l2.slice(-20).reduce((a, b) => a + b, 0) / 20;
  assert.ok(l2[0]! > 8 && last < 0.25, `stage 2 loss from ${l2[0]} to ${last} (mean of the last 20 iterations)`);

  const ask = async (q: string, image = false) => {
    const r = await mgllava(['chat', '--model', s2, '--no-system', '--temperature', '0', '--max-new-tokens', '16', '--quiet',
      ...(image ? ['--image', join(dir, 'example.jpg'), '--boxes', join(TINY, 'boxes_raw.json')] : []), q]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  assert.equal(await ask('What color is the dog?'), 'The dog is blue.');
  assert.equal(await ask('Describe the image.', true), 'A cat sits by a window.');
  assert.equal(await ask('Is there a dog?', true), 'No, there is no dog.');
});

test('LoRA: the adapters train, merge into llm.* for chat, and are saved on their own', async () => {
  const d = overfitData();
  const out = join(dir, 'lora');
  const r = await mgllava(['train', '--stage', '2', '--lora', '4', '--lora-alpha', '8', '--data', d.data, '--boxes', d.boxes, '--out', out,
    '--max-steps', '6', '--batch-size', '4', '--lr', '1e-2', '--json', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')) as { r: number; lora_alpha: number; target_modules: string[] };
  assert.deepEqual([cfg.r, cfg.lora_alpha], [4, 8]);
  assert.deepEqual(cfg.target_modules, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
  const adapter = tensors(join(out, 'adapter_model.safetensors'));
  assert.equal(adapter.size, 2 * 7 * 2); // A and B for 7 linears in 2 layers
  // The merged weight is W + (alpha / r) B A, W the frozen (checkpoint's fine-tuned) weight.
  const m = 'model.layers.1.self_attn.q_proj';
  const A = adapter.get(`base_model.model.${m}.lora_A.weight`)!;
  const B = adapter.get(`base_model.model.${m}.lora_B.weight`)!;
  assert.ok(B.some((x) => x !== 0), 'B moved from its zero start');
  const W0 = tensors(join(TINY, 'mgllava', 'model.safetensors')).get(`llm.${m}.weight`)!;
  const W = tensors(join(out, 'model.safetensors')).get(`llm.${m}.weight`)!;
  let worst = 0;
  for (let o = 0; o < 16; o++) {
    for (let i = 0; i < 16; i++) {
      let ba = 0;
      for (let k = 0; k < 4; k++) ba += B[o * 4 + k]! * A[k * 16 + i]!;
      worst = Math.max(worst, Math.abs(W[o * 16 + i]! - (W0[o * 16 + i]! + 2 * ba)));
    }
  }
  assert.ok(worst < 1e-6, `merged weight off by ${worst}`);
  // The embeddings and norms did not learn (the LLM itself is frozen).
  const before = tensors(join(TINY, 'mgllava', 'model.safetensors'));
  const trained = tensors(join(out, 'model.safetensors'));
  for (const k of ['llm.model.embed_tokens.weight', 'llm.model.norm.weight', 'llm.model.layers.0.input_layernorm.weight']) assert.deepEqual(trained.get(k), before.get(k), k);
  const c = await mgllava(['chat', '--model', out, '--no-system', '--temperature', '0', '--max-new-tokens', '4', '--quiet', 'What color is the dog?']);
  assert.equal(c.code, 0, c.stderr);
});

test('resume: 2 iterations then 2 more from the checkpoint equal 4 in one run', async () => {
  const d = overfitData();
  const common = ['train', '--stage', '2', '--data', d.data, '--boxes', d.boxes, '--batch-size', '3', '--lr', '5e-3', '--lr-schedule', 'constant', '--warmup-ratio', '0', '--quiet'];
  const whole = join(dir, 'whole');
  const half = join(dir, 'half');
  assert.equal((await mgllava([...common, '--out', whole, '--max-steps', '4'])).code, 0);
  assert.equal((await mgllava([...common, '--out', half, '--max-steps', '2'])).code, 0);
  const r = await mgllava([...common, '--out', half, '--max-steps', '4', '--resume', half]);
  assert.equal(r.code, 0, r.stderr);
  const a = tensors(join(whole, 'model.safetensors'));
  const b = tensors(join(half, 'model.safetensors'));
  for (const [name, v] of a) assert.deepEqual(b.get(name), v, name);
  const oa = tensors(join(whole, 'optimizer.safetensors'));
  const ob = tensors(join(half, 'optimizer.safetensors'));
  for (const [name, v] of oa) assert.deepEqual(ob.get(name), v, name);
  // Other settings than the checkpoint's are refused.
  assertOneLineError(await mgllava([...common.map((x) => (x === '5e-3' ? '1e-3' : x)), '--out', half, '--max-steps', '6', '--resume', half]), /trained with other settings \(lr\)/);
});

test('a run killed while it saves leaves the last complete checkpoint and no partial one', async () => {
  const d = overfitData();
  const out = join(dir, 'killed');
  const child = spawn(process.execPath, [CLI, 'train', '--stage', '2', '--data', d.data, '--boxes', d.boxes, '--out', out, '--max-steps', '400',
    '--save-every', '1', '--json', '--quiet'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // The CLI would re-run itself under tuned malloc settings; SIGKILL must reach the trainer itself.
    env: { ...process.env, MGLLAVA_MALLOC_TUNED: '1' },
  });
  let lines = 0;
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (b: Buffer) => {
      lines += b.toString().split('\n').length - 1;
      if (lines >= 6) child.kill('SIGKILL');
    });
    child.on('exit', () => resolve());
  });
  const ck = readCheckpoint(out); // recovers an interrupted write, then reads
  const it = (ck.trainerState as { iteration: number }).iteration;
  assert.ok(it >= 5 && it < 400, `checkpoint at iteration ${it}`);
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.killed')), []);
});

test('bad data: one line naming the sample, or a counted skip where the release skips', async () => {
  const img = (id: string | number, extra: Record<string, unknown> = {}) => ({ id, image: 'example.jpg', conversations: [{ from: 'human', value: '<image>\nQ?' }, { from: 'gpt', value: 'A.' }], ...extra });
  const run = (data: unknown, boxFile: unknown = [{ id: 1, ...boxes }]) =>
    mgllava(['train', '--stage', '1', '--data', write('bad.json', data), '--boxes', write('bad-boxes.json', boxFile), '--out', join(dir, 'bad'), '--max-steps', '1']);
  assertOneLineError(await run([img(1, { image: 'missing.jpg' })]), /bad\.json: sample 1: image not found: .*missing\.jpg/);
  assertOneLineError(await run([img(1)], [{ id: 1, boxes: [[1, 2, 3]], labels: ['cat'], scores: [0.5] }]), /sample 1/);
  assertOneLineError(await run([img(1, { conversations: [{ from: 'robot', value: 'x' }] })]), /sample 1: .*robot/);
  assertOneLineError(await run([img(1, { conversations: 'hello' })]), /sample 1/);
  const skipped = await run([img(1), img(2, { conversations: [{ from: 'human', value: '<image>\nQ?' }] })], [{ id: 1, ...boxes }, { id: 2, ...boxes }]);
  assert.equal(skipped.code, 0, skipped.stderr);
  assert.match(skipped.stderr, /skipped 1 sample: /);
  assert.ok(!existsSync(join(dir, 'bad-never')));
  assertOneLineError(await mgllava(['train', '--stage', '3', '--data', 'x.json', '--out', 'y']), /--stage/);
  assertOneLineError(await mgllava(['train', '--stage', '1', '--data', write('ok.json', [img(1)]), '--boxes', write('ok-boxes.json', [{ id: 1, ...boxes }]), '--out', TINY]),
    /exists and is not a training output folder/);
  assertOneLineError(await mgllava(['train', '--stage', '1', '--data', join(dir, 'nope.json'), '--out', join(dir, 'n')]), /nope\.json/);
});

test('--export-xtuner writes the release job for the same data and settings instead of training', async () => {
  const d = overfitData();
  const out = join(dir, 'xtuner');
  const r = await mgllava(['train', '--stage', '2', '--checkpoint', join(TINY, 'mgllava', 'iter_1.pth'), '--llm', join(TINY, 'llm'),
    '--visual-encoder', join(TINY, 'clip'), '--visual-encoder-aux', join(TINY, 'convnext'),
    '--data', d.data, '--boxes', d.boxes, '--out', join(dir, 'unused'), '--export-xtuner', out, '--batch-size', '8', '--lr', '3e-5']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /xtuner train .*_sft_padding\.py --deepspeed deepspeed_zero2/);
  const config = readFileSync(join(out, 'fuse_more_mgllava_clip_L_14_336_sft_padding.py'), 'utf8');
  assert.match(config, /^lr = 3e-05$|^lr = 0\.00003$/m);
  assert.match(config, /^batch_size = 8\b/m);
  assert.match(config, /pretrained_pth = '.*iter_1\.pth'/);
  assert.equal(existsSync(join(dir, 'unused')), false, 'nothing trained');
  assert.equal((JSON.parse(readFileSync(join(out, 'data.json'), 'utf8')) as unknown[]).length, 20);

  // From our own stage-1 output (safetensors): written beside as the torch file XTuner loads.
  const ours = join(dir, 'xtuner-from-ours');
  const r2 = await mgllava(['train', '--stage', '2', '--model', join(dir, 'd1'), '--data', d.data, '--boxes', d.boxes, '--out', join(dir, 'unused'), '--export-xtuner', ours]);
  assert.equal(r2.code, 0, r2.stderr);
  const pth = `${ours}.pretrained.pth`;
  assert.match(readFileSync(join(ours, 'fuse_more_mgllava_clip_L_14_336_sft_padding.py'), 'utf8'), new RegExp(`pretrained_pth = '${pth.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`));
  const back = tensors(pth);
  const src = tensors(join(dir, 'd1', 'model.safetensors'));
  assert.equal(back.size, src.size);
  for (const [k, v] of src) assert.deepEqual(back.get(k), v, k);
});

test('stage 1 over an 8-bit quantized LLM: gradients flow through the frozen MatMulNBits weights', async () => {
  const d = caseDData();
  const q8 = join(dir, 'llm-q8');
  const q = await mgllava(['quantize', '--llm', join(TINY, 'llm'), '--checkpoint', join(TINY, 'mgllava', 'iter_1.pth'), '--out', q8, '--bits', '8', '--quiet']);
  assert.equal(q.code, 0, q.stderr);
  const grads = join(dir, 'q8-grads.safetensors');
  const r = await mgllava(['train', '--stage', '1', '--model', join(TINY, 'mgllava'), '--llm', q8, '--data', d.data, '--boxes', d.boxes,
    '--out', join(dir, 'q8-out'), '--max-steps', '1', '--save-first-grads', grads, '--json', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const [loss] = losses(r.stdout);
  assert.ok(Math.abs(loss! - fixture('D1.loss').data[0]!) < 0.01, `loss ${loss}`);
  // 8-bit weights (and int8 activations in the forward MatMulNBits): close to the float gradients, not equal.
  for (const [name, v] of tensors(grads)) {
    const e = relErr(v, fixture(`D1.grad.${name}`).data);
    assert.ok(e < 0.1, `${name}: ${e}`);
  }
  assertOneLineError(await mgllava(['train', '--stage', '2', '--model', join(TINY, 'mgllava'), '--llm', q8, '--data', d.data, '--out', join(dir, 'q8-s2')]),
    /quantized LLM cannot learn in stage 2/);
});

test('--trainable vision encoder tensors: they learn, are saved as visual_encoder*.*, and the vision loader reads them', async () => {
  const d = overfitData();
  const out = join(dir, 'encoders');
  const r = await mgllava(['train', '--stage', '1', '--data', d.images, '--boxes', d.boxes, '--out', out, '--max-steps', '2', '--lr', '1e-2',
    '--trainable', 'visual_encoder_aux.visual.trunk.stem*,visual_encoder.vision_model.encoder.layers.0.mlp*', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const saved = tensors(join(out, 'model.safetensors'));
  const stem = saved.get('visual_encoder_aux.visual.trunk.stem.0.weight')!;
  const base = tensors(join(TINY, 'convnext', 'open_clip_model.safetensors')).get('visual.trunk.stem.0.weight')!;
  assert.ok(stem.some((x, i) => x !== base[i]), 'the stem moved');
  assert.ok(saved.has('visual_encoder.vision_model.encoder.layers.0.mlp.fc1.weight'));
  const cfg = JSON.parse(readFileSync(join(out, 'mgllava_config.json'), 'utf8')) as { trained: { frozen: string[] } };
  assert.deepEqual(cfg.trained.frozen, ['llm']);
  // chat and encode build the encoders from these stores (model/load-vision.ts).
  const stores = encoderStores(openWeights(join(TINY, 'clip')), openWeights(join(TINY, 'convnext')), openWeights(join(out, 'model.safetensors')));
  assert.deepEqual(readF32(stores.convnext.get('visual.trunk.stem.0.weight')!), stem);
  const e = await mgllava(['encode', '--model', out, '--image', join(dir, 'example.jpg'), '--out', join(dir, 'enc.safetensors'), '--quiet']);
  assert.equal(e.code, 0, e.stderr);
  // A tensor past the selected CLIP layer is in no graph: refused, not silently frozen.
  assertOneLineError(await mgllava(['train', '--stage', '1', '--data', d.images, '--boxes', d.boxes, '--out', join(dir, 'nomatch'), '--trainable', 'visual_encoder.vision_model.post_layernorm*', '--quiet']),
    /--trainable visual_encoder\.vision_model\.post_layernorm\*: matches no tensor/);
});

test('--feature-cache: the frozen encoders\' outputs are kept on disk and read back; a damaged entry is computed again', async () => {
  const d = overfitData();
  const cache = join(dir, 'features');
  const run = async () => {
    const r = await mgllava(['train', '--stage', '1', '--data', d.images, '--boxes', d.boxes, '--out', join(dir, 'fc-out'), '--max-steps', '1', '--batch-size', '4', '--feature-cache', cache, '--json', '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    return losses(r.stdout)[0]!;
  };
  const first = await run();
  const [sub] = readdirSync(cache);
  const files = readdirSync(join(cache, sub!));
  assert.equal(files.length, 1, 'one entry: the four samples share the image and its boxes');
  assert.equal(await run(), first);
  writeFileSync(join(cache, sub!, files[0]!), 'damaged');
  assert.equal(await run(), first);
  assert.ok(tensors(join(cache, sub!, files[0]!)).has('low_res_feat'), 'rewritten');
});
