// llama.cpp's (ggml's) block formats, quantized the way its reference quantizers do, so that the
// error of "Q4_0" or "Q4_K_M" can be measured on our own weights and a GGUF of them written for
// the llama.cpp peer. Re-implemented here from the published formats (no npm package quantizes
// to ggml's k-quants); arithmetic is float64 where ggml's is float32, so a value on a rounding
// tie can land one level apart from ggml's: the error statistics are those of the format.
//
// Every format quantizes a row of float32 values, the row a whole number of blocks long, into
// `bytes` per block of `values`; x ~= the dequantized value. Little-endian, fp16 scales.
//
//   Q4_0  32 values, 18 B: d; 16 B, byte j = q[j] | q[j+16] << 4;            x = d (q - 8)
//   Q5_0  32 values, 22 B: d; qh u32 (bit j = bit 4 of q[j]); 16 B as Q4_0;   x = d (q - 16)
//   Q5_1  32 values, 24 B: d, m; qh; 16 B;                                    x = d q + m
//   Q8_0  32 values, 34 B: d; 32 int8;                                        x = d q
//   Q4_K  256 values, 144 B: d, dmin; 12 B of 6-bit scale/min pairs for 8 sub-blocks of 32;
//         128 B, for each 64 values: 32 B, low nibbles the first 32, high nibbles the next;
//                                                        x = d sc_j q - dmin m_j
//   Q5_K  256 values, 176 B: d, dmin; 12 B scales; qh 32 B (for 64-value chunk c, bits 2c and
//         2c+1 of byte l are bit 4 of values 64c+l and 64c+32+l); 128 B as Q4_K
//   Q6_K  256 values, 210 B: ql 128 B, qh 64 B, 16 int8 scales, d; per 128 values: ql[l] holds
//         values l and l+64 (low, high nibble), ql[l+32] values l+32 and l+96, qh[l] their top
//         two bits (2 bits each, in that order: l, l+32, l+64, l+96); x = d sc_{v/16} (q - 32)

import { fromHalf, toHalf } from './half.js';

export const GGML_BLOCK_TYPES = ['Q4_0', 'Q5_0', 'Q5_1', 'Q8_0', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
export type GgmlBlockType = (typeof GGML_BLOCK_TYPES)[number];

/** ggml's type ids (as GGUF stores them). */
export const GGML_TYPE_ID: Record<GgmlBlockType | 'F32' | 'F16', number> = {
  F32: 0, F16: 1, Q4_0: 2, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14,
};

export const GGML_BLOCK: Record<GgmlBlockType, { values: number; bytes: number }> = {
  Q4_0: { values: 32, bytes: 18 },
  Q5_0: { values: 32, bytes: 22 },
  Q5_1: { values: 32, bytes: 24 },
  Q8_0: { values: 32, bytes: 34 },
  Q4_K: { values: 256, bytes: 144 },
  Q5_K: { values: 256, bytes: 176 },
  Q6_K: { values: 256, bytes: 210 },
};

/** Bits of storage per weight. */
export const ggmlBitsPerWeight = (t: GgmlBlockType): number => (GGML_BLOCK[t].bytes * 8) / GGML_BLOCK[t].values;

/** ggml's nearest_int: round half to even (its float trick, here in float64), for |x| < 2^51. */
function nearestInt(x: number): number {
  return x + 6755399441055744 - 6755399441055744;
}
const clampInt = (v: number, lo: number, hi: number): number => (v < lo ? lo : v > hi ? hi : v);

/** Quantize `x` (a whole number of `t` blocks) into a new byte array. */
export function quantizeGgml(t: GgmlBlockType, x: Float32Array): Uint8Array {
  const { values, bytes } = GGML_BLOCK[t];
  if (x.length % values !== 0) throw new RangeError(`${t}: ${x.length} values is not a whole number of ${values}-value blocks`);
  const nb = x.length / values;
  const out = new Uint8Array(nb * bytes);
  const dv = new DataView(out.buffer);
  const q = QUANTIZE[t];
  for (let b = 0; b < nb; b++) q(x.subarray(b * values, (b + 1) * values), out.subarray(b * bytes, (b + 1) * bytes), dv, b * bytes);
  return out;
}

/** The float32 values `t` blocks stand for. */
export function dequantizeGgml(t: GgmlBlockType, blocks: Uint8Array): Float32Array {
  const { values, bytes } = GGML_BLOCK[t];
  if (blocks.length % bytes !== 0) throw new RangeError(`${t}: ${blocks.length} bytes is not a whole number of ${bytes}-byte blocks`);
  const nb = blocks.length / bytes;
  const out = new Float32Array(nb * values);
  const dv = new DataView(blocks.buffer, blocks.byteOffset, blocks.byteLength);
  const d = DEQUANTIZE[t];
  for (let b = 0; b < nb; b++) d(blocks.subarray(b * bytes, (b + 1) * bytes), dv, b * bytes, out.subarray(b * values, (b + 1) * values));
  return out;
}

type Quantize = (x: Float32Array, o: Uint8Array, dv: DataView, at: number) => void;
type Dequantize = (o: Uint8Array, dv: DataView, at: number, y: Float32Array) => void;

/** The value of largest magnitude (first of equals), and that magnitude. */
function signedMax(x: Float32Array): [number, number] {
  let amax = 0;
  let max = 0;
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]!);
    if (a > amax) { amax = a; max = x[i]!; }
  }
  return [max, amax];
}

