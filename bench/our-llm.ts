// Which form of the LLM our side runs: the one place to change when the LLM gains a new weight
// format. Default (`q4`): the 4-bit folder `mgllava quantize --symmetric` writes (MatMulNBits,
// block 32, a scale per block and values offset by 8: the information llama.cpp's Q4_0 holds, so
// both sides run the same quantization), made once from the bf16 folder into the cache. `q4-zp`:
// quantize's default, with a zero point per block (more accurate; decode measured ~15% slower).
// `float`: the bf16 folder itself (onnxruntime upcasts the matrices to float32 once at load),
// where it fits in memory.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import { quantizeLlm } from '../src/model/llm/quantize.js';
import type { BenchModel } from './presets.js';
import { llmParams } from './llm-files.js';

export type LlmFormat = 'q4' | 'q4-zp' | 'float';
export const LLM_FORMATS: readonly LlmFormat[] = ['q4', 'q4-zp', 'float'];

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
  const format = o.llmFormat ?? 'q4';
  if (format === 'q4' || format === 'q4-zp') {
    const symmetric = format === 'q4';
    const out = join(outDir, `${m.name}-q4-b32${symmetric ? '-sym' : ''}`);
    if (!existsSync(out)) {
      o.log(`quantizing the LLM to 4 bits with mgllava quantize's code into ${out} (once)`);
      let last = 0;
      await quantizeLlm({
        llm: hfFolder, out, bits: 4, blockSize: 32, symmetric,
        onProgress: (done, total) => {
          if (done === total || performance.now() - last > 30_000) { o.log(`  ${done}/${total} tensors`); last = performance.now(); }
        },
      });
    }
    const kind = symmetric ? 'a scale per block, values offset by 8 (mgllava quantize --symmetric; as Q4_0)' : 'with zero points (mgllava quantize)';
    return { folder: out, format: `4-bit MatMulNBits, block 32, ${kind}; embedding table bf16` };
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
