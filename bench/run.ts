// `npm run bench`: the vision side at the real MG-LLaVA-7B shapes (random weights, built once
// into a cache folder), timed stage by stage, beside the PyTorch reference stack when Debian's
// python3-torch is installed (same weights, same inputs, same thread count).
//
// Run it alone: any other process on the cores ruins the timings (the load average is printed).

import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { loadavg, tmpdir, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MgLlava } from '../src/model/mg-llava.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { readBoxFile } from '../src/preprocess/box-file.js';
import { clipPreprocess } from '../src/preprocess/clip-image.js';
import { prepareBoxes } from '../src/preprocess/boxes.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { REAL_7B_SHAPE, writeRandomModel } from '../test/helpers/random-model.js';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
const TINY = join(ROOT, 'fixtures', 'tiny');
const THREADS = Number(process.env.MGLLAVA_BENCH_THREADS ?? Math.min(cpus().length, 2));
const RUNS = Number(process.env.MGLLAVA_BENCH_RUNS ?? 3);
const PYTHON = process.env.MGLLAVA_BENCH_PYTHON ?? '/usr/bin/python3';

const log = (s: string) => process.stderr.write(`${s}\n`);

function cachedModel(): string {
  const root = join(tmpdir(), 'mgllava-bench-7b-vision-v1');
  if (!existsSync(join(root, 'mg', 'mgllava_config.json'))) {
    log(`writing a random-weight model with the real shapes to ${root} (once, ~2 GB)`);
    const tmp = `${root}.partial`;
    rmSync(tmp, { recursive: true, force: true });
    writeRandomModel(tmp, REAL_7B_SHAPE);
    renameSync(tmp, root);
  }
  return join(root, 'mg');
}

async function time<T>(f: () => Promise<T> | T): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, (performance.now() - t0) / 1000];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}, ${THREADS} threads, ${RUNS} runs`);
  const modelDir = cachedModel();
  const [model, loadS] = await time(() => MgLlava.load({ model: modelDir }, { threads: THREADS, llm: false }));
  const vision = await model.visionModel();
  const image = await decodeImage(join(TINY, 'example.jpg'));
  const det = await readBoxFile(join(TINY, 'boxes_raw.json'));

  const t: Record<string, number[]> = { preprocess: [], view: [], encoder: [], boxes: [] };
  let last: { aux: Float32Array; low: Float32Array; boxes: Float32Array } | undefined;
  for (let i = 0; i < RUNS; i++) {
    const [pre, tp] = await time(() => clipPreprocess(image, { size: 768 }));
    const aux = { dims: [1, 3, 768, 768], data: pre.pixelValues };
    const [low, tv] = await time(() => vision.lowResView(aux));
    const [enc, te] = await time(() => vision.encodeImage(low, aux));
    const boxes = prepareBoxes(det, pre.geometry).boxes;
    const [, tb] = await time(() => vision.encodeBoxes(enc.stages, boxes));
    t.preprocess!.push(tp); t.view!.push(tv); t.encoder!.push(te); t.boxes!.push(tb);
    last = { aux: pre.pixelValues, low: low.data, boxes };
  }
  await model.release();
  const rss = process.resourceUsage().maxRSS / 1024 / 1024;
  const ours = { load: loadS, ...Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)])) } as Record<string, number>;
  const k = last!.boxes.length / 4;

  const peer = runPeer(modelDir, last!);
  console.log(`# vision side, MG-LLaVA-7B shapes (CLIP ViT-L/14-336 + ConvNeXt-L at 768, ${k} boxes), ${THREADS} threads`);
  console.log(`| stage | mgllava-ts (s) | PyTorch reference (s) | ratio (reference / ours) |`);
  console.log(`| --- | --- | --- | --- |`);
  const row = (name: string, ourS: number | undefined, refS: number | undefined) =>
    console.log(`| ${name} | ${ourS?.toFixed(2) ?? '-'} | ${refS?.toFixed(2) ?? '-'} | ${ourS && refS ? (refS / ourS).toFixed(2) : '-'} |`);
  row('load (graphs + sessions)', ours.load, peer?.load);
  row('preprocess (decode excluded)', ours.preprocess, undefined);
  row('CLIP + ConvNeXt + fusion + projector (+ 336 view)', ours.encoder! + ours.view!, peer?.encoder);
  row(`object features + bbox_projector (${k} boxes)`, ours.boxes, peer?.boxes);
  console.log(`\npeak RSS: mgllava-ts ${rss.toFixed(2)} GiB${peer ? `, PyTorch ${peer.rss.toFixed(2)} GiB` : ''}`);
  if (!peer) console.log(`(no PyTorch peer: install python3-torch python3-torchvision libopenblas0-pthread from Debian)`);
}

interface PeerTimes { load: number; encoder: number; boxes: number; rss: number }

/** The reference stack on the same weights and inputs, if PyTorch is installed. */
function runPeer(modelDir: string, inputs: { aux: Float32Array; low: Float32Array; boxes: Float32Array }): PeerTimes | undefined {
  try {
    execFileSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const dir = join(tmpdir(), 'mgllava-bench-inputs');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'inputs.safetensors');
  writeSafetensors(file, [
    { name: 'pixel_values', dtype: 'F32', shape: [1, 3, 336, 336], data: inputs.low },
    { name: 'pixel_values_aux', dtype: 'F32', shape: [1, 3, 768, 768], data: inputs.aux },
    { name: 'boxes', dtype: 'F32', shape: [inputs.boxes.length / 4, 4], data: inputs.boxes },
  ]);
  const out = execFileSync(PYTHON, [join(ROOT, 'bench', 'peer_torch.py'), modelDir, file, String(THREADS), String(RUNS)], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: String(THREADS) },
  });
  return JSON.parse(out.trim().split('\n').pop()!) as PeerTimes;
}

await main();
