// `mgllava export`: a trained model folder -> one self-contained folder (train/export-model.ts).

import { exportModel, ExportDType } from '../train/export-model.js';

export interface ExportArgs {
  model: string;
  out: string;
  dtype: ExportDType;
  quiet?: boolean;
}

export function runExport(a: ExportArgs): void {
  const r = exportModel(a.model, a.out, { dtype: a.dtype });
  if (!a.quiet) process.stderr.write(`wrote ${r.tensors} tensors (${(r.bytes / 2 ** 20).toFixed(1)} MiB, ${a.dtype.toLowerCase()}) to ${r.out}\n`);
  process.stdout.write(`${r.out}\n`);
}
