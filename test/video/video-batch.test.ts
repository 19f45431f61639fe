// The video path's batched vision side (issue 15) on the tiny model and
// fixtures/video/synthetic_landscape.mkv with the fixture's pad_limit100 boxes: encodeVideo runs
// all 8 frames through the encoder in one run and every frame's boxes through the object
// features in one run; each frame's image and box tokens match the frame-by-frame path (one
// encoder run per frame, that frame's boxes against its own stages) to 1e-5 relative, and
// encodeBoxesBatch's frame bookkeeping (uneven counts, frames without boxes) holds; more frames
// than VIDEO_BATCH run in groups with the same numbers.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { MgLlava } from '../../src/model/mg-llava.js';
import { VisionModel } from '../../src/model/mg-llava-vision.js';
import { Detections } from '../../src/preprocess/boxes.js';
import { readVideoBoxFile, videoBoxEntry } from '../../src/video/boxes.js';
import { VIDEO_BATCH, VideoTokens, encodeVideoTokens } from '../../src/video/video-tokens.js';
import { loadVideoFrames } from '../../src/video/frames.js';
import { F32Tensor } from '../../src/core/tensor.js';
import { ROOT, TINY, relErr } from '../helpers/fixtures.js';

const VIDEO_DIR = join(ROOT, 'fixtures', 'video');
const VIDEO = join(VIDEO_DIR, 'synthetic_landscape.mkv');
const BOX_FILE = join(VIDEO_DIR, 'video_boxes.json');
const COUNTS = [6, 5, 11, 1, 90, 10, 5, 13];
const H = 16;
const s = 3 * 336 * 336;
const S = 3 * 768 * 768;

let model: MgLlava;
let vision: VisionModel;
let tokens: VideoTokens;
before(async () => {
  model = await MgLlava.load({ model: join(TINY, 'mgllava') }, { llm: false });
  vision = await model.visionModel();
  const boxes: Detections[] = videoBoxEntry(await readVideoBoxFile(BOX_FILE), BOX_FILE, 'synthetic_landscape', 8);
  tokens = await model.encodeVideo(VIDEO, { boxes });
});
after(async () => {
  await model?.release();
});

/** Frame f's encoder outputs, run alone. */
function frameEncoding(f: number) {
  return vision.encodeImage(
    { dims: [1, 3, 336, 336], data: tokens.pixelValues.data.slice(f * s, (f + 1) * s) },
    { dims: [1, 3, 768, 768], data: tokens.pixelValuesAux.data.slice(f * S, (f + 1) * S) },
  );
}

test('batched video encoding: every frame\'s image and box tokens as frame by frame (1e-5 relative)', async () => {
  assert.deepEqual(tokens.boxCounts, COUNTS);
  assert.deepEqual(tokens.imageTokens.dims, [8, 576, H]);
  assert.deepEqual(tokens.boxTokens.dims, [141, H]);
  let b = 0;
  for (let f = 0; f < 8; f++) {
    const enc = await frameEncoding(f);
    const img = relErr(tokens.imageTokens.data.subarray(f * 576 * H, (f + 1) * 576 * H), enc.imageTokens.data);
    assert.ok(img < 1e-5, `frame ${f} image tokens: rel err ${img}`);
    const k = COUNTS[f]!;
    const objects = await vision.encodeBoxes(enc.stages, tokens.boxes.data.slice(4 * b, 4 * (b + k)));
    const box = relErr(tokens.boxTokens.data.subarray(b * H, (b + k) * H), objects.boxTokens.data);
    assert.ok(box < 1e-5, `frame ${f} box tokens: rel err ${box}`);
    b += k;
  }
});

test('encodeBoxesBatch: each frame\'s boxes against its own stages, uneven counts and frames without boxes', async () => {
  // Frames 4, 3 and 0 of the video, batched; boxes: 2, none, 3.
  const frames = [4, 3, 0];
  const encs = await Promise.all(frames.map(frameEncoding));
  const stages: F32Tensor[] = encs[0]!.stages.map((_, l) => {
    const parts = encs.map((e) => e.stages[l]!);
    const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
    let o = 0;
    for (const p of parts) {
      data.set(p.data, o);
      o += p.data.length;
    }
    return { dims: [parts.length, ...parts[0]!.dims.slice(1)], data };
  });
  const boxes = [
    Float32Array.from([0, 0, 768, 768, 100, 200, 400, 300]),
    new Float32Array(0),
    Float32Array.from([10, 10, 50, 60, 300, 100, 760, 700, 0, 0, 1, 1]),
  ];
  const batched = await vision.encodeBoxesBatch(stages, boxes);
  assert.deepEqual(batched.boxTokens.dims, [5, H]);
  assert.deepEqual(batched.pooled.dims[0], 5);
  let row = 0;
  for (let i = 0; i < frames.length; i++) {
    const k = boxes[i]!.length / 4;
    const alone = await vision.encodeBoxes(encs[i]!.stages, boxes[i]!);
    assert.equal(alone.boxTokens.dims[0], k);
    if (k === 0) continue;
    const e = relErr(batched.boxTokens.data.subarray(row * H, (row + k) * H), alone.boxTokens.data);
    assert.ok(e < 1e-5, `frame ${frames[i]} box tokens: rel err ${e}`);
    const sumC = alone.pooled.dims[1]!;
    const p = relErr(batched.pooled.data.subarray(row * sumC, (row + k) * sumC), alone.pooled.data);
    assert.ok(p < 1e-5, `frame ${frames[i]} pooled: rel err ${p}`);
    row += k;
  }
  // No boxes at all: empty tensors, no run.
  const none = await vision.encodeBoxesBatch(stages, [new Float32Array(0), new Float32Array(0), new Float32Array(0)]);
  assert.deepEqual(none.boxTokens.dims, [0, H]);
  // One box set per image of the batch.
  await assert.rejects(vision.encodeBoxesBatch(stages, [boxes[0]!]), /2|box sets/);
});

test('more frames than VIDEO_BATCH: groups of frames, each frame as frame by frame', async () => {
  const F = VIDEO_BATCH + 2;
  const video = await loadVideoFrames(VIDEO, { frames: F });
  const v = await encodeVideoTokens({ vision }, video, { boxes: null });
  assert.deepEqual(v.imageTokens.dims, [F, 576, H]);
  assert.deepEqual(v.boxCounts, new Array(F).fill(1));
  assert.deepEqual(v.boxTokens.dims, [F, H]);
  for (const f of [0, VIDEO_BATCH - 1, VIDEO_BATCH, F - 1]) {
    const enc = await vision.encodeImage(
      { dims: [1, 3, 336, 336], data: v.pixelValues.data.slice(f * s, (f + 1) * s) },
      { dims: [1, 3, 768, 768], data: v.pixelValuesAux.data.slice(f * S, (f + 1) * S) },
    );
    const img = relErr(v.imageTokens.data.subarray(f * 576 * H, (f + 1) * 576 * H), enc.imageTokens.data);
    assert.ok(img < 1e-5, `frame ${f} image tokens: rel err ${img}`);
    const objects = await vision.encodeBoxes(enc.stages, new Float32Array(4));
    const box = relErr(v.boxTokens.data.subarray(f * H, (f + 1) * H), objects.boxTokens.data);
    assert.ok(box < 1e-5, `frame ${f} box tokens: rel err ${box}`);
  }
});
