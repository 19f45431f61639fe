// Questions about a synthetic scene and their exact answers, computed from the scene's objects
// (never from pixels), and the vocabulary of the whole world.
//
// Sampling (balanced where possible):
// - exists / exists_size: half the time about a present object ("Yes"), half about an absent one
//   ("No"; for exists_size, when it can, the absent one has a present colour and shape in the
//   other size);
// - count / count_size: one time in four about an absent kind (answer "0"), else a present one;
// - colour: a shape exactly one object has; shape: a colour exactly one object has;
// - left_of: two objects each unique by colour + shape with different centre x, in random order.
// A question is "small" when its size word is "small", or, without a size word, when the objects
// it refers to that exist are all small (and there is at least one): for count_all, all objects.

import type { Rng } from '../train/rng.js';
import { MCQ_INSTRUCTION, SHORT_ANSWER, YES_NO } from '../eval/prompts.js';
import { COLOURS, SHAPES, SIZES, centreOf, pick, type Colour, type Scene, type Shape, type Size, type SynthObject } from './world.js';

export const QUESTION_TYPES = ['count', 'count_size', 'count_all', 'exists', 'exists_size', 'colour', 'shape', 'left_of'] as const;
export type QuestionType = (typeof QUESTION_TYPES)[number];

export interface Question {
  type: QuestionType;
  question: string;
  answer: string;
  /** about small objects (see the rule above) */
  small: boolean;
}

type Kind = { colour: Colour; shape: Shape; size?: Size };

const matches = (o: SynthObject, k: Kind): boolean => o.colour === k.colour && o.shape === k.shape && (k.size === undefined || o.size === k.size);
const allSmall = (xs: readonly SynthObject[]): boolean => xs.length > 0 && xs.every((o) => o.size === 'small');
const yesNo = (b: boolean): string => (b ? 'Yes' : 'No');

export const ALL_KINDS: readonly Kind[] = COLOURS.flatMap((colour) => SHAPES.map((shape) => ({ colour, shape })));
export const ALL_SIZED_KINDS: readonly Required<Kind>[] = SIZES.flatMap((size) => ALL_KINDS.map((k) => ({ ...k, size })));

function kindText(k: Kind): string {
  return `${k.size ? `${k.size} ` : ''}${k.colour} ${k.shape}`;
}

export function countQuestion(k: Kind): string {
  return `How many ${kindText(k)}s are there?`;
}
export function existsQuestion(k: Kind): string {
  return `Is there a ${kindText(k)}?`;
}
export const COUNT_ALL_QUESTION = 'How many objects are there?';
export function colourQuestion(shape: Shape): string {
  return `What colour is the ${shape}?`;
}
export function shapeQuestion(colour: Colour): string {
  return `What shape is the ${colour} object?`;
}
export function leftOfQuestion(a: Kind, b: Kind): string {
  return `Is the ${a.colour} ${a.shape} to the left of the ${b.colour} ${b.shape}?`;
}

function countOf(scene: Scene, k: Kind): Question {
  const found = scene.objects.filter((o) => matches(o, k));
  return {
    type: k.size ? 'count_size' : 'count',
    question: countQuestion(k),
    answer: String(found.length),
    small: k.size ? k.size === 'small' : allSmall(found),
  };
}

function existsOf(scene: Scene, k: Kind): Question {
  const found = scene.objects.filter((o) => matches(o, k));
  return {
    type: k.size ? 'exists_size' : 'exists',
    question: existsQuestion(k),
    answer: yesNo(found.length > 0),
    small: k.size ? k.size === 'small' : allSmall(found),
  };
}

const kindOf = (o: SynthObject, sized: boolean): Kind => (sized ? { colour: o.colour, shape: o.shape, size: o.size } : { colour: o.colour, shape: o.shape });

