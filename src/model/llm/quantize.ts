// `mgllava quantize`: an LLM folder (optionally with an MG-LLaVA checkpoint's fine-tuned llm.*
// weights over it) -> a folder with the same config and tokenizer whose Linear weights are
// block-quantized for onnxruntime's MatMulNBits (format: src/model/llm/quantized.ts), which
// CausalLM.load, loadModel and `mgllava chat --llm` read like any LLM folder.
//
// The embedding table, norms and biases keep their dtype. The folder appears whole or not at
// all: everything is written into a hidden temporary folder beside it, renamed at the end, and
// removed on any failure.

import { chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError } from '../../core/errors.js';
import { openWeights } from '../../weights/open.js';
import { TensorRef } from '../../weights/types.js';
import { readRange } from '../../weights/file-io.js';
import { NBits, NBitsOptions, checkNBitsOptions, nbitsShapes, quantizeNBits } from '../../weights/nbits.js';
import { SafetensorsStreamWriter, TensorSpec } from '../../weights/safetensors-stream.js';
import { Reusable, RowReader } from '../../weights/row-reader.js';
import { llmWeights } from '../llm-weights.js';
import { readLlmFolderConfig } from './causal-lm.js';
import { linearWeightRefs } from './linear-weights.js';
import { HEAD_FORMAT_VERSION, HEAD_MODULE, QUANT_FORMAT_VERSION, QUANT_METHOD, QWEIGHT, SCALES, ZERO_POINTS } from './quantized.js';
import { checkpointFingerprint } from './checkpoint-fingerprint.js';

/**
 * The default block: 128 weights per scale and zero point (q4-b128-zp). On the Phi-3-mini shape
 * its next-token KL against the float model is 0.95 of llama.cpp's Q4_0 (block 32 with zero
 * points: 0.87; block 32 without them, Q4_0's own information: 1.01), and the larger block runs
 * onnxruntime's MatMulNBits faster (docs/BENCHMARKS.md, "Answer quality per weight format").
 */
export const DEFAULT_BLOCK_SIZE = 128;

/**
 * The output head at 8 bits by default: with it, block 128 goes from 1.04x llama.cpp's Q4_0 KL
 * on the Vicuna-7B shape (0.95x on Phi-3-mini) to 0.95x (0.86x), for 2% more bytes.
 */
export const DEFAULT_HEAD_BITS = 8;

export interface QuantizeLlmOptions {
  /** The LLM folder (config.json, tokenizer, weights). */
  llm: string;
  /** An MG-LLaVA checkpoint whose llm.* tensors replace the folder's before quantizing. */
  checkpoint?: string;
  /** The folder to create; its parent must exist and it must not. */
  out: string;
  /** 4 (default) or 8. */
  bits?: NBits;
  /** Weights per scale along the input dimension (default DEFAULT_BLOCK_SIZE, 128). */
  blockSize?: number;
  /** No zero points (scale from max |w|); default false: min/max with a zero point per block. */
  symmetric?: boolean;
  /**
   * The output head's bits, with the same block and scheme (default DEFAULT_HEAD_BITS, 8): it
   * spends ~2% more bytes on a 7B to take the head's share of the drift away, as llama.cpp's
   * Q6_K head does. 4 holds the head at 4 bits like the rest.
   */
  headBits?: NBits;
  /** Called after each tensor written: (done, total, tensor name). */
  onProgress?: (done: number, total: number, name: string) => void;
  /** Stops between tensors (the partial output is removed). */
  signal?: AbortSignal;
}

export interface QuantizeLlmResult {
  out: string;
  /** Tensors of the source written (quantized or copied). */
  tensors: number;
  /** Of which quantized. */
  quantized: number;
  /** Number of llm.* tensors taken from the checkpoint. */
  fromCheckpoint: number;
  /** Size of the written weights file. */
  bytes: number;
}

/** Weight files never copied from the LLM folder (the weights are rewritten). */
const WEIGHT_FILE = /\.(safetensors|bin|pth|pt|ckpt|gguf|onnx|onnx_data|h5|msgpack)$|\.index\.json$/i;
/** Rows quantized at a time: bounds the memory of one tensor's float32 copy. */
const ROWS_PER_PIECE = 1024;

