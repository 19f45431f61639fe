// Every VJP rule of src/graph/vjp-*.ts against central finite differences on random shapes
// (test/helpers/gradcheck.ts), plus the pass's own behaviour: gradients summed over every use of
// a value, zero gradients for inputs the loss does not reach, an op without a rule named.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, MS_DOMAIN } from '../../src/graph/graph.js';
import { appendBackward } from '../../src/graph/autodiff.js';
import { gelu, layerNorm, linear, matMulNBits, quickGelu, resizeBilinear, rmsNorm } from '../../src/graph/blocks.js';
import { quantizeNBits } from '../../src/weights/nbits.js';
import { Session } from '../../src/runtime/session.js';
import { gradCheck } from '../helpers/gradcheck.js';

const i64 = (values: number[], dims = [values.length]) => ({ dims, data: BigInt64Array.from(values.map(BigInt)) });

test('elementwise arithmetic with broadcasting', async () => {
  await gradCheck('add', [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [4] }], (g, x) => g.op1('Add', [x.a!, x.b!]));
  await gradCheck('sub', [{ name: 'a', dims: [2, 1, 4] }, { name: 'b', dims: [3, 1] }], (g, x) => g.op1('Sub', [x.a!, x.b!]));
  await gradCheck('mul', [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [2, 1, 4] }], (g, x) => g.op1('Mul', [x.a!, x.b!]));
  await gradCheck('div', [{ name: 'a', dims: [3, 4] }, { name: 'b', dims: [3, 1], positive: true }], (g, x) => g.op1('Div', [x.a!, x.b!]));
  await gradCheck('pow', [{ name: 'a', dims: [5], positive: true }], (g, x) => g.op1('Pow', [x.a!, g.constF32([2.5], [])]));
  await gradCheck('where', [{ name: 'a', dims: [2, 3] }, { name: 'b', dims: [3] }], (g, x) => g.op1('Where', [g.op1('Greater', [x.a!, g.constF32([0], [])]), x.a!, x.b!]));
});

test('unary functions: exp, log, sqrt, reciprocal, neg, tanh, sigmoid, erf, sin, cos', async () => {
  for (const op of ['Exp', 'Log', 'Sqrt', 'Reciprocal', 'Neg', 'Tanh', 'Sigmoid', 'Erf', 'Sin', 'Cos']) {
    const positive = ['Log', 'Sqrt', 'Reciprocal'].includes(op);
    await gradCheck(op, [{ name: 'x', dims: [3, 5], positive }], (g, x) => g.op1(op, [x.x!]));
  }
});

test('GELU (exact and tanh), quick GELU, SiLU', async () => {
  await gradCheck('gelu', [{ name: 'x', dims: [4, 6] }], (g, x) => gelu(g, g.op1('Mul', [x.x!, g.constF32([3], [])])));
  await gradCheck('gelu_tanh', [{ name: 'x', dims: [4, 6] }], (g, x) => g.op1('Gelu', [g.op1('Mul', [x.x!, g.constF32([3], [])])], { approximate: 'tanh' }));
  await gradCheck('quick_gelu', [{ name: 'x', dims: [4, 6] }], (g, x) => quickGelu(g, x.x!));
  await gradCheck('silu', [{ name: 'x', dims: [4, 6] }], (g, x) => g.op1('Mul', [x.x!, g.op1('Sigmoid', [x.x!])]));
});

test('MatMul, FusedMatMul (transposes, alpha, batch broadcast), Gemm, linear', async () => {
  await gradCheck('matmul', [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [4, 5] }], (g, x) => g.op1('MatMul', [x.a!, x.b!]));
  await gradCheck('matmul_batch', [{ name: 'a', dims: [2, 3, 3, 4] }, { name: 'b', dims: [3, 4, 2] }], (g, x) => g.op1('MatMul', [x.a!, x.b!]));
  for (const [ta, tb] of [[0, 0], [1, 0], [0, 1], [1, 1]] as const) {
    await gradCheck(`fused_${ta}${tb}`, [{ name: 'a', dims: ta ? [2, 4, 3] : [2, 3, 4] }, { name: 'b', dims: tb ? [2, 5, 4] : [2, 4, 5] }],
      (g, x) => g.op1('FusedMatMul', [x.a!, x.b!], { transA: ta, transB: tb, alpha: { float: 0.7 } }, { domain: MS_DOMAIN }));
  }
  await gradCheck('linear_3d', [{ name: 'x', dims: [2, 3, 4] }, { name: 'w', dims: [5, 4] }, { name: 'b', dims: [5] }], (g, x) => linear(g, x.x!, x.w!, x.b!));
  await gradCheck('gemm', [{ name: 'a', dims: [4, 3] }, { name: 'b', dims: [5, 4] }, { name: 'c', dims: [5] }],
    (g, x) => g.op1('Gemm', [x.a!, x.b!, x.c!], { transA: 1, transB: 1, alpha: { float: 1.5 }, beta: { float: 0.5 } }));
});

