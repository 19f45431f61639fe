// `mgllava eval score` for video QA: the Video-ChatGPT judge through an OpenAI-compatible server
// (a stand-in on 127.0.0.1 scripted per question), its verdicts kept and reused by a rerun, and
// the labelled exact-match fallback without a judge.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../weights/torch-builders.js';
import { assertOneLineError, mgllava } from '../helpers/cli.js';
import { startJudgeStandIn } from '../helpers/judge-stand-in.js';

const Q = join(ROOT, 'fixtures', 'eval', 'video', 'questions.json');
const A = join(ROOT, 'fixtures', 'eval', 'video', 'answers.json');

function predictionsFile(dir: string): string {
  const qs = JSON.parse(readFileSync(Q, 'utf8')) as { question_id: number; question: string }[];
  const as = JSON.parse(readFileSync(A, 'utf8')) as { answer: string | number }[];
  const p = join(dir, 'pred.json');
  // The release's prediction file: even items say the answer, odd ones do not.
  writeFileSync(p, JSON.stringify(qs.map((q, i) => ({ id: q.question_id, question: q.question, answer: as[i]!.answer, pred: i % 2 === 0 ? `it is ${as[i]!.answer}` : 'no idea' }))));
  return p;
}

test('eval score msvd_qa: the judge protocol through an OpenAI-compatible server, verdicts reused on rerun', async () => {
  const judge = await startJudgeStandIn((user) => (/Predicted Answer: it is/.test(user) ? { pred: 'yes', score: 4 } : { pred: 'no', score: 1 }));
  const asked = judge.asked;
  try {
    const url = judge.url;
    const dir = tempDir();
    const pred = predictionsFile(dir);
    process.env.MGLLAVA_JUDGE_KEY = 'sk-judge';
    const args = ['eval', 'score', '--bench', 'msvd_qa', '--data', Q, '--answers', A, '--predictions', pred, '--judge-url', url, '--judge-key-env', 'MGLLAVA_JUDGE_KEY', '--out', join(dir, 'out'), '--json', '-q'];
    const r = await mgllava(args);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(asked.length, 6);
    const j = JSON.parse(r.stdout) as { overall: number; table: { rows: Record<string, number | string>[] }; items: { index: string; extracted: string; score: number }[] };
    assert.equal(j.overall, 0.5);
    assert.equal(j.table.rows[0]!.average_score, 2.5);
    assert.equal(j.table.rows[0]!.method, 'judge gpt-3.5-turbo');
    assert.deepEqual(j.items.map((x) => x.extracted), ['yes', 'no', 'yes', 'no', 'yes', 'no']);
    // The rerun asks nothing: every verdict is in out/judge.jsonl.
    const again = await mgllava(args);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(asked.length, 6);
    assert.equal((JSON.parse(again.stdout) as { overall: number }).overall, 0.5);
  } finally {
    await judge.close();
  }
});

test('eval score msvd_qa without a judge: the exact-match fallback, labelled as not the paper\'s', async () => {
  const dir = tempDir();
  const r = await mgllava(['eval', 'score', '--bench', 'msvd_qa', '--data', Q, '--answers', A, '--predictions', predictionsFile(dir)]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /overall 0\.5000 over 6 items/);
  assert.match(r.stdout, /exact match \(not the paper's judge\)/);
  assertOneLineError(await mgllava(['eval', 'score', '--bench', 'msvd_qa', '--data', Q, '--predictions', predictionsFile(dir)]), /msvd_qa needs --answers FILE/);
  assertOneLineError(await mgllava(['eval', 'score', '--bench', 'pope', '--data', Q, '--predictions', predictionsFile(dir), '--judge-url', 'http://127.0.0.1:1/v1']), /--judge-url and --answers go with the video QA/);
});
