// `mgllava eval` end to end on the tiny model over a small MMBench-format TSV: a whole run scored
// as `eval score` scores its predictions; killed and resumed (no item twice, none lost, the same
// answers); two shards merged equal to one run; a changed setting refused; an OpenAI-compatible
// endpoint (a stand-in server on 127.0.0.1) with concurrency; bad input as one-line errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../weights/torch-builders.js';
import { CLI, assertOneLineError, mgllava } from '../helpers/cli.js';
import { parseTsv } from '../../src/eval/tsv.js';

const DATA = join(ROOT, 'fixtures', 'eval', 'mmbench.tsv');
const FAST = ['--model', join(ROOT, 'fixtures', 'tiny', 'mgllava'), '--no-boxes', '--max-new-tokens', '3', '-q'];
const table = parseTsv(readFileSync(DATA, 'utf8'));
const indices = Array.from({ length: table.length }, (_, r) => table.str(r, 'index'));

function predictionLines(dir: string): { index: string; prediction: string }[] {
  return readFileSync(join(dir, 'predictions.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { index: string; prediction: string });
}

function byIndex(dir: string): Map<string, string> {
  return new Map(predictionLines(dir).map((p) => [p.index, p.prediction]));
}

let whole: string | undefined;
/** One whole run (made once, shared by the tests that compare with it). */
async function wholeRun(): Promise<string> {
  if (whole) return whole;
  const dir = join(tempDir(), 'whole');
  const r = await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', dir, ...FAST, '--json']);
  assert.equal(r.code, 0, r.stderr);
  whole = dir;
  return dir;
}

test('eval: a whole run answers every row once and scores its predictions as eval score does', async () => {
  const dir = await wholeRun();
  const lines = predictionLines(dir);
  assert.deepEqual(lines.map((l) => l.index).sort(), [...indices].sort());
  const pred = join(dir, 'MMBench_DEV_EN_predictions.tsv');
  const written = parseTsv(readFileSync(pred, 'utf8'));
  assert.deepEqual(written.columns, [...table.columns.filter((c) => c !== 'image'), 'prediction']);
  const again = await mgllava(['eval', 'score', '--bench', 'mmbench', '--data', DATA, '--predictions', pred, '--json']);
  assert.equal(again.code, 0, again.stderr);
  const score = JSON.parse(again.stdout) as { overall: number; table: unknown };
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as { overall: number; table: unknown };
  assert.equal(summary.overall, score.overall);
  assert.deepEqual(summary.table, score.table);
  assert.ok(existsSync(join(dir, 'MMBench_DEV_EN_acc.csv')));
  assert.match(readFileSync(join(dir, 'summary.md'), 'utf8'), /^# mmbench \(MMBench_DEV_EN\)\n\n\| split \| Overall \|/);
  // A rerun finds everything done and answers nothing.
  const r = await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', dir, ...FAST, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { made: number; resumed: number; total: number };
  assert.deepEqual([j.made, j.resumed, j.total], [0, 42, 42]);
});

test('eval: killed mid-run and resumed, no item is answered twice or lost, and the answers are the same', async () => {
  const ref = byIndex(await wholeRun());
  const dir = join(tempDir(), 'killed');
  // Its own process group, so that the kill reaches the CLI and its re-executed child alike.
  const child = spawn(process.execPath, [CLI, 'eval', '--bench', 'mmbench', '--data', DATA, '--out', dir, ...FAST], { detached: true, stdio: 'ignore' });
  const file = join(dir, 'predictions.jsonl');
  const t0 = Date.now();
  while (!(existsSync(file) && readFileSync(file, 'utf8').split('\n').length > 6)) {
    assert.ok(Date.now() - t0 < 60_000, 'no predictions within a minute');
    await new Promise((r) => setTimeout(r, 20));
  }
  process.kill(-child.pid!, 'SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const before = predictionLines(dir).length;
  assert.ok(before > 0 && before < 42, `killed after ${before} items`);
  appendFileSync(file, '{"index": "99'); // a torn last line, as a kill mid-write leaves it
  const r = await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', dir, ...FAST, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { made: number; resumed: number };
  assert.equal(j.resumed, before);
  assert.equal(j.made, 42 - before);
  const lines = predictionLines(dir);
  assert.equal(lines.length, 42);
  assert.equal(new Set(lines.map((l) => l.index)).size, 42);
  assert.deepEqual(byIndex(dir), ref);
});

test('eval: two shards merged equal one run (predictions file and score)', async () => {
  const one = await wholeRun();
  const base = tempDir();
  const dirs = [join(base, 's1'), join(base, 's2')];
  for (const [i, d] of dirs.entries()) {
    const r = await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', d, '--shard', `${i + 1}/2`, ...FAST, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { total: number; note: string };
    assert.equal(j.total, 21);
    assert.match(j.note, /merge/);
  }
  const a = predictionLines(dirs[0]!).map((l) => l.index);
  const b = predictionLines(dirs[1]!).map((l) => l.index);
  assert.equal(a.filter((x) => b.includes(x)).length, 0, 'shards overlap');
  const out = join(base, 'merged');
  const m = await mgllava(['eval', 'merge', ...dirs, '--out', out, '--json']);
  assert.equal(m.code, 0, m.stderr);
  const mj = JSON.parse(m.stdout) as { merged: number; overall: number; shards: string[] };
  assert.deepEqual([mj.merged, mj.shards], [42, ['1/2', '2/2']]);
  assert.equal(readFileSync(join(out, 'MMBench_DEV_EN_predictions.tsv'), 'utf8'), readFileSync(join(one, 'MMBench_DEV_EN_predictions.tsv'), 'utf8'));
  assert.equal(readFileSync(join(out, 'MMBench_DEV_EN_acc.csv'), 'utf8'), readFileSync(join(one, 'MMBench_DEV_EN_acc.csv'), 'utf8'));
  // The same shard twice, or a run of another setting, is refused.
  assertOneLineError(await mgllava(['eval', 'merge', dirs[0]!, dirs[0]!, '--out', join(base, 'm2')]), /both shard 1\/2/);
  assertOneLineError(await mgllava(['eval', 'merge', dirs[0]!, one, join(base, 'nosuch'), '--out', join(base, 'm3')]), /nosuch is not an eval run folder/);
});

test('eval: a run folder refuses another prompt style, generation length or shard', async () => {
  const dir = await wholeRun();
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', dir, ...FAST, '--prompt-style', 'vlmevalkit']), /holds another run \(promptStyle: release vs vlmevalkit\)/);
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', dir, '--model', join(ROOT, 'fixtures', 'tiny', 'mgllava'), '--no-boxes', '--max-new-tokens', '4']), /holds another run \(maxNewTokens: 3 vs 4\)/);
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', dir, ...FAST, '--shard', '1/3']), /holds another run \(shard/);
});

interface Seen {
  body: { model: string; messages: { role: string; content: { type: string; text?: string; image_url?: { url: string } }[] }[]; temperature: number; max_tokens: number };
  auth: string | undefined;
}

async function standIn(): Promise<{ url: string; seen: Seen[]; peak: () => number; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  let inFlight = 0;
  let peak = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const json = (code: number, v: unknown) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(v));
      };
      if (req.method === 'GET' && req.url === '/v1/models') return json(200, { object: 'list', data: [{ id: 'stand-in', object: 'model', created: 0, owned_by: 'test' }] });
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return json(404, { error: { message: 'not found' } });
      seen.push({ body: JSON.parse(body) as Seen['body'], auth: req.headers.authorization });
      inFlight++;
      peak = Math.max(peak, inFlight);
      setTimeout(() => {
        inFlight--;
        json(200, { id: 'x', object: 'chat.completion', created: 0, model: 'stand-in', choices: [{ index: 0, message: { role: 'assistant', content: ' The answer is B. ' }, finish_reason: 'stop' }] });
      }, 15);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/v1`, seen, peak: () => peak, close: () => new Promise((r) => server.close(() => r())) };
}

test('eval --endpoint: an OpenAI-compatible server answers with the release prompts, the image as a data URL, concurrently', async () => {
  const s = await standIn();
  try {
    const dir = join(tempDir(), 'endpoint');
    process.env.MGLLAVA_TEST_KEY = 'sk-test';
    const r = await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', dir, '--endpoint', s.url, '--concurrency', '3', '--api-key-env', 'MGLLAVA_TEST_KEY', '--max-new-tokens', '7', '-q', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(s.seen.length, 42);
    assert.ok(s.peak() > 1 && s.peak() <= 3, `peak concurrency ${s.peak()}`);
    const first = s.seen.find((x) => x.body.messages[0]!.content[1]!.text!.startsWith(table.str(0, 'question')) || true)!;
    assert.equal(first.auth, 'Bearer sk-test');
    assert.equal(first.body.model, 'stand-in');
    assert.equal(first.body.temperature, 0);
    assert.equal(first.body.max_tokens, 7);
    // Row 0's request: its image and the release's MCQ prompt.
    const q0 = s.seen.find((x) => x.body.messages[0]!.content[0]!.image_url!.url === `data:image/png;base64,${table.str(0, 'image')}`);
    assert.ok(q0, 'no request carried row 0\'s image');
    const hint = table.isNa(0, 'hint') ? '' : `${table.str(0, 'hint')}\n`;
    const options = ['A', 'B', 'C', 'D'].filter((c) => !table.isNa(0, c)).map((c) => `${c}. ${table.str(0, c)}\n`).join('');
    assert.equal(q0.body.messages[0]!.content[1]!.text, `${hint}${table.str(0, 'question')}\n${options}Answer with the option's letter from the given choices directly.`);
    const preds = byIndex(dir);
    assert.equal(preds.size, 42);
    for (const p of preds.values()) assert.equal(p, 'The answer is B.');
    const j = JSON.parse(r.stdout) as { overall: number };
    assert.equal(typeof j.overall, 'number');
  } finally {
    await s.close();
  }
});