// ---- 32-value formats ----

function q4_0(x: Float32Array, o: Uint8Array, dv: DataView, at: number): void {
  const [max] = signedMax(x);
  const d = max / -8;
  const id = d !== 0 ? 1 / d : 0;
  dv.setUint16(at, toHalf(d), true);
  for (let j = 0; j < 16; j++) {
    const a = Math.min(15, Math.trunc(x[j]! * id + 8.5));
    const b = Math.min(15, Math.trunc(x[j + 16]! * id + 8.5));
    o[2 + j] = a | (b << 4);
  }
}
function dq4_0(o: Uint8Array, dv: DataView, at: number, y: Float32Array): void {
  const d = fromHalf(dv.getUint16(at, true));
  for (let j = 0; j < 16; j++) {
    y[j] = d * ((o[2 + j]! & 15) - 8);
    y[j + 16] = d * ((o[2 + j]! >> 4) - 8);
  }
}

/** The 5-bit values' low nibbles and the u32 of their fifth bits (Q5_0 and Q5_1). */
function pack5(qv: Uint8Array, o: Uint8Array, dv: DataView, at: number, qsAt: number): void {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    o[qsAt + j] = (qv[j]! & 15) | ((qv[j + 16]! & 15) << 4);
    qh |= ((qv[j]! >> 4) & 1) << j;
    qh |= ((qv[j + 16]! >> 4) & 1) << (j + 16);
  }
  dv.setUint32(at + qsAt - 4, qh >>> 0, true);
}
function unpack5(o: Uint8Array, dv: DataView, at: number, qsAt: number, qv: Uint8Array): void {
  const qh = dv.getUint32(at + qsAt - 4, true);
  for (let j = 0; j < 16; j++) {
    qv[j] = (o[qsAt + j]! & 15) | (((qh >>> j) & 1) << 4);
    qv[j + 16] = (o[qsAt + j]! >> 4) | (((qh >>> (j + 16)) & 1) << 4);
  }
}
const q5 = new Uint8Array(32);

function q5_0(x: Float32Array, o: Uint8Array, dv: DataView, at: number): void {
  const [max] = signedMax(x);
  const d = max / -16;
  const id = d !== 0 ? 1 / d : 0;
  dv.setUint16(at, toHalf(d), true);
  for (let j = 0; j < 32; j++) q5[j] = Math.min(31, Math.trunc(x[j]! * id + 16.5));
  pack5(q5, o, dv, at, 6);
}
function dq5_0(o: Uint8Array, dv: DataView, at: number, y: Float32Array): void {
  const d = fromHalf(dv.getUint16(at, true));
  unpack5(o, dv, at, 6, q5);
  for (let j = 0; j < 32; j++) y[j] = d * (q5[j]! - 16);
}

function q5_1(x: Float32Array, o: Uint8Array, dv: DataView, at: number): void {
  let lo = Infinity;
  let hi = -Infinity;
  for (let j = 0; j < 32; j++) { lo = Math.min(lo, x[j]!); hi = Math.max(hi, x[j]!); }
  const d = (hi - lo) / 31;
  const id = d !== 0 ? 1 / d : 0;
  dv.setUint16(at, toHalf(d), true);
  dv.setUint16(at + 2, toHalf(lo), true);
  for (let j = 0; j < 32; j++) q5[j] = Math.min(31, Math.trunc((x[j]! - lo) * id + 0.5));
  pack5(q5, o, dv, at, 8);
}
function dq5_1(o: Uint8Array, dv: DataView, at: number, y: Float32Array): void {
  const d = fromHalf(dv.getUint16(at, true));
  const m = fromHalf(dv.getUint16(at + 2, true));
  unpack5(o, dv, at, 8, q5);
  for (let j = 0; j < 32; j++) y[j] = d * q5[j]! + m;
}

