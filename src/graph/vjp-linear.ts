// VJP rules of the linear ops: MatMul / com.microsoft FusedMatMul / Gemm (batched, with
// transposes and alpha), and 2-D Conv (dense and depthwise, strided, padded).

import { MS_DOMAIN, Value } from './graph.js';
import type { VjpContext, VjpRule } from './autodiff.js';
import { scalar, unbroadcast } from './autodiff.js';

function flag(c: VjpContext, key: string): boolean {
  return c.node.attrs[key] === 1;
}

function floatAttr(c: VjpContext, key: string, dflt: number): number {
  const v = c.node.attrs[key] as { float: number } | number | undefined;
  return v === undefined ? dflt : typeof v === 'number' ? v : v.float;
}

/** alpha * op(a) @ op(b) as one FusedMatMul (op = transpose of the last two axes when set). */
function mm(c: VjpContext, a: Value, b: Value, transA: boolean, transB: boolean, alpha: number): Value {
  const attrs: Record<string, number | { float: number }> = {};
  if (transA) attrs.transA = 1;
  if (transB) attrs.transB = 1;
  if (alpha !== 1) attrs.alpha = { float: alpha };
  if (!transA && !transB && alpha === 1) return c.g.op1('MatMul', [a, b], {}, { name: c.name });
  return c.g.op1('FusedMatMul', [a, b], attrs, { domain: MS_DOMAIN, name: c.name });
}

/**
 * Gradients of y = alpha op(A) op(B):
 *   d op(A) = dy op(B)^T,  d op(B) = op(A)^T dy,
 * each written as one product with the transposes folded into its flags. Batch dims that were
 * broadcast are summed back to each operand's shape. For a 2-D operand against a batched one
 * (a weight), the batch is folded into the rows first, so its gradient is one 2-D product.
 */
function matmulGrads(c: VjpContext, transA: boolean, transB: boolean, alpha: number): (Value | null)[] {
  const [A, B] = [c.input(0), c.input(1)];
  const dy = c.dy[0]!;
  const rank = (v: Value) => c.shapes.rank(v);
  for (const v of [A, B]) {
    const r = rank(v);
    if (r !== undefined && r < 2) throw new Error(`autodiff: MatMul on a ${r}-d operand (${v.name}) has no rule`);
  }
  let dA: Value | null = null;
  let dB: Value | null = null;
  if (c.need[0]) {
    dA = transA ? mm(c, B, dy, transB, true, alpha) : mm(c, dy, B, false, !transB, alpha);
    dA = unbroadcast(c, dA, A);
  }
  if (c.need[1]) {
    const rA = rank(A);
    const rY = rank(c.output(0));
    if (rank(B) === 2 && rA !== undefined && rA > 2 && rY === rA) {
      // Fold [..., M, K] into [rows, K] (only when op(A) keeps the row axis last-but-one).
      if (!transA) {
        const flatA = c.g.op1('Flatten', [A], { axis: rA - 1 }, { name: `${c.name}.rows` });
        const flatY = c.g.op1('Flatten', [dy], { axis: rY - 1 }, { name: `${c.name}.rows` });
        dB = transB ? mm(c, flatY, flatA, true, false, alpha) : mm(c, flatA, flatY, true, false, alpha);
        return [dA, dB];
      }
    }
    dB = transB ? mm(c, dy, A, true, transA, alpha) : mm(c, A, dy, !transA, false, alpha);
    dB = unbroadcast(c, dB, B);
  }
  return [dA, dB];
}

export const LINEAR_RULES: Readonly<Record<string, VjpRule>> = {
  MatMul: { diff: [0, 1], vjp: (c) => matmulGrads(c, false, false, 1) },
  [`${MS_DOMAIN}.FusedMatMul`]: {
    diff: [0, 1],
    vjp: (c) => {
      if (flag(c, 'transBatchA') || flag(c, 'transBatchB')) throw new Error('autodiff: FusedMatMul with transBatch has no rule');
      return matmulGrads(c, flag(c, 'transA'), flag(c, 'transB'), floatAttr(c, 'alpha', 1));
    },
  },
  Gemm: {
    diff: [0, 1, 2],
    vjp: (c) => {
      const [dA, dB] = matmulGrads(c, flag(c, 'transA'), flag(c, 'transB'), floatAttr(c, 'alpha', 1));
      let dC: Value | null = null;
      if (c.need[2]) {
        const beta = floatAttr(c, 'beta', 1);
        const d = beta === 1 ? c.dy[0]! : c.g.op1('Mul', [c.dy[0]!, scalar(c.g, beta)], {}, { name: c.name });
        dC = unbroadcast(c, d, c.input(2));
      }
      return [dA, dB, dC];
    },
  },
  Conv: { diff: [0, 1, 2], vjp: convGrads },
  [`${MS_DOMAIN}.MatMulNBits`]: { diff: [0], vjp: (c) => [matMulNBitsInputGrad(c)] },
};

