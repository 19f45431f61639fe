// `mgllava eval` over the LLaVA jsonl files the release uses (POPE's three files as splits, VQAv2
// test-dev with its upload file over the whole test split, TextVQA with its annotations), on the
// tiny model with an image folder; MME scored from a predictions TSV.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../weights/torch-builders.js';
import { mgllava } from '../helpers/cli.js';
import { evaluateMme } from '../../src/eval/mme.js';
import { parseTsv } from '../../src/eval/tsv.js';

const L = join(ROOT, 'fixtures', 'eval', 'llava');
const FAST = ['--no-boxes', '--max-new-tokens', '3', '-q', '--json'];

/** An image folder with a picture under every name the jsonl files use. */
function imageFolder(files: string[]): string {
  const dir = join(tempDir(), 'images');
  for (const f of files) {
    for (const line of readFileSync(f, 'utf8').split('\n').filter((l) => l.trim())) {
      const p = join(dir, (JSON.parse(line) as { image: string }).image);
      mkdirSync(dirname(p), { recursive: true });
      copyFileSync(join(L, 'images', 'a.png'), p);
    }
  }
  return dir;
}

test('eval pope from the three LLaVA jsonl files: one split per file, scored', async () => {
  const files = ['adversarial', 'popular', 'random'].map((s) => join(L, `coco_pope_${s}.json`));
  const out = join(tempDir(), 'pope');
  const r = await mgllava(['eval', '--bench', 'pope', '--data', ...files, '--images', imageFolder(files), '--out', out, ...FAST]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { total: number; table: { rows: { split: string }[] }; release: { method: string; detail: Record<string, unknown> } };
  assert.equal(j.total, 10);
  // The release's own POPE number (mean F1 of the three files) beside VLMEvalKit's.
  assert.match(j.release.method, /mean F1 of the splits/);
  assert.deepEqual(Object.keys(j.release.detail), ['coco_pope_adversarial', 'coco_pope_popular', 'coco_pope_random']);
  assert.deepEqual(j.table.rows.map((x) => x.split), ['Overall', 'coco_pope_adversarial', 'coco_pope_popular', 'coco_pope_random']);
  const pred = parseTsv(readFileSync(join(out, 'POPE_predictions.tsv'), 'utf8'));
  assert.ok(pred.has('question_id') && pred.has('prediction') && !pred.has('image'));
});

test('eval vqav2: predictions for test-dev and the EvalAI upload file over the whole test split', async () => {
  const q = join(L, 'vqav2_test-dev2015.jsonl');
  const split = join(L, 'vqav2_test2015.jsonl');
  const out = join(tempDir(), 'vqav2');
  const r = await mgllava(['eval', '--bench', 'vqav2', '--data', q, '--answers', split, '--images', imageFolder([q]), '--out', out, ...FAST]);
  assert.equal(r.code, 0, r.stderr);
  assert.match((JSON.parse(r.stdout) as { note: string }).note, /EvalAI/);
  const upload = JSON.parse(readFileSync(join(out, 'VQAv2_TestDev_upload.json'), 'utf8')) as { question_id: number; answer: string }[];
  const splitIds = readFileSync(split, 'utf8').split('\n').filter((l) => l.trim()).map((l) => (JSON.parse(l) as { question_id: number }).question_id);
  assert.deepEqual(upload.map((u) => u.question_id), splitIds);
  const devIds = new Set(readFileSync(q, 'utf8').split('\n').filter((l) => l.trim()).map((l) => (JSON.parse(l) as { question_id: number }).question_id));
  for (const u of upload) if (!devIds.has(u.question_id)) assert.equal(u.answer, '', `${u.question_id} is not in test-dev`);
});

test('eval textvqa from the LLaVA jsonl with its annotations: prompts as given, VQA accuracy', async () => {
  const q = join(L, 'textvqa_val.jsonl');
  const out = join(tempDir(), 'textvqa');
  const r = await mgllava(['eval', '--bench', 'textvqa', '--data', q, '--answers', join(L, 'textvqa_val_annotations.json'), '--images', imageFolder([q]), '--out', out, ...FAST]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { total: number; overall: number; release: { method: string; value: number } };
  assert.match(j.release.method, /MMF m4c/);
  assert.equal(typeof j.release.value, 'number');
  assert.equal(j.total, readFileSync(q, 'utf8').split('\n').filter((l) => l.trim()).length);
  assert.equal(typeof j.overall, 'number');
});

test('eval score mme: VLMEvalKit\'s MME rating from a predictions TSV', async () => {
  const data = parseTsv(readFileSync(join(L, 'mme.tsv'), 'utf8'));
  const dir = tempDir();
  const predPath = join(dir, 'pred.tsv');
  const kept = data.columns.filter((c) => c !== 'prediction'); // the fixture carries example predictions
  const cols = [...kept, 'prediction'];
  const preds = Array.from({ length: data.length }, (_, r) => (r % 3 === 0 ? 'No' : data.str(r, 'answer')));
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  writeFileSync(predPath, [cols.map(q).join('\t'), ...preds.map((p, r) => [...kept.map((c) => q(data.str(r, c))), q(p)].join('\t'))].join('\n') + '\n');
  const r = await mgllava(['eval', 'score', '--bench', 'mme', '--data', join(L, 'mme.tsv'), '--predictions', predPath, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { overall: number; table: { columns: string[]; rows: Record<string, number>[] } };
  const ref = evaluateMme(Array.from({ length: data.length }, (_, i) => ({ index: data.str(i, 'index'), category: data.str(i, 'category'), image_path: data.str(i, 'image_path'), answer: data.str(i, 'answer'), prediction: preds[i]! })), { partial: true });
  assert.equal(j.overall, ref.rating.perception);
  assert.deepEqual(j.table.columns, ref.rating.columns);
  assert.deepEqual(j.table.rows, ref.rating.rows);
});