function absentKind(scene: Scene, rng: Rng, sized: boolean): Kind | null {
  const pool = (sized ? ALL_SIZED_KINDS : ALL_KINDS).filter((k) => !scene.objects.some((o) => matches(o, k)));
  if (pool.length === 0) return null;
  if (sized && rng.nextInt(2) === 0) {
    // the hard "no": a colour and shape that is present, in the other size
    const near = pool.filter((k) => scene.objects.some((o) => o.colour === k.colour && o.shape === k.shape));
    if (near.length) return pick(rng, near);
  }
  return pick(rng, pool);
}

const uniqueBy = <T>(objects: readonly SynthObject[], key: (o: SynthObject) => T): SynthObject[] =>
  objects.filter((o) => objects.filter((p) => key(p) === key(o)).length === 1);

/** The question types that can be asked about `scene` (colour, shape, left_of need unique objects). */
export function applicableTypes(scene: Scene): QuestionType[] {
  return QUESTION_TYPES.filter((t) => {
    if (t === 'colour') return uniqueBy(scene.objects, (o) => o.shape).length > 0;
    if (t === 'shape') return uniqueBy(scene.objects, (o) => o.colour).length > 0;
    if (t === 'left_of') return leftOfPairs(scene).length > 0;
    return true;
  });
}

function leftOfPairs(scene: Scene): [SynthObject, SynthObject][] {
  const u = uniqueBy(scene.objects, (o) => `${o.colour} ${o.shape}`);
  const pairs: [SynthObject, SynthObject][] = [];
  for (const a of u) for (const b of u) if (a !== b && centreOf(a)[0] !== centreOf(b)[0]) pairs.push([a, b]);
  return pairs;
}

/** One question of type `type` about `scene` (the type must be applicable). */
export function questionOfType(scene: Scene, rng: Rng, type: QuestionType): Question {
  const objs = scene.objects;
  switch (type) {
    case 'count':
    case 'count_size': {
      const sized = type === 'count_size';
      const absent = rng.nextInt(4) === 0 ? absentKind(scene, rng, sized) : null;
      return countOf(scene, absent ?? kindOf(pick(rng, objs), sized));
    }
    case 'count_all':
      return { type, question: COUNT_ALL_QUESTION, answer: String(objs.length), small: allSmall(objs) };
    case 'exists':
    case 'exists_size': {
      const sized = type === 'exists_size';
      const absent = rng.nextInt(2) === 0 ? absentKind(scene, rng, sized) : null;
      return existsOf(scene, absent ?? kindOf(pick(rng, objs), sized));
    }
    case 'colour': {
      const o = pick(rng, uniqueBy(objs, (x) => x.shape));
      return { type, question: colourQuestion(o.shape), answer: o.colour, small: o.size === 'small' };
    }
    case 'shape': {
      const o = pick(rng, uniqueBy(objs, (x) => x.colour));
      return { type, question: shapeQuestion(o.colour), answer: o.shape, small: o.size === 'small' };
    }
    case 'left_of': {
      const pairs = leftOfPairs(scene);
      if (pairs.length === 0) throw new RangeError('left_of: no two objects unique by colour and shape');
      const [a, b] = pick(rng, pairs);
      return { type, question: leftOfQuestion(a, b), answer: yesNo(centreOf(a)[0] < centreOf(b)[0]), small: a.size === 'small' && b.size === 'small' };
    }
  }
}

export interface QuestionsOptions {
  /** only these types (default: all that apply) */
  types?: readonly QuestionType[];
  /**
   * Keep every draw as drawn, even a question already asked (default false: up to 8 redraws
   * avoid one). The redraws skew answers where a scene has few kinds of objects: on a one-object
   * scene there is one "Yes" existence question and eleven "No" ones, so once the "Yes" is asked,
   * later "Yes" draws are redrawn, mostly into "No"s. With repeats the sampling rules above hold
   * per question.
   */
  repeats?: boolean;
}

/**
 * `k` questions about `scene`: each of a type drawn uniformly from the applicable ones, no
 * question text twice when it can be helped (a few redraws), unless `repeats`.
 */
