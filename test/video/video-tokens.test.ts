// MgLlava.encodeVideo and chat with a video on the tiny model and fixtures/video: the boxes per
// frame are the fixture's pad_limit100 ones, each frame's tokens are the image path's vision
// sessions fed that frame's video pixel tensors, and the prompt is the release's
// `<video>\n{question}` with frame 0's image tokens, its box tokens, frame 1's, ... at the marker.
// The tiny LLM's context (2048) is shorter than a video prompt (~4.8k): the tests use a copy of
// its folder with max_position_embeddings 8192 (RoPE at every position, the same weights).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MgLlava } from '../../src/model/mg-llava.js';
import { Detections } from '../../src/preprocess/boxes.js';
import { readVideoBoxFile, videoBoxEntry } from '../../src/video/boxes.js';
import { loadVideoFrames } from '../../src/video/frames.js';
import { VideoTokens, videoSequence, videoTokenCount } from '../../src/video/video-tokens.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { InputError } from '../../src/core/errors.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { readBytes, readF32 } from '../../src/weights/types.js';
import { ROOT, TINY, relErr } from '../helpers/fixtures.js';
import { longContextLlm } from '../helpers/long-context.js';

const VIDEO_DIR = join(ROOT, 'fixtures', 'video');
const VIDEO = join(VIDEO_DIR, 'synthetic_landscape.mkv');
const BOX_FILE = join(VIDEO_DIR, 'video_boxes.json');
const COUNTS = [6, 5, 11, 1, 90, 10, 5, 13];
const QUESTION = 'What is the red block doing while the blue ball moves across the scene?';

const store = SafetensorsStore.open(join(VIDEO_DIR, 'video_cases.safetensors'));
function i64(name: string): number[] {
  const copy = new Uint8Array(readBytes(store.get(name)!));
  return Array.from(new BigInt64Array(copy.buffer), Number);
}

