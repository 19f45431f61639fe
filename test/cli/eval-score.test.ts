// `mgllava eval score` through the CLI on fixtures/eval: overall and table equal VLMEvalKit's
// values, the written files exist and are fully quoted, and user errors are one line.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { assertOneLineError, mgllava } from '../helpers/cli.js';

const EVAL = join(ROOT, 'fixtures', 'eval');
const load = (name: string): any => JSON.parse(readFileSync(join(EVAL, name), 'utf8'));
type Table = { columns: string[]; rows: Record<string, string | number>[] };

function close(a: unknown, b: unknown, what: string): void {
  if (typeof b === 'number') {
    assert.equal(typeof a, 'number', what);
    assert.ok(Math.abs((a as number) - b) <= 1e-9, `${what}: ${a} vs ${b}`);
  } else assert.equal(a, b, what);
}

function assertTable(got: Table, want: Table, what: string): void {
  assert.deepEqual(got.columns, want.columns, `${what} columns`);
  assert.equal(got.rows.length, want.rows.length, `${what} rows`);
  want.rows.forEach((w, i) => {
    for (const c of want.columns) close(got.rows[i]![c], w[c], `${what} row ${i} ${c}`);
  });
}

/** The file exists; its header, and every line of a one-record-per-line file, are all-quoted fields. */
function assertQuoted(path: string, sep: string, everyLine: boolean): void {
  assert.ok(existsSync(path), path);
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  assert.ok(lines.length >= 2, path);
  const re = new RegExp(`^"(?:[^"]|"")*"(?:${sep}"(?:[^"]|"")*")*$`);
  for (const l of everyLine ? lines : lines.slice(0, 1)) assert.match(l, re, path);
}

const CASES: { bench: string; file: string; expected: (e: any) => { overall: number; table: Table }; mcq: boolean; items: number }[] = [
  { bench: 'mmbench', file: 'mmbench', mcq: true, items: 12,
    expected: (e) => ({ overall: e.report_acc.rows[0].Overall, table: e.report_acc }) },
  { bench: 'mmstar', file: 'mcq', mcq: true, items: 22, expected: (e) => ({ overall: e.accuracy, table: e.report_acc }) },
  { bench: 'pope', file: 'pope', mcq: false, items: 24,
    expected: (e) => ({ overall: e.pope_rating.rows[0].Overall, table: e.pope_rating }) },
  ...['textvqa', 'docvqa', 'chartqa', 'gqa'].map((b) => ({
    bench: b, file: b, mcq: false, items: load(`${b}_expected.json`).n_rows as number,
    expected: (e: any) => ({ overall: e.acc.Overall, table: { columns: e.acc_file_columns, rows: [e.acc] } }),
  })),
];