test('Conv: 1x1, depthwise 7x7 padded, strided 2x2/2 and 4x4/4, with a remainder row', async () => {
  const conv = (s: number, p: number, groups = 1) => (g: Graph, x: Record<string, { name: string }>) =>
    g.op1('Conv', [x.x!, x.w!, x.b!], { strides: [s, s], pads: [p, p, p, p], group: groups });
  await gradCheck('conv1x1', [{ name: 'x', dims: [2, 3, 4, 4] }, { name: 'w', dims: [5, 3, 1, 1] }, { name: 'b', dims: [5] }], conv(1, 0));
  await gradCheck('dw7x7', [{ name: 'x', dims: [2, 4, 6, 6] }, { name: 'w', dims: [4, 1, 7, 7] }, { name: 'b', dims: [4] }], conv(1, 3, 4));
  await gradCheck('conv2x2s2', [{ name: 'x', dims: [1, 3, 6, 6] }, { name: 'w', dims: [4, 3, 2, 2] }, { name: 'b', dims: [4] }], conv(2, 0));
  await gradCheck('conv4x4s4', [{ name: 'x', dims: [2, 3, 8, 8] }, { name: 'w', dims: [2, 3, 4, 4] }, { name: 'b', dims: [2] }], conv(4, 0));
  await gradCheck('conv3x3s2_rem', [{ name: 'x', dims: [1, 2, 7, 6] }, { name: 'w', dims: [3, 2, 3, 3] }, { name: 'b', dims: [3] }], conv(2, 1));
});

test('Softmax, LayerNormalization, RMSNorm', async () => {
  await gradCheck('softmax', [{ name: 'x', dims: [2, 3, 5] }], (g, x) => g.op1('Softmax', [x.x!], { axis: -1 }));
  await gradCheck('softmax_axis1', [{ name: 'x', dims: [2, 3, 5] }], (g, x) => g.op1('Softmax', [x.x!], { axis: 1 }));
  await gradCheck('layernorm', [{ name: 'x', dims: [2, 3, 6] }, { name: 'w', dims: [6] }, { name: 'b', dims: [6] }], (g, x) => layerNorm(g, x.x!, x.w!, x.b!, 1e-6));
  await gradCheck('rmsnorm', [{ name: 'x', dims: [2, 3, 6] }, { name: 'w', dims: [6] }], (g, x) => rmsNorm(g, x.x!, x.w!, 1e-5));
});

test('shape ops: Reshape, Transpose, Concat, Slice, Split, Gather, Unsqueeze, Squeeze, Expand, Flatten', async () => {
  await gradCheck('reshape_transpose', [{ name: 'x', dims: [2, 3, 4] }], (g, x) =>
    g.op1('Transpose', [g.op1('Reshape', [x.x!, g.constI64([2, 4, 3])])], { perm: [2, 0, 1] }));
  await gradCheck('concat', [{ name: 'a', dims: [2, 3] }, { name: 'b', dims: [2, 2] }], (g, x) => g.op1('Concat', [x.a!, x.b!, x.a!], { axis: -1 }));
  await gradCheck('slice', [{ name: 'x', dims: [4, 6] }], (g, x) => g.op1('Slice', [x.x!, g.constI64([1, -4]), g.constI64([3, 1000]), g.constI64([0, 1])]));
  await gradCheck('slice_default_axes', [{ name: 'x', dims: [5, 3] }], (g, x) => g.op1('Slice', [x.x!, g.constI64([1]), g.constI64([-1])]));
  await gradCheck('split', [{ name: 'x', dims: [3, 7] }], (g, x) => {
    const [a, , c] = g.op('Split', [x.x!, g.constI64([2, 3, 2])], { axis: 1 }, { outputs: 3 });
    return g.op1('Mul', [a!, c!]); // the middle part gets no gradient
  });
  await gradCheck('gather_repeated', [{ name: 't', dims: [5, 3] }, { name: 'i', dims: [2, 3], fixed: i64([4, 0, 4, 1, -1, 2], [2, 3]) }],
    (g, x) => g.op1('Gather', [x.t!, x.i!], { axis: 0 }));
  await gradCheck('unsqueeze_expand_squeeze', [{ name: 'x', dims: [3, 1] }], (g, x) =>
    g.op1('Squeeze', [g.op1('Expand', [g.op1('Unsqueeze', [x.x!, g.constI64([0])]), g.constI64([2, 3, 4])]), g.constI64([])], {}));
  await gradCheck('flatten', [{ name: 'x', dims: [2, 3, 4] }], (g, x) => g.op1('Flatten', [x.x!], { axis: 2 }));
});

