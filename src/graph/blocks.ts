// The small set of building blocks that models compose. Weight arguments follow PyTorch
// layouts (Linear weight [out, in], Conv weight [out, in/groups, kh, kw]) so model files can
// pass checkpoint tensors straight through.

import { Graph, Value, MS_DOMAIN } from './graph.js';

/**
 * y = x @ W^T + b for x [..., in], W [out, in]. FusedMatMul reads W as stored (transB), where a
 * MatMul would need a folded transposed copy of every weight at load time; measured as fast at
 * run time on CLIP-L (docs/BENCHMARKS.md).
 */
export function linear(g: Graph, x: Value, w: Value, b?: Value | null, name = 'linear'): Value {
  const y = g.op1('FusedMatMul', [x, w], { transB: 1 }, { name: `${name}.mm`, domain: MS_DOMAIN });
  return b ? g.op1('Add', [y, b], {}, { name }) : y;
}

export interface MatMulNBitsAttrs {
  /** Input features (B's second dimension before quantization). */
  K: number;
  /** Output features. */
  N: number;
  bits: number;
  blockSize: number;
  /**
   * Minimum accuracy of the computation: 0 = the type of x (float32), 4 = int8 (x quantized per
   * block on the fly; much faster on CPUs with int8 dot products).
   */
  accuracyLevel: number;
}

/**
 * y = x @ dequant(B)^T for x [..., K] with B a block-quantized [N, K] weight in onnxruntime's
 * com.microsoft MatMulNBits layout: B uint8 [N, ceil(K/blockSize), blockSize*bits/8], scales
 * [N * blocks] of x's type, zero points uint8 (packed) or omitted (implicit 2^(bits-1)).
 */
export function matMulNBits(g: Graph, x: Value, b: Value, scales: Value, zeroPoints: Value | null, a: MatMulNBitsAttrs, name = 'matmul_nbits'): Value {
  const inputs = zeroPoints ? [x, b, scales, zeroPoints] : [x, b, scales];
  return g.op1('MatMulNBits', inputs, {
    K: a.K,
    N: a.N,
    bits: a.bits,
    block_size: a.blockSize,
    accuracy_level: a.accuracyLevel,
  }, { domain: MS_DOMAIN, name });
}

export interface Conv2dOptions {
  stride?: number;
  pad?: number;
  groups?: number;
}

/** NCHW convolution with a square kernel. */
export function conv2d(g: Graph, x: Value, w: Value, b: Value | null, o: Conv2dOptions = {}, name = 'conv'): Value {
  const s = o.stride ?? 1;
  const p = o.pad ?? 0;
  return g.op1('Conv', [x, w, b], { strides: [s, s], pads: [p, p, p, p], group: o.groups ?? 1 }, { name });
}

/** LayerNorm over the last axis. */
export function layerNorm(g: Graph, x: Value, w: Value, b: Value, eps: number, name = 'ln'): Value {
  return g.op1('LayerNormalization', [x, w, b], { axis: -1, epsilon: { float: eps } }, { name });
}

/** LayerNorm over channels of an NCHW tensor (timm LayerNorm2d). */
export function layerNorm2d(g: Graph, x: Value, w: Value, b: Value, eps: number, name = 'ln2d'): Value {
  const nhwc = toNHWC(g, x);
  return toNCHW(g, layerNorm(g, nhwc, w, b, eps, name));
}

export function toNHWC(g: Graph, x: Value): Value {
  return g.op1('Transpose', [x], { perm: [0, 2, 3, 1] }, { name: 'nhwc' });
}

export function toNCHW(g: Graph, x: Value): Value {
  return g.op1('Transpose', [x], { perm: [0, 3, 1, 2] }, { name: 'nchw' });
}

/** RMSNorm over the last axis (LLaMA-family). */
export function rmsNorm(g: Graph, x: Value, w: Value, eps: number, name = 'rms'): Value {
  return g.op1('SimplifiedLayerNormalization', [x, w], { axis: -1, epsilon: { float: eps } }, { name });
}

/** Exact (erf) GELU, as torch.nn.GELU() and F.gelu default. */
export function gelu(g: Graph, x: Value, name = 'gelu'): Value {
  return g.op1('Gelu', [x], { approximate: 'none' }, { name });
}

