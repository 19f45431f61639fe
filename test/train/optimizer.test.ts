// AdamW against the D1 fixture (one torch AdamW step from the tiny checkpoint's stage-1
// weights), clipping against hand-computed values, accumulation as mmengine scales it, and
// state save/restore equivalence.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TINY, fixture, relErr } from '../helpers/fixtures.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { readF32 } from '../../src/weights/types.js';
import {
  AdamW,
  AdamWState,
  GradAccumulator,
  accumulationLossFactor,
  accumulationShouldUpdate,
  clipGradNorm,
  fmaf,
} from '../../src/train/optimizer.js';

/** The tiny checkpoint's bf16 weights under `prefix`, upcast to float32. */
function startingWeights(prefix: string): Map<string, Float32Array> {
  const store = SafetensorsStore.open(join(TINY, 'mgllava', 'model.safetensors'));
  const out = new Map<string, Float32Array>();
  for (const k of store.keys().filter((k) => k.startsWith(prefix)).sort()) out.set(k, readF32(store.get(k)!));
  return out;
}

function d1Grads(names: Iterable<string>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const k of names) out.set(k, fixture(`D1.grad.${k}`).data);
  return out;
}

test('AdamW: one step on D1 matches torch (fuse_module, lr 1e-3, betas 0.9/0.999, eps 1e-8, wd 0)', () => {
  const params = startingWeights('fuse_module.');
  assert.ok(params.size >= 10, `fuse_module has ${params.size} tensors`);
  const grads = d1Grads(params.keys());
  new AdamW({ betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 }).step(params, grads, 1e-3);
  let worst = 0;
  let mismatched = 0;
  let total = 0;
  for (const [name, p] of params) {
    const want = fixture(`D1.after_adamw.${name}`).data;
    const e = relErr(p, want);
    worst = Math.max(worst, e);
    for (let i = 0; i < p.length; i++) if (p[i] !== want[i]) mismatched++;
    total += p.length;
    assert.ok(e < 1e-6, `${name}: relative error ${e}`);
  }
  // Measured: bit-identical to torch's CPU float32 result for every element.
  assert.equal(mismatched, 0, `${mismatched} of ${total} values differ (worst relative error ${worst})`);
});

test('AdamW: hand-computed second step, weight decay, skipped parameters', () => {
  const p = new Map([['w', new Float32Array([1, -2])], ['frozen', new Float32Array([5])]]);
  const opt = new AdamW({ betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.1 });
  const lr = 0.01;
  opt.step(p, new Map([['w', new Float32Array([0.5, 0.25])]]), lr);
  opt.step(p, new Map([['w', new Float32Array([-0.5, 0.25])]]), lr);
  // float64 reference of the same recursion (float32 rounding differs by < 1e-6 relative)
  const ref = [1, -2];
  const m = [0, 0];
  const v = [0, 0];
  const gs = [[0.5, 0.25], [-0.5, 0.25]];
  for (let t = 1; t <= 2; t++) {
    for (let i = 0; i < 2; i++) {
      const g = gs[t - 1]![i]!;
      ref[i]! *= 1 - lr * 0.1;
      m[i] = 0.9 * m[i]! + 0.1 * g;
      v[i] = 0.999 * v[i]! + 0.001 * g * g;
      const den = Math.sqrt(v[i]!) / Math.sqrt(1 - 0.999 ** t) + 1e-8;
      ref[i]! -= (lr / (1 - 0.9 ** t)) * (m[i]! / den);
    }
  }
  const w = p.get('w')!;
  for (let i = 0; i < 2; i++) assert.ok(Math.abs(w[i]! - ref[i]!) < 1e-6, `w[${i}] = ${w[i]} vs ${ref[i]}`);
  assert.equal(p.get('frozen')![0], 5);
  assert.equal(opt.getState().params.get('w')!.step, 2);
  assert.equal(opt.getState().params.has('frozen'), false);
  assert.throws(() => opt.step(p, new Map([['nope', new Float32Array(1)]]), lr), /unknown parameter nope/);
  assert.throws(() => opt.step(p, new Map([['w', new Float32Array(3)]]), lr), /2 values but its gradient 3/);
});

function copyState(s: AdamWState): AdamWState {
  const params = new Map([...s.params].map(([k, v]) => [k, { step: v.step, expAvg: v.expAvg.slice(), expAvgSq: v.expAvgSq.slice() }]));
  return { betas: [...s.betas] as [number, number], eps: s.eps, weightDecay: s.weightDecay, params };
}

