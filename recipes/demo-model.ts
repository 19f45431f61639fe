// The recipe of the bundled demo model (models/demo) and of the ablation's variants: a small
// MG-LLaVA trained from scratch on the synthetic shapes world (`mgllava synth`) with
// `mgllava train`, then evaluated with `mgllava eval` on held-out sets made with other seeds.
//
//   npm run build && node dist/recipes/demo-model.js [--work DIR] [--variant mg|objects|clip]
//       [--seed N] [--out DIR] [--threads N]
//
// Every step writes its own folder under --work and is skipped when that folder exists, and
// training saves a checkpoint every few hundred iterations and resumes from it, so a recipe
// stopped anywhere continues where it was when run again.
//
// Variants (the paper's Table 4 in miniature; same data, steps and seed for each):
//   clip     LLaVA: CLIP tokens only (no Conv-Gate fusion, no object tokens)
//   objects  + object tokens (RoIAlign over the ConvNeXt stages, bbox_projector)
//   mg       + Conv-Gate fusion of the ConvNeXt's high-resolution features: MG-LLaVA

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { synthCorpus, generateScene, encodeScene, questionOfType, applicableTypes, boxEntry, type QuestionType } from '../src/synth/index.js';
import { Rng } from '../src/train/rng.js';
import { buildWordBpe } from '../src/tokenizer/build-word-bpe.js';
import { NewModelSpec, writeNewModel } from '../src/train/init-model.js';
import { exportModel } from '../src/train/export-model.js';
import { getTemplate } from '../src/tokenizer/templates.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

export type Variant = 'clip' | 'objects' | 'mg';

/** The demo model's architecture: every MG-LLaVA part, sized for a 2-core machine. */
export const DEMO_SPEC: NewModelSpec = {
  // CLIP-style ViT at 128 px, 16-px patches: an 8 x 8 token grid
  clip: { imageSize: 128, patchSize: 16, hidden: 128, layers: 4, heads: 4, intermediate: 512 },
  // ConvNeXt at 256 px: stages at 64, 32, 16 and 8 px, the last matching the CLIP grid
  convnext: { dims: [32, 64, 128, 256], depths: [1, 1, 2, 1] },
  llm: { hidden: 256, layers: 4, heads: 8, kvHeads: 4, intermediate: 768, maxPositions: 1024 },
  imageSizeAux: 256,
  boxFeatSize: 14,
  projectorDepth: 2,
  promptTemplate: 'vicuna',
};

/** The data: training images and held-out evaluation images per held-out seed. */
export const DATA = { trainImages: 12000, heldoutImages: 500, questions: 6, heldoutSeeds: [2000, 3000] };

/**
 * Phase 2, the question curriculum, encoders frozen: each step its own `mgllava synth` set (a
 * seed no other set uses; every image seen once) and its own `mgllava train` run from the last.
 * Existence on one-object scenes first (comparing the question's words with the one object),
 * then every type on scenes of at most two objects (choosing among them), then the whole world.
 * docs/demo-model.md says why: on the whole world from the start, the answers stay at their
 * priors.
 */
export interface CurriculumStep {
  name: string;
  images: number;
  seed: number;
  maxObjects: number;
  types?: readonly QuestionType[];
  questions: number;
  steps: number;
  schedule: 'constant' | 'cosine';
}
export const CURRICULUM: readonly CurriculumStep[] = [
  { name: 'cur-exists', images: 6400, seed: 6100, maxObjects: 1, types: ['exists'], questions: 2, steps: 800, schedule: 'constant' },
  { name: 'cur-two', images: 4000, seed: 6200, maxObjects: 2, questions: 16, steps: 500, schedule: 'constant' },
  { name: 'cur-all', images: 9600, seed: 6300, maxObjects: 6, questions: 16, steps: 1200, schedule: 'cosine' },
];

/**
 * The schedules. Phase 1: captions and questions of the 12,000 training images, every part
 * learning; phase 2: the curriculum above at `curriculumLr`. `demo` trains the shipped model;
 * `ablation` is the run each ablation variant and seed gets (docs/ablation.md), evaluated on the
 * first held-out seed's VQA and POPE sets.
 */
