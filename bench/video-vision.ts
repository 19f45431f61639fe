// `node dist/bench/video-vision.js [--threads N] [--runs N] [--cache DIR] [--per-frame] [--no-docs]`
//
// The video path's vision side (issue 15) at the MG-LLaVA-7B shape (the bench cache's
// vision-7b-*/ folder: CLIP ViT-L/14-336, ConvNeXt-L at 768, random weights) against PyTorch's
// reference modules (bench/peer_torch.py --frames) on the same machine, threads and inputs:
// fixtures/video/synthetic_landscape.mkv's 8 sampled frames, already decoded and through the video
// pixel transform (not timed), the towers + fusion + projector for all 8 frames, and every frame's
// boxes (benchBoxes, the counts of the fixture's pad_limit100 boxes: 141 in all) through the
// object features + bbox_projector. Ours: one encoder run for the 8 frames, one object-feature
// run for all their boxes; PyTorch: the frames as one batch, roi_align over all frames' boxes.
// Median of --runs runs each (default 3). Writes docs/BENCHMARKS.md's `video:full` section.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { MgLlava } from '../src/model/mg-llava.js';
import { F32Tensor } from '../src/core/tensor.js';
import { loadVideoFrames } from '../src/video/frames.js';
import { videoPixels } from '../src/video/preprocess.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { tunedMallocEnv } from '../src/cli/malloc-tuning.js';
import { ROOT, defaultCache } from './orchestrate.js';
import { benchBoxes } from './workload.js';

/** Boxes per frame: the fixture's pad_limit100 counts (fixtures/video). */
export const FRAME_BOXES = [6, 5, 11, 1, 90, 10, 5, 13];
const START = '<!-- video:full -->';
const END = '<!-- /video:full -->';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const seconds = (t0: number) => (performance.now() - t0) / 1000;

function parseArgs(argv: string[]) {
  const o = { threads: Math.min(cpus().length, 2), runs: 3, cache: defaultCache(), perFrame: false, docs: true, python: process.env.MGLLAVA_BENCH_PYTHON ?? '/usr/bin/python3' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '--threads': o.threads = Number(value()); break;
      case '--runs': o.runs = Number(value()); break;
      case '--cache': o.cache = value(); break;
      case '--python': o.python = value(); break;
      case '--per-frame': o.perFrame = true; break;
      case '--no-docs': o.docs = false; break;
      default: throw new Error(`unknown option ${a}`);
    }
  }
  if (!(Number.isInteger(o.threads) && o.threads > 0)) throw new Error('--threads must be a positive integer');
  if (!(Number.isInteger(o.runs) && o.runs > 0)) throw new Error('--runs must be a positive integer');
  return o;
}

export interface VideoVisionResult {
  frames: number;
  boxes: number[];
  ours: { load_s: number; encode_s: number; objects_s: number; total_s: number; runs_s: number[]; per_frame_total_s?: number; packed: string; peak_rss_gib: number };
  torch: { load_s: number; encode_s: number; objects_s: number; total_s: number; peak_rss_gib: number } | { skipped: string };
  ratio?: number;
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
  const o = parseArgs(argv.filter((a) => a !== '--video'));
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const folder = readdirSync(o.cache).find((d) => d.startsWith('vision-7b-'));
  if (!folder) throw new Error(`no vision-7b-* folder in ${o.cache}: run \`npm run bench -- --preset full\` once to write it`);
  const mg = join(o.cache, folder, 'mg');
  const load0 = loadavg();

  // The frames, decoded and through the video pixel transform (not timed).
  const video = await loadVideoFrames(join(ROOT, 'fixtures', 'video', 'synthetic_landscape.mkv'), { frames: 8 });
  const F = video.frames.length;
  let t0 = performance.now();
  const model = await MgLlava.load({ model: mg }, { threads: o.threads, llm: false, packedCache: join(o.cache, 'packed') });
  const vision = await model.visionModel();
  const load = seconds(t0);
  const s = vision.shapes.clip.imageSize;
  const S = vision.settings.imageSizeAux;
  const px = videoPixels(video.frames, { pad: true, clipSize: s, auxSize: S });
  const low: F32Tensor = { dims: [F, 3, s, s], data: px.pixelValues };
  const aux: F32Tensor = { dims: [F, 3, S, S], data: px.pixelValuesAux };
  const boxes = FRAME_BOXES.map((k, f) => benchBoxes(k, S, 3 + f));

