// Block-wise 4-bit and 8-bit quantization of linear weights in the layout of onnxruntime's
// com.microsoft MatMulNBits (B [N, K] stored as in a PyTorch Linear, quantized along K):
//
//   qweight     uint8 [N, nBlocks, blobSize]   nBlocks = ceil(K / blockSize),
//                                              blobSize = blockSize * bits / 8; for 4 bits the
//                                              element with the even index sits in the low nibble
//   scales      float32 [N, nBlocks]           (the op reads it flat, [N * nBlocks])
//   zeroPoints  uint8 [N, zpRowBytes]          optional; 4 bits: two per byte (low nibble first),
//                                              each row padded to a whole byte; 8 bits: one per
//                                              byte. Without it the op uses 2^(bits-1) (8 or 128).
//
//   w[n, k] ~= (q[n, k] - zp[n, k / blockSize]) * scale[n, k / blockSize]
//
// Written here in TypeScript rather than taken from a library: block-wise min/max and rounding
// are a few lines, and no npm package writes MatMulNBits blobs (onnxruntime's own quantizer is
// Python). This runs once per model, off the hot path.

import { fromHalf, toHalf } from '../quant/half.js';

export type NBits = 4 | 8;

export interface NBitsOptions {
  bits: NBits;
  /** Elements of K sharing one scale: a power of two, at least 16 (MatMulNBits' rule). */
  blockSize: number;
  /**
   * true: no zero points; scale = max|w| / (2^(bits-1) - 1), so the block's values map to
   * 1 .. 2^bits - 1 around the op's implicit zero point 2^(bits-1).
   * false (default): the block's [min(w, 0), max(w, 0)] range spread over all 2^bits levels,
   * with an explicit zero point per block.
   * Either way every weight is within half a step (its block's scale) of its quantized value.
   */
  symmetric?: boolean;
  /**
   * What the scales must be representable in (default 'f32'). 'f16': each scale is rounded up to
   * a value fp16 holds, as MatMulNBits needs when its activations (and so its scales) are fp16;
   * the array stays float32.
   */
  scaleDtype?: 'f32' | 'f16';
}

/** One quantized [N, K] matrix. */
export interface NBitsMatrix {
  readonly N: number;
  readonly K: number;
  readonly bits: NBits;
  readonly blockSize: number;
  readonly qweight: Uint8Array;
  readonly scales: Float32Array;
  readonly zeroPoints?: Uint8Array;
}

export function checkNBitsOptions(o: NBitsOptions): void {
  if (o.bits !== 4 && o.bits !== 8) throw new RangeError(`bits must be 4 or 8, got ${String(o.bits)}`);
  const b = o.blockSize;
  if (!Number.isInteger(b) || b < 16 || (b & (b - 1)) !== 0) throw new RangeError(`block size must be a power of two >= 16, got ${b}`);
}

export const nBlocks = (K: number, blockSize: number): number => Math.ceil(K / blockSize);
export const blobSize = (blockSize: number, bits: NBits): number => (blockSize * bits) / 8;
/** Bytes of zero points per row of N. */
export const zeroPointRowBytes = (blocks: number, bits: NBits): number => Math.ceil((blocks * bits) / 8);

/** The tensor shapes of a quantized [N, K] matrix. */
export function nbitsShapes(N: number, K: number, o: NBitsOptions): { qweight: number[]; scales: number[]; zeroPoints?: number[] } {
  const nb = nBlocks(K, o.blockSize);
  return {
    qweight: [N, nb, blobSize(o.blockSize, o.bits)],
    scales: [N, nb],
    zeroPoints: o.symmetric ? undefined : [N, zeroPointRowBytes(nb, o.bits)],
  };
}

/** Where quantizeNBits may write (views of at least the needed length), to reuse memory across calls. */
export interface NBitsOutput {
  qweight: Uint8Array;
  scales: Float32Array;
  zeroPoints?: Uint8Array;
}

/**
 * Quantize rows of `w` ([N, K] row-major, float32). With `into`, the results are written into
 * those arrays (zero points must be zero-filled) and returned as views of them.
 */
