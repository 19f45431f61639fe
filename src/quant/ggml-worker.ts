// A worker thread of GgmlPool (ggml-parallel.ts): quantizes its slice of the shared input into
// its slice of the shared output, then raises its flag.

import { parentPort } from 'node:worker_threads';
import { quantizeGgml, type GgmlBlockType } from './ggml-blocks.js';

export interface GgmlJob {
  type: GgmlBlockType;
  input: SharedArrayBuffer;
  /** float32 elements */
  inOffset: number;
  inLength: number;
  output: SharedArrayBuffer;
  /** bytes */
  outOffset: number;
  /** Int32Array [1]: 0 while running, 1 done, 2 failed */
  flag: SharedArrayBuffer;
}

parentPort?.on('message', (job: GgmlJob) => {
  const flag = new Int32Array(job.flag);
  try {
    const q = quantizeGgml(job.type, new Float32Array(job.input, job.inOffset * 4, job.inLength));
    new Uint8Array(job.output, job.outOffset, q.length).set(q);
    Atomics.store(flag, 0, 1);
  } catch {
    Atomics.store(flag, 0, 2);
  }
  Atomics.notify(flag, 0);
});