export async function quantizeLlm(o: QuantizeLlmOptions): Promise<QuantizeLlmResult> {
  const nb: NBitsOptions = { bits: o.bits ?? 4, blockSize: o.blockSize ?? DEFAULT_BLOCK_SIZE, symmetric: o.symmetric ?? false };
  const headNb: NBitsOptions = { ...nb, bits: o.headBits ?? (Math.max(nb.bits, DEFAULT_HEAD_BITS) as NBits) };
  const nbOf = (key: string) => (key === `${HEAD_MODULE}.weight` ? headNb : nb);
  try {
    checkNBitsOptions(nb);
    checkNBitsOptions(headNb);
  } catch (e) {
    throw new InputError((e as Error).message);
  }
  const out = resolve(o.out);
  const parent = dirname(out);
  if (existsSync(out)) throw new InputError(`${o.out}: already exists; give a new folder to create (--out)`, o.out);
  if (!existsSync(parent) || !statSync(parent).isDirectory()) throw new InputError(`${o.out}: folder ${parent} does not exist (--out)`, o.out);
  if (!existsSync(o.llm) || !statSync(o.llm).isDirectory()) throw new InputError(`${o.llm}: not an LLM folder (--llm)`, o.llm);

  const { config, quantization, json } = readLlmFolderConfig(o.llm);
  if (quantization) throw new InputError(`${o.llm}: already quantized (${quantization.bits}-bit); quantize the original folder`, o.llm);
  const base = openWeights(o.llm);
  const ckpt = o.checkpoint ? openWeights(o.checkpoint) : undefined;
  const store = ckpt ? llmWeights(base, ckpt) : base;
  const fromCheckpoint = ckpt ? ckpt.keys().filter((k) => k.startsWith('llm.')).length : 0;

  // The Linear weights: each layer's projections, and the output head (from the embedding table
  // when tied, so the head runs quantized too).
  const linears = linearWeightRefs(store, config);

  // Output tensors in the source's key order; each quantized weight becomes 2-3 tensors.
  const plan: { spec: TensorSpec; src: TensorRef; part?: 'q' | 's' | 'z' }[] = [];
  const addQuantized = (key: string, src: TensorRef) => {
    const [N, K] = src.shape as [number, number];
    const s = nbitsShapes(N, K, nbOf(key));
    plan.push({ spec: { name: key + QWEIGHT, dtype: 'U8', shape: s.qweight }, src, part: 'q' });
    plan.push({ spec: { name: key + SCALES, dtype: 'F32', shape: s.scales }, src, part: 's' });
    if (s.zeroPoints) plan.push({ spec: { name: key + ZERO_POINTS, dtype: 'U8', shape: s.zeroPoints }, src, part: 'z' });
  };
  const keys = store.keys();
  for (const k of keys) {
    const src = store.get(k)!;
    if (linears.has(k)) addQuantized(k, linears.get(k)!); // a tied head: from the embedding table
    else plan.push({ spec: { name: k, dtype: src.dtype, shape: src.shape }, src });
  }
  if (!keys.includes('lm_head.weight')) addQuantized('lm_head.weight', linears.get('lm_head.weight')!);

  const tmp = mkdtempSync(join(parent, `.${basename(out)}.partial-`));
  let writer: SafetensorsStreamWriter | undefined;
  let rowReader: RowReader | undefined;
  try {
    for (const f of readdirSync(o.llm)) {
      const p = join(o.llm, f);
      if (f === 'config.json' || f.startsWith('.') || WEIGHT_FILE.test(f) || !statSync(p).isFile()) continue;
      copyFileSync(p, join(tmp, f));
    }
    const qc = {
      quant_method: QUANT_METHOD,
      format_version: headNb.bits !== nb.bits ? HEAD_FORMAT_VERSION : QUANT_FORMAT_VERSION,
      bits: nb.bits,
      ...(headNb.bits !== nb.bits ? { head_bits: headNb.bits } : {}),
      block_size: nb.blockSize,
      symmetric: nb.symmetric,
      checkpoint_llm_fingerprint: ckpt ? checkpointFingerprint(ckpt) : null,
      source: { llm: resolve(o.llm), checkpoint: o.checkpoint ? resolve(o.checkpoint) : null },
    };
    writeFileSync(join(tmp, 'config.json'), `${JSON.stringify({ ...json, quantization_config: qc }, null, 2)}\n`);

    const file = join(tmp, 'model.safetensors');
    writer = SafetensorsStreamWriter.create(file, plan.map((p) => p.spec), { format: 'pt', 'mgllava.quantization': JSON.stringify(qc) });
    const total = linears.size + plan.filter((p) => !p.part).length;
    // Buffers reused from piece to piece: fresh ones cost a page fault per 4 KiB each time.
    rowReader = new RowReader();
    const reader = rowReader;
    const pieceQ = new Reusable((n) => new Uint8Array(n));
    let done = 0;
    let bytes = 0;
    for (let i = 0; i < plan.length; i++) {
      const item = plan[i]!;
      if (!item.part) {
        const b = tensorBytes(item.src);
        writer.append(b);
        bytes += b.byteLength;
        o.onProgress?.(++done, total, item.spec.name);
      } else if (item.part === 'q') {
        // qweight rows are written as they are quantized; scales and zero points after them.
        const [N, K] = item.src.shape as [number, number];
        const base = item.spec.name.slice(0, -QWEIGHT.length);
        const qo = nbOf(base);
        const s = nbitsShapes(N, K, qo);
        const scales = new Float32Array(N * s.scales[1]!);
        const zps = s.zeroPoints ? new Uint8Array(N * s.zeroPoints[1]!) : undefined;
        for (let r = 0; r < N; r += ROWS_PER_PIECE) {
          const rows = Math.min(ROWS_PER_PIECE, N - r);
          const m = quantizeNBits(reader.read(item.src, r, rows, K), rows, K, qo, {
            qweight: pieceQ.get(rows * s.qweight[1]! * s.qweight[2]!),
            scales: scales.subarray(r * s.scales[1]!),
            zeroPoints: zps?.subarray(r * s.zeroPoints![1]!),
          });
          writer.append(m.qweight);
        }
        writer.append(new Uint8Array(scales.buffer));
        if (zps) writer.append(zps);
        bytes += N * s.qweight[1]! * s.qweight[2]! + scales.byteLength + (zps?.byteLength ?? 0);
        i += qo.symmetric ? 1 : 2; // the scales (and zero points) entries are written
        o.onProgress?.(++done, total, base);
      }
      // Let signals (Ctrl-C) and progress output through between tensors.
      await new Promise((r) => setImmediate(r));
      if (o.signal?.aborted) throw new InputError(`interrupted; ${o.out} was not written`, o.out);
    }
    reader.close();
    writer.close();
    chmodSync(tmp, 0o755); // mkdtemp made it private
    renameSync(tmp, out);
    return { out, tensors: total, quantized: linears.size, fromCheckpoint, bytes };
  } catch (e) {
    rowReader?.close();
    writer?.abort();
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** The tensor's bytes as stored. */
function tensorBytes(t: TensorRef): Uint8Array {
  if (t.source.kind === 'memory') return t.source.bytes;
  return readRange(t.source.path, t.source.offset, t.source.length, `tensor ${t.name}`);
}
