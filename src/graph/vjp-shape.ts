// VJP rules of the ops that move, select, broadcast or reduce elements: Reshape, Flatten,
// Unsqueeze, Squeeze, Transpose, Concat, Split, Slice, Gather, Expand, ReduceMean, ReduceSum,
// Resize (linear). Sizes known only at run time come from Shape ops.

import { Value } from './graph.js';
import type { VjpContext, VjpRule } from './autodiff.js';
import { unbroadcast } from './autodiff.js';

/** dy reshaped back to the input's shape. */
const reshapeBack: VjpRule = {
  diff: [0],
  vjp: (c) => [c.g.op1('Reshape', [c.dy[0]!, c.g.op1('Shape', [c.input(0)])], {}, { name: c.name })],
};

/** Zeros of output i's shape, for an output whose gradient is missing. */
function zerosOf(c: VjpContext, i: number): Value {
  return c.g.op1('ConstantOfShape', [c.g.op1('Shape', [c.output(i)])], {}, { name: `${c.name}.zeros` });
}

function axesOf(c: VjpContext, inputIndex: number, what: string): number[] {
  const v = c.node.inputs[inputIndex] ? c.shapes.constInts(c.node.inputs[inputIndex]!) : (c.node.attrs.axes as number[] | undefined);
  if (!v) throw new Error(`autodiff: ${c.node.op} ${c.node.outputs[0]}: its ${what} must be constant`);
  return v;
}

export const SHAPE_RULES: Readonly<Record<string, VjpRule>> = {
  Reshape: reshapeBack,
  Flatten: reshapeBack,
  Unsqueeze: reshapeBack,
  Squeeze: reshapeBack,
  Transpose: {
    diff: [0],
    vjp: (c) => {
      let perm = c.node.attrs.perm as number[] | undefined;
      if (!perm) {
        const r = c.shapes.rank(c.input(0));
        if (r === undefined) throw new Error(`autodiff: Transpose ${c.node.outputs[0]}: no perm and unknown rank`);
        perm = Array.from({ length: r }, (_, i) => r - 1 - i);
      }
      const inv = new Array<number>(perm.length);
      perm.forEach((p, i) => (inv[p] = i));
      return [c.g.op1('Transpose', [c.dy[0]!], { perm: inv }, { name: c.name })];
    },
  },
  Concat: {
    diff: 'all',
    vjp: (c) => {
      const { g, node } = c;
      const axis = (node.attrs.axis as number | undefined) ?? 0;
      const sizes = g.op1('Concat', node.inputs.map((name) => g.op1('Slice', [
        g.op1('Shape', [{ name }]), g.constI64([axis]), g.constI64([axis === -1 ? Number.MAX_SAFE_INTEGER : axis + 1]),
      ])), { axis: 0 });
      const parts = g.op('Split', [c.dy[0]!, sizes], { axis }, { outputs: node.inputs.length, name: c.name });
      return parts.map((p, i) => (c.need[i] ? p : null));
    },
  },
  Split: {
    diff: [0],
    vjp: (c) => {
      const axis = (c.node.attrs.axis as number | undefined) ?? 0;
      const parts = c.dy.map((d, i) => d ?? zerosOf(c, i));
      return [c.g.op1('Concat', parts, { axis }, { name: c.name })];
    },
  },
  Slice: { diff: [0], vjp: (c) => [sliceGrad(c)] },
  Gather: {
    diff: [0],
    vjp: (c) => {
      const { g } = c;
      const axis = (c.node.attrs.axis as number | undefined) ?? 0;
      if (axis !== 0) throw new Error(`autodiff: Gather ${c.node.outputs[0]} on axis ${axis}: only axis 0 has a rule`);
      const [data, idx] = [c.input(0), c.input(1)];
      // Rows gathered twice get both gradients: a scatter-add into zeros of the table's shape.
      const rows = g.op1('Gather', [g.op1('Shape', [data]), g.constI64([0])]);
      const pos = g.op1('Where', [g.op1('Less', [idx, g.constI64([0], [])]), g.op1('Add', [idx, g.op1('Reshape', [rows, g.constI64([])])]), idx]);
      const zeros = g.op1('ConstantOfShape', [g.op1('Shape', [data])], {}, { name: `${c.name}.zeros` });
      return [g.op1('ScatterND', [zeros, g.op1('Unsqueeze', [pos, g.constI64([-1])]), c.dy[0]!], { reduction: 'add' }, { name: c.name })];
    },
  },
  Expand: { diff: [0], vjp: (c) => [unbroadcast(c, c.dy[0]!, c.input(0), c.shapes.shape(c.output(0)))] },
  ReduceSum: { diff: [0], vjp: (c) => [reduceGrad(c, false)] },
  ReduceMean: { diff: [0], vjp: (c) => [reduceGrad(c, true)] },
  Resize: { diff: [0], vjp: (c) => [resizeGrad(c)] },
};

