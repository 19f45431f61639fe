// `mgllava detect` as a user runs it: the "done when" command (O2), integer boxes, the
// plain listing, --draw's PNG, and bad input ending in one line on stderr and a non-zero exit.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { TINY } from '../helpers/fixtures.js';
import { decodeImage } from '../../src/preprocess/decode.js';
import { mgllava } from '../helpers/cli.js';

const IMAGE = join(TINY, 'example.jpg');
const OWL = join(TINY, 'owlv2');
const TMP = mkdtempSync(join(tmpdir(), 'mgllava-detect-'));
after(() => rmSync(TMP, { recursive: true, force: true }));
let n = 0;
const tempDir = () => {
  const d = join(TMP, String(n++));
  mkdirSync(d);
  return d;
};
const extra = JSON.parse(readFileSync(join(TINY, 'extra_cases.json'), 'utf8')) as Record<string, unknown>;
const O2_TAGS = (extra['O2.tags'] as string[]).join(',');
const O2_THRESHOLD = String(extra['O2.threshold']);


interface BoxJson {
  boxes: number[][];
  labels: string[];
  scores: number[];
}

test('detect --json returns O2.boxes/scores/labels (the issue\'s done-when command)', async () => {
  const r = await mgllava(['detect', '--detector', OWL, '--image', IMAGE, '--tags', 'cat,table,red square,window', '--threshold', O2_THRESHOLD, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const j = JSON.parse(r.stdout) as BoxJson;
  assert.deepEqual(Object.keys(j), ['boxes', 'labels', 'scores']);
  assert.deepEqual(j.labels, extra['O2.labels']);
  const ref = extra['O2.boxes'] as number[][];
  j.boxes.forEach((b, i) => b.forEach((v, c) => assert.ok(Math.abs(v - ref[i]![c]!) < 1e-3, `box ${i}.${c}: ${v} vs ${ref[i]![c]}`)));
  j.scores.forEach((s, i) => assert.ok(Math.abs(s - (extra['O2.scores'] as number[])[i]!) < 1e-5));
});

test('detect --int-boxes gives the release\'s stored integers; the plain listing has one line per box', async () => {
  const r = await mgllava(['detect', '--detector', OWL, '--image', IMAGE, '--tags', O2_TAGS, '--threshold', O2_THRESHOLD, '--json', '--int-boxes']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((JSON.parse(r.stdout) as BoxJson).boxes, (extra['O2.boxes'] as number[][]).map((b) => b.map(Math.trunc)));
  const plain = await mgllava(['detect', '--detector', OWL, '--image', IMAGE, '--tags', O2_TAGS, '--threshold', O2_THRESHOLD, '-q']);
  assert.equal(plain.code, 0, plain.stderr);
  const lines = plain.stdout.trim().split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /^label\s+score\s+x0, y0, x1, y1$/);
  assert.match(lines[1]!, /^cat\s+0\.766\s+241\.02, 56\.76, 397\.14, 152\.30$/);
  // transformers 4's processing (grey padding, scipy resize) moves the boxes a little.
  const legacy = await mgllava(['detect', '--detector', OWL, '--image', IMAGE, '--tags', O2_TAGS, '--threshold', '0.2', '--json', '--processor', 'transformers4']);
  const current = await mgllava(['detect', '--detector', OWL, '--image', IMAGE, '--tags', O2_TAGS, '--threshold', '0.2', '--json']);
  assert.equal(legacy.code, 0, legacy.stderr);
  assert.notDeepEqual((JSON.parse(legacy.stdout) as BoxJson).scores, (JSON.parse(current.stdout) as BoxJson).scores);
  const none = await mgllava(['detect', '--detector', OWL, '--image', IMAGE, '--coco', '--threshold', '1', '-q']);
  assert.equal(none.code, 0, none.stderr);
  assert.equal(none.stdout, 'no boxes above 1 for 80 tags\n');
});

test('detect --draw writes an RGB PNG of the image\'s size with the boxes\' edges in the label colour', async () => {
  const out = join(tempDir(), 'boxes.png');
  const r = await mgllava(['detect', '--detector', OWL, '--image', IMAGE, '--tags', O2_TAGS, '--threshold', O2_THRESHOLD, '--json', '--draw', out]);
  assert.equal(r.code, 0, r.stderr);
  const meta = await sharp(out).metadata();
  assert.equal(meta.format, 'png');
  assert.deepEqual([meta.width, meta.height, meta.channels], [640, 514, 3]);
  const drawn = await decodeImage(out);
  const orig = await decodeImage(IMAGE);
  const px = (img: typeof drawn, x: number, y: number) => Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));
  const boxes = (JSON.parse(r.stdout) as BoxJson).boxes;
  for (const [x0, y0, x1, y1] of boxes.slice(0, 2) as [number, number, number, number][]) {
    const my = Math.floor((y0 + y1) / 2);
    const mx = Math.floor((x0 + x1) / 2);
    assert.deepEqual(px(drawn, Math.floor(x0), my), [255, 0, 0], 'left edge');
    assert.deepEqual(px(drawn, Math.floor(x1), my), [255, 0, 0], 'right edge');
    assert.deepEqual(px(drawn, mx, Math.floor(y1)), [255, 0, 0], 'bottom edge');
    assert.deepEqual(px(drawn, mx, my), px(orig, mx, my), 'inside the box the image is untouched');
  }
  assert.deepEqual(px(drawn, 5, 500), px(orig, 5, 500), 'away from the boxes the image is untouched');
});

