// `mgllava serve` on the tiny model, driven by the official `openai` client on 127.0.0.1: plain and
// streamed answers equal `mgllava chat --json`'s, an image as a data URL with its boxes,
// top_logprobs, errors in OpenAI's shape; 20 concurrent requests each equal to its sequential
// answer and the 21st beyond a full queue refused with 429; a disconnect mid-stream frees its
// slot; 1,000 malformed requests all get a 4xx while the server stays up; the CLI's SIGTERM.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { TINY } from '../helpers/fixtures.js';
import { CLI, mgllava } from '../helpers/cli.js';
import { startServer, type RunningServer } from '../../src/server/server.js';

const IMAGE = join(TINY, 'example.jpg');
const BOXES = JSON.parse(readFileSync(join(TINY, 'boxes_raw.json'), 'utf8')) as unknown;
const DATA_URL = `data:image/jpeg;base64,${readFileSync(IMAGE).toString('base64')}`;
const QUESTION = 'What is shown in this image?';

let server: RunningServer | undefined;
let client: OpenAI;
const KEY = 'sk-serve-test';

async function up(): Promise<{ server: RunningServer; client: OpenAI }> {
  if (!server) {
    server = await startServer({ host: '127.0.0.1', port: 0, apiKey: KEY, maxQueue: 19, maxBody: 4 * 1024 * 1024, allowLocalFiles: false, worker: { spec: { model: join(TINY, 'mgllava') }, maxPixels: 100_000_000 } });
    await server.ready;
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
  }
  return { server, client };
}

after(async () => {
  await server?.close();
});

const imageMessage = (q: string): OpenAI.Chat.Completions.ChatCompletionMessageParam[] => [
  { role: 'user', content: [{ type: 'image_url', image_url: { url: DATA_URL } }, { type: 'text', text: q }] },
];

test('serve: the openai client gets the answer mgllava chat --json gives (image, boxes, greedy), streamed or not', async () => {
  const { client } = await up();
  const cli = await mgllava(['chat', '--model', join(TINY, 'mgllava'), '--image', IMAGE, '--boxes', join(TINY, 'boxes_raw.json'), '--max-new-tokens', '12', '--temperature', '0', '--json', QUESTION]);
  assert.equal(cli.code, 0, cli.stderr);
  const want = JSON.parse(cli.stdout) as { text: string; prompt_tokens: number; ids: number[] };
  const body = { model: 'mgllava', messages: imageMessage(QUESTION), max_tokens: 12, temperature: 0, mgllava: { boxes: BOXES } };
  const r = await client.chat.completions.create(body as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0]!.message.content, want.text);
  assert.equal(r.choices[0]!.finish_reason, 'length');
  assert.equal(r.usage!.prompt_tokens, want.prompt_tokens);
  assert.equal(r.usage!.completion_tokens, want.ids.length);
  const ext = (r as unknown as { mgllava: { boxes: { boxes: number[][]; labels: string[] }; timings: Record<string, number> } }).mgllava;
  assert.deepEqual(ext.boxes.labels, (BOXES as { labels: string[] }).labels);
  assert.equal(typeof ext.timings.prefill_ms, 'number');

  const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } } as OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming);
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
    const ch = c.choices[0];
    if (ch?.delta.content) text += ch.delta.content;
    if (ch?.finish_reason) finish = ch.finish_reason;
  }
  assert.equal(text, want.text);
  assert.equal(finish, 'length');
  assert.equal(usage?.completion_tokens, want.ids.length);
});

test('serve: top_logprobs, a text-only question, and the models list', async () => {
  const { client } = await up();
  const r = await client.chat.completions.create({ model: 'mgllava', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3 });
  const lp = r.choices[0]!.logprobs!.content!;
  assert.equal(lp.length, r.usage!.completion_tokens);
  for (const t of lp) {
    assert.equal(t.top_logprobs.length, 3);
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs[0]!.logprob >= t.top_logprobs[1]!.logprob, true);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
  }
  // Greedy: the chosen token is the most likely one.
  for (const t of lp) assert.equal(t.logprob, t.top_logprobs[0]!.logprob);
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['mgllava']);
});

test('serve: errors come in OpenAI\'s shape and status', async () => {
  const { server, client } = await up();
  await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }), (e: unknown) => e instanceof OpenAI.NotFoundError && /does not exist/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'mgllava', messages: [], max_tokens: 3 }), (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param: string }).param === 'messages');
  await assert.rejects(client.chat.completions.create({ model: 'mgllava', messages: [{ role: 'user', content: 'hi' }], temperature: 5 }), (e: unknown) => e instanceof OpenAI.BadRequestError && /temperature/.test(e.message));
  await assert.rejects(new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'wrong', maxRetries: 0 }).models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError);
  await assert.rejects(client.chat.completions.create({ model: 'mgllava', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }, { type: 'text', text: 'x' }] }] }), (e: unknown) => e instanceof OpenAI.BadRequestError && /not a PNG, JPEG or WebP/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'mgllava', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'file:///etc/passwd' } }, { type: 'text', text: 'x' }] }] }), (e: unknown) => e instanceof OpenAI.BadRequestError && /--allow-local-files/.test(e.message));
});

