// Ratios, the printed tables and docs/BENCHMARKS.md. A time ratio below 1 and a speed ratio
// above 1 mean we are faster; a peer that was not measured gives null, never a win.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { LlamaCppRace, ModelResult, Report, Skipped } from './orchestrate.js';
import type { LlamaCppTimes } from './peer-llamacpp.js';
import type { Bandwidth } from './bandwidth.js';
import type { LlmTimes, PackTimes } from './measure-ours.js';
import { type QualityRow, qualityTable } from './format-quality.js';

export interface Ratios {
  /** Ours / PyTorch time for the whole vision side: both towers, fusion, projector, object features. */
  vision_time_vs_torch: number | null;
  /** Ours / PyTorch time for the towers, fusion and projector only. */
  encoder_time_vs_torch: number | null;
  /** PyTorch's materialised resize + roi_align + mean / our per-stage linear maps (time). */
  object_features_speedup_vs_materialised: number | null;
  /** Our decode tokens/s / llama.cpp's on its Q4_0 (its better flash-attention setting). */
  decode_vs_llamacpp: number | null;
  /** Our prefill tokens/s / llama.cpp's on its Q4_0 (its better setting). */
  prefill_vs_llamacpp: number | null;
  /** Our decode tokens/s / llama.cpp's on its Q4_K_M (read with kl_vs_q4_k_m). */
  decode_vs_llamacpp_q4_k_m: number | null;
  /** Our prefill tokens/s / llama.cpp's on its Q4_K_M. */
  prefill_vs_llamacpp_q4_k_m: number | null;
  /** Our / llama.cpp's time to the first token of the prompt. */
  ttft_vs_llamacpp: number | null;
  /** Our / llama.cpp's LLM load time. */
  load_vs_llamacpp: number | null;
  /** Our decode tokens/s / (memory bandwidth / bytes we read per token). */
  decode_vs_ceiling: number | null;
  /** llama.cpp's decode tokens/s / (bandwidth / bytes it reads per token), for reference. */
  llamacpp_decode_vs_ceiling: number | null;
  /** Peak RSS of our LLM process / its weights' bytes. */
  peak_rss_vs_weights: number | null;
  /** Peak RSS of our vision process / the vision weights' bytes. */
  vision_peak_rss_vs_weights: number | null;
  /** Our / PyTorch's time for one stage-1 training step (forward, backward, AdamW), same batch. */
  train_step_stage1_vs_torch: number | null;
  /** The same for stage 2 (the LLM learns too). */
  train_step_stage2_vs_torch: number | null;
  /**
   * Seconds from a new image to the first token, ours: the vision side (towers, fusion,
   * projector, object features) plus the LLM's time to the first token of the 666-token prompt,
   * each measured warm in its own process (not a ratio; the issue's moonshot is 15 s on the
   * 3.8B shape).
   */
  ttft_new_image_s: number | null;
  /**
   * Mean next-token KL of our format against the float model / that of llama.cpp's Q4_0 on the
   * same weights and prompt (bench/format-quality.ts): <= 1 means at least as accurate.
   */
  kl_vs_q4_0: number | null;
  /** The same against llama.cpp's Q4_K_M: above 1 means Q4_K_M is the more accurate. */
  kl_vs_q4_k_m: number | null;
}

/** What the issue asks of each ratio, for the printed table. */
export const TARGETS: Partial<Record<keyof Ratios, string>> = {
  vision_time_vs_torch: '<= 0.8',
  encoder_time_vs_torch: '<= 0.8',
  object_features_speedup_vs_materialised: '>= 5',
  decode_vs_llamacpp: '>= 1.0',
  prefill_vs_llamacpp: '>= 1.0',
  ttft_new_image_s: '<= 15 (3.8b, moonshot)',
  kl_vs_q4_0: '<= 1',
  decode_vs_llamacpp_q4_k_m: '(at kl_vs_q4_k_m)',
  load_vs_llamacpp: '<= 1.5',
  decode_vs_ceiling: '>= 0.7',
  peak_rss_vs_weights: '<= 1.25',
  train_step_stage1_vs_torch: '<= 1.0',
  train_step_stage2_vs_torch: '<= 1.0',
};

const ok = <T>(x: T | Skipped | undefined): T | undefined =>
  x === undefined || (typeof x === 'object' && x !== null && 'skipped' in x) ? undefined : (x as T);
const div = (a: number | undefined, b: number | undefined): number | null =>
  a === undefined || b === undefined || !(b > 0) ? null : a / b;

/**
 * Per measure, the best of several runs of one LLM side: least time (`*_s`), most tokens/s
 * (`*_tps`), and the highest peak RSS (the cautious side); other fields from the first run.
 * Failed runs are left out; all failed gives the first failure.
 */
