// The Video-ChatGPT judge against a stand-in OpenAI-compatible server on 127.0.0.1.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { InputError } from '../../src/core/errors.js';
import { pyFloatRepr } from '../../src/eval/tsv.js';
import {
  DEFAULT_JUDGE_MODEL, EXACT_MATCH_LABEL, JUDGE_SYSTEM_PROMPT, exactMatchVideoQa, judgeItems, judgeMessages, judgeSummary,
  parseJudgeReply, pyInt, pyLiteralEval, readJudgeCache, type JudgeItem, type JudgeResult, type PyValue,
} from '../../src/eval/judge.js';

// ---------------------------------------------------------------------------------------------
// the protocol's texts, written out whole (evaluate_activitynet_qa.py's adjacent literals joined)

const SYSTEM =
  "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for question-answer pairs. Your task is to compare the predicted answer with the correct answer and determine if they match meaningfully. Here's how you can accomplish the task:------##INSTRUCTIONS: - Focus on the meaningful match between the predicted answer and the correct answer.\n- Consider synonyms or paraphrases as valid matches.\n- Evaluate the correctness of the prediction compared to the answer.";

const user = (q: string, a: string, p: string): string =>
  `Please evaluate the following video-based question-answer pair:\n\nQuestion: ${q}\nCorrect Answer: ${a}\nPredicted Answer: ${p}\n\nProvide your evaluation only as a yes/no and score where the score is an integer value between 0 and 5, with 5 indicating the highest meaningful match. Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', where value of 'pred' is  a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING.DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. For example, your response should look like this: {'pred': 'yes', 'score': 4.8}.`;

test('judge: the protocol messages and model', () => {
  assert.equal(DEFAULT_JUDGE_MODEL, 'gpt-3.5-turbo');
  assert.equal(JUDGE_SYSTEM_PROMPT, SYSTEM);
  assert.deepEqual(judgeMessages({ question: 'what is a man cutting?', answer: 'tomato', prediction: 'A man is slicing a tomato.' }), [
    { role: 'system', content: SYSTEM },
    { role: 'user', content: user('what is a man cutting?', 'tomato', 'A man is slicing a tomato.') },
  ]);
});

// ---------------------------------------------------------------------------------------------
// ast.literal_eval

function tag(v: PyValue): unknown {
  switch (v.type) {
    case 'str':
    case 'bytes':
    case 'bool':
      return [v.type, v.value];
    case 'int':
      return ['int', v.value.toString()];
    case 'float':
      return ['float', pyFloatRepr(v.value)];
    case 'complex':
      return ['complex', pyFloatRepr(v.re), pyFloatRepr(v.im)];
    case 'none':
    case 'ellipsis':
      return [v.type];
    case 'tuple':
    case 'list':
    case 'set':
      return [v.type, v.items.map(tag)];
    case 'dict':
      return ['dict', v.entries.map(([k, x]) => [tag(k), tag(x)])];
  }
}

test('pyLiteralEval agrees with CPython ast.literal_eval', () => {
  const f = JSON.parse(readFileSync(join(ROOT, 'fixtures', 'eval', 'video', 'literal_eval_cases.json'), 'utf8'));
  const cases = f.cases as { src: string; value?: unknown; error?: string }[];
  assert.ok(cases.length > 80);
  for (const c of cases) {
    let got: unknown;
    let err: unknown;
    try {
      got = tag(pyLiteralEval(c.src));
    } catch (e) {
      err = e;
    }
    if (c.error !== undefined) {
      assert.ok(err !== undefined, `${JSON.stringify(c.src)}: CPython raises ${c.error}, got ${JSON.stringify(got)}`);
      assert.equal((err as Error).name, 'PyLiteralError', `${JSON.stringify(c.src)}: ${String(err)}`);
    } else {
      assert.equal(err, undefined, `${JSON.stringify(c.src)}: ${String(err)}`);
      assert.deepEqual(got, c.value, JSON.stringify(c.src));
    }
  }
});