/** CLIP's quick_gelu: x * sigmoid(1.702 x). */
export function quickGelu(g: Graph, x: Value, name = 'qgelu'): Value {
  const k = g.constF32([1.702], [], 'qgelu.k');
  const s = g.op1('Sigmoid', [g.op1('Mul', [x, k])]);
  return g.op1('Mul', [x, s], {}, { name });
}

/** Activation by the name HF configs use. */
export function activation(g: Graph, x: Value, act: string, name = 'act'): Value {
  switch (act) {
    case 'quick_gelu':
      return quickGelu(g, x, name);
    case 'gelu':
      return gelu(g, x, name);
    default:
      throw new Error(`unsupported activation ${act}`);
  }
}

/**
 * Bidirectional multi-head self-attention on already projected q, k, v [B, S, heads*dim]
 * (scale 1/sqrt(dim)); returns [B, S, heads*dim]. onnxruntime's fused kernel.
 */
export function selfAttention(g: Graph, q: Value, k: Value, v: Value, heads: number, name = 'attn'): Value {
  return g.op1('MultiHeadAttention', [q, k, v], { num_heads: heads }, { domain: MS_DOMAIN, name });
}

/**
 * The same attention as selfAttention from plain ops (MatMul, Softmax), for graphs that are
 * differentiated (autodiff.ts: the fused kernel has no VJP): q, k, v [B, S, heads*dim] -> [B, S,
 * heads*dim], scale 1/sqrt(dim) applied to q.
 */
export function plainSelfAttention(g: Graph, q: Value, k: Value, v: Value, heads: number, dim: number, name = 'attn'): Value {
  const split = (x: Value) => g.op1('Transpose', [reshape(g, x, [0, 0, heads, dim])], { perm: [0, 2, 1, 3] }); // [B, h, S, d]
  const qs = g.op1('Mul', [split(q), g.constF32([1 / Math.sqrt(dim)], [])]);
  const kt = g.op1('Transpose', [reshape(g, k, [0, 0, heads, dim])], { perm: [0, 2, 3, 1] }); // [B, h, d, S]
  const probs = g.op1('Softmax', [g.op1('MatMul', [qs, kt])], { axis: -1 });
  const out = g.op1('Transpose', [g.op1('MatMul', [probs, split(v)])], { perm: [0, 2, 1, 3] });
  return reshape(g, out, [0, 0, heads * dim], name);
}

/** Reshape to a fixed shape (0 keeps the input dim, -1 infers). */
export function reshape(g: Graph, x: Value, shape: readonly number[], name = 'reshape'): Value {
  return g.op1('Reshape', [x, g.constI64(shape, [shape.length], `${name}.shape`)], {}, { name });
}

/**
 * Bilinear resize of an NCHW tensor to [outH, outW], as PyTorch's
 * F.interpolate(mode='bilinear', align_corners=False) without antialiasing.
 */
export function resizeBilinear(g: Graph, x: Value, outH: number, outW: number, name = 'resize'): Value {
  const sizes = g.op1('Concat', [
    g.op1('Slice', [g.op1('Shape', [x]), g.constI64([0]), g.constI64([2])]),
    g.constI64([outH, outW]),
  ], { axis: 0 });
  return g.op1('Resize', [x, null, null, sizes], {
    mode: 'linear',
    coordinate_transformation_mode: 'half_pixel',
    antialias: 0,
  }, { name });
}

export interface RoiAlignOptions {
  outputSize: number;
  spatialScale: number;
  /** 0 = adaptive (ceil(roi size / output size)), as torchvision's sampling_ratio=-1. */
  samplingRatio?: number;
  /** false = torchvision aligned=False (onnxruntime 'output_half_pixel'). */
  aligned?: boolean;
}

/**
 * RoIAlign (average) on x [N, C, H, W] with rois [k, 4] (x0, y0, x1, y1) and batch indices
 * [k] (int64); returns [k, C, out, out].
 */
export function roiAlign(g: Graph, x: Value, rois: Value, batchIndices: Value, o: RoiAlignOptions, name = 'roi'): Value {
  return g.op1('RoiAlign', [x, rois, batchIndices], {
    mode: 'avg',
    output_height: o.outputSize,
    output_width: o.outputSize,
    sampling_ratio: o.samplingRatio ?? 0,
    spatial_scale: { float: o.spatialScale },
    coordinate_transformation_mode: o.aligned ? 'half_pixel' : 'output_half_pixel',
  }, { name });
}