export function bestOf<T extends LlmTimes>(runs: readonly (T | Skipped)[]): T | Skipped {
  const good = runs.filter((r): r is T => ok<T>(r) !== undefined);
  if (good.length === 0) return runs[0] ?? { skipped: 'not run' };
  const out = { ...good[0]! } as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(good[0]!)) {
    if (typeof v !== 'number') continue;
    const all = good.map((r) => (r as unknown as Record<string, number>)[k]!);
    if (k.endsWith('_tps') || k === 'peak_rss_bytes') out[k] = Math.max(...all);
    else if (k.endsWith('_s')) out[k] = Math.min(...all);
  }
  return out as T;
}

/** llama.cpp's better of flash attention off/on for each measure. */
function bestLlama(race: LlamaCppRace | undefined) {
  const best = race && ok<LlamaCppTimes>(bestOf([race.flash_off, race.flash_on]));
  return best && { decode_tps: best.decode_tps, prefill_tps: best.prefill_tps, ttft_s: best.ttft_s, load_s: best.load_s };
}

export function ratios(r: Omit<ModelResult, 'ratios'>): Ratios {
  const v = ok(r.ours.vision);
  const t = ok(r.torch);
  const l = ok(r.ours.llm);
  const best = bestLlama(r.llamacpp);
  const bestK = bestLlama(r.llamacpp_q4_k_m);
  const bw = ok<Bandwidth>(r.ours.bandwidth)?.best;
  const ceiling = bw === undefined ? undefined : bw / r.ours.decode_bytes_per_token;
  // llama.cpp's ceiling with the bandwidth measured beside its better decode run.
  const lc = [['flash_off', 'bandwidth_off'], ['flash_on', 'bandwidth_on']] as const;
  const lcRatios = lc.map(([run, b]) => {
    const x = ok<LlamaCppTimes>(r.llamacpp[run]);
    const bb = ok<Bandwidth>(r.llamacpp[b])?.best;
    return x && bb && r.llamacpp.decode_bytes_per_token ? x.decode_tps / (bb / r.llamacpp.decode_bytes_per_token) : undefined;
  }).filter((x): x is number => x !== undefined);
  return {
    vision_time_vs_torch: div(v && v.encode_s + v.objects_s, t && t.encode_s + t.objects_s),
    encoder_time_vs_torch: div(v?.encode_s, t?.encode_s),
    object_features_speedup_vs_materialised: div(t?.objects_s, v?.objects_s),
    decode_vs_llamacpp: div(l?.decode_tps, best?.decode_tps),
    prefill_vs_llamacpp: div(l?.prefill_tps, best?.prefill_tps),
    decode_vs_llamacpp_q4_k_m: div(l?.decode_tps, bestK?.decode_tps),
    prefill_vs_llamacpp_q4_k_m: div(l?.prefill_tps, bestK?.prefill_tps),
    ttft_vs_llamacpp: div(l?.ttft_s, best?.ttft_s),
    load_vs_llamacpp: div(l?.load_s, best?.load_s),
    decode_vs_ceiling: div(l?.decode_tps, ceiling),
    llamacpp_decode_vs_ceiling: lcRatios.length ? Math.max(...lcRatios) : null,
    peak_rss_vs_weights: div(l?.peak_rss_bytes, r.ours.llm_weight_bytes),
    vision_peak_rss_vs_weights: div(v?.peak_rss_bytes, r.ours.vision_weight_bytes),
    train_step_stage1_vs_torch: trainRatio(r, 'stage1'),
    train_step_stage2_vs_torch: trainRatio(r, 'stage2'),
    ttft_new_image_s: v && l ? v.encode_s + v.objects_s + l.ttft_s : null,
    kl_vs_q4_0: klVs(r, 'Q4_0'),
    kl_vs_q4_k_m: klVs(r, 'Q4_K_M'),
  };
}

function klVs(r: Omit<ModelResult, 'ratios'>, ftype: 'Q4_0' | 'Q4_K_M'): number | null {
  const rows = ok<QualityRow[]>(r.quality);
  const ours = rows?.find((x) => x.stack === 'ours');
  const theirs = rows?.find((x) => x.format === ftype);
  return div(ours?.drift.meanKl, theirs?.drift.meanKl);
}

function trainRatio(r: Omit<ModelResult, 'ratios'>, stage: 'stage1' | 'stage2'): number | null {
  const t = r.training?.[stage];
  return div(ok<{ step_s: number }>(t?.ours)?.step_s, ok<{ step_s: number }>(t?.torch)?.step_s);
}

// ---- tables ----

