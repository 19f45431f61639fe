import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  parsePyStrList, parseTsv, pyFloatRepr, pyStr, readTsv, resolveImages, writeTable, writeTsvQuoteAll,
} from '../../src/eval/tsv.js';

const FIX = join(process.cwd(), 'fixtures', 'eval');

interface ExpRow { index: number; prediction_cell: string; prediction: string }

test('tsv: pandas NA tokens become NaN and str() gives nan', () => {
  for (const tok of ['', 'N/A', 'NA', 'None', 'null', 'nan', '#N/A', '<NA>', '-nan', 'n/a']) {
    const t = parseTsv(`a\tb\n"${tok.replace(/"/g, '""')}"\tx\n`);
    assert.equal(t.get(0, 'a'), null, tok);
    assert.equal(t.str(0, 'a'), 'nan', tok);
  }
  const t = parseTsv('a\tb\nNone \tx\n');
  assert.equal(t.str(0, 'a'), 'None ');
});

test('tsv: quoting, doubled quotes, newlines inside quotes, blank lines', () => {
  const t = parseTsv('q\tn\n"say ""hi""\nthere\tfriend"\t3\n\n"x"\t4\n');
  assert.equal(t.length, 2);
  assert.equal(t.get(0, 'q'), 'say "hi"\nthere\tfriend');
  assert.equal(t.kind('n'), 'int');
  assert.equal(t.str(1, 'n'), '4');
});

test('tsv: dtype inference drives str()', () => {
  const t = parseTsv('i\tf\tg\ts\tb\n1\t2\t1.5\t2\tTrue\n2\t\t3\tx\tFalse\n');
  assert.equal(t.kind('i'), 'int');
  assert.equal(t.kind('f'), 'float');
  assert.equal(t.str(0, 'f'), '2.0');
  assert.equal(t.str(1, 'f'), 'nan');
  assert.equal(t.str(1, 'g'), '3.0');
  assert.equal(t.kind('s'), 'str');
  assert.equal(t.str(0, 's'), '2');
  assert.equal(t.str(0, 'b'), 'True');
});

test('tsv: python float repr', () => {
  const cases: [number, string][] = [
    [5, '5.0'], [0.1, '0.1'], [1e16, '1e+16'], [1.5e-5, '1.5e-05'], [123456789012345680, '1.2345678901234568e+17'],
    [0.0001, '0.0001'], [-2.5, '-2.5'], [1e15, '1000000000000000.0'], [NaN, 'nan'], [Infinity, 'inf'],
    [0.6000000000000001, '0.6000000000000001'],
  ];
  for (const [x, s] of cases) assert.equal(pyFloatRepr(x), s);
  assert.equal(pyStr(7, 'int'), '7');
  assert.equal(pyStr(null), 'nan');
});

for (const name of ['mmbench', 'mcq', 'pope', 'textvqa', 'docvqa', 'gqa', 'chartqa']) {
  test(`tsv: ${name}_pred.tsv predictions read as VLMEvalKit reads them`, () => {
    const exp = JSON.parse(readFileSync(join(FIX, `${name}_expected.json`), 'utf8')) as { rows: ExpRow[] };
    const t = readTsv(join(FIX, `${name}_pred.tsv`));
    assert.equal(t.columns.at(-1), 'prediction');
    assert.equal(t.length, exp.rows.length);
    const byIndex = new Map<number, number>();
    for (let i = 0; i < t.length; i++) byIndex.set(t.get(i, 'index') as number, i);
    for (const r of exp.rows) {
      const i = byIndex.get(r.index);
      assert.ok(i !== undefined, `index ${r.index}`);
      assert.equal(t.str(i, 'prediction'), r.prediction, `${name} ${r.index}`);
      const cell = t.get(i, 'prediction');
      if (cell !== null) assert.equal(cell, r.prediction_cell);
    }
    const bench = readTsv(join(FIX, `${name}.tsv`));
    assert.equal(bench.length, t.length);
    assert.deepEqual(t.columns.slice(0, -1), bench.columns.filter((c) => c !== 'image'));
  });
}

test('tsv: mmbench.tsv circular copies name the original index in image, newline inside quotes', () => {
  const t = readTsv(join(FIX, 'mmbench.tsv'));
  assert.equal(t.length, 42);
  let copies = 0;
  let newline = false;
  for (let i = 0; i < t.length; i++) {
    const idx = t.get(i, 'index') as number;
    const img = t.str(i, 'image');
    if (idx >= 1e6) {
      copies++;
      assert.ok(img.length <= 64);
      assert.equal(img, String(idx % 1e6));
    } else {
      assert.ok(img.length > 64);
    }
    if (t.str(i, 'question').includes('\n')) newline = true;
  }
  assert.ok(copies > 0);
  assert.ok(newline);
});

test('tsv: QUOTE_ALL writer round-trips', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsv-test-'));
  try {
    const p = join(dir, 'a.tsv');
    writeTsvQuoteAll(p, ['index', 'prediction'], [{ index: 1, prediction: 'a "b"\nc\td' }, { index: 2, prediction: null }]);
    const text = readFileSync(p, 'utf8');
    assert.equal(text, '"index"\t"prediction"\n"1"\t"a ""b""\nc\td"\n"2"\t""\n');
    const t = readTsv(p);
    assert.equal(t.get(0, 'prediction'), 'a "b"\nc\td');
    assert.equal(t.get(1, 'prediction'), null);
    const src = readTsv(join(FIX, 'mcq_pred.tsv'));
    const q = join(dir, 'b.tsv');
    writeTable(q, src);
    assert.equal(readFileSync(q, 'utf8'), readFileSync(join(FIX, 'mcq_pred.tsv'), 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('tsv: resolveImages follows index references, toliststr lists', () => {
  const t = readTsv(join(FIX, 'mmbench.tsv'));
  const imgs = resolveImages(t);
  const byIndex = new Map<number, string>();
  for (let i = 0; i < t.length; i++) if ((t.get(i, 'index') as number) < 1e6) byIndex.set(t.get(i, 'index') as number, t.str(i, 'image'));
  for (let i = 0; i < t.length; i++) {
    const idx = t.get(i, 'index') as number;
    assert.equal(imgs[i], byIndex.get(idx % 1e6));
    assert.ok((imgs[i] as string).length > 64);
  }
  const long = 'x'.repeat(70);
  const u = parseTsv(`index\timage\n1\t['${long}', "${long}'s"]\n2\t1\n3\t\n`);
  assert.deepEqual(resolveImages(u), [[long, `${long}'s`], [long, `${long}'s`], '']);
  assert.throws(() => resolveImages(parseTsv('index\timage\n1\t7\n')));
  assert.deepEqual(parsePyStrList("['a\\'b', \"c\"]"), ["a'b", 'c']);
});
