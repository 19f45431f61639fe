// `mgllava encode` end to end, as a user runs it: reproduces case C's visual tokens and case B's
// boxes from the fixture folder and from the release layout with the .pth checkpoint; every bad
// input ends with one line on stderr, a non-zero exit, and nothing at --out.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY, absErr, fixture, relErr } from '../helpers/fixtures.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { readBytes, readF32 } from '../../src/weights/types.js';
import { writeSafetensors, TensorToWrite } from '../../src/weights/write-safetensors.js';
import { buildZip, Pickle, tempDir } from '../weights/torch-builders.js';
import { mgllava } from '../helpers/cli.js';



function checkTokens(out: string): void {
  const s = SafetensorsStore.open(out);
  const t = (k: string) => readF32(s.get(k)!);
  assert.deepEqual(s.get('image_tokens')!.shape, fixture('C.image_tokens').dims);
  assert.ok(relErr(t('image_tokens'), fixture('C.image_tokens').data) < 1e-4, 'image_tokens');
  assert.ok(relErr(t('box_tokens'), fixture('C.box_tokens').data) < 1e-4, 'box_tokens');
  assert.deepEqual(Array.from(t('boxes')), Array.from(fixture('B.final_boxes').data));
  assert.deepEqual(JSON.parse(s.metadata['labels']!), (JSON.parse(readFileSync(join(TINY, 'cases.json'), 'utf8')) as Record<string, unknown>)['B.final_labels']);
  // Preprocessing tolerance of the fixture README (PIL bicubic): max abs 0.03, mean abs 0.003.
  for (const [k, ref] of [['pixel_values', 'B.pixel_values'], ['pixel_values_aux', 'B.pixel_values_aux']] as const) {
    assert.deepEqual(s.get(k)!.shape, fixture(ref).dims);
    const e = absErr(t(k), fixture(ref).data);
    assert.ok(e.max < 0.03 && e.mean < 0.003, `${k}: ${JSON.stringify(e)}`);
  }
}

const IMAGE = join(TINY, 'example.jpg');
const BOXES = join(TINY, 'boxes_raw.json');

