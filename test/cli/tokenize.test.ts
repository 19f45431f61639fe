// `mgllava tokenize` on a tokenizer.json folder and a SentencePiece tokenizer.model folder, its
// one-line errors, and `mgllava chat` on the tiny model whose LLM folder has only a tokenizer.model.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, TINY } from '../helpers/fixtures.js';
import { assertOneLineError, mgllava } from '../helpers/cli.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { buildPrompt, getTemplate, promptChunks } from '../../src/tokenizer/templates.js';

const SPM = join(ROOT, 'fixtures', 'spm');
const JSON_LLM = join(TINY, 'llm');

test('tokenize: ids without BOS/EOS, --special adds BOS (tokenizer.model folder)', async () => {
  const tok = Tokenizer.fromFolder(SPM);
  const r = await mgllava(['tokenize', '--llm', SPM, 'Hello world']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '417 496 1627 856\n'); // cases.json `simple`
  const s = await mgllava(['tokenize', '--llm', SPM, '--special', 'Hello world']);
  assert.equal(s.stdout, '1 417 496 1627 856\n');
  const j = await mgllava(['tokenize', '--llm', SPM, '--json', '--', '-x <s>']);
  assert.equal(j.code, 0, j.stderr);
  const ids = tok.encode('-x <s>', { addSpecialTokens: false });
  assert.deepEqual(JSON.parse(j.stdout), { ids, pieces: ids.map((id) => tok.idToToken(id)) });
  assert.ok(ids.includes(1)); // the special-token string is split out, as in Hugging Face
});

test('tokenize: a tokenizer.json folder, and --decode', async () => {
  const tok = Tokenizer.fromFolder(JSON_LLM);
  const text = 'Hello, wörld 你好';
  const ids = tok.encode(text, { addSpecialTokens: false });
  const r = await mgllava(['tokenize', '--llm', JSON_LLM, text]);
  assert.equal(r.stdout, `${ids.join(' ')}\n`);
  const d = await mgllava(['tokenize', '--llm', JSON_LLM, '--decode', ids.join(','), '--json']);
  assert.equal(d.code, 0, d.stderr);
  assert.deepEqual(JSON.parse(d.stdout), { text });
  const plain = await mgllava(['tokenize', '--llm', SPM, '--decode', '1, 231,192,163, 282']);
  assert.equal(plain.stdout, '你 the\n');
  const kept = await mgllava(['tokenize', '--llm', SPM, '--special', '--decode', '1,282']);
  assert.equal(kept.stdout, '<s> the\n');
});

test('tokenize: one-line errors (missing folder, bad --decode list, id out of range, no text)', async () => {
  assertOneLineError(await mgllava(['tokenize', '--llm', join(ROOT, 'no-such-folder'), 'hi']), /not a folder.*no-such-folder/);
  assertOneLineError(await mgllava(['tokenize', '--llm', SPM, '--decode', '1,x,3']), /--decode.*1,x,3/);
  assertOneLineError(await mgllava(['tokenize', '--llm', SPM, '--decode', '1,,3']), /--decode/);
  assertOneLineError(await mgllava(['tokenize', '--llm', SPM, '--decode', '-1']), /--decode/);
  assertOneLineError(await mgllava(['tokenize', '--llm', SPM, '--decode', '5000']), /outside the vocabulary/);
  assertOneLineError(await mgllava(['tokenize', '--llm', SPM]), /nothing to tokenize/);
  const empty = await mkdtemp(join(tmpdir(), 'mgllava-tok-'));
  try {
    assertOneLineError(await mgllava(['tokenize', '--llm', empty, 'hi']), /tokenizer\.json/);
  } finally {
    await rm(empty, { recursive: true, force: true });
  }
});

test('chat runs on the tiny model with a tokenizer.model-only LLM folder', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mgllava-spm-chat-'));
  try {
    const llm = join(dir, 'llm');
    const mg = join(dir, 'mgllava');
    await mkdir(llm);
    await mkdir(mg);
    for (const f of ['config.json', 'model.safetensors']) await copyFile(join(TINY, 'llm', f), join(llm, f));
    for (const f of ['tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json']) await copyFile(join(SPM, f), join(llm, f));
    const cfg = JSON.parse(await readFile(join(TINY, 'mgllava', 'mgllava_config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(mg, 'mgllava_config.json'), JSON.stringify({
      ...cfg,
      llm,
      visual_encoder: join(TINY, 'clip'),
      visual_encoder_aux: join(TINY, 'convnext'),
      checkpoint: join(TINY, 'mgllava', 'model.safetensors'),
    }));
    const r = await mgllava(['chat', '--model', mg, '--max-new-tokens', '4', '--temperature', '0', '--json', '-q', 'Hello']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { text: string; ids: number[]; prompt_tokens: number };
    // The prompt was tokenized by the SentencePiece folder: its length is BOS + the spm encoding of
    // the vicuna prompt (the tokenizer.json of the tiny LLM gives a different count).
    const spm = Tokenizer.fromFolder(llm);
    const prompt = buildPrompt(getTemplate(String(cfg.prompt_template)), { turns: [{ question: 'Hello' }] });
    const expected = promptChunks(spm, prompt).flat().length;
    assert.equal(out.prompt_tokens, expected);
    assert.notEqual(promptChunks(Tokenizer.fromFolder(JSON_LLM), prompt).flat().length, expected);
    // The LLM's vocabulary is 32000, the tokenizer's 2000: generated ids need not be pieces, but the
    // answer is what the spm tokenizer decodes of them (ids outside its vocabulary are ignored, as HF).
    assert.ok(out.ids.length >= 1 && out.ids.length <= 4);
    assert.equal(out.text, spm.decode(out.ids, { skipSpecialTokens: true }).trim());
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
