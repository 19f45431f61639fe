// A fused Linear split into parts (Phi-3's qkv_proj and gate_up_proj): quantized, each part is a
// MatMulNBits over its own rows of the stored matrix (LlmParams.linearParts); its outputs must be
// exactly those of the whole product split apart, for 4 and 8 bits, with and without zero
// points, and for float weights.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { Graph } from '../../src/graph/graph.js';
import { Session } from '../../src/runtime/session.js';
import { LlmParams, QWEIGHT, SCALES, ZERO_POINTS } from '../../src/model/llm/quantized.js';
import { NBits, quantizeNBits } from '../../src/weights/nbits.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { writeSafetensors } from '../../src/weights/write-safetensors.js';
import { tempDir } from '../weights/torch-builders.js';

const K = 96;
const PARTS = [64, 32, 32];
const N = PARTS.reduce((a, b) => a + b, 0);
const tmp = tempDir();
after(() => rmSync(tmp, { recursive: true, force: true }));

const w = new Float32Array(N * K).map((_, i) => Math.sin(i * 0.71) * 0.05 + Math.cos(i * 0.013) * 0.02);
const bytes = (a: Float32Array | Uint8Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function store(bits: NBits | 0, symmetric: boolean): SafetensorsStore {
  const file = join(tmp, `m-${bits}-${symmetric}.safetensors`);
  if (bits === 0) {
    writeSafetensors(file, [{ name: 'm.weight', dtype: 'F32', shape: [N, K], data: bytes(w) }]);
  } else {
    const q = quantizeNBits(w, N, K, { bits, blockSize: 32, symmetric });
    const t = [
      { name: `m.weight${QWEIGHT}`, dtype: 'U8' as const, shape: [N, K / 32, (32 * bits) / 8], data: q.qweight },
      { name: `m.weight${SCALES}`, dtype: 'F32' as const, shape: [N, K / 32], data: bytes(q.scales) },
    ];
    if (q.zeroPoints) t.push({ name: `m.weight${ZERO_POINTS}`, dtype: 'U8' as const, shape: [N, q.zeroPoints.length / N], data: q.zeroPoints });
    writeSafetensors(file, t);
  }
  return SafetensorsStore.open(file);
}

async function run(bits: NBits | 0, symmetric: boolean): Promise<{ whole: Float32Array[]; parts: Float32Array[] }> {
  const g = new Graph('parts');
  const p = new LlmParams(g, store(bits, symmetric), bits ? { bits, blockSize: 32, accuracyLevel: 4 } : undefined);
  const x = g.input('x', 'F32', [1, 'n', K]);
  const y = p.linear(x, 'm', N, K, false, 'whole');
  const split = g.op('Split', [y, g.constI64(PARTS)], { axis: -1 }, { outputs: PARTS.length, name: 'split' });
  const parts = p.linearParts(x, 'm', PARTS, K, 'parts');
  split.forEach((v, i) => g.output(v, `whole${i}`, 'F32', [1, 'n', PARTS[i]!]));
  parts.forEach((v, i) => g.output(v, `part${i}`, 'F32', [1, 'n', PARTS[i]!]));
  const s = await Session.fromGraph(g, { prepack: true });
  try {
    const out = await s.run({ x: { dims: [1, 5, K], data: new Float32Array(5 * K).map((_, i) => Math.cos(i * 0.29)) } });
    return { whole: PARTS.map((_, i) => out[`whole${i}`]!.data), parts: PARTS.map((_, i) => out[`part${i}`]!.data) };
  } finally {
    await s.release();
  }
}

for (const [bits, symmetric] of [[4, false], [4, true], [8, false], [0, false]] as const) {
  test(`${bits ? `${bits}-bit${symmetric ? ' symmetric' : ''}` : 'float'} fused linear in parts equals the whole product split`, async () => {
    const { whole, parts } = await run(bits, symmetric);
    for (let i = 0; i < PARTS.length; i++) {
      assert.equal(parts[i]!.length, 5 * PARTS[i]!);
      assert.deepEqual(parts[i], whole[i], `part ${i}`);
    }
    assert.ok(whole[0]!.some((v) => v !== 0));
  });
}
