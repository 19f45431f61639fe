// LLM weights as the decoder graph takes them: float tensors through Params, and the linear
// layers either as float matrices (FusedMatMul) or, in a folder written by `mgllava quantize`, as
// block-quantized matrices for onnxruntime's MatMulNBits.
//
// The quantized folder's format (version 1): config.json carries
//   "quantization_config": { "quant_method": "mgllava-matmulnbits", "format_version": 1,
//     "bits": 4 | 8, "block_size": 128, "symmetric": false, "checkpoint_llm_fingerprint": ... }
// (format_version 2 adds "head_bits": 4 | 8, the output head's own bits, same block and scheme;
// version 1 readers refuse such a folder rather than reading its head at the wrong width)
// and model.safetensors holds, for each quantized Linear weight `X.weight` [N, K], the tensors
// `X.weight.qweight` (U8 [N, blocks, blob]), `X.weight.scales` (F32 [N, blocks]) and, unless
// symmetric, `X.weight.zero_points` (U8 [N, packed bytes]) as src/weights/nbits.ts describes;
// every other tensor (embeddings, norms, biases) as it was.

import { Graph, Value } from '../../graph/graph.js';
import { linear, matMulNBits } from '../../graph/blocks.js';
import { InputError } from '../../core/errors.js';
import { DType } from '../../core/tensor.js';
import { WeightStore } from '../../weights/types.js';
import { NBits, nbitsShapes } from '../../weights/nbits.js';
import { Params, TrainableInputs } from '../params.js';

export const QUANT_METHOD = 'mgllava-matmulnbits';
/** What a folder without a head of its own says; a head of other bits writes HEAD_FORMAT_VERSION. */
export const QUANT_FORMAT_VERSION = 1;
export const HEAD_FORMAT_VERSION = 2;
export const QWEIGHT = '.qweight';
export const SCALES = '.scales';
export const ZERO_POINTS = '.zero_points';
/** The output head's module: its weight is the one `head_bits` applies to. */
export const HEAD_MODULE = 'lm_head';

/** What a quantized folder's config.json says about its weights. */
export interface QuantizationInfo {
  bits: NBits;
  blockSize: number;
  symmetric: boolean;
  /** The output head's bits when they differ from `bits` (format_version 2). */
  headBits?: NBits;
  /**
   * Fingerprint of the MG-LLaVA checkpoint whose `llm.*` tensors were applied before quantizing
   * (src/model/llm/quantize.ts, checkpointFingerprint), or null when none was.
   */
  checkpointFingerprint: string | null;
}

/** How the decoder runs quantized linears. */
export interface QuantizedLinears {
  bits: NBits;
  blockSize: number;
  /** MatMulNBits accuracy_level: 4 = int8 compute (default), 0 = float32. */
  accuracyLevel: number;
  /** The output head's bits, when not `bits`. */
  headBits?: NBits;
}

/** How the decoder runs a folder's quantized linears. */
export function quantizedLinears(q: QuantizationInfo, accuracyLevel = 4): QuantizedLinears {
  return { bits: q.bits, blockSize: q.blockSize, accuracyLevel, ...(q.headBits ? { headBits: q.headBits } : {}) };
}

