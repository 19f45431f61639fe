// `mgllava quantize` end to end, as a user runs it: quantize the fixture LLM with the checkpoint's
// fine-tuned llm.* weights, then `mgllava chat --llm <quantized>` on case C's image and boxes: at 8
// bits the 12 greedy ids of the reference, at 4 bits the ids the library gives for the same folder
// (they drift from the reference; test/quantize/llm.test.ts measures by how much). Bad input ends
// with one line on stderr, a non-zero exit and no output folder.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TINY, casesJson } from '../helpers/fixtures.js';
import { tempDir } from '../weights/torch-builders.js';
import { loadModel } from '../../src/index.js';
import { readBoxFile } from '../../src/preprocess/box-file.js';
import { assertOneLineError, mgllava } from '../helpers/cli.js';

const IMAGE = join(TINY, 'example.jpg');
const BOXES = join(TINY, 'boxes_raw.json');
const QUESTION = 'What is shown in this image?';
let tmp: string;


before(() => {
  tmp = tempDir();
});
after(() => rmSync(tmp, { recursive: true, force: true }));

const chatArgs = (llm: string) => ['chat', '--model', join(TINY, 'mgllava'), '--llm', llm, '--image', IMAGE, '--boxes', BOXES,
  '--max-new-tokens', '12', '--temperature', '0', '--json', QUESTION];

test('quantize --bits 8 with the .pth checkpoint, then chat --llm: case C\'s greedy ids and 722 prompt tokens', async () => {
  const out = join(tmp, 'q8');
  const q = await mgllava(['quantize', '--llm', join(TINY, 'llm'), '--checkpoint', join(TINY, 'mgllava', 'iter_1.pth'), '--out', out, '--bits', '8']);
  assert.equal(q.code, 0, q.stderr);
  assert.equal(q.stdout, '');
  // Progress (no terminal here: a line per tenth), then the summary.
  assert.match(q.stderr, /quantizing to 8 bits: 50% \(\d+\/21, /);
  assert.match(q.stderr, /quantizing to 8 bits \.\.\. done \(/);
  assert.match(q.stderr, /wrote .*q8: 21 tensors, 15 linear weights at 8 bits, [\d.]+ MiB, 21 llm\.\* tensors from .*iter_1\.pth\n$/);
  const r = await mgllava(chatArgs(out));
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { ids: number[]; prompt_tokens: number };
  const c = casesJson();
  assert.deepEqual(j.ids, c['C.greedy_ids']);
  assert.equal(j.prompt_tokens, c['C.seq_len']);
});

test('quantize (4 bits, the default) then chat --llm gives the ids of loadModel on the same folder', async () => {
  const out = join(tmp, 'q4');
  const q = await mgllava(['quantize', '-q', '--llm', join(TINY, 'llm'), '--checkpoint', join(TINY, 'mgllava', 'model.safetensors'), '--out', out]);
  assert.equal(q.code, 0, q.stderr);
  assert.equal(q.stderr, '');
  const r = await mgllava(chatArgs(out));
  assert.equal(r.code, 0, r.stderr);
  const cli = JSON.parse(r.stdout) as { ids: number[] };
  const model = await loadModel({ model: join(TINY, 'mgllava'), llm: out });
  try {
    const api = await model.chat({ image: IMAGE, boxes: await readBoxFile(BOXES), prompt: QUESTION, generation: { maxNewTokens: 12, temperature: 0 } }).complete();
    assert.equal(api.promptTokens, 722);
    assert.deepEqual(cli.ids, api.ids);
    assert.deepEqual(api.ids, casesJson()['C.greedy_ids'], 'the default 4-bit folder (head at 8 bits) keeps case C\'s greedy ids');
  } finally {
    await model.release();
  }
});

interface Bad {
  name: string;
  args: () => string[];
  error: RegExp;
}

const bad: Bad[] = [
  { name: 'parent of --out missing', args: () => ['--llm', join(TINY, 'llm'), '--out', join(tmp, 'no', 'q')], error: /folder .*\/no does not exist \(--out\)/ },
  { name: '--bits 3', args: () => ['--llm', join(TINY, 'llm'), '--out', join(tmp, 'b3'), '--bits', '3'], error: /option '--bits <n>' argument '3' is invalid\. expected 4 or 8/ },
  { name: '--block-size 24', args: () => ['--llm', join(TINY, 'llm'), '--out', join(tmp, 'b24'), '--block-size', '24'], error: /expected a power of two, at least 16/ },
  { name: '--head-bits below --bits', args: () => ['--llm', join(TINY, 'llm'), '--out', join(tmp, 'h4'), '--bits', '8', '--head-bits', '4'], error: /--head-bits 4 is below --bits 8/ },
  { name: '--head-bits with --report', args: () => ['--llm', join(TINY, 'llm'), '--report', '--head-bits', '8'], error: /--head-bits goes with quantizing/ },
  { name: '--out exists', args: () => ['--llm', join(TINY, 'llm'), '--out', tmp], error: /already exists/ },
  { name: 'no --out', args: () => ['--llm', join(TINY, 'llm')], error: /missing --out \(the folder to create\), or give --report/ },
  { name: '--llm not a folder', args: () => ['--llm', join(TINY, 'example.jpg'), '--out', join(tmp, 'x')], error: /not an LLM folder \(--llm\)/ },
  { name: '--checkpoint missing', args: () => ['--llm', join(TINY, 'llm'), '--checkpoint', join(tmp, 'none.pth'), '--out', join(tmp, 'x')], error: /none\.pth: no such file/ },
];

for (const c of bad) {
  test(`quantize bad input: ${c.name} -> one clear line, non-zero exit, nothing written`, async () => {
    const before = readdirSync(tmp).sort();
    const r = await mgllava(['quantize', ...c.args()]);
    assertOneLineError(r, c.error);
    assert.deepEqual(readdirSync(tmp).sort(), before);
    assert.ok(!existsSync(join(tmp, 'x')));
  });
}

test('quantize --model DIR reads the LLM and the checkpoint from mgllava_config.json (the same 8-bit folder as --llm/--checkpoint)', async () => {
  const out = join(tmp, 'q8-model');
  const q = await mgllava(['quantize', '--model', join(TINY, 'mgllava'), '--out', out, '--bits', '8', '--quiet']);
  assert.equal(q.code, 0, q.stderr);
  const r = await mgllava(chatArgs(out));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((JSON.parse(r.stdout) as { ids: number[] }).ids, casesJson()['C.greedy_ids']);
  assertOneLineError(await mgllava(['quantize', '--model', join(TINY, 'mgllava'), '--llm', join(TINY, 'llm'), '--out', join(tmp, 'x')]), /not both/);
  assertOneLineError(await mgllava(['quantize', '--out', join(tmp, 'y')]), /missing --llm/);
});
