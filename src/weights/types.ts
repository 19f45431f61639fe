// What every weight format reader produces: named tensor references that say where the bytes
// live, so graphs can point onnxruntime at them (external data) instead of copying them.

import { DType, bytesToF32 } from '../core/tensor.js';
import { readRange } from './file-io.js';

export interface FileRange {
  readonly kind: 'file';
  /** Absolute path of the file holding the bytes (little-endian, contiguous, row-major). */
  readonly path: string;
  readonly offset: number;
  readonly length: number;
}

export interface MemoryBytes {
  readonly kind: 'memory';
  readonly bytes: Uint8Array;
}

export interface TensorRef {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly source: FileRange | MemoryBytes;
}

/** A read-only set of named tensors from one checkpoint (one file or a sharded set). */
export interface WeightStore {
  /** The path the user gave, for error messages. */
  readonly path: string;
  keys(): string[];
  get(name: string): TensorRef | undefined;
}

/** The tensor's raw little-endian bytes. */
export function readBytes(ref: TensorRef): Uint8Array {
  if (ref.source.kind === 'memory') return ref.source.bytes;
  const { path, offset, length } = ref.source;
  return readRange(path, offset, length, `tensor ${ref.name}`);
}

/** The tensor as float32 (bf16/f16/f64 upcast). */
export function readF32(ref: TensorRef): Float32Array {
  return bytesToF32(ref.dtype, readBytes(ref));
}

/** A store that answers from several stores in order; later ones override earlier ones. */
export class OverlayStore implements WeightStore {
  constructor(readonly path: string, private readonly layers: readonly WeightStore[]) {}
  keys(): string[] {
    const s = new Set<string>();
    for (const l of this.layers) for (const k of l.keys()) s.add(k);
    return [...s];
  }
  get(name: string): TensorRef | undefined {
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const t = this.layers[i]!.get(name);
      if (t) return t;
    }
    return undefined;
  }
}

/** A view of a store under a key prefix: `get('a')` reads `prefix + 'a'`. */
export class PrefixStore implements WeightStore {
  constructor(private readonly inner: WeightStore, private readonly prefix: string) {}
  get path(): string {
    return this.inner.path;
  }
  keys(): string[] {
    return this.inner.keys().filter((k) => k.startsWith(this.prefix)).map((k) => k.slice(this.prefix.length));
  }
  get(name: string): TensorRef | undefined {
    const t = this.inner.get(this.prefix + name);
    return t && { ...t, name: this.prefix + name };
  }
}
