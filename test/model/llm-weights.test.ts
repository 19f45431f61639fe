// The checkpoint's `llm.*` tensors replace the base LLM's; keys the checkpoint lacks come from
// the base (a stage-1 checkpoint has no `llm.*` at all). XTuner LoRA checkpoints (adapters under
// llm.base_model.model.*) are merged into the base weights.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY } from '../helpers/fixtures.js';
import { mgllava, assertOneLineError } from '../helpers/cli.js';
import { openWeights } from '../../src/weights/open.js';
import { readBytes, readF32, TensorRef, WeightStore } from '../../src/weights/types.js';
import { safetensorsBytes } from '../../src/weights/write-safetensors.js';
import { llmWeights } from '../../src/model/llm-weights.js';
import { OrderedDictV, TorchTensorV, tempDir, torchSave } from '../weights/torch-builders.js';
import { assertInputError } from '../helpers/errors.js';

const base = openWeights(join(TINY, 'llm'));
const ckpt = openWeights(join(TINY, 'mgllava', 'iter_1.pth'));

test('llm.* of the checkpoint overrides the base LLM', () => {
  const llm = llmWeights(base, ckpt);
  assert.deepEqual(new Set(llm.keys()), new Set(base.keys()));
  let differing = 0;
  for (const k of base.keys()) {
    const got = readBytes(llm.get(k)!);
    assert.deepEqual(got, readBytes(ckpt.get(`llm.${k}`)!), k);
    if (Buffer.compare(Buffer.from(got), Buffer.from(readBytes(base.get(k)!))) !== 0) differing++;
  }
  assert.ok(differing > 0, 'the fine-tuned LLM differs from the base');
});

test('without llm.* in the checkpoint the base tensors are used', () => {
  const visionOnly: WeightStore = {
    path: 'stage1.pth',
    keys: () => ckpt.keys().filter((k) => !k.startsWith('llm.')),
    get: (k) => (k.startsWith('llm.') ? undefined : ckpt.get(k)),
  };
  const llm = llmWeights(base, visionOnly);
  for (const k of base.keys()) assert.deepEqual(readBytes(llm.get(k)!), readBytes(base.get(k)!), k);
});

// --- XTuner LoRA checkpoints: adapters merged as PEFT's merge_and_unload does ----------------

/** Deterministic values in [-0.5, 0.5). */
function values(n: number, seed: number): Float32Array {
  let x = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32 - 0.5;
  });
}

const f32Bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const refOf = (name: string, shape: number[], data: Float32Array): TensorRef => ({ name, dtype: 'F32', shape, source: { kind: 'memory', bytes: f32Bytes(data) } });

/** A store of F32 tensors held in memory, `path` as given. */
function memoryStore(path: string, tensors: Record<string, { shape: number[]; data: Float32Array }>): WeightStore {
  return {
    path,
    keys: () => Object.keys(tensors),
    get: (k) => (k in tensors ? refOf(k, tensors[k]!.shape, tensors[k]!.data) : undefined),
  };
}

const MODULES = ['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.k_proj', 'model.layers.1.mlp.down_proj'];

/** XTuner's LLaVA state_dict() for an LLM under llm_lora: only lora_A/B, adapter name kept. */
function xtunerLora(r: number, opts: { adapter?: string } = {}): Record<string, { shape: number[]; data: Float32Array }> {
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  const name = opts.adapter === undefined ? '.default' : opts.adapter ? `.${opts.adapter}` : '';
  MODULES.forEach((m, i) => {
    const [o, inDim] = base.get(`${m}.weight`)!.shape as [number, number];
    out[`llm.base_model.model.${m}.lora_A${name}.weight`] = { shape: [r, inDim], data: values(r * inDim, 11 + i) };
    out[`llm.base_model.model.${m}.lora_B${name}.weight`] = { shape: [o, r], data: values(o * r, 101 + i) };
  });
  return out;
}

