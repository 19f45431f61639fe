// Memory read bandwidth with the benchmark's thread count: onnxruntime's ReduceSum over a 512 MiB
// float32 buffer shaped [64, n/64] (rows split across the intra-op threads). On the development
// machine this reads at the speed of an AVX-512 C loop with OpenMP (27 GB/s with 2 threads at
// the same minute), which a JavaScript loop does not reach.

import { Graph } from '../src/graph/graph.js';
import { Session } from '../src/runtime/session.js';

export interface Bandwidth {
  /** Best of the timed passes, bytes/s. */
  best: number;
  /** Median of the timed passes, bytes/s. */
  median: number;
}

export async function measureBandwidth(threads: number, bytes = 2 ** 29, passes = 5): Promise<Bandwidth> {
  const n = bytes / 4;
  const dims = [64, n / 64];
  const g = new Graph('bandwidth');
  const x = g.input('x', 'F32', dims);
  g.output(g.op1('ReduceSum', [x, g.constI64([1])], { keepdims: 0 }), 'y', 'F32', [64]);
  const session = await Session.create('bandwidth', g.serialize().bytes, { threads });
  try {
    const data = new Float32Array(n).fill(1);
    await session.run({ x: { dims, data } }); // page in, warm up
    const rates: number[] = [];
    for (let i = 0; i < passes; i++) {
      const t0 = performance.now();
      await session.run({ x: { dims, data } });
      rates.push(bytes / ((performance.now() - t0) / 1000));
    }
    rates.sort((a, b) => a - b);
    return { best: rates[rates.length - 1]!, median: rates[Math.floor(rates.length / 2)]! };
  } finally {
    await session.release();
  }
}