export const SCHEDULES = {
  demo: { steps: 6000, batchSize: 8, lr: 3e-4, curriculumLr: 3e-4, warmupRatio: 0.03, curriculumWarmup: 0.02, saveEvery: 500, heldout: [2000], benches: ['gqa', 'mmbench', 'pope'] },
  ablation: { steps: 3000, batchSize: 8, lr: 3e-4, curriculumLr: 3e-4, warmupRatio: 0.03, curriculumWarmup: 0.02, saveEvery: 500, heldout: [2000], benches: ['gqa', 'pope'] },
} as const;
export type ScheduleName = keyof typeof SCHEDULES;

interface Args {
  schedule: ScheduleName;
  work: string;
  variant: Variant;
  seed: number;
  out?: string;
  threads?: number;
}

function parse(): Args {
  const { values } = parseArgs({
    options: {
      work: { type: 'string', default: '/tmp/mgllava-demo' },
      schedule: { type: 'string', default: 'demo' },
      variant: { type: 'string', default: 'mg' },
      seed: { type: 'string', default: '1' },
      out: { type: 'string' },
      threads: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write('usage: node dist/recipes/demo-model.js [--work DIR] [--schedule demo|ablation] [--variant mg|objects|clip] [--seed N] [--out DIR] [--threads N]\n');
    process.exit(0);
  }
  const variant = values.variant as Variant;
  if (!['clip', 'objects', 'mg'].includes(variant)) fail(`--variant: expected mg, objects or clip, got ${variant}`);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) fail(`--seed: expected a non-negative integer, got ${values.seed}`);
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  const schedule = values.schedule as ScheduleName;
  if (!(schedule in SCHEDULES)) fail(`--schedule: expected demo or ablation, got ${values.schedule}`);
  return { schedule, work: resolve(values.work!), variant, seed, ...(values.out ? { out: resolve(values.out) } : {}), ...(threads ? { threads } : {}) };
}

function fail(msg: string): never {
  process.stderr.write(`demo-model: ${msg}\n`);
  process.exit(2);
}

function mgllava(args: string[]): void {
  process.stderr.write(`\n$ mgllava ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, [CLI, ...args], { stdio: 'inherit' });
  if (r.status !== 0) fail(`mgllava ${args[0]} exited with ${r.status ?? r.signal}`);
}

/** Run `make(dir)` unless `dir` exists (then the step is done; each maker writes its folder atomically). */
function step(dir: string, what: string, make: (dir: string) => void): void {
  if (existsSync(dir)) {
    process.stderr.write(`${what}: done before (${dir})\n`);
    return;
  }
  process.stderr.write(`${what} ...\n`);
  make(dir);
}

/** Every text the model is trained or asked on, as the template lays it out, for the tokenizer. */
export function demoCorpus(template = 'vicuna'): string[] {
  const t = getTemplate(template);
  const parts = t.instruction.split('{input}').map((s) => s.trim()).filter((s) => s !== '');
  return [...synthCorpus(), ...parts];
}

/** What a variant changes: its mgllava_config.json entries and whether it gets object boxes (the architecture is DEMO_SPEC for all). */
export function variantSpec(v: Variant): { config: Record<string, unknown>; boxes: boolean } {
  return { config: v === 'mg' ? {} : { fusion: false }, boxes: v !== 'clip' };
}

/**
 * A few example images for the README and the shipped model's test, from a seed no training or
 * held-out set uses (4242): each image's box file in the form `chat --boxes` reads, and
 * questions of every type with the answers computed from the scene (questions.json).
 */
export async function writeExamples(dir: string): Promise<void> {
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const questions: { image: string; boxes: string; type: QuestionType; question: string; answer: string }[] = [];
  const order: QuestionType[] = ['count', 'colour', 'shape', 'exists', 'count_all', 'left_of', 'count_size', 'exists_size'];
  for (let i = 1; i <= 4; i++) {
    const rng = Rng.seeded(4242, i);
    const scene = generateScene(rng, { objects: 3 + (i % 3) });
    const name = `shapes-${i}`;
    writeFileSync(join(tmp, `${name}.jpg`), await encodeScene(scene));
    const { boxes, labels, scores } = boxEntry(name, scene);
    writeFileSync(join(tmp, `${name}.boxes.json`), JSON.stringify({ boxes, labels, scores }) + '\n');
    const types = applicableTypes(scene);
    for (const t of order.filter((x) => types.includes(x)).slice(0, 5)) {
      const q = questionOfType(scene, rng, t);
      questions.push({ image: `${name}.jpg`, boxes: `${name}.boxes.json`, type: t, question: q.question, answer: q.answer });
    }
  }
  writeFileSync(join(tmp, 'questions.json'), JSON.stringify(questions, null, 1) + '\n');
  renameSync(tmp, dir);
}

async function main(): Promise<void> {
  const a = parse();
  const w = a.work;
  mkdirSync(w, { recursive: true });
  const s = SCHEDULES[a.schedule];
  const d = DATA;
  const data = join(w, 'data');
  // Data: training images (seed 1000), held-out evaluation sets (seeds 2000 and 3000).
  step(join(data, 'train'), 'training data', (dir) => {
    mkdirSync(data, { recursive: true });
    mgllava(['synth', '--out', dir, '--images', String(d.trainImages), '--seed', '1000', '--questions', String(d.questions), '--eval-images', '0']);
  });
  for (const seed of d.heldoutSeeds) {
    step(join(data, `heldout-${seed}`), `held-out sets (seed ${seed})`, (dir) => {
      mgllava(['synth', '--out', dir, '--images', '1', '--seed', String(seed), '--eval-images', String(d.heldoutImages)]);
    });
  }
  const mixed = join(data, 'train', 'mixed.json');
  if (!existsSync(mixed)) {
    const read = (f: string) => JSON.parse(readFileSync(join(data, 'train', f), 'utf8')) as { id: string }[];
    // captions and questions of every image, ids kept apart
    const all = [...read('stage1.json').map((x) => ({ ...x, id: `c${x.id}` })), ...read('stage2.json').map((x) => ({ ...x, id: `q${x.id}` }))];
    const boxes = JSON.parse(readFileSync(join(data, 'train', 'boxes.json'), 'utf8')) as { id: string }[];
    writeFileSync(join(data, 'train', 'mixed-boxes.json'), JSON.stringify(boxes.flatMap((b) => [{ ...b, id: `c${b.id}` }, { ...b, id: `q${b.id}` }])));
    writeFileSync(`${mixed}.tmp`, JSON.stringify(all));
    renameSync(`${mixed}.tmp`, mixed);
  }

  const run = join(w, a.schedule === 'demo' ? `${a.variant}-seed${a.seed}` : `ablation-${a.variant}-seed${a.seed}`);
  mkdirSync(run, { recursive: true });
  const v = variantSpec(a.variant);
  const init = join(run, 'init');
  step(init, 'a new model', (dir) => {
    const tok = buildWordBpe(demoCorpus(DEMO_SPEC.promptTemplate));
    writeNewModel(dir, DEMO_SPEC, { tokenizer: tok.tokenizer, tokenizerConfig: tok.config, vocabSize: tok.vocabSize }, a.seed);
    const cfgPath = join(dir, 'mgllava_config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, ...v.config, system_prompt: false }, null, 1) + '\n');
  });
  const trained = join(run, 'trained');
  const ckpt = join(run, 'checkpoint');
  const trainable = a.variant === 'clip' ? 'visual_encoder.*' : 'visual_encoder.*,visual_encoder_aux.*';
  interface Phase { out: string; model: string; data: string; boxes: string; steps: number; lr: number; warmup: number; schedule: 'constant' | 'cosine'; trainable?: string }
  /** One `mgllava train` run into `out`, resumed from its last save, skipped when complete. */
  const phase = (what: string, p: Phase) => {
    const state = join(p.out, 'trainer_state.json');
    const done = existsSync(state) && (JSON.parse(readFileSync(state, 'utf8')) as { iteration: number }).iteration >= p.steps;
    if (done) {
      process.stderr.write(`${what}: done before (${p.out})\n`);
      return;
    }
    process.stderr.write(`${what} ...\n`);
    mgllava([
      'train', '--model', p.model, '--stage', '2', ...(p.trainable ? ['--trainable', p.trainable] : []),
      '--data', p.data, ...(v.boxes ? ['--boxes', p.boxes] : []),
      '--out', p.out, '--max-steps', String(p.steps), '--batch-size', String(s.batchSize), '--lr', String(p.lr),
      '--lr-schedule', p.schedule, '--warmup-ratio', String(p.warmup), '--seed', String(a.seed), '--save-every', String(s.saveEvery),
      ...(a.threads ? ['--threads', String(a.threads)] : []),
      // one JSON line per iteration on stdout (the progress bar needs a terminal)
      ...(process.stderr.isTTY ? [] : ['--json']),
      ...(existsSync(state) ? ['--resume', p.out] : []),
    ]);
  };
  if (!existsSync(trained)) {
    // phase 1: captions and questions of every image, every part learning
    phase('training, phase 1 (captions and questions; every part learns)', {
      out: ckpt, model: init, data: mixed, boxes: join(data, 'train', 'mixed-boxes.json'),
      steps: s.steps, lr: s.lr, warmup: s.warmupRatio, schedule: 'cosine', trainable,
    });
    // phase 2: the question curriculum, encoders frozen
    const curriculumCkpt = (c: CurriculumStep) => join(run, `checkpoint-${c.name}`);
    let last = ckpt;
    for (const c of CURRICULUM) {
      const set = join(data, c.name);
      step(set, `curriculum data ${c.name}`, (dir) => {
        mgllava([
          'synth', '--out', dir, '--images', String(c.images), '--seed', String(c.seed), '--questions', String(c.questions),
          '--max-objects', String(c.maxObjects), ...(c.types ? ['--types', c.types.join(',')] : []), '--eval-images', '0',
        ]);
      });
      const out = curriculumCkpt(c);
      phase(`training, phase 2: ${c.name} (questions; encoders frozen)`, {
        out, model: last, data: join(set, 'stage2.json'), boxes: join(set, 'boxes.json'),
        steps: c.steps, lr: s.curriculumLr, warmup: s.curriculumWarmup, schedule: c.schedule,
      });
      last = out;
    }
    exportModel(last, trained, { dtype: 'F16' });
    // What made these weights, phase by phase: each checkpoint's own "trained" record (the exported
    // folder keeps the last one's only).
    const config = (dir: string) => JSON.parse(readFileSync(join(dir, 'mgllava_config.json'), 'utf8')) as Record<string, unknown>;
    const phases = [
      { phase: 'captions and questions', data: 'train (seed 1000)', dir: ckpt },
      ...CURRICULUM.map((c) => ({ phase: `questions: ${c.name}`, data: `${c.name} (seed ${c.seed})`, dir: curriculumCkpt(c) })),
    ].map(({ dir, ...p }) => {
      const t = config(dir)['trained'] as { iterations: number; frozen: string[] };
      return { ...p, iterations: t.iterations, frozen: t.frozen };
    });
    const cfgPath = join(trained, 'mgllava_config.json');
    const cfg = config(trained);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, recipe: { script: 'recipes/demo-model.ts', schedule: a.schedule, variant: a.variant, seed: a.seed, phases } }, null, 1) + '\n');
  }
  const examples = join(trained, 'examples');
  if (!existsSync(examples)) await writeExamples(examples);
  if (a.out) {
    rmSync(a.out, { recursive: true, force: true });
    spawnSync('cp', ['-r', trained, a.out]);
  }
  const files = { gqa: 'vqa.tsv', mmbench: 'mcq.tsv', pope: 'pope.tsv' } as const;
  for (const seed of s.heldout) {
    const sets = join(data, `heldout-${seed}`, 'eval');
    const boxes = v.boxes ? ['--boxes', join(sets, 'boxes.json')] : ['--no-boxes'];
    for (const bench of s.benches) {
      const file = files[bench];
      const out = join(run, `eval-${seed}`, bench);
      if (existsSync(join(out, 'summary.json'))) continue;
      mgllava(['eval', '--bench', bench, '--data', join(sets, file), ...boxes, '--model', trained, '--out', out, ...(a.threads ? ['--threads', String(a.threads)] : [])]);
    }
  }
  process.stderr.write(`\ndone: ${trained}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