function q8_0(x: Float32Array, _o: Uint8Array, dv: DataView, at: number): void {
  const [, amax] = signedMax(x);
  const d = amax / 127;
  const id = d !== 0 ? 1 / d : 0;
  dv.setUint16(at, toHalf(d), true);
  for (let j = 0; j < 32; j++) {
    const v = x[j]! * id;
    dv.setInt8(at + 2 + j, Math.sign(v) * Math.round(Math.abs(v))); // roundf: half away from zero
  }
}
function dq8_0(_o: Uint8Array, dv: DataView, at: number, y: Float32Array): void {
  const d = fromHalf(dv.getUint16(at, true));
  for (let j = 0; j < 32; j++) y[j] = d * dv.getInt8(at + 2 + j);
}

// ---- k-quants (256-value super-blocks) ----

/**
 * ggml's make_qkx2_quants: levels 0..nmax with a scale and a min (x ~= scale l - min, min >= 0
 * returned as `out.min`), by a weighted least-squares fit over nstep+1 trial scales.
 */
function fitScaleMin(x: Float32Array, w: Float64Array, nmax: number, L: Uint8Array, aux: Uint8Array, rmin: number, rdelta: number, nstep: number, out: { min: number }): number {
  const n = x.length;
  let lo = x[0]!;
  let hi = x[0]!;
  let sumW = 0;
  let sumX = 0;
  for (let i = 0; i < n; i++) {
    lo = Math.min(lo, x[i]!);
    hi = Math.max(hi, x[i]!);
    sumW += w[i]!;
    sumX += w[i]! * x[i]!;
  }
  if (lo > 0) lo = 0;
  if (hi === lo) {
    L.fill(0, 0, n);
    out.min = -lo;
    return 0;
  }
  let iscale = nmax / (hi - lo);
  let scale = 1 / iscale;
  let best = 0;
  for (let i = 0; i < n; i++) {
    L[i] = clampInt(nearestInt(iscale * (x[i]! - lo)), 0, nmax);
    const diff = scale * L[i]! + lo - x[i]!;
    best += w[i]! * diff * diff;
  }
  for (let is = 0; is <= nstep; is++) {
    iscale = (rmin + rdelta * is + nmax) / (hi - lo);
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = clampInt(nearestInt(iscale * (x[i]! - lo)), 0, nmax);
      aux[i] = l;
      sumL += w[i]! * l;
      sumL2 += w[i]! * l * l;
      sumXL += w[i]! * l * x[i]!;
    }
    const D = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      let s = (sumW * sumXL - sumX * sumL) / D;
      let m = (sumL2 * sumX - sumL * sumXL) / D;
      if (m > 0) { m = 0; s = sumXL / sumL2; }
      let err = 0;
      for (let i = 0; i < n; i++) {
        const diff = s * aux[i]! + m - x[i]!;
        err += w[i]! * diff * diff;
      }
      if (err < best) {
        L.set(aux.subarray(0, n));
        best = err;
        scale = s;
        lo = m;
      }
    }
  }
  out.min = -lo;
  return scale;
}

/** 6-bit scale and min of sub-block j from the 12 packed bytes at `s` (ggml's get_scale_min_k4). */
function scaleMinK4(o: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [o[s + j]! & 63, o[s + j + 4]! & 63];
  return [(o[s + j + 4]! & 0xf) | ((o[s + j - 4]! >> 6) << 4), (o[s + j + 4]! >> 4) | ((o[s + j]! >> 6) << 4)];
}
function packScaleMinK4(o: Uint8Array, s: number, ls: Uint8Array, lm: Uint8Array): void {
  o.fill(0, s, s + 12);
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      o[s + j] = ls[j]!;
      o[s + j + 4] = lm[j]!;
    } else {
      o[s + j + 4] = (ls[j]! & 0xf) | ((lm[j]! & 0xf) << 4);
      o[s + j - 4]! |= (ls[j]! >> 4) << 6;
      o[s + j]! |= (lm[j]! >> 4) << 6;
    }
  }
}

const kL = new Uint8Array(256);
const kAux = new Uint8Array(32);
const kW = new Float64Array(32);
const kScales = new Float64Array(16);
const kMins = new Float64Array(8);
const kLs = new Uint8Array(8);
const kLm = new Uint8Array(8);
const kMin = { min: 0 };

