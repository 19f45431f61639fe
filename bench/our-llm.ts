// Which form of the LLM our side runs: the one place to change when the LLM gains a new weight
// format. Default: the 4-bit folder `mgllava quantize` writes (MatMulNBits, block 32, its default
// zero points), made once from the bf16 folder into the cache. With `float`: the bf16 folder
// itself (onnxruntime upcasts the matrices to float32 once at load), where it fits in memory.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import { quantizeLlm } from '../src/model/llm/quantize.js';
import type { BenchModel } from './presets.js';
import { llmParams } from './llm-files.js';

export type LlmFormat = 'q4' | 'float';

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
  if ((o.llmFormat ?? 'q4') === 'q4') {
    const out = join(outDir, `${m.name}-q4-b32`);
    if (!existsSync(out)) {
      o.log(`quantizing the LLM to 4 bits with mgllava quantize's code into ${out} (once)`);
      let last = 0;
      await quantizeLlm({
        llm: hfFolder, out, bits: 4, blockSize: 32,
        onProgress: (done, total) => {
          if (done === total || performance.now() - last > 30_000) { o.log(`  ${done}/${total} tensors`); last = performance.now(); }
        },
      });
    }
    return { folder: out, format: '4-bit MatMulNBits, block 32, with zero points (mgllava quantize); embedding table bf16' };
  }
  const format = 'bf16 checkpoint, float32 in onnxruntime';
  // float32 copies of the matrices + the bf16 pages they were folded from.
  const need = llmParams(m.llm) * 6;
  if (need > 0.8 * totalmem()) {
    return {
      folder: hfFolder, format,
      skipped: `the float LLM needs ~${(need / 2 ** 30).toFixed(0)} GiB of memory to load (${(totalmem() / 2 ** 30).toFixed(0)} GiB here); use the 4-bit weights`,
    };
  }
  return { folder: hfFolder, format };
}
