// The chat page (web/) in Debian's Chromium, headless through puppeteer-core, against `mgllava
// serve` on the tiny model with the tiny OWLv2 detector, on 127.0.0.1: an uploaded image and a
// question give the answer the API gives for the same request (greedy), streamed; the detected
// boxes drawn over the image and hidden by their toggle; the timings; a follow-up question sends
// the whole history with the image in the first message; Stop ends a long answer and frees the
// server; a 400 shows as a message; New chat, drop and paste. Skipped without Chromium.
// MGLLAVA_SCREENSHOT=1 saves docs/img/serve-page.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser, type ElementHandle, type Page, type SerializedAXNode } from 'puppeteer-core';
import { ROOT, TINY } from '../helpers/fixtures.js';
import { startServer, type RunningServer } from '../../src/server/server.js';

const CHROMIUM = process.env.MGLLAVA_CHROMIUM ?? '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
const IMAGE = join(TINY, 'example.jpg');
const DATA_URL = `data:image/jpeg;base64,${readFileSync(IMAGE).toString('base64')}`;
const extra = JSON.parse(readFileSync(join(TINY, 'extra_cases.json'), 'utf8')) as Record<string, unknown>;
const MAX_TOKENS = 12;

let server: RunningServer;
let browser: Browser;
let page: Page;
/** The bodies the page posted to /v1/chat/completions, in order. */
const posted: Promise<Record<string, unknown>>[] = [];
/** Uncaught errors in the page. */
const pageErrors: Error[] = [];

interface Answer {
  text: string;
  boxes?: { boxes: number[][]; labels: string[] };
}

before(async () => {
  if (skip) return;
  server = await startServer({
    host: '127.0.0.1',
    port: 0,
    maxQueue: 4,
    maxBody: 4 * 1024 * 1024,
    allowLocalFiles: false,
    worker: { spec: { model: join(TINY, 'mgllava'), detector: join(TINY, 'owlv2') }, detection: { tags: extra['O2.tags'] as string[], threshold: extra['O2.threshold'] as number }, maxPixels: 100_000_000 },
  });
  await server.ready;
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--headless=new', '--disable-dev-shm-usage'] });
  page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 960 });
  page.on('pageerror', (e) => pageErrors.push(e as Error));
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) posted.push(r.fetchPostData().then((d) => JSON.parse(d ?? r.postData() ?? 'null') as Record<string, unknown>));
  });
  await page.goto(server.url, { waitUntil: 'load' });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const control = (name: string) => page.waitForSelector(`::-p-aria(${name})`) as Promise<ElementHandle>;

/** A file input by its accessible name (the ARIA query handler does not see file inputs). */
async function fileInput(name: string): Promise<ThisParameterType<ElementHandle['uploadFile']>> {
  const find = (n: SerializedAXNode | null): SerializedAXNode | undefined => (n?.role === 'button' && n.name === name ? n : n?.children?.map(find).find(Boolean));
  const node = find(await page.accessibility.snapshot());
  assert.ok(node, `no control named ${name}`);
  const el = await node.elementHandle();
  assert.equal(await el!.evaluate((e) => e.getAttribute('type')), 'file');
  return el as unknown as ThisParameterType<ElementHandle['uploadFile']>;
}

async function setValue(name: string, value: string): Promise<void> {
  const el = await control(name);
  await el.click({ count: 3 });
  await el.type(value);
  assert.equal(await el.evaluate((e) => (e as unknown as { value: string }).value), value);
}

const answers = () => page.evaluate(`[...document.querySelectorAll('.msg.assistant')].map((e) => ({ state: e.dataset.state, text: e.querySelector('.text').textContent, timings: e.querySelector('.timings').textContent }))`) as Promise<{ state: string; text: string; timings: string }[]>;

/** Type a question, send it, and wait until its answer is no longer streaming. */
async function ask(question: string): Promise<{ state: string; text: string; timings: string }> {
  const n = (await answers()).length;
  await (await control('Question')).type(question);
  await (await control('Send')).click();
  await page.waitForFunction(`(() => { const a = document.querySelectorAll('.msg.assistant'); return a.length > ${n} && a[${n}].dataset.state !== 'streaming'; })()`, { timeout: 60_000 });
  return (await answers())[n]!;
}

