// writeSynth: a synthetic data set on disk (training data for both stages, boxes, scenes, and
// evaluation sets in VLMEvalKit's TSV formats), deterministic per seed.
//
// Layout of OUT (written into OUT.tmp-<pid>, renamed to OUT at the end; OUT must not exist):
//   images/<id>.jpg        training images (id "000000", ...)
//   boxes.json             [{id, boxes, labels, scores}] for the training images
//   stage1.json            one caption sample per image (LLaVA format)
//   stage2.json            one multi-turn sample per image, K questions
//   scenes.jsonl           {id, scene, questions} per image
//   eval/mcq.tsv           MMBench-style circular MCQ (originals index < 1e6, copies + k * 1e6)
//   eval/pope.tsv          POPE-style yes/no existence questions (index 1e7 + i)
//   eval/vqa.tsv           every question type, GQA-style exact answers (index 2e7 + i)
//   eval/boxes.json        [{id: index, ...}] for every original row of the three TSVs
//   eval/scenes.jsonl      {id, scene} per evaluation image
//
// Image i of the training set is drawn from Rng.seeded(seed, i), evaluation image j from
// Rng.seeded(seed, 2^40 + j): a set of N images is the first N images of a larger one.

import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { InputError } from '../core/errors.js';
import { circularExpand } from '../eval/mcq.js';
import { formatTsvQuoteAll, TsvTable, type Cell, type ColumnKind } from '../eval/tsv.js';
import { Rng, shuffleInPlace } from '../train/rng.js';
import { MCQ_INSTRUCTION, SHORT_ANSWER, YES_NO } from '../eval/prompts.js';
import { ALL_KINDS, CAPTION_PROMPT, QUESTION_TYPES, SHAPE_DISTRACTOR, applicableTypes, popeQuestion, questionOfType, questionsFor, type Question, type QuestionType } from './questions.js';
import { COLOURS, MAX_OBJECTS, SHAPES, boxEntry, caption, generateScene, pick, renderScene, type Scene } from './world.js';

export type SynthFormat = 'jpg' | 'png';

export interface SynthOptions {
  out: string;
  /** training images */
  images: number;
  seed: number;
  /** question turns per stage-2 sample and per evaluation image in vqa.tsv (default 6) */
  questions?: number;
  format?: SynthFormat;
  /** evaluation images (default: round(images / 10), at least 1, at most 500; 0: no eval folder) */
  evalImages?: number;
  /** JPEG quality (default 92) */
  quality?: number;
  /** objects per image uniform in 1..maxObjects (default 6, the world's rule), for every image */
  maxObjects?: number;
  /**
   * stage-2 question types (default: every type); an image none of them applies to (left_of with
   * one object) has no stage-2 sample. Evaluation sets keep every type.
   */
  types?: readonly QuestionType[];
  /**
   * stage-2 questions may repeat within a sample (default false; questions.ts, QuestionsOptions:
   * the no-repeat redraws skew yes/no answers on scenes with few kinds). Evaluation sets unchanged.
   */
  repeatQuestions?: boolean;
  /** stop between images (Ctrl-C): the partial folder is removed and an InputError thrown */
  signal?: AbortSignal;
  /** called after each image (phase "train" or "eval") */
  onProgress?: (phase: 'train' | 'eval', done: number, total: number) => void;
}

export interface SynthSummary {
  out: string;
  images: number;
  stage2Questions: number;
  evalImages: number;
  mcqRows: number;
  popeRows: number;
  vqaRows: number;
}

export const EVAL_STREAM = 2 ** 40;
export const POPE_INDEX_BASE = 10_000_000;
export const VQA_INDEX_BASE = 20_000_000;
export const MAX_EVAL_IMAGES = 100_000;
export const MAX_QUESTIONS = 50;
const MCQ_TYPES: readonly QuestionType[] = ['colour', 'shape', 'count', 'count_size', 'count_all'];
const MCQ_PER_IMAGE = 2;
const IN_FLIGHT = 4;

const isCount = (i: unknown): i is number => Number.isSafeInteger(i) && (i as number) >= 0;