  const enc: number[] = [];
  const obj: number[] = [];
  for (let r = 0; r < o.runs; r++) {
    t0 = performance.now();
    const e = await vision.encodeImage(low, aux);
    enc.push(seconds(t0));
    t0 = performance.now();
    await vision.encodeBoxesBatch(e.stages, boxes);
    obj.push(seconds(t0));
    log(`  ours run ${r + 1}: encode ${enc[r]!.toFixed(2)} s, objects ${obj[r]!.toFixed(2)} s`);
  }
  let perFrame: number | undefined;
  if (o.perFrame) {
    t0 = performance.now();
    for (let f = 0; f < F; f++) {
      const e = await vision.encodeImage(
        { dims: [1, 3, s, s], data: low.data.subarray(f * 3 * s * s, (f + 1) * 3 * s * s) },
        { dims: [1, 3, S, S], data: aux.data.subarray(f * 3 * S * S, (f + 1) * 3 * S * S) },
      );
      await vision.encodeBoxes(e.stages, boxes[f]!);
    }
    perFrame = seconds(t0);
    log(`  ours frame by frame: ${perFrame.toFixed(2)} s`);
  }
  const packed = vision.packed;
  await model.release();
  const runs = enc.map((e, i) => e + obj[i]!);
  const ours = { load_s: load, encode_s: median(enc), objects_s: median(obj), total_s: median(runs), runs_s: runs, per_frame_total_s: perFrame, packed, peak_rss_gib: process.resourceUsage().maxRSS / 2 ** 20 };

  // PyTorch on the same tensors.
  const inputs = join(tmpdir(), `mgllava-video-inputs-${process.pid}.safetensors`);
  const allBoxes = new Float32Array(FRAME_BOXES.reduce((a, b) => a + b, 0) * 4);
  let at = 0;
  for (const b of boxes) { allBoxes.set(b, at); at += b.length; }
  writeSafetensors(inputs, [
    { name: 'pixel_values', dtype: 'F32', shape: [...low.dims], data: low.data },
    { name: 'pixel_values_aux', dtype: 'F32', shape: [...aux.dims], data: aux.data },
    { name: 'boxes', dtype: 'F32', shape: [allBoxes.length / 4, 4], data: allBoxes },
    { name: 'box_counts', dtype: 'F32', shape: [F], data: Float32Array.from(FRAME_BOXES) },
  ]);
  let torch: VideoVisionResult['torch'];
  try {
    const t = String(o.threads);
    log('  PyTorch, 8 frames');
    const r = spawnSync(o.python, [join(ROOT, 'bench', 'peer_torch.py'), mg, inputs, t, String(o.runs), '--frames'], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 3_600_000,
      env: { ...(tunedMallocEnv(process.env) ?? process.env), OMP_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t, MKL_NUM_THREADS: t },
    });
    if (r.status !== 0) torch = { skipped: `PyTorch failed: ${(r.stderr ?? '').trim().split('\n').pop() ?? r.signal}` };
    else {
      const p = JSON.parse(r.stdout.trim().split('\n').pop()!) as { load: number; encoder: number; boxes: number; total: number; rss: number };
      torch = { load_s: p.load, encode_s: p.encoder, objects_s: p.boxes, total_s: p.total, peak_rss_gib: p.rss };
    }
  } finally {
    rmSync(inputs, { force: true });
  }
  const result: VideoVisionResult = { frames: F, boxes: FRAME_BOXES, ours, torch };
  if (!('skipped' in torch)) result.ratio = ours.total_s / torch.total_s;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (o.docs) writeDocs(result, o, load0, loadavg(), folder);
}