/** dy broadcast back over the reduced axes (divided by their size for a mean). */
function reduceGrad(c: VjpContext, mean: boolean): Value {
  const { g, node } = c;
  const x = c.input(0);
  let d = c.dy[0]!;
  const keep = (node.attrs.keepdims as number | undefined) ?? 1;
  const axes = node.inputs[1] ? axesOf(c, 1, 'axes') : ((node.attrs.axes as number[] | undefined) ?? []);
  if (keep === 0 && axes.length) {
    const r = c.shapes.rank(x);
    if (r === undefined && axes.some((a) => a < 0)) throw new Error(`autodiff: ${node.op} ${node.outputs[0]}: negative axes without keepdims need a known rank`);
    const pos = axes.map((a) => (a < 0 ? a + r! : a)).sort((a, b) => a - b);
    d = g.op1('Unsqueeze', [d, g.constI64(pos)], {}, { name: `${c.name}.keep` });
  } else if (keep === 0) {
    // Every axis reduced to a scalar: broadcasting takes it back.
  }
  if (mean) {
    const ratio = g.op1('Div', [
      g.op1('Cast', [g.op1('Size', [c.output(0)])], { to: 1 }),
      g.op1('Cast', [g.op1('Size', [x])], { to: 1 }),
    ]);
    d = g.op1('Mul', [d, ratio], {}, { name: `${c.name}.mean` });
  }
  return g.op1('Expand', [d, g.op1('Shape', [x])], {}, { name: c.name });
}

/**
 * Slice with unit steps: dy placed back where it came from, zeros elsewhere, by a Pad on the
 * sliced axes with pads computed from the clamped starts and ends (run-time shapes).
 */
function sliceGrad(c: VjpContext): Value {
  const { g, node } = c;
  const x = c.input(0);
  const steps = node.inputs[4] ? c.shapes.constInts(node.inputs[4]) : undefined;
  if (node.inputs[4] && (!steps || steps.some((s) => s !== 1))) {
    throw new Error(`autodiff: Slice ${node.outputs[0]}: only unit steps have a rule`);
  }
  const starts = c.input(1);
  const ends = c.input(2);
  const axes = node.inputs[3]
    ? c.input(3)
    : g.op1('Range', [g.constI64([0], []), g.op1('Reshape', [g.op1('Shape', [starts]), g.constI64([])]), g.constI64([1], [])]);
  const dims = g.op1('Gather', [g.op1('Shape', [x]), axes]);
  const zero = g.constI64([0], []);
  const clamp = (v: Value) => {
    const pos = g.op1('Where', [g.op1('Less', [v, zero]), g.op1('Add', [v, dims]), v]);
    return g.op1('Min', [g.op1('Max', [pos, zero]), dims]);
  };
  const s = clamp(starts);
  const e = g.op1('Max', [clamp(ends), s]);
  const pads = g.op1('Concat', [s, g.op1('Sub', [dims, e])], { axis: 0 });
  return g.op1('Pad', [c.dy[0]!, pads, null, axes], { mode: 'constant' }, { name: c.name });
}

/**
 * Resize (mode linear, half_pixel, no antialias) of an NCHW tensor is separable and linear:
 * y = A x B^T per (n, c), A [Ho, H] and B [Wo, W] the interpolation weights. Its VJP is
 * dx = A^T dy B, two MatMuls on constant matrices; the spatial sizes must be static.
 */
function resizeGrad(c: VjpContext): Value {
  const { g, node } = c;
  const mode = node.attrs.mode ?? 'nearest';
  const ctm = node.attrs.coordinate_transformation_mode ?? 'half_pixel';
  if (mode !== 'linear' || ctm !== 'half_pixel' || (node.attrs.antialias ?? 0) !== 0) {
    throw new Error(`autodiff: Resize ${node.outputs[0]}: only mode linear, half_pixel, no antialias has a rule`);
  }
  const xs = c.shapes.shape(c.input(0));
  const ys = c.shapes.shape(c.output(0));
  const dims = [xs?.[2], xs?.[3], ys?.[2], ys?.[3]];
  if (xs?.length !== 4 || dims.some((d) => typeof d !== 'number')) {
    throw new Error(`autodiff: Resize ${node.outputs[0]}: its VJP needs static spatial sizes`);
  }
  const [H, W, Ho, Wo] = dims as number[];
  const At = g.constF32(transpose(linearWeights(H!, Ho!), Ho!, H!), [H!, Ho!], `${c.name}.rows`);
  const B = g.constF32(linearWeights(W!, Wo!), [Wo!, W!], `${c.name}.cols`);
  // dy [N, C, Ho, Wo] -> A^T dy [N, C, H, Wo] -> (A^T dy) B [N, C, H, W]
  const rows = g.op1('MatMul', [At, c.dy[0]!], {}, { name: `${c.name}.h` });
  return g.op1('MatMul', [rows, B], {}, { name: c.name });
}

/** [outSize, inSize] weights of PyTorch's bilinear (align_corners=False) along one axis. */
function linearWeights(inSize: number, outSize: number): Float32Array {
  const w = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let d = 0; d < outSize; d++) {
    const src = Math.max(scale * (d + 0.5) - 0.5, 0);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = i0 < inSize - 1 ? i0 + 1 : i0;
    const l1 = src - i0;
    w[d * inSize + i0]! += 1 - l1;
    w[d * inSize + i1]! += l1;
  }
  return w;
}

function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) t[k * rows + r] = m[r * cols + k]!;
  return t;
}