function check(o: SynthOptions): Required<Omit<SynthOptions, 'onProgress' | 'signal'>> {
  if (!isCount(o.images) || o.images === 0) throw new InputError(`--images: expected a positive integer, got ${o.images}`, '--images');
  if (!isCount(o.seed)) throw new InputError(`--seed: expected a non-negative integer, got ${o.seed}`, '--seed');
  const questions = o.questions ?? 6;
  if (!isCount(questions) || questions === 0 || questions > MAX_QUESTIONS) throw new InputError(`--questions: expected an integer in [1, ${MAX_QUESTIONS}], got ${questions}`, '--questions');
  const format = o.format ?? 'jpg';
  if (format !== 'jpg' && format !== 'png') throw new InputError(`--format: expected jpg or png, got ${JSON.stringify(format)}`, '--format');
  const evalImages = o.evalImages ?? Math.min(500, Math.max(1, Math.round(o.images / 10)));
  if (!isCount(evalImages) || evalImages > MAX_EVAL_IMAGES) throw new InputError(`--eval-images: expected an integer in [0, ${MAX_EVAL_IMAGES}], got ${evalImages}`, '--eval-images');
  const quality = o.quality ?? 92;
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) throw new InputError(`--quality: expected an integer in [1, 100], got ${quality}`, '--quality');
  const maxObjects = o.maxObjects ?? MAX_OBJECTS;
  if (!Number.isInteger(maxObjects) || maxObjects < 1 || maxObjects > MAX_OBJECTS) throw new InputError(`--max-objects: expected an integer in [1, ${MAX_OBJECTS}], got ${maxObjects}`, '--max-objects');
  const types = o.types ?? QUESTION_TYPES;
  const unknown = types.find((t) => !QUESTION_TYPES.includes(t));
  if (types.length === 0 || unknown !== undefined) throw new InputError(`--types: expected some of ${QUESTION_TYPES.join(', ')}, got ${JSON.stringify(unknown ?? '')}`, '--types');
  return { out: o.out, images: o.images, seed: o.seed, questions, format, evalImages, quality, maxObjects, types, repeatQuestions: o.repeatQuestions ?? false };
}

/** The encoded image of a scene (JPEG or PNG bytes; deterministic). */
export async function encodeScene(scene: Scene, format: SynthFormat = 'jpg', quality = 92): Promise<Buffer> {
  const px = renderScene(scene);
  const img = sharp(Buffer.from(px.buffer, px.byteOffset, px.byteLength), { raw: { width: scene.width, height: scene.height, channels: 3 } });
  return format === 'png' ? img.png().toBuffer() : img.jpeg({ quality }).toBuffer();
}

/** Run `work(i)` for i in 0..n-1 with up to `limit` in flight; results in order. */
async function pool<T>(n: number, limit: number, work: (i: number) => Promise<T>, done: (i: number) => void): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  let finished = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      out[i] = await work(i);
      done(++finished);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, lane));
  return out;
}

const jsonList = (items: readonly unknown[]): string => `[\n${items.map((x) => JSON.stringify(x)).join(',\n')}\n]\n`;
const jsonLines = (items: readonly unknown[]): string => items.map((x) => JSON.stringify(x) + '\n').join('');

/** The four MCQ options of a question (colour: the four colours; shape: three shapes and "star"; counts: the answer and three other digits 0..6). */
export function mcqOptions(q: Question, rng: Rng): string[] {
  if (q.type === 'colour') return shuffleInPlace([...COLOURS], rng);
  if (q.type === 'shape') return shuffleInPlace([...SHAPES, SHAPE_DISTRACTOR], rng);
  const others = shuffleInPlace(Array.from({ length: 7 }, (_, i) => String(i)).filter((d) => d !== q.answer), rng).slice(0, 3);
  return shuffleInPlace([q.answer, ...others], rng);
}

/**
 * A stage-2 turn: the question in one of the forms the evaluation asks it in, as LLaVA-1.5's
 * instruction mixture does, so the model learns each form's answer: plain (2 in 5), with the
 * short-answer suffix (1 in 5), as a 4-option MCQ answered with its letter (1 in 5, the MCQ
 * set's types; else plain), POPE's "in the image?" + yes/no suffix (1 in 5, `exists`; else
 * short). The answer is the exact one, or the letter.
 */
