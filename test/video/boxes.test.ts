// The release's video box pipeline against fixtures/video (four variants, the stages of two, the
// rounding markers), plus the box file reader and its errors.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  VIDEO_BOXES_PER_LABEL,
  VideoBoxGeometry,
  parseVideoBoxJson,
  readVideoBoxFile,
  videoBoxEntry,
  videoBoxScale,
  videoBoxStages,
  videoExtension,
  videoFrameBoxes,
  videoKey,
  videoPadOffset,
} from '../../src/video/boxes.js';
import { Detections, roundHalfEven } from '../../src/preprocess/boxes.js';
import { InputError } from '../../src/core/errors.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { readBytes, readF32 } from '../../src/weights/types.js';
import { ROOT } from '../helpers/fixtures.js';
import { assertInputError } from '../helpers/errors.js';

const VIDEO = join(ROOT, 'fixtures', 'video');
const BOX_FILE = join(VIDEO, 'video_boxes.json');
const VARIANTS = ['pad_limit100', 'pad_nolimit', 'nopad_limit100', 'nopad_nolimit'] as const;
type Variant = (typeof VARIANTS)[number];

interface FinalFrame {
  frame_position: number;
  boxes: number[][];
  labels: string[];
  n_box_tokens: number;
  cap_applied: boolean;
}
interface Stage {
  input: number[][];
  nms: { boxes: number[][]; labels: string[]; scores: number[] };
  cap_applied: boolean;
  capped: { boxes: number[][]; labels: string[] };
  scaled: { boxes: number[][]; new_h: number; new_w: number; scale: number; crop_start_xy: [number, number] };
  final: { boxes: number[][]; labels: string[] };
  n_box_tokens: number;
}
interface Marker {
  box: number[];
  coordinate: number;
  kind: 'half_even' | 'f32_vs_f64';
  variant: 'pad' | 'nopad';
  axis: 'x' | 'y';
  label: string;
  float32_product: number;
  torch_round: number;
  round_half_up_would_give?: number;
  float64_product?: number;
  float64_round_would_give?: number;
  frame_position: number;
}
interface Cases {
  video_file: string;
  video_stem: string;
  width: number;
  height: number;
  num_frames_sampled: number;
  boxes: Record<Variant, FinalFrame[]>;
  box_stages_pad_limit100: Stage[];
  box_stages_nopad_limit100: Stage[];
  markers: Marker[];
  prompt: { n_box_tokens_by_variant: Record<Variant, number[]> };
  pixel_geometry: Record<string, { box_crop_start_xy?: [number, number]; box_scaled_hw?: [number, number] }>;
}

const cases = JSON.parse(readFileSync(join(VIDEO, 'video_cases.json'), 'utf8')) as Cases;
let store: SafetensorsStore | undefined;
function tensor(name: string) {
  store ??= SafetensorsStore.open(join(VIDEO, 'video_cases.safetensors'));
  const r = store.get(name);
  if (!r) throw new Error(`fixture tensor ${name} not found`);
  return r;
}
function i64(name: string): number[] {
  const copy = new Uint8Array(readBytes(tensor(name)));
  return Array.from(new BigInt64Array(copy.buffer), Number);
}

function geometry(variant: string, extra: Partial<VideoBoxGeometry> = {}): VideoBoxGeometry {
  return {
    width: cases.width,
    height: cases.height,
    pad: variant.startsWith('pad'),
    limit: variant.endsWith('limit100') && !variant.endsWith('nolimit') ? 100 : null,
    ...extra,
  };
}
const rows = (b: Float32Array): number[][] => Array.from({ length: b.length / 4 }, (_, i) => [...b.subarray(4 * i, 4 * i + 4)]);
const f32rows = (b: number[][]): number[][] => b.map((r) => r.map(Math.fround));

