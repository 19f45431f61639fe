// The synthetic world: the spec's ranges over many scenes, every answer recomputed here from the
// objects, the "small" rule, rendering (object centres, background noise), captions and the
// vocabulary.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/train/rng.js';
import {
  COLOURS, COLOUR_RGB, QUESTION_TYPES, SHAPES, applicableTypes, caption, generateScene, questionOfType, questionsFor,
  renderScene, synthCorpus, synthVocabulary, type Question, type Scene, type SynthObject,
} from '../../src/synth/index.js';

const scenes = (n: number, seed = 11): Scene[] => Array.from({ length: n }, (_, i) => generateScene(Rng.seeded(seed, i)));
const cx = (o: SynthObject) => (o.box[0] + o.box[2]) / 2;

test('scenes: sizes, colours, counts, boxes wholly inside and at least 4 px apart', () => {
  const counts = new Set<number>();
  for (const s of scenes(300)) {
    assert.ok(Number.isInteger(s.width) && s.width >= 320 && s.width <= 640);
    assert.ok(Number.isInteger(s.height) && s.height >= 320 && s.height <= 640);
    for (const c of s.background) assert.ok(Number.isInteger(c) && c >= 200 && c <= 250);
    assert.ok(s.objects.length >= 1 && s.objects.length <= 6);
    counts.add(s.objects.length);
    for (const o of s.objects) {
      assert.ok(SHAPES.includes(o.shape) && COLOURS.includes(o.colour));
      const [lo, hi] = o.size === 'small' ? [16, 32] : [56, 112];
      assert.ok(Number.isInteger(o.side) && o.side >= lo && o.side <= hi, `${o.size} ${o.side}`);
      const [x1, y1, x2, y2] = o.box;
      assert.ok(o.box.every(Number.isInteger));
      assert.equal(x2 - x1, o.side);
      assert.equal(y2 - y1, o.side);
      assert.ok(x1 >= 0 && y1 >= 0 && x2 <= s.width && y2 <= s.height);
    }
    for (let i = 0; i < s.objects.length; i++) {
      for (let j = i + 1; j < s.objects.length; j++) {
        const a = s.objects[i]!.box;
        const b = s.objects[j]!.box;
        const gapX = Math.max(b[0] - a[2], a[0] - b[2]);
        const gapY = Math.max(b[1] - a[3], a[1] - b[3]);
        assert.ok(gapX >= 4 || gapY >= 4, `boxes ${a} and ${b}`);
      }
    }
  }
  assert.deepEqual([...counts].sort(), [1, 2, 3, 4, 5, 6]);
  // deterministic per seed and stream
  assert.deepEqual(generateScene(Rng.seeded(3, 4)), generateScene(Rng.seeded(3, 4)));
  assert.notDeepEqual(generateScene(Rng.seeded(3, 4)), generateScene(Rng.seeded(4, 4)));
});

test('scenes: maxObjects bounds the uniform object count (a curriculum\'s easy scenes); bad values refused', () => {
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) seen.add(generateScene(Rng.seeded(7, i), { maxObjects: 2 }).objects.length);
  assert.deepEqual([...seen].sort(), [1, 2]);
  for (let i = 0; i < 20; i++) assert.equal(generateScene(Rng.seeded(7, i), { maxObjects: 1 }).objects.length, 1);
  assert.throws(() => generateScene(Rng.seeded(7, 0), { maxObjects: 7 }), /maxObjects must be an integer in \[1, 6\]/);
  assert.throws(() => generateScene(Rng.seeded(7, 0), { maxObjects: 0 }), /maxObjects/);
});