/** W + (alpha / r) B A in float64 from the stores' values. */
function expectMerged(W: Float32Array, A: Float32Array, B: Float32Array, out: number, inDim: number, scale: number): Float64Array {
  const r = A.length / inDim;
  const m = Float64Array.from(W);
  for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) {
    let s = 0;
    for (let k = 0; k < r; k++) s += B[o * r + k]! * A[k * inDim + i]!;
    m[o * inDim + i] = m[o * inDim + i]! + scale * s;
  }
  return m;
}

function assertMerged(llm: WeightStore, ckpt: WeightStore, m: string, scale: number, W = readF32(base.get(`${m}.weight`)!), adapter = '.default'): void {
  const t = llm.get(`${m}.weight`)!;
  assert.equal(t.dtype, 'F32', m);
  assert.equal(t.source.kind, 'memory', m);
  const [o, inDim] = t.shape as [number, number];
  assert.deepEqual(t.shape, base.get(`${m}.weight`)!.shape);
  const A = readF32(ckpt.get(`llm.base_model.model.${m}.lora_A${adapter}.weight`)!);
  const B = readF32(ckpt.get(`llm.base_model.model.${m}.lora_B${adapter}.weight`)!);
  const want = expectMerged(W, A, B, o, inDim, scale);
  const got = readF32(t);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  assert.ok(worst < 1e-5, `${m}: max |merged - (W + s B A)| = ${worst}`);
  let moved = 0;
  for (let i = 0; i < want.length; i++) moved = Math.max(moved, Math.abs(got[i]! - W[i]!));
  assert.ok(moved > 1e-3, `${m}: the adapters change the weight`);
}

const NON_LLM = () => new OrderedDictV(FIXTURE.keys().filter((k) => !k.startsWith('llm.')).map((k) => {
  const r = FIXTURE.get(k)!;
  return [k, new TorchTensorV('BF16', r.shape, readBytes(r))] as const;
}), true);
const FIXTURE = openWeights(join(TINY, 'mgllava', 'model.safetensors'));

/** An xtuner iter_N.pth ({'state_dict': ..., meta}) with the projector tensors and LoRA adapters. */
function loraPth(dir: string, r: number, adapterConfig?: Record<string, unknown>): string {
  const lora = xtunerLora(r);
  const entries = [...NON_LLM().entries, ...Object.entries(lora).map(([k, v]) => [k, new TorchTensorV('F32', v.shape, f32Bytes(v.data))] as const)];
  const path = join(dir, 'iter_1.pth');
  writeFileSync(path, torchSave({ state_dict: new OrderedDictV(entries, true), meta: { iter: 1 } }, 'iter_1'));
  if (adapterConfig) writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(adapterConfig));
  return path;
}

test('xtuner LoRA iter_N.pth: lora_A/B.default merged into W + (alpha/r) B A under the plain keys; alpha from adapter_config.json', () => {
  const path = loraPth(tempDir(), 4, { peft_type: 'LORA', r: 4, lora_alpha: 8 });
  const ckpt = openWeights(path);
  const llm = llmWeights(base, ckpt);
  assert.deepEqual(new Set(llm.keys()), new Set(base.keys()), 'no base_model.model.* or lora_* keys');
  for (const m of MODULES) assertMerged(llm, ckpt, m, 8 / 4);
  for (const k of base.keys()) {
    if (MODULES.some((m) => k === `${m}.weight`)) continue;
    assert.deepEqual(readBytes(llm.get(k)!), readBytes(base.get(k)!), `${k} is the base's`);
  }
  // Computed once and kept while held.
  const first = llm.get(`${MODULES[0]}.weight`)!;
  assert.equal((llm.get(`${MODULES[0]}.weight`)!.source as { bytes: Uint8Array }).bytes, (first.source as { bytes: Uint8Array }).bytes);
  // The caller's lora_alpha (mgllava_config.json) wins over adapter_config.json.
  const llm2 = llmWeights(base, ckpt, 2);
  for (const m of MODULES) assertMerged(llm2, ckpt, m, 2 / 4);
});

