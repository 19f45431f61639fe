// The release's video QA files (questions + answers matched by position) read into an EvalSet.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { InputError } from '../../src/core/errors.js';
import { rowKeys } from '../../src/eval/dataset.js';
import { readVideoQa, videoFormatFromBoxFile, VIDEO_EXTENSIONS } from '../../src/eval/video-qa.js';

const DIR = join(ROOT, 'fixtures', 'eval', 'video');
const Q = join(DIR, 'questions.json');
const A = join(DIR, 'answers.json');
const BOXES = join(DIR, 'boxes.json');

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'mgllava-videoqa-'));
}

function writeJson(dir: string, name: string, x: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof x === 'string' ? x : JSON.stringify(x));
  return p;
}

function throwsInput(f: () => unknown, re: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof InputError, `not an InputError: ${String(e)}`);
    assert.match((e as Error).message, re);
    return true;
  });
}

test('video QA: the table, as VIDEOQADataset.load_data_list builds it', () => {
  const set = readVideoQa(Q, A, { videos: '/videos', boxes: BOXES });
  const t = set.table;
  assert.deepEqual(t.columns, ['index', 'video', 'question', 'answer']);
  assert.deepEqual(t.kinds, ['int', 'str', 'str', 'str']);
  assert.equal(t.length, 6);
  assert.deepEqual(rowKeys(set), ['0', '1', '2', '3', '4', '5']);
  assert.equal(t.get(0, 'index'), 0);
  assert.deepEqual(t.row(0), { index: 0, video: '-4wsuPCjDBc_5_15', question: 'what is a man cutting?', answer: 'tomato' });
  assert.equal(t.str(2, 'answer'), 'cook'); // an answer without question_id: by position
  assert.equal(t.str(4, 'answer'), '2'); // a number answer: str(2)
  assert.equal(t.str(5, 'question'), 'what is the man in the "red" shirt doing?');
  assert.deepEqual(set.files, [Q, A, BOXES]);
  assert.deepEqual(set.boxKeys(1), ['-4wsuPCjDBc_5_15']);
});

test('video QA: the video format from the box JSON, or given, with no existence check', () => {
  assert.equal(videoFormatFromBoxFile(BOXES), '.avi');
  const byBoxes = readVideoQa(Q, A, { videos: '/videos', boxes: BOXES });
  assert.deepEqual(byBoxes.media(0), { kind: 'video', path: join('/videos', '-4wsuPCjDBc_5_15.avi') });
  const given = readVideoQa(Q, A, { videos: '/videos', format: 'mp4', boxes: BOXES });
  assert.deepEqual(given.media(5), { kind: 'video', path: join('/videos', 'video7010.mp4') });
  assert.deepEqual(given.files, [Q, A]);
  assert.deepEqual(readVideoQa(Q, A, { videos: '/v', format: '.webm' }).media(2), { kind: 'video', path: join('/v', '0lh_UWF9ZP4_62_69.webm') });
  assert.throws(() => given.media(6), RangeError);
});

