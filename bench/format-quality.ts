// Answer quality per weight format, measured on the same bf16 weights and the same prompt: the
// next-token distributions of each quantized model against the float model's, at every
// `stride`-th prompt position (src/quant/drift.ts).
//
// - the reference: our engine on the bf16 folder (float32 compute, weights exact);
// - our formats: our engine on the folder `mgllava quantize` writes (MatMulNBits, accuracy
//   level 4: what users run);
// - llama.cpp's: llama.cpp itself on the GGUF bench/llm-files.ts writes (its own kernels and
//   activation quantization), probabilities from node-llama-cpp's controlledEvaluate.
// Each stack sees the prompt as token ids.

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CausalLM } from '../src/model/llm/causal-lm.js';
import { LLAMA_ENV } from './peer-llamacpp.js';

/** The prompt positions measured: 0, stride, 2 stride, ... below `length`. */
export function measuredPositions(length: number, stride: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < length; p += stride) out.push(p);
  return out;
}

/** Our engine's logits [positions, V] after each measured position of the prompt. */
export async function ourLogits(llm: string, ids: readonly number[], positions: readonly number[], threads: number): Promise<Float32Array> {
  const lm = await CausalLM.load(llm, { threads, packedCache: false });
  try {
    const V = lm.config.vocabSize;
    const cache = lm.newCache(ids.length);
    const logits = await lm.forward(await lm.embed(ids), cache, { allLogits: true });
    const out = new Float32Array(positions.length * V);
    positions.forEach((p, i) => out.set(logits.data.subarray(p * V, (p + 1) * V), i * V));
    return out;
  } finally {
    await lm.release();
  }
}

/* The parts of node-llama-cpp's API used here (not a dependency: no types at compile time). */
type Item = number | [number, { generateNext: { probabilities: true } }];
interface Sequence { controlledEvaluate(input: Item[]): Promise<({ next: { probabilities?: Map<number, number> } } | undefined)[]> }
interface Context { getSequence(): Sequence; dispose(): Promise<void> }
interface Model { createContext(o: Record<string, unknown>): Promise<Context>; dispose(): Promise<void> }
interface Llama { loadModel(o: Record<string, unknown>): Promise<Model>; dispose(): Promise<void> }
interface NodeLlamaCpp { getLlama(o: Record<string, unknown>): Promise<Llama>; LlamaLogLevel: Record<string, string> }

/** llama.cpp's next-token probabilities [positions, V] for the GGUF, on the CPU. */
export async function llamaCppProbabilities(dir: string, gguf: string, ids: readonly number[], positions: readonly number[], vocab: number, threads: number): Promise<Float32Array> {
  Object.assign(process.env, LLAMA_ENV);
  const lib = (await import(pathToFileURL(join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href)) as NodeLlamaCpp;
  const llama = await lib.getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false, logLevel: lib.LlamaLogLevel.error, maxThreads: threads });
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0, useMmap: true });
  const contextSize = Math.ceil((ids.length + 1) / 256) * 256;
  const ctx = await model.createContext({ contextSize, batchSize: contextSize, threads, sequences: 1 });
  try {
    const want = new Set(positions);
    const input: Item[] = ids.map((t, p) => (want.has(p) ? [t, { generateNext: { probabilities: true } }] : t));
    const res = await ctx.getSequence().controlledEvaluate(input);
    const out = new Float32Array(positions.length * vocab);
    positions.forEach((p, i) => {
      const probs = res[p]?.next.probabilities;
      if (!probs) throw new Error(`llama.cpp gave no probabilities at position ${p}`);
      for (const [tok, q] of probs) if (tok < vocab) out[i * vocab + tok] = q;
    });
    return out;
  } finally {
    await ctx.dispose();
    await model.dispose();
    await llama.dispose();
  }
}
