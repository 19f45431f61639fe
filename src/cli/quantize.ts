// `mgllava quantize`: an LLM folder (with an MG-LLaVA checkpoint's fine-tuned llm.* weights over
// it) -> a 4-bit or 8-bit copy that `chat --llm`, loadModel and CausalLM.load read directly.

import { quantizeLlm } from '../model/llm/quantize.js';
import { NBits } from '../weights/nbits.js';
import { Progress } from './progress.js';

export interface QuantizeArgs {
  llm: string;
  checkpoint?: string;
  out: string;
  bits: NBits;
  blockSize: number;
  symmetric?: boolean;
  quiet?: boolean;
}

export async function runQuantize(a: QuantizeArgs): Promise<void> {
  const progress = new Progress(!a.quiet);
  const bar = progress.bar(`quantizing to ${a.bits} bits`);
  // Ctrl-C / kill: stop between tensors so the partial output is removed.
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const r = await quantizeLlm({
      llm: a.llm,
      checkpoint: a.checkpoint,
      out: a.out,
      bits: a.bits,
      blockSize: a.blockSize,
      symmetric: a.symmetric,
      signal: ac.signal,
      onProgress: (done, total, name) => bar.update(done, total, name),
    });
    bar.end(true);
    if (!a.quiet) {
      const mb = (r.bytes / 2 ** 20).toFixed(1);
      const ck = a.checkpoint ? `, ${r.fromCheckpoint} llm.* tensors from ${a.checkpoint}` : '';
      process.stderr.write(`wrote ${r.out}: ${r.tensors} tensors, ${r.quantized} linear weights at ${a.bits} bits, ${mb} MiB${ck}\n`);
    }
  } catch (e) {
    bar.end(false);
    throw e;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
