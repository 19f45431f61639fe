// MgLlava.chat's caches on the fixture model: the prompt (KV) prefix cache (a follow-up runs only
// the positions after the prefix it shares with the turn before; greedy ids as a full
// re-prefill's), the visual-token cache (a repeated image runs no vision session), their byte
// budgets, and cancellation through an AbortSignal.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { TINY, casesJson } from '../helpers/fixtures.js';
import { loadModel, readBoxFile, decodeImage, MgLlava, Tokenizer, getTemplate, buildPrompt, toDetections } from '../../src/index.js';
import type { ChatRequest, ChatResult, Detections, LoadOptions } from '../../src/index.js';
import { promptChunks } from '../../src/tokenizer/templates.js';

const IMAGE = join(TINY, 'example.jpg');
const BYTES = new Uint8Array(readFileSync(IMAGE));
const Q1 = 'What is shown in this image?';
const Q2 = 'What colour is it?';
const GREEDY = { temperature: 0, maxNewTokens: 12 };

const models: MgLlava[] = [];
async function model(opts: LoadOptions = {}): Promise<MgLlava> {
  const m = await loadModel(join(TINY, 'mgllava'), opts);
  models.push(m);
  return m;
}
after(async () => {
  for (const m of models) await m.release();
});

let boxesCache: Detections | undefined;
async function boxes(): Promise<Detections> {
  boxesCache ??= await readBoxFile(join(TINY, 'boxes_raw.json'));
  return boxesCache;
}

const ask = (m: MgLlava, req: Omit<ChatRequest, 'generation'>): Promise<ChatResult> => m.chat({ ...req, generation: GREEDY }).complete();

/** The positions of a turn as the test sees them: ids, the image as -1s, then the answer's fed ids. */
function flatSequence(history: { question: string; answer: string }[], question: string, visualLength: number, fed: number[] = []): number[] {
  const tok = Tokenizer.fromFolder(join(TINY, 'llm'));
  const chunks = promptChunks(tok, buildPrompt(getTemplate('vicuna'), { turns: [...history, { question }], image: true }));
  assert.equal(chunks.length, 2);
  return [...chunks[0]!, ...new Array<number>(visualLength).fill(-1), ...chunks[1]!, ...fed];
}