/** The answer and the "small" flag recomputed from the question text and the objects. */
function recompute(q: Question, s: Scene): { answer: string; small: boolean; type: string } {
  const objs = s.objects;
  const allSmall = (xs: SynthObject[]) => xs.length > 0 && xs.every((o) => o.size === 'small');
  let m: RegExpMatchArray | null;
  if (q.question === 'How many objects are there?') return { type: 'count_all', answer: String(objs.length), small: allSmall(objs) };
  if ((m = q.question.match(/^How many (small|large) (\w+) (\w+)s are there\?$/))) {
    const f = objs.filter((o) => o.size === m![1] && o.colour === m![2] && o.shape === m![3]);
    return { type: 'count_size', answer: String(f.length), small: m[1] === 'small' };
  }
  if ((m = q.question.match(/^How many (\w+) (\w+)s are there\?$/))) {
    const f = objs.filter((o) => o.colour === m![1] && o.shape === m![2]);
    return { type: 'count', answer: String(f.length), small: allSmall(f) };
  }
  if ((m = q.question.match(/^Is there a (small|large) (\w+) (\w+)\?$/))) {
    const f = objs.filter((o) => o.size === m![1] && o.colour === m![2] && o.shape === m![3]);
    return { type: 'exists_size', answer: f.length ? 'Yes' : 'No', small: m[1] === 'small' };
  }
  if ((m = q.question.match(/^Is there a (\w+) (\w+)\?$/))) {
    const f = objs.filter((o) => o.colour === m![1] && o.shape === m![2]);
    return { type: 'exists', answer: f.length ? 'Yes' : 'No', small: allSmall(f) };
  }
  if ((m = q.question.match(/^What colour is the (\w+)\?$/))) {
    const f = objs.filter((o) => o.shape === m![1]);
    assert.equal(f.length, 1, q.question);
    return { type: 'colour', answer: f[0]!.colour, small: allSmall(f) };
  }
  if ((m = q.question.match(/^What shape is the (\w+) object\?$/))) {
    const f = objs.filter((o) => o.colour === m![1]);
    assert.equal(f.length, 1, q.question);
    return { type: 'shape', answer: f[0]!.shape, small: allSmall(f) };
  }
  if ((m = q.question.match(/^Is the (\w+) (\w+) to the left of the (\w+) (\w+)\?$/))) {
    const a = objs.filter((o) => o.colour === m![1] && o.shape === m![2]);
    const b = objs.filter((o) => o.colour === m![3] && o.shape === m![4]);
    assert.equal(a.length, 1, q.question);
    assert.equal(b.length, 1, q.question);
    assert.notEqual(cx(a[0]!), cx(b[0]!));
    return { type: 'left_of', answer: cx(a[0]!) < cx(b[0]!) ? 'Yes' : 'No', small: allSmall([a[0]!, b[0]!]) };
  }
  throw new Error(`unknown question ${q.question}`);
}

test('questions: every answer and small flag as recomputed from the objects; all types, balanced yes/no', () => {
  const seen = new Map<string, Map<string, number>>();
  const tally = (q: Question) => {
    const t = seen.get(q.type) ?? new Map<string, number>();
    t.set(q.answer, (t.get(q.answer) ?? 0) + 1);
    seen.set(q.type, t);
  };
  scenes(300, 5).forEach((s, i) => {
    const rng = Rng.seeded(99, i);
    const qs = [...questionsFor(s, rng, 6), ...applicableTypes(s).map((t) => questionOfType(s, rng, t))];
    for (const q of qs) {
      const r = recompute(q, s);
      assert.equal(q.type, r.type, q.question);
      assert.equal(q.answer, r.answer, q.question);
      assert.equal(q.small, r.small, `${q.question} small`);
      tally(q);
    }
    const texts = questionsFor(s, Rng.seeded(1, i), 6).map((q) => q.question);
    assert.equal(texts.length, 6);
  });
  assert.deepEqual([...seen.keys()].sort(), [...QUESTION_TYPES].sort());
  for (const t of ['exists', 'exists_size', 'left_of']) {
    const yes = seen.get(t)!.get('Yes') ?? 0;
    const no = seen.get(t)!.get('No') ?? 0;
    assert.ok(yes / (yes + no) > 0.3 && yes / (yes + no) < 0.7, `${t}: ${yes} yes, ${no} no`);
  }
  for (const t of ['count', 'count_size']) {
    const m = seen.get(t)!;
    const total = [...m.values()].reduce((a, b) => a + b, 0);
    assert.ok((m.get('0') ?? 0) > 0.1 * total && (m.get('0') ?? 0) < 0.5 * total, `${t}: zeros ${m.get('0')} of ${total}`);
  }
});