test('encode on the fixture folder reproduces C.image_tokens, C.box_tokens and B.final_boxes', async () => {
  const out = join(tempDir(), 'tokens.safetensors');
  const r = await mgllava(['encode', '--model', join(TINY, 'mgllava'), '--image', IMAGE, '--boxes', BOXES, '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /loading model \.\.\. done/);
  checkTokens(out);
});

test('encode through the release layout and the .pth checkpoint gives the same tokens', async () => {
  const out = join(tempDir(), 'tokens.safetensors');
  const r = await mgllava(['encode', '--checkpoint', join(TINY, 'mgllava', 'iter_1.pth'), '--llm', join(TINY, 'llm'),
    '--visual-encoder', join(TINY, 'clip'), '--visual-encoder-aux', join(TINY, 'convnext'),
    '--image', IMAGE, '--boxes', BOXES, '--out', out, '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  checkTokens(out);
});

test('encode without boxes writes no object tokens', async () => {
  const out = join(tempDir(), 'tokens.safetensors');
  const r = await mgllava(['encode', '--model', join(TINY, 'mgllava'), '--image', IMAGE, '--out', out, '-q']);
  assert.equal(r.code, 0, r.stderr);
  const s = SafetensorsStore.open(out);
  assert.deepEqual(s.get('box_tokens')!.shape, [0, 16]);
  assert.deepEqual(s.get('boxes')!.shape, [0, 4]);
  assert.ok(relErr(readF32(s.get('image_tokens')!), fixture('C.image_tokens').data) < 1e-4);
});

test('encode through a Hugging Face cache layout (files are links into blobs/)', async () => {
  const root = tempDir();
  mkdirSync(join(root, 'blobs'));
  mkdirSync(join(root, 'snapshot'));
  mkdirSync(join(root, 'clip'));
  copyFileSync(join(TINY, 'mgllava', 'iter_1.pth'), join(root, 'blobs', 'a1'));
  symlinkSync('../blobs/a1', join(root, 'snapshot', 'iter_1.pth'));
  copyFileSync(join(TINY, 'clip', 'model.safetensors'), join(root, 'blobs', 'b2'));
  symlinkSync('../blobs/b2', join(root, 'clip', 'model.safetensors'));
  copyFileSync(join(TINY, 'clip', 'config.json'), join(root, 'clip', 'config.json'));
  const out = join(tempDir(), 'tokens.safetensors');
  const r = await mgllava(['encode', '--checkpoint', join(root, 'snapshot', 'iter_1.pth'), '--visual-encoder', join(root, 'clip'),
    '--visual-encoder-aux', join(TINY, 'convnext'), '--image', IMAGE, '--boxes', BOXES, '--out', out, '-q']);
  assert.equal(r.code, 0, r.stderr);
  checkTokens(out);
});

/** A model folder whose checkpoint is `checkpointName`, other parts from the fixtures. */
function modelFolder(checkpointName: string): string {
  const dir = tempDir();
  writeFileSync(join(dir, 'mgllava_config.json'), JSON.stringify({
    llm: join(TINY, 'llm'), visual_encoder: join(TINY, 'clip'), visual_encoder_aux: join(TINY, 'convnext'),
    checkpoint: checkpointName, prompt_template: 'vicuna',
  }));
  return dir;
}

/** The fixture checkpoint's tensors, optionally edited. */
function checkpointTensors(edit: (t: TensorToWrite[]) => TensorToWrite[]): TensorToWrite[] {
  const s = SafetensorsStore.open(join(TINY, 'mgllava', 'model.safetensors'));
  return edit(s.keys().map((k) => {
    const r = s.get(k)!;
    return { name: k, dtype: r.dtype, shape: r.shape, data: readBytes(r) };
  }));
}

interface BadCase {
  name: string;
  args: () => string[];
  error: RegExp;
}

const bad: BadCase[] = [
  { name: 'missing image file', args: () => ['--image', '/nonexistent/cat.jpg'], error: /\/nonexistent\/cat\.jpg/ },
  {
    name: 'corrupt image',
    args: () => {
      const p = join(tempDir(), 'noise.jpg');
      writeFileSync(p, Buffer.from('this is not an image at all'));
      return ['--image', p];
    },
    error: /noise\.jpg/,
  },
  {
    name: 'truncated image',
    args: () => {
      const p = join(tempDir(), 'half.jpg');
      writeFileSync(p, readFileSync(IMAGE).subarray(0, 40000));
      return ['--image', p];
    },
    error: /half\.jpg/,
  },
  {
    name: 'malformed box JSON',
    args: () => {
      const p = join(tempDir(), 'boxes.json');
      writeFileSync(p, '{"boxes": [[1, 2, 3]], "labels": ["cat"], "scores": [0.5]}');
      return ['--image', IMAGE, '--boxes', p];
    },
    error: /boxes\.json/,
  },
  {
    name: 'truncated safetensors checkpoint',
    args: () => {
      const dir = modelFolder('model.safetensors');
      copyFileSync(join(TINY, 'mgllava', 'model.safetensors'), join(dir, 'model.safetensors'));
      truncateSync(join(dir, 'model.safetensors'), 100000);
      return ['--model', dir];
    },
    error: /model\.safetensors.*truncated/,
  },
  {
    name: '.pth whose pickle names a forbidden global',
    args: () => {
      const dir = modelFolder('evil.pth');
      const pkl = new Pickle().proto().emptyDict().mark();
      pkl.str('fuse_module.gate.0.weight').global('os', 'system').mark().str('echo pwned').tuple().reduce();
      writeFileSync(join(dir, 'evil.pth'), buildZip([
        { name: 'evil/data.pkl', data: pkl.setitems().stop().bytes() },
        { name: 'evil/byteorder', data: Buffer.from('little') },
      ]));
      return ['--model', dir];
    },
    error: /evil\.pth.*forbidden global os\.system/,
  },
  {
    name: 'checkpoint missing a tensor',
    args: () => {
      const dir = modelFolder('model.safetensors');
      writeSafetensors(join(dir, 'model.safetensors'), checkpointTensors((t) => t.filter((x) => x.name !== 'fuse_module.gate.0.weight')));
      return ['--model', dir];
    },
    error: /missing tensor fuse_module\.gate\.0\.weight/,
  },
  {
    name: 'mis-shaped tensor',
    args: () => {
      const dir = modelFolder('model.safetensors');
      writeSafetensors(join(dir, 'model.safetensors'), checkpointTensors((t) => t.map((x) =>
        x.name === 'projector.model.2.weight' ? { ...x, shape: [8, 32] } : x)));
      return ['--model', dir];
    },
    error: /projector\.model\.2\.weight has shape \[8, 32\], expected \[16, 16\]/,
  },
];

for (const c of bad) {
  test(`bad input: ${c.name} -> one clear line, non-zero exit, nothing written`, async () => {
    const outDir = tempDir();
    mkdirSync(outDir, { recursive: true });
    const out = join(outDir, 'tokens.safetensors');
    let args = c.args();
    if (!args.includes('--image')) args = [...args, '--image', IMAGE, '--boxes', BOXES];
    const r = await mgllava(['encode', ...args, '--out', out, '--quiet']);
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
    assert.match(lines[0]!, /^mgllava: /);
    assert.doesNotMatch(lines[0]!, /internal error|\n\s+at /);
    assert.match(lines[0]!, c.error);
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(outDir), []);
  });
}
