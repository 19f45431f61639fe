// `mgllava quantize`: an LLM folder (with an MG-LLaVA checkpoint's fine-tuned llm.* weights over
// it) -> a 4-bit or 8-bit copy that `chat --llm`, loadModel and CausalLM.load read directly;
// with --report, the error each weight format (ours and llama.cpp's) would give its weights.

import { quantizeLlm } from '../model/llm/quantize.js';
import { NBits } from '../weights/nbits.js';
import { Progress } from './progress.js';
import { InputError } from '../core/errors.js';
import { WeightFormat, allFormats, formatsByName } from '../quant/formats.js';
import { weightErrorReport } from '../quant/error-report.js';

export interface QuantizeArgs {
  llm: string;
  checkpoint?: string;
  out: string;
  bits: NBits;
  blockSize: number;
  symmetric?: boolean;
  headBits?: NBits;
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
      headBits: a.headBits,
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

export interface QuantizeReportArgs {
  llm: string;
  checkpoint?: string;
  formats?: string;
  rows: number;
  json?: boolean;
  quiet?: boolean;
}

/** `mgllava quantize --report`: each format's error on the folder's weights, as a table or JSON. */
export async function runQuantizeReport(a: QuantizeReportArgs): Promise<void> {
  let formats: WeightFormat[];
  try {
    formats = a.formats ? formatsByName(a.formats.split(',').map((s) => s.trim()).filter(Boolean)) : allFormats();
  } catch (e) {
    throw new InputError(`--formats: ${(e as Error).message}`, '--formats');
  }
  const progress = new Progress(!a.quiet);
  const bar = progress.bar(`measuring ${formats.length} formats`);
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  try {
    const r = await weightErrorReport(a.llm, formats, { checkpoint: a.checkpoint, rowsPerMatrix: a.rows, signal: ac.signal, onProgress: (d, t, k) => bar.update(d, t, k) });
    bar.end(true);
    if (a.json) {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      return;
    }
    const sampled = r.rowsPerMatrix ? `, ${r.rowsPerMatrix} evenly spaced rows of each` : '';
    process.stdout.write(`${r.llm}: ${r.matrices} matrices, ${(r.weights / 1e6).toFixed(1)} M weights${sampled}\n\n`);
    process.stdout.write('| format | storage types | bits/weight | relative RMS error | worst matrix |\n| --- | --- | --- | --- | --- |\n');
    for (const f of r.formats) {
      process.stdout.write(`| ${f.format} | ${f.types.join(', ')} | ${f.bitsPerWeight.toFixed(3)} | ${f.relRms.toExponential(3)} | ${f.worst.relRms.toExponential(2)} ${f.worst.key} |\n`);
    }
  } catch (e) {
    bar.end(false);
    throw e;
  } finally {
    process.off('SIGINT', stop);
  }
}
