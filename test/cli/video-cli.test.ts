// `mgllava chat --video` and `mgllava encode --video` as a user runs them on the tiny model and
// fixtures/video; bad input ends with one line on stderr and a non-zero exit. (The tiny LLM's
// context is 2048: chat uses a copy with a longer one, as test/video/video-tokens.test.ts.)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, TINY } from '../helpers/fixtures.js';
import { assertOneLineError, mgllava } from '../helpers/cli.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { readBytes, readF32 } from '../../src/weights/types.js';
import { longContextLlm } from '../helpers/long-context.js';

const VIDEO_DIR = join(ROOT, 'fixtures', 'video');
const VIDEO = join(VIDEO_DIR, 'synthetic_landscape.mkv');
const BOX_FILE = join(VIDEO_DIR, 'video_boxes.json');
const MODEL = join(TINY, 'mgllava');
const COUNTS = [6, 5, 11, 1, 90, 10, 5, 13];

let dir = '';
let llm = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'mgllava-video-cli-'));
  llm = longContextLlm(dir);
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const i64 = (s: SafetensorsStore, k: string) => Array.from(new BigInt64Array(new Uint8Array(readBytes(s.get(k)!)).buffer), Number);

test('chat --video --video-boxes --json: the video prompt, ids, frames and box counts', async () => {
  const r = await mgllava(['chat', '--model', MODEL, '--llm', llm, '--video', VIDEO, '--video-boxes', BOX_FILE, '--json', '-q',
    '--temperature', '0', '--max-new-tokens', '4', 'What', 'happens?']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { ids: number[]; prompt_tokens: number; video: { frame_indices: number[]; frame_box_counts: number[] } };
  assert.equal(j.ids.length, 4);
  assert.deepEqual(j.video.frame_box_counts, COUNTS);
  assert.deepEqual(j.video.frame_indices, [0, 5, 11, 16, 22, 27, 33, 39]);
  assert.ok(j.prompt_tokens > 8 * 576 + 141 && j.prompt_tokens < 8 * 576 + 141 + 60, String(j.prompt_tokens));
});

test('chat --video --frames 2 --no-pad fits the tiny model\'s own context; without boxes, placeholder boxes', async () => {
  const r = await mgllava(['chat', '--model', join(TINY, 'mgllava'), '--video', VIDEO, '--frames', '2', '--no-pad', '--json', '-q', '--temperature', '0', '--max-new-tokens', '2', 'Hi']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { ids: number[]; video: { frame_indices: number[]; frame_box_counts: number[] } };
  assert.equal(j.ids.length, 2);
  assert.deepEqual(j.video, { frame_indices: [0, 39], frame_box_counts: [1, 1] });
});

test('encode --video writes the video tensors with their shapes', async () => {
  const out = join(dir, 'video.safetensors');
  const r = await mgllava(['encode', '--model', join(TINY, 'mgllava'), '--video', VIDEO, '--video-boxes', BOX_FILE, '--out', out, '-q']);
  assert.equal(r.code, 0, r.stderr);
  const s = SafetensorsStore.open(out);
  const shape = (k: string) => s.get(k)!.shape;
  assert.deepEqual(shape('pixel_values'), [8, 3, 336, 336]);
  assert.deepEqual(shape('pixel_values_aux'), [8, 3, 768, 768]);
  assert.deepEqual(shape('image_tokens'), [8, 576, 16]);
  assert.deepEqual(shape('box_tokens'), [141, 16]);
  assert.deepEqual(shape('boxes'), [141, 4]);
  assert.equal(s.get('frame_indices')!.dtype, 'I64');
  assert.deepEqual(i64(s, 'frame_indices'), [0, 5, 11, 16, 22, 27, 33, 39]);
  assert.deepEqual(i64(s, 'frame_box_counts'), COUNTS);
  const ref = SafetensorsStore.open(join(VIDEO_DIR, 'video_cases.safetensors'));
  assert.deepEqual(Array.from(readF32(s.get('boxes')!)), Array.from(readF32(ref.get('pad_limit100.boxes')!)));
  assert.equal((JSON.parse(s.metadata['labels']!) as string[][]).length, 8);
});

const cases: { name: string; args: () => string[]; error: RegExp }[] = [
  { name: 'chat --video with --image', args: () => ['chat', '--video', VIDEO, '--image', join(TINY, 'example.jpg'), 'Hi'], error: /--video with --image/ },
  { name: 'encode --video with --image', args: () => ['encode', '--video', VIDEO, '--image', join(TINY, 'example.jpg'), '--out', join(dir, 'x.safetensors')], error: /--video with --image/ },
  { name: 'encode without --image or --video', args: () => ['encode', '--out', join(dir, 'x.safetensors')], error: /--image or --video/ },
  { name: 'not a video', args: () => ['chat', '--video', join(TINY, 'boxes_raw.json'), 'Hi'], error: /boxes_raw\.json/ },
  { name: 'missing video', args: () => ['encode', '--video', join(dir, 'nope.mkv'), '--out', join(dir, 'x.safetensors')], error: /nope\.mkv/ },
  {
    name: 'a box file without the video\'s stem',
    args: () => {
      const p = join(dir, 'other_boxes.json');
      writeFileSync(p, JSON.stringify([{ video: 'another.mp4', frames: [] }]));
      return ['chat', '--video', VIDEO, '--video-boxes', p, 'Hi'];
    },
    error: /no entry for video "synthetic_landscape"/,
  },
  { name: '--video-boxes without --video', args: () => ['chat', '--video-boxes', BOX_FILE, 'Hi'], error: /--video-boxes needs --video/ },
  { name: '--no-pad without --video', args: () => ['encode', '--image', join(TINY, 'example.jpg'), '--no-pad', '--out', join(dir, 'x.safetensors')], error: /--no-pad needs --video/ },
  {
    name: 'too few frame entries',
    args: () => ['chat', '--video', VIDEO, '--video-boxes', BOX_FILE, '--frames', '9', 'Hi'],
    error: /8 frame entries, need one per sampled frame \(9\)/,
  },
];
for (const c of cases) {
  test(`bad input: ${c.name} -> one clear line, non-zero exit`, async () => {
    const r = await mgllava(c.args());
    assertOneLineError(r, c.error);
    assert.equal(existsSync(join(dir, 'x.safetensors')), false);
  });
}

test('chat --visual-cache reads what encode --video wrote: the same prompt and greedy ids as chat --video', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mgllava-video-cache-'));
  try {
    const out = join(dir, 'v.safetensors');
    const e = await mgllava(['encode', '--model', MODEL, '--video', VIDEO, '--video-boxes', BOX_FILE, '--frames', '2', '--out', out, '-q']);
    assert.equal(e.code, 0, e.stderr);
    const args = ['--max-new-tokens', '5', '--temperature', '0', '--json', 'What happens?'];
    const direct = await mgllava(['chat', '--model', MODEL, '--video', VIDEO, '--video-boxes', BOX_FILE, '--frames', '2', ...args]);
    const cached = await mgllava(['chat', '--model', MODEL, '--visual-cache', out, ...args]);
    assert.equal(direct.code, 0, direct.stderr);
    assert.equal(cached.code, 0, cached.stderr);
    const a = JSON.parse(direct.stdout) as { ids: number[]; prompt_tokens: number };
    const b = JSON.parse(cached.stdout) as { ids: number[]; prompt_tokens: number };
    assert.deepEqual(b.ids, a.ids);
    assert.equal(b.prompt_tokens, a.prompt_tokens);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