/** The quantization block of a config.json, if any; `source` names the file in errors. */
export function readQuantizationConfig(json: Record<string, unknown>, source: string): QuantizationInfo | undefined {
  const q = json['quantization_config'];
  if (q === undefined || q === null) return undefined;
  const bad = (msg: string) => new InputError(`${source}: quantization_config ${msg}`, source);
  if (typeof q !== 'object' || Array.isArray(q)) throw bad('is not an object');
  const o = q as Record<string, unknown>;
  if (o['quant_method'] !== QUANT_METHOD) {
    throw bad(`has quant_method ${JSON.stringify(o['quant_method'])}; only folders written by \`mgllava quantize\` (${QUANT_METHOD}) can be read`);
  }
  const version = o['format_version'];
  if (version !== QUANT_FORMAT_VERSION && version !== HEAD_FORMAT_VERSION) throw bad(`has format_version ${JSON.stringify(version)}, this version reads ${QUANT_FORMAT_VERSION} and ${HEAD_FORMAT_VERSION}`);
  const bits = o['bits'];
  if (bits !== 4 && bits !== 8) throw bad(`bits must be 4 or 8, got ${JSON.stringify(bits)}`);
  const headBits = o['head_bits'] ?? bits;
  if (headBits !== 4 && headBits !== 8) throw bad(`head_bits must be 4 or 8, got ${JSON.stringify(headBits)}`);
  if (headBits !== bits && version !== HEAD_FORMAT_VERSION) throw bad(`has head_bits ${headBits} but format_version ${JSON.stringify(version)} (head_bits needs ${HEAD_FORMAT_VERSION})`);
  const bs = o['block_size'];
  if (typeof bs !== 'number' || !Number.isInteger(bs) || bs < 16 || (bs & (bs - 1)) !== 0) throw bad(`block_size must be a power of two >= 16, got ${JSON.stringify(bs)}`);
  const fp = o['checkpoint_llm_fingerprint'] ?? null;
  if (fp !== null && typeof fp !== 'string') throw bad('checkpoint_llm_fingerprint must be a string or null');
  return { bits, blockSize: bs, symmetric: o['symmetric'] === true, ...(headBits !== bits ? { headBits } : {}), checkpointFingerprint: fp };
}

/** Rows [start, start + count) of a matrix. */
interface RowRange {
  start: number;
  count: number;
}

/** Params for the decoder: float tensors as Params gives them, plus linears that may be quantized. */
export class LlmParams {
  private readonly p: Params;

  constructor(
    private readonly g: Graph,
    private readonly store: WeightStore,
    private readonly quant?: QuantizedLinears,
    private readonly prefix = '',
    /** Training: the tensors fed as inputs (model/params.ts). */
    private readonly trainable?: TrainableInputs,
    /**
     * Training with LoRA: alpha / r. A linear whose store holds `<module>.lora_A.weight` and
     * `.lora_B.weight` then adds scale * (x A^T) B^T (src/train/lora.ts).
     */
    private readonly loraScale?: number,
  ) {
    this.p = new Params(g, store, prefix, trainable);
  }

  sub(prefix: string): LlmParams {
    return new LlmParams(this.g, this.store, this.quant, this.prefix + prefix, this.trainable, this.loraScale);
  }

  /** y + scale * (x A^T) B^T when the module has LoRA adapters (training only). */
  private withLora(x: Value, y: Value, module: string, out: number, inp: number, name: string): Value {
    if (this.loraScale === undefined) return y;
    const a = this.store.get(`${this.prefix}${module}.lora_A.weight`);
    if (!a) return y;
    const r = a.shape[0]!;
    const down = linear(this.g, x, this.take(`${module}.lora_A.weight`, [r, inp]), null, `${name}.lora_a`);
    const upd = linear(this.g, down, this.take(`${module}.lora_B.weight`, [out, r]), null, `${name}.lora_b`);
    return this.g.op1('Add', [y, this.g.op1('Mul', [upd, this.g.constF32([this.loraScale], [])])], {}, { name: `${name}.lora` });
  }

  take(key: string, shape: readonly number[]): Value {
    return this.p.take(key, shape);
  }

  raw(key: string, shape: readonly number[]): { value: Value; dtype: DType } {
    return this.p.raw(key, shape);
  }

  /** Whether the Linear weight `module.weight` is stored quantized. */
  isQuantized(module: string): boolean {
    return this.quant !== undefined && this.store.get(`${this.prefix}${module}.weight${QWEIGHT}`) !== undefined;
  }

  /**
   * y = x @ W^T (+ b) for the Linear `module` (weight [out, inp], bias [out] when `bias`):
   * MatMulNBits on the quantized weight when the folder has one, else FusedMatMul.
   */
  linear(x: Value, module: string, out: number, inp: number, bias: boolean, name: string): Value {
    const b = bias ? this.take(`${module}.bias`, [out]) : null;
    if (!this.isQuantized(module)) return this.withLora(x, linear(this.g, x, this.take(`${module}.weight`, [out, inp]), b, name), module, out, inp, name);
    const y = this.nbits(x, module, out, inp, { start: 0, count: out }, `${name}.mm`);
    return this.withLora(x, b ? this.g.op1('Add', [y, b], {}, { name }) : y, module, out, inp, name);
  }