let dir = '';
let model: MgLlava;
let boxes: Detections[];
let tokens: VideoTokens;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mgllava-video-tokens-'));
  model = await MgLlava.load({ model: join(TINY, 'mgllava'), llm: longContextLlm(dir) });
  boxes = videoBoxEntry(await readVideoBoxFile(BOX_FILE), BOX_FILE, 'synthetic_landscape', 8);
  tokens = await model.encodeVideo(VIDEO, { boxes });
});
after(async () => {
  await model?.release();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('encodeVideo: shapes, sampled frames, and the fixture\'s pad_limit100 boxes per frame', () => {
  const H = 16;
  assert.deepEqual(tokens.imageTokens.dims, [8, 576, H]);
  assert.deepEqual(tokens.boxCounts, COUNTS);
  assert.deepEqual(tokens.boxCounts, i64('pad_limit100.box_counts'));
  assert.deepEqual(tokens.boxTokens.dims, [141, H]);
  assert.deepEqual(tokens.boxes.dims, [141, 4]);
  assert.deepEqual(Array.from(tokens.boxes.data), Array.from(readF32(store.get('pad_limit100.boxes')!)));
  assert.deepEqual(tokens.frameIndices, i64('frame_indices'));
  assert.deepEqual(tokens.pixelValues.dims, [8, 3, 336, 336]);
  assert.deepEqual(tokens.pixelValuesAux.dims, [8, 3, 768, 768]);
  assert.equal(tokens.labels.length, 8);
  assert.deepEqual(tokens.labels[3], []); // the empty frame's placeholder box
  assert.deepEqual(tokens.labels.map((l, i) => (i === 3 ? 1 : l.length)), COUNTS);
  // The 336 view is the video transform's (the fixture's pixel_values), not a resize of the 768 tensor.
  const ref = readF32(store.get('pad.pixel_values')!);
  let max = 0;
  for (let i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(ref[i]! - tokens.pixelValues.data[i]!));
  assert.ok(max < 3e-3, `pixel_values max abs ${max}`);
});

test('each frame\'s tokens are the image path\'s vision sessions fed that frame\'s pixel tensors', async () => {
  const vision = await model.visionModel();
  const H = 16;
  let b = 0;
  for (const f of [0, 3, 4, 7]) {
    const s = 3 * 336 * 336;
    const S = 3 * 768 * 768;
    const enc = await vision.encodeImage(
      { dims: [1, 3, 336, 336], data: tokens.pixelValues.data.slice(f * s, (f + 1) * s) },
      { dims: [1, 3, 768, 768], data: tokens.pixelValuesAux.data.slice(f * S, (f + 1) * S) },
    );
    // encodeVideo runs the frames batched: the same numbers up to float summation order.
    const img = relErr(tokens.imageTokens.data.subarray(f * 576 * H, (f + 1) * 576 * H), enc.imageTokens.data);
    assert.ok(img < 1e-5, `frame ${f} image tokens: rel err ${img}`);
    b = COUNTS.slice(0, f).reduce((x, y) => x + y, 0);
    const k = COUNTS[f]!;
    const objects = await vision.encodeBoxes(enc.stages, tokens.boxes.data.slice(4 * b, 4 * (b + k)));
    const box = relErr(tokens.boxTokens.data.subarray(b * H, (b + k) * H), objects.boxTokens.data);
    assert.ok(box < 1e-5, `frame ${f} box tokens: rel err ${box}`);
  }
});

test('videoSequence: frame 0\'s image tokens, its box tokens, frame 1\'s image tokens, ...', () => {
  const seq = videoSequence(tokens);
  const H = 16;
  assert.deepEqual(seq.dims, [8 * 576 + 141, H]);
  assert.equal(videoTokenCount(tokens), 4749);
  // frame 1's image tokens start after frame 0's 576 + 6
  const at = (576 + 6) * H;
  assert.deepEqual(Array.from(seq.data.subarray(at, at + 576 * H)), Array.from(tokens.imageTokens.data.subarray(576 * H, 2 * 576 * H)));
  assert.deepEqual(Array.from(seq.data.subarray(576 * H, (576 + 6) * H)), Array.from(tokens.boxTokens.data.subarray(0, 6 * H)));
});

test('encodeVideo without boxes: one placeholder box per frame', async () => {
  const frames = await loadVideoFrames(VIDEO, { frames: 2 });
  const v = await model.encodeVideo(frames, { boxes: null });
  assert.deepEqual(v.imageTokens.dims, [2, 576, 16]);
  assert.deepEqual(v.boxCounts, [1, 1]);
  assert.deepEqual(Array.from(v.boxes.data), [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(v.frameIndices, [0, 39]);
});

test('chat with a video: the release\'s <video>\\n prompt, every frame\'s tokens counted; follow-ups reuse the video', async () => {
  const tokenizer = Tokenizer.fromFolder(join(dir, 'llm'));
  const before = 'A chat between a curious user and an artificial intelligence assistant. The assistant gives ' +
    "helpful, detailed, and polite answers to the user's questions. \n USER: ";
  const afterText = `\n${QUESTION} ASSISTANT:`;
  const textIds = 1 + tokenizer.encode(before, { addSpecialTokens: false }).length + tokenizer.encode(afterText, { addSpecialTokens: false }).length;
  const generation = { temperature: 0, maxNewTokens: 3 };
  const r = await model.chat({ prompt: QUESTION, video: VIDEO, videoBoxes: boxes, generation }).complete();
  assert.equal(r.promptTokens, textIds + 8 * 576 + COUNTS.reduce((a, b) => a + b, 0));
  assert.equal(r.ids.length, 3);
  assert.equal(r.visualCached, false);

  // Precomputed tokens give the same answer.
  const pre = await model.chat({ prompt: QUESTION, videoTokens: tokens, generation }).complete();
  assert.deepEqual(pre.ids, r.ids);
  assert.equal(pre.promptTokens, r.promptTokens);

  // A follow-up about the same video: its span comes from the prompt cache.
  const follow = await model.chat({ prompt: 'And then?', history: [{ question: QUESTION, answer: r.text }], video: VIDEO, videoBoxes: boxes, generation }).complete();
  assert.ok(follow.cachedTokens >= textIds - 1 + 4749, `cached ${follow.cachedTokens}`);
  assert.equal(follow.visualCached, true);
});

test('chat: an image and a video in one request, <image> in a video prompt, unreadable video', async () => {
  const err = async (p: Promise<unknown>, re: RegExp) => assert.rejects(p, (e: unknown) => e instanceof InputError && re.test(e.message) && !e.message.includes('\n'));
  assert.throws(() => model.chat({ prompt: 'hi', image: join(TINY, 'example.jpg'), video: VIDEO }), /an image and a video/);
  await err(model.chat({ prompt: 'what is <image> here?', videoTokens: tokens, generation: { maxNewTokens: 1 } }).complete(), /<image>.*video/);
  await err(model.chat({ prompt: 'hi', video: join(dir, 'missing.mkv'), generation: { maxNewTokens: 1 } }).complete(), /cannot read video/);
  await err(model.encodeVideo(join(TINY, 'example.jpg')), /example\.jpg/);
});