test('video QA: without a format each video is looked for (.mp4, .avi, .mov, .mkv, .webm)', () => {
  assert.deepEqual(VIDEO_EXTENSIONS, ['.mp4', '.avi', '.mov', '.mkv', '.webm']);
  const dir = tmp();
  try {
    writeFileSync(join(dir, '-4wsuPCjDBc_5_15.avi'), '');
    writeFileSync(join(dir, '-4wsuPCjDBc_5_15.mkv'), '');
    writeFileSync(join(dir, '0lh_UWF9ZP4_62_69.mov'), '');
    writeFileSync(join(dir, 'video7010.mp4'), '');
    writeFileSync(join(dir, 'video7010.avi'), '');
    const set = readVideoQa(Q, A, { videos: dir });
    assert.deepEqual(set.media(0), { kind: 'video', path: join(dir, '-4wsuPCjDBc_5_15.avi') });
    assert.deepEqual(set.media(1), { kind: 'video', path: join(dir, '-4wsuPCjDBc_5_15.avi') });
    assert.deepEqual(set.media(2), { kind: 'video', path: join(dir, '0lh_UWF9ZP4_62_69.mov') });
    assert.deepEqual(set.media(5), { kind: 'video', path: join(dir, 'video7010.mp4') });
    throwsInput(() => set.media(4), /no video for "5HAf_INrFy0_3_25" \(question 4, position 4 of .*questions\.json\).*tried \.mp4/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('video QA: string question ids are kept as strings', () => {
  const dir = tmp();
  try {
    const q = writeJson(dir, 'q.json', [
      { video_name: 'a', question_id: 'v_a_0', question: 'q0' },
      { video_name: 'b', question_id: 'v_b_0', question: 'q1' },
    ]);
    const a = writeJson(dir, 'a.json', [{ answer: 'x', question_id: 'v_a_0' }, { answer: 'y' }]);
    const set = readVideoQa(q, a, { videos: dir, format: 'mp4' });
    assert.equal(set.table.kind('index'), 'str');
    assert.deepEqual(rowKeys(set), ['v_a_0', 'v_b_0']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('video QA: malformed input is an InputError naming the file and the position', () => {
  const dir = tmp();
  try {
    const qs = [
      { video_name: 'a', question_id: 0, question: 'q0' },
      { video_name: 'b', question_id: 1, question: 'q1' },
    ];
    const q = writeJson(dir, 'q.json', qs);
    const a2 = writeJson(dir, 'a.json', [{ answer: 'x' }, { answer: 'y' }]);
    const o = { videos: dir };

    throwsInput(() => readVideoQa(q, writeJson(dir, 'short.json', [{ answer: 'x' }]), o), /differ in length: 2 questions in .*q\.json, 1 answers in .*short\.json/);
    throwsInput(
      () => readVideoQa(q, writeJson(dir, 'swap.json', [{ answer: 'x', question_id: 0 }, { answer: 'y', question_id: 7 }]), o),
      /out of step at position 1: .*q\.json has question_id 1, .*swap\.json has question_id 7/,
    );
    throwsInput(
      () => readVideoQa(q, writeJson(dir, 'strid.json', [{ answer: 'x', question_id: '0' }, { answer: 'y' }]), o),
      /out of step at position 0: .*has question_id 0, .*strid\.json has question_id "0"/,
    );
    throwsInput(() => readVideoQa(writeJson(dir, 'dup.json', [qs[0], { ...qs[1], question_id: 0 }]), a2, o), /dup\.json, position 1 repeats question_id 0 \(first at position 0\)/);
    throwsInput(() => readVideoQa(writeJson(dir, 'nov.json', [qs[0], { question_id: 1, question: 'q' }]), a2, o), /nov\.json, position 1 has no video_name/);
    throwsInput(() => readVideoQa(writeJson(dir, 'noq.json', [qs[0], { question_id: 1, video_name: 'b' }]), a2, o), /noq\.json, position 1 has no question/);
    throwsInput(() => readVideoQa(writeJson(dir, 'noid.json', [{ video_name: 'a', question: 'q' }, qs[1]]), a2, o), /noid\.json, position 0 has no question_id/);
    throwsInput(() => readVideoQa(writeJson(dir, 'mixed.json', [qs[0], { ...qs[1], question_id: 'x' }]), a2, o), /mixed\.json, position 1 has question_id "x", a string, but earlier ones are numbers/);
    throwsInput(() => readVideoQa(q, writeJson(dir, 'noa.json', [{ answer: 'x' }, { question_id: 1 }]), o), /noa\.json, position 1 has no answer/);
    throwsInput(() => readVideoQa(q, writeJson(dir, 'nota.json', [{ answer: 'x' }, 'y']), o), /nota\.json, position 1 is not an object/);
    throwsInput(() => readVideoQa(writeJson(dir, 'obj.json', { a: 1 }), a2, o), /obj\.json is not a JSON list/);
    throwsInput(() => readVideoQa(writeJson(dir, 'bad.json', '[{"video_name": '), a2, o), /bad\.json is not valid JSON/);
    throwsInput(() => readVideoQa(join(dir, 'missing.json'), a2, o), /questions file not found: .*missing\.json/);
    throwsInput(() => readVideoQa(q, a2, { videos: dir, boxes: writeJson(dir, 'b.json', [{ video: 'noext' }]) }), /b\.json: entry 0's video "noext" has no extension/);
    throwsInput(() => readVideoQa(q, a2, { videos: dir, boxes: writeJson(dir, 'b2.json', []) }), /b2\.json is not a non-empty JSON list/);
    // the error's subject is the file at fault
    try {
      readVideoQa(q, writeJson(dir, 'short.json', [{ answer: 'x' }]), o);
    } catch (e) {
      assert.equal((e as InputError).subject, join(dir, 'short.json'));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