async function inFlight(url: string): Promise<number> {
  const t = await (await fetch(`${url}/metrics`)).text();
  return Number(/^mgllava_requests_in_flight (\d+)$/m.exec(t)![1]);
}

test('serve: 20 concurrent requests are each answered as alone; the 21st beyond the full queue gets 429', async () => {
  const { server, client } = await up();
  const ask = (i: number) => client.chat.completions.create({ model: 'mgllava', messages: [{ role: 'user', content: `Question number ${i}: count to ten.` }], max_tokens: 120, temperature: 0 });
  const alone: string[] = [];
  for (let i = 0; i < 20; i++) alone.push((await ask(i)).choices[0]!.message.content!);
  const all = Array.from({ length: 20 }, (_, i) => ask(i));
  const t0 = Date.now();
  while ((await inFlight(server.url)) < 20) {
    assert.ok(Date.now() - t0 < 20_000, 'the 20 requests never were all in flight');
    await new Promise((r) => setTimeout(r, 2));
  }
  const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'mgllava', messages: [{ role: 'user', content: 'one more' }], max_tokens: 2 }) });
  assert.equal(res.status, 429);
  assert.ok(res.headers.get('retry-after'));
  assert.equal(((await res.json()) as { error: { type: string } }).error.type, 'rate_limit_error');
  const got = (await Promise.all(all)).map((r) => r.choices[0]!.message.content!);
  assert.deepEqual(got, alone);
});

test('serve: a client that disconnects mid-stream frees its slot', async () => {
  const { server, client } = await up();
  const ac = new AbortController();
  const stream = await client.chat.completions.create({ model: 'mgllava', messages: [{ role: 'user', content: 'Tell me a long story.' }], max_tokens: 1500, temperature: 0, stream: true }, { signal: ac.signal });
  let n = 0;
  const before = Number(/^mgllava_generated_tokens_total (\d+)$/m.exec(await (await fetch(`${server.url}/metrics`)).text())![1]);
  try {
    for await (const c of stream) {
      void c;
      if (++n === 3) ac.abort();
    }
  } catch {
    // the aborted request ends the iteration, with or without an error
  }
  assert.ok(n >= 3 && n < 1500, `${n} chunks`);
  const t0 = Date.now();
  while ((await inFlight(server.url)) > 0) {
    assert.ok(Date.now() - t0 < 10_000, 'the cancelled generation still holds its slot');
    await new Promise((r) => setTimeout(r, 10));
  }
  const m = await (await fetch(`${server.url}/metrics`)).text();
  const made = Number(/^mgllava_generated_tokens_total (\d+)$/m.exec(m)![1]) - before;
  assert.ok(made < 1500, `the cancelled request generated ${made} tokens`);
  const r = await client.chat.completions.create({ model: 'mgllava', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
  assert.equal(r.choices.length, 1);
});

test('serve: 1,000 malformed requests each get a 4xx in OpenAI\'s error shape; the server stays up and its memory bounded', async () => {
  const { server } = await up();
  const auth = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
  const big = 'x'.repeat(5 * 1024 * 1024);
  const cases: (() => Promise<Response>)[] = [
    () => fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: '{not json' }),
    () => fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: '[]' }),
    () => fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'mgllava', messages: 'hi' }) }),
    () => fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'mgllava', messages: [{ role: 'tool', content: 'x' }] }) }),
    () => fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'mgllava', messages: [{ role: 'user', content: 'x' }], max_tokens: -1 }) }),
    () => fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'mgllava', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/jpeg;base64,/9j/4AAQ' } }] }] }) }),
    () => fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'mgllava', messages: [{ role: 'user', content: 'x' }], mgllava: { boxes: { boxes: [[1, 2, 0, 0]], labels: ['a'], scores: [1] } } }) }),
    () => fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: big }),
    () => fetch(`${server.url}/v1/nope`, { headers: auth }),
    () => fetch(`${server.url}/v1/models`, { method: 'DELETE', headers: auth }),
    () => fetch(`${server.url}/v1/models`),
  ];
  const rss0 = process.memoryUsage().rss;
  const statuses = new Map<number, number>();
  for (let i = 0; i < 1000; i++) {
    const res = await cases[i % cases.length]!();
    const body = (await res.json()) as { error?: { message?: unknown; type?: unknown } };
    assert.ok(res.status >= 400 && res.status < 500, `case ${i % cases.length}: status ${res.status}`);
    assert.equal(typeof body.error?.message, 'string', `case ${i % cases.length}`);
    assert.equal(typeof body.error?.type, 'string');
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
  }
  assert.deepEqual([...statuses.keys()].sort(), [400, 401, 404, 405, 413]);
  const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
  assert.ok(grown < 300, `RSS grew ${grown.toFixed(0)} MiB`);
  assert.equal((await fetch(`${server.url}/health`)).status, 200);
});