test('questions: the no-repeat redraws skew existence toward "No" on one-object scenes; repeats keep it balanced', () => {
  const share = (repeats: boolean) => {
    let yes = 0;
    let all = 0;
    for (let i = 0; i < 200; i++) {
      const rng = Rng.seeded(7, i);
      const s = generateScene(rng, { maxObjects: 1 });
      for (const q of questionsFor(s, rng, 8, { types: ['exists'], repeats })) {
        assert.equal(q.answer, recompute(q, s).answer, q.question);
        yes += q.answer === 'Yes' ? 1 : 0;
        all++;
      }
    }
    return yes / all;
  };
  // one "Yes" question per scene: without repeats it comes back only when 8 redraws all fail
  assert.ok(share(false) < 0.2, String(share(false)));
  const r = share(true);
  assert.ok(r > 0.4 && r < 0.6, String(r));
});

test('rendering: an object centre has its colour; background pixels within the background +- 8', () => {
  for (const s of scenes(20, 8)) {
    const px = renderScene(s);
    assert.equal(px.length, s.width * s.height * 3);
    for (const o of s.objects) {
      const x = Math.floor(cx(o));
      const y = Math.floor((o.box[1] + o.box[3]) / 2);
      const k = (y * s.width + x) * 3;
      assert.deepEqual([px[k], px[k + 1], px[k + 2]], [...COLOUR_RGB[o.colour]], `${o.colour} ${o.shape} at ${x},${y}`);
    }
    const inBox = (x: number, y: number) => s.objects.some((o) => x >= o.box[0] && x < o.box[2] && y >= o.box[1] && y < o.box[3]);
    let noisy = 0;
    for (let y = 0; y < s.height; y += 3) {
      for (let x = 0; x < s.width; x += 5) {
        if (inBox(x, y)) continue;
        for (let c = 0; c < 3; c++) {
          const v = px[(y * s.width + x) * 3 + c]!;
          assert.ok(Math.abs(v - s.background[c]!) <= 8, `pixel ${x},${y}: ${v} vs ${s.background[c]}`);
          if (v !== s.background[c]) noisy++;
        }
      }
    }
    assert.ok(noisy > 0, 'the background has noise');
    assert.deepEqual(renderScene(s), px, 'rendering is a function of the scene');
  }
});

test('captions: objects in box order; one object; the vocabulary covers every text', () => {
  const o = (colour: SynthObject['colour'], shape: SynthObject['shape'], size: SynthObject['size'], x: number): SynthObject =>
    ({ colour, shape, size, side: 20, box: [x, 10, x + 20, 30] });
  const base = { width: 400, height: 400, background: [220, 220, 220] as [number, number, number], noiseSeed: 1 };
  assert.equal(caption({ ...base, objects: [o('blue', 'square', 'large', 100), o('red', 'circle', 'small', 10), o('green', 'triangle', 'small', 200)] }),
    'A large blue square, a small red circle and a small green triangle.');
  assert.equal(caption({ ...base, objects: [o('yellow', 'square', 'large', 100)] }), 'A large yellow square.');
  assert.equal(caption({ ...base, objects: [o('yellow', 'square', 'large', 100), o('red', 'circle', 'small', 10)] }), 'A large yellow square and a small red circle.');
  const vocab = new Set(synthVocabulary());
  const corpus = new Set(synthCorpus());
  const words = (t: string) => t.split(/(\s+|[?.,'])/).filter((w) => w.trim() !== '');
  scenes(50, 2).forEach((s, i) => {
    for (const w of words(caption(s))) assert.ok(vocab.has(w), w);
    for (const q of questionsFor(s, Rng.seeded(0, i), 6)) {
      assert.ok(corpus.has(q.question), q.question);
      for (const w of [...words(q.question), q.answer]) assert.ok(vocab.has(w), w);
    }
  });
});