/** Q4_K and Q5_K share everything but the levels (15 or 31) and the search's range. */
function quantizeKScaleMin(x: Float32Array, o: Uint8Array, dv: DataView, at: number, nmax: number, rmin: number, nstep: number): void {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    const xs = x.subarray(32 * j, 32 * j + 32);
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 += xs[l]! * xs[l]!;
    const av = Math.sqrt(sumX2 / 32);
    for (let l = 0; l < 32; l++) kW[l] = av + Math.abs(xs[l]!);
    kScales[j] = fitScaleMin(xs, kW, nmax, kL.subarray(32 * j, 32 * j + 32), kAux, rmin, 0.1, nstep, kMin);
    kMins[j] = kMin.min;
    maxScale = Math.max(maxScale, kScales[j]!);
    maxMin = Math.max(maxMin, kMins[j]!);
  }
  const invScale = maxScale > 0 ? 63 / maxScale : 0;
  const invMin = maxMin > 0 ? 63 / maxMin : 0;
  for (let j = 0; j < 8; j++) {
    kLs[j] = Math.min(63, nearestInt(invScale * kScales[j]!));
    kLm[j] = Math.min(63, nearestInt(invMin * kMins[j]!));
  }
  dv.setUint16(at, toHalf(maxScale / 63), true);
  dv.setUint16(at + 2, toHalf(maxMin / 63), true);
  packScaleMinK4(o, 4, kLs, kLm);
  const d = fromHalf(dv.getUint16(at, true));
  const dmin = fromHalf(dv.getUint16(at + 2, true));
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMinK4(o, 4, j);
    const d1 = d * sc;
    if (!d1) continue;
    const dm = dmin * m;
    for (let i = 0; i < 32; i++) kL[32 * j + i] = clampInt(nearestInt((x[32 * j + i]! + dm) / d1), 0, nmax);
  }
}

function q4_K(x: Float32Array, o: Uint8Array, dv: DataView, at: number): void {
  quantizeKScaleMin(x, o, dv, at, 15, -1, 20);
  for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) o[16 + 32 * c + l] = kL[64 * c + l]! | (kL[64 * c + 32 + l]! << 4);
}
/** Q4_K and Q5_K: x = d sc_j q - dmin m_j, with `level(c, l, second)` reading value 64c + l (+ 32 if second). */
function dequantizeKScaleMin(o: Uint8Array, dv: DataView, at: number, y: Float32Array, level: (c: number, l: number, second: boolean) => number): void {
  const d = fromHalf(dv.getUint16(at, true));
  const dmin = fromHalf(dv.getUint16(at + 2, true));
  for (let c = 0; c < 4; c++) {
    const [s1, m1] = scaleMinK4(o, 4, 2 * c);
    const [s2, m2] = scaleMinK4(o, 4, 2 * c + 1);
    for (let l = 0; l < 32; l++) {
      y[64 * c + l] = d * s1 * level(c, l, false) - dmin * m1;
      y[64 * c + 32 + l] = d * s2 * level(c, l, true) - dmin * m2;
    }
  }
}
function dq4_K(o: Uint8Array, dv: DataView, at: number, y: Float32Array): void {
  dequantizeKScaleMin(o, dv, at, y, (c, l, second) => (second ? o[16 + 32 * c + l]! >> 4 : o[16 + 32 * c + l]! & 15));
}

function q5_K(x: Float32Array, o: Uint8Array, dv: DataView, at: number): void {
  quantizeKScaleMin(x, o, dv, at, 31, -0.5, 15);
  o.fill(0, 16, 48);
  for (let c = 0; c < 4; c++) {
    for (let l = 0; l < 32; l++) {
      const a = kL[64 * c + l]!;
      const b = kL[64 * c + 32 + l]!;
      o[48 + 32 * c + l] = (a & 15) | ((b & 15) << 4);
      o[16 + l]! |= ((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1));
    }
  }
}
function dq5_K(o: Uint8Array, dv: DataView, at: number, y: Float32Array): void {
  dequantizeKScaleMin(o, dv, at, y, (c, l, second) => {
    const b = o[48 + 32 * c + l]!;
    const high = (o[16 + l]! >> (2 * c + (second ? 1 : 0))) & 1;
    return (second ? b >> 4 : b & 15) | (high << 4);
  });
}

/**
 * ggml's make_qx_quants with its squared-value weights (rmse_type 1): levels -nmax..nmax-1 stored
 * offset by nmax in L, the scale from a least-squares fit over 19 trial scales.
 */