function writeDocs(r: VideoVisionResult, o: ReturnType<typeof parseArgs>, load0: number[], load1: number[], folder: string): void {
  const path = join(ROOT, 'docs', 'BENCHMARKS.md');
  const f2 = (x: number) => x.toFixed(2);
  const t = r.torch;
  const ok = !('skipped' in t);
  const lines = [
    START,
    `### ${new Date().toISOString().slice(0, 10)}, video vision side, MG-LLaVA-7B shape, ${o.threads} threads`,
    '',
    `Command: \`node dist/bench/video-vision.js --threads ${o.threads}${o.runs !== 3 ? ` --runs ${o.runs}` : ''}${o.perFrame ? ' --per-frame' : ''}\`. Machine: ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}. Load average ${load0.map(f2).join(' ')} at the start, ${load1.map(f2).join(' ')} at the end.`,
    '',
    `The 8 frames of \`fixtures/video/synthetic_landscape.mkv\` (decoded and through the video pixel transform beforehand, not timed) through the 7B-shaped vision side of the bench cache (\`${folder}\`: CLIP ViT-L/14-336, ConvNeXt-L at 768, random weights), and ${r.boxes.reduce((a, b) => a + b, 0)} boxes (per frame ${r.boxes.join(', ')}: the fixture's pad_limit100 counts, \`benchBoxes\` coordinates) through the object features and bbox_projector. Ours: one encoder run for all 8 frames, one object-feature run for all their boxes. PyTorch (\`bench/peer_torch.py --frames\`, the reference modules): the 8 frames as one batch through CLIP, ConvNeXt, the fusion and the projector, one roi_align over all frames' boxes. Median of ${o.runs} runs per side, seconds.`,
    '',
    '| | ours | PyTorch | ours / PyTorch | target |',
    '| --- | --- | --- | --- | --- |',
    `| towers + fusion + projector, 8 frames | ${f2(r.ours.encode_s)} | ${ok ? f2(t.encode_s) : '-'} | ${ok ? f2(r.ours.encode_s / t.encode_s) : '-'} | |`,
    `| object features, all frames' boxes | ${f2(r.ours.objects_s)} | ${ok ? f2(t.objects_s) : '-'} | ${ok ? f2(r.ours.objects_s / t.objects_s) : '-'} | |`,
    `| **8-frame vision side** | ${f2(r.ours.total_s)} | ${ok ? f2(t.total_s) : '-'} | ${r.ratio !== undefined ? `**${f2(r.ratio)}**` : '-'} | <= 0.8 |`,
    `| load | ${f2(r.ours.load_s)} | ${ok ? f2(t.load_s) : '-'} | | |`,
    '',
    ok ? `Peak RSS: ours ${r.ours.peak_rss_gib.toFixed(1)} GiB${o.perFrame ? ' (with the frame-by-frame run)' : ''}, PyTorch's ${t.peak_rss_gib.toFixed(1)} GiB. Our encoder's packed weights: ${r.ours.packed}. Our runs (s): ${r.ours.runs_s.map(f2).join(', ')}.${r.ours.per_frame_total_s !== undefined ? ` Ours frame by frame (8 encoder runs, 8 object-feature runs), one run: ${f2(r.ours.per_frame_total_s)} s.` : ''}` : `PyTorch: ${t.skipped}.`,
    END,
  ];
  let doc = readFileSync(path, 'utf8');
  const block = lines.join('\n');
  const a = doc.indexOf(START);
  const b = doc.indexOf(END);
  if (a >= 0 && b > a) doc = doc.slice(0, a) + block + doc.slice(b + END.length);
  else {
    const anchor = '<!-- /bench:small -->';
    const i = doc.indexOf(anchor);
    const section = `\n\n## Video: the 8 frames' vision side\n\n\`node dist/bench/video-vision.js\` replaces the block below.\n\n${block}`;
    doc = i >= 0 ? doc.slice(0, i + anchor.length) + section + doc.slice(i + anchor.length) : `${doc.trimEnd()}${section}\n`;
  }
  writeFileSync(path, doc);
}

if (existsSync(ROOT) && process.argv[1]?.endsWith('video-vision.js')) await main();
