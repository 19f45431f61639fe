// `mgllava chat` end to end on the fixture model: case C's greedy ids, prompt length and
// first-step log-probabilities (against the log-softmax of the reference's prefill logits),
// through an image with boxes and through a visual-token cache; streaming text, text-only
// questions, the interactive loop, and bad input.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TINY, casesJson, fixture } from '../helpers/fixtures.js';
import { logSoftmax, topIndices } from '../../src/generate/sampling.js';
import { tempDir } from '../weights/torch-builders.js';
import { CLI, assertOneLineError, mgllava } from '../helpers/cli.js';

const IMAGE = join(TINY, 'example.jpg');
const BOXES = join(TINY, 'boxes_raw.json');
const QUESTION = 'What is shown in this image?';


interface ChatJson {
  text: string;
  ids: number[];
  prompt_tokens: number;
  logprobs: { id: number; logprob: number; top: { id: number; logprob: number }[] }[];
  timings: Record<string, number>;
}

function checkCaseC(out: ChatJson): void {
  const c = casesJson();
  const greedy = c['C.greedy_ids'] as number[];
  const margins = c['C.step_top1_minus_top2'] as number[];
  // Greedy ids may differ only where the reference's top-2 margin is below 1e-3 (README); step i's
  // margin (after feeding greedy_ids[i]) decides greedy_ids[i+1].
  greedy.forEach((id, i) => {
    if (i === 0 || margins[i - 1]! >= 1e-3) assert.equal(out.ids[i], id, `greedy id ${i}`);
  });
  assert.equal(out.ids.length, 12);
  assert.equal(out.prompt_tokens, c['C.seq_len']);
  // First step: top-5 of the log-softmax of the reference's prefill logits.
  const ref = logSoftmax(fixture('C.prefill_last_logits').data);
  const top = topIndices(ref, 5);
  assert.deepEqual(out.logprobs[0]!.top.map((t) => t.id), top);
  out.logprobs[0]!.top.forEach((t, i) => assert.ok(Math.abs(t.logprob - ref[top[i]!]!) < 1e-3, `top ${i}: ${t.logprob} vs ${ref[top[i]!]}`));
  assert.ok(Math.abs(out.logprobs[0]!.logprob - ref[out.ids[0]!]!) < 1e-3);
  for (const k of ['load_ms', 'encode_ms', 'prefill_ms', 'decode_tokens_per_s']) assert.equal(typeof out.timings[k], 'number', k);
}

const GREEDY12 = ['--max-new-tokens', '12', '--temperature', '0', '--json'];

test('chat --json on the fixture model reproduces case C (ids, 722 prompt tokens, first-step logprobs)', async () => {
  const r = await mgllava(['chat', '--model', join(TINY, 'mgllava'), '--image', IMAGE, '--boxes', BOXES, ...GREEDY12, QUESTION]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  checkCaseC(JSON.parse(r.stdout) as ChatJson);
});

test('chat through the .pth checkpoint and a visual-token cache from encode gives the same answer', async () => {
  const cache = join(tempDir(), 'tokens.safetensors');
  const e = await mgllava(['encode', '--model', join(TINY, 'mgllava'), '--image', IMAGE, '--boxes', BOXES, '--out', cache, '-q']);
  assert.equal(e.code, 0, e.stderr);
  const r = await mgllava(['chat', '--checkpoint', join(TINY, 'mgllava', 'iter_1.pth'), '--llm', join(TINY, 'llm'),
    '--visual-encoder', join(TINY, 'clip'), '--visual-encoder-aux', join(TINY, 'convnext'), '--template', 'vicuna',
    '--visual-cache', cache, ...GREEDY12, QUESTION]);
  assert.equal(r.code, 0, r.stderr);
  checkCaseC(JSON.parse(r.stdout) as ChatJson);
});

test('streamed text equals the JSON text; text-only questions work', async () => {
  const args = ['chat', '--model', join(TINY, 'mgllava'), '--max-new-tokens', '8', '--temperature', '0', '-q'];
  const j = JSON.parse((await mgllava([...args, '--json', 'Hello there'])).stdout) as ChatJson;
  const s = await mgllava([...args, 'Hello there']);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout, `${j.text}\n`);
  assert.equal(j.ids.length, 8);
  assert.ok(j.prompt_tokens > 30 && j.prompt_tokens < 60, `text-only prompt of ${j.prompt_tokens} tokens`);
});

