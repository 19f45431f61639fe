import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  canInfer, canInferOption, canInferText, circularAbnormal, circularExpand, mcqResultColumns, mcqCircularEval, mcqVanillaEval, reportAcc,
  scoreMcqCircular, scoreMcqVanilla, type AccTable,
} from '../../src/eval/mcq.js';
import { TsvTable, readTsv } from '../../src/eval/tsv.js';

const FIX = join(process.cwd(), 'fixtures', 'eval');
const load = (f: string): any => JSON.parse(readFileSync(join(FIX, f), 'utf8'));

function assertTable(actual: AccTable, expected: { columns: string[]; rows: Record<string, string | number>[] }): void {
  assert.deepEqual(actual.columns, expected.columns);
  assert.equal(actual.rows.length, expected.rows.length);
  expected.rows.forEach((er, i) => {
    const ar = actual.rows[i]!;
    for (const c of expected.columns) {
      const e = er[c]!;
      const a = ar[c]!;
      if (typeof e === 'number') {
        assert.equal(typeof a, 'number', c);
        assert.ok(Math.abs((a as number) - e) <= 1e-9, `${c}: ${a} vs ${e}`);
      } else {
        assert.equal(a, e, c);
      }
    }
  });
}

test('can_infer vectors (option, text, combined, VERBOSE)', () => {
  const v = load('vectors.json');
  assert.equal(v.can_infer.length, 32);
  for (const c of v.can_infer) {
    const ch = () => ({ ...c.choices });
    const msg = JSON.stringify(c.answer);
    assert.equal(canInferOption(c.answer, ch(), { verbose: false }), c.can_infer_option, `option ${msg}`);
    assert.equal(canInferText(c.answer, ch()), c.can_infer_text, `text ${msg}`);
    assert.equal(canInfer(c.answer, ch(), { verbose: false }), c.can_infer, `can_infer ${msg}`);
    assert.equal(canInfer(c.answer, ch(), { verbose: true }), c.can_infer_verbose_env, `verbose ${msg}`);
  }
});

test('can_infer follows the VERBOSE environment variable by default', () => {
  const saved = process.env.VERBOSE;
  try {
    const choices = { A: 'cat', B: 'dog', C: 'bird', D: 'fish' };
    delete process.env.VERBOSE;
    assert.equal(canInferOption('I pick A here', choices), 'A');
    process.env.VERBOSE = '0';
    assert.equal(canInferOption('I pick A here', choices), false);
    process.env.VERBOSE = '';
    assert.equal(canInferOption('I pick A here', choices), 'A');
  } finally {
    if (saved === undefined) delete process.env.VERBOSE;
    else process.env.VERBOSE = saved;
  }
});

test('circular_abnormal vectors', () => {
  const v = load('vectors.json');
  assert.equal(v.circular_abnormal.length, 8);
  for (const c of v.circular_abnormal) {
    assert.equal(circularAbnormal(c.options), c.abnormal, JSON.stringify(c.options));
  }
});

test('MMBench circular: per-row can_infer, per-group hit/log, report_acc', () => {
  const exp = load('mmbench_expected.json');
  const data = readTsv(join(FIX, 'mmbench_pred.tsv'));
  const meta = readTsv(join(FIX, 'mmbench.tsv'));
  const { groups, reportAcc: acc } = scoreMcqCircular(data, meta, { verbose: false });
  const members = new Map(groups.flatMap((g) => g.members).map((m) => [m.index, m]));
  assert.equal(members.size, exp.n_rows);
  for (const r of exp.rows) {
    const m = members.get(r.index);
    assert.ok(m, `row ${r.index}`);
    assert.equal(m.gIndex, r.g_index);
    assert.equal(m.answer, r.answer);
    assert.equal(m.prediction, r.prediction, `prediction ${r.index}`);
    assert.equal(m.canInfer, r.can_infer, `can_infer ${r.index}`);
  }
  assert.equal(groups.length, exp.n_groups);
  assert.deepEqual(groups.map((g) => g.index), exp.groups.map((g: any) => g.index));
  exp.groups.forEach((eg: any, i: number) => {
    const g = groups[i]!;
    assert.deepEqual(g.group, eg.group, `group ${eg.index}`);
    assert.equal(g.hit, eg.hit, `hit ${eg.index}`);
    assert.equal(g.log, eg.log, `log ${eg.index}`);
  });
  assert.equal(groups.filter((g) => g.hit === 1).length, 5);
  assertTable(acc, exp.report_acc);
  assert.deepEqual(acc.columns, exp.acc_file_columns);
  assert.deepEqual(mcqResultColumns(data, true), exp.result_file_columns);
});