export function quantizeNBits(w: Float32Array, N: number, K: number, o: NBitsOptions, into?: NBitsOutput): NBitsMatrix {
  checkNBitsOptions(o);
  if (w.length < N * K || (!into && w.length !== N * K)) throw new RangeError(`weight has ${w.length} values, [${N}, ${K}] needs ${N * K}`);
  const { bits, blockSize } = o;
  const sym = o.symmetric ?? false;
  const atLeast = o.scaleDtype === 'f16' ? f16AtLeast : f32AtLeast;
  const nb = nBlocks(K, blockSize);
  const blob = blobSize(blockSize, bits);
  const zpRow = zeroPointRowBytes(nb, bits);
  const qweight = into ? into.qweight.subarray(0, N * nb * blob) : new Uint8Array(N * nb * blob);
  const scales = into ? into.scales.subarray(0, N * nb) : new Float32Array(N * nb);
  const zeroPoints = sym ? undefined : into?.zeroPoints ? into.zeroPoints.subarray(0, N * zpRow) : new Uint8Array(N * zpRow);
  const maxQ = (1 << bits) - 1;
  const mid = 1 << (bits - 1);
  const q = new Uint8Array(blockSize);

  for (let n = 0; n < N; n++) {
    const row = n * K;
    for (let b = 0; b < nb; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(k0 + blockSize, K);
      let scale: number;
      let zp: number;
      if (sym) {
        let amax = 0;
        for (let k = k0; k < k1; k++) amax = Math.max(amax, Math.abs(w[row + k]!));
        scale = atLeast(amax / (mid - 1));
        zp = mid;
      } else {
        let lo = 0;
        let hi = 0;
        for (let k = k0; k < k1; k++) {
          const v = w[row + k]!;
          if (v < lo) lo = v;
          else if (v > hi) hi = v;
        }
        scale = atLeast((hi - lo) / maxQ);
        zp = scale > 0 ? clamp(Math.round(-lo / scale), 0, maxQ) : 0;
      }
      const inv = scale > 0 ? 1 / scale : 0;
      if (k1 - k0 < blockSize) q.fill(zp); // padding past K dequantizes to 0
      for (let k = k0; k < k1; k++) {
        // round half up, as Math.round; the argument is > -1 here, so truncation is floor
        const r = Math.trunc(w[row + k]! * inv + zp + 0.5);
        q[k - k0] = r < 0 ? 0 : r > maxQ ? maxQ : r;
      }
      scales[n * nb + b] = scale;
      const out = (n * nb + b) * blob;
      if (bits === 8) qweight.set(q, out);
      else for (let i = 0; i < blob; i++) qweight[out + i] = q[2 * i]! | (q[2 * i + 1]! << 4);
      if (zeroPoints) {
        if (bits === 8) zeroPoints[n * zpRow + b] = zp;
        else zeroPoints[n * zpRow + (b >> 1)]! |= b & 1 ? zp << 4 : zp;
      }
    }
  }
  return { N, K, bits, blockSize, qweight, scales, zeroPoints };
}

/** The float32 [N, K] matrix a quantized one stands for (as MatMulNBits reads it). */
export function dequantizeNBits(m: NBitsMatrix): Float32Array {
  const { N, K, bits, blockSize } = m;
  const nb = nBlocks(K, blockSize);
  const blob = blobSize(blockSize, bits);
  const zpRow = zeroPointRowBytes(nb, bits);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nb; b++) {
      const scale = m.scales[n * nb + b]!;
      let zp = 1 << (bits - 1);
      if (m.zeroPoints) {
        const byte = m.zeroPoints[n * zpRow + (bits === 8 ? b : b >> 1)]!;
        zp = bits === 8 ? byte : b & 1 ? byte >> 4 : byte & 15;
      }
      const base = (n * nb + b) * blob;
      for (let k = b * blockSize; k < Math.min((b + 1) * blockSize, K); k++) {
        const i = k - b * blockSize;
        const qv = bits === 8 ? m.qweight[base + i]! : i & 1 ? m.qweight[base + (i >> 1)]! >> 4 : m.qweight[base + (i >> 1)]! & 15;
        out[n * K + k] = (qv - zp) * scale;
      }
    }
  }
  return out;
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/**
 * The smallest float32 >= x (x >= 0): a scale rounded up, so that the block's extremes stay inside
 * the 2^bits levels and the half-step bound holds after rounding to float32.
 */
function f32AtLeast(x: number): number {
  f32[0] = x;
  if (f32[0]! < x) f32Bits[0]!++;
  return f32[0]!;
}

/** The smallest fp16 value >= x (x >= 0, below fp16's largest finite value). */
function f16AtLeast(x: number): number {
  let h = toHalf(x);
  if (fromHalf(h) < x) h++;
  return fromHalf(h);
}

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}