test('serve CLI: ready on a free port, answers, and SIGTERM stops it cleanly', async () => {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--model', join(TINY, 'mgllava')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /ready: .* at (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error(`exited: ${err}`)));
  });
  const r = await new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 }).chat.completions.create({ model: 'mgllava', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
  assert.equal(r.choices.length, 1);
  const code = await new Promise<number | null>((resolve) => {
    child.once('exit', (c) => resolve(c));
    child.kill('SIGTERM');
  });
  assert.equal(code, 0, err);
  assert.match(err, /SIGTERM: stopping/);
});

test('serve: a follow-up about the same image reuses the prompt cache and answers as a full re-prefill does', async () => {
  const { client } = await up();
  const body = (messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[]) =>
    ({ model: 'mgllava', messages, max_tokens: 8, temperature: 0, mgllava: { boxes: BOXES } }) as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;
  const q1 = imageMessage('What is in the picture?');
  const a1 = await client.chat.completions.create(body(q1));
  const turn2 = [...q1, { role: 'assistant' as const, content: a1.choices[0]!.message.content! }, { role: 'user' as const, content: 'And what colour is it?' }];
  const a2 = await client.chat.completions.create(body(turn2));
  const cached = a2.usage!.prompt_tokens_details!.cached_tokens!;
  assert.ok(cached > 576 && cached < a2.usage!.prompt_tokens, `cached ${cached} of ${a2.usage!.prompt_tokens}`);
  assert.equal((a2 as unknown as { mgllava: { timings: { encode_ms: number } } }).mgllava.timings.encode_ms < 50, true, 'the image was encoded again');
  // The same conversation on a model without caches.
  const { MgLlava } = await import('../../src/model/mg-llava.js');
  const { parseBoxJson } = await import('../../src/preprocess/boxes.js');
  const fresh = await MgLlava.load({ model: join(TINY, 'mgllava') }, { cache: false });
  try {
    const r = await fresh.chat({
      prompt: 'And what colour is it?', history: [{ question: 'What is in the picture?', answer: a1.choices[0]!.message.content! }],
      image: readFileSync(IMAGE), boxes: parseBoxJson(JSON.stringify(BOXES), 'boxes'), generation: { maxNewTokens: 8, temperature: 0 },
    }).complete();
    assert.equal(r.cachedTokens, 0);
    assert.equal(a2.choices[0]!.message.content, r.text);
    assert.equal(a2.usage!.prompt_tokens, r.promptTokens);
  } finally {
    await fresh.release();
  }
});

test('serve --parallel 4: concurrent requests decode together and each answers as alone', async () => {
  const s = await startServer({ host: '127.0.0.1', port: 0, maxQueue: 16, maxBody: 4 * 1024 * 1024, allowLocalFiles: false, worker: { spec: { model: join(TINY, 'mgllava') }, maxPixels: 100_000_000, parallel: 4 } });
  try {
    await s.ready;
    const c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'none', maxRetries: 0 });
    const ask = (i: number) => c.chat.completions.create({
      model: 'mgllava', max_tokens: 30 + 5 * i, temperature: 0,
      messages: i % 3 === 0 ? imageMessage(`Question ${i} about the picture`) : [{ role: 'user', content: `Question number ${i}: count to ten.` }],
      ...(i % 3 === 0 ? { mgllava: { boxes: BOXES } } : {}),
    } as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming);
    const alone: string[] = [];
    for (let i = 0; i < 10; i++) alone.push((await ask(i)).choices[0]!.message.content!);
    const together = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(i)));
    assert.deepEqual(together.map((r) => r.choices[0]!.message.content), alone);
  } finally {
    await s.close();
  }
});

test('serve --cors and --allow-local-files: preflight and headers; a file:// image is read only when allowed', async () => {
  const s = await startServer({ host: '127.0.0.1', port: 0, maxQueue: 4, maxBody: 4 * 1024 * 1024, cors: 'http://localhost:3000', allowLocalFiles: true, worker: { spec: { model: join(TINY, 'mgllava') }, maxPixels: 100_000_000 } });
  try {
    await s.ready;
    const pre = await fetch(`${s.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'http://localhost:3000', 'access-control-request-method': 'POST' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), 'http://localhost:3000');
    assert.match(pre.headers.get('access-control-allow-headers')!, /authorization/);
    const c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'none', maxRetries: 0 });
    const r = await c.chat.completions.create({ model: 'mgllava', max_tokens: 4, temperature: 0, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `file://${IMAGE}` } }, { type: 'text', text: QUESTION }] }] });
    const viaData = await c.chat.completions.create({ model: 'mgllava', max_tokens: 4, temperature: 0, messages: imageMessage(QUESTION) });
    assert.equal(r.choices[0]!.message.content, viaData.choices[0]!.message.content);
    assert.equal(r.usage!.prompt_tokens, viaData.usage!.prompt_tokens);
    await assert.rejects(c.chat.completions.create({ model: 'mgllava', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'file:///nonexistent/x.png' } }, { type: 'text', text: 'x' }] }] }), (e: unknown) => e instanceof OpenAI.BadRequestError && /image file not found/.test(e.message));
  } finally {
    await s.close();
  }
});
