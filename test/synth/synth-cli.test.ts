// `mgllava synth` and writeSynth: byte-identical output per seed, the files and their formats, the
// training data loads as the trainer reads it, the eval TSVs score 100% with their own answers
// through `mgllava eval score`, every eval row has its boxes, and bad arguments are one line.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { synthCorpus, writeSynth } from '../../src/synth/index.js';
import { corpusWords } from '../../src/tokenizer/build-word-bpe.js';
import { itemPrompt } from '../../src/eval/prompts.js';
import { readTsv, formatTsvQuoteAll } from '../../src/eval/tsv.js';
import { readTsvSet } from '../../src/eval/tsv-set.js';
import { benchmarkFor } from '../../src/eval/benchmarks.js';
import { indexBoxEntries, entryDetections } from '../../src/preprocess/box-index.js';
import { loadTrainData } from '../../src/train/data.js';
import { getTemplate } from '../../src/tokenizer/templates.js';
import { decodeImage } from '../../src/preprocess/decode.js';
import { llama2Tokenizer } from '../tokenizer/load.js';
import { assertOneLineError, mgllava } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'mgllava-synth-'));
after(() => rmSync(root, { recursive: true, force: true }));

function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out;
}

test('writeSynth: the same seed gives the same bytes in every file; another seed differs', async () => {
  const a = join(root, 'a');
  const b = join(root, 'b');
  const c = join(root, 'c');
  await writeSynth({ out: a, images: 4, seed: 5, evalImages: 2 });
  await writeSynth({ out: b, images: 4, seed: 5, evalImages: 2 });
  await writeSynth({ out: c, images: 4, seed: 6, evalImages: 2 });
  const fa = files(a);
  assert.deepEqual(fa, files(b));
  assert.ok(fa.includes('images/000003.jpg') && fa.includes('eval/vqa.tsv'));
  for (const f of fa) assert.ok(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), f);
  for (const f of ['boxes.json', 'stage1.json', 'images/000000.jpg', 'eval/mcq.tsv']) {
    assert.ok(!readFileSync(join(a, f)).equals(readFileSync(join(c, f))), f);
  }
  assert.ok(!existsSync(`${a}.tmp-${process.pid}`));
});