for (const c of CASES) {
  test(`eval score --bench ${c.bench}: overall, table, files`, async () => {
    const exp = load(`${c.file}_expected.json`);
    const want = c.expected(exp);
    const out = mkdtempSync(join(tmpdir(), 'mgllava-eval-'));
    try {
      const r = await mgllava(['eval', 'score', '--bench', c.bench, '--data', join(EVAL, `${c.file}.tsv`),
        '--predictions', join(EVAL, `${c.file}_pred.tsv`), '--out', out, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const got = JSON.parse(r.stdout);
      assert.equal(got.bench, c.bench);
      assert.equal(got.dataset, exp.dataset_name);
      close(got.overall, want.overall, 'overall');
      assertTable(got.table, want.table, c.bench);
      assert.equal(got.items.length, c.items);
      for (const it of got.items) assert.deepEqual(Object.keys(it).sort(), ['extracted', 'index', 'prediction', 'score']);
      const scoreFile = join(out, `${exp.dataset_name}_${c.mcq ? 'acc' : 'score'}.csv`);
      assertQuoted(scoreFile, ',', true);
      assertQuoted(join(out, `${exp.dataset_name}_results.tsv`), '\t', false);
      const header = readFileSync(join(out, `${exp.dataset_name}_results.tsv`), 'utf8').split('\n')[0]!;
      assert.deepEqual(header.split('\t').map((h) => h.slice(1, -1)), exp.result_file_columns);
      const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
      close(summary.overall, want.overall, 'summary overall');
      assertTable(summary.table, want.table, `${c.bench} summary`);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
}

test('eval score: circular MMBench items are one per group, keyed by the main index', async () => {
  const exp = load('mmbench_expected.json');
  const r = await mgllava(['eval', 'score', '--bench', 'mmbench', '--data', join(EVAL, 'mmbench.tsv'),
    '--predictions', join(EVAL, 'mmbench_pred.tsv'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const got = JSON.parse(r.stdout);
  const hits = new Map((exp.groups as { index: number; hit: number }[]).map((g) => [g.index, g.hit]));
  assert.deepEqual(got.items.map((i: any) => i.index).sort((a: number, b: number) => a - b), [...hits.keys()].sort((a, b) => a - b));
  for (const it of got.items) assert.equal(it.score, hits.get(it.index), `group ${it.index}`);
});

test('eval score: plain output is a small table', async () => {
  const r = await mgllava(['eval', 'score', '--bench', 'gqa', '--data', join(EVAL, 'gqa.tsv'), '--predictions', join(EVAL, 'gqa_pred.tsv')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^gqa \(GQA_TestDev_Balanced\): overall 50 /);
  assert.match(r.stdout, /Overall\s+choose\s+query\s+verify/);
});

test('eval score: unknown bench, unscored bench and missing file are one-line errors', async () => {
  const data = join(EVAL, 'gqa.tsv');
  const pred = join(EVAL, 'gqa_pred.tsv');
  assertOneLineError(await mgllava(['eval', 'score', '--bench', 'nosuch', '--data', data, '--predictions', pred]), /unknown benchmark.*mmbench.*gqa/);
  assertOneLineError(await mgllava(['eval', 'score', '--bench', 'vqav2', '--data', data, '--predictions', pred]), /vqav2 is not scored from a predictions TSV/);
  assertOneLineError(await mgllava(['eval', 'score', '--bench', 'gqa', '--data', join(EVAL, 'missing.tsv'), '--predictions', pred]), /not found.*missing\.tsv/);
  assertOneLineError(await mgllava(['eval', 'score', '--bench', 'gqa', '--data', data, '--predictions', join(EVAL, 'missing_pred.tsv')]), /not found/);
  // A prediction file with an index the data does not have.
  const lines = readFileSync(pred, 'utf8').split('\n');
  const other = join(mkdtempSync(join(tmpdir(), 'mgllava-score-')), 'other.tsv');
  writeFileSync(other, [lines[0], lines[1]!.replace(/^"[^"]*"/, '"987654"'), ...lines.slice(2)].join('\n'));
  assertOneLineError(await mgllava(['eval', 'score', '--bench', 'gqa', '--data', data, '--predictions', other]), /prediction row with index 987654 is not in the data .*gqa\.tsv/);
});

test('eval score textvqa --official-vqa-normalisation: the official (MMF m4c) evaluator on the predictions as given', async () => {
  const e = load('textvqa_expected.json');
  const r = await mgllava(['eval', 'score', '--bench', 'textvqa', '--data', join(EVAL, 'textvqa.tsv'), '--predictions', join(EVAL, 'textvqa_pred.tsv'), '--official-vqa-normalisation', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { overall: number; items: { index: number; extracted: string; score: number }[] };
  assert.ok(Math.abs(j.overall - e.mmf_accuracy * 100) < 1e-9, `${j.overall} vs ${e.mmf_accuracy * 100}`);
  j.items.forEach((it, i) => {
    assert.equal(it.extracted, e.rows[i].mmf_pred, `row ${it.index} mmf_pred`);
    assert.ok(Math.abs(it.score - e.rows[i].mmf_score) < 1e-9, `row ${it.index} mmf_score`);
  });
  assertOneLineError(await mgllava(['eval', 'score', '--bench', 'docvqa', '--data', join(EVAL, 'docvqa.tsv'), '--predictions', join(EVAL, 'docvqa_pred.tsv'), '--official-vqa-normalisation']), /--official-vqa-normalisation is for textvqa/);
});
