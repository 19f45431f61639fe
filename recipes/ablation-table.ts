// The ablation's table (docs/ablation.md) from the recipe's run folders: per variant and seed,
// the held-out scores `mgllava eval` wrote (MCQ circular accuracy, POPE F1, exact match per
// question type, small-object questions apart) and each variant's parameters and FLOPs per image.
//
//   node dist/recipes/ablation-table.js --work /tmp/mgllava-demo [--heldout 2000] [--seeds 1,2] [--runs ablation|demo]

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseTsv } from '../src/eval/tsv.js';
import { QUESTION_TYPES } from '../src/synth/index.js';
import { DEMO_SPEC, Variant, demoCorpus } from './demo-model.js';
import { buildWordBpe } from '../src/tokenizer/build-word-bpe.js';
import { imageCost, llmParams } from './model-cost.js';

const TYPES = QUESTION_TYPES;
const VARIANTS: { v: Variant; label: string }[] = [
  { v: 'clip', label: '(a) CLIP only (LLaVA)' },
  { v: 'objects', label: '(b) + object features' },
  { v: 'mg', label: '(c) + objects + Conv-Gate fusion (MG-LLaVA)' },
];

interface Scores {
  mcq: number;
  popeF1: number;
  vqa: number;
  byType: Record<string, number>;
  small: number;
  notSmall: number;
  counting: number;
  n: number;
}

function summary(dir: string): { overall: number; table: { rows: Record<string, number>[] }; items: { index: number; score: number }[] } {
  return JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
}

export function runScores(run: string, heldout: string, data: string): Scores | undefined {
  const ev = join(run, `eval-${heldout}`);
  if (!['gqa', 'pope'].every((b) => existsSync(join(ev, b, 'summary.json')))) return undefined;
  const vqa = summary(join(ev, 'gqa'));
  const table = parseTsv(readFileSync(join(data, `heldout-${heldout}`, 'eval', 'vqa.tsv'), 'utf8'), ['index', 'category', 'small', 'answer', 'question']);
  const meta = new Map<number, { type: string; small: boolean }>();
  for (let r = 0; r < table.length; r++) meta.set(Number(table.str(r, 'index')), { type: table.str(r, 'category'), small: table.str(r, 'small') === 'yes' });
  const acc = (pick: (m: { type: string; small: boolean }) => boolean) => {
    const xs = vqa.items.filter((i) => pick(meta.get(Number(i.index))!));
    return xs.length ? (100 * xs.reduce((a, i) => a + i.score, 0)) / xs.length : NaN;
  };
  const byType: Record<string, number> = {};
  for (const t of TYPES) byType[t] = acc((m) => m.type === t);
  const pope = summary(join(ev, 'pope'));
  const popeRow = pope.table.rows.find((r) => 'F1' in r || 'f1' in r) as Record<string, number> | undefined;
  const mcq = existsSync(join(ev, 'mmbench', 'summary.json')) ? summary(join(ev, 'mmbench')).overall : NaN;
  return {
    mcq: mcq <= 1 ? 100 * mcq : mcq,
    popeF1: popeRow ? (popeRow['F1'] ?? popeRow['f1'])! : pope.overall,
    vqa: vqa.overall,
    byType,
    small: acc((m) => m.small),
    notSmall: acc((m) => !m.small),
    counting: acc((m) => m.type.startsWith('count')),
    n: vqa.items.length,
  };
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');

function main(): void {
  const { values } = parseArgs({ options: { work: { type: 'string', default: '/tmp/mgllava-demo' }, heldout: { type: 'string', default: '2000' }, seeds: { type: 'string', default: '1,2' }, runs: { type: 'string', default: 'ablation' } } });
  const prefix = values.runs === 'demo' ? '' : 'ablation-';
  const work = values.work!;
  const data = join(work, 'data');
  const seeds = values.seeds!.split(',');
  const head = ['variant', 'seed', 'MCQ (circular)', 'POPE F1', 'exact match', 'counting', ...TYPES, 'small objects', 'other'];
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`];
  for (const { v, label } of VARIANTS) {
    const got: Scores[] = [];
    for (const seed of seeds) {
      const s = runScores(join(work, `${prefix}${v}-seed${seed}`), values.heldout!, data);
      if (!s) continue;
      got.push(s);
      lines.push(`| ${label} | ${seed} | ${f1(s.mcq)} | ${f1(s.popeF1)} | ${f1(s.vqa)} | ${f1(s.counting)} | ${TYPES.map((t) => f1(s.byType[t]!)).join(' | ')} | ${f1(s.small)} | ${f1(s.notSmall)} |`);
    }
    if (got.length > 1) {
      const m = (f: (s: Scores) => number) => got.reduce((a, s) => a + f(s), 0) / got.length;
      lines.push(`| ${label} | mean | ${f1(m((s) => s.mcq))} | ${f1(m((s) => s.popeF1))} | ${f1(m((s) => s.vqa))} | ${f1(m((s) => s.counting))} | ${TYPES.map((t) => f1(m((s) => s.byType[t]!))).join(' | ')} | ${f1(m((s) => s.small))} | ${f1(m((s) => s.notSmall))} |`);
    }
  }
  process.stdout.write(lines.join('\n') + '\n\n');
  // parameters and FLOPs per image (3.5 objects on average: 1 to 6 uniform)
  const vocab = buildWordBpe(demoCorpus()).vocabSize;
  const cost = ['| variant | parameters | vision GFLOPs / image | visual tokens | LLM GFLOPs on them | total GFLOPs / image |', '| --- | --- | --- | --- | --- | --- |'];
  for (const { v, label } of VARIANTS) {
    const c = imageCost(DEMO_SPEC, { fusion: v === 'mg', objects: v !== 'clip', boxes: 3.5 });
    const params = c.clip.params + c.convnext.params + c.fusion.params + c.projector.params + c.objects.params + llmParams(DEMO_SPEC, vocab);
    const vision = 2 * (c.clip.macs + c.convnext.macs + c.fusion.macs + c.projector.macs + c.objects.macs);
    const llm = 2 * c.llmVisual.macs;
    cost.push(`| ${label} | ${(params / 1e6).toFixed(2)} M | ${(vision / 1e9).toFixed(3)} | ${c.visualTokens} | ${(llm / 1e9).toFixed(3)} | ${((vision + llm) / 1e9).toFixed(3)} |`);
  }
  process.stdout.write(cost.join('\n') + '\n');
}

main();
