// Turns checkpoint tensors into graph initializers: checks each shape against what the
// architecture expects, points onnxruntime at the bytes inside the weights file when it can
// (external data, no copy), and upcasts bf16/f16 to float32 with a Cast node, which
// onnxruntime folds once at load time.

import { Graph, Value } from '../graph/graph.js';
import { InputError } from '../core/errors.js';
import { WeightStore } from '../weights/types.js';
import { DType } from '../core/tensor.js';

export class Params {
  constructor(
    private readonly g: Graph,
    private readonly store: WeightStore,
    /** Key prefix in the checkpoint, e.g. 'vision_model.' */
    private readonly prefix = '',
  ) {}

  /** A view under a longer key prefix (for a sub-module). */
  sub(prefix: string): Params {
    return new Params(this.g, this.store, this.prefix + prefix);
  }

  /** The tensor as a float32 graph value; its shape must equal `shape`. */
  take(key: string, shape: readonly number[]): Value {
    const { value, dtype } = this.raw(key, shape);
    return dtype === 'F32' ? value : this.g.op1('Cast', [value], { to: 1 }, { name: `${this.prefix}${key}.f32` });
  }

  /** The float tensor in its stored dtype (no upcast), for ops that read a few rows of it. */
  raw(key: string, shape: readonly number[]): { value: Value; dtype: DType } {
    const full = this.prefix + key;
    const t = this.store.get(full);
    if (!t) throw new InputError(`${this.store.path}: missing tensor ${full} (expected shape [${shape.join(', ')}])`, this.store.path);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new InputError(
        `${this.store.path}: tensor ${full} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`,
        this.store.path,
      );
    }
    if (!['F32', 'BF16', 'F16', 'F64'].includes(t.dtype)) {
      throw new InputError(`${this.store.path}: tensor ${full} is ${t.dtype}, expected a float type`, this.store.path);
    }
    const data = t.source.kind === 'file'
      ? { kind: 'external' as const, path: t.source.path, offset: t.source.offset, length: t.source.length }
      : { kind: 'inline' as const, bytes: t.source.bytes };
    return { value: this.g.initializer(full, t.dtype, t.shape, data), dtype: t.dtype };
  }
}