export function stage2Turn(q: Question, rng: Rng): { prompt: string; answer: string; format: 'plain' | 'short' | 'mcq' | 'pope' } {
  const r = rng.nextInt(5);
  if (r === 3 && MCQ_TYPES.includes(q.type)) {
    const opts = mcqOptions(q, rng);
    const lines = opts.map((x, i) => `${'ABCD'[i]}. ${x}\n`).join('');
    return { prompt: `${q.question}\n${lines}${MCQ_INSTRUCTION}`, answer: 'ABCD'[opts.indexOf(q.answer)]!, format: 'mcq' };
  }
  if (r === 4 && q.type === 'exists') return { prompt: `${q.question.replace(/\?$/, ' in the image?')}${YES_NO}`, answer: q.answer, format: 'pope' };
  if (r >= 2) return { prompt: `${q.question}${SHORT_ANSWER}`, answer: q.answer, format: 'short' };
  return { prompt: q.question, answer: q.answer, format: 'plain' };
}

interface EvalRows {
  mcq: Cell[][];
  pope: Cell[][];
  vqa: Cell[][];
  boxes: unknown[];
}

const MCQ_COLUMNS = ['index', 'question', 'A', 'B', 'C', 'D', 'answer', 'category', 'small', 'image'];
const MCQ_KINDS: ColumnKind[] = ['int', 'str', 'str', 'str', 'str', 'str', 'str', 'str', 'str', 'str'];
const QA_COLUMNS = ['index', 'question', 'answer', 'category', 'small', 'image'];
const QA_KINDS: ColumnKind[] = ['int', 'str', 'str', 'str', 'str', 'str'];
const yn = (b: boolean): string => (b ? 'yes' : 'no');

function evalItems(scene: Scene, rng: Rng, b64: string, k: number, rows: EvalRows): void {
  // MCQ: two questions of different types, each row with its own image (circular copies name it).
  const types = shuffleInPlace(applicableTypes(scene).filter((t) => MCQ_TYPES.includes(t)), rng).slice(0, MCQ_PER_IMAGE);
  for (const t of types) {
    const q = questionOfType(scene, rng, t);
    const opts = mcqOptions(q, rng);
    const index = rows.mcq.length;
    rows.mcq.push([index, q.question, ...opts, 'ABCD'[opts.indexOf(q.answer)]!, q.type, yn(q.small), b64]);
    rows.boxes.push(boxEntry(index, scene));
  }
  // POPE: one present kind (Yes), one absent kind (No); the second row names the first's image.
  const present = pick(rng, scene.objects);
  const absentPool = ALL_KINDS.filter((kd) => !scene.objects.some((o) => o.colour === kd.colour && o.shape === kd.shape));
  const absent = pick(rng, absentPool);
  const popeFirst = POPE_INDEX_BASE + rows.pope.length;
  const presentAll = scene.objects.filter((o) => o.colour === present.colour && o.shape === present.shape);
  const pope: [string, string, boolean][] = [
    [popeQuestion(present), 'Yes', presentAll.every((o) => o.size === 'small')],
    [popeQuestion(absent), 'No', false],
  ];
  if (rng.nextInt(2) === 1) pope.reverse();
  for (const [question, answer, small] of pope) {
    const index = POPE_INDEX_BASE + rows.pope.length;
    rows.pope.push([index, question, answer, 'random', yn(small), index === popeFirst ? b64 : String(popeFirst)]);
    rows.boxes.push(boxEntry(index, scene));
  }
  // VQA: k questions of every type, exact answers; rows after the first name its image.
  const vqaFirst = VQA_INDEX_BASE + rows.vqa.length;
  for (const q of questionsFor(scene, rng, k)) {
    const index = VQA_INDEX_BASE + rows.vqa.length;
    rows.vqa.push([index, q.question, q.answer, q.type, yn(q.small), index === vqaFirst ? b64 : String(vqaFirst)]);
    rows.boxes.push(boxEntry(index, scene));
  }
}

