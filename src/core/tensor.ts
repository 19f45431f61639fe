// Element types and host tensors shared by weights, graphs and the runtime.
// DType names are the safetensors spellings; ONNX codes are the TensorProto.DataType values.

import { fromHalf } from '../quant/half.js';

/** U4: unsigned 4-bit integers, two per byte (low nibble first), as ONNX's UINT4; graphs only. */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'U4';

export const DTYPE_BYTES: Record<DType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U4: 0.5,
};

export const ONNX_DTYPE: Record<DType, number> = {
  F32: 1, U8: 2, I8: 3, I16: 5, I32: 6, I64: 7, BOOL: 9, F16: 10, F64: 11, BF16: 16, U4: 21,
};

/** A dense float32 tensor in row-major order: the currency between stages. */
export interface F32Tensor {
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function f32(dims: readonly number[], data?: Float32Array): F32Tensor {
  const n = numel(dims);
  if (data && data.length !== n) {
    throw new Error(`tensor data has ${data.length} elements, shape [${dims.join(',')}] needs ${n}`);
  }
  return { dims: [...dims], data: data ?? new Float32Array(n) };
}

/** bf16 -> f32 is exact: the bf16 bits are the top half of the f32 bits. */
export function bf16ToF32(src: Uint8Array): Float32Array {
  const n = src.length >> 1;
  const out = new Float32Array(n);
  const o32 = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) o32[i] = (src[2 * i]! | (src[2 * i + 1]! << 8)) << 16;
  return out;
}

export function f16ToF32(src: Uint8Array): Float32Array {
  const n = src.length >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = fromHalf(src[2 * i]! | (src[2 * i + 1]! << 8));
  return out;
}

/** Reinterpret little-endian bytes of the given dtype as float32 values (upcasting halves). */
export function bytesToF32(dtype: DType, bytes: Uint8Array): Float32Array {
  switch (dtype) {
    case 'F32': {
      const copy = new Uint8Array(bytes); // aligned copy
      return new Float32Array(copy.buffer, 0, copy.length / 4);
    }
    case 'BF16':
      return bf16ToF32(bytes);
    case 'F16':
      return f16ToF32(bytes);
    case 'F64': {
      const copy = new Uint8Array(bytes);
      return Float32Array.from(new Float64Array(copy.buffer, 0, copy.length / 8));
    }
    default:
      throw new Error(`cannot read ${dtype} as float32`);
  }
}

/** f32 -> IEEE half, round to nearest even (overflow to infinity, NaN kept), little-endian bytes. */
export function f32ToF16(src: Float32Array): Uint8Array {
  const out = new Uint8Array(src.length * 2);
  const u32 = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = u32[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    let h: number;
    if (exp === 0xff) h = sign | 0x7c00 | (mant ? 0x200 : 0);
    else {
      const e = exp - 127 + 15;
      if (e >= 31) h = sign | 0x7c00;
      else if (e <= 0) {
        if (e < -10) h = sign;
        else {
          // subnormal half: shift the mantissa (with its hidden bit) right, rounding to even
          mant |= 0x800000;
          const shift = 14 - e;
          const half = 1 << (shift - 1);
          const rest = mant & ((1 << shift) - 1);
          let m = mant >>> shift;
          if (rest > half || (rest === half && m & 1)) m++;
          h = sign | m;
        }
      } else {
        let m = mant >>> 13;
        const rest = mant & 0x1fff;
        let ee = e;
        if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
          m++;
          if (m === 0x400) {
            m = 0;
            ee++;
          }
        }
        h = ee >= 31 ? sign | 0x7c00 : sign | (ee << 10) | m;
      }
    }
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

/** f32 -> bfloat16 (the top 16 bits), round to nearest even, NaN kept quiet; little-endian bytes. */
export function f32ToBf16(src: Float32Array): Uint8Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint8Array(src.length * 2);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    const r = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    out[2 * i] = r & 0xff;
    out[2 * i + 1] = (r >>> 8) & 0xff;
  }
  return out;
}