test('parseJudgeReply: the protocol reading of a reply (int() of the score)', () => {
  assert.deepEqual(parseJudgeReply("{'pred': 'yes', 'score': 4}"), { pred: 'yes', score: 4 });
  assert.deepEqual(parseJudgeReply("{'pred': 'yes', 'score': 4.8}"), { pred: 'yes', score: 4 });
  assert.deepEqual(parseJudgeReply("{'pred': 'no', 'score': ' 2 '}"), { pred: 'no', score: 2 });
  assert.deepEqual(parseJudgeReply("{'pred': 'no', 'score': -0.5}"), { pred: 'no', score: 0 });
  assert.deepEqual(parseJudgeReply("{'pred': 'no', 'score': True}"), { pred: 'no', score: 1 });
  assert.deepEqual(parseJudgeReply(' {"pred": "Yes", "score": 5}\n'), { pred: 'Yes', score: 5 });
  for (const bad of ["{'pred': 'yes'}", "{'score': 3}", "{'pred': 1, 'score': 3}", "{'pred': 'yes', 'score': '4.5'}", "{'pred': 'yes', 'score': None}",
    "['yes', 3]", "```python\n{'pred': 'yes', 'score': 3}\n```", 'yes, 4', "{'pred': b'yes', 'score': 3}"]) {
    assert.throws(() => parseJudgeReply(bad), /./, bad);
  }
  assert.throws(() => parseJudgeReply(null), /None/);
  assert.equal(pyInt({ type: 'str', value: '1_0' }), 10);
  assert.equal(pyInt({ type: 'float', value: Infinity }), null);
});

test('judgeSummary: accuracy = yes / (yes + no), average score over all judged', () => {
  const v = (pred: string, score: number) => ({ ok: true, verdict: { pred, score } });
  const s = judgeSummary([v('yes', 5), v('Yes.', 4), v('no', 1), v('not sure', 2), v('maybe', 3), { ok: false }]);
  assert.deepEqual({ ...s, lines: undefined }, { judged: 5, errors: 1, yes: 2, no: 2, accuracy: 0.5, averageScore: 3, lines: undefined });
  assert.deepEqual(s.lines, ['Yes count: 2', 'No count: 2', 'Accuracy: 0.5', 'Average score: 3.0']);
  const t = judgeSummary([v('yes', 4), v('yes', 3), v('no', 3)]);
  assert.deepEqual(t.lines, ['Yes count: 2', 'No count: 1', 'Accuracy: 0.6666666666666666', 'Average score: 3.3333333333333335']);
  const e = judgeSummary([]);
  assert.equal(e.accuracy, null);
  assert.equal(e.averageScore, null);
});

// ---------------------------------------------------------------------------------------------
// the stand-in server

type Scripted = string | { status: number; body?: unknown; headers?: Record<string, string> } | { content: null };

interface Stub {
  baseURL: string;
  requests: { body: any; auth: string | undefined }[];
  maxInFlight: number;
  close(): Promise<void>;
}

/** Replies scripted per question (the user message's "Question: ..." line), one per ask, the last repeated. */
async function stub(script: Record<string, Scripted[]>, delayMs = 0): Promise<Stub> {
  const asked = new Map<string, number>();
  let inFlight = 0;
  const s: Stub = { baseURL: '', requests: [], maxInFlight: 0, close: async () => {} };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      inFlight++;
      s.maxInFlight = Math.max(s.maxInFlight, inFlight);
      const finish = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
        setTimeout(() => {
          inFlight--;
          res.writeHead(status, { 'content-type': 'application/json', ...headers });
          res.end(JSON.stringify(body));
        }, delayMs);
      };
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return finish(404, { error: { message: 'not found' } });
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      s.requests.push({ body, auth: req.headers.authorization });
      const q = /\nQuestion: (.*)\n/.exec(body.messages?.[1]?.content ?? '')?.[1] ?? '';
      const list = script[q] ?? [{ status: 400, body: { error: { message: `unscripted question ${q}` } } }];
      const n = asked.get(q) ?? 0;
      asked.set(q, n + 1);
      const r = list[Math.min(n, list.length - 1)]!;
      if (typeof r === 'object' && 'status' in r) return finish(r.status, r.body ?? { error: { message: `status ${r.status}` } }, r.headers);
      const content = typeof r === 'string' ? r : null;
      finish(200, {
        id: 'chatcmpl-test', object: 'chat.completion', created: 0, model: body.model,
        choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content } }],
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  s.baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  s.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return s;
}

