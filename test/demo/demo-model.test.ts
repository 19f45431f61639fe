// The shipped demo model (models/demo, trained by recipes/demo-model.ts on the synthetic shapes
// world): the default model answers the shipped examples' questions, whose answers were computed
// from the scenes when the examples were drawn, and the README's first command prints the right
// answer. A check of the trained weights: the untrained model of the same architecture answers
// these at chance.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MgLlava } from '../../src/model/mg-llava.js';
import { DEMO_MODEL } from '../../src/model/model-files.js';
import { ROOT } from '../helpers/fixtures.js';
import { decodeImage } from '../../src/preprocess/decode.js';
import { readBoxFile } from '../../src/preprocess/box-file.js';
import { mgllava } from '../helpers/cli.js';

const EXAMPLES = join(DEMO_MODEL, 'examples');
interface Example { image: string; boxes: string; type: string; question: string; answer: string }
// Until the demo model ships (docs/demo-model.md: training is in progress) these tests are skipped.
const shipped = existsSync(join(DEMO_MODEL, 'mgllava_config.json'));
const skip = shipped ? false : 'models/demo is not shipped yet (docs/demo-model.md)';
const questions = shipped ? (JSON.parse(readFileSync(join(EXAMPLES, 'questions.json'), 'utf8')) as Example[]) : [];

let model: MgLlava;
before(async () => {
  if (shipped) model = await MgLlava.load({});
});
after(async () => model?.release());

test('the default model is the demo model, under 30 MB, trained from scratch with every part learning first', { skip }, () => {
  assert.equal(model.files.checkpoint, join(DEMO_MODEL, 'model.safetensors'));
  const size = (p: string): number => (statSync(p).isDirectory() ? readdirSync(p).reduce((a, f) => a + size(join(p, f)), 0) : statSync(p).size);
  assert.ok(size(DEMO_MODEL) < 30 * 2 ** 20, `${size(DEMO_MODEL)} bytes`);
  // The recipe's record: phase 1 with every part learning, then the question curriculum with the
  // encoders frozen (the checkpoint's own "trained" is the last phase's).
  const cfg = JSON.parse(readFileSync(join(DEMO_MODEL, 'mgllava_config.json'), 'utf8')) as {
    trained: { frozen: string[]; iterations: number };
    recipe: { script: string; phases: { iterations: number; frozen: string[] }[] };
  };
  assert.equal(cfg.recipe.script, 'recipes/demo-model.ts');
  assert.deepEqual(cfg.recipe.phases[0]!.frozen, []);
  assert.ok(cfg.recipe.phases[0]!.iterations >= 1000);
  assert.deepEqual(cfg.trained.frozen, ['visual_encoder', 'visual_encoder_aux']);
  assert.equal(cfg.trained.iterations, cfg.recipe.phases.at(-1)!.iterations);
});

test('the demo model answers the shipped examples\' questions (greedy)', { skip }, async (t) => {
  let right = 0;
  const wrong: string[] = [];
  for (const q of questions) {
    const image = await decodeImage(readFileSync(join(EXAMPLES, q.image)), { name: q.image });
    const boxes = await readBoxFile(join(EXAMPLES, q.boxes));
    const r = await model.chat({ prompt: q.question, image, boxes, generation: { maxNewTokens: 4, temperature: 0 } }).complete();
    if (r.text.trim() === q.answer) right++;
    else wrong.push(`${q.image} ${q.question} -> ${JSON.stringify(r.text)} (expected ${q.answer})`);
  }
  t.diagnostic(`${right}/${questions.length} right${wrong.length ? `; wrong: ${wrong.join('; ')}` : ''}`);
  assert.ok(questions.length >= 16);
  // 16 of 20 when shipped (docs/demo-model.md); an untrained model of the same shape is near chance.
  assert.ok(right >= Math.ceil(0.75 * questions.length), `${right}/${questions.length}: ${wrong.join('; ')}`);
});

test('README command 1, as written there: chat with no --model answers its example question correctly', { skip }, async () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const line = readme.split('\n').find((l) => l.startsWith('npm ci && npm run build && node dist/src/cli/main.js chat '));
  assert.ok(line, 'README command 1 not found');
  // The arguments after main.js: plain words and one double-quoted question.
  const args = [...line.slice(line.indexOf('main.js ') + 8).matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
  assert.ok(!args.includes('--model'));
  const image = args[args.indexOf('--image') + 1]!;
  const question = args.at(-1)!;
  const q = questions.find((x) => join('models', 'demo', 'examples', x.image) === image && x.question === question);
  assert.ok(q, `README asks ${JSON.stringify(question)} about ${image}: not one of the examples' questions`);
  const r = await mgllava(args.map((a) => (a.startsWith('models/') ? join(ROOT, a) : a)));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), q.answer);
});
