// Gradient checks against central finite differences: a graph's output y is reduced to the
// scalar loss = sum(y * R) with a fixed random R, the backward pass is appended, and each
// gradient is compared with (loss(x + eps v) - loss(x - eps v)) / (2 eps) along random
// directions v (the directional derivative <grad, v>), run on onnxruntime in float32.

import assert from 'node:assert/strict';
import { Graph, Value } from '../../src/graph/graph.js';
import { appendBackward } from '../../src/graph/autodiff.js';
import { Session, Feed } from '../../src/runtime/session.js';
import { seededRandom } from '../../src/generate/sampling.js';

export interface GradInput {
  name: string;
  dims: number[];
  /** Values in (0.5, 1.5) instead of (-1, 1) (for log, sqrt, division...). */
  positive?: boolean;
  /** A fixed feed that gets no gradient (indices, masks). */
  fixed?: Feed;
}

export interface GradCheckOptions {
  seed?: number;
  eps?: number;
  /** Allowed relative error of each directional derivative (default 2e-2). */
  tol?: number;
  directions?: number;
  /** The forward output is already a scalar loss: use it as it is. */
  scalarOutput?: boolean;
}

/**
 * Builds `build(g, inputs)` -> y, appends the backward pass of sum(y * R) with respect to every
 * non-fixed input, and checks each gradient; returns the worst relative error.
 */
export async function gradCheck(
  name: string,
  inputs: GradInput[],
  build: (g: Graph, x: Record<string, Value>) => Value,
  o: GradCheckOptions = {},
): Promise<number> {
  // A deterministic generator (mulberry32) so that failures reproduce.
  const rand = seededRandom(o.seed ?? 1);
  const g = new Graph(name);
  const vals: Record<string, Value> = {};
  const feeds: Record<string, Feed> = {};
  for (const i of inputs) {
    const dtype = i.fixed && !(i.fixed.data instanceof Float32Array) ? (i.fixed.data instanceof BigInt64Array ? 'I64' : 'I32') : 'F32';
    vals[i.name] = g.input(i.name, dtype, i.dims);
    if (i.fixed) feeds[i.name] = i.fixed;
    else {
      const n = i.dims.reduce((a, b) => a * b, 1);
      feeds[i.name] = { dims: i.dims, data: Float32Array.from({ length: n }, () => (i.positive ? 0.5 + rand() : 2 * rand() - 1)) };
    }
  }
  const y = build(g, vals);
  let loss = y;
  if (!o.scalarOutput) {
    // R has y's shape: a run of the forward alone tells it.
    const probe = new Graph(`${name}_probe`);
    const pv: Record<string, Value> = {};
    for (const i of inputs) pv[i.name] = probe.input(i.name, vals[i.name] === undefined ? 'F32' : (feeds[i.name]!.data instanceof Float32Array ? 'F32' : feeds[i.name]!.data instanceof BigInt64Array ? 'I64' : 'I32'), i.dims);
    probe.output(build(probe, pv), 'y');
    const ps = await Session.fromGraph(probe);
    const yDims = (await ps.run(feeds)).y!.dims;
    await ps.release();
    const nY = yDims.reduce((a, b) => a * b, 1);
    const R = g.constF32(Float32Array.from({ length: nY }, () => 2 * rand() - 1), yDims, 'R');
    loss = g.op1('ReduceSum', [g.op1('Mul', [y, R])], { keepdims: 0 }, { name: 'loss' });
  }
  g.output(loss, 'loss', 'F32', []);
  const wrt = inputs.filter((i) => !i.fixed).map((i) => vals[i.name]!);
  appendBackward(g, loss, wrt);
  const s = await Session.fromGraph(g);
  try {
    const base = await s.run(feeds);
    const eps = o.eps ?? 1e-3;
    let worst = 0;
    for (const i of inputs.filter((x) => !x.fixed)) {
      const grad = base[`grad.${i.name}`]!;
      assert.deepEqual([...grad.dims], i.dims, `${name}: grad.${i.name} has dims [${grad.dims}], expected [${i.dims}]`);
      const x = feeds[i.name]!.data as Float32Array;
      for (let d = 0; d < (o.directions ?? 3); d++) {
        const v = Float32Array.from(x, () => 2 * rand() - 1);
        const at = async (sign: number) => {
          const xs = Float32Array.from(x, (xv, k) => xv + sign * eps * v[k]!);
          return (await s.run({ ...feeds, [i.name]: { dims: i.dims, data: xs } }, ['loss'])).loss!.data[0]!;
        };
        const fd = ((await at(1)) - (await at(-1))) / (2 * eps);
        let an = 0;
        let scale = 0;
        for (let k = 0; k < x.length; k++) {
          an += grad.data[k]! * v[k]!;
          scale += Math.abs(grad.data[k]! * v[k]!);
        }
        const err = Math.abs(fd - an) / Math.max(Math.abs(an), scale * 1e-2, 1e-6);
        worst = Math.max(worst, err);
        assert.ok(err < (o.tol ?? 2e-2), `${name}: d/d${i.name} along direction ${d}: analytic ${an}, finite differences ${fd} (relative error ${err})`);
      }
    }
    return worst;
  } finally {
    await s.release();
  }
}