const ITEMS: JudgeItem[] = [
  { id: 0, question: 'what is a man cutting?', answer: 'tomato', prediction: 'A tomato.' },
  { id: 1, question: 'who is cutting a tomato?', answer: 'man', prediction: 'a man' },
  { id: 2, question: 'what is the woman doing?', answer: 'cook', prediction: 'cooking' },
  { id: 3, question: 'what is a woman putting on a bun?', answer: 'ketchup', prediction: 'mustard' },
  { id: 4, question: 'how many dogs are playing?', answer: '2', prediction: 'three' },
  { id: 5, question: 'what is the man doing?', answer: 'sing', prediction: 'he is dancing' },
];

const SCRIPT: Record<string, Scripted[]> = {
  'what is a man cutting?': ["{'pred': 'yes', 'score': 4}"],
  'who is cutting a tomato?': ["```python\n{'pred': 'yes', 'score': 3}\n```", "{'pred': 'yes', 'score': 3}"],
  'what is the woman doing?': [{ status: 500 }, "{'pred': 'yes', 'score': 5}"],
  'what is a woman putting on a bun?': ['The prediction is wrong.', { content: null }, "{'pred': 'no'}"],
  'how many dogs are playing?': ["{'pred': 'no', 'score': '1'}"],
  'what is the man doing?': ["{'pred': 'maybe', 'score': 2.9}"],
};

const fast = { apiKey: 'test-key', maxRetries: 0, retryDelayMs: 0, attempts: 3 };

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'mgllava-judge-'));
}

test('judgeItems: exact requests, retries, errors recorded, aggregation', async () => {
  const s = await stub(SCRIPT, 20);
  try {
    const seen: { id: string | number; done: number; total: number }[] = [];
    const run = await judgeItems(ITEMS, { ...fast, baseURL: s.baseURL, concurrency: 2, onResult: (r, p) => seen.push({ id: r.id, ...p }) });
    assert.equal(run.model, 'gpt-3.5-turbo');
    // every request: the protocol's model and messages, no temperature, the key
    for (const r of s.requests) {
      assert.equal(r.auth, 'Bearer test-key');
      assert.deepEqual(Object.keys(r.body).sort(), ['messages', 'model']);
      assert.equal(r.body.model, 'gpt-3.5-turbo');
      const it = ITEMS.find((x) => r.body.messages[1].content.includes(`\nQuestion: ${x.question}\n`))!;
      assert.deepEqual(r.body.messages, [{ role: 'system', content: SYSTEM }, { role: 'user', content: user(it.question, it.answer, it.prediction) }]);
    }
    // asks: 1 + 2 + 2 + 3 (all bad) + 1 + 1
    assert.equal(s.requests.length, 10);
    assert.equal(s.maxInFlight, 2);
    const byId = new Map(run.results.map((r) => [r.id, r]));
    assert.deepEqual(run.results.map((r) => r.id), [0, 1, 2, 3, 4, 5]);
    const ok = (id: number): Extract<JudgeResult, { ok: true }> => {
      const r = byId.get(id)!;
      assert.ok(r.ok, `item ${id}: ${JSON.stringify(r)}`);
      return r;
    };
    assert.deepEqual([ok(0).verdict, ok(0).attempts, ok(0).cached], [{ pred: 'yes', score: 4 }, 1, false]);
    assert.deepEqual([ok(1).verdict, ok(1).attempts], [{ pred: 'yes', score: 3 }, 2]);
    assert.deepEqual([ok(2).verdict, ok(2).attempts], [{ pred: 'yes', score: 5 }, 2]);
    assert.deepEqual(ok(4).verdict, { pred: 'no', score: 1 });
    assert.deepEqual(ok(5).verdict, { pred: 'maybe', score: 2 });
    assert.equal(ok(5).reply, "{'pred': 'maybe', 'score': 2.9}");
    const bad = byId.get(3)!;
    assert.ok(!bad.ok);
    assert.equal(bad.attempts, 3);
    assert.equal(bad.reply, "{'pred': 'no'}");
    assert.match(bad.error, /cannot parse the reply .*no 'score'/);
    assert.equal(bad.question, ITEMS[3]!.question);
    // yes: 0, 1, 2; no: 4; neither: 5 -> 3/4; scores (4+3+5+1+2)/5
    assert.deepEqual(run.summary.lines, ['Yes count: 3', 'No count: 1', 'Accuracy: 0.75', 'Average score: 3.0']);
    assert.equal(run.summary.judged, 5);
    assert.equal(run.summary.errors, 1);
    assert.equal(seen.length, 6);
    assert.deepEqual(seen.map((x) => x.done), [1, 2, 3, 4, 5, 6]);
    assert.ok(seen.every((x) => x.total === 6));
  } finally {
    await s.close();
  }
});