/** The API's (non-streamed) answer to a request. */
async function api(body: Record<string, unknown>): Promise<Answer> {
  const r = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: false }) });
  assert.equal(r.status, 200);
  const j = (await r.json()) as { choices: { message: { content: string } }[]; mgllava: { boxes?: Answer['boxes'] } };
  return { text: j.choices[0]!.message.content, ...(j.mgllava.boxes ? { boxes: j.mgllava.boxes } : {}) };
}

async function inFlight(): Promise<number> {
  const t = await (await fetch(`${server.url}/metrics`)).text();
  return Number(/^mgllava_requests_in_flight (\d+)$/m.exec(t)![1]);
}

const Q1 = 'What is shown in this image?';
const Q2 = 'And what colour is it?';
let first: Answer;

test('page: an uploaded image and a question get the API\'s answer, streamed, with the detected boxes and the timings', { skip }, async () => {
  await page.waitForFunction(`!document.getElementById('send').disabled`, { timeout: 30_000 });
  assert.match(await page.$eval('#model', (e) => e.textContent ?? ''), /mgllava .*detector/);
  await setValue('Temperature', '0');
  await setValue('Max tokens', String(MAX_TOKENS));
  await (await fileInput('Image')).uploadFile(IMAGE);
  await page.waitForSelector('figure.image img');
  assert.deepEqual(await page.evaluate(`(() => { const i = document.querySelector('figure.image img'); return [i.naturalWidth, i.naturalHeight]; })()`), [640, 514]);

  const got = await ask(Q1);
  assert.equal(got.state, 'done');
  const request = { model: 'mgllava', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: DATA_URL } }, { type: 'text', text: Q1 }] }], max_tokens: MAX_TOKENS, temperature: 0, mgllava: { detect: true } };
  const sent = await posted[0]!;
  assert.deepEqual({ ...sent, stream: undefined, stream_options: undefined }, { ...request, stream: undefined, stream_options: undefined });
  assert.equal(sent['stream'], true);
  assert.deepEqual(sent['stream_options'], { include_usage: true });
  first = await api(request);
  assert.notEqual(got.text, '');
  assert.equal(got.text, first.text);
  assert.match(got.timings, /^prefill [\d.]+ ms · decode [\d.]+ tokens\/s · \d+ of \d+ prompt tokens cached · stopped at max tokens$/);

  // The detector's boxes, drawn in the image's pixels, and their toggle.
  assert.ok(first.boxes && first.boxes.boxes.length > 0);
  const rects = (await page.evaluate(`[...document.querySelectorAll('svg.boxes rect')].map((r) => ['x', 'y', 'width', 'height'].map((k) => Number(r.getAttribute(k))))`)) as number[][];
  assert.deepEqual(rects, first.boxes.boxes.map(([x0, y0, x1, y1]) => [x0!, y0!, Math.max(0, x1! - x0!), Math.max(0, y1! - y0!)]));
  assert.equal(await page.$eval('svg.boxes', (e) => e.getAttribute('viewBox')), '0 0 640 514');
  const shown = () => page.evaluate(`getComputedStyle(document.querySelector('svg.boxes')).display !== 'none'`) as Promise<boolean>;
  assert.equal(await shown(), true);
  await (await control('Show boxes')).click();
  assert.equal(await shown(), false);
  await (await control('Show boxes')).click();
  assert.equal(await shown(), true);
});

test('page: a follow-up question sends the whole history (the image in the first message) and gets the API\'s answer', { skip }, async () => {
  const got = await ask(Q2);
  assert.equal(got.state, 'done');
  const request = {
    model: 'mgllava',
    messages: [
      { role: 'user', content: [{ type: 'image_url', image_url: { url: DATA_URL } }, { type: 'text', text: Q1 }] },
      { role: 'assistant', content: first.text },
      { role: 'user', content: Q2 },
    ],
    max_tokens: MAX_TOKENS,
    temperature: 0,
    mgllava: { detect: true },
  };
  const sent = await posted[1]!;
  assert.deepEqual(sent['messages'], request.messages);
  const want = await api(request);
  assert.notEqual(got.text, '');
  assert.equal(got.text, want.text);
  assert.equal((await answers()).length, 2);
  if (process.env.MGLLAVA_SCREENSHOT === '1') {
    mkdirSync(join(ROOT, 'docs', 'img'), { recursive: true });
    await page.screenshot({ path: join(ROOT, 'docs', 'img', 'serve-page.png') });
  }
});