export function questionsFor(scene: Scene, rng: Rng, k: number, o: QuestionsOptions = {}): Question[] {
  const types = applicableTypes(scene).filter((t) => !o.types || o.types.includes(t));
  if (types.length === 0) return [];
  const out: Question[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < k; i++) {
    let q = questionOfType(scene, rng, pick(rng, types));
    for (let t = 0; t < 8 && !o.repeats && seen.has(q.question); t++) q = questionOfType(scene, rng, pick(rng, types));
    seen.add(q.question);
    out.push(q);
  }
  return out;
}

export const CAPTION_PROMPT = 'Describe the image.';
/** POPE-style question: "Is there a red circle in the image?" */
export function popeQuestion(k: Kind): string {
  return `Is there a ${k.colour} ${k.shape} in the image?`;
}
/** MCQ distractor for shape questions (never the answer: the world has three shapes). */
export const SHAPE_DISTRACTOR = 'star';

/** Every question text the world can ask (all kinds, both sizes, every ordered left_of pair). */
export function allQuestions(): string[] {
  const qs: string[] = [COUNT_ALL_QUESTION];
  for (const k of [...ALL_KINDS, ...ALL_SIZED_KINDS]) qs.push(countQuestion(k), existsQuestion(k));
  for (const s of SHAPES) qs.push(colourQuestion(s));
  for (const c of COLOURS) qs.push(shapeQuestion(c));
  for (const a of ALL_KINDS) for (const b of ALL_KINDS) if (a !== b) qs.push(leftOfQuestion(a, b));
  return qs;
}

/** Every answer: Yes/No, the digits 0..6, the colours and shapes. */
export const ALL_ANSWERS: readonly string[] = ['Yes', 'No', ...Array.from({ length: 7 }, (_, i) => String(i)), ...COLOURS, ...SHAPES];

/**
 * The world's texts for building a tokenizer (e.g. src/tokenizer/build-word-bpe.ts, which splits
 * on spaces): every question, alone and as the text after `<image>` ("\n" + question), every
 * answer, caption pieces ("A small red circle.", "a x, a x and a x."), the caption prompt, and
 * the evaluation prompts as `mgllava eval` builds them (release style: the GQA short-answer
 * suffix, POPE's yes/no suffix, the MCQ option lines and letter instruction). Every
 * space-separated word of a training or evaluation text is a word of one of these lines.
 */
export function synthCorpus(): string[] {
  const lines: string[] = [`<image>\n${CAPTION_PROMPT}`, `\n${CAPTION_PROMPT}`, CAPTION_PROMPT];
  const questions = allQuestions();
  for (const q of questions) lines.push(q, `\n${q}`, `\n${q}${SHORT_ANSWER}`, `\n${q}\nA. 0\nB. 0\nC. 0\nD. 0\n${MCQ_INSTRUCTION}`);
  for (const k of ALL_KINDS) lines.push(popeQuestion(k), `\n${popeQuestion(k)}${YES_NO}`);
  for (const v of [...ALL_ANSWERS, SHAPE_DISTRACTOR]) lines.push(`\n${COUNT_ALL_QUESTION}\nA. ${v}\nB. ${v}\nC. ${v}\nD. ${v}\n${MCQ_INSTRUCTION}`);
  lines.push(...ALL_ANSWERS, 'yes', 'no', SHAPE_DISTRACTOR, 'A', 'B', 'C', 'D');
  const word = (o: { size: Size; colour: Colour; shape: Shape }) => `${o.size} ${o.colour} ${o.shape}`;
  for (const size of SIZES) {
    for (const k of ALL_KINDS) {
      const w = word({ size, ...k });
      lines.push(`A ${w}.`, `a ${w}, a ${w} and a ${w}.`);
    }
  }
  return [...new Set(lines)];
}

/** The world's words and punctuation marks, sorted (split on spaces, with `?`, `.`, `,`, `'`, `\n` apart). */
export function synthVocabulary(): string[] {
  const words = new Set<string>();
  for (const l of synthCorpus()) {
    for (const w of l.split(/(\s+|[?.,'])/)) if (w.trim() !== '') words.add(w);
  }
  return [...words].sort();
}
