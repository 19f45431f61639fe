// `mgllava quantize --report` on random LLM folders at shapes the k-quants take (rows of 256):
// the storage types llama.cpp's Q4_K_M would give each matrix, the error order of the formats,
// the bits per weight, sampled rows against every row, and the user mistakes.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomLlm } from '../../bench/llm-files.js';
import { weightErrorReport } from '../../src/quant/error-report.js';
import { formatsByName } from '../../src/quant/formats.js';
import { TINY } from '../helpers/fixtures.js';
import { assertOneLineError, mgllava } from '../helpers/cli.js';
import type { ErrorReport } from '../../src/quant/error-report.js';

let tmp: string;
let phi3: string;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'quant-report-'));
  phi3 = join(tmp, 'phi3');
  // 8 layers: use_more_bits picks layers 0, 3, 6 and 7 for Q4_K_M's Q6_K down projections
  writeRandomLlm(phi3, { arch: 'phi3', hidden: 256, layers: 8, heads: 4, kvHeads: 4, intermediate: 512, vocab: 512, maxPositions: 256 }, join(TINY, 'llm'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

test('the report through the CLI: Q4_K_M\'s types, the error order, bits per weight', async () => {
  const r = await mgllava(['quantize', '--report', '--llm', phi3, '--rows', '0', '--json', '--quiet', '--formats', 'q4-b32-zp,q4-b32-sym,q4-b128-zp,q8-b32-zp,Q4_0,Q4_K_M,Q8_0']);
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as ErrorReport;
  assert.equal(rep.matrices, 8 * 4 + 1); // qkv, o, gate_up, down per layer; the head
  const f = Object.fromEntries(rep.formats.map((x) => [x.format, x]));
  assert.deepEqual(f.Q4_K_M!.types, ['Q4_K', 'Q5_K', 'Q6_K']);
  assert.deepEqual(f.Q4_0!.types, ['Q4_0', 'Q6_K']);
  assert.deepEqual(f.Q8_0!.types, ['Q8_0']);
  const e = (n: string) => f[n]!.relRms;
  assert.ok(e('q8-b32-zp') < e('Q8_0') * 1.2 && e('Q8_0') < e('Q4_K_M'), JSON.stringify(rep.formats));
  assert.ok(e('Q4_K_M') < e('Q4_0') && e('q4-b32-zp') < e('q4-b32-sym') && e('q4-b32-zp') < e('q4-b128-zp'), JSON.stringify(rep.formats));
  // every matrix here is [N, 256] or [N, 512], whole blocks: the bits are the formats' own
  assert.equal(f['q4-b32-zp']!.bitsPerWeight, 4 + (32 + 4) / 32);
  assert.equal(f['q4-b32-sym']!.bitsPerWeight, 4 + 32 / 32);
  assert.ok(f.Q4_0!.bitsPerWeight > 4.5 && f.Q4_0!.bitsPerWeight < 6.5625, String(f.Q4_0!.bitsPerWeight)); // the head in Q6_K
  assert.ok(f.Q4_K_M!.bitsPerWeight > f.Q4_0!.bitsPerWeight, 'Q4_K_M spends more bits than Q4_0');
});

test('sampled rows estimate the whole-matrix error', async () => {
  const formats = formatsByName(['q4-b64-zp', 'Q4_K_M']);
  const all = await weightErrorReport(phi3, formats, { rowsPerMatrix: 0 });
  const some = await weightErrorReport(phi3, formats, { rowsPerMatrix: 32 });
  for (let i = 0; i < formats.length; i++) {
    const ratio = some.formats[i]!.relRms / all.formats[i]!.relRms;
    assert.ok(ratio > 0.9 && ratio < 1.1, `${formats[i]!.name}: ${ratio}`);
    assert.equal(some.formats[i]!.bitsPerWeight, all.formats[i]!.bitsPerWeight);
  }
});

test('the report\'s user mistakes are one-line errors', async () => {
  assertOneLineError(await mgllava(['quantize', '--report', '--llm', phi3, '--formats', 'q3-b32']), /--formats: unknown format q3-b32; known: q4-b32-zp/);
  assertOneLineError(await mgllava(['quantize', '--report', '--llm', phi3, '--out', join(tmp, 'x')]), /--report writes nothing/);
  assertOneLineError(await mgllava(['quantize', '--llm', phi3]), /missing --out/);
  assertOneLineError(await mgllava(['quantize', '--llm', phi3, '--out', join(tmp, 'y'), '--json']), /--json goes with --report/);
  assertOneLineError(await mgllava(['quantize', '--report', '--llm', join(tmp, 'nope')]), /nope/);
});