function fitScale(x: Float32Array, nmax: number, L: Uint8Array): number {
  const [max, amax] = signedMax(x);
  if (amax < 1e-15) {
    L.fill(0, 0, x.length);
    return 0;
  }
  const trial = (iscale: number, store: boolean): [number, number] => {
    let sumLX = 0;
    let sumL2 = 0;
    for (let i = 0; i < x.length; i++) {
      const l = clampInt(nearestInt(iscale * x[i]!), -nmax, nmax - 1);
      if (store) L[i] = l + nmax;
      const w = x[i]! * x[i]!;
      sumLX += w * x[i]! * l;
      sumL2 += w * l * l;
    }
    return [sumLX, sumL2];
  };
  let [sumLX, sumL2] = trial(-nmax / max, true);
  let scale = sumL2 ? sumLX / sumL2 : 0;
  let best = scale * sumLX;
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const iscale = -(nmax + 0.1 * is) / max;
    [sumLX, sumL2] = trial(iscale, false);
    if (sumL2 > 0 && sumLX * sumLX > best * sumL2) {
      trial(iscale, true);
      scale = sumLX / sumL2;
      best = scale * sumLX;
    }
  }
  return scale;
}

function q6_K(x: Float32Array, o: Uint8Array, dv: DataView, at: number): void {
  let maxScale = 0;
  let maxAbs = 0;
  for (let ib = 0; ib < 16; ib++) {
    const s = fitScale(x.subarray(16 * ib, 16 * ib + 16), 32, kL.subarray(16 * ib, 16 * ib + 16));
    kScales[ib] = s;
    if (Math.abs(s) > maxAbs) { maxAbs = Math.abs(s); maxScale = s; }
  }
  o.fill(0);
  if (maxAbs < 1e-15) return;
  const iscale = -128 / maxScale;
  dv.setUint16(at + 208, toHalf(1 / iscale), true);
  const d = fromHalf(dv.getUint16(at + 208, true));
  for (let ib = 0; ib < 16; ib++) dv.setInt8(at + 192 + ib, Math.min(127, nearestInt(iscale * kScales[ib]!)));
  for (let j = 0; j < 16; j++) {
    const dj = d * dv.getInt8(at + 192 + j);
    if (!dj) continue;
    for (let i = 0; i < 16; i++) kL[16 * j + i] = clampInt(nearestInt(x[16 * j + i]! / dj), -32, 31) + 32;
  }
  for (let h = 0; h < 2; h++) {
    const L = kL.subarray(128 * h);
    const ql = 64 * h;
    const qh = 128 + 32 * h;
    for (let l = 0; l < 32; l++) {
      o[ql + l] = (L[l]! & 15) | ((L[l + 64]! & 15) << 4);
      o[ql + l + 32] = (L[l + 32]! & 15) | ((L[l + 96]! & 15) << 4);
      o[qh + l] = (L[l]! >> 4) | ((L[l + 32]! >> 4) << 2) | ((L[l + 64]! >> 4) << 4) | ((L[l + 96]! >> 4) << 6);
    }
  }
}
function dq6_K(o: Uint8Array, dv: DataView, at: number, y: Float32Array): void {
  const d = fromHalf(dv.getUint16(at + 208, true));
  for (let h = 0; h < 2; h++) {
    const ql = 64 * h;
    const qh = 128 + 32 * h;
    const sc = at + 192 + 8 * h;
    for (let l = 0; l < 32; l++) {
      const is = l >> 4;
      const b = o[qh + l]!;
      const v1 = ((o[ql + l]! & 15) | ((b & 3) << 4)) - 32;
      const v2 = ((o[ql + l + 32]! & 15) | (((b >> 2) & 3) << 4)) - 32;
      const v3 = ((o[ql + l]! >> 4) | (((b >> 4) & 3) << 4)) - 32;
      const v4 = ((o[ql + l + 32]! >> 4) | (((b >> 6) & 3) << 4)) - 32;
      y[128 * h + l] = d * dv.getInt8(sc + is) * v1;
      y[128 * h + l + 32] = d * dv.getInt8(sc + is + 2) * v2;
      y[128 * h + l + 64] = d * dv.getInt8(sc + is + 4) * v3;
      y[128 * h + l + 96] = d * dv.getInt8(sc + is + 6) * v4;
    }
  }
}

const QUANTIZE: Record<GgmlBlockType, Quantize> = { Q4_0: q4_0, Q5_0: q5_0, Q5_1: q5_1, Q8_0: q8_0, Q4_K: q4_K, Q5_K: q5_K, Q6_K: q6_K };
const DEQUANTIZE: Record<GgmlBlockType, Dequantize> = { Q4_0: dq4_0, Q5_0: dq5_0, Q5_1: dq5_1, Q8_0: dq8_0, Q4_K: dq4_K, Q5_K: dq5_K, Q6_K: dq6_K };
