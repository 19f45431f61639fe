// Which form of the LLM our side runs: the one place to change when the LLM gains a new weight
// format. Default (`q4-b128-zp-h8`): the 4-bit folder `mgllava quantize` writes by default
// (MatMulNBits, block 128, a scale and a zero point per block, the output head at 8 bits), made
// once from the bf16 folder into the cache: the fastest of our formats whose measured next-token
// KL is no worse than llama.cpp's Q4_0 on both shapes (docs/BENCHMARKS.md, "Answer quality per
// weight format"). Any of our formats
// by name, `q{4,8}-b{32,64,128}-{zp,sym}` (`q4` = `q4-b32-sym`, the bench's default until
// 2026-12: the information Q4_0 holds; `q4-zp` = `q4-b32-zp`); their answer quality against
// llama.cpp's: bench/format-quality.ts.
// `float`: the bf16 folder itself (onnxruntime upcasts the matrices to float32 once at load),
// where it fits in memory.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import { quantizeLlm } from '../src/model/llm/quantize.js';
import { NBitsName, parseNBitsName } from '../src/quant/formats.js';
import type { BenchModel } from './presets.js';
import { llmParams } from './llm-files.js';

/** `float`, or one of our MatMulNBits formats by name; `q4` and `q4-zp` are the older names of q4-b32-sym and q4-b32-zp. */
export type LlmFormat = string;
/** What the bench races when no --llm-format is given: mgllava quantize's default. */
export const DEFAULT_LLM_FORMAT = 'q4-b128-zp-h8';
const ALIASES: Record<string, string> = { q4: 'q4-b32-sym', 'q4-zp': 'q4-b32-zp' };

/** The format's quantizer options (undefined: `float`); throws on a name that is neither. */
export function parseLlmFormat(f: LlmFormat): ({ name: string } & NBitsName) | undefined {
  if (f === 'float') return undefined;
  const name = ALIASES[f] ?? f;
  const o = parseNBitsName(name);
  if (!o || ![32, 64, 128].includes(o.blockSize)) throw new Error(`--llm-format must be float, q4, q4-zp or q{4,8}-b{32,64,128}-{zp,sym}[-h8], got ${f}`);
  return { name, ...o };
}

export interface OurLlm {
  /** The folder CausalLM.load reads. */
  folder: string;
  /** How the weights are held, for the report. */
  format: string;
  /** Set when our LLM cannot be measured on this machine; says why. */
  skipped?: string;
}

/** The LLM as our side runs it; derived folders go into `outDir` (a cache folder). */
export async function prepareOurLlm(hfFolder: string, outDir: string, m: BenchModel, o: { llmFormat?: LlmFormat; log: (s: string) => void }): Promise<OurLlm> {
  const q = parseLlmFormat(o.llmFormat ?? DEFAULT_LLM_FORMAT);
  if (q) {
    // (q4-b32-sym and q4-b32-zp keep the folder names they had as q4 and q4-zp)
    const out = join(outDir, `${m.name}-${q.name === 'q4-b32-zp' ? 'q4-b32' : q.name}`);
    if (!existsSync(out)) {
      o.log(`quantizing the LLM to ${q.bits} bits with mgllava quantize's code into ${out} (once)`);
      let last = 0;
      await quantizeLlm({
        llm: hfFolder, out, bits: q.bits, blockSize: q.blockSize, symmetric: q.symmetric, headBits: q.headBits,
        onProgress: (done, total) => {
          if (done === total || performance.now() - last > 30_000) { o.log(`  ${done}/${total} tensors`); last = performance.now(); }
        },
      });
    }
    const kind = q.symmetric ? 'a scale per block, values offset by 8 (mgllava quantize --symmetric; as Q4_0)' : 'with zero points (mgllava quantize)';
    const head = q.headBits !== q.bits ? `, the output head at ${q.headBits} bits` : '';
    return { folder: out, format: `${q.bits}-bit MatMulNBits (${q.name}), block ${q.blockSize}, ${kind}${head}; embedding table bf16` };
  }
  const floatFormat = 'bf16 checkpoint, float32 in onnxruntime';
  // float32 copies of the matrices + the bf16 pages they were folded from.
  const need = llmParams(m.llm) * 6;
  if (need > 0.8 * totalmem()) {
    return {
      folder: hfFolder, format: floatFormat,
      skipped: `the float LLM needs ~${(need / 2 ** 30).toFixed(0)} GiB of memory to load (${(totalmem() / 2 ** 30).toFixed(0)} GiB here); use the 4-bit weights`,
    };
  }
  return { folder: hfFolder, format: floatFormat };
}
