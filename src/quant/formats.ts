// The weight formats whose error the quantization report measures, each as "what a matrix reads
// back as" and "how many bytes it takes":
//
// - ours: onnxruntime MatMulNBits blocks (src/weights/nbits.ts), `q{bits}-b{block}-{zp|sym}` with
//   float32 scales, `...-f16` with scales fp16 holds (what the op takes with fp16 inputs), and
//   `...-h8` with the output head at 8 bits (`mgllava quantize --head-bits 8`);
// - llama.cpp's: `Q4_0`, `Q8_0` and `Q4_K_M` as its quantizer makes them from a float model
//   (llama_tensor_get_type's per-tensor choices; blocks from src/quant/ggml-blocks.ts):
//   the output head in Q6_K (Q8_0 stays Q8_0); for Q4_K_M also the fused qkv in Q5_K, and v and
//   down in Q6_K in the layers use_more_bits picks (the first and last eighth and every third
//   between); a row length that is not a multiple of 256 falls back from Q4_K / Q5_K / Q6_K to
//   Q5_0 / Q5_1 / Q8_0, and a row length none of the blocks divides to F16 (llama.cpp's own
//   quantizer stops on such a row in Q4_0 and Q8_0; the report keeps going in F16, as its
//   k-quant fallback does).
//
// Formats see one matrix [N, K] at a time with its role (which layer, which projection).

import { NBits, NBitsOptions, blobSize, dequantizeNBits, nBlocks, quantizeNBits, zeroPointRowBytes } from '../weights/nbits.js';
import { GGML_BLOCK, GgmlBlockType, dequantizeGgml, quantizeGgml } from './ggml-blocks.js';
import { fromHalf, toHalf } from './half.js';

/** Which matrix of the model: `layer` is absent for the output head. */
export interface MatrixRole {
  kind: 'q' | 'k' | 'v' | 'qkv' | 'o' | 'gate' | 'up' | 'gate_up' | 'down' | 'head';
  layer?: number;
  layers: number;
}

export interface WeightFormat {
  readonly name: string;
  /** The storage type this matrix gets (one name for ours; the ggml block type for llama.cpp's). */
  typeOf(role: MatrixRole, K: number): string;
  /** rows [rows, K] -> what the format reads them back as. */
  roundTrip(rows: Float32Array, rowCount: number, K: number, role: MatrixRole): Float32Array;
  /** Bytes of one [N, K] matrix. */
  bytes(N: number, K: number, role: MatrixRole): number;
}

/** A format name's quantizer options (quantizeLlm's). */
export interface NBitsName { bits: NBits; blockSize: number; symmetric: boolean; headBits: NBits }

/** `q{bits}-b{block}-{zp|sym}[-h8]` -> quantizer options (the head at `bits` without -h8); undefined for any other name. */
export function parseNBitsName(name: string): NBitsName | undefined {
  const m = /^q([48])-b(\d+)-(zp|sym)(-h8)?$/.exec(name);
  if (!m) return undefined;
  const bits = Number(m[1]) as NBits;
  return { bits, blockSize: Number(m[2]), symmetric: m[3] === 'sym', headBits: m[4] ? 8 : bits };
}

/** Our MatMulNBits formats; `headBits`: the output head's own bits. */
export function nbitsFormat(bits: NBits, blockSize: number, symmetric: boolean, scaleDtype: 'f32' | 'f16' = 'f32', headBits: NBits = bits): WeightFormat {
  const name = `q${bits}-b${blockSize}-${symmetric ? 'sym' : 'zp'}${scaleDtype === 'f16' ? '-f16' : ''}${headBits !== bits ? `-h${headBits}` : ''}`;
  const bitsOf = (role: MatrixRole) => (role.kind === 'head' ? headBits : bits);
  const opts = (role: MatrixRole): NBitsOptions => ({ bits: bitsOf(role), blockSize, symmetric, scaleDtype });
  return {
    name,
    typeOf: (role) => `MatMulNBits ${bitsOf(role)}-bit`,
    roundTrip: (rows, n, K, role) => dequantizeNBits(quantizeNBits(rows, n, K, opts(role))),
    bytes: (N, K, role) => {
      const b = bitsOf(role);
      const nb = nBlocks(K, blockSize);
      return N * (nb * blobSize(blockSize, b) + nb * (scaleDtype === 'f16' ? 2 : 4) + (symmetric ? 0 : zeroPointRowBytes(nb, b)));
    },
  };
}