test('xtuner LoRA without lora_alpha: one line naming the checkpoint; the caller\'s loraAlpha suffices', () => {
  const path = loraPth(tempDir(), 2);
  const ckpt = openWeights(path);
  const esc = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assertInputError(() => llmWeights(base, ckpt), new RegExp(`^${esc}: XTuner LoRA checkpoint .*lora_alpha is unknown.*"lora_alpha" in mgllava_config\\.json.*adapter_config\\.json`));
  const llm = llmWeights(base, ckpt, 16);
  for (const m of MODULES) assertMerged(llm, ckpt, m, 16 / 2);
  assertInputError(() => llmWeights(base, ckpt, 0), /lora_alpha must be a positive number/);
  const bad = tempDir();
  writeFileSync(join(bad, 'adapter_config.json'), '{"r": 2}');
  assertInputError(() => llmWeights(base, openWeights(loraPth(bad, 2))), /adapter_config\.json: "lora_alpha" must be a positive number/);
});

test('full PEFT state dicts: base_layer as W, modules_to_save, plain tensors under base_model.model; use_rslora; unnamed adapters', () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ lora_alpha: 6, use_rslora: true }));
  const tensors = xtunerLora(9);
  const ownW = values(16 * 16, 5);
  tensors[`llm.base_model.model.${MODULES[0]}.base_layer.weight`] = { shape: [16, 16], data: ownW };
  const head = base.get('lm_head.weight')!;
  const newHead = values(head.shape[0]! * head.shape[1]!, 6);
  tensors['llm.base_model.model.lm_head.modules_to_save.default.weight'] = { shape: [...head.shape], data: newHead };
  tensors['llm.base_model.model.lm_head.original_module.weight'] = { shape: [...head.shape], data: values(newHead.length, 7) };
  const norm = values(16, 8);
  tensors['llm.base_model.model.model.norm.weight'] = { shape: [16], data: norm };
  tensors['projector.model.0.weight'] = { shape: [2], data: values(2, 9) };
  writeFileSync(join(dir, 'merged.pth'), ''); // the checkpoint's path on disk, for adapter_config.json beside it
  const ckpt = memoryStore(join(dir, 'merged.pth'), tensors);
  const llm = llmWeights(base, ckpt);
  assert.deepEqual(new Set(llm.keys()), new Set(base.keys()));
  const scale = 6 / Math.sqrt(9);
  assertMerged(llm, ckpt, MODULES[0]!, scale, ownW);
  for (const m of MODULES.slice(1)) assertMerged(llm, ckpt, m, scale);
  assert.deepEqual(readF32(llm.get('lm_head.weight')!), newHead, 'modules_to_save copy replaces lm_head');
  assert.deepEqual(readF32(llm.get('model.norm.weight')!), norm);
  // PEFT's own adapter naming (no adapter name in the key), alpha from the caller.
  const unnamed = memoryStore('adapter-only', xtunerLora(3, { adapter: '' }));
  for (const m of MODULES) assertMerged(llmWeights(base, unnamed, 3), unnamed, m, 1, undefined, '');
});

