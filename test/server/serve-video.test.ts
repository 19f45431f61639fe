// `mgllava serve` with a video_url part, driven by the official `openai` client on 127.0.0.1 against
// the tiny model: fixtures/video/synthetic_landscape.mkv as a data URL with the fixture's per-frame
// boxes answers as MgLlava.chat({video}) does (greedy), reports the frames' boxes and indices; a
// follow-up reuses the prompt cache; an image with a video, a text file as a video, too few frames
// and video options without a video are 400s naming the problem; the temporary files go.
// The tiny LLM's context (2048) is shorter than an 8-frame prompt (~4.8k positions): the server
// and the reference use a copy of its folder with max_position_embeddings 8192 (as
// test/video/video-tokens.test.ts does).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { ROOT, TINY } from '../helpers/fixtures.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { MgLlava } from '../../src/model/mg-llava.js';
import { readVideoBoxFile, videoBoxEntry } from '../../src/video/boxes.js';
import type { Detections } from '../../src/preprocess/boxes.js';
import { longContextLlm } from '../helpers/long-context.js';

const VIDEO_DIR = join(ROOT, 'fixtures', 'video');
const VIDEO = join(VIDEO_DIR, 'synthetic_landscape.mkv');
const BOX_FILE = join(VIDEO_DIR, 'video_boxes.json');
const FRAMES_JSON = (JSON.parse(readFileSync(BOX_FILE, 'utf8')) as { frames: unknown[] }[])[0]!.frames as { labels: string[] }[];
const DATA_URL = `data:video/x-matroska;base64,${readFileSync(VIDEO).toString('base64')}`;
const IMAGE_URL = `data:image/jpeg;base64,${readFileSync(join(TINY, 'example.jpg')).toString('base64')}`;
const QUESTION = 'What is the red block doing while the blue ball moves across the scene?';
const INDICES = [0, 5, 11, 16, 22, 27, 33, 39];
const KEY = 'sk-serve-video-test';

type Msg = OpenAI.Chat.Completions.ChatCompletionMessageParam;
type Ext = { boxes?: { boxes: number[][]; labels: string[]; scores: number[]; detected: boolean }[]; frame_indices?: number[] };

let dir = '';
let server: RunningServer;
let client: OpenAI;
let boxes: Detections[];

/** A copy of the tiny LLM folder whose context holds a video prompt. */

const temporaries = () => readdirSync(tmpdir()).filter((n) => n.startsWith('mgllava-serve-video-'));
/** The temporary files left after the jobs (they go just after the answer is sent: wait up to 3 s). */
async function leftOver(): Promise<string[]> {
  for (let i = 0; i < 60 && temporaries().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  return temporaries();
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mgllava-svt-llm-'));
  const llm = longContextLlm(dir);
  server = await startServer({ host: '127.0.0.1', port: 0, apiKey: KEY, maxQueue: 4, maxBody: 4 * 1024 * 1024, allowLocalFiles: false, worker: { spec: { model: join(TINY, 'mgllava'), llm }, maxPixels: 100_000_000 } });
  await server.ready;
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
  boxes = videoBoxEntry(await readVideoBoxFile(BOX_FILE), BOX_FILE, 'synthetic_landscape', 8);
});

after(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const videoMessage = (url: string, q: string): Msg => ({ role: 'user', content: [{ type: 'video_url', video_url: { url } }, { type: 'text', text: q }] } as unknown as Msg);

async function ask(messages: Msg[], mgllava: Record<string, unknown>, maxTokens = 8) {
  const body = { model: 'mgllava', messages, max_tokens: maxTokens, temperature: 0, mgllava };
  const r = await client.chat.completions.create(body as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming);
  return { r, ext: (r as unknown as { mgllava: Ext }).mgllava };
}

async function status400(messages: Msg[], mgllava: Record<string, unknown> | undefined, match: RegExp): Promise<void> {
  await assert.rejects(
    client.chat.completions.create({ model: 'mgllava', messages, max_tokens: 4, ...(mgllava ? { mgllava } : {}) } as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming),
    (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError, String(e));
      assert.equal(e.status, 400, e.message);
      assert.match(e.message, match);
      return true;
    },
  );
}