export const LLAMACPP_FTYPES = ['Q4_0', 'Q8_0', 'Q4_K_M'] as const;
export type LlamaCppFtype = (typeof LLAMACPP_FTYPES)[number];

/** llama.cpp's use_more_bits: the layers Q4_K_M gives v and down more bits. */
export function useMoreBits(layer: number, layers: number): boolean {
  const e = Math.floor(layers / 8);
  return layer < e || layer >= Math.floor((7 * layers) / 8) || (layer - e) % 3 === 2;
}

const K_FALLBACK: Partial<Record<GgmlBlockType, GgmlBlockType>> = { Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' };

/** The block type llama.cpp's quantizer gives this matrix for `ftype` (F16: none fits the rows). */
export function llamaCppType(ftype: LlamaCppFtype, role: MatrixRole, K: number): GgmlBlockType | 'F16' {
  let t: GgmlBlockType;
  if (ftype === 'Q8_0') t = 'Q8_0';
  else if (role.kind === 'head') t = K % 256 === 0 ? 'Q6_K' : 'Q8_0';
  else if (ftype === 'Q4_0') t = 'Q4_0';
  else if (role.kind === 'qkv') t = 'Q5_K';
  else if ((role.kind === 'v' || role.kind === 'down') && useMoreBits(role.layer ?? 0, role.layers)) t = 'Q6_K';
  else t = 'Q4_K';
  if (GGML_BLOCK[t].values === 256 && K % 256 !== 0) t = K_FALLBACK[t]!;
  return K % GGML_BLOCK[t].values === 0 ? t : 'F16';
}

const toF16 = (x: Float32Array): Float32Array => x.map((v) => fromHalf(toHalf(v)));

export function llamaCppFormat(ftype: LlamaCppFtype): WeightFormat {
  return {
    name: ftype,
    typeOf: (role, K) => llamaCppType(ftype, role, K),
    roundTrip: (rows, _n, K, role) => {
      const t = llamaCppType(ftype, role, K);
      return t === 'F16' ? toF16(rows) : dequantizeGgml(t, quantizeGgml(t, rows));
    },
    bytes: (N, K, role) => {
      const t = llamaCppType(ftype, role, K);
      return t === 'F16' ? N * K * 2 : (N * K * GGML_BLOCK[t].bytes) / GGML_BLOCK[t].values;
    },
  };
}

/** Every format the report knows, by name: ours at 4 and 8 bits, blocks 32/64/128, then llama.cpp's. */
export function allFormats(): WeightFormat[] {
  const ours: WeightFormat[] = [];
  for (const bits of [4, 8] as const) {
    for (const block of [32, 64, 128]) {
      for (const sym of [false, true]) for (const sd of ['f32', 'f16'] as const) ours.push(nbitsFormat(bits, block, sym, sd));
    }
  }
  for (const block of [32, 64, 128]) for (const sym of [false, true]) ours.push(nbitsFormat(4, block, sym, 'f32', 8));
  return [...ours, ...LLAMACPP_FTYPES.map(llamaCppFormat)];
}

/** Formats by name (comma-separated list), in the order given; unknown names throw with the list of known ones. */
export function formatsByName(names: readonly string[]): WeightFormat[] {
  const all = allFormats();
  return names.map((n) => {
    const f = all.find((x) => x.name.toLowerCase() === n.toLowerCase());
    if (!f) throw new RangeError(`unknown format ${n}; known: ${all.map((x) => x.name).join(', ')}`);
    return f;
  });
}

/** The role of an LLM folder's Linear weight from its key (HF names; the head is lm_head.weight). */
export function matrixRole(key: string, layers: number): MatrixRole {
  if (key === 'lm_head.weight') return { kind: 'head', layers };
  const m = /^model\.layers\.(\d+)\.(?:self_attn|mlp)\.(q|k|v|qkv|o|gate|up|gate_up|down)_proj\.weight$/.exec(key);
  if (!m) throw new RangeError(`not a decoder Linear weight: ${key}`);
  return { kind: m[2] as MatrixRole['kind'], layer: Number(m[1]), layers };
}
