// Answer quality per weight format, measured on the same bf16 weights and the same prompt: the
// next-token distributions of each quantized model against the float model's, at every
// `stride`-th prompt position (src/quant/drift.ts).
//
// - the reference: our engine on the bf16 folder (float32 compute, weights exact), or, where
//   float32 weights do not fit in memory, llama.cpp on an F16 GGUF (QualityOptions.reference);
// - our formats: our engine on the folder `mgllava quantize` writes (MatMulNBits, accuracy
//   level 4: what users run);
// - llama.cpp's: llama.cpp itself on the GGUF bench/llm-files.ts writes (its own kernels and
//   activation quantization), probabilities from node-llama-cpp's controlledEvaluate.
// Each stack sees the prompt as token ids (the bench's 666-token layout, as llama.cpp's race).
//
//   node dist/bench/format-quality.js --llm HF_DIR --work DIR   (options: the main below)

import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { CausalLM, readLlmFolderConfig } from '../src/model/llm/causal-lm.js';
import { quantizeLlm } from '../src/model/llm/quantize.js';
import { Drift, distributionDrift } from '../src/quant/drift.js';
import { weightErrorReport } from '../src/quant/error-report.js';
import { LlamaCppFtype, NBitsName, formatsByName, parseNBitsName } from '../src/quant/formats.js';
import { writeGgufFromHf } from './llm-files.js';
import { LLAMA_ENV, setupLlamaCpp } from './peer-llamacpp.js';
import { PRESETS } from './presets.js';
import { promptIds, promptLayout } from './workload.js';

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

export interface QualityRow {
  format: string;
  stack: 'ours' | 'llama.cpp';
  bits_per_weight: number | null;
  rel_rms: number | null;
  drift: Drift;
}

export interface QualityOptions {
  /** the bf16 HF folder */
  llm: string;
  /**
   * where quantized folders, GGUFs, the reference and each format's result are written; a
   * result already there is reused, so a run cut short resumes
   */
  work: string;
  /** node-llama-cpp's install folder (bench/peer-llamacpp.ts); undefined: llama.cpp's rows skipped */
  llamaCppDir?: string;
  ours: readonly string[];
  llamacpp: readonly (LlamaCppFtype | 'F16')[];
  /**
   * The float model's distributions from 'ours' (our engine, float32: exact, but the weights
   * take 4 bytes each in memory: 27 GB for the 7B shape) or 'llama.cpp-f16' (llama.cpp on an
   * F16 GGUF: 2 bytes each, mapped; it differs from ours by a KL of ~1e-6 on the small shapes,
   * a thousandth of a 4-bit format's).
   */
  reference: 'ours' | 'llama.cpp-f16';
  stride: number;
  threads: number;
  /** rows per matrix for the relative RMS error (src/quant/error-report.ts) */
  rows?: number;
  /** keep each format's folder or GGUF after measuring it (default: removed, a 7B one is 4-13 GB) */
  keep?: boolean;
  /** folders or GGUFs already written for some formats (by name): used as they are, never removed */
  prebuilt?: Readonly<Record<string, string>>;
  ids: readonly number[];
  log?: (m: string) => void;
}

/** Our format name -> quantizeLlm options (`q{bits}-b{block}-{zp|sym}[-h8]`; fp16 scales have no engine path yet). */
function nbitsOptions(name: string): NBitsName {
  const o = parseNBitsName(name);
  if (!o) throw new Error(`${name}: not one of our runnable formats (q{4,8}-b{32,64,128}-{zp,sym}[-h8])`);
  return o;
}

/** log-probabilities from probabilities (a 0 as 1e-30), usable as logits. */
function logOf(p: Float32Array): Float32Array {
  return p.map((q) => Math.log(q > 0 ? q : 1e-30));
}