test('mgllava synth --max-objects --types: a curriculum set (one-object scenes, chosen stage-2 types)', async () => {
  const d = join(root, 'cur');
  const r = await mgllava(['synth', '--out', d, '--images', '6', '--seed', '2', '--questions', '4', '--max-objects', '1', '--types', 'exists,colour', '--eval-images', '0', '-q']);
  assert.equal(r.code, 0, r.stderr);
  const boxes = JSON.parse(readFileSync(join(d, 'boxes.json'), 'utf8')) as { labels: string[] }[];
  assert.ok(boxes.every((b) => b.labels.length === 1));
  const scenes = readFileSync(join(d, 'scenes.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { questions: { type: string }[] });
  const types = new Set(scenes.flatMap((s) => s.questions.map((q) => q.type)));
  assert.deepEqual([...types].sort(), ['colour', 'exists']);
  // left_of needs two objects: no image has a stage-2 sample, so stage2.json is an empty list.
  const e = join(root, 'cur-empty');
  await writeSynth({ out: e, images: 3, seed: 2, maxObjects: 1, types: ['left_of'], evalImages: 0 });
  assert.deepEqual(JSON.parse(readFileSync(join(e, 'stage2.json'), 'utf8')), []);
  assertOneLineError(await mgllava(['synth', '--out', join(root, 'x'), '--images', '2', '--types', 'exists,size']), /--types.*got "size"/);
  // --repeat-questions: 8 existence turns on one-object scenes, about half of them "Yes" (without
  // it, about one per image)
  const rep = join(root, 'cur-repeat');
  const r2 = await mgllava(['synth', '--out', rep, '--images', '20', '--seed', '2', '--questions', '8', '--max-objects', '1', '--types', 'exists', '--repeat-questions', '--eval-images', '0', '-q']);
  assert.equal(r2.code, 0, r2.stderr);
  const answers = readFileSync(join(rep, 'scenes.jsonl'), 'utf8').trim().split('\n').flatMap((l) => (JSON.parse(l) as { questions: { answer: string }[] }).questions.map((q) => q.answer));
  const yes = answers.filter((a) => a === 'Yes').length / answers.length;
  assert.ok(yes > 0.3 && yes < 0.7, `${yes}`);
});

test('mgllava synth: files, formats, trainer-readable data, eval TSVs scored 100% with their own answers', async () => {
  const out = join(root, 'cli');
  const r = await mgllava(['synth', '--out', out, '--images', '5', '--seed', '3', '--questions', '4', '--eval-images', '3', '-q']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.equal(r.stdout.trim().split('\n').length, 1);
  assert.match(r.stdout, /^synth: 5 images, 20 stage-2 questions, 3 eval images/);

  const scenes = readFileSync(join(out, 'scenes.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const boxes = JSON.parse(readFileSync(join(out, 'boxes.json'), 'utf8'));
  const s1 = JSON.parse(readFileSync(join(out, 'stage1.json'), 'utf8'));
  const s2 = JSON.parse(readFileSync(join(out, 'stage2.json'), 'utf8'));
  assert.equal(scenes.length, 5);
  for (let i = 0; i < 5; i++) {
    const id = String(i).padStart(6, '0');
    const sc = scenes[i];
    assert.equal(sc.id, id);
    const img = await decodeImage(readFileSync(join(out, 'images', `${id}.jpg`)), { name: id });
    assert.deepEqual([img.width, img.height], [sc.scene.width, sc.scene.height]);
    assert.deepEqual(boxes[i], { id, boxes: sc.scene.objects.map((o: any) => o.box), labels: sc.scene.objects.map((o: any) => `${o.colour} ${o.shape}`), scores: sc.scene.objects.map(() => 1) });
    assert.deepEqual(s1[i], { id, image: `images/${id}.jpg`, conversations: [{ from: 'human', value: '<image>\nDescribe the image.' }, { from: 'gpt', value: sc.caption }] });
    const conv = s2[i].conversations;
    assert.equal(conv.length, 8);
    conv.forEach((t: any, j: number) => {
      const q = sc.questions[j >> 1];
      const turn = sc.turns[j >> 1];
      assert.equal(t.from, j % 2 ? 'gpt' : 'human');
      assert.equal(t.value, j % 2 ? turn.answer : `${j === 0 ? '<image>\n' : ''}${turn.prompt}`);
      // each form asks the scene's question and keeps its exact answer (or the letter of it)
      if (turn.format === 'plain') assert.deepEqual([turn.prompt, turn.answer], [q.question, q.answer]);
      if (turn.format === 'short') assert.deepEqual([turn.prompt, turn.answer], [`${q.question}\nAnswer the question using a single word or phrase.`, q.answer]);
      if (turn.format === 'pope') assert.deepEqual([turn.prompt, turn.answer], [`${q.question.slice(0, -1)} in the image?\nPlease answer the question with yes or no.`, q.answer]);
      if (turn.format === 'mcq') {
        const m = /^(.*)\nA\. (.*)\nB\. (.*)\nC\. (.*)\nD\. (.*)\nAnswer with the option's letter from the given choices directly\.$/.exec(turn.prompt);
        assert.ok(m, turn.prompt);
        assert.equal(m[1], q.question);
        assert.equal(m['ABCD'.indexOf(turn.answer) + 2], q.answer);
      }
    });
  }
  // every space-separated word the model sees (the text on each side of <image>, answers, eval prompts) is a corpus word
  const vocab = new Set(corpusWords(synthCorpus()));
  const covered = (text: string, what: string) => {
    for (const chunk of text.split('<image>')) for (const w of corpusWords([chunk])) assert.ok(vocab.has(w), `${what}: ${JSON.stringify(w)}`);
  };
  for (const s of [...s1, ...s2]) for (const t of s.conversations) covered(t.value, s.id);
  const tokenizer = llama2Tokenizer();
  for (const f of ['stage1.json', 'stage2.json']) {
    const d = await loadTrainData({ data: join(out, f), boxes: join(out, 'boxes.json'), tokenizer, template: getTemplate('vicuna') });
    assert.equal(d.samples.length, 5, f);
    assert.deepEqual(d.skipped, []);
    for (const s of d.samples) assert.ok(s.image && existsSync(s.image) && s.detections, f);
  }

  // eval: scored by `eval score` with the answers as predictions; every row finds its boxes
  const evalDir = join(out, 'eval');
  const boxIndex = indexBoxEntries(JSON.parse(readFileSync(join(evalDir, 'boxes.json'), 'utf8')), 'boxes.json');
  const evalScenes = readFileSync(join(evalDir, 'scenes.jsonl'), 'utf8').trim().split('\n');
  assert.equal(evalScenes.length, 3);
  for (const [file, bench, full] of [['mcq', 'mmbench', 1], ['pope', 'pope', 100], ['vqa', 'gqa', 100]] as const) {
    const data = join(evalDir, `${file}.tsv`);
    const t = readTsv(data);
    assert.ok(t.has('category') && t.has('small') && t.has('image'), file);
    const set = readTsvSet(data, benchmarkFor(bench));
    for (let row = 0; row < t.length; row++) {
      covered(`<image>\n${itemPrompt(benchmarkFor(bench), t, row, 'release')}`, `${file} row ${row}`);
      const key = set.boxKeys(row).find((k) => boxIndex.has(k));
      assert.ok(key !== undefined, `${file} row ${t.str(row, 'index')} has no boxes`);
      assert.ok(entryDetections(boxIndex, 'boxes.json', key, 'row').labels.length >= 1);
      const m = set.media(row);
      assert.ok(m && m.kind === 'base64', `${file} row ${row} image`);
    }
    if (file === 'mcq') {
      // circular: every original (index < 1e6) has three rotated copies at index + k * 1e6
      const idx = Array.from({ length: t.length }, (_, r) => t.get(r, 'index') as number);
      const originals = idx.filter((i) => i < 1e6);
      assert.equal(idx.length, originals.length * 4);
      for (const i of originals) for (const k of [1, 2, 3]) assert.ok(idx.includes(i + k * 1e6));
    }
    if (file === 'pope') for (let row = 0; row < t.length; row++) assert.ok(['Yes', 'No'].includes(t.str(row, 'answer')));
    const keep = t.columns.map((c, j) => (c === 'image' ? -1 : j)).filter((j) => j >= 0);
    const pred = join(root, `${file}_pred.tsv`);
    writeFileSync(pred, formatTsvQuoteAll([...keep.map((j) => t.columns[j]!), 'prediction'],
      t.data.map((row, r) => [...keep.map((j) => row[j]!), t.str(r, 'answer')]), [...keep.map((j) => t.kinds[j]!), 'str']));
    const s = await mgllava(['eval', 'score', '--bench', bench, '--data', data, '--predictions', pred, '--json']);
    assert.equal(s.code, 0, s.stderr);
    const got = JSON.parse(s.stdout);
    assert.equal(got.overall, full, `${file}: ${s.stdout.slice(0, 300)}`);
    if (file === 'vqa') {
      assert.ok(got.table.columns.includes('Overall'));
      for (const c of got.table.columns.filter((c: string) => c !== 'Overall')) assert.equal(got.table.rows[0][c], 100, c);
    }
  }
});

test('mgllava synth: bad arguments and an existing --out are one-line errors; nothing is left behind', async () => {
  assertOneLineError(await mgllava(['synth', '--out', join(root, 'x'), '--images', '0']), /--images.*positive integer/);
  assertOneLineError(await mgllava(['synth', '--out', join(root, 'x'), '--images', '-3']), /--images/);
  assertOneLineError(await mgllava(['synth', '--out', join(root, 'x'), '--images', '2', '--format', 'gif']), /--format.*jpg, png/);
  assertOneLineError(await mgllava(['synth', '--images', '2']), /--out/);
  assertOneLineError(await mgllava(['synth', '--out', join(root, 'x'), '--images', '2', '--max-objects', '9']), /--max-objects.*\[1, 6\]/);
  assertOneLineError(await mgllava(['synth', '--out', root, '--images', '2']), /already exists/);
  assertOneLineError(await mgllava(['synth', '--out', join(root, 'no', 'such'), '--images', '2']), /parent folder/);
  assert.ok(!existsSync(join(root, 'x')));
  await assert.rejects(writeSynth({ out: join(root, 'y'), images: 2, seed: 0, questions: 0 }), /--questions/);
  assert.ok(!existsSync(join(root, 'y')));
});