test('AdamW: 2 steps = 1 step + restore + 1 step, bit-identical', () => {
  const names = [...startingWeights('fuse_module.').keys()];
  const g1 = d1Grads(names);
  const g2 = new Map([...g1].map(([k, g]) => [k, g.map((x, i) => x * (i % 3 === 0 ? -0.7 : 1.3))]));
  const opts = { betas: [0.9, 0.999] as const, eps: 1e-8, weightDecay: 0.05 };

  const a = startingWeights('fuse_module.');
  const optA = new AdamW(opts);
  optA.step(a, g1, 1e-3);
  optA.step(a, g2, 5e-4);

  const b = startingWeights('fuse_module.');
  const optB = new AdamW(opts);
  optB.step(b, g1, 1e-3);
  const saved = copyState(optB.getState());
  const bSaved = new Map([...b].map(([k, x]) => [k, x.slice()]));
  const optC = AdamW.fromState(saved);
  optC.step(bSaved, g2, 5e-4);

  for (const [k, x] of a) assert.deepEqual(bSaved.get(k), x, k);
  for (const [k, s] of optA.getState().params) {
    const r = optC.getState().params.get(k)!;
    assert.equal(r.step, s.step);
    assert.deepEqual(r.expAvg, s.expAvg, k);
    assert.deepEqual(r.expAvgSq, s.expAvgSq, k);
  }
});

test('clipGradNorm: hand values', () => {
  // ||(3,4)|| = 5, ||(12)|| = 12, total = 13; coef = 1 / (13 + 1e-6)
  const a = new Float32Array([3, 4]);
  const b = new Float32Array([12]);
  const total = clipGradNorm(new Map([['a', a], ['b', b]]), 1);
  assert.equal(total, 13);
  const coef = Math.fround(Math.fround(1 / Math.fround(13 + Math.fround(1e-6))) * 1);
  assert.deepEqual([...a], [Math.fround(3 * coef), Math.fround(4 * coef)]);
  assert.equal(b[0], Math.fround(12 * coef));
  assert.ok(Math.abs(Math.hypot(a[0]!, a[1]!, b[0]!) - 1) < 1e-6);

  // below the limit: unchanged
  const c = new Float32Array([0.3, 0.4]);
  assert.equal(clipGradNorm([c], 1), Math.fround(0.5));
  assert.deepEqual([...c], [Math.fround(0.3), Math.fround(0.4)]);

  // max_norm 2 with total 13: coef = 2 / (13 + 1e-6)
  const d = new Float32Array([5, 12]);
  assert.equal(clipGradNorm([d], 2), 13);
  assert.ok(Math.abs(d[0]! - (5 * 2) / 13) < 1e-6 && Math.abs(d[1]! - (12 * 2) / 13) < 1e-6);

  // off: norm returned, nothing changed
  const e = new Float32Array([30, 40]);
  assert.equal(clipGradNorm([e], 0), 50);
  assert.deepEqual([...e], [30, 40]);
  assert.equal(clipGradNorm([], 1), 0);
});

test('gradient accumulation: mmengine loss factors and update points', () => {
  // 10 iterations, 4 per update: windows [0..3] [4..7] [8,9]; the last divides by 2.
  const f = [...Array(10).keys()].map((i) => accumulationLossFactor(i, 4, 10));
  assert.deepEqual(f, [4, 4, 4, 4, 4, 4, 4, 4, 2, 2]);
  const u = [...Array(10).keys()].filter((i) => accumulationShouldUpdate(i, 4, 10));
  assert.deepEqual(u, [3, 7, 9]);
  assert.equal(accumulationLossFactor(5, 1, 10), 1);
  assert.equal(accumulationLossFactor(9, 4), 4);

  const acc = new GradAccumulator();
  acc.add(new Map([['w', new Float32Array([1, 2])]]), 4);
  acc.add(new Map([['w', new Float32Array([3, -6])]]), 4);
  assert.equal(acc.count, 2);
  const g = acc.take();
  assert.deepEqual([...g.get('w')!], [1, -1]);
  assert.equal(acc.count, 0);
  assert.equal(acc.take().size, 0);
});

test('fmaf rounds once', () => {
  // a*b = 2^-24 - 2^-70 and c = 1 + 2^-23: the float64 sum rounds to the float32 midpoint
  // 1 + 3*2^-24 (which ties to the even 1 + 2^-22), but the exact value lies just below it.
  const a = 1 + 2 ** -23;
  const b = 2 ** -24 - 2 ** -47;
  const c = 1 + 2 ** -23;
  for (const x of [a, b, c]) assert.equal(Math.fround(x), x);
  assert.equal(Math.fround(a * b + c), 1 + 2 ** -22);
  assert.equal(fmaf(a, b, c), 1 + 2 ** -23);
  assert.equal(fmaf(-a, b, -c), -(1 + 2 ** -23));
  assert.equal(fmaf(2, 3, 1), 7);
  assert.equal(fmaf(0.1, 0, 0), 0);
});
