// Detector folders other than the fixture: a config with only non-default keys and an image size
// that patches do not divide (OWLv2-L is 960 px / 14 = 68.6), a tokenizer whose pad token is
// "!" (id 0, as the hub's OWLv2 files say), a folder without tokenizer.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TINY, wave } from '../helpers/fixtures.js';
import { InputError } from '../../src/core/errors.js';
import { Owlv2Detector } from '../../src/detect/owlv2.js';
import { decodeImage } from '../../src/preprocess/decode.js';
import { writeRandomOwlv2 } from './random-owlv2.js';

const TMP = mkdtempSync(join(tmpdir(), 'mgllava-owl-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

test('a random OWLv2 folder (defaults omitted, 100 px / patch 14 -> 7x7 patches) loads and detects', async () => {
  const dir = writeRandomOwlv2(join(TMP, 'odd'), {
    text: { width: 24, layers: 2, heads: 3, mlp: 40 },
    vision: { width: 20, layers: 2, heads: 5, mlp: 36, patch: 14, image: 100 },
  });
  const d = await Owlv2Detector.load(dir);
  try {
    assert.equal(d.imageSize, 100);
    assert.equal(d.patches, 49);
    const q = await d.embedQueries(['a photo of cat', 'a photo of a very long query that has many more words than sixteen tokens allow']);
    assert.deepEqual(q.dims, [2, 24]);
    const tok = d.tokenize(['a photo of a very long query that has many more words than sixteen tokens allow']);
    assert.equal(tok.ids[0]!.length, 16);
    assert.equal(tok.ids[0]![15], d.tokenizer.eosId); // cut to 16 with its EOS kept
    assert.equal(tok.eosIndex[0], 15);
    // Each query embedding has unit length.
    for (let i = 0; i < 2; i++) assert.ok(Math.abs(Math.hypot(...q.data.subarray(i * 24, (i + 1) * 24)) - 1) < 1e-5);
    const px = wave(1, 3, 100, 100, 0.3);
    const a = await d.run({ dims: [1, 3, 100, 100], data: px }, q);
    assert.deepEqual(a.logits.dims, [1, 49, 2]);
    assert.deepEqual(a.predBoxes.dims, [1, 49, 4]);
    assert.ok(a.predBoxes.data.every((v) => v > 0 && v < 1));
    // The 2 pixels beyond 7 x 14 are never seen by the patch convolution.
    const px2 = px.slice();
    for (let c = 0; c < 3; c++) for (let y = 0; y < 100; y++) for (let x = 98; x < 100; x++) px2[c * 10000 + y * 100 + x] = 5;
    const b = await d.run({ dims: [1, 3, 100, 100], data: px2 }, q);
    assert.deepEqual(Array.from(b.logits.data), Array.from(a.logits.data));
    const img = await decodeImage(join(TINY, 'example.jpg'));
    const r = await d.detect(img, ['cat', 'bus'], { threshold: 0 });
    assert.equal(r.labels.length, 49);
    assert.ok(r.labels.every((l) => l === 'cat' || l === 'bus'));
  } finally {
    await d.release();
  }
});

test('padding with "!" (id 0, the hub\'s OWLv2 pad token) gives the same detections as padding with EOS', async () => {
  const dir = join(TMP, 'bang');
  cpSync(join(TINY, 'owlv2'), dir, { recursive: true });
  const cfgPath = join(dir, 'tokenizer_config.json');
  writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, 'utf8')), pad_token: '!' }));
  const [bang, eos] = await Promise.all([Owlv2Detector.load(dir), Owlv2Detector.load(join(TINY, 'owlv2'))]);
  try {
    const t = bang.tokenize(['a photo of cat']);
    assert.deepEqual(t.ids[0], [49406, 320, 1125, 539, 2368, 49407, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(t.eosIndex[0], 5);
    const img = await decodeImage(join(TINY, 'example.jpg'));
    const [a, b] = await Promise.all([bang.detect(img, ['cat', 'table']), eos.detect(img, ['cat', 'table'])]);
    assert.deepEqual(a.labels, b.labels);
    assert.deepEqual(Array.from(a.boxes), Array.from(b.boxes));
    let m = 0;
    a.scores.forEach((s, i) => (m = Math.max(m, Math.abs(s - b.scores[i]!))));
    assert.ok(m < 1e-6, `scores differ by ${m}`);
  } finally {
    await Promise.all([bang.release(), eos.release()]);
  }
});

test('a folder without tokenizer.json, or without config.json, is an InputError naming it', async () => {
  const dir = writeRandomOwlv2(join(TMP, 'notok'), { text: { width: 8, layers: 1, heads: 2, mlp: 8 }, vision: { width: 8, layers: 1, heads: 2, mlp: 8, patch: 8, image: 16 } }, false);
  await assert.rejects(Owlv2Detector.load(dir), (e: unknown) => e instanceof InputError && e.message.includes(dir) && /tokenizer/.test(e.message));
  rmSync(join(dir, 'config.json'));
  await assert.rejects(Owlv2Detector.load(dir), /no config\.json/);
  await assert.rejects(Owlv2Detector.load(join(dir, 'model.safetensors')), /must be an OWLv2 model folder/);
});
