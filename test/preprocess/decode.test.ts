// decodeImage: parity with PIL's decode on the fixture, channel handling, and every error path
// (files are built in a temp dir with sharp).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodeImage } from '../../src/preprocess/decode.js';
import { InputError } from '../../src/core/errors.js';
import { fixtureU8, TINY } from '../helpers/fixtures.js';

const EXAMPLE = join(TINY, 'example.jpg');
let dir = '';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mgllava-decode-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An RGB test pattern [h, w, 3] with distinct values everywhere. */
function pattern(w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let i = 0; i < out.length; i++) out[i] = (i * 37 + 11) & 255;
  return out;
}

async function expectInputError(p: Promise<unknown>, subject: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    assert.equal(e.subject, subject);
    assert.match(e.message, re);
    assert.ok(e.message.startsWith(subject), `message names the file: ${e.message}`);
    return true;
  });
}

test('example.jpg decodes exactly like PIL (B.decoded_rgb)', async () => {
  const img = await decodeImage(EXAMPLE);
  assert.equal(img.width, 640);
  assert.equal(img.height, 514);
  const ref = fixtureU8('B.decoded_rgb');
  assert.equal(img.data.length, ref.length);
  assert.ok(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length).equals(Buffer.from(ref)), 'bytes differ');
});

test('bytes input decodes the same as the path', async () => {
  const { readFile } = await import('node:fs/promises');
  const a = await decodeImage(EXAMPLE);
  const b = await decodeImage(new Uint8Array(await readFile(EXAMPLE)), { name: 'upload' });
  assert.deepEqual(b.data, a.data);
});

test('greyscale PNG becomes RGB with equal channels', async () => {
  const grey = Uint8Array.from({ length: 6 * 4 }, (_, i) => i * 10);
  const path = join(dir, 'grey.png');
  await sharp(grey, { raw: { width: 6, height: 4, channels: 1 } }).png().toFile(path);
  const img = await decodeImage(path);
  assert.equal(img.data.length, 6 * 4 * 3);
  for (let i = 0; i < 24; i++) assert.deepEqual([...img.data.subarray(3 * i, 3 * i + 3)], [grey[i], grey[i], grey[i]]);
});

test('alpha is dropped without compositing (RGBA and grey+alpha)', async () => {
  const rgba = Uint8Array.from([10, 20, 30, 0, 200, 100, 50, 128, 1, 2, 3, 255, 90, 80, 70, 7]);
  const path = join(dir, 'rgba.png');
  await sharp(rgba, { raw: { width: 2, height: 2, channels: 4 } }).png().toFile(path);
  const img = await decodeImage(path);
  assert.deepEqual([...img.data], [10, 20, 30, 200, 100, 50, 1, 2, 3, 90, 80, 70]);

  const ga = Uint8Array.from([40, 0, 250, 100]);
  const path2 = join(dir, 'ga.png');
  await sharp(ga, { raw: { width: 2, height: 1, channels: 2 } }).png().toFile(path2);
  const img2 = await decodeImage(path2);
  assert.deepEqual([...img2.data], [40, 40, 40, 250, 250, 250]);
});

test('palette PNG expands to its RGB colours', async () => {
  const colours = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 255],
  ];
  const raw = Uint8Array.from({ length: 4 * 4 * 3 }, (_, i) => colours[Math.floor(i / 3) % 4]![i % 3]!);
  const path = join(dir, 'palette.png');
  await sharp(raw, { raw: { width: 4, height: 4, channels: 3 } }).png({ palette: true, dither: 0 }).toFile(path);
  assert.equal((await sharp(path).metadata()).isPalette, true);
  const img = await decodeImage(path);
  assert.deepEqual([...img.data], [...raw]);
});

test('lossless WebP round-trips', async () => {
  const raw = pattern(7, 5);
  const path = join(dir, 'img.webp');
  await sharp(raw, { raw: { width: 7, height: 5, channels: 3 } }).webp({ lossless: true }).toFile(path);
  const img = await decodeImage(path);
  assert.equal(img.width, 7);
  assert.equal(img.height, 5);
  assert.deepEqual([...img.data], [...raw]);
});

test('EXIF orientation is not applied (the reference does not rotate)', async () => {
  const path = join(dir, 'rotated.jpg');
  await sharp(pattern(8, 4), { raw: { width: 8, height: 4, channels: 3 } })
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toFile(path);
  assert.equal((await sharp(path).metadata()).orientation, 6);
  const img = await decodeImage(path);
  assert.equal(img.width, 8);
  assert.equal(img.height, 4);
});

test('missing file, directory and empty file are InputErrors naming the path', async () => {
  const missing = join(dir, 'nope.jpg');
  await expectInputError(decodeImage(missing), missing, /no such file/);
  const sub = join(dir, 'a-directory');
  await mkdir(sub);
  await expectInputError(decodeImage(sub), sub, /directory/);
  const empty = join(dir, 'empty.png');
  await writeFile(empty, new Uint8Array(0));
  await expectInputError(decodeImage(empty), empty, /empty/);
});

test('a file that is not an image is refused', async () => {
  const path = join(dir, 'notes.jpg');
  await writeFile(path, 'this is a text file, not a JPEG\n');
  await expectInputError(decodeImage(path), path, /not a readable image/);
  await expectInputError(decodeImage(new TextEncoder().encode('hello'), { name: 'upload.png' }), 'upload.png', /not a readable image/);
});

test('truncated JPEG and PNG error instead of decoding grey', async () => {
  const src = sharp(pattern(64, 48), { raw: { width: 64, height: 48, channels: 3 } });
  const jpg = await src.clone().jpeg({ quality: 95 }).toBuffer();
  const png = await src.clone().png().toBuffer();
  const cutJpg = join(dir, 'cut.jpg');
  const cutPng = join(dir, 'cut.png');
  await writeFile(cutJpg, jpg.subarray(0, Math.floor(jpg.length * 0.6)));
  await writeFile(cutPng, png.subarray(0, Math.floor(png.length * 0.6)));
  await expectInputError(decodeImage(cutJpg), cutJpg, /truncated|corrupt/);
  await expectInputError(decodeImage(cutPng), cutPng, /truncated|corrupt/);
  // Header only: refused at the header stage.
  const headJpg = join(dir, 'head.jpg');
  await writeFile(headJpg, jpg.subarray(0, 100));
  await expectInputError(decodeImage(headJpg), headJpg, /image/);
});

test('corrupt PNG chunk is refused', async () => {
  const png = Buffer.from(await sharp(pattern(16, 16), { raw: { width: 16, height: 16, channels: 3 } }).png().toBuffer());
  const at = png.indexOf('IDAT');
  assert.ok(at > 0);
  png[at + 3] = 0x58; // IDAT -> IDAX: an unknown critical chunk, and no image data
  const path = join(dir, 'corrupt.png');
  await writeFile(path, png);
  await expectInputError(decodeImage(path), path, /image/);
});

test('pixel limit refuses large images, naming dimensions and limit', async () => {
  await expectInputError(decodeImage(EXAMPLE, { maxPixels: 100_000 }), EXAMPLE, /640x514 = 328960 pixels.*limit of 100000/);
  // Exactly at the limit is allowed.
  const img = await decodeImage(EXAMPLE, { maxPixels: 640 * 514 });
  assert.equal(img.width, 640);
});
