// Which fine-tuned LLM weights an MG-LLaVA checkpoint carries, as a short hash: a quantized LLM
// folder records the fingerprint of the checkpoint whose llm.* tensors it was made from, so that
// loading it beside another checkpoint is an error instead of silently using other weights.
// The hash covers every llm.* tensor's name, dtype and shape, the whole bytes of the small ones
// (norms, biases) and the first and last 4 KiB of the large ones; it reads a few MB even for a
// 7B model, and is the same for a .pth and a .safetensors holding the same tensors.

import { createHash } from 'node:crypto';
import { WeightStore, TensorRef, readBytes } from '../../weights/types.js';
import { readRange } from '../../weights/file-io.js';

const PREFIX = 'llm.';
const WHOLE = 64 * 1024;
const EDGE = 4096;

export function hasLlmTensors(checkpoint: WeightStore): boolean {
  return checkpoint.keys().some((k) => k.startsWith(PREFIX));
}

/** sha256 (hex, first 32 digits) of the checkpoint's llm.* tensors; null when it has none. */
export function checkpointFingerprint(checkpoint: WeightStore): string | null {
  const keys = checkpoint.keys().filter((k) => k.startsWith(PREFIX)).sort();
  if (keys.length === 0) return null;
  const h = createHash('sha256');
  for (const k of keys) {
    const t = checkpoint.get(k)!;
    h.update(`${k}\0${t.dtype}\0${t.shape.join(',')}\0`);
    for (const part of sample(t)) h.update(part);
  }
  return h.digest('hex').slice(0, 32);
}

function sample(t: TensorRef): Uint8Array[] {
  const len = t.source.kind === 'file' ? t.source.length : t.source.bytes.length;
  if (len <= WHOLE) return [readBytes(t)];
  if (t.source.kind === 'memory') return [t.source.bytes.subarray(0, EDGE), t.source.bytes.subarray(len - EDGE)];
  const { path, offset } = t.source;
  return [readRange(path, offset, EDGE, `tensor ${t.name}`), readRange(path, offset + len - EDGE, EDGE, `tensor ${t.name}`)];
}