test('eval: bad input is one line naming the file or the row', async () => {
  const dir = tempDir();
  const text = readFileSync(DATA, 'utf8');
  const recs = text.split('\n');
  // A TSV without its question column.
  const header = recs[0]!.split('\t');
  const q = header.indexOf('question');
  const noQuestion = join(dir, 'noq.tsv');
  writeFileSync(noQuestion, recs.map((l) => l.split('\t').filter((_, j) => j !== q).join('\t')).join('\n'));
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', noQuestion, '--out', join(dir, 'r1'), ...FAST]), /noq\.tsv has no question column/);
  // A broken base64 image in the first row.
  const img = header.indexOf('image');
  const broken = join(dir, 'broken.tsv');
  const row1 = recs[1]!.split('\t');
  row1[img] = 'not-an-image-'.repeat(8);
  writeFileSync(broken, [recs[0], row1.join('\t'), ...recs.slice(2)].join('\n'));
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', broken, '--out', join(dir, 'r2'), ...FAST, '--limit', '1']), new RegExp(`row ${table.str(0, 'index')}: the image cell is not a decodable image`));
  // A box file without an item (the copies share their original's entry).
  const originals = indices.filter((k) => Number(k) < 1e6);
  const boxes = join(dir, 'boxes.json');
  writeFileSync(boxes, JSON.stringify(originals.slice(1).map((id) => ({ id: Number(id), boxes: [[0, 0, 4, 4]], labels: ['thing'], scores: [0.9] }))));
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', join(dir, 'r3'), '--boxes', boxes, '-q']), new RegExp(`boxes\\.json: no box entry for row ${originals[0]}`));
  // With every original's entry, the copies find theirs through the image they share.
  writeFileSync(boxes, JSON.stringify(originals.map((id) => ({ id: Number(id), boxes: [[0, 0, 4, 4]], labels: ['thing'], scores: [0.9] }))));
  const ok = await mgllava(['eval', '--model', join(ROOT, 'fixtures', 'tiny', 'mgllava'), '--bench', 'mmbench', '--data', DATA, '--out', join(dir, 'r4'), '--boxes', boxes, '--max-new-tokens', '2', '-q', '--limit', '2']);
  assert.equal(ok.code, 0, ok.stderr);
  // Flags.
  assertOneLineError(await mgllava(['eval', '--bench', 'nosuch', '--data', DATA, '--out', join(dir, 'r5')]), /unknown benchmark "nosuch"; known: mmbench/);
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', join(dir, 'r6'), '--shard', '3/2']), /--shard 3\/2: expected I\/N/);
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', DATA]), /give --out RUN_DIR/);
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', join(dir, 'r7'), '--endpoint', 'http://127.0.0.1:1/v1', '--model', 'x']), /not both/);
});