const f2 = (x: number | null | undefined, d = 2) => (x === null || x === undefined ? '-' : x.toFixed(d));
const gib = (b: number | undefined) => (b === undefined ? '-' : `${(b / 2 ** 30).toFixed(2)} GiB`);
const why = (x: unknown) => (typeof x === 'object' && x !== null && 'skipped' in x ? `skipped: ${(x as Skipped).skipped}` : undefined);

export function ratioTable(rep: Report): string {
  const names = Object.keys(rep.models);
  const keys = Object.keys(Object.values(rep.models)[0]?.ratios ?? {}) as (keyof Ratios)[];
  const lines = [
    `| ratio | ${names.join(' | ')} | target |`,
    `| --- | ${names.map(() => '---').join(' | ')} | --- |`,
    ...keys.map((k) => `| ${k} | ${names.map((n) => f2(rep.models[n]!.ratios[k])).join(' | ')} | ${TARGETS[k] ?? ''} |`),
  ];
  return lines.join('\n');
}

/** The pack load's time when it packed (the cache had no entry), else where the weights came from. */
function firstLoad(p: PackTimes | Skipped | undefined): string {
  const x = ok<PackTimes>(p);
  if (!x) return '-';
  return x.packed === 'saved' ? f2(x.load_s) : `(cached: ${x.packed})`;
}

export function detailTable(name: string, r: ModelResult): string {
  const v = ok(r.ours.vision);
  const t = ok(r.torch);
  const l = ok(r.ours.llm);
  const kq = r.llamacpp_q4_k_m;
  // llama.cpp's columns: each raced file type with flash attention off and on.
  const races = [['Q4_0', r.llamacpp], ...(kq ? [['Q4_K_M', kq] as const] : [])] as const;
  const cols = races.flatMap(([f, x]) => [[`${f} FA off`, ok<LlamaCppTimes>(x.flash_off), x, 'off'], [`${f} FA on`, ok<LlamaCppTimes>(x.flash_on), x, 'on']] as const);
  const bwo = ok<Bandwidth>(r.ours.bandwidth);
  const gbs = (b: Bandwidth | undefined) => f2(b && b.best / 1e9, 1);
  const ceil = (bw: Bandwidth | undefined, bpt: number | undefined) => (bw && bpt ? f2(bw.best / bpt, 1) : '-');
  const width = 2 + cols.length;
  const row = (label: string, ...cells: string[]) => `| ${label} | ${[...cells, ...Array<string>(Math.max(0, width - cells.length)).fill('')].join(' | ')} |`;
  const L = [l, undefined, ...cols.map((c) => c[1])];
  const raceBw = (x: LlamaCppRace, fa: 'off' | 'on') => ok<Bandwidth>(fa === 'off' ? x.bandwidth_off : x.bandwidth_on);
  const build = cols.find((c) => c[1])?.[1]?.build;
  const out = [
    `#### ${name}: ${r.title}`,
    '',
    `Our LLM: ${r.ours.llm_format}. llama.cpp: ${races.map((x) => x[0]).join(' and ')} GGUFs written from the same weights with llama.cpp's per-tensor choices${build ? ` (${build})` : ''}.`,
    '',
    row('measurement', 'mgllava-ts', 'PyTorch', ...cols.map((c) => `llama.cpp ${c[0]}`)),
    row('---', '---', '---', ...cols.map(() => '---')),
    row('vision load (s)', f2(v?.load_s), f2(t?.load_s)),
    row('vision load that packed the weights for this CPU (s; first load only)', firstLoad(r.ours.vision_pack)),
    row('vision encode: towers + fusion + projector (s)', f2(v?.encode_s), f2(t?.encode_s)),
    row(`object features + bbox_projector, ${v?.boxes ?? '-'} boxes (s)`, f2(v?.objects_s, 3), f2(t?.objects_s)),
    row('vision peak RSS', gib(v?.peak_rss_bytes), gib(t?.peak_rss_bytes)),
    row('LLM load (s)', ...L.map((x) => f2(x?.load_s))),
    row('LLM load that packed the weights for this CPU (s; first load only)', firstLoad(r.ours.llm_pack)),
    row(`prefill of ${l?.prompt_tokens ?? cols[0]?.[1]?.prompt_tokens ?? '-'} tokens (tok/s)`, ...L.map((x) => f2(x?.prefill_tps, 1))),
    row('time to first token, LLM (s)', ...L.map((x) => f2(x?.ttft_s))),
    row('time to first token with the image (vision + LLM, s)', f2(v && l ? v.encode_s + v.objects_s + l.ttft_s : undefined)),
    row(`decode of ${l?.decode_tokens ?? cols[0]?.[1]?.decode_tokens ?? '-'} tokens (tok/s)`, ...L.map((x) => f2(x?.decode_tps, 2))),
    row('LLM peak RSS', ...L.map((x) => gib(x?.peak_rss_bytes))),
    row('weights (as held in memory)', `LLM ${gib(r.ours.llm_weight_bytes)}, vision ${gib(r.ours.vision_weight_bytes)}`, '', ...cols.map((c) => (c[3] === 'off' ? gib(c[2].gguf_bytes) : ''))),
    row('bytes read per decoded token', gib(r.ours.decode_bytes_per_token), '', ...cols.map((c) => (c[3] === 'off' ? gib(c[2].decode_bytes_per_token) : ''))),
    ...(['stage1', 'stage2'] as const).flatMap((st) => {
      const tr = r.training?.[st];
      if (!tr) return [];
      const o = ok<{ step_s: number; peak_rss_bytes: number; loss: number; seq: number }>(tr.ours);
      const p = ok<{ step_s: number; peak_rss_bytes: number; loss: number }>(tr.torch);
      const n = st === 'stage1' ? 1 : 2;
      return [
        row(`training step, stage ${n}: forward + backward + AdamW, ${o?.seq ?? '-'} positions (s)`, f2(o?.step_s, 3), f2(p?.step_s, 3)),
        row(`training peak RSS, stage ${n} (loss of the step)`, `${gib(o?.peak_rss_bytes)} (${f2(o?.loss, 5)})`, `${gib(p?.peak_rss_bytes)} (${f2(p?.loss, 5)})`),
      ];
    }),
    row('memory read bandwidth beside the run (GB/s, best)', gbs(bwo), '', ...cols.map((c) => gbs(raceBw(c[2], c[3])))),
    row('decode ceiling (tok/s)', ceil(bwo, r.ours.decode_bytes_per_token), '', ...cols.map((c) => ceil(raceBw(c[2], c[3]), c[2].decode_bytes_per_token))),
  ];
  const skips: [string, unknown][] = [['our vision', r.ours.vision], ['our LLM', r.ours.llm], ['PyTorch', r.torch],
    ...races.flatMap(([f, x]) => [[`llama.cpp ${f} FA off`, x.flash_off], [`llama.cpp ${f} FA on`, x.flash_on]] as [string, unknown][])];
  for (const [label, x] of skips) {
    const w = why(x);
    if (w) out.push('', `${label}: ${w}`);
  }
  return out.join('\n');
}

