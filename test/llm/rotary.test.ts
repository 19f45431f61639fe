// The rotary embedding (onnxruntime's RotaryEmbedding on tables built in the graph) against HF's apply_rotary_pos_emb written out in
// float64: rotate_half (non-interleaved) on the first rotaryDim dims of each head, the rest
// passed through, positions P..P+S-1.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { Session } from '../../src/runtime/session.js';
import { LlmConfig } from '../../src/model/llm/config.js';
import { applyRotary, ropeInvFreq, rotaryTables } from '../../src/model/llm/decoder.js';
import { relErr } from '../helpers/fixtures.js';

function hfRotary(x: Float32Array, S: number, heads: number, headDim: number, rotaryDim: number, theta: number, P: number): Float64Array {
  const out = Float64Array.from(x);
  const half = rotaryDim / 2;
  for (let s = 0; s < S; s++) {
    for (let h = 0; h < heads; h++) {
      const o = (s * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const f = (P + s) / Math.pow(theta, (2 * i) / rotaryDim);
        const x1 = x[o + i]!;
        const x2 = x[o + i + half]!;
        out[o + i] = x1 * Math.cos(f) - x2 * Math.sin(f);
        out[o + i + half] = x2 * Math.cos(f) + x1 * Math.sin(f);
      }
    }
  }
  return out;
}

for (const [headDim, rotaryDim, theta] of [[8, 8, 10000], [16, 8, 10000], [8, 8, 500000], [32, 24, 1e6]] as const) {
  test(`rotary: head_dim ${headDim}, rotary dims ${rotaryDim}, theta ${theta}`, async () => {
    const heads = 3;
    const c = { headDim, rotaryDim, ropeTheta: theta, maxPositions: 4096 } as LlmConfig;
    const g = new Graph('rope');
    const x = g.input('x', 'F32', [1, 'S', heads * headDim]);
    const P = g.input('P', 'I64', [1]);
    g.output(applyRotary(g, x, heads, c, rotaryTables(g, c), P, 'rope'), 'y');
    const session = await Session.create('rope', g.serialize().bytes);
    try {
      for (const [P0, len] of [[0, 5], [700, 3], [4000, 1]] as const) {
        const data = Float32Array.from({ length: len * heads * headDim }, (_, i) => Math.sin(0.7 * i + 0.3) * 2);
        const out = await session.run({ x: { dims: [1, len, heads * headDim], data }, P: { dims: [1], data: BigInt64Array.of(BigInt(P0)) } });
        const ref = hfRotary(data, len, heads, headDim, rotaryDim, theta, P0);
        const e = relErr(out.y!.data, ref);
        // float32 angles at position ~4000 carry ~1e-4 absolute error, as in HF's own float32 path
        assert.ok(e < (P0 > 1000 ? 1e-3 : 1e-5), `P=${P0}: relative error ${e}`);
        for (let s = 0; s < len; s++) {
          for (let h = 0; h < heads; h++) {
            for (let d = rotaryDim; d < headDim; d++) {
              const i = (s * heads + h) * headDim + d;
              assert.equal(out.y!.data[i], data[i], 'unrotated dims pass through unchanged');
            }
          }
        }
      }
    } finally {
      await session.release();
    }
  });
}

test('inverse frequencies are float32 values of 1 / theta^(2i/d)', () => {
  const f = ropeInvFreq(10000, 8);
  assert.deepEqual(Array.from(f), [1, 0.10000000149011612, 0.009999999776482582, 0.0010000000474974513]);
});
