// The decode loop and the sampler on a scripted decoder: greedy, EOS, stop words (also when
// split across tokens), token budget, seeded sampling, top-k/top-p, repetition penalty, logprobs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generate, GenerationOptions, GenerationResult, GeneratedToken } from '../../src/generate/generate.js';
import { Sampler, logSoftmax, topIndices } from '../../src/generate/sampling.js';

const V = 8;
// Token i decodes to this text; 7 is EOS.
const PIECES = ['A', 'B', '##', '#', 'C', ' ', 'D', ''];

function logitsFavouring(id: number): Float32Array {
  const l = new Float32Array(V).fill(-1);
  l[id] = 3;
  l[(id + 1) % V] = 2;
  return l;
}

/** Plays back a script of favoured next tokens. */
async function run(script: number[], o: GenerationOptions): Promise<{ tokens: GeneratedToken[]; result: GenerationResult }> {
  let k = 0;
  const decoder = { step: async () => logitsFavouring(script[++k] ?? 0) };
  const stream = { push: (id: number) => PIECES[id]!, flush: () => '' };
  const it = generate(logitsFavouring(script[0]!), decoder, stream, o);
  const tokens: GeneratedToken[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { tokens, result: r.value };
    tokens.push(r.value);
  }
}

test('greedy until EOS, which is not part of the answer', async () => {
  const { tokens, result } = await run([0, 1, 4, 7, 0], { eosIds: [7] });
  assert.deepEqual(result.ids, [0, 1, 4]);
  assert.equal(result.text, 'ABC');
  assert.equal(result.finishReason, 'eos');
  assert.equal(tokens.map((t) => t.text).join(''), 'ABC');
});

test('token budget', async () => {
  const { result } = await run([0, 1, 0, 1, 0, 1], { maxNewTokens: 3 });
  assert.deepEqual(result.ids, [0, 1, 0]);
  assert.equal(result.finishReason, 'length');
});

test('a stop word split across tokens is held back and cut', async () => {
  const { tokens, result } = await run([0, 3, 3, 1, 4], { stopWords: ['##B'] });
  // '#' could start '##B', so it is not streamed until the stop word completes
  assert.equal(result.text, 'A');
  assert.equal(result.finishReason, 'stop_word');
  assert.equal(tokens.map((t) => t.text).join(''), 'A');
  const { result: r2, tokens: t2 } = await run([0, 3, 4, 7], { stopWords: ['##B'], eosIds: [7] });
  assert.equal(r2.text, 'A#C');
  assert.equal(t2.map((t) => t.text).join(''), 'A#C');
});

test('logprobs: log-softmax of the raw logits, top alternatives in order', async () => {
  const { result } = await run([2, 7], { eosIds: [7], topLogprobs: 3 });
  const lsm = logSoftmax(logitsFavouring(2));
  assert.equal(result.logprobs[0]!.id, 2);
  assert.ok(Math.abs(result.logprobs[0]!.logprob - lsm[2]!) < 1e-12);
  assert.deepEqual(result.logprobs[0]!.top.map((t) => t.id), [2, 3, 0]);
  let s = 0;
  for (const v of lsm) s += Math.exp(v);
  assert.ok(Math.abs(s - 1) < 1e-12);
});

test('seeded sampling is reproducible; top-k 1 is greedy; top-p keeps the nucleus', () => {
  const logits = Float32Array.from([1, 2, 3, 2.5, 0, -1, 0.5, 1.5]);
  const draw = (o: ConstructorParameters<typeof Sampler>[0]) => {
    const s = new Sampler(o);
    return Array.from({ length: 200 }, () => s.next(logits, []));
  };
  assert.deepEqual(draw({ temperature: 1, seed: 42 }), draw({ temperature: 1, seed: 42 }));
  assert.notDeepEqual(draw({ temperature: 1, seed: 42 }), draw({ temperature: 1, seed: 43 }));
  assert.ok(draw({ temperature: 1, seed: 1, topK: 1 }).every((id) => id === 2));
  // p(2) = 0.38, p(3) = 0.23 of the softmax: top-p 0.5 keeps exactly {2, 3}
  assert.deepEqual(new Set(draw({ temperature: 1, seed: 3, topP: 0.5 })), new Set([2, 3]));
  assert.ok(draw({ temperature: 1, seed: 3, topK: 3 }).every((id) => [1, 2, 3].includes(id)));
});

test('repetition penalty discourages generated tokens', () => {
  const logits = Float32Array.from([2, 1.9, -5, -5, -5, -5, -5, -5]);
  assert.equal(new Sampler({}).next(logits, [0]), 0);
  assert.equal(new Sampler({ repetitionPenalty: 1.2 }).next(logits, [0]), 1);
});

test('topIndices', () => {
  assert.deepEqual(topIndices([0.1, 5, 3, 5, -1], 3), [1, 3, 2]);
});
