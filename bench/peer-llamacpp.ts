// The llama.cpp peer through node-llama-cpp, pinned. It is not a dependency of the project (its
// optional packages would bring CUDA builds into every `npm ci`): the bench installs it once into
// its cache folder, without install scripts and without optional packages, and loads the prebuilt
// CPU binary from @node-llama-cpp/linux-x64. Loading is set to never build, never download and
// never use a GPU.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Workload } from './presets.js';
import { LlmTimes, peakRssBytes, seconds } from './measure-ours.js';
import { promptIds, promptLayout } from './workload.js';

export const NODE_LLAMA_CPP_VERSION = '3.21.1';
/** The one prebuilt-binary package installed; other platforms report the peer as skipped. */
const PLATFORM_PACKAGE = '@node-llama-cpp/linux-x64';

/** Environment that keeps node-llama-cpp from looking for GPUs, building or downloading. */
export const LLAMA_ENV = { NODE_LLAMA_CPP_GPU: 'false', NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true', NODE_LLAMA_CPP_POSTINSTALL: 'skip' };

export type Setup = { ok: true; dir: string } | { ok: false; reason: string };

/** Installs node-llama-cpp into `<cache>/node-llama-cpp-<version>` once; says why not where it cannot. */
export function setupLlamaCpp(cache: string, log: (m: string) => void): Setup {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return { ok: false, reason: `no prebuilt CPU binary installed for ${process.platform}-${process.arch} (the bench installs ${PLATFORM_PACKAGE} only)` };
  }
  const dir = join(cache, `node-llama-cpp-${NODE_LLAMA_CPP_VERSION}`);
  const pkg = join(dir, 'node_modules', 'node-llama-cpp', 'package.json');
  const installed = () => existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version === NODE_LLAMA_CPP_VERSION
    && existsSync(join(dir, 'node_modules', ...PLATFORM_PACKAGE.split('/'), 'package.json'));
  if (!installed()) {
    log(`installing node-llama-cpp ${NODE_LLAMA_CPP_VERSION} into ${dir} (once)`);
    mkdirSync(dir, { recursive: true });
    try {
      execFileSync('npm', ['install', '--prefix', dir, '--no-save', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund',
        `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`, `${PLATFORM_PACKAGE}@${NODE_LLAMA_CPP_VERSION}`],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...LLAMA_ENV }, timeout: 600_000 });
    } catch (e) {
      const err = (e as { stderr?: Buffer }).stderr?.toString().trim().split('\n').pop();
      return { ok: false, reason: `npm could not install node-llama-cpp@${NODE_LLAMA_CPP_VERSION} (${err ?? (e as Error).message})` };
    }
    if (!installed()) return { ok: false, reason: `node-llama-cpp@${NODE_LLAMA_CPP_VERSION} did not install into ${dir}` };
  }
  return { ok: true, dir };
}

export interface LlamaCppTimes extends LlmTimes {
  flash_attention: boolean;
  build: string;
}

/* The parts of node-llama-cpp's API used here (it is not a dependency, so no types at compile time). */
interface Sequence { evaluate(tokens: number[], o: Record<string, unknown>): AsyncGenerator<number, void, void> }
interface Context { getSequence(): Sequence; dispose(): Promise<void> }
interface Model { createContext(o: Record<string, unknown>): Promise<Context>; dispose(): Promise<void>; tokens: { bos: number | null } }
interface Llama {
  loadModel(o: Record<string, unknown>): Promise<Model>;
  dispose(): Promise<void>;
  readonly buildType: string;
  readonly gpu: string | false;
  readonly llamaCppRelease: { release: string };
}
interface NodeLlamaCpp {
  getLlama(o: Record<string, unknown>): Promise<Llama>;
  LlamaLogLevel: Record<string, string>;
}

/**
 * Loads the GGUF on the CPU with `threads` threads, prefills the prompt's token ids (same
 * length and layout as ours) and decodes greedily, like measureOursLlm.
 */
export async function measureLlamaCpp(dir: string, gguf: string, vocab: number, threads: number, w: Workload, flashAttention: boolean): Promise<LlamaCppTimes> {
  Object.assign(process.env, LLAMA_ENV);
  const lib = (await import(pathToFileURL(join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href)) as NodeLlamaCpp;
  const llama = await lib.getLlama({
    gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
    logLevel: lib.LlamaLogLevel.error, maxThreads: threads,
  });
  if (llama.buildType !== 'prebuilt' || llama.gpu !== false) throw new Error(`node-llama-cpp loaded a ${llama.buildType} ${llama.gpu || 'cpu'} binary, expected the prebuilt CPU one`);
  const ids = promptIds(promptLayout(w, vocab), vocab);
  const contextSize = Math.ceil((ids.length + w.decodeTokens + 1) / 256) * 256;
  let t0 = performance.now();
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0, useMmap: true });
  const ctx = await model.createContext({ contextSize, batchSize: contextSize, threads, flashAttention, sequences: 1 });
  const load = seconds(t0);
  // Greedy (temperature 0, node-llama-cpp's default); an end-of-generation token does not stop it.
  const it = ctx.getSequence().evaluate(ids, { temperature: 0, yieldEogToken: true });
  // The first token comes out of the prefill of the whole prompt (plus one sampling step).
  t0 = performance.now();
  await it.next();
  const ttft = seconds(t0);
  t0 = performance.now();
  let n = 0;
  while (n < w.decodeTokens && !(await it.next()).done) n++;
  const decode = seconds(t0);
  await it.return();
  await ctx.dispose();
  await model.dispose();
  const build = `llama.cpp ${llama.llamaCppRelease.release} (${llama.buildType} CPU binary)`;
  await llama.dispose();
  if (n < w.decodeTokens) throw new Error(`llama.cpp stopped after ${n} of ${w.decodeTokens} tokens`);
  return {
    flash_attention: flashAttention, build,
    load_s: load, prompt_tokens: ids.length, prefill_s: ttft, prefill_tps: ids.length / ttft, ttft_s: ttft,
    decode_tokens: n, decode_s: decode, decode_tps: n / decode, peak_rss_bytes: peakRssBytes(),
  };
}
