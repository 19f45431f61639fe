// Distribution drift (src/quant/drift.ts) on hand-computed cases.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { distributionDrift, logSoftmax } from '../../src/quant/drift.js';

test('KL of identical rows is 0 and their top-1 agrees; shifting logits by a constant changes nothing', () => {
  const ref = Float32Array.of(1, 2, 3, 0, 0, 5);
  const d = distributionDrift(ref, ref.map((x) => x + 7), 3, 'logits');
  assert.equal(d.positions, 2);
  assert.ok(d.meanKl < 1e-12 && d.maxKl < 1e-12);
  assert.equal(d.top1Agreement, 1);
});

test('KL by hand: p = (1/2, 1/2) against q = (1/4, 3/4) is ln 2 - (1/2) ln 3', () => {
  const ref = Float32Array.of(0, 0);
  const q = Float32Array.of(0.25, 0.75);
  const expected = 0.5 * Math.log(0.5 / 0.25) + 0.5 * Math.log(0.5 / 0.75);
  const d = distributionDrift(ref, q, 2, 'probabilities');
  assert.ok(Math.abs(d.meanKl - expected) < 1e-12, `${d.meanKl} vs ${expected}`);
  // the same q as logits: log(1/4), log(3/4)
  const dl = distributionDrift(ref, Float32Array.of(Math.log(0.25), Math.log(0.75)), 2, 'logits');
  assert.ok(Math.abs(dl.meanKl - expected) < 1e-7);
});

test('mean and max over positions, top-1 disagreement counted, a zero probability floored', () => {
  // position 0 agrees exactly; position 1's argmax moves
  const ref = Float32Array.of(2, 0, 0, 2);
  const q = Float32Array.of(Math.exp(2) / (1 + Math.exp(2)), 1 / (1 + Math.exp(2)), 1, 0);
  const d = distributionDrift(ref, q, 2, 'probabilities');
  assert.equal(d.top1Agreement, 0.5);
  assert.ok(Number.isFinite(d.maxKl) && d.maxKl > 10, String(d.maxKl));
  assert.ok(Math.abs(d.meanKl - d.maxKl / 2) < 1e-6);
  assert.throws(() => distributionDrift(ref, q.subarray(0, 2), 2, 'logits'), /both must be/);
});

test('logSoftmax sums to one in probability and survives large logits', () => {
  const l = logSoftmax(Float32Array.of(1000, 1001, 999));
  const s = [...l].reduce((a, b) => a + Math.exp(b), 0);
  assert.ok(Math.abs(s - 1) < 1e-12);
});