test('sampling with a seed is reproducible', async () => {
  const args = ['chat', '--max-new-tokens', '6', '--temperature', '1', '--top-k', '0', '--top-p', '1', '--json', 'Hi'];
  const a = JSON.parse((await mgllava([...args, '--seed', '7'])).stdout) as ChatJson;
  const b = JSON.parse((await mgllava([...args, '--seed', '7'])).stdout) as ChatJson;
  assert.deepEqual(a.ids, b.ids);
});

test('interactive: double Enter ends a question, RESET clears history, EXIT quits', async () => {
  const child = spawn(process.execPath, [CLI, 'chat', '--max-new-tokens', '3', '--temperature', '0', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.end('Hello\nthere\n\nRESET\nHi\n\nEXIT\n');
  const code = await new Promise<number>((res) => child.on('close', (c) => res(c ?? -1)));
  assert.equal(code, 0, err);
  assert.equal(out.trimEnd().split('\n').length, 2, `two answers expected, got:\n${out}`);
  assert.match(err, /history cleared/);
  // the first prompt, then one after each question and after RESET
  assert.equal((err.match(/double enter to end input/g) ?? []).length, 4);
});

interface Bad {
  name: string;
  args: () => string[];
  error: RegExp;
}

const bad: Bad[] = [
  { name: 'unknown template', args: () => ['--template', 'alpaca', 'hi'], error: /unknown prompt template "alpaca".*vicuna/ },
  {
    name: 'context overflow',
    args: () => {
      const dir = tempDir();
      cpSync(join(TINY, 'llm'), join(dir, 'llm'), { recursive: true });
      const llmCfg = JSON.parse(readFileSync(join(TINY, 'llm', 'config.json'), 'utf8')) as Record<string, unknown>;
      writeFileSync(join(dir, 'llm', 'config.json'), JSON.stringify({ ...llmCfg, max_position_embeddings: 100 }));
      return ['--llm', join(dir, 'llm'), ...release(), '--image', IMAGE, '--boxes', BOXES, QUESTION];
    },
    error: /prompt of 722 tokens exceeds the model's context of 100/,
  },
  {
    name: 'tokenizer file missing',
    args: () => {
      const dir = tempDir();
      cpSync(join(TINY, 'llm'), join(dir, 'llm'), { recursive: true });
      rmSync(join(dir, 'llm', 'tokenizer.json'));
      return ['--llm', join(dir, 'llm'), ...release(), 'hi'];
    },
    error: /tokenizer\.json/,
  },
  { name: 'non-UTF-8 question bytes', args: () => ['caf\uFFFD'], error: /not valid UTF-8/ },
  { name: '--boxes without --image', args: () => ['--boxes', BOXES, 'hi'], error: /--boxes needs --image/ },
  { name: 'not a visual cache', args: () => ['--visual-cache', join(TINY, 'clip', 'model.safetensors'), 'hi'], error: /not a visual-token cache/ },
];

function release(): string[] {
  return ['--checkpoint', join(TINY, 'mgllava', 'model.safetensors'), '--visual-encoder', join(TINY, 'clip'), '--visual-encoder-aux', join(TINY, 'convnext')];
}

for (const c of bad) {
  test(`bad input: ${c.name} -> one clear line, non-zero exit`, async () => {
    const r = await mgllava(['chat', '-q', '--max-new-tokens', '4', ...c.args()]);
    assertOneLineError(r, c.error);
  });
}