/** Write the synthetic data set (see the layout above); OUT must not exist, its parent must. */
export async function writeSynth(opts: SynthOptions): Promise<SynthSummary> {
  const o = check(opts);
  const out = resolve(o.out);
  if (existsSync(out)) throw new InputError(`--out ${o.out}: already exists (give a new folder)`, '--out');
  const parent = dirname(out);
  if (!existsSync(parent) || !statSync(parent).isDirectory()) throw new InputError(`--out ${o.out}: the parent folder ${parent} does not exist`, '--out');
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'images'), { recursive: true });
  try {
    const width = Math.max(6, String(o.images - 1).length);
    const ext = o.format;
    const interrupted = (): void => {
      if (opts.signal?.aborted) throw new InputError(`interrupted; ${o.out} was not written`, '--out');
    };
    const train = await pool(o.images, IN_FLIGHT, async (i) => {
      interrupted();
      const id = String(i).padStart(width, '0');
      const rng = Rng.seeded(o.seed, i);
      const scene = generateScene(rng, { maxObjects: o.maxObjects });
      const questions = questionsFor(scene, rng, o.questions, { types: o.types, repeats: o.repeatQuestions });
      const turns = questions.map((q) => stage2Turn(q, rng));
      const bytes = await encodeScene(scene, o.format, o.quality);
      writeFileSync(join(tmp, 'images', `${id}.${ext}`), bytes);
      return { id, scene, questions, turns };
    }, (d) => opts.onProgress?.('train', d, o.images));
    const image = (id: string) => `images/${id}.${ext}`;
    writeFileSync(join(tmp, 'boxes.json'), jsonList(train.map((t) => boxEntry(t.id, t.scene))));
    writeFileSync(join(tmp, 'stage1.json'), jsonList(train.map((t) => ({
      id: t.id, image: image(t.id),
      conversations: [{ from: 'human', value: `<image>\n${CAPTION_PROMPT}` }, { from: 'gpt', value: caption(t.scene) }],
    }))));
    writeFileSync(join(tmp, 'stage2.json'), jsonList(train.filter((t) => t.turns.length > 0).map((t) => ({
      id: t.id, image: image(t.id),
      conversations: t.turns.flatMap((q, j) => [{ from: 'human', value: j === 0 ? `<image>\n${q.prompt}` : q.prompt }, { from: 'gpt', value: q.answer }]),
    }))));
    writeFileSync(join(tmp, 'scenes.jsonl'), jsonLines(train.map((t) => ({ id: t.id, image: image(t.id), scene: t.scene, caption: caption(t.scene), questions: t.questions, turns: t.turns }))));

    const rows: EvalRows = { mcq: [], pope: [], vqa: [], boxes: [] };
    let mcqRows = 0;
    if (o.evalImages > 0) {
      mkdirSync(join(tmp, 'eval'));
      const ewidth = Math.max(6, String(o.evalImages - 1).length);
      const evals = await pool(o.evalImages, IN_FLIGHT, async (j) => {
        interrupted();
        const rng = Rng.seeded(o.seed, EVAL_STREAM + j);
        const scene = generateScene(rng, { maxObjects: o.maxObjects });
        const bytes = await encodeScene(scene, o.format, o.quality);
        return { id: `e${String(j).padStart(ewidth, '0')}`, scene, rng, b64: bytes.toString('base64') };
      }, (d) => opts.onProgress?.('eval', d, o.evalImages));
      // Questions in image order (the generators continue after the scene), so rows are deterministic.
      for (const e of evals) evalItems(e.scene, e.rng, e.b64, o.questions, rows);
      const mcq = circularExpand(new TsvTable([...MCQ_COLUMNS], [...MCQ_KINDS], rows.mcq), { gIndex: false });
      mcqRows = mcq.length;
      writeFileSync(join(tmp, 'eval', 'mcq.tsv'), formatTsvQuoteAll(mcq.columns, mcq.data, mcq.kinds));
      writeFileSync(join(tmp, 'eval', 'pope.tsv'), formatTsvQuoteAll(QA_COLUMNS, rows.pope, QA_KINDS));
      writeFileSync(join(tmp, 'eval', 'vqa.tsv'), formatTsvQuoteAll(QA_COLUMNS, rows.vqa, QA_KINDS));
      writeFileSync(join(tmp, 'eval', 'boxes.json'), jsonList(rows.boxes));
      writeFileSync(join(tmp, 'eval', 'scenes.jsonl'), jsonLines(evals.map((e) => ({ id: e.id, scene: e.scene }))));
    }
    if (existsSync(out)) throw new InputError(`--out ${o.out}: appeared while writing (left unchanged)`, '--out');
    renameSync(tmp, out);
    return {
      out, images: o.images, stage2Questions: train.reduce((s, t) => s + t.questions.length, 0),
      evalImages: o.evalImages, mcqRows, popeRows: rows.pope.length, vqaRows: rows.vqa.length,
    };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