/**
 * y = x @ deq(B)^T with B block-quantized ([N, blocks, blob] bytes, com.microsoft MatMulNBits)
 * and frozen: dx = dy @ deq(B). The packed bytes are, row by row, the [N, blocks * blockSize]
 * values in order (4-bit: two per byte, low nibble first), so the same initializer bytes are
 * read again as an ONNX UINT4/UINT8 tensor and dequantized by DequantizeLinear (opset 21,
 * blocked along K); onnxruntime makes the float32 matrix when the backward pass reaches it, one
 * at a time (not folded at load). No gradient reaches the quantized weight itself.
 */
function matMulNBitsInputGrad(c: VjpContext): Value {
  const { g, node } = c;
  const [K, N, bits, bs] = ['K', 'N', 'bits', 'block_size'].map((k) => node.attrs[k] as number);
  const blocks = Math.ceil(K! / bs!);
  const init = (i: number, what: string) => {
    const t = node.inputs[i] ? g.initializerOf(node.inputs[i]!) : undefined;
    if (!t) throw new Error(`autodiff: MatMulNBits ${node.outputs[0]}: its ${what} must be an initializer (a frozen weight)`);
    return t;
  };
  if (bits !== 4 && bits !== 8) throw new Error(`autodiff: MatMulNBits ${node.outputs[0]}: ${bits}-bit weights have no rule`);
  const dtype = bits === 4 ? 'U4' : 'U8';
  const q = init(1, 'weight');
  const values = g.initializer(`${q.name}.as_${dtype}`, dtype, [N!, blocks * bs!], q.data);
  // A zero taken from dy ties the dequantization to the backward pass's data flow: with only
  // initializers as inputs, onnxruntime runs every such node at the start of the run, and all
  // the float32 matrices would be alive at once (a 4-bit 3.8B LLM: 15 GB; measured).
  const zero = g.op1('Mul', [g.op1('Gather', [g.op1('Reshape', [c.dy[0]!, g.constI64([-1])]), g.constI64([0], [])]), g.constF32([0], [])]);
  const scales = g.op1('Add', [g.op1('Reshape', [c.input(2), g.constI64([N!, blocks])]), zero]);
  let zp: Value;
  if (node.inputs[3]) {
    const z = init(3, 'zero points');
    if (bits === 4 && blocks % 2 !== 0) throw new Error(`autodiff: MatMulNBits ${node.outputs[0]}: 4-bit zero points over an odd number of blocks have no rule`);
    zp = g.initializer(`${z.name}.as_${dtype}`, dtype, [N!, blocks], z.data);
  } else {
    // The op's implicit zero point: 2^(bits-1) in every block.
    const mid = bits === 4 ? 0x88 : 0x80;
    zp = g.initializer(`${q.name}.zero_point`, dtype, [N!, blocks], { kind: 'inline', bytes: new Uint8Array((N! * blocks * bits!) / 8).fill(mid) });
  }
  let W = g.op1('DequantizeLinear', [values, scales, zp], { axis: 1, block_size: bs! }, { name: `${c.name}.dequantized` }); // [N, blocks*bs]
  if (blocks * bs! !== K) W = g.op1('Slice', [W, g.constI64([0]), g.constI64([K!]), g.constI64([1])]);
  return g.op1('MatMul', [c.dy[0]!, W], {}, { name: c.name });
}

/**
 * 2-D Conv, y = conv(x, W, stride s, pads p, groups) + b:
 * - dx: ConvTranspose of dy with the same W, strides, pads and groups; rows and columns the
 *   forward never read (when (H + 2p - k) is not a multiple of s) get zeros, padded at the end.
 * - dW: the correlation of x with dy, as a Conv whose dilation is the stride: dense (groups 1)
 *   with the batch as the channel axis; depthwise (groups = channels) with the batch as the
 *   channels of each group. The result is cut to the kernel's size.
 * - db: dy summed over batch and space.
 */