test('page: Stop ends a long answer, keeps what came, and frees the server', { skip }, async () => {
  await (await control('New chat')).click();
  assert.equal((await answers()).length, 0);
  assert.equal(await page.$('figure.image'), null);
  await setValue('Max tokens', '1500');
  const question = 'Count to a thousand.';
  // The tiny model writes 1,500 tokens in well under a second: Stop is clicked from inside the
  // page as soon as the first text shows, where a click from here could come after the end.
  assert.equal(await (await control('Stop')).evaluate((e) => e.id), 'stop');
  await page.evaluate(`(() => {
    const log = document.getElementById('log');
    const seen = new MutationObserver(() => {
      if (log.querySelector('.msg.assistant .text')?.textContent) {
        seen.disconnect();
        document.getElementById('stop').click();
      }
    });
    seen.observe(log, { subtree: true, childList: true, characterData: true });
  })()`);
  await (await control('Question')).type(question);
  await (await control('Send')).click();
  await page.waitForFunction(`document.querySelector('.msg.assistant')?.dataset.state !== 'streaming'`, { timeout: 30_000 });
  const [a] = await answers();
  assert.equal(a!.state, 'stopped');
  assert.equal(a!.timings, 'stopped');
  assert.notEqual(a!.text, '');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await answers())[0]!.text, a!.text);
  const t0 = Date.now();
  while ((await inFlight()) > 0) {
    assert.ok(Date.now() - t0 < 10_000, 'the stopped generation still runs');
    await new Promise((r) => setTimeout(r, 20));
  }
  // The server saw the client go away and ended the generation (499), shorter than the whole answer.
  assert.match(await (await fetch(`${server.url}/metrics`)).text(), /^mgllava_requests_total\{route="\/v1\/chat\/completions",status="499"\} 1$/m);
  const whole = await api({ model: 'mgllava', messages: [{ role: 'user', content: question }], max_tokens: 1500, temperature: 0 });
  assert.ok(a!.text.length < whole.text.length && whole.text.startsWith(a!.text), `${a!.text.length} of ${whole.text.length} characters`);
  assert.equal(await page.$eval('#send', (e) => (e as unknown as { disabled: boolean }).disabled), false);
  assert.equal(await page.$eval('#stop', (e) => (e as unknown as { disabled: boolean }).disabled), true);
});

test('page: an error is shown as a message and the question comes back; New chat, drop and paste', { skip }, async () => {
  await (await control('New chat')).click();
  await setValue('Temperature', '5');
  await setValue('Max tokens', '4');
  await (await control('Question')).type('hello');
  await (await control('Send')).click();
  const alert = await page.waitForSelector('.msg.error[role=alert]');
  assert.match(await alert!.evaluate((e) => e.textContent ?? ''), /temperature/);
  assert.equal((await answers()).length, 0);
  assert.equal(await page.$eval('#question', (e) => (e as unknown as { value: string }).value), 'hello');
  await setValue('Temperature', '0');
  await (await control('Send')).click();
  await page.waitForFunction(`document.querySelector('.msg.assistant')?.dataset.state === 'done'`, { timeout: 30_000 });

  // Drop an image file onto the page: a new conversation with it.
  await page.evaluate(`(async () => {
    const blob = await (await fetch(${JSON.stringify(DATA_URL)})).blob();
    const dt = new DataTransfer();
    dt.items.add(new File([blob], 'dropped.jpg', { type: 'image/jpeg' }));
    document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  })()`);
  await page.waitForSelector('figure.image img');
  assert.equal((await answers()).length, 0);
  assert.equal(await page.$eval('figure.image img', (e) => e.getAttribute('src')), DATA_URL);

  // Paste a PNG: it replaces the image of the conversation not yet started.
  await page.evaluate(`(async () => {
    const c = document.createElement('canvas');
    c.width = 32; c.height = 24;
    c.getContext('2d').fillRect(0, 0, 10, 10);
    const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
    const dt = new DataTransfer();
    dt.items.add(new File([blob], 'pasted.png', { type: 'image/png' }));
    document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  })()`);
  await page.waitForFunction(`document.querySelector('figure.image img')?.naturalWidth === 32`);
  assert.equal(await page.$$eval('figure.image', (f) => f.length), 1);
  assert.match((await page.$eval('figure.image img', (e) => e.getAttribute('src'))) ?? '', /^data:image\/png;base64,/);
  assert.deepEqual(pageErrors, []);
});