async function oneLineError(args: string[], pattern: RegExp): Promise<void> {
  const r = await mgllava(args);
  assert.notEqual(r.code, 0, `expected failure for ${args.join(' ')}`);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  assert.match(lines[lines.length - 1]!, /^mgllava: /);
  assert.ok(lines.filter((l) => l.startsWith('mgllava:')).length === 1 && !/at .*\.js:\d+/.test(r.stderr), r.stderr);
  assert.match(r.stderr, pattern);
}

test('bad input: detector folder without tokenizer, empty tags, thresholds outside [0, 1], ...', async () => {
  const noTok = join(tempDir(), 'owl-no-tokenizer');
  mkdirSync(noTok);
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(OWL, f), join(noTok, f));
  const base = ['detect', '--image', IMAGE, '-q'];
  await oneLineError([...base, '--detector', noTok, '--tags', 'cat'], /no tokenizer\.json in the detector folder/);
  await oneLineError([...base, '--detector', OWL, '--tags', ''], /--tags: no tags given/);
  await oneLineError([...base, '--detector', OWL, '--tags', ' , ,'], /--tags: no tags given/);
  await oneLineError([...base, '--detector', OWL, '--tags', 'cat', '--threshold', '1.5'], /--threshold.*expected a number in \[0, 1\]/);
  await oneLineError([...base, '--detector', OWL, '--tags', 'cat', '--threshold', '-0.1'], /expected a number in \[0, 1\]/);
  await oneLineError([...base, '--detector', OWL, '--tags', 'cat', '--threshold', 'high'], /expected a number/);
  await oneLineError([...base, '--detector', OWL, '--tags', 'cat', '--coco'], /--tags or --coco, not both/);
  await oneLineError([...base, '--detector', OWL, '--tags', 'cat', '--processor', 'pil'], /--processor.*Allowed choices are transformers5, transformers4/);
  await oneLineError([...base, '--detector', OWL], /--tags "cat,table,\.\.\." or --coco/);
  await oneLineError([...base, '--detector', join(TINY, 'clip'), '--tags', 'cat'], /expected "owlv2"/);
  await oneLineError([...base, '--detector', join(TINY, 'nowhere'), '--tags', 'cat'], /no such detector folder/);
  await oneLineError(['detect', '--detector', OWL, '--image', join(TINY, 'nowhere.jpg'), '--tags', 'cat'], /nowhere\.jpg: cannot read image: no such file/);
  await oneLineError(['detect', '--detector', OWL, '--tags', 'cat'], /required option '--image <file>'/);
  const draw = join(tempDir(), 'missing', 'out.png');
  await oneLineError([...base, '--detector', OWL, '--tags', 'cat', '--draw', draw], /does not exist \(--draw\)/);
  assert.ok(!existsSync(draw));
  const badCfg = join(tempDir(), 'owl-bad-config');
  mkdirSync(badCfg);
  for (const f of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(OWL, f), join(badCfg, f));
  const cfg = JSON.parse(readFileSync(join(OWL, 'config.json'), 'utf8')) as { vision_config: Record<string, unknown> };
  cfg.vision_config['hidden_size'] = 48;
  writeFileSync(join(badCfg, 'config.json'), JSON.stringify(cfg));
  await oneLineError([...base, '--detector', badCfg, '--tags', 'cat'], /owlv2\.vision_model\..* has shape \[.*\], expected \[.*48/);
});