test('malformed LoRA checkpoints give one-line InputErrors naming the checkpoint', () => {
  const without = (drop: string) => {
    const t = xtunerLora(2);
    delete t[drop];
    return memoryStore('ck.pth', t);
  };
  assertInputError(() => llmWeights(base, without(`llm.base_model.model.${MODULES[1]}.lora_B.default.weight`), 4), /^ck\.pth: LoRA module model\.layers\.1\.self_attn\.k_proj has lora_A but no lora_B$/);
  const wrong = xtunerLora(2);
  wrong[`llm.base_model.model.${MODULES[0]}.lora_A.default.weight`] = { shape: [2, 5], data: values(10, 1) };
  assertInputError(() => llmWeights(base, memoryStore('ck.pth', wrong), 4), /^ck\.pth: LoRA module model\.layers\.0\.self_attn\.q_proj: lora_A \[2, 5\], lora_B \[16, 2\] do not fit the weight \[16, 16\]/);
  const emb = { ...xtunerLora(2), 'llm.base_model.model.model.embed_tokens.lora_embedding_A.default': { shape: [2, 4], data: values(8, 1) } };
  assertInputError(() => llmWeights(base, memoryStore('ck.pth', emb), 4), /unsupported PEFT tensor .*lora_embedding_A/);
  const two = { ...xtunerLora(2), ...xtunerLora(2, { adapter: 'other' }) };
  assertInputError(() => llmWeights(base, memoryStore('ck.pth', two), 4), /several PEFT adapters \(default, other\)/);
  const nowhere = { 'llm.base_model.model.model.layers.9.mlp.up_proj.lora_A.default.weight': { shape: [1, 16], data: values(16, 1) }, 'llm.base_model.model.model.layers.9.mlp.up_proj.lora_B.default.weight': { shape: [48, 1], data: values(48, 2) } };
  assertInputError(() => llmWeights(base, memoryStore('ck.pth', nowhere), 4), /no model\.layers\.9\.mlp\.up_proj\.weight to merge into/);
});

/** A model folder for `mgllava chat --model`, with `files` in it. */
function modelFolder(files: Record<string, Uint8Array | string>): string {
  const model = tempDir();
  writeFileSync(join(model, 'mgllava_config.json'), JSON.stringify({
    llm: join(TINY, 'llm'), visual_encoder: join(TINY, 'clip'), visual_encoder_aux: join(TINY, 'convnext'),
    prompt_template: 'vicuna', visual_select_layer: -2, image_size_aux: 768, box_feat_size: 56, projector_depth: 2,
  }));
  for (const [n, b] of Object.entries(files)) writeFileSync(join(model, n), b);
  return model;
}

test('mgllava chat on an xtuner LoRA checkpoint gives the greedy ids of the same weights merged offline', async () => {
  const dir = tempDir();
  const loraPath = loraPth(dir, 4, { lora_alpha: 8 });
  const ckpt = openWeights(loraPath);
  const merged = llmWeights(base, ckpt);
  // The offline merge: the projector tensors plus llm.<module>.weight = the merged F32 weights.
  const plain = safetensorsBytes([
    ...FIXTURE.keys().filter((k) => !k.startsWith('llm.')).map((k) => ({ name: k, dtype: FIXTURE.get(k)!.dtype, shape: FIXTURE.get(k)!.shape, data: readBytes(FIXTURE.get(k)!) })),
    ...MODULES.map((m) => ({ name: `llm.${m}.weight`, dtype: 'F32' as const, shape: merged.get(`${m}.weight`)!.shape, data: readBytes(merged.get(`${m}.weight`)!) })),
  ]);
  const args = ['--image', join(TINY, 'example.jpg'), '--boxes', join(TINY, 'boxes_raw.json'),
    '--max-new-tokens', '4', '--temperature', '0', '--json', 'What is shown in this image?'];
  const pth = readFileSync(loraPath);
  const ids = (r: { stdout: string }) => (JSON.parse(r.stdout) as { ids: number[] }).ids;
  const offline = await mgllava(['chat', '--model', modelFolder({ 'model.safetensors': plain }), ...args]);
  assert.equal(offline.code, 0, offline.stderr);
  const lora = await mgllava(['chat', '--model', modelFolder({ 'iter_1.pth': pth, 'adapter_config.json': JSON.stringify({ lora_alpha: 8 }) }), ...args]);
  assert.equal(lora.code, 0, lora.stderr);
  assert.equal(ids(offline).length, 4);
  assert.deepEqual(ids(lora), ids(offline));
  const noAlpha = await mgllava(['chat', '--model', modelFolder({ 'iter_1.pth': pth }), ...args]);
  assertOneLineError(noAlpha, /iter_1\.pth: XTuner LoRA checkpoint .*lora_alpha is unknown/);
});
