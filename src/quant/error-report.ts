// The weights' error per format on one LLM folder: every decoder Linear weight and the output head
// (the embedding table when tied), read as float32 and passed through each format.
//
//   relative RMS error = sqrt(sum (w - w')^2 / sum w^2) over all those matrices
//   worst tensor       = the largest per-matrix relative RMS error (and its key)
//   bits per weight    = the bytes the format stores for them * 8 / their weight count
//
// `rowsPerMatrix` takes that many evenly spaced rows of each matrix and scales their sums by
// N / rows, so a 7B model is measured in minutes; 0 takes every row.

import { InputError } from '../core/errors.js';
import { openWeights } from '../weights/open.js';
import { RowReader } from '../weights/row-reader.js';
import type { TensorRef } from '../weights/types.js';
import { readLlmFolderConfig } from '../model/llm/causal-lm.js';
import { linearWeightRefs } from '../model/llm/linear-weights.js';
import { llmWeights } from '../model/llm-weights.js';
import { WeightFormat, matrixRole } from './formats.js';

export interface FormatError {
  format: string;
  /** storage types the format used, e.g. ["Q4_K", "Q6_K"] */
  types: string[];
  relRms: number;
  worst: { key: string; relRms: number };
  bitsPerWeight: number;
}

export interface ErrorReport {
  llm: string;
  matrices: number;
  weights: number;
  rowsPerMatrix: number;
  formats: FormatError[];
}

export interface ErrorReportOptions {
  /** an MG-LLaVA checkpoint whose llm.* tensors replace the folder's */
  checkpoint?: string;
  rowsPerMatrix?: number;
  /** after each matrix: (done, total, key) */
  onProgress?: (done: number, total: number, key: string) => void;
  signal?: AbortSignal;
}

/** The Linear weights of an LLM folder (under a checkpoint's llm.* tensors, if given), in layer order, then the head. */
export function linearWeights(llm: string, checkpoint?: string): { key: string; ref: TensorRef; layers: number }[] {
  const { config, quantization } = readLlmFolderConfig(llm);
  if (quantization) throw new InputError(`${llm}: already quantized (${quantization.bits}-bit); measure the original folder`, llm);
  const base = openWeights(llm);
  const store = checkpoint ? llmWeights(base, openWeights(checkpoint)) : base;
  return [...linearWeightRefs(store, config)].map(([key, ref]) => ({ key, ref, layers: config.layers }));
}

export async function weightErrorReport(llm: string, formats: readonly WeightFormat[], o: ErrorReportOptions = {}): Promise<ErrorReport> {
  const rowsWanted = o.rowsPerMatrix ?? 0;
  if (!Number.isInteger(rowsWanted) || rowsWanted < 0) throw new InputError(`rows per matrix must be a whole number >= 0, got ${rowsWanted}`);
  const mats = linearWeights(llm, o.checkpoint);
  const acc = formats.map((f) => ({ f, err: 0, bytes: 0, types: new Set<string>(), worst: { key: '', relRms: -1 } }));
  let sumW2 = 0;
  let weights = 0;
  const reader = new RowReader();
  try {
    for (let m = 0; m < mats.length; m++) {
      const { key, ref, layers } = mats[m]!;
      const [N, K] = ref.shape as [number, number];
      const role = matrixRole(key, layers);
      const take = rowsWanted === 0 || rowsWanted >= N ? N : rowsWanted;
      const rows = new Float32Array(take * K);
      if (take === N) rows.set(reader.read(ref, 0, N, K));
      else for (let i = 0; i < take; i++) rows.set(reader.read(ref, Math.floor(((i + 0.5) * N) / take), 1, K), i * K);
      const weight = N / take;
      let w2 = 0;
      for (let i = 0; i < rows.length; i++) w2 += rows[i]! * rows[i]!;
      sumW2 += w2 * weight;
      weights += N * K;
      for (const a of acc) {
        const back = a.f.roundTrip(rows, take, K, role);
        let e2 = 0;
        for (let i = 0; i < rows.length; i++) {
          const d = rows[i]! - back[i]!;
          e2 += d * d;
        }
        a.err += e2 * weight;
        a.bytes += a.f.bytes(N, K, role);
        a.types.add(a.f.typeOf(role, K));
        const rel = w2 > 0 ? Math.sqrt(e2 / w2) : 0;
        if (rel > a.worst.relRms) a.worst = { key, relRms: rel };
      }
      o.onProgress?.(m + 1, mats.length, key);
      await new Promise((r) => setImmediate(r));
      if (o.signal?.aborted) throw new InputError('interrupted');
    }
  } finally {
    reader.close();
  }
  return {
    llm,
    matrices: mats.length,
    weights,
    rowsPerMatrix: rowsWanted,
    formats: acc.map((a) => ({
      format: a.f.name,
      types: [...a.types].sort(),
      relRms: sumW2 > 0 ? Math.sqrt(a.err / sumW2) : 0,
      worst: a.worst,
      bitsPerWeight: (a.bytes * 8) / weights,
    })),
  };
}
