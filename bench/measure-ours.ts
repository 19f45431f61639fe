// Our side of the benchmark, each function meant to run alone in its own process (bench/child.ts)
// so that its peak RSS is its own.

import { join } from 'node:path';
import { MgLlava } from '../src/model/mg-llava.js';
import { CausalLM } from '../src/model/llm/causal-lm.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { clipPreprocess } from '../src/preprocess/clip-image.js';
import { argmax } from '../src/generate/sampling.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { F32Tensor } from '../src/core/tensor.js';
import { Workload } from './presets.js';
import { benchBoxes, lcg, promptLayout } from './workload.js';

export const seconds = (t0: number) => (performance.now() - t0) / 1000;
export const peakRssBytes = () => process.resourceUsage().maxRSS * 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export interface VisionTimes {
  load_s: number;
  /** CLIP (with its 336 view) + ConvNeXt + fusion + projector, median of the runs. */
  encode_s: number;
  /** Object features of `boxes` boxes + bbox_projector, median of the runs. */
  objects_s: number;
  boxes: number;
  peak_rss_bytes: number;
  /** How the encoder got its pre-packed weights ('mapped' from the packed cache). */
  packed: string;
}

/**
 * Loads the vision side of the MG-LLaVA folder `modelDir`, encodes `image` (CLIP-preprocessed at
 * the model's image_size_aux) and the bench boxes `runs` times. Writes the exact inputs it used to
 * `inputsFile` for the PyTorch peer.
 */
export async function measureOursVision(modelDir: string, image: string, threads: number, w: Workload, inputsFile: string, packedCache: string): Promise<VisionTimes> {
  let t0 = performance.now();
  const model = await MgLlava.load({ model: modelDir }, { threads, llm: false, packedCache });
  const vision = await model.visionModel();
  const load = seconds(t0);
  const S = vision.settings.imageSizeAux;
  const pre = clipPreprocess(await decodeImage(image), { size: S });
  const aux: F32Tensor = { dims: [1, 3, S, S], data: pre.pixelValues };
  const boxes = benchBoxes(w.boxes, S);
  const enc: number[] = [];
  const obj: number[] = [];
  let low = aux;
  for (let i = 0; i < w.visionRuns; i++) {
    t0 = performance.now();
    low = await vision.lowResView(aux);
    const e = await vision.encodeImage(low, aux);
    enc.push(seconds(t0));
    t0 = performance.now();
    await vision.encodeBoxes(e.stages, boxes);
    obj.push(seconds(t0));
  }
  const packed = vision.packed;
  await model.release();
  writeSafetensors(inputsFile, [
    { name: 'pixel_values', dtype: 'F32', shape: [...low.dims], data: low.data },
    { name: 'pixel_values_aux', dtype: 'F32', shape: [...aux.dims], data: aux.data },
    { name: 'boxes', dtype: 'F32', shape: [w.boxes, 4], data: boxes },
  ]);
  return { load_s: load, encode_s: median(enc), objects_s: median(obj), boxes: w.boxes, peak_rss_bytes: peakRssBytes(), packed };
}

export interface LlmTimes {
  load_s: number;
  prompt_tokens: number;
  /** One run over the whole prompt (input embeddings -> cache + last logits). */
  prefill_s: number;
  prefill_tps: number;
  /** From the prompt's text ids and visual embeddings to the first generated token id. */
  ttft_s: number;
  decode_tokens: number;
  decode_s: number;
  decode_tps: number;
  peak_rss_bytes: number;
  /** Ours: how the decoder got its pre-packed weights ('mapped' from the packed cache). */
  packed?: string;
  /** Ours: page faults that read from disk (mapped weights the kernel had dropped). */
  major_faults?: { prefill: number; decode: number };
}

/**
 * Loads the LLM folder, prefills the multimodal prompt (text embedded by the model, image and box
 * tokens as random projector-like embeddings) in one run, then decodes greedily.
 */
export async function measureOursLlm(llmDir: string, threads: number, w: Workload, packedCache: string | false): Promise<LlmTimes> {
  let t0 = performance.now();
  const lm = await CausalLM.load(llmDir, { threads, packedCache });
  const load = seconds(t0);
  const H = lm.config.hiddenSize;
  const p = promptLayout(w, lm.config.vocabSize, lm.config.bosTokenId ?? 1);
  const r = lcg(5);
  const visual = Float32Array.from({ length: (p.imageTokens + p.boxTokens) * H }, () => r() * 2 - 1);
  const S = w.promptTokens;

  t0 = performance.now();
  const before = await lm.embed(p.before);
  const after = await lm.embed(p.after);
  const embeds = new Float32Array(S * H);
  embeds.set(before.data, 0);
  embeds.set(visual, before.data.length);
  embeds.set(after.data, before.data.length + visual.length);
  const cache = lm.newCache(S + w.decodeTokens);
  const faults0 = process.resourceUsage().majorPageFault;
  const t1 = performance.now();
  let logits = await lm.forward({ dims: [S, H], data: embeds }, cache);
  const prefill = seconds(t1);
  let next = argmax(logits.data);
  const ttft = seconds(t0);

  const faults1 = process.resourceUsage().majorPageFault;
  t0 = performance.now();
  for (let i = 0; i < w.decodeTokens; i++) {
    logits = await lm.forward(await lm.embed([next]), cache);
    next = argmax(logits.data);
  }
  const decode = seconds(t0);
  const faults2 = process.resourceUsage().majorPageFault;
  const packed = lm.packed;
  await lm.release();
  return {
    load_s: load, prompt_tokens: S, prefill_s: prefill, prefill_tps: S / prefill, ttft_s: ttft,
    decode_tokens: w.decodeTokens, decode_s: decode, decode_tps: w.decodeTokens / decode, peak_rss_bytes: peakRssBytes(), packed,
    major_faults: { prefill: faults1 - faults0, decode: faults2 - faults1 },
  };
}

export interface PackTimes {
  load_s: number;
  /** 'saved' when this load packed the weights and wrote the packed cache, 'mapped' when it was there. */
  packed: string;
}

/**
 * One load of our vision side (`model`) or LLM (`llm`) with the packed cache, before the measured
 * runs: the first on a machine packs the weights and writes the cache (timed here), so that the
 * measured load is the one a user gets from then on.
 */
export async function packOurs(job: { model?: string; llm?: string; threads: number; packedCache: string }): Promise<PackTimes> {
  const t0 = performance.now();
  if (job.llm) {
    const lm = await CausalLM.load(job.llm, { threads: job.threads, packedCache: job.packedCache });
    const load_s = seconds(t0);
    const packed = lm.packed;
    await lm.release();
    return { load_s, packed };
  }
  const model = await MgLlava.load({ model: job.model! }, { threads: job.threads, llm: false, packedCache: job.packedCache });
  const load_s = seconds(t0);
  const packed = (await model.visionModel()).packed;
  await model.release();
  return { load_s, packed };
}

/** The image every vision measurement encodes. */
export const benchImage = (root: string) => join(root, 'fixtures', 'tiny', 'example.jpg');
