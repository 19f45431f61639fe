// config.json parsing for the LLaMA family and Phi-3, in the transformers 5 spelling
// (rope_parameters) and the older one (top-level rope_theta / rope_scaling).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { TINY } from '../helpers/fixtures.js';
import { parseLlmConfig } from '../../src/model/llm/config.js';
import { InputError } from '../../src/core/errors.js';

const read = (dir: string) => JSON.parse(readFileSync(join(TINY, dir, 'config.json'), 'utf8')) as Record<string, unknown>;

// microsoft/Phi-3-mini-4k-instruct's config.json (the fields that matter).
const PHI3_MINI_4K = {
  architectures: ['Phi3ForCausalLM'], attention_dropout: 0.0, bos_token_id: 1, embd_pdrop: 0.0, eos_token_id: 32000,
  hidden_act: 'silu', hidden_size: 3072, initializer_range: 0.02, intermediate_size: 8192, max_position_embeddings: 4096,
  model_type: 'phi3', num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 32,
  original_max_position_embeddings: 4096, pad_token_id: 32000, resid_pdrop: 0.0, rms_norm_eps: 1e-5, rope_scaling: null,
  rope_theta: 10000.0, sliding_window: 2047, tie_word_embeddings: false, torch_dtype: 'bfloat16', vocab_size: 32064,
};

// lmsys/vicuna-7b-v1.5 (no rope_theta: the default 10000).
const VICUNA_7B = {
  architectures: ['LlamaForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096,
  initializer_range: 0.02, intermediate_size: 11008, max_position_embeddings: 4096, model_type: 'llama',
  num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 32, pad_token_id: 0, pretraining_tp: 1,
  rms_norm_eps: 1e-5, rope_scaling: null, tie_word_embeddings: false, torch_dtype: 'float16', vocab_size: 32000,
};

test('tiny llm (transformers 5, GQA 2:1, explicit head_dim)', () => {
  const c = parseLlmConfig(read('llm'), 'llm/config.json');
  assert.deepEqual(c, {
    arch: 'llama', hiddenSize: 16, layers: 2, heads: 2, kvHeads: 1, headDim: 8, intermediateSize: 48, rmsEps: 1e-5,
    ropeTheta: 10000, rotaryDim: 8, maxPositions: 2048, vocabSize: 32000, bosTokenId: 1, eosTokenIds: [2],
    tieWordEmbeddings: false, attentionBias: false, mlpBias: false, slidingWindow: undefined,
  });
});

test('llama3arch: rope theta 500000 from rope_parameters', () => {
  const c = parseLlmConfig(read('llama3arch'), 'x');
  assert.equal(c.ropeTheta, 500000);
  assert.equal(c.kvHeads, 1);
  assert.equal(c.heads, 4);
});

test('tiny phi3: partial_rotary_factor under rope_parameters, head_dim from hidden/heads', () => {
  const c = parseLlmConfig(read('phi3'), 'x');
  assert.equal(c.arch, 'phi3');
  assert.equal(c.headDim, 8);
  assert.equal(c.rotaryDim, 8);
  assert.equal(c.slidingWindow, undefined);
  assert.deepEqual(c.eosTokenIds, [32000]);
});

test('released Phi-3-mini-4k config: rope_scaling null, sliding window 2047', () => {
  const c = parseLlmConfig(PHI3_MINI_4K, 'phi3/config.json');
  assert.equal(c.ropeTheta, 10000);
  assert.equal(c.headDim, 96);
  assert.equal(c.rotaryDim, 96);
  assert.equal(c.slidingWindow, 2047);
  assert.equal(c.maxPositions, 4096);
});

test('older LLaMA configs: top-level rope_theta, default theta, eos list, partial rotary', () => {
  const v = parseLlmConfig(VICUNA_7B, 'x');
  assert.equal(v.ropeTheta, 10000);
  assert.equal(v.headDim, 128);
  assert.equal(v.kvHeads, 32);
  const l3 = parseLlmConfig({ ...VICUNA_7B, rope_theta: 500000, eos_token_id: [128001, 128009], num_key_value_heads: 8 }, 'x');
  assert.equal(l3.ropeTheta, 500000);
  assert.deepEqual(l3.eosTokenIds, [128001, 128009]);
  assert.equal(l3.kvHeads, 8);
  const partial = parseLlmConfig({ ...PHI3_MINI_4K, partial_rotary_factor: 0.5 }, 'x');
  assert.equal(partial.rotaryDim, 48);
  const tied = parseLlmConfig({ ...VICUNA_7B, tie_word_embeddings: true }, 'x');
  assert.equal(tied.tieWordEmbeddings, true);
});

test('rope scaling types other than the default are refused, naming the type and the file', () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ ...VICUNA_7B, rope_scaling: { type: 'linear', factor: 2 } }, 'linear'],
    [{ ...VICUNA_7B, rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'llama3'],
    [{ ...PHI3_MINI_4K, rope_scaling: { type: 'longrope', short_factor: [], long_factor: [] } }, 'longrope'],
    [{ ...read('llm'), rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 4 } }, 'yarn'],
  ];
  for (const [json, type] of cases) {
    assert.throws(() => parseLlmConfig(json, '/models/x/config.json'), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.match(e.message, new RegExp(`'${type}'`));
      assert.match(e.message, /not implemented/);
      assert.match(e.message, /\/models\/x\/config\.json/);
      return true;
    });
  }
});

test('unsupported model types and activations are refused', () => {
  assert.throws(() => parseLlmConfig({ ...VICUNA_7B, model_type: 'mistral' }, 'c.json'), /model_type 'mistral' is not supported/);
  assert.throws(() => parseLlmConfig({ ...VICUNA_7B, hidden_act: 'gelu' }, 'c.json'), /hidden_act 'gelu' is not implemented/);
  assert.throws(() => parseLlmConfig({ ...VICUNA_7B, num_key_value_heads: 5 }, 'c.json'), /not a multiple/);
  const { hidden_size: _drop, ...noHidden } = VICUNA_7B;
  assert.throws(() => parseLlmConfig(noHidden, 'c.json'), /c\.json: lacks a numeric hidden_size/);
});
