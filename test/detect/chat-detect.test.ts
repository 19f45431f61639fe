// Detection inside `encode` and `chat`: with a detector configured (mgllava_config.json
// "detector" or --detector) and no --boxes, the detector's boxes (truncated to integers as the
// release's box generator hands them over) go through the box pipeline; the result equals
// passing those boxes as a --boxes file. Flag conflicts are one-line errors.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TINY } from '../helpers/fixtures.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { readF32 } from '../../src/weights/types.js';
import { MgLlava } from '../../src/model/mg-llava.js';
import { decodeImage } from '../../src/preprocess/decode.js';
import { fixedTags } from '../../src/detect/tags.js';
import { mgllava } from '../helpers/cli.js';

const IMAGE = join(TINY, 'example.jpg');
const OWL = join(TINY, 'owlv2');
const extra = JSON.parse(readFileSync(join(TINY, 'extra_cases.json'), 'utf8')) as Record<string, unknown>;
const TAGS = extra['O2.tags'] as string[];
const THRESHOLD = extra['O2.threshold'] as number;
const TMP = mkdtempSync(join(tmpdir(), 'mgllava-chatdet-'));
after(() => rmSync(TMP, { recursive: true, force: true }));


/** The fixture model folder with a "detector" entry (absolute component paths). */
function modelWithDetector(name: string, detector: unknown): string {
  const dir = join(TMP, name);
  mkdirSync(dir);
  const cfg = JSON.parse(readFileSync(join(TINY, 'mgllava', 'mgllava_config.json'), 'utf8')) as Record<string, unknown>;
  for (const k of ['llm', 'visual_encoder', 'visual_encoder_aux']) cfg[k] = join(TINY, 'mgllava', cfg[k] as string);
  cfg['detector'] = detector;
  copyFileSync(join(TINY, 'mgllava', 'model.safetensors'), join(dir, 'model.safetensors'));
  writeFileSync(join(dir, 'mgllava_config.json'), JSON.stringify(cfg));
  return dir;
}

/** The O2 detections as the release hands them to the box pipeline (boxes.int()). */
function o2BoxFile(): string {
  const path = join(TMP, 'o2-boxes.json');
  writeFileSync(path, JSON.stringify({
    boxes: (extra['O2.boxes'] as number[][]).map((b) => b.map(Math.trunc)),
    labels: extra['O2.labels'],
    scores: extra['O2.scores'],
  }));
  return path;
}

function tensors(path: string): Record<string, number[]> & { labels: string } {
  const s = SafetensorsStore.open(path);
  const out: Record<string, number[]> = {};
  for (const k of ['image_tokens', 'box_tokens', 'boxes']) out[k] = Array.from(readF32(s.get(k)!));
  return { ...out, labels: s.metadata['labels']! } as Record<string, number[]> & { labels: string };
}

test('encode with a configured detector equals encode with the detector\'s boxes as --boxes', async () => {
  const model = modelWithDetector('cfg', { path: OWL, tags: TAGS, threshold: THRESHOLD });
  const a = join(TMP, 'detected.safetensors');
  const b = join(TMP, 'given.safetensors');
  const r1 = await mgllava(['encode', '--model', model, '--image', IMAGE, '--out', a]);
  assert.equal(r1.code, 0, r1.stderr);
  assert.match(r1.stderr, /detecting objects in .*example\.jpg \(4 tags\) \.\.\. done/);
  const r2 = await mgllava(['encode', '--model', join(TINY, 'mgllava'), '--image', IMAGE, '--boxes', o2BoxFile(), '--out', b, '-q']);
  assert.equal(r2.code, 0, r2.stderr);
  const [ta, tb] = [tensors(a), tensors(b)];
  assert.deepEqual(ta, tb);
  assert.equal(ta.boxes.length, 12); // three boxes survive NMS: all "cat", IoU below 0.2
  // The same through --detector/--tags/--threshold flags on the plain fixture model.
  const c = join(TMP, 'flags.safetensors');
  const r3 = await mgllava(['encode', '--model', join(TINY, 'mgllava'), '--detector', OWL, '--tags', TAGS.join(','), '--threshold', String(THRESHOLD), '--image', IMAGE, '--out', c, '-q']);
  assert.equal(r3.code, 0, r3.stderr);
  assert.deepEqual(tensors(c), ta);
});