test('ReduceMean, ReduceSum (keepdims on and off), Resize (linear)', async () => {
  await gradCheck('reducemean', [{ name: 'x', dims: [2, 5, 3] }], (g, x) => g.op1('ReduceMean', [x.x!, g.constI64([1])], { keepdims: 1 }));
  await gradCheck('reducesum', [{ name: 'x', dims: [2, 5, 3] }], (g, x) => g.op1('ReduceSum', [x.x!, g.constI64([0, -1])], { keepdims: 0 }));
  await gradCheck('reduce_all', [{ name: 'x', dims: [2, 3] }], (g, x) => g.op1('ReduceMean', [x.x!], { keepdims: 0 }));
  await gradCheck('resize_up', [{ name: 'x', dims: [1, 2, 3, 4] }], (g, x) => resizeBilinear(g, x.x!, 6, 8));
  await gradCheck('resize_down', [{ name: 'x', dims: [1, 2, 8, 6] }], (g, x) => resizeBilinear(g, x.x!, 3, 4));
});

test('MatMulNBits (4 and 8 bits, with and without zero points, K not a multiple of the block): gradient into x', async () => {
  for (const [bits, symmetric, K] of [[4, true, 64], [4, false, 64], [8, false, 48], [8, true, 40]] as const) {
    const N = 5;
    const w = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 0.37) * 0.8);
    const m = quantizeNBits(w, N, K, { bits, blockSize: 16, symmetric });
    await gradCheck(`nbits${bits}${symmetric ? 's' : 'z'}`, [{ name: 'x', dims: [2, 3, K] }], (g, x) => {
      const nb = Math.ceil(K / 16);
      const q = g.initializer('q', 'U8', [N, nb, (16 * bits) / 8], { kind: 'inline', bytes: m.qweight });
      const sc = g.constF32(m.scales, [m.scales.length]);
      const zp = m.zeroPoints ? g.initializer('zp', 'U8', [m.zeroPoints.length], { kind: 'inline', bytes: m.zeroPoints }) : null;
      return matMulNBits(g, x.x!, q, sc, zp, { K, N, bits, blockSize: 16, accuracyLevel: 0 });
    });
  }
});

test('SoftmaxCrossEntropyLoss with ignored labels', async () => {
  await gradCheck('sce', [{ name: 'x', dims: [5, 7] }, { name: 'l', dims: [5], fixed: i64([3, -100, 0, 6, -100]) }],
    (g, x) => g.op1('SoftmaxCrossEntropyLoss', [x.x!, x.l!], { reduction: 'mean', ignore_index: -100 }), { scalarOutput: true });
});

test('a value used twice gets the sum; an unreached input gets zeros; a missing rule is named', async () => {
  const g = new Graph('pass');
  const a = g.input('a', 'F32', [3]);
  const b = g.input('b', 'F32', [3]);
  const y = g.op1('ReduceSum', [g.op1('Mul', [a, a])], { keepdims: 0 }); // sum a^2 -> 2a
  g.output(y, 'y', 'F32', []);
  appendBackward(g, y, [a, b]);
  const s = await Session.fromGraph(g);
  const out = await s.run({ a: { dims: [3], data: new Float32Array([1, -2, 3]) }, b: { dims: [3], data: new Float32Array(3) } });
  await s.release();
  assert.deepEqual(Array.from(out['grad.a']!.data), [2, -4, 6]);
  assert.deepEqual(Array.from(out['grad.b']!.data), [0, 0, 0]);

  const h = new Graph('norule');
  const x = h.input('x', 'F32', [3]);
  const z = h.op1('ReduceSum', [h.op1('Hardmax', [x])], { keepdims: 0 });
  assert.throws(() => appendBackward(h, z, [x]), /no gradient rule for op Hardmax/);
});
