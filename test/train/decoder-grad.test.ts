// A whole decoder layer of the training decoder (src/model/llm/train-decoder.ts) differentiated
// by src/graph/autodiff.ts, against central finite differences: every weight of a 1-layer
// LLaMA with grouped-query attention and biases, and of a Phi-3 layer with fused projections
// and partial rotary, and the input embeddings, on random values.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { appendBackward } from '../../src/graph/autodiff.js';
import { Session, Feed } from '../../src/runtime/session.js';
import { TrainableInputs } from '../../src/model/params.js';
import { trainDecoder } from '../../src/model/llm/train-decoder.js';
import { LlmConfig } from '../../src/model/llm/config.js';
import { MemoryStore } from '../../src/train/lora.js';
import { seededRandom } from '../../src/generate/sampling.js';

function config(arch: 'llama' | 'phi3'): LlmConfig {
  return {
    arch, hiddenSize: 8, layers: 1, heads: 2, kvHeads: arch === 'llama' ? 1 : 2, headDim: 4, intermediateSize: 12, rmsEps: 1e-5,
    // Phi-3 with partial rotary (2 of 4 dims per head), LLaMA with full rotary.
    ropeTheta: 10000, rotaryDim: arch === 'llama' ? 4 : 2, maxPositions: 64, vocabSize: 11, eosTokenIds: [2],
    tieWordEmbeddings: false, attentionBias: arch === 'llama', mlpBias: false,
  };
}

function weights(c: LlmConfig, rand: () => number): Map<string, { shape: number[]; data: Float32Array }> {
  const H = c.hiddenSize;
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const I = c.intermediateSize;
  const p = 'model.layers.0.';
  const shapes: Record<string, number[]> = {
    [`${p}input_layernorm.weight`]: [H], [`${p}post_attention_layernorm.weight`]: [H], 'model.norm.weight': [H],
    'model.embed_tokens.weight': [c.vocabSize, H], 'lm_head.weight': [c.vocabSize, H],
    [`${p}self_attn.o_proj.weight`]: [H, q], [`${p}mlp.down_proj.weight`]: [H, I],
    ...(c.arch === 'llama'
      ? {
        [`${p}self_attn.q_proj.weight`]: [q, H], [`${p}self_attn.k_proj.weight`]: [kv, H], [`${p}self_attn.v_proj.weight`]: [kv, H],
        [`${p}self_attn.q_proj.bias`]: [q], [`${p}self_attn.k_proj.bias`]: [kv], [`${p}self_attn.v_proj.bias`]: [kv], [`${p}self_attn.o_proj.bias`]: [H],
        [`${p}mlp.gate_proj.weight`]: [I, H], [`${p}mlp.up_proj.weight`]: [I, H],
      }
      : { [`${p}self_attn.qkv_proj.weight`]: [q + 2 * kv, H], [`${p}mlp.gate_up_proj.weight`]: [2 * I, H] }),
  };
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const norm = k.endsWith('layernorm.weight') || k === 'model.norm.weight';
    out.set(k, { shape, data: Float32Array.from({ length: n }, () => (norm ? 0.5 + rand() : (2 * rand() - 1) * 0.6)) });
  }
  return out;
}

async function checkLayer(arch: 'llama' | 'phi3'): Promise<number> {
  const rand = seededRandom(arch === 'llama' ? 3 : 4);
  const c = config(arch);
  const w = weights(c, rand);
  const g = new Graph(`decoder_grad_${arch}`);
  const T = 5;
  const embeds = g.input('embeds', 'F32', [2, T, c.hiddenSize]);
  const all = new TrainableInputs(g, () => true);
  const logits = trainDecoder(g, new MemoryStore('random', w), c, embeds, { trainable: all });
  const R = g.constF32(Float32Array.from({ length: 2 * T * c.vocabSize }, () => 2 * rand() - 1), [2, T, c.vocabSize]);
  const loss = g.op1('ReduceSum', [g.op1('Mul', [logits, R])], { keepdims: 0 });
  g.output(loss, 'loss', 'F32', []);
  const params = all.list();
  appendBackward(g, loss, [embeds, ...params.map((t) => t.value)]);
  const s = await Session.fromGraph(g);
  const feeds: Record<string, Feed> = { embeds: { dims: [2, T, c.hiddenSize], data: Float32Array.from({ length: 2 * T * c.hiddenSize }, () => 2 * rand() - 1) } };
  for (const t of params) feeds[t.name] = { dims: t.shape, data: w.get(t.key)!.data };
  const base = await s.run(feeds);
  let worst = 0;
  const eps = 1e-3;
  for (const name of ['embeds', ...params.map((t) => t.name)]) {
    const x = feeds[name]!.data as Float32Array;
    const grad = base[`grad.${name}`]!.data;
    for (let d = 0; d < 2; d++) {
      const v = Float32Array.from(x, () => 2 * rand() - 1);
      const at = async (sign: number) => (await s.run({ ...feeds, [name]: { dims: feeds[name]!.dims, data: Float32Array.from(x, (xv, k) => xv + sign * eps * v[k]!) } }, ['loss'])).loss!.data[0]!;
      const fd = ((await at(1)) - (await at(-1))) / (2 * eps);
      let an = 0;
      let scale = 0;
      for (let k = 0; k < x.length; k++) {
        an += grad[k]! * v[k]!;
        scale += Math.abs(grad[k]! * v[k]!);
      }
      const err = Math.abs(fd - an) / Math.max(Math.abs(an), scale * 1e-2, 1e-6);
      worst = Math.max(worst, err);
      assert.ok(err < 2e-2, `${arch} d/d${name}: analytic ${an}, finite differences ${fd}`);
    }
  }
  await s.release();
  return worst;
}

test('a LLaMA decoder layer (GQA 2:1, rotary, biases): every weight and the embeddings', async () => {
  await checkLayer('llama');
});

test('a Phi-3 decoder layer (fused qkv and gate_up, partial rotary): every weight and the embeddings', async () => {
  await checkLayer('phi3');
});