test('chat with --detector runs end to end and answers as with the detector\'s boxes given', async () => {
  const args = ['--max-new-tokens', '6', '--temperature', '0', '--json', 'What is shown in this image?'];
  const r = await mgllava(['chat', '--model', join(TINY, 'mgllava'), '--detector', OWL, '--tags', TAGS.join(','), '--threshold', String(THRESHOLD), '--image', IMAGE, ...args]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { ids: number[]; prompt_tokens: number; detections: { boxes: number[][]; labels: string[] }; timings: Record<string, number> };
  assert.deepEqual(j.detections.boxes, (extra['O2.boxes'] as number[][]).map((b) => b.map(Math.trunc)));
  assert.deepEqual(j.detections.labels, extra['O2.labels']);
  assert.equal(typeof j.timings['detect_ms'], 'number');
  const g = await mgllava(['chat', '--model', join(TINY, 'mgllava'), '--boxes', o2BoxFile(), '--image', IMAGE, ...args]);
  assert.equal(g.code, 0, g.stderr);
  const k = JSON.parse(g.stdout) as { ids: number[]; prompt_tokens: number; detections?: unknown };
  assert.deepEqual(j.ids, k.ids);
  assert.equal(j.prompt_tokens, k.prompt_tokens);
  assert.equal(k.detections, undefined);
});

test('the library: chat() without boxes detects when a detector is configured (COCO-80 by default)', async () => {
  const model = await MgLlava.load({ model: modelWithDetector('lib', OWL) }, { llm: false });
  try {
    assert.ok(model.detectsBoxes);
    assert.equal(model.tagSource.name, 'COCO-80');
    const img = await decodeImage(IMAGE);
    const v = await model.encode(img);
    assert.ok(v.detections);
    assert.equal(v.detections.tags.length, 80);
    assert.equal(v.detections.threshold, 0.2);
    const none = await model.encode(img, null);
    assert.equal(none.detections, undefined);
    assert.equal(none.boxTokens.dims[0], 0);
  } finally {
    await model.release();
  }
  const custom = await MgLlava.load({ model: modelWithDetector('lib2', OWL) }, { llm: false, detection: { tags: fixedTags(['cat']), threshold: 0.99 } });
  try {
    const v = await custom.encode(await decodeImage(IMAGE));
    assert.deepEqual(v.detections!.tags, ['cat']);
    assert.deepEqual(v.labels, ['']); // nothing above 0.99: the release's single [0,0,0,0] box
    assert.deepEqual(Array.from(v.boxes.data), [0, 0, 0, 0]);
  } finally {
    await custom.release();
  }
});

test('detection flags that conflict or have no detector are one-line errors', async () => {
  const m = ['--model', join(TINY, 'mgllava'), '--image', IMAGE];
  const cases: [string[], RegExp][] = [
    [['chat', ...m, '--tags', 'cat', 'hi'], /no detector is configured/],
    [['chat', ...m, '--detector', OWL, '--boxes', join(TINY, 'boxes_raw.json'), 'hi'], /--boxes replaces detection/],
    [['chat', ...m, '--detector', OWL, '--tags', 'cat', '--coco', 'hi'], /--tags or --coco, not both/],
    [['chat', ...m, '--detector', OWL, '--threshold', '2', 'hi'], /expected a number in \[0, 1\]/],
    [['chat', ...m, '--detector', join(TMP, 'nowhere'), 'hi'], /detector folder not found \(--detector\)/],
    [['encode', ...m, '--detector', OWL, '--tags', ',', '--out', join(TMP, 'x.safetensors')], /--tags: no tags given/],
    [['encode', '--model', modelWithDetector('badthr', { path: OWL, threshold: 3 }), '--image', IMAGE, '--out', join(TMP, 'y.safetensors')], /"detector" "threshold" must be a number in \[0, 1\]/],
    [['encode', '--model', modelWithDetector('notok', { path: TINY + '/clip' }), '--image', IMAGE, '--out', join(TMP, 'z.safetensors')], /expected "owlv2"/],
  ];
  for (const [args, pattern] of cases) {
    const r = await mgllava(args);
    assert.notEqual(r.code, 0, args.join(' '));
    const errs = r.stderr.split('\n').filter((l) => l.startsWith('mgllava:'));
    assert.equal(errs.length, 1, r.stderr);
    assert.match(errs[0]!, pattern);
  }
});