test('eval with the detector: boxes found once per image (circular copies share their original\'s), kept across reruns', async () => {
  const dir = join(tempDir(), 'detector');
  const args = ['eval', '--bench', 'mmbench', '--data', DATA, '--out', dir, '--detector', join(ROOT, 'fixtures', 'tiny', 'owlv2'), '--tags', 'cat,dog', '--max-new-tokens', '2', '-q', '--json'];
  const first = await mgllava([...args, '--limit', '5']);
  assert.equal(first.code, 0, first.stderr);
  const det = () => readFileSync(join(dir, 'detections.jsonl'), 'utf8').trimEnd().split('\n').map((l) => (JSON.parse(l) as { key: string }).key);
  const before = det();
  const r = await mgllava(args);
  assert.equal(r.code, 0, r.stderr);
  const keys = det();
  assert.deepEqual(keys.slice(0, before.length), before);
  assert.equal(new Set(keys).size, keys.length, 'an image was detected twice');
  assert.deepEqual([...keys].sort(), indices.filter((k) => Number(k) < 1e6).sort());
  // Other tags are another run.
  assertOneLineError(await mgllava([...args.slice(0, -2), '--tags', 'cat', '-q']), /holds another run \(boxes: /);
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', join(dir, 'x'), '--no-boxes', '--tags', 'cat']), /--no-boxes and the detector flags/);
});

test('eval --endpoint against mgllava serve itself: the predictions are the server\'s answers to the release prompts', async () => {
  const { startServer } = await import('../../src/server/server.js');
  const { default: OpenAI } = await import('openai');
  const { itemPrompt } = await import('../../src/eval/prompts.js');
  const { benchmarkFor } = await import('../../src/eval/benchmarks.js');
  const s = await startServer({ host: '127.0.0.1', port: 0, maxQueue: 8, maxBody: 4 * 1024 * 1024, allowLocalFiles: false, worker: { spec: { model: join(ROOT, 'fixtures', 'tiny', 'mgllava') }, maxPixels: 100_000_000, parallel: 2 } });
  try {
    await s.ready;
    const dir = join(tempDir(), 'real-endpoint');
    const r = await mgllava(['eval', '--bench', 'mmbench', '--data', DATA, '--out', dir, '--endpoint', `${s.url}/v1`, '--concurrency', '2', '--limit', '6', '--max-new-tokens', '5', '-q', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const preds = byIndex(dir);
    assert.equal(preds.size, 6);
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'none', maxRetries: 0 });
    for (let row = 0; row < 6; row++) {
      const a = await client.chat.completions.create({
        model: 'mgllava', temperature: 0, max_tokens: 5,
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${table.str(row, 'image')}` } }, { type: 'text', text: itemPrompt(benchmarkFor('mmbench'), table, row, 'release') }] }],
      });
      assert.equal(preds.get(table.str(row, 'index')), a.choices[0]!.message.content!.trim(), `row ${row}`);
    }
  } finally {
    await s.close();
  }
});
