// Turns checkpoint tensors into graph initializers: checks each shape against what the
// architecture expects, points onnxruntime at the bytes inside the weights file when it can
// (external data, no copy), and upcasts bf16/f16 to float32 with a Cast node, which
// onnxruntime folds once at load time.

import { Graph, Value } from '../graph/graph.js';
import { InputError } from '../core/errors.js';
import { WeightStore } from '../weights/types.js';
import { DType } from '../core/tensor.js';

/**
 * The tensors that training feeds as float32 graph inputs (updated at every step) instead of
 * initializers: those whose key `wants` accepts, named `namespace + key` in the graph (the
 * release's checkpoint names, e.g. `llm.` before the LLM's own keys).
 */
export class TrainableInputs {
  private readonly made = new Map<string, { value: Value; key: string; shape: readonly number[] }>();

  constructor(
    private readonly g: Graph,
    readonly wants: (key: string) => boolean,
    readonly namespace = '',
  ) {}

  input(key: string, shape: readonly number[]): Value {
    const name = this.namespace + key;
    const had = this.made.get(name);
    if (had) return had.value;
    const value = this.g.input(name, 'F32', shape);
    this.made.set(name, { value, key, shape: [...shape] });
    return value;
  }

  /** Every input made, in order: graph name, the key in its store, shape. */
  list(): { name: string; key: string; shape: readonly number[]; value: Value }[] {
    return [...this.made].map(([name, m]) => ({ name, ...m }));
  }
}

export class Params {
  constructor(
    private readonly g: Graph,
    private readonly store: WeightStore,
    /** Key prefix in the checkpoint, e.g. 'vision_model.' */
    private readonly prefix = '',
    /** Training: the tensors fed as inputs rather than stored as initializers. */
    private readonly trainable?: TrainableInputs,
  ) {}

  /** A view under a longer key prefix (for a sub-module). */
  sub(prefix: string): Params {
    return new Params(this.g, this.store, this.prefix + prefix, this.trainable);
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
    if (this.trainable?.wants(full)) return { value: this.trainable.input(full, t.shape), dtype: 'F32' };
    const data = t.source.kind === 'file'
      ? { kind: 'external' as const, path: t.source.path, offset: t.source.offset, length: t.source.length }
      : { kind: 'inline' as const, bytes: t.source.bytes };
    return { value: this.g.initializer(full, t.dtype, t.shape, data), dtype: t.dtype };
  }
}