function lcp(a: number[], b: number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/** What a turn fed to its cache after the prompt: every answer id but the last, unless it ended at EOS. */
const fedIds = (r: ChatResult) => (r.finishReason === 'eos' ? r.ids : r.ids.slice(0, -1));

test('a follow-up about the same image reuses the first turn\'s prefix; ids as a full re-prefill\'s', async () => {
  const on = await model();
  const off = await model({ cache: false });
  const b = await boxes();
  const first = await ask(on, { image: BYTES, boxes: b, prompt: Q1 });
  assert.deepEqual(first.ids, casesJson()['C.greedy_ids']);
  assert.equal(first.promptTokens, 722);
  assert.equal(first.cachedTokens, 0);
  assert.equal(first.timings.prefillTokens, 722);
  assert.equal(first.visualCached, false);

  const history = [{ question: Q1, answer: first.text }];
  const second = await ask(on, { image: BYTES, boxes: b, prompt: Q2, history });
  const textIds = flatSequence([], Q1, 0).length;
  const visual = 722 - textIds;
  const expected = lcp(flatSequence([], Q1, visual, fedIds(first)), flatSequence(history, Q2, visual));
  assert.ok(expected > 722 - 10, `common prefix ${expected}`);
  assert.equal(second.cachedTokens, Math.min(expected, second.promptTokens - 1));
  assert.ok(second.cachedTokens > visual);
  assert.equal(second.timings.prefillTokens, second.promptTokens - second.cachedTokens);
  assert.equal(second.visualCached, true);
  assert.equal(second.timings.encodeMs < first.timings.encodeMs, true);

  const full = await ask(off, { image: BYTES, boxes: b, prompt: Q2, history });
  assert.equal(full.cachedTokens, 0);
  assert.equal(full.timings.prefillTokens, full.promptTokens);
  assert.equal(full.promptTokens, second.promptTokens);
  assert.deepEqual(second.ids, full.ids);
  assert.equal(second.text, full.text);
  second.logprobs.forEach((l, i) => assert.ok(Math.abs(l.logprob - full.logprobs[i]!.logprob) < 1e-4, `logprob ${i}`));

  // A third turn continues the second's entry.
  const history3 = [...history, { question: Q2, answer: second.text }];
  const third = await ask(on, { image: BYTES, boxes: b, prompt: 'Anything else?', history: history3 });
  assert.ok(third.cachedTokens > second.promptTokens - 5, `third turn reused ${third.cachedTokens}`);
  assert.deepEqual(third.ids, (await ask(off, { image: BYTES, boxes: b, prompt: 'Anything else?', history: history3 })).ids);
});

test('the same question twice: all but the last position reused, same ids', async () => {
  const on = await model();
  const b = await boxes();
  const a = await ask(on, { image: IMAGE, boxes: b, prompt: Q1 });
  const again = await ask(on, { image: IMAGE, boxes: b, prompt: Q1 });
  assert.equal(again.promptTokens, 722);
  assert.equal(again.cachedTokens, 721);
  assert.equal(again.timings.prefillTokens, 1);
  assert.deepEqual(again.ids, a.ids);
  assert.deepEqual(again.ids, casesJson()['C.greedy_ids']);
  // a text-only question too
  const t1 = await ask(on, { prompt: 'Hello there' });
  const t2 = await ask(on, { prompt: 'Hello there' });
  assert.equal(t2.cachedTokens, t2.promptTokens - 1);
  assert.deepEqual(t2.ids, t1.ids);
});

test('another image, or other boxes, never reuses the visual span', async () => {
  const on = await model({});
  const off = await model({ cache: false });
  const b = await boxes();
  const tok = Tokenizer.fromFolder(join(TINY, 'llm'));
  const textBefore = promptChunks(tok, buildPrompt(getTemplate('vicuna'), { turns: [{ question: Q1 }], image: true }))[0]!.length;
  await ask(on, { image: BYTES, boxes: b, prompt: Q1 });

  // Other pixels: one changed pixel.
  const decoded = await decodeImage(BYTES);
  const data = new Uint8Array(decoded.data);
  data[0] = data[0]! ^ 0xff;
  const other = { width: decoded.width, height: decoded.height, data };
  const r1 = await ask(on, { image: other, boxes: b, prompt: Q1 });
  assert.equal(r1.visualCached, false);
  assert.equal(r1.cachedTokens, textBefore, 'only the text before the image');
  assert.deepEqual(r1.ids, (await ask(off, { image: other, boxes: b, prompt: Q1 })).ids);

  // The same image, other boxes (one box fewer) and other box options.
  const fewer: Detections = { boxes: b.boxes.slice(4), labels: b.labels.slice(1), scores: b.scores.slice(1) };
  const r2 = await ask(on, { image: BYTES, boxes: fewer, prompt: Q1 });
  assert.equal(r2.visualCached, false);
  assert.equal(r2.cachedTokens, textBefore);
  assert.deepEqual(r2.ids, (await ask(off, { image: BYTES, boxes: fewer, prompt: Q1 })).ids);
  const r3 = await ask(on, { image: BYTES, boxes: b, boxOptions: { limit: 1 }, prompt: Q1 });
  assert.equal(r3.visualCached, false);
  assert.equal(r3.cachedTokens, textBefore);
  assert.deepEqual(r3.ids, (await ask(off, { image: BYTES, boxes: b, boxOptions: { limit: 1 }, prompt: Q1 })).ids);

  // No boxes at all (null) is yet another key.
  const r4 = await ask(on, { image: BYTES, boxes: null, prompt: Q1 });
  assert.equal(r4.visualCached, false);
  assert.equal(r4.cachedTokens, textBefore);

  // Back to the first: both caches hit.
  const r5 = await ask(on, { image: BYTES, boxes: b, prompt: Q1 });
  assert.equal(r5.visualCached, true);
  assert.equal(r5.cachedTokens, 721);

  // The rows after the shared text run as one chunk (decoder.ts, P > 0): the same answer.
  const dflt = await model();
  await ask(dflt, { image: BYTES, boxes: b, prompt: Q1 });
  const r6 = await ask(dflt, { image: other, boxes: b, prompt: Q1 });
  assert.equal(r6.cachedTokens, textBefore);
  assert.equal(r6.timings.prefillTokens, 722 - textBefore);
  assert.deepEqual(r6.ids, r1.ids);
});

test('visual tokens given as they are (the CLI\'s interactive mode) are keyed by their values', async () => {
  const on = await model();
  const off = await model({ cache: false });
  const image = await decodeImage(IMAGE);
  const visual = await on.encode(image, await boxes());
  const first = await ask(on, { visualTokens: visual, prompt: Q1 });
  assert.deepEqual(first.ids, casesJson()['C.greedy_ids']);
  const history = [{ question: Q1, answer: first.text }];
  const second = await ask(on, { visualTokens: visual, prompt: Q2, history });
  assert.ok(second.cachedTokens > 722 - 10, `reused ${second.cachedTokens}`);
  assert.deepEqual(second.ids, (await ask(off, { visualTokens: visual, prompt: Q2, history })).ids);
  // Other token values with the same shape: no reuse of the span.
  const changed = { imageTokens: { dims: visual.imageTokens.dims, data: visual.imageTokens.data.map((x, i) => (i === 5 ? x + 1 : x)) }, boxTokens: visual.boxTokens };
  const third = await ask(on, { visualTokens: changed, prompt: Q1 });
  assert.ok(third.cachedTokens < 40, `reused ${third.cachedTokens}`);
});

test('tiny budgets: entries are evicted least recently used first, results stay correct', async () => {
  // One tiny-model KV entry is ~850 positions x 2 layers x 2 x 1 kv head x 8 x 4 bytes = 109 KB;
  // one image's visual tokens (576 + 9) x 16 x 4 bytes = 37 KB.
  const on = await model({ cache: { promptBytes: 150_000, visualBytes: 50_000 } });
  const off = await model({ cache: false });
  const b = await boxes();
  const decoded = await decodeImage(BYTES);
  const other = { width: decoded.width, height: decoded.height, data: decoded.data.map((x, i) => (i === 0 ? x ^ 1 : x)) };
  const tok = Tokenizer.fromFolder(join(TINY, 'llm'));
  const textBefore = promptChunks(tok, buildPrompt(getTemplate('vicuna'), { turns: [{ question: Q1 }], image: true }))[0]!.length;

  const a = await ask(on, { image: BYTES, boxes: b, prompt: Q1 });
  assert.equal(on.promptCache!.size, 1);
  const o = await ask(on, { image: other, boxes: b, prompt: Q1 });
  assert.equal(on.promptCache!.size, 1, 'the first entry made room');
  assert.ok(on.promptCache!.bytes <= 150_000);
  assert.equal(on.visualCache!.size, 1);
  assert.ok(on.visualCache!.bytes <= 50_000);
  // The first image again: its tokens and its KV were evicted.
  const again = await ask(on, { image: BYTES, boxes: b, prompt: Q1 });
  assert.equal(again.visualCached, false);
  assert.equal(again.cachedTokens, textBefore);
  assert.deepEqual(again.ids, a.ids);
  assert.deepEqual(o.ids, (await ask(off, { image: other, boxes: b, prompt: Q1 })).ids);
  // A follow-up on it now continues the entry that evicted the other one.
  const history = [{ question: Q1, answer: again.text }];
  const next = await ask(on, { image: BYTES, boxes: b, prompt: Q2, history });
  assert.equal(next.visualCached, true);
  assert.ok(next.cachedTokens > 722 - 10);
  assert.deepEqual(next.ids, (await ask(off, { image: BYTES, boxes: b, prompt: Q2, history })).ids);

  // A budget below one entry keeps nothing and still answers.
  const none = await model({ cache: { promptBytes: 1000, visualBytes: 1000 } });
  const n1 = await ask(none, { image: BYTES, boxes: b, prompt: Q1 });
  const n2 = await ask(none, { image: BYTES, boxes: b, prompt: Q1 });
  assert.equal(none.promptCache!.size, 0);
  assert.equal(none.visualCache!.size, 0);
  assert.equal(n2.cachedTokens, 0);
  assert.equal(n2.visualCached, false);
  assert.deepEqual(n1.ids, a.ids);
  assert.deepEqual(n2.ids, a.ids);
});

test('a repeated image skips the vision: its tokens come from the visual cache', async () => {
  const on = await model({ cache: { promptBytes: 0 } });
  const b = await boxes();
  assert.equal(on.promptCache, undefined);
  const r1 = await ask(on, { image: IMAGE, boxes: b, prompt: Q1 });
  const r2 = await ask(on, { image: BYTES, boxes: b, prompt: Q2 });
  assert.equal(r1.visualCached, false);
  assert.equal(r2.visualCached, true, 'a path and its bytes are the same image');
  assert.equal(r2.cachedTokens, 0);
  assert.deepEqual(r1.ids, casesJson()['C.greedy_ids']);
  // Two requests at once for a new image encode it once.
  const image = await decodeImage(BYTES);
  const misses = on.visualCache!.misses;
  const [c1, c2] = await Promise.all([ask(on, { image, boxes: b, prompt: Q1 }), ask(on, { image, boxes: b, prompt: Q1 })]);
  assert.equal(on.visualCache!.misses, misses + 1);
  assert.deepEqual(c1.ids, r1.ids);
  assert.deepEqual(c2.ids, r1.ids);
});

test('abort after the 2nd streamed token ends the answer there (finishReason abort)', async () => {
  const on = await model();
  const b = await boxes();
  const ac = new AbortController();
  const s = on.chat({ image: BYTES, boxes: b, prompt: Q1, generation: { ...GREEDY, maxNewTokens: 50 }, signal: ac.signal });
  let n = 0;
  let text = '';
  for await (const t of s) {
    n++;
    text += t.text;
    if (n === 2) ac.abort();
  }
  const r = await s.result;
  assert.equal(r.finishReason, 'abort');
  assert.ok(r.ids.length >= 2 && r.ids.length <= 3, `${r.ids.length} tokens`);
  assert.equal(n, r.ids.length);
  assert.equal(r.text.startsWith(text), true);
  assert.deepEqual(r.ids, (casesJson()['C.greedy_ids'] as number[]).slice(0, r.ids.length));
  // What the aborted turn ran stays usable: the same question again reuses it, same answer.
  const again = await ask(on, { image: BYTES, boxes: b, prompt: Q1 });
  assert.equal(again.cachedTokens, 721);
  assert.deepEqual(again.ids, casesJson()['C.greedy_ids']);

  // generation.signal does the same.
  const ac2 = new AbortController();
  const s2 = on.chat({ prompt: 'Hello there', generation: { ...GREEDY, signal: ac2.signal } });
  const ids: number[] = [];
  for await (const t of s2) {
    ids.push(t.id);
    if (ids.length === 2) ac2.abort();
  }
  assert.equal((await s2.result).finishReason, 'abort');
  assert.equal(ids.length, 2);
});

test('aborted before the start: an empty abort result, promptly, without encoding', async () => {
  const on = await model();
  const ac = new AbortController();
  ac.abort();
  const t0 = performance.now();
  const r = await on.chat({ image: BYTES, boxes: await boxes(), prompt: Q1, generation: GREEDY, signal: ac.signal }).complete();
  const ms = performance.now() - t0;
  assert.equal(r.finishReason, 'abort');
  assert.deepEqual(r.ids, []);
  assert.equal(r.text, '');
  assert.equal(r.timings.prefillTokens, 0);
  assert.ok(ms < 50, `${ms} ms`);
  assert.equal(on.visualCache!.size, 0, 'the image was not encoded');

  // Aborted while the image encodes: the empty result comes once that run returns.
  const ac2 = new AbortController();
  const s = on.chat({ image: BYTES, boxes: await boxes(), prompt: Q1, generation: GREEDY, signal: ac2.signal });
  setTimeout(() => ac2.abort(), 5);
  const r2 = await s.complete();
  assert.equal(r2.finishReason, 'abort');
  assert.deepEqual(r2.ids, []);
  assert.equal(r2.timings.prefillTokens, 0);
  assert.equal(on.visualCache!.size, 1, 'the encoding that ran is kept');
});

test('with a detector: a repeated image is not detected again; the detections come with the result', async () => {
  const extra = JSON.parse(readFileSync(join(TINY, 'extra_cases.json'), 'utf8')) as Record<string, unknown>;
  const on = await loadModel({ model: join(TINY, 'mgllava'), detector: join(TINY, 'owlv2') }, { detection: { tags: extra['O2.tags'] as string[], threshold: extra['O2.threshold'] as number } });
  models.push(on);
  const r1 = await ask(on, { image: BYTES, prompt: Q1 });
  assert.equal(r1.visualCached, false);
  assert.ok(r1.detections && r1.detections.labels.length > 0);
  const r2 = await ask(on, { image: BYTES, prompt: Q2, history: [{ question: Q1, answer: r1.text }] });
  assert.equal(r2.visualCached, true);
  assert.deepEqual(r2.detections, r1.detections);
  assert.ok(r2.cachedTokens > r1.promptTokens - 10);
  // boxes: null skips the detector: another key
  const r3 = await ask(on, { image: BYTES, boxes: null, prompt: Q1 });
  assert.equal(r3.visualCached, false);
  assert.equal(r3.detections, undefined);
  // the detector's boxes given as boxes: the same answer as detecting them
  const r4 = await ask(on, { image: BYTES, boxes: toDetections(r1.detections), prompt: Q1 });
  assert.deepEqual(r4.ids, r1.ids);
});

test('visual cache off: a follow-up covered by the prompt cache runs no vision; one that is not encodes again', async () => {
  const on = await model({ cache: { visualBytes: 0 } });
  const off = await model({ cache: false });
  const b = await boxes();
  assert.equal(on.visualCache, undefined);
  const r1 = await ask(on, { image: BYTES, boxes: b, prompt: Q1 });
  const history = [{ question: Q1, answer: r1.text }];
  const r2 = await ask(on, { image: BYTES, boxes: b, prompt: Q2, history });
  assert.equal(r2.visualCached, true, 'the prompt cache knew the span');
  assert.ok(r2.timings.encodeMs < r1.timings.encodeMs / 4, `${r2.timings.encodeMs} ms`);
  assert.ok(r2.cachedTokens > 722 - 10);
  assert.deepEqual(r2.ids, (await ask(off, { image: BYTES, boxes: b, prompt: Q2, history })).ids);
  // Another system text: the prefix before the image differs, the image's span must run.
  const r3 = await ask(on, { image: BYTES, boxes: b, prompt: Q1, system: 'Be brief.' });
  assert.equal(r3.visualCached, false);
  assert.ok(r3.cachedTokens < 722 - 576, `${r3.cachedTokens} cached: the image span ran again`);
  assert.deepEqual(r3.ids, (await ask(off, { image: BYTES, boxes: b, prompt: Q1, system: 'Be brief.' })).ids);
});

test('a caller leaving the stream early ends the turn; what it ran is kept for the next', async () => {
  const on = await model();
  const b = await boxes();
  let n = 0;
  for await (const t of on.chat({ image: BYTES, boxes: b, prompt: Q1, generation: { ...GREEDY, maxNewTokens: 50 } })) {
    void t;
    if (++n === 3) break;
  }
  assert.equal(on.promptCache!.size, 1);
  const again = await ask(on, { image: BYTES, boxes: b, prompt: Q1 });
  assert.equal(again.cachedTokens, 721);
  assert.deepEqual(again.ids, casesJson()['C.greedy_ids']);
});
