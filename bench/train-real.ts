// The real-size training measurement alone: one stage-1 step (forward, backward through the
// frozen 4-bit LLM, AdamW on fuse_module / projector / bbox_projector) of a `full` preset model,
// with the bench's random weights (written once into the cache, as `npm run bench` does).
//   node dist/bench/train-real.js [--model 3.8b|7b] [--threads N] [--cache DIR]
// prints the child's JSON (step time, peak RSS); `npm run bench` (full) measures the same.

import { cpus } from 'node:os';
import { PRESETS } from './presets.js';
import { defaultCache, prepareFiles, runTraining } from './orchestrate.js';
import { prepareOurLlm } from './our-llm.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
};
const name = opt('--model', '3.8b');
const m = PRESETS.full.models.find((x) => x.name === name);
if (!m) {
  process.stderr.write(`train-real: --model must be one of ${PRESETS.full.models.map((x) => x.name).join(', ')}\n`);
  process.exit(2);
}
const log = (s: string) => process.stderr.write(`${s}\n`);
const o = {
  preset: 'full' as const, threads: Number(opt('--threads', String(Math.min(cpus().length, 2)))), cache: opt('--cache', defaultCache()),
  peers: false, python: '/usr/bin/python3', command: `node dist/bench/train-real.js ${args.join(' ')}`.trim(), log,
};
const files = prepareFiles(m, o);
const llm = await prepareOurLlm(files.llm, files.llmCache, m, { llmFormat: 'q4', log });
process.stdout.write(`${JSON.stringify({ model: m.title, llm: llm.format, ...runTraining(o, m, files, llm.folder) }, null, 1)}\n`);
