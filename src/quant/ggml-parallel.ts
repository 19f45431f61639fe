// ggml block quantization on several cores, with a synchronous call: the k-quants' trial fits cost
// ~0.5 us per weight in JavaScript, so a 7B model's Q4_K_M GGUF takes most of an hour on one core.
// The input is split into runs of whole blocks; the calling thread does the first, worker threads
// (kept between calls) the others through shared memory, and the caller waits on each worker's
// flag (Atomics.wait), so writers that pull one tensor at a time stay synchronous.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { GGML_BLOCK, quantizeGgml, type GgmlBlockType } from './ggml-blocks.js';
import type { GgmlJob } from './ggml-worker.js';

export class GgmlPool {
  private readonly workers: Worker[] = [];

  /** `threads` in all, the calling one included (default: one per core). */
  constructor(readonly threads = availableParallelism()) {
    if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
    for (let i = 1; i < threads; i++) {
      const w = new Worker(new URL('./ggml-worker.js', import.meta.url));
      w.unref(); // idle workers do not keep the process alive
      this.workers.push(w);
    }
  }

  /** The same bytes as quantizeGgml(t, x). */
  quantize(t: GgmlBlockType, x: Float32Array): Uint8Array {
    const { values, bytes } = GGML_BLOCK[t];
    if (x.length % values !== 0) throw new RangeError(`${t}: ${x.length} values is not a whole number of ${values}-value blocks`);
    const blocks = x.length / values;
    const parts = Math.min(this.threads, Math.max(1, Math.floor(blocks / 64)));
    if (parts === 1) return quantizeGgml(t, x);
    const input = new SharedArrayBuffer(x.length * 4);
    new Float32Array(input).set(x);
    const output = new SharedArrayBuffer(blocks * bytes);
    const per = Math.ceil(blocks / parts);
    const flags: Int32Array[] = [];
    for (let p = 1; p < parts; p++) {
      const b0 = p * per;
      const b1 = Math.min(blocks, b0 + per);
      const flag = new SharedArrayBuffer(4);
      flags.push(new Int32Array(flag));
      const job: GgmlJob = { type: t, input, inOffset: b0 * values, inLength: (b1 - b0) * values, output, outOffset: b0 * bytes, flag };
      this.workers[p - 1]!.postMessage(job);
    }
    new Uint8Array(output, 0, per * bytes).set(quantizeGgml(t, new Float32Array(input, 0, per * values)));
    for (const f of flags) {
      while (Atomics.load(f, 0) === 0) Atomics.wait(f, 0, 0);
      if (f[0] === 2) throw new Error(`${t}: a quantizing worker failed`);
    }
    return new Uint8Array(output).slice();
  }

  close(): void {
    for (const w of this.workers) void w.terminate();
    this.workers.length = 0;
  }
}