/** Every format's drift (and weight error) against the float model on the same prompt. */
export async function formatQuality(o: QualityOptions): Promise<QualityRow[]> {
  const log = o.log ?? (() => {});
  const { config } = readLlmFolderConfig(o.llm);
  const V = config.vocabSize;
  const positions = measuredPositions(o.ids.length, o.stride);
  mkdirSync(o.work, { recursive: true });
  const tag = `${o.ids.length}x${o.stride}`;
  const gguf = async (ftype: LlamaCppFtype | 'F16'): Promise<string> => {
    const path = o.prebuilt?.[ftype] ?? join(o.work, `${ftype}.gguf`);
    if (!existsSync(path)) {
      log(`writing the ${ftype} GGUF`);
      writeGgufFromHf(o.llm, path, { ftype });
    }
    return path;
  };

  const refFile = join(o.work, `reference-${o.reference}-${tag}.f32`);
  let ref: Float32Array;
  if (existsSync(refFile)) ref = new Float32Array(new Uint8Array(readFileSync(refFile)).buffer);
  else {
    log(`reference (${o.reference}): the float model at ${positions.length} positions of a ${o.ids.length}-token prompt`);
    if (o.reference === 'ours') ref = await ourLogits(o.llm, o.ids, positions, o.threads);
    else {
      if (!o.llamaCppDir) throw new Error('the llama.cpp-f16 reference needs llama.cpp');
      const path = await gguf('F16');
      ref = logOf(await llamaCppProbabilities(o.llamaCppDir, path, o.ids, positions, V, o.threads));
      if (!o.keep && !o.llamacpp.includes('F16') && !o.prebuilt?.F16) rmSync(path, { force: true });
    }
    writeFileSync(`${refFile}.partial`, new Uint8Array(ref.buffer, ref.byteOffset, ref.byteLength));
    renameSync(`${refFile}.partial`, refFile);
  }
  if (ref.length !== positions.length * V) throw new Error(`${refFile}: ${ref.length} values, expected ${positions.length} x ${V}`);

  const measured = [...o.ours, ...o.llamacpp.filter((f) => f !== 'F16')];
  const errs = measured.length ? await weightErrorReport(o.llm, formatsByName(measured), { rowsPerMatrix: o.rows ?? 64 }) : undefined;
  const errOf = (name: string) => errs?.formats.find((f) => f.format === name);
  const rows: QualityRow[] = [];
  const result = async (name: string, stack: QualityRow['stack'], measure: () => Promise<Drift>): Promise<void> => {
    const file = join(o.work, `drift-${name}-vs-${o.reference}-${tag}.json`);
    let drift: Drift;
    if (existsSync(file)) drift = JSON.parse(readFileSync(file, 'utf8')) as Drift;
    else {
      log(`measuring ${name} (${stack})`);
      drift = await measure();
      writeFileSync(file, `${JSON.stringify(drift)}\n`);
    }
    const e = name === 'F16' ? { bitsPerWeight: 16, relRms: null } : errOf(name);
    rows.push({ format: name, stack, bits_per_weight: e?.bitsPerWeight ?? null, rel_rms: e?.relRms ?? null, drift });
  };
  for (const name of o.ours) {
    await result(name, 'ours', async () => {
      const dir = o.prebuilt?.[name] ?? join(o.work, name);
      if (!existsSync(dir)) {
        log(`quantizing to ${name}`);
        await quantizeLlm({ llm: o.llm, out: dir, ...nbitsOptions(name) });
      }
      const d = distributionDrift(ref, await ourLogits(dir, o.ids, positions, o.threads), V, 'logits');
      if (!o.keep && !o.prebuilt?.[name]) rmSync(dir, { recursive: true, force: true });
      return d;
    });
  }
  if (o.llamaCppDir) {
    for (const ftype of o.llamacpp) {
      await result(ftype, 'llama.cpp', async () => {
        const path = await gguf(ftype);
        const d = distributionDrift(ref, await llamaCppProbabilities(o.llamaCppDir!, path, o.ids, positions, V, o.threads), V, 'probabilities');
        if (!o.keep && !o.prebuilt?.[ftype]) rmSync(path, { force: true });
        return d;
      });
    }
  }
  return rows;
}

export function qualityTable(rows: readonly QualityRow[]): string {
  const e = (x: number | null, d = 3) => (x === null ? '-' : x.toExponential(d - 1));
  const lines = ['| format | run by | bits/weight | weights\' relative RMS error | mean KL | max KL | top-1 agreement |', '| --- | --- | --- | --- | --- | --- | --- |'];
  for (const r of rows) {
    lines.push(`| ${r.format} | ${r.stack} | ${r.bits_per_weight === null ? '-' : r.bits_per_weight.toFixed(3)} | ${e(r.rel_rms)} | ${e(r.drift.meanKl)} | ${e(r.drift.maxKl)} | ${(100 * r.drift.top1Agreement).toFixed(1)}% |`);
  }
  return lines.join('\n');
}

const isMain = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  // node dist/bench/format-quality.js --llm HF_DIR --work DIR [--stride 8] [--threads 2] [--rows 64]
  //   [--ours q4-b32-zp,...] [--llamacpp Q4_0,Q4_K_M,Q8_0,F16] [--reference ours|llama.cpp-f16]
  //   [--keep] [--cache BENCH_CACHE] [--json]
  const { values } = parseArgs({
    options: {
      llm: { type: 'string' }, work: { type: 'string' }, stride: { type: 'string', default: '8' }, threads: { type: 'string', default: '2' },
      rows: { type: 'string', default: '64' }, ours: { type: 'string', default: 'q4-b32-zp,q4-b32-sym,q4-b64-zp,q4-b64-sym,q4-b128-zp,q4-b128-sym,q8-b32-zp' },
      llamacpp: { type: 'string', default: 'F16,Q4_0,Q4_K_M,Q8_0' }, cache: { type: 'string', default: process.env.MGLLAVA_BENCH_CACHE ?? join(tmpdir(), 'mgllava-bench') },
      reference: { type: 'string', default: 'ours' }, keep: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  if (values.reference !== 'ours' && values.reference !== 'llama.cpp-f16') {
    process.stderr.write('--reference: ours or llama.cpp-f16\n');
    process.exit(2);
  }
  if (!values.llm || !values.work) {
    process.stderr.write('usage: node dist/bench/format-quality.js --llm HF_DIR --work DIR [--stride 8] [--threads 2] [--ours LIST] [--llamacpp LIST] [--reference ours|llama.cpp-f16] [--keep] [--json]\n');
    process.exit(2);
  }
  const { config } = readLlmFolderConfig(values.llm);
  const setup = setupLlamaCpp(values.cache, (m) => process.stderr.write(`${m}\n`));
  if (!setup.ok) process.stderr.write(`llama.cpp rows skipped: ${setup.reason}\n`);
  const rows = await formatQuality({
    llm: values.llm, work: values.work, llamaCppDir: setup.ok ? setup.dir : undefined,
    ours: values.ours.split(',').filter(Boolean), llamacpp: values.llamacpp.split(',').filter(Boolean) as (LlamaCppFtype | 'F16')[],
    reference: values.reference, keep: values.keep,
    stride: Number(values.stride), threads: Number(values.threads), rows: Number(values.rows),
    ids: promptIds(promptLayout(PRESETS.full.workload, config.vocabSize), config.vocabSize),
    log: (m) => process.stderr.write(`${m}\n`),
  });
  process.stdout.write(values.json ? `${JSON.stringify(rows)}\n` : `${qualityTable(rows)}\n`);
}