let frames: Detections[] = [];
let dir = '';
before(async () => {
  const index = await readVideoBoxFile(BOX_FILE);
  frames = videoBoxEntry(index, BOX_FILE, cases.video_stem, cases.num_frames_sampled);
  dir = await mkdtemp(join(tmpdir(), 'mgllava-video-boxes-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('the box file is keyed by the stem of its "video" (split(".")[-2]), one entry per sampled frame', async () => {
  const index = await readVideoBoxFile(BOX_FILE);
  assert.deepEqual([...index.keys()], [cases.video_stem]);
  assert.equal(videoKey(cases.video_file), cases.video_stem);
  assert.equal(videoExtension(cases.video_file), 'mkv');
  assert.equal(frames.length, 8);
  assert.deepEqual(
    frames.map((f) => f.labels.length),
    cases.box_stages_pad_limit100.map((s) => s.input.length),
  );
  // The input boxes are the JSON numbers, kept in float64.
  assert.deepEqual([...frames[2]!.boxes], cases.box_stages_nopad_limit100[2]!.input.flat());
});

for (const variant of VARIANTS) {
  test(`${variant}: final boxes, labels and counts equal the fixture exactly`, () => {
    const out = videoFrameBoxes(frames, geometry(variant, { numFrames: 8 }));
    assert.equal(out.length, 8);
    const counts = out.map((f) => f.count);
    assert.deepEqual(counts, i64(`${variant}.box_counts`));
    assert.deepEqual(counts, cases.prompt.n_box_tokens_by_variant[variant]);
    const all = new Float32Array(counts.reduce((a, b) => a + b, 0) * 4);
    let at = 0;
    out.forEach((f, j) => {
      const ref = cases.boxes[variant][j]!;
      assert.equal(f.boxes.length, 4 * f.count);
      assert.deepEqual(rows(f.boxes), ref.boxes, `frame ${j}`);
      assert.deepEqual(f.labels, ref.labels, `frame ${j}`);
      assert.equal(f.count, ref.n_box_tokens);
      assert.equal(f.placeholder, ref.labels.length === 0);
      all.set(f.boxes, at);
      at += f.boxes.length;
    });
    const ref = tensor(`${variant}.boxes`);
    assert.equal(ref.dtype, 'F32');
    assert.deepEqual(ref.shape, [at / 4, 4]);
    assert.deepEqual([...all], [...readF32(ref)]);
    // The empty frame: one zero box, no label, one box token.
    assert.deepEqual(out[3], { boxes: new Float32Array(4), labels: [], count: 1, placeholder: true });
  });
}

for (const variant of ['pad_limit100', 'nopad_limit100'] as const) {
  test(`${variant}: every intermediate stage equals the fixture`, () => {
    const stages = cases[`box_stages_${variant}`];
    const g = geometry(variant);
    const pg = cases.pixel_geometry[variant.startsWith('pad') ? 'pad_768' : 'nopad_768']!;
    stages.forEach((ref, j) => {
      const s = videoBoxStages(frames[j]!, g);
      const at = `frame ${j}`;
      assert.deepEqual(rows(s.nms.boxes), f32rows(ref.nms.boxes), at);
      assert.deepEqual(s.nms.labels, ref.nms.labels, at);
      assert.deepEqual([...s.nms.scores], ref.nms.scores.map(Math.fround), at);
      assert.equal(s.capApplied, ref.cap_applied, at);
      assert.equal(s.capApplied, cases.boxes[variant][j]!.cap_applied, at);
      assert.deepEqual(rows(s.capped.boxes), f32rows(ref.capped.boxes), at);
      assert.deepEqual(s.capped.labels, ref.capped.labels, at);
      assert.deepEqual(rows(s.scaled.boxes), ref.scaled.boxes, at);
      const sg = s.scaled.geometry;
      assert.equal(sg.scale, ref.scaled.scale, at);
      assert.deepEqual([sg.newHeight, sg.newWidth], [ref.scaled.new_h, ref.scaled.new_w], at);
      assert.deepEqual([sg.cropX, sg.cropY], ref.scaled.crop_start_xy, at);
      assert.deepEqual([sg.cropX, sg.cropY], pg.box_crop_start_xy);
      assert.deepEqual([sg.newHeight, sg.newWidth], pg.box_scaled_hw);
      assert.deepEqual(rows(s.final.boxes), ref.final.boxes, at);
      assert.deepEqual(s.final.labels, ref.final.labels, at);
      assert.equal(s.final.count, ref.n_box_tokens, at);
    });
  });
}

test('the cap keeps 20 per label whatever the limit, regrouped by label in order of first appearance', () => {
  const s = videoBoxStages(frames[4]!, geometry('pad_limit100'));
  assert.ok(s.capApplied);
  const counts = new Map<string, number>();
  for (const l of s.capped.labels) counts.set(l, (counts.get(l) ?? 0) + 1);
  assert.ok(Math.max(...counts.values()) <= VIDEO_BOXES_PER_LABEL);
  // Labels come in contiguous groups, in the order they first appear in the NMS output.
  const groups = s.capped.labels.filter((l, i) => i === 0 || s.capped.labels[i - 1] !== l);
  assert.equal(new Set(groups).size, groups.length);
  assert.deepEqual(groups, [...new Set(s.nms.labels)].filter((l) => counts.has(l)));
  // A limit of 50 would cut to 5 per label on the image path; the video dataset still keeps 20.
  const s50 = videoBoxStages(frames[4]!, geometry('pad_limit100', { limit: 50 }));
  assert.deepEqual(s50.capped.labels, s.capped.labels);
  // No cap when the count after NMS is not above the limit.
  const s108 = videoBoxStages(frames[4]!, geometry('pad_limit100', { limit: s.nms.labels.length }));
  assert.equal(s108.capApplied, false);
  assert.deepEqual(s108.capped.labels, s.nms.labels);
});

test('markers: float32 products rounded half to even, as torch does', () => {
  assert.equal(cases.markers.length, 8);
  for (const m of cases.markers) {
    const variant = m.variant === 'pad' ? 'pad_limit100' : 'nopad_limit100';
    const g = geometry(variant);
    const c = m.axis === 'x' ? 0 : 1;
    assert.equal(m.box[c], m.coordinate);
    const { dx, dy } = g.pad ? videoPadOffset(g.width, g.height) : { dx: 0, dy: 0 };
    const shifted = m.coordinate + (c === 0 ? dx : dy);
    const side = g.pad ? Math.max(g.width, g.height) : Math.min(g.width, g.height);
    const sg = videoBoxScale(g.pad ? side : g.width, g.pad ? side : g.height);
    const product = Math.fround(Math.fround(shifted) * Math.fround(sg.scale));
    assert.equal(product, m.float32_product, `${m.coordinate}`);
    assert.equal(roundHalfEven(product), m.torch_round);
    if (m.kind === 'half_even') assert.notEqual(Math.round(product), m.torch_round); // half up would differ
    else assert.notEqual(roundHalfEven(shifted * sg.scale), m.torch_round); // float64 would differ

    // Through the pipeline: the marker box alone, and inside the marker frame.
    const crop = c === 0 ? sg.cropX : sg.cropY;
    const alone = videoBoxStages(
      { boxes: Float64Array.from(m.box), labels: [m.label], scores: Float64Array.of(0.9) },
      g,
    );
    assert.equal(alone.scaled.boxes[c], m.torch_round, `${m.coordinate}`);
    assert.equal(alone.final.boxes[c], m.torch_round - crop, `${m.coordinate}`);
    const frame = videoFrameBoxes(frames, g)[m.frame_position]!;
    const found = rows(frame.boxes).findIndex((r) => r.every((v, k) => v === alone.final.boxes[k]));
    assert.ok(found >= 0, `marker ${m.coordinate} in frame ${m.frame_position}`);
    assert.equal(frame.labels[found], m.label);
  }
});

test('padding offset and scale geometry (landscape, portrait, square)', () => {
  assert.deepEqual(videoPadOffset(320, 240), { dx: 0, dy: 40 });
  assert.deepEqual(videoPadOffset(241, 320), { dx: 39, dy: 0 });
  assert.deepEqual(videoPadOffset(100, 100), { dx: 0, dy: 0 });
  // A portrait frame: x moves by (h-w)//2 before the float32 tensor.
  const portrait = videoBoxStages(
    { boxes: Float64Array.of(0.5, 10, 20.5, 30), labels: ['a'], scores: Float64Array.of(1) },
    { width: 241, height: 320, pad: true, limit: 100 },
  );
  assert.deepEqual([...portrait.shifted.boxes], [39.5, 10, 59.5, 30]);
  assert.deepEqual([...portrait.scaled.boxes], [95, 24, 143, 72]); // 39.5 * 2.4 = 94.8, 59.5 * 2.4 = 142.8
  // The box crop offset floors: new side - S = 3 (mod 4) gives (3)//2 = 1 where round-half-even gives 2.
  const sg = videoBoxScale(771, 768);
  assert.deepEqual([sg.newWidth, sg.cropX, sg.cropY], [771, 1, 0]);
  assert.deepEqual(videoBoxScale(320, 240), { scale: 3.2, newWidth: 1024, newHeight: 768, cropX: 128, cropY: 0 });
});

test('boxes touching the crop border survive as zero-width boxes; boxes wholly outside are dropped', () => {
  const g = geometry('nopad_nolimit');
  // x 0..30 -> 0..96 - 128: wholly left of the crop (dropped); x 280..320 -> 896..1024 -> 768..768 kept;
  // x 20..40 -> 64..128 -> 0..0 kept.
  const det: Detections = {
    boxes: Float64Array.of(0, 0, 30, 30, 280, 0, 320, 30, 20, 50, 40, 80),
    labels: ['a', 'b', 'c'],
    scores: Float64Array.of(0.9, 0.8, 0.7),
  };
  const [f] = videoFrameBoxes([det], g);
  assert.deepEqual(rows(f!.boxes), [
    [768, 0, 768, 96],
    [0, 160, 0, 256],
  ]);
  assert.deepEqual(f!.labels, ['b', 'c']);
  const none = videoFrameBoxes([{ boxes: Float64Array.of(0, 0, 30, 30), labels: ['a'], scores: Float64Array.of(1) }], g);
  assert.deepEqual(none, [{ boxes: new Float32Array(4), labels: [], count: 1, placeholder: true }]);
});

test('videoKey follows Python split(".")[-2]', () => {
  assert.equal(videoKey('clip.mp4'), 'clip');
  assert.equal(videoKey('dir/clip.mp4'), 'dir/clip');
  assert.equal(videoKey('a.b.mp4'), 'b');
  assert.equal(videoKey('./v/clip.mp4'), '/v/clip');
  assert.equal(videoKey('.mp4'), '');
  assert.equal(videoKey('clip'), null);
  assert.equal(videoExtension('a.b.mp4'), 'mp4');
});

test('later entries for the same key replace earlier ones; extra frame entries are ignored', () => {
  const e = (x: number) => ({ boxes: [[x, 0, x + 1, 1]], labels: ['a'], scores: [1] });
  const index = parseVideoBoxJson(
    JSON.stringify([
      { video: 'v.mp4', frames: [e(1)] },
      { video: 'v.avi', frames: [e(2), e(3), e(4)] },
    ]),
    'x.json',
  );
  const got = videoBoxEntry(index, 'x.json', 'v', 2);
  assert.deepEqual(got.map((d) => d.boxes[0]), [2, 3]);
  assert.equal(videoFrameBoxes(index.get('v')!, { width: 10, height: 10, pad: true, limit: null, numFrames: 2 }).length, 2);
});

test('bad input: one-line InputErrors naming the file', async () => {
  const write = async (name: string, text: string) => {
    const p = join(dir, name);
    await writeFile(p, text);
    return p;
  };
  const rejects = async (p: string, re: RegExp) =>
    assert.rejects(readVideoBoxFile(p), (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.doesNotMatch(e.message, /\n/);
      assert.match(e.message, re);
      assert.ok(e.message.startsWith(p), e.message);
      assert.equal(e.subject, p);
      return true;
    });
  await rejects(await write('not.json', '{"video": '), /not valid JSON/);
  await rejects(join(dir, 'missing.json'), /cannot read video box file: no such file/);
  await rejects(await write('obj.json', '{"video": "a.mp4"}'), /expected a JSON list/);
  await rejects(await write('noext.json', '[{"video": "clip", "frames": []}]'), /entry 0: "video" "clip" has no extension/);
  await rejects(await write('novideo.json', '[{"frames": []}]'), /entry 0: "video" must be a string/);
  await rejects(await write('noframes.json', '[{"video": "a.mp4"}]'), /entry 0 \("a.mp4"\): "frames" must be a list/);
  const ok = { boxes: [[0, 0, 1, 1]], labels: ['a'], scores: [1] };
  const bad = (f: unknown) => JSON.stringify([{ video: 'a.mp4', frames: [ok, f] }]);
  await rejects(await write('short.json', bad({ boxes: [[0, 0, 1]], labels: ['a'], scores: [1] })), /frames\[1\]: boxes\[0\] must be \[x0, y0, x1, y1\]/);
  await rejects(await write('nan.json', bad({ boxes: [[0, 0, 'x', 1]], labels: ['a'], scores: [1] })), /frames\[1\]: boxes\[0\]\[2\] is not a number/);
  await rejects(await write('flip.json', bad({ boxes: [[5, 0, 1, 1]], labels: ['a'], scores: [1] })), /frames\[1\]: boxes\[0\].*x1 < x0/);
  await rejects(await write('count.json', bad({ boxes: [[0, 0, 1, 1]], labels: [], scores: [1] })), /frames\[1\]: 1 boxes but 0 labels/);
  await rejects(await write('label.json', bad({ boxes: [[0, 0, 1, 1]], labels: [3], scores: [1] })), /frames\[1\]: labels\[0\] is not a string/);

  const index = await readVideoBoxFile(BOX_FILE);
  assertInputError(() => videoBoxEntry(index, BOX_FILE, 'other_video', 8), /video_boxes\.json: no entry for video "other_video"/);
  assertInputError(() => videoBoxEntry(index, BOX_FILE, cases.video_stem, 9), /has 8 frame entries, need one per sampled frame \(9\)/);
  assertInputError(
    () => videoFrameBoxes(frames.slice(0, 7), geometry('pad_limit100', { numFrames: 8, name: BOX_FILE })),
    /video_boxes\.json: 7 frame entries of boxes, need one per sampled frame \(8\)/,
  );
  assertInputError(() => videoFrameBoxes(frames, geometry('pad_limit100', { width: 0 })), /width must be a positive integer/);
});
