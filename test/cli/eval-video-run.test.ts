// `mgllava eval --bench msvd_qa` RUNNING the video items on the tiny model: three questions about
// two copies of fixtures/video/synthetic_landscape.mkv (named as the questions name them), the
// fixture box file keyed by those names. A run (predictions, the exact-match score, the same as
// `eval score` gives), a resume, another --frames refused, the release's 8 frames on a copy of the
// tiny LLM with a longer context (the tiny one's 2048 positions hold 2 frames, not 8), the judge
// through a stand-in server on 127.0.0.1 (verdicts kept in the run folder), the detector per
// sampled frame, shards, an endpoint's video_url part, bad input as one line.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, TINY } from '../helpers/fixtures.js';
import { assertOneLineError, mgllava } from '../helpers/cli.js';
import { parseTsv } from '../../src/eval/tsv.js';
import { longContextLlm } from '../helpers/long-context.js';
import { startJudgeStandIn } from '../helpers/judge-stand-in.js';

const VIDEO = join(ROOT, 'fixtures', 'video', 'synthetic_landscape.mkv');
const FIXTURE_BOXES = join(ROOT, 'fixtures', 'video', 'video_boxes.json');
const QUESTIONS = [
  { question_id: 101, video_name: 'clip_a', question: 'What is moving?' },
  { question_id: 102, video_name: 'clip_a', question: 'What colour is the ball?' },
  { question_id: 103, video_name: 'clip_b', question: 'Is it a landscape?' },
];

let dir = '';
let videos = '';
let boxes = '';
let q = '';
let a = '';
let llm = '';

/** An answers file for QUESTIONS (matched by position). */
function answersFile(name: string, answers: string[]): string {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(answers.map((answer, i) => ({ answer, question_id: QUESTIONS[i]!.question_id }))));
  return p;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'mgllava-eval-video-run-'));
  videos = join(dir, 'videos');
  mkdirSync(videos);
  copyFileSync(VIDEO, join(videos, 'clip_a.mkv'));
  copyFileSync(VIDEO, join(videos, 'clip_b.mkv'));
  // The fixture's one entry under both names (the release keys entries by the file stem; the
  // first entry's extension names every video of the set).
  const entry = (JSON.parse(readFileSync(FIXTURE_BOXES, 'utf8')) as { video: string; frames: unknown[] }[])[0]!;
  boxes = join(dir, 'video_boxes.json');
  writeFileSync(boxes, JSON.stringify([{ ...entry, video: 'clip_a.mkv' }, { ...entry, video: 'clip_b.mkv' }]));
  q = join(dir, 'questions.json');
  writeFileSync(q, JSON.stringify(QUESTIONS));
  a = answersFile('answers.json', ['ball', 'blue', 'yes']);
  llm = longContextLlm(dir);
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// The tiny model unless told otherwise (an --endpoint run names none).
const TINY_MODEL_ARGS = ['--model', join(TINY, 'mgllava')];
const base = (out: string, answers = a, model = TINY_MODEL_ARGS): string[] => ['eval', '--bench', 'msvd_qa', '--data', q, '--answers', answers, '--images', videos, '--out', out, ...model, '--max-new-tokens', '4', '-q'];
const FILE2 = (): string[] => ['--boxes', boxes, '--frames', '2'];

