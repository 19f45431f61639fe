// The same code must serve any model of the release's layout: build a random-weight model folder
// with other widths, depths and head counts (bf16 checkpoint weights), encode an image through the CLI path, and check the object features against the
// literal reference chain (resize, concat, RoiAlign aligned=False, mean) run by onnxruntime.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TINY, relErr } from '../helpers/fixtures.js';
import { writeRandomModel } from '../helpers/random-model.js';
import { MgLlava } from '../../src/model/mg-llava.js';
import { decodeImage } from '../../src/preprocess/decode.js';
import { parseBoxJson } from '../../src/preprocess/boxes.js';
import { Graph } from '../../src/graph/graph.js';
import { resizeBilinear, roiAlign } from '../../src/graph/blocks.js';
import { Session } from '../../src/runtime/session.js';
import { tempDir } from '../weights/torch-builders.js';

const H = 24; // LLM width

function buildFolder(): string {
  return writeRandomModel(tempDir(), {
    clip: { width: 48, layers: 4, heads: 3, mlp: 96, act: 'gelu' },
    convnext: { dims: [12, 24, 36, 48], depths: [1, 2, 1, 1] },
    llmWidth: H,
    seed: 7,
  }, { llm: join(TINY, 'llm') });
}

test('a model of other sizes encodes, and its object features follow the reference RoIAlign chain', async () => {
  const model = await MgLlava.load({ model: buildFolder() }, { llm: false });
  const vision = await model.visionModel();
  try {
    // Portrait crop of the example (other geometry than the fixtures) with a few boxes.
    const img = await decodeImage(join(TINY, 'example.jpg'));
    const w = 300, h = 514;
    const data = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) data.set(img.data.subarray((y * img.width + 100) * 3, (y * img.width + 100 + w) * 3), y * w * 3);
    const det = parseBoxJson(JSON.stringify({
      boxes: [[10, 20, 200, 300], [0, 0, 300, 514], [150.5, 400.25, 299, 513], [40, 60, 41, 61]],
      labels: ['cat', 'table', 'cup', 'cat'], scores: [0.9, 0.5, 0.7, 0.3],
    }), 'boxes');
    const tokens = await model.encode({ width: w, height: h, data }, det);
    assert.deepEqual(tokens.imageTokens.dims, [576, H]);
    assert.deepEqual(tokens.boxTokens.dims, [4, H]);
    assert.ok(tokens.imageTokens.data.every(Number.isFinite));

    // Object features against resize + RoiAlign + mean, on the same stages.
    const enc = await vision.encodeImage({ dims: [1, 3, 336, 336], data: tokens.pixelValues.data },
      { dims: [1, 3, 768, 768], data: tokens.pixelValuesAux.data });
    const ours = await vision.encodeBoxes(enc.stages, tokens.boxes.data);
    const g = new Graph('reference_roi');
    const ins = enc.stages.map((s, l) => g.input(`s${l}`, 'F32', s.dims));
    const cat = g.op1('Concat', ins.map((v, l) => (l === 0 ? v : resizeBilinear(g, v, 192, 192))), { axis: 1 });
    const bins = roiAlign(g, cat, g.input('rois', 'F32', [4, 4]), g.constI64([0, 0, 0, 0]), { outputSize: 56, spatialScale: 192 / 768 });
    g.output(g.op1('ReduceMean', [bins, g.constI64([2, 3])], { keepdims: 0 }), 'pooled');
    const { bytes } = g.serialize();
    const s = await Session.create('reference_roi', bytes);
    const feeds: Record<string, { dims: readonly number[]; data: Float32Array }> = { rois: tokens.boxes };
    enc.stages.forEach((st, l) => (feeds[`s${l}`] = st));
    const ref = (await s.run(feeds)).pooled!;
    await s.release();
    const e = relErr(ours.pooled.data, ref.data);
    assert.ok(e < 1e-4, `pooled relative error ${e}`);
  } finally {
    await model.release();
  }
});