  /**
   * A fused Linear (no bias) whose output splits into `parts` along its last axis, e.g. Phi-3's
   * qkv_proj or gate_up_proj. Quantized, each part is a MatMulNBits of its own over its rows of
   * the stored matrix (the initializers point into the same bytes of the file), so the product
   * is never written whole and then copied apart (a Split of 43 MB per layer at a 666-token
   * Phi-3-mini prefill; in interleaved runs the two forms measured within noise of each other,
   * as the first writes into fresh memory moved to the next node). The values are the same:
   * each output column comes from its own row of weights either way. Float, it is one
   * FusedMatMul and a Split.
   */
  linearParts(x: Value, module: string, parts: readonly number[], inp: number, name: string): Value[] {
    const out = parts.reduce((a, b) => a + b, 0);
    if (!this.isQuantized(module)) {
      const y = this.withLora(x, linear(this.g, x, this.take(`${module}.weight`, [out, inp]), null, `${name}_proj`), module, out, inp, `${name}_proj`);
      return this.g.op('Split', [y, this.g.constI64(parts)], { axis: -1 }, { outputs: parts.length, name });
    }
    let start = 0;
    return parts.map((count, i) => {
      const y = this.nbits(x, module, out, inp, { start, count }, `${name}_proj.${i}.mm`);
      start += count;
      return y;
    });
  }

  /** MatMulNBits over rows [start, start + count) of the quantized weight `module.weight` [out, inp]. */
  private nbits(x: Value, module: string, out: number, inp: number, rows: RowRange, name: string): Value {
    const q = this.quant!;
    const key = `${module}.weight`;
    const bits = this.prefix + module === HEAD_MODULE && q.headBits ? q.headBits : q.bits;
    const shapes = nbitsShapes(out, inp, { bits, blockSize: q.blockSize, symmetric: this.store.get(`${this.prefix}${key}${ZERO_POINTS}`) === undefined });
    const qweight = this.tensor(key + QWEIGHT, 'U8', shapes.qweight, rows, (n) => [n, ...shapes.qweight.slice(1)]);
    const scales = this.tensor(key + SCALES, 'F32', shapes.scales, rows, (n) => [n * shapes.scales[1]!]);
    const zp = shapes.zeroPoints ? this.tensor(key + ZERO_POINTS, 'U8', shapes.zeroPoints, rows, (n) => [n * shapes.zeroPoints![1]!]) : null;
    return matMulNBits(this.g, x, qweight, scales, zp, { K: inp, N: rows.count, bits, blockSize: q.blockSize, accuracyLevel: q.accuracyLevel }, name);
  }

  /**
   * Rows [start, start + count) of a stored tensor of the given dtype and shape (rows = first
   * axis) as an initializer (external data when on disk) of dims `dims(count)`.
   */
  private tensor(key: string, dtype: DType, shape: readonly number[], rows: RowRange, dims: (rows: number) => number[]): Value {
    const full = this.prefix + key;
    const path = this.store.path;
    const t = this.store.get(full);
    if (!t) throw new InputError(`${path}: missing tensor ${full} (expected ${dtype} [${shape.join(', ')}])`, path);
    if (t.dtype !== dtype || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new InputError(`${path}: tensor ${full} is ${t.dtype} [${t.shape.join(', ')}], expected ${dtype} [${shape.join(', ')}] (bits or block size do not match quantization_config?)`, path);
    }
    const whole = rows.start === 0 && rows.count === shape[0];
    const rowBytes = (t.source.kind === 'file' ? t.source.length : t.source.bytes.byteLength) / shape[0]!;
    const [from, length] = [rows.start * rowBytes, rows.count * rowBytes];
    const data = t.source.kind === 'file'
      ? { kind: 'external' as const, path: t.source.path, offset: t.source.offset + from, length }
      : { kind: 'inline' as const, bytes: t.source.bytes.subarray(from, from + length) };
    return this.g.initializer(whole ? full : `${full}.rows${rows.start}-${rows.start + rows.count}`, dtype, dims(rows.count), data);
  }
}