function convGrads(c: VjpContext): (Value | null)[] {
  const { g, node } = c;
  const [x, W] = [c.input(0), c.input(1)];
  const dy = c.dy[0]!;
  const strides = (node.attrs.strides as number[] | undefined) ?? [1, 1];
  const pads = (node.attrs.pads as number[] | undefined) ?? [0, 0, 0, 0];
  const group = (node.attrs.group as number | undefined) ?? 1;
  const dil = (node.attrs.dilations as number[] | undefined) ?? [1, 1];
  if (c.shapes.rank(x) !== 4) throw new Error(`autodiff: Conv ${node.outputs[0]}: only 2-D convolutions (NCHW) have a rule`);
  if (dil.some((d) => d !== 1)) throw new Error(`autodiff: Conv ${node.outputs[0]}: dilated convolutions have no rule`);
  if (node.attrs.auto_pad !== undefined && node.attrs.auto_pad !== 'NOTSET') throw new Error(`autodiff: Conv ${node.outputs[0]}: auto_pad has no rule`);
  const name = c.name;
  const out: (Value | null)[] = [null, null, null];

  if (c.need[0]) {
    // ConvTranspose crops `pads` from both ends of the full transposed output; cropping only the
    // leading pads and then cutting or zero-padding the end to x's size handles the rows the
    // forward pass read from the end padding and those it never read ((H + 2p - k) mod s).
    const lead = [pads[0]!, pads[1]!, 0, 0];
    const t = g.op1('ConvTranspose', [dy, W], { strides, pads: lead, group }, { name: `${name}.dx` });
    const hw = g.op1('Slice', [g.op1('Shape', [x]), g.constI64([2]), g.constI64([4])]);
    const cut = g.op1('Slice', [t, g.constI64([0, 0]), hw, g.constI64([2, 3])], {}, { name: `${name}.dx_cut` });
    const short = g.op1('Sub', [hw, g.op1('Slice', [g.op1('Shape', [cut]), g.constI64([2]), g.constI64([4])])]);
    const padv = g.op1('Concat', [g.constI64([0, 0]), short], { axis: 0 });
    out[0] = g.op1('Pad', [cut, padv, null, g.constI64([2, 3])], { mode: 'constant' }, { name: `${name}.dx_pad` });
  }
  if (c.need[1]) {
    const ws = c.shapes.shape(W);
    const cutKernel = (v: Value) => g.op1('Slice', [v, g.constI64([0, 0]), g.op1('Slice', [g.op1('Shape', [W]), g.constI64([2]), g.constI64([4])]), g.constI64([2, 3])], {}, { name: `${name}.dw_cut` });
    const corr = { pads, dilations: strides, strides: [1, 1] };
    if (group === 1) {
      const xt = g.op1('Transpose', [x], { perm: [1, 0, 2, 3] }); // [Cin, N, H, W]
      const dyt = g.op1('Transpose', [dy], { perm: [1, 0, 2, 3] }); // [Cout, N, Ho, Wo]
      const r = g.op1('Conv', [xt, dyt], corr, { name: `${name}.dw` }); // [Cin, Cout, k', k']
      out[1] = g.op1('Transpose', [cutKernel(r)], { perm: [1, 0, 2, 3] }, { name: `${name}.dw_t` });
    } else if (ws && ws[1] === 1 && ws[0] === group) {
      // Depthwise: per channel, x[:, c] against dy[:, c] summed over the batch.
      const xt = g.op1('Reshape', [g.op1('Transpose', [x], { perm: [1, 0, 2, 3] }), g.constI64([1, -1, 0, 0])]); // [1, C*N, H, W]
      const dyt = g.op1('Transpose', [dy], { perm: [1, 0, 2, 3] }); // [C, N, Ho, Wo]
      const r = g.op1('Conv', [xt, dyt], { ...corr, group }, { name: `${name}.dw` }); // [1, C, k', k']
      out[1] = cutKernel(g.op1('Transpose', [r], { perm: [1, 0, 2, 3] }));
    } else {
      throw new Error(`autodiff: Conv ${node.outputs[0]}: grouped convolutions other than depthwise (groups = channels) have no rule`);
    }
  }
  if (c.need[2]) out[2] = g.op1('ReduceSum', [dy, g.constI64([0, 2, 3])], { keepdims: 0 }, { name: `${name}.db` });
  return out;
}