export function markdown(rep: Report): string {
  const m = rep.machine;
  return [
    `### ${rep.date.slice(0, 10)}, preset \`${rep.preset}\`, ${rep.threads} threads`,
    '',
    `Command: \`${rep.command}\`. Machine: ${m.cpu}, ${m.cores} cores, ${(m.memory_bytes / 2 ** 30).toFixed(0)} GiB, Node ${m.node}. ` +
      `Load average ${rep.load_average_start.map((x) => x.toFixed(2)).join(' ')} at the start, ${rep.load_average_end.map((x) => x.toFixed(2)).join(' ')} at the end. ` +
      `Workload: ${rep.workload.boxes} boxes, a ${rep.workload.promptTokens}-token prompt (576 image + ${rep.workload.promptBoxes} box + text tokens), ${rep.workload.decodeTokens} decoded tokens.${rep.workload.llmRounds > 1 ? ` LLM numbers: the best of ${rep.workload.llmRounds} interleaved rounds per side and measure (peak RSS: the highest).` : ''}`,
    '',
    ratioTable(rep),
    '',
    ...Object.entries(rep.models).flatMap(([n, r]) => {
      const q = ok<QualityRow[]>(r.quality);
      const qWhy = why(r.quality);
      return [detailTable(n, r), '',
        ...(q ? [`Answer quality (${n}): each format against the float model, the prompt's every 8th position (bench/format-quality.ts):`, '', qualityTable(q), ''] : []),
        ...(qWhy ? [`Answer quality (${n}): ${qWhy}`, ''] : [])];
    }),
  ].join('\n');
}

/**
 * Replaces this preset's block in docs/BENCHMARKS.md (between `<!-- bench:NAME -->` and
 * `<!-- /bench:NAME -->`), so a quick `small` run leaves the `full` numbers in place.
 */
export function writeDocs(path: string, rep: Report): void {
  const open = `<!-- bench:${rep.preset} -->`;
  const close = `<!-- /bench:${rep.preset} -->`;
  const block = `${open}\n${markdown(rep)}\n${close}`;
  let text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
  const a = text.indexOf(open);
  const b = text.indexOf(close);
  text = a >= 0 && b > a ? text.slice(0, a) + block + text.slice(b + close.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(path, text);
}
