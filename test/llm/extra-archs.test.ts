// E.phi3 and E.llama3arch of the reference fixtures: logits of the Phi-3 and LLaMA-3-shaped tiny
// models (bf16 weights, upcast), through one prefill run.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TINY, fixture, fixtureI64, relErr, wave } from '../helpers/fixtures.js';
import { CausalLM } from '../../src/model/llm/causal-lm.js';
import { readFileSync } from 'node:fs';

const TOL = 1e-4;

function argmaxRows(data: Float32Array, rows: number, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let j = 1; j < cols; j++) if (data[r * cols + j]! > data[r * cols + best]!) best = j;
    out.push(best);
  }
  return out;
}

test('E.phi3: logits for inputs_embeds (fused qkv_proj / gate_up_proj)', async (t) => {
  const lm = await CausalLM.load(join(TINY, 'phi3'));
  try {
    const ref = fixture('E.phi3.inputs_embeds');
    const mine = Float32Array.from(wave(1, 1, 37, 16, 0.25), (v) => Math.fround(0.5 * v));
    t.diagnostic(`inputs_embeds vs wave: ${relErr(mine, ref.data).toExponential(2)}`);
    const all = await lm.forward({ dims: [37, 16], data: ref.data }, lm.newCache(), { allLogits: true });
    assert.deepEqual(all.dims, [37, 32064]);
    assert.deepEqual(argmaxRows(all.data, 37, 32064), fixtureI64('E.phi3.argmax'));
    const last = await lm.forward({ dims: [37, 16], data: ref.data }, lm.newCache());
    assert.deepEqual(last.dims, [1, 32064]);
    const e = relErr(last.data, fixture('E.phi3.logits_last').data);
    t.diagnostic(`E.phi3 logits_last: relative error ${e.toExponential(2)}`);
    assert.ok(e < TOL, `relative error ${e}`);
  } finally {
    await lm.release();
  }
});

test('E.llama3arch: logits for input_ids (GQA 4:1, rope theta 500000)', async (t) => {
  const lm = await CausalLM.load(join(TINY, 'llama3arch'));
  try {
    const extra = JSON.parse(readFileSync(join(TINY, 'extra_cases.json'), 'utf8')) as Record<string, unknown>;
    const ids = extra['E.llama3arch.input_ids'] as number[];
    const logits = await lm.forward(await lm.embed(ids), lm.newCache(), { allLogits: true });
    const ref = fixture('E.llama3arch.logits');
    assert.deepEqual(logits.dims, ref.dims);
    const e = relErr(logits.data, ref.data);
    t.diagnostic(`E.llama3arch logits: relative error ${e.toExponential(2)}`);
    assert.ok(e < TOL, `relative error ${e}`);
  } finally {
    await lm.release();
  }
});