function predictionLines(out: string): { index: string; prediction: string }[] {
  return readFileSync(join(out, 'predictions.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { index: string; prediction: string });
}
const byIndex = (out: string): Map<string, string> => new Map(predictionLines(out).map((p) => [p.index, p.prediction]));

interface RunJson {
  total: number;
  made: number;
  resumed: number;
  predictions: string;
  overall?: number;
  table?: { columns: string[]; rows: Record<string, string | number>[] };
  note?: string;
}

let whole: string | undefined;
async function wholeRun(): Promise<string> {
  if (whole) return whole;
  const out = join(dir, 'whole');
  const r = await mgllava([...base(out), ...FILE2(), '--json']);
  assert.equal(r.code, 0, r.stderr);
  whole = out;
  return out;
}

test('eval msvd_qa: a run answers every video question, writes the predictions TSV and scores it (exact match, labelled)', async () => {
  const out = await wholeRun();
  const lines = predictionLines(out);
  assert.deepEqual(lines.map((l) => l.index), ['101', '102', '103']);
  const tsv = parseTsv(readFileSync(join(out, 'MSVD_QA_predictions.tsv'), 'utf8'));
  assert.deepEqual(tsv.columns, ['index', 'video', 'question', 'answer', 'prediction']);
  assert.deepEqual(Array.from({ length: tsv.length }, (_, r) => tsv.str(r, 'video')), ['clip_a', 'clip_a', 'clip_b']);
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { table: { rows: Record<string, unknown>[] }; identity: { boxes: string; video: unknown } };
  assert.equal(summary.table.rows[0]!.method, 'exact match (not the paper\'s judge)');
  assert.deepEqual(summary.identity.video, { frames: 2, pad: true, limit: 100 });
  assert.match(summary.identity.boxes, /^video file sha256:[0-9a-f]{64}; video frames 2/);
  assert.ok(existsSync(join(out, 'MSVD_QA_results.json')));
  // Answers made of the model's own words: two hits of three, as `eval score` counts them.
  const p = byIndex(out);
  const words = (s: string) => s.split(/\s+/).filter((w) => /^[a-z]+$/i.test(w));
  const w1 = words(p.get('101')!).at(-1);
  const w3 = words(p.get('103')!).at(-1);
  assert.ok(w1 && w3, `no plain word in ${[...p.values()].join(' | ')}`);
  const hitting = answersFile('hitting.json', [w1, 'zebra', w3]);
  const out2 = join(dir, 'hits');
  const r = await mgllava([...base(out2, hitting), ...FILE2(), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as RunJson;
  assert.deepEqual(byIndex(out2), p, 'the answers do not change the predictions');
  assert.equal(j.overall, 2 / 3);
  assert.equal(j.table!.rows[0]!.hits, 2);
  const s = await mgllava(['eval', 'score', '--bench', 'msvd_qa', '--data', q, '--answers', hitting, '--predictions', j.predictions, '--json']);
  assert.equal(s.code, 0, s.stderr);
  const sj = JSON.parse(s.stdout) as { overall: number; table: unknown };
  assert.equal(sj.overall, j.overall);
  assert.deepEqual(sj.table, j.table);
});

test('eval msvd_qa: resumed after one item, the rest answered once and the answers the same; another --frames refused', async () => {
  const ref = byIndex(await wholeRun());
  const out = join(dir, 'resumed');
  const first = await mgllava([...base(out), ...FILE2(), '--limit', '1', '--json']);
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual([(JSON.parse(first.stdout) as RunJson).made], [1]);
  const r = await mgllava([...base(out), ...FILE2(), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as RunJson;
  assert.deepEqual([j.made, j.resumed, j.total], [2, 1, 3]);
  assert.equal(predictionLines(out).length, 3);
  assert.deepEqual(byIndex(out), ref);
  const again = await mgllava([...base(out), ...FILE2(), '--json']);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual([(JSON.parse(again.stdout) as RunJson).made, (JSON.parse(again.stdout) as RunJson).resumed], [0, 3]);
  assertOneLineError(await mgllava([...base(out), '--boxes', boxes, '--frames', '3']), /holds another run \(boxes: .*video frames 2.* vs .*video frames 3/);
  assertOneLineError(await mgllava([...base(out), '--no-boxes', '--frames', '2']), /holds another run \(boxes: video file sha256:[0-9a-f]+; video frames 2, pad true, box limit 100 vs none; video frames 2/);
});

test('eval msvd_qa: the release\'s 8 frames (4.8k positions) on a longer-context copy of the tiny LLM; the tiny one says to use fewer --frames', async () => {
  const out = join(dir, 'eight');
  const r = await mgllava([...base(out), '--boxes', boxes, '--llm', llm, '--limit', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as RunJson;
  assert.deepEqual([j.made, j.total], [1, 1]);
  const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as { identity: { video: { frames: number } } };
  assert.equal(run.identity.video.frames, 8);
  assertOneLineError(await mgllava([...base(join(dir, 'eight-short')), '--boxes', boxes]), /row 101 \(video clip_a\): prompt of \d+ tokens exceeds the model's context of 2048 \(8 frames .*fewer --frames/);
});

test('eval msvd_qa --judge-url: scored through the judge (a stand-in server), verdicts kept in the run folder and reused', async () => {
  const judge = await startJudgeStandIn((user) => (/Correct Answer: ball/.test(user) ? { pred: 'yes', score: 5 } : { pred: 'no', score: 2 }));
  const asked = judge.asked;
  try {
    const url = judge.url;
    process.env.MGLLAVA_VIDEO_JUDGE_KEY = 'sk-video-judge';
    const out = join(dir, 'judged');
    const args = [...base(out), ...FILE2(), '--judge-url', url, '--judge-model', 'judge-x', '--judge-key-env', 'MGLLAVA_VIDEO_JUDGE_KEY', '--json'];
    const r = await mgllava(args);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(asked.length, 3);
    assert.ok(asked.every((x) => x.auth === 'Bearer sk-video-judge'));
    const p = byIndex(out);
    assert.ok(asked.some((x) => x.user.includes(`Predicted Answer: ${p.get('102')}`)));
    const j = JSON.parse(r.stdout) as RunJson;
    assert.equal(j.overall, 1 / 3);
    assert.equal(j.table!.rows[0]!.method, 'judge judge-x');
    assert.equal(j.table!.rows[0]!.average_score, 3);
    assert.ok(existsSync(join(out, 'judge.jsonl')));
    const again = await mgllava(args);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(asked.length, 3, 'the rerun asks the judge nothing');
    assert.deepEqual([(JSON.parse(again.stdout) as RunJson).made, (JSON.parse(again.stdout) as RunJson).overall], [0, 1 / 3]);
  } finally {
    await judge.close();
  }
});

test('eval msvd_qa with the detector: each video\'s sampled frames detected once, kept across reruns', async () => {
  const out = join(dir, 'detector');
  const args = [...base(out), '--frames', '2', '--detector', join(TINY, 'owlv2'), '--tags', 'cat,dog', '--json'];
  const r = await mgllava(args);
  assert.equal(r.code, 0, r.stderr);
  const lines = () => readFileSync(join(out, 'detections.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { key: string; video: boolean; frame_indices: number[]; frames: unknown[] });
  assert.deepEqual(lines().map((l) => [l.key, l.video, l.frame_indices, l.frames.length]), [['clip_a', true, [0, 39], 2], ['clip_b', true, [0, 39], 2]]);
  rmSync(join(out, 'predictions.jsonl'));
  const again = await mgllava(args);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(lines().length, 2, 'no video detected again');
});

test('eval msvd_qa: two shards, merged, give the whole run\'s predictions (scored with eval score)', async () => {
  const ref = readFileSync(join(await wholeRun(), 'MSVD_QA_predictions.tsv'), 'utf8');
  const dirs = [join(dir, 's1'), join(dir, 's2')];
  for (const [i, d] of dirs.entries()) {
    const r = await mgllava([...base(d), ...FILE2(), '--shard', `${i + 1}/2`, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match((JSON.parse(r.stdout) as RunJson).note!, /merge/);
  }
  const merged = join(dir, 'merged');
  const m = await mgllava(['eval', 'merge', ...dirs, '--out', merged, '--json']);
  assert.equal(m.code, 0, m.stderr);
  const mj = JSON.parse(m.stdout) as { merged: number; note: string };
  assert.equal(mj.merged, 3);
  assert.match(mj.note, /mgllava eval score --bench msvd_qa/);
  assert.equal(readFileSync(join(merged, 'MSVD_QA_predictions.tsv'), 'utf8'), ref);
});

test('eval msvd_qa --endpoint: each video goes as a video_url data URL part with the frames to sample', async () => {
  const seen: { content: { type: string; text?: string; video_url?: { url: string } }[]; mgllava?: unknown }[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const b = JSON.parse(body) as { model: string; messages: { content: (typeof seen)[number]['content'] }[]; mgllava?: unknown };
      seen.push({ content: b.messages[0]!.content, mgllava: b.mgllava });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'x', object: 'chat.completion', created: 0, model: b.model, choices: [{ index: 0, message: { role: 'assistant', content: ' a ball ' }, finish_reason: 'stop' }] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    const out = join(dir, 'endpoint');
    const r = await mgllava([...base(out, a, []), '--endpoint', url, '--endpoint-model', 'm', '--concurrency', '1', '--frames', '4', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(seen.length, 3);
    const bytes = readFileSync(VIDEO).toString('base64');
    for (const [i, s] of seen.entries()) {
      assert.deepEqual(s.content.map((c) => c.type), ['video_url', 'text']);
      assert.equal(s.content[0]!.video_url!.url, `data:video/x-matroska;base64,${bytes}`);
      assert.equal(s.content[1]!.text, QUESTIONS[i]!.question);
      assert.deepEqual(s.mgllava, { frames: 4, pad: true, box_limit: 100 });
    }
    assert.deepEqual([...byIndex(out).values()], ['a ball', 'a ball', 'a ball']);
    assert.equal((JSON.parse(r.stdout) as RunJson).overall, 1 / 3);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('eval msvd_qa: bad input is one line', async () => {
  const other = join(dir, 'other_boxes.json');
  const entry = (JSON.parse(readFileSync(FIXTURE_BOXES, 'utf8')) as { video: string; frames: unknown[] }[])[0]!;
  writeFileSync(other, JSON.stringify([{ ...entry, video: 'clip_a.mkv' }]));
  const short = join(dir, 'short_boxes.json');
  writeFileSync(short, JSON.stringify([{ ...entry, video: 'clip_a.mkv' }, { video: 'clip_b.mkv', frames: entry.frames.slice(0, 1) }]));
  const imageBoxes = join(dir, 'image_boxes.json');
  writeFileSync(imageBoxes, JSON.stringify([{ id: 101, boxes: [], labels: [], scores: [] }]));
  const out = (n: string) => join(dir, 'bad', n);
  assertOneLineError(await mgllava([...base(out('1')), '--boxes', other, '--frames', '2']), /other_boxes\.json: no entry for video "clip_b"/);
  assertOneLineError(await mgllava([...base(out('2')), '--boxes', short, '--frames', '2']), /video "clip_b" has 1 frame entries, need one per sampled frame \(2\)/);
  assertOneLineError(await mgllava([...base(out('3')), '--boxes', imageBoxes, '--frames', '2']), /release's video box JSON/);
  assertOneLineError(await mgllava([...base(out('4')).map((x) => (x === videos ? dir : x)), '--boxes', boxes, '--frames', '2']), /row 101: video not found: .*clip_a\.mkv/);
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', join(ROOT, 'fixtures', 'eval', 'mmbench.tsv'), '--out', out('5'), '--no-boxes', '--frames', '2']), /--frames goes with the video QA benchmarks/);
  assertOneLineError(await mgllava(['eval', '--bench', 'mmbench', '--data', join(ROOT, 'fixtures', 'eval', 'mmbench.tsv'), '--out', out('6'), '--no-boxes', '--judge-url', 'http://127.0.0.1:1/v1']), /--judge-url goes with the video QA benchmarks/);
  assertOneLineError(await mgllava([...base(out('7')), ...FILE2(), '--judge-model', 'x']), /--judge-model goes with --judge-url/);
});
