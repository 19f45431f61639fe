// Graph building blocks run on onnxruntime against the reference fixtures: the literal
// reference chain for object features (resize, concat, RoiAlign aligned=False, mean) must give
// A.box_pooled, which also cross-checks the rank-one pooling weights the model uses.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { resizeBilinear, roiAlign, layerNorm, linear, rmsNorm } from '../../src/graph/blocks.js';
import { Session } from '../../src/runtime/session.js';
import { fixture, relErr } from '../helpers/fixtures.js';

async function runGraph(g: Graph, feeds: Parameters<Session['run']>[0]) {
  const { bytes, externalDataFolder } = g.serialize();
  const s = await Session.create(g.name, bytes, { externalDataFolder });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

test('resize + RoiAlign(aligned=False, adaptive) + mean reproduces A.box_pooled', async () => {
  const stages = [0, 1, 2, 3].map((l) => fixture(`A.stage_${l}`));
  const boxes = fixture('A.boxes');
  const k = boxes.dims[0]!;
  const g = new Graph('reference_roi');
  const ins = stages.map((s, l) => g.input(`s${l}`, 'F32', [1, ...s.dims]));
  const [H0, W0] = [stages[0]!.dims[1]!, stages[0]!.dims[2]!];
  const resized = ins.map((v, l) => (l === 0 ? v : resizeBilinear(g, v, H0, W0)));
  const cat = g.op1('Concat', resized, { axis: 1 });
  const rois = g.input('rois', 'F32', [k, 4]);
  const idx = g.constI64(new Array(k).fill(0), [k]);
  const bins = roiAlign(g, cat, rois, idx, { outputSize: 56, spatialScale: H0 / 768 });
  g.output(g.op1('ReduceMean', [bins, g.constI64([2, 3])], { keepdims: 0 }), 'pooled');
  const feeds: Record<string, { dims: number[]; data: Float32Array }> = { rois: boxes };
  stages.forEach((s, l) => (feeds[`s${l}`] = { dims: [1, ...s.dims], data: s.data }));
  const out = await runGraph(g, feeds);
  const e = relErr(out.pooled!.data, fixture('A.box_pooled').data);
  assert.ok(e < 1e-4, `relative error ${e}`);
});

test('linear and layerNorm follow PyTorch layouts', async () => {
  const g = new Graph('lin');
  const x = g.input('x', 'F32', [1, 2]);
  const w = g.constF32([1, 2, 3, 4, 5, 6], [3, 2]); // [out=3, in=2]
  const b = g.constF32([0.5, 0, -1], [3]);
  const y = linear(g, x, w, b);
  g.output(y, 'y');
  g.output(layerNorm(g, y, g.constF32([1, 1, 1], [3]), g.constF32([0, 0, 0], [3]), 1e-5), 'n');
  const out = await runGraph(g, { x: { dims: [1, 2], data: new Float32Array([1, -1]) } });
  assert.deepEqual(Array.from(out.y!.data), [-0.5, -1, -2]); // [1-2+.5, 3-4, 5-6-1]
  const n = Array.from(out.n!.data);
  const mean = -7 / 6;
  const sd = Math.sqrt(((-0.5 - mean) ** 2 + (-1 - mean) ** 2 + (-2 - mean) ** 2) / 3 + 1e-5);
  n.forEach((v, i) => assert.ok(Math.abs(v - ([-0.5, -1, -2][i]! - mean) / sd) < 1e-5));
});

test('rmsNorm: x / sqrt(mean(x^2) + eps) * w', async () => {
  const g = new Graph('rms');
  const x = g.input('x', 'F32', [1, 4]);
  g.output(rmsNorm(g, x, g.constF32([1, 2, 1, 0.5], [4]), 1e-6), 'y');
  const out = await runGraph(g, { x: { dims: [1, 4], data: new Float32Array([1, -2, 3, 4]) } });
  const rms = Math.sqrt((1 + 4 + 9 + 16) / 4 + 1e-6);
  const want = [1 / rms, -4 / rms, 3 / rms, 2 / rms];
  Array.from(out.y!.data).forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-6, `${v} vs ${want[i]}`));
});
