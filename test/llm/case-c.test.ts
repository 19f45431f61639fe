// Case C of the reference fixtures through the LLM: the 722-position multimodal sequence
// [embed(ids_before), 576 image tokens, 97 box tokens, embed(ids_after)] with the fine-tuned LLM
// of the MG-LLaVA checkpoint (`llm.*` over the base folder's weights): prefill logits, argmax at
// every position, 12 greedy steps against the KV cache, and the logits of the last step.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TINY, casesJson, fixture, fixtureI64, relErr } from '../helpers/fixtures.js';
import { openWeights } from '../../src/weights/open.js';
import { CausalLM } from '../../src/model/llm/causal-lm.js';
import { F32Tensor } from '../../src/core/tensor.js';

const TOL = 1e-4;
const cases = casesJson();
const idsBefore = cases['C.ids_before_image'] as number[];
const idsAfter = cases['C.ids_after_image'] as number[];
const greedy = cases['C.greedy_ids'] as number[];
const margins = cases['C.step_top1_minus_top2'] as number[];
const stepMax = cases['C.step_max_logit'] as number[];

function argmax(data: Float32Array, from = 0, n = data.length - from): number {
  let best = 0;
  for (let j = 1; j < n; j++) if (data[from + j]! > data[from + best]!) best = j;
  return best;
}

/** The largest logit and its lead over the second largest. */
function top2(data: Float32Array): { max: number; margin: number } {
  let a = -Infinity;
  let b = -Infinity;
  for (const v of data) {
    if (v > a) [a, b] = [v, a];
    else if (v > b) b = v;
  }
  return { max: a, margin: a - b };
}

const near = (x: number, ref: number) => Math.abs(x - ref) <= 1e-4 * Math.abs(ref) + 1e-5;

function concatRows(parts: readonly F32Tensor[]): F32Tensor {
  const H = parts[0]!.dims[1]!;
  const rows = parts.reduce((n, p) => n + p.dims[0]!, 0);
  const data = new Float32Array(rows * H);
  let o = 0;
  for (const p of parts) {
    data.set(p.data, o);
    o += p.data.length;
  }
  return { dims: [rows, H], data };
}

async function sequence(lm: CausalLM): Promise<F32Tensor> {
  return concatRows([await lm.embed(idsBefore), fixture('C.image_tokens'), fixture('C.box_tokens'), await lm.embed(idsAfter)]);
}

type T = { diagnostic(msg: string): void };

async function caseC(t: T, checkpoint: string, attention?: 'gqa' | 'ops'): Promise<void> {
  const lm = await CausalLM.load(join(TINY, 'llm'), { checkpoint: openWeights(join(TINY, 'mgllava', checkpoint)), attention });
  try {
    const seq = await sequence(lm);
    assert.equal(seq.dims[0], cases['C.seq_len']);
    const V = lm.config.vocabSize;

    // Prefill with logits at every position: argmax everywhere, last row = prefill_last_logits.
    const all = await lm.forward(seq, lm.newCache(), { allLogits: true });
    const S = seq.dims[0]!;
    assert.deepEqual(all.dims, [S, V]);
    const am = Array.from({ length: S }, (_, r) => argmax(all.data, r * V, V));
    assert.deepEqual(am, fixtureI64('C.prefill_argmax'));
    const lastRow = all.data.subarray((S - 1) * V);
    const eAll = relErr(lastRow, fixture('C.prefill_last_logits').data);
    t.diagnostic(`${checkpoint}: prefill (all positions) last logits relative error ${eAll.toExponential(2)}`);
    assert.ok(eAll < TOL);

    // The normal path: last logits only, then greedy steps against the cache.
    const cache = lm.newCache();
    let logits = await lm.forward(seq, cache);
    assert.deepEqual(logits.dims, [1, V]);
    const ePre = relErr(logits.data, fixture('C.prefill_last_logits').data);
    t.diagnostic(`${checkpoint}: prefill last logits relative error ${ePre.toExponential(2)}`);
    assert.ok(ePre < TOL);
    const ids: number[] = [];
    // Step i feeds greedy_ids[i] (chosen from the previous logits); C.step_max_logit[i] and
    // C.step_top1_minus_top2[i] describe the logits it returns (those that choose greedy_ids[i+1]),
    // and the last of the 12 steps gives C.last_step_logits.
    for (let i = 0; i < greedy.length; i++) {
      const id = argmax(logits.data);
      if (id !== greedy[i]) {
        assert.ok(i > 0 && margins[i - 1]! < 1e-3, `step ${i}: id ${id} != ${greedy[i]} with margin ${margins[i - 1]}`);
      }
      ids.push(greedy[i]!); // continue on the reference path
      logits = await lm.forward(await lm.embed([greedy[i]!]), cache);
      const { max, margin } = top2(logits.data);
      assert.ok(near(max, stepMax[i]!), `step ${i}: max logit ${max} vs ${stepMax[i]}`);
      assert.ok(near(margin, margins[i]!), `step ${i}: top1 - top2 ${margin} vs ${margins[i]}`);
    }
    assert.deepEqual(ids, greedy);
    assert.equal(cache.length, S + greedy.length);
    const eLast = relErr(logits.data, fixture('C.last_step_logits').data);
    t.diagnostic(`${checkpoint}: last step logits relative error ${eLast.toExponential(2)}`);
    assert.ok(eLast < TOL);
  } finally {
    await lm.release();
  }
}

test('case C through model.safetensors (llm.* overrides the base LLM)', (t) => caseC(t, 'model.safetensors'));

test('case C through iter_1.pth (torch zip checkpoint)', (t) => caseC(t, 'iter_1.pth'));

test('case C with the plain-op attention (the path for head sizes GQA cannot take)', (t) => caseC(t, 'model.safetensors', 'ops'));

test("the base LLM's own weights give other logits (the override is real)", async (t) => {
  const lm = await CausalLM.load(join(TINY, 'llm'));
  try {
    const logits = await lm.forward(await sequence(lm), lm.newCache());
    const e = relErr(logits.data, fixture('C.prefill_last_logits').data);
    t.diagnostic(`base LLM vs the fine-tuned reference: relative difference ${e.toExponential(2)}`);
    assert.ok(e > 1e-2, `base weights should not reproduce the fine-tuned logits (relative difference ${e})`);
  } finally {
    await lm.release();
  }
});