test('judgeItems: concurrency bounds the requests in flight; temperature and model when asked', async () => {
  const many: JudgeItem[] = Array.from({ length: 12 }, (_, i) => ({ id: `q${i}`, question: `q ${i}?`, answer: 'a', prediction: 'a' }));
  const script = Object.fromEntries(many.map((x) => [x.question, ["{'pred': 'yes', 'score': 5}"]]));
  const s = await stub(script, 30);
  try {
    const run = await judgeItems(many, { ...fast, baseURL: s.baseURL, concurrency: 5, temperature: 0, model: 'judge-x' });
    assert.equal(s.maxInFlight, 5);
    assert.equal(s.requests.length, 12);
    assert.ok(s.requests.every((r) => r.body.temperature === 0 && r.body.model === 'judge-x'));
    assert.equal(run.summary.accuracy, 1);
    assert.deepEqual(run.results.map((r) => r.id), many.map((x) => x.id));
  } finally {
    await s.close();
  }
});

test('judgeItems: the cache file; a rerun asks only for what it lacks', async () => {
  const dir = tmp();
  const cache = join(dir, 'sub', 'judge.jsonl');
  const s = await stub(SCRIPT);
  try {
    await judgeItems(ITEMS, { ...fast, baseURL: s.baseURL, cache });
    assert.equal(s.requests.length, 10);
    const lines = readJudgeCache(cache);
    assert.equal(lines.length, 5); // the error is not cached
    assert.deepEqual(Object.keys(lines[0]!).sort(), ['answer', 'id', 'model', 'pred', 'prediction', 'question', 'reply', 'score']);

    // a rerun: only item 3 (the error) is asked again, 3 times; a changed prediction is asked too
    const changed = ITEMS.map((x) => (x.id === 5 ? { ...x, prediction: 'singing' } : x));
    const again = await judgeItems(changed, { ...fast, baseURL: s.baseURL, cache });
    assert.equal(s.requests.length, 10 + 3 + 1);
    const asked = s.requests.slice(10).map((r) => r.body.messages[1].content as string);
    assert.ok(asked.every((c) => c.includes('putting on a bun') || c.includes('Predicted Answer: singing\n')));
    assert.deepEqual(again.results.map((r) => r.cached), [true, true, true, false, true, false]);
    assert.deepEqual(again.summary.lines, ['Yes count: 3', 'No count: 1', 'Accuracy: 0.75', 'Average score: 3.0']);

    // another judge model is not the same verdict
    const before = s.requests.length;
    await judgeItems(ITEMS.slice(0, 1), { ...fast, baseURL: s.baseURL, cache, model: 'other' });
    assert.equal(s.requests.length, before + 1);

    // a torn last line (a killed run) is skipped, and the next verdict starts a fresh line
    appendFileSync(cache, '{"id": 9, "mod');
    const n = readJudgeCache(cache).length;
    await judgeItems([{ id: 9, question: 'what is the man doing?', answer: 'x', prediction: 'y' }], { ...fast, baseURL: s.baseURL, cache });
    assert.equal(readJudgeCache(cache).length, n + 1);
    // everything cached: no key needed, no request
    const quiet = await judgeItems(ITEMS.slice(0, 3), { baseURL: s.baseURL, cache, apiKeyEnv: 'MGLLAVA_TEST_NO_SUCH_KEY' });
    assert.ok(quiet.results.every((r) => r.cached));
    // a broken line in the middle is an InputError
    writeFileSync(join(dir, 'bad.jsonl'), 'nonsense\n{}\n');
    assert.throws(() => readJudgeCache(join(dir, 'bad.jsonl')), (e: unknown) => e instanceof InputError && /line 1: not JSON/.test((e as Error).message));
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('judgeItems: the key from the environment, and a clear error without one', async () => {
  const s = await stub(SCRIPT);
  try {
    const env = 'MGLLAVA_TEST_JUDGE_KEY';
    delete process.env[env];
    await assert.rejects(
      judgeItems(ITEMS, { baseURL: s.baseURL, apiKeyEnv: env }),
      (e: unknown) => e instanceof InputError && /no API key for the judge: set the environment variable MGLLAVA_TEST_JUDGE_KEY/.test((e as Error).message),
    );
    const saved = process.env.OPENAI_API_KEY;
    delete process.env.OPENAI_API_KEY;
    try {
      await assert.rejects(judgeItems(ITEMS, { baseURL: s.baseURL }), /OPENAI_API_KEY/);
    } finally {
      if (saved !== undefined) process.env.OPENAI_API_KEY = saved;
    }
    assert.equal(s.requests.length, 0);
    process.env[env] = 'from-env';
    try {
      await judgeItems(ITEMS.slice(0, 1), { ...fast, apiKey: undefined, baseURL: s.baseURL, apiKeyEnv: env });
    } finally {
      delete process.env[env];
    }
    assert.equal(s.requests[0]!.auth, 'Bearer from-env');
  } finally {
    await s.close();
  }
});

test('judgeItems: 401 stops the run; 400 is the item error at once; the client retries a 500 itself', async () => {
  const s = await stub({
    'q401?': [{ status: 401, body: { error: { message: 'bad key' } } }],
    'q400?': [{ status: 400, body: { error: { message: 'too long' } } }],
    'q500?': [{ status: 500, headers: { 'retry-after-ms': '5' } }, "{'pred': 'yes', 'score': 5}"],
  });
  try {
    const it = (q: string): JudgeItem => ({ id: q, question: q, answer: 'a', prediction: 'b' });
    await assert.rejects(judgeItems([it('q401?')], { ...fast, baseURL: s.baseURL }), (e: unknown) => e instanceof InputError && /401/.test((e as Error).message));
    assert.equal(s.requests.length, 1);
    const r400 = await judgeItems([it('q400?')], { ...fast, baseURL: s.baseURL });
    assert.equal(s.requests.length, 2);
    assert.ok(!r400.results[0]!.ok && r400.results[0]!.attempts === 1 && /400/.test(r400.results[0]!.error));
    const r500 = await judgeItems([it('q500?')], { ...fast, maxRetries: 1, baseURL: s.baseURL });
    assert.equal(s.requests.length, 4);
    assert.ok(r500.results[0]!.ok && r500.results[0]!.attempts === 1);
    await assert.rejects(judgeItems([it('a'), it('a')], { ...fast, baseURL: s.baseURL }), /repeat id "a"/);
  } finally {
    await s.close();
  }
});

test('judgeItems: an abort stops the run', async () => {
  const many: JudgeItem[] = Array.from({ length: 20 }, (_, i) => ({ id: i, question: `q ${i}?`, answer: 'a', prediction: 'a' }));
  const s = await stub(Object.fromEntries(many.map((x) => [x.question, ["{'pred': 'yes', 'score': 5}"]])), 50);
  try {
    const ac = new AbortController();
    let got = 0;
    const p = judgeItems(many, {
      ...fast, baseURL: s.baseURL, concurrency: 2, signal: ac.signal,
      onResult: () => {
        if (++got === 3) ac.abort();
      },
    });
    await assert.rejects(p, (e: unknown) => (e as Error).name === 'AbortError');
    assert.ok(s.requests.length < 8, `${s.requests.length} requests`);
  } finally {
    await s.close();
  }
});

test("exactMatchVideoQa: the labelled fallback (not the paper's judge)", () => {
  assert.equal(EXACT_MATCH_LABEL, "exact match (not the paper's judge)");
  const r = exactMatchVideoQa([
    { answer: 'tomato', prediction: 'A man is cutting a Tomato.' },
    { answer: 'man', prediction: 'a woman' },
    { answer: 'cook', prediction: 'cook' },
    { answer: 'no', prediction: 'nothing' },
    { answer: 'hot dog', prediction: 'She eats a hot-dog!' },
    { answer: '', prediction: 'anything' },
  ]);
  assert.equal(r.method, EXACT_MATCH_LABEL);
  assert.deepEqual(r.rows.map((x) => x.hit), [1, 0, 1, 0, 1, 0]);
  assert.equal(r.hits, 3);
  assert.equal(r.accuracy, 0.5);
  assert.equal(exactMatchVideoQa([]).accuracy, null);
});