test('serve video: a data URL video with its per-frame boxes answers as MgLlava.chat({video}); a follow-up reuses the cache', async () => {
  const model = await MgLlava.load({ model: join(TINY, 'mgllava'), llm: join(dir, 'llm') });
  let want: Awaited<ReturnType<MgLlava['chat']>['result']>;
  let want2: Awaited<ReturnType<MgLlava['chat']>['result']>;
  try {
    want = await model.chat({ prompt: QUESTION, video: VIDEO, videoBoxes: boxes, videoOptions: { pad: true, limit: 100, frames: 8 }, generation: { maxNewTokens: 8, temperature: 0 } }).complete();
    want2 = await model.chat({ prompt: 'And the ball?', history: [{ question: QUESTION, answer: want.text }], video: VIDEO, videoBoxes: boxes, videoOptions: { pad: true, limit: 100, frames: 8 }, generation: { maxNewTokens: 6, temperature: 0 } }).complete();
  } finally {
    await model.release();
  }
  const { r, ext } = await ask([videoMessage(DATA_URL, QUESTION)], { video_boxes: FRAMES_JSON });
  assert.equal(r.choices[0]!.message.content, want.text);
  assert.equal(r.usage!.prompt_tokens, want.promptTokens);
  assert.ok(r.usage!.prompt_tokens > 4749, `prompt_tokens ${r.usage!.prompt_tokens}`);
  assert.equal(r.usage!.completion_tokens, want.ids.length);
  assert.deepEqual(ext.frame_indices, INDICES);
  assert.equal(ext.boxes!.length, 8);
  ext.boxes!.forEach((b, j) => {
    assert.deepEqual(b.labels, FRAMES_JSON[j]!.labels);
    assert.equal(b.boxes.length, b.labels.length);
    assert.equal(b.detected, false);
  });
  assert.deepEqual(await leftOver(), [], 'the temporary video file is removed after the job');

  // The follow-up: the whole first turn (the 8 frames' tokens included) comes from the prompt cache.
  const follow = await ask([videoMessage(DATA_URL, QUESTION), { role: 'assistant', content: r.choices[0]!.message.content! }, { role: 'user', content: 'And the ball?' }], { video_boxes: FRAMES_JSON }, 6);
  assert.equal(follow.r.choices[0]!.message.content, want2.text);
  assert.equal(follow.r.usage!.prompt_tokens, want2.promptTokens);
  const cached = follow.r.usage!.prompt_tokens_details!.cached_tokens!;
  assert.ok(cached >= r.usage!.prompt_tokens - 1 && cached < follow.r.usage!.prompt_tokens, `cached_tokens ${cached} of ${follow.r.usage!.prompt_tokens}`);
  assert.deepEqual(follow.ext.frame_indices, INDICES);
});

test('serve video: frames 2 without boxes (placeholder per frame), streamed', async () => {
  const stream = await client.chat.completions.create({ model: 'mgllava', messages: [videoMessage(DATA_URL, QUESTION)], max_tokens: 4, temperature: 0, stream: true, mgllava: { frames: 2, pad: false } } as unknown as OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming);
  let ext: Ext | undefined;
  let finish: string | null = null;
  for await (const c of stream) {
    const e = (c as unknown as { mgllava?: Ext }).mgllava;
    if (e) ext = e;
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
  }
  assert.equal(finish, 'length');
  assert.deepEqual(ext?.frame_indices, [0, 39]);
  assert.equal(ext?.boxes, undefined);
  assert.deepEqual(await leftOver(), []);
});

test('serve video: an image with a video, a text file as a video, too few frames, misplaced options are 400s', async () => {
  await status400([{ role: 'user', content: [{ type: 'image_url', image_url: { url: IMAGE_URL } }, { type: 'video_url', video_url: { url: DATA_URL } }, { type: 'text', text: 'hi' }] } as unknown as Msg], undefined, /an image and a video/);
  const text = `data:video/mp4;base64,${Buffer.from('this is a text file, not a video\n'.repeat(20)).toString('base64')}`;
  await status400([videoMessage(text, QUESTION)], undefined, /not a video/);
  await status400([videoMessage(DATA_URL, QUESTION)], { frames: 64 }, /40 frames, fewer than the 64/);
  await status400([videoMessage(DATA_URL, QUESTION)], { video_boxes: FRAMES_JSON.slice(0, 3) }, /3 entries for 8 sampled frames/);
  await status400([videoMessage(DATA_URL, QUESTION)], { boxes: { boxes: [], labels: [], scores: [] } }, /video_boxes/);
  await status400([{ role: 'user', content: 'hi' }], { frames: 2 }, /goes with a video/);
  await status400([videoMessage('data:video/avi;base64,AAAA', QUESTION)], undefined, /data:video\/mp4\|webm/);
  await status400([videoMessage('file:///etc/hostname', QUESTION)], undefined, /--allow-local-files/);
  assert.deepEqual(await leftOver(), []);
  // The server is still up.
  const r = await client.chat.completions.create({ model: 'mgllava', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 2, temperature: 0 });
  assert.equal(r.choices.length, 1);
});

test('serve video: an http URL is fetched into a temporary file (answers as the data URL does), removed after the job', async () => {
  const files = createServer((req, res) => {
    if (req.url === '/clip.mkv') res.writeHead(200, { 'content-type': 'video/x-matroska' }).end(readFileSync(VIDEO));
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', () => r()));
  try {
    const base = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    const viaHttp = await ask([videoMessage(`${base}/clip.mkv`, QUESTION)], { frames: 2 }, 4);
    const viaData = await ask([videoMessage(DATA_URL, QUESTION)], { frames: 2 }, 4);
    assert.equal(viaHttp.r.choices[0]!.message.content, viaData.r.choices[0]!.message.content);
    assert.equal(viaHttp.r.usage!.prompt_tokens, viaData.r.usage!.prompt_tokens);
    assert.deepEqual(viaHttp.ext.frame_indices, [0, 39]);
    await status400([videoMessage(`${base}/missing.mkv`, QUESTION)], undefined, /HTTP 404/);
    assert.deepEqual(await leftOver(), []);
  } finally {
    await new Promise((r) => files.close(r));
  }
});