test('MMBench circular: meta without copies keeps only its rows', () => {
  const data = readTsv(join(FIX, 'mmbench_pred.tsv'));
  const meta = readTsv(join(FIX, 'mmbench.tsv'));
  const groups = mcqCircularEval(data, meta, { verbose: false });
  for (const g of groups) assert.ok(g.group.every((i) => i % 1e6 === g.index));
});

test('vanilla MCQ: per-row can_infer, extracted, hit, log, accuracy, report_acc', () => {
  const exp = load('mcq_expected.json');
  const data = readTsv(join(FIX, 'mcq_pred.tsv'));
  const meta = readTsv(join(FIX, 'mcq.tsv'));
  const { rows, accuracy, reportAcc: acc } = scoreMcqVanilla(data, meta, { verbose: false });
  assert.equal(rows.length, exp.n_rows);
  exp.rows.forEach((er: any, i: number) => {
    const r = rows[i]!;
    assert.equal(r.index, er.index);
    assert.equal(r.answer, er.answer);
    assert.equal(r.prediction, er.prediction, `prediction ${er.index}`);
    assert.equal(r.canInfer, er.can_infer, `can_infer ${er.index}`);
    assert.equal(r.extracted, er.extracted, `extracted ${er.index}`);
    assert.equal(r.hit, er.hit, `hit ${er.index}`);
    assert.equal(r.log, er.log, `log ${er.index}`);
  });
  assert.ok(Math.abs(accuracy - exp.accuracy) <= 1e-9);
  assert.equal(rows.filter((r) => r.hit === 1).length, 9);
  assertTable(acc, exp.report_acc);
  assert.deepEqual(acc.columns, exp.acc_file_columns);
  assert.deepEqual(mcqResultColumns(data, false), exp.result_file_columns);
  assert.deepEqual(mcqVanillaEval(data, meta, { verbose: false }).map((r) => r.hit), rows.map((r) => r.hit));
});

test('report_acc: several splits sorted, MMBench abbreviations, missing groups skipped', () => {
  const t = reportAcc([
    { hit: 1, split: 'test', category: 'b', 'l2-category': 'logic_reasoning' },
    { hit: 0, split: 'dev', category: 'a', 'l2-category': 'logic_reasoning' },
    { hit: 1, split: 'dev', category: 'b', 'l2-category': 'other' },
  ]);
  assert.deepEqual(t.columns, ['split', 'Overall', 'LR', 'other', 'a', 'b']);
  assert.deepEqual(t.rows.map((r) => r.split), ['dev', 'test']);
  assert.equal(t.rows[0]!.Overall, 0.5);
  assert.equal(t.rows[1]!.LR, 1);
  assert.ok(Number.isNaN(t.rows[1]!.a as number));
  const u = reportAcc([{ hit: 1 }, { hit: 0 }]);
  assert.deepEqual(u.columns, ['split', 'Overall']);
  assert.deepEqual(u.rows, [{ split: 'none', Overall: 0.5 }]);
});

test('CIRCULAR expansion of the 12 MMBench originals gives mmbench.tsv', () => {
  const full = readTsv(join(FIX, 'mmbench.tsv'));
  const origRows = full.data.filter((r) => (r[full.col('index')] as number) < 1e6);
  const orig = new TsvTable(full.columns, full.kinds, origRows);
  const ex = circularExpand(orig, { gIndex: false });
  assert.deepEqual(ex.columns, full.columns);
  assert.equal(ex.length, full.length);
  for (let i = 0; i < full.length; i++) {
    for (const c of full.columns) assert.equal(ex.str(i, c), full.str(i, c), `row ${i} ${c}`);
  }
  const withG = circularExpand(orig);
  assert.equal(withG.columns.at(-1), 'g_index');
  for (let i = 0; i < withG.length; i++) {
    assert.equal(withG.get(i, 'g_index'), (withG.get(i, 'index') as number) % 1e6);
  }
});
