// Static shape inference on the graph IR, as far as it can be known before a run: each dim is a
// number, a named symbol from a graph input's declared dims (`'seq'`: equal names are equal
// sizes), or a fresh symbol `?n` where the size depends on data (e.g. a Reshape's -1 over
// symbolic dims); an unknown shape is undefined. Also the values of small int64 tensors where
// they are static (shape constants, `Shape` of a known shape). The reverse-mode pass
// (autodiff.ts) uses it to pick static forms of its rules (ranks, axes to reduce) and falls back
// to run-time shape ops where a size is only known at run time.

import { Graph, GraphNode, Value } from './graph.js';

export type SDim = number | string;
export type SShape = readonly SDim[];

type ShapeFn = (s: ShapeInfer, n: GraphNode) => (SShape | undefined)[];

export class ShapeInfer {
  private readonly producer = new Map<string, { node: GraphNode; index: number }>();
  private readonly shapes = new Map<string, SShape | undefined>();
  private readonly ints = new Map<string, number[] | undefined>();
  private fresh = 0;
  private indexed = 0;

  constructor(private readonly g: Graph) {}

  /** Index nodes added since the last call (the graph may grow while we look at it). */
  private index(): void {
    const nodes = this.g.nodeList;
    for (; this.indexed < nodes.length; this.indexed++) {
      const n = nodes[this.indexed]!;
      n.outputs.forEach((o, i) => this.producer.set(o, { node: n, index: i }));
    }
  }

  producerOf(name: string): { node: GraphNode; index: number } | undefined {
    this.index();
    return this.producer.get(name);
  }

  freshDim(): string {
    return `?${++this.fresh}`;
  }

  shape(v: Value | string): SShape | undefined {
    const name = typeof v === 'string' ? v : v.name;
    if (this.shapes.has(name)) return this.shapes.get(name);
    let out: SShape | undefined;
    const init = this.g.initializerOf(name);
    const input = this.g.inputList.find((i) => i.name === name);
    if (init) out = init.dims;
    else if (input) out = input.dims;
    else {
      const p = this.producerOf(name);
      if (p) {
        const fn = SHAPE_FNS[p.node.op];
        const all = fn ? fn(this, p.node) : [];
        p.node.outputs.forEach((o, i) => this.shapes.set(o, all[i]));
        return all[p.index];
      }
    }
    this.shapes.set(name, out);
    return out;
  }

  rank(v: Value | string): number | undefined {
    return this.shape(v)?.length;
  }

  /** Static values of an int64 tensor (a 0-d or 1-d one), where known. */
  constInts(v: Value | string): number[] | undefined {
    const name = typeof v === 'string' ? v : v.name;
    if (!name) return undefined;
    if (this.ints.has(name)) return this.ints.get(name);
    let out: number[] | undefined;
    const init = this.g.initializerOf(name);
    if (init) {
      if (init.dtype === 'I64' && init.data.kind === 'inline' && init.dims.length <= 1) {
        const b = init.data.bytes;
        out = Array.from(new BigInt64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), Number);
      }
    } else {
      const p = this.producerOf(name);
      if (p) out = intValue(this, p.node);
    }
    this.ints.set(name, out);
    return out;
  }

  /** A float constant's values (inline initializers only). */
  constFloats(v: Value | string): Float32Array | undefined {
    const init = this.g.initializerOf(typeof v === 'string' ? v : v.name);
    if (!init || init.dtype !== 'F32' || init.data.kind !== 'inline') return undefined;
    const b = init.data.bytes;
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  }

  attr(n: GraphNode, key: string): unknown {
    return n.attrs[key];
  }
}

/** Whether two static dims are the same size for certain. */
export function sameDim(a: SDim, b: SDim): boolean {
  return a === b && !(typeof a === 'string' && a.startsWith('?') && a !== b);
}

export function sameShape(a: SShape | undefined, b: SShape | undefined): boolean {
  return !!a && !!b && a.length === b.length && a.every((d, i) => sameDim(d, b[i]!));
}

function numel(s: SShape): number | undefined {
  let n = 1;
  for (const d of s) {
    if (typeof d !== 'number') return undefined;
    n *= d;
  }
  return n;
}

/** Numpy broadcasting of static shapes (undefined when unknown). */
export function broadcastShapes(s: ShapeInfer, shapes: readonly (SShape | undefined)[]): SShape | undefined {
  if (shapes.some((x) => !x)) return undefined;
  const r = Math.max(...shapes.map((x) => x!.length));
  const out: SDim[] = [];
  for (let i = 0; i < r; i++) {
    let d: SDim = 1;
    for (const x of shapes) {
      const k = x!.length - r + i;
      if (k < 0) continue;
      const e = x![k]!;
      if (e === 1) continue;
      if (d === 1) d = e;
      else if (!sameDim(d, e)) d = typeof d === 'number' ? d : typeof e === 'number' ? e : s.freshDim();
    }
    out.push(d);
  }
  return out;
}

const norm = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

function intAttr(n: GraphNode, key: string, dflt: number): number {
  const v = n.attrs[key];
  return typeof v === 'number' ? v : dflt;
}

const same: ShapeFn = (s, n) => [s.shape(n.inputs[0]!)];
const broadcast: ShapeFn = (s, n) => [broadcastShapes(s, n.inputs.filter((i) => i).map((i) => s.shape(i)))];

function matmulShape(s: ShapeInfer, a: SShape | undefined, b: SShape | undefined, transA: boolean, transB: boolean): SShape | undefined {
  if (!a || !b || a.length < 2 || b.length < 2) return undefined;
  const m = transA ? a[a.length - 1]! : a[a.length - 2]!;
  const nn = transB ? b[b.length - 2]! : b[b.length - 1]!;
  const batch = broadcastShapes(s, [a.slice(0, -2), b.slice(0, -2)]);
  return batch ? [...batch, m, nn] : undefined;
}

function reduceShape(s: ShapeInfer, n: GraphNode): SShape | undefined {
  const x = s.shape(n.inputs[0]!);
  if (!x) return undefined;
  const axesIn = n.inputs[1] ? s.constInts(n.inputs[1]) : (n.attrs.axes as number[] | undefined) ?? [];
  if (!axesIn) return undefined;
  const keep = intAttr(n, 'keepdims', 1) === 1;
  const axes = new Set((axesIn.length ? axesIn : x.map((_, i) => i)).map((a) => norm(a, x.length)));
  const out: SDim[] = [];
  x.forEach((d, i) => {
    if (!axes.has(i)) out.push(d);
    else if (keep) out.push(1);
  });
  return out;
}

function reshapeTo(s: ShapeInfer, x: SShape | undefined, target: readonly number[], allowZero: boolean): SShape {
  const out: SDim[] = target.map((t, i) => (t === 0 && !allowZero && x && i < x.length ? x[i]! : t));
  const minus = out.indexOf(-1);
  if (minus >= 0) {
    const total = x ? numel(x) : undefined;
    const known = numel(out.filter((_, i) => i !== minus));
    out[minus] = total !== undefined && known !== undefined && known !== 0 ? total / known : s.freshDim();
  }
  return out;
}

function convShape(s: ShapeInfer, n: GraphNode): SShape | undefined {
  const x = s.shape(n.inputs[0]!);
  const w = s.shape(n.inputs[1]!);
  if (!x || !w || x.length !== 4) return undefined;
  const st = (n.attrs.strides as number[] | undefined) ?? [1, 1];
  const p = (n.attrs.pads as number[] | undefined) ?? [0, 0, 0, 0];
  const out: SDim[] = [x[0]!, w[0]!];
  for (let i = 0; i < 2; i++) {
    const d = x[2 + i]!;
    const k = w[2 + i]!;
    out.push(typeof d === 'number' && typeof k === 'number' ? Math.floor((d + p[i]! + p[i + 2]! - k) / st[i]!) + 1 : s.freshDim());
  }
  return out;
}

function sliceShape(s: ShapeInfer, n: GraphNode): SShape | undefined {
  const x = s.shape(n.inputs[0]!);
  if (!x) return undefined;
  const starts = s.constInts(n.inputs[1]!);
  const ends = s.constInts(n.inputs[2]!);
  const axes = n.inputs[3] ? s.constInts(n.inputs[3]) : starts?.map((_, i) => i);
  const steps = n.inputs[4] ? s.constInts(n.inputs[4]) : starts?.map(() => 1);
  const out: SDim[] = [...x];
  if (!starts || !ends || !axes || !steps) {
    // The sliced axes are unknown: only the rank is.
    return x.map(() => s.freshDim());
  }
  axes.forEach((a0, i) => {
    const a = norm(a0, x.length);
    const d = x[a]!;
    if (typeof d !== 'number' || steps[i] !== 1) {
      out[a] = s.freshDim();
      return;
    }
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
    out[a] = Math.max(clamp(ends[i]!) - clamp(starts[i]!), 0);
  });
  return out;
}

const SHAPE_FNS: Record<string, ShapeFn> = {
  Identity: same, Cast: same, Neg: same, Exp: same, Log: same, Sqrt: same, Reciprocal: same, Tanh: same,
  Sigmoid: same, Gelu: same, Erf: same, Relu: same, Softmax: same, Sin: same, Cos: same, Abs: same, Not: same,
  LayerNormalization: same, SimplifiedLayerNormalization: same, Dropout: same,
  Add: broadcast, Sub: broadcast, Mul: broadcast, Div: broadcast, Pow: broadcast, Where: broadcast, Equal: broadcast,
  Less: broadcast, Greater: broadcast, And: broadcast, Or: broadcast, Max: broadcast, Min: broadcast,
  MatMul: (s, n) => [matmulShape(s, s.shape(n.inputs[0]!), s.shape(n.inputs[1]!), false, false)],
  FusedMatMul: (s, n) => [matmulShape(s, s.shape(n.inputs[0]!), s.shape(n.inputs[1]!), intAttr(n, 'transA', 0) === 1, intAttr(n, 'transB', 0) === 1)],
  Gemm: (s, n) => [matmulShape(s, s.shape(n.inputs[0]!), s.shape(n.inputs[1]!), intAttr(n, 'transA', 0) === 1, intAttr(n, 'transB', 0) === 1)],
  Conv: (s, n) => [convShape(s, n)],
  MatMulNBits: (s, n) => {
    const x = s.shape(n.inputs[0]!);
    return [x ? [...x.slice(0, -1), n.attrs.N as number] : undefined];
  },
  Transpose: (s, n) => {
    const x = s.shape(n.inputs[0]!);
    if (!x) return [undefined];
    const perm = (n.attrs.perm as number[] | undefined) ?? x.map((_, i) => x.length - 1 - i);
    return [perm.map((p) => x[p]!)];
  },
  Reshape: (s, n) => {
    const t = s.constInts(n.inputs[1]!);
    if (t) return [reshapeTo(s, s.shape(n.inputs[0]!), t, intAttr(n, 'allowzero', 0) === 1)];
    const len = s.shape(n.inputs[1]!)?.[0];
    return [typeof len === 'number' ? Array.from({ length: len }, () => s.freshDim()) : undefined];
  },
  Flatten: (s, n) => {
    const x = s.shape(n.inputs[0]!);
    if (!x) return [undefined];
    const a = norm(intAttr(n, 'axis', 1), x.length);
    const p = (d: SShape) => numel(d) ?? s.freshDim();
    return [[p(x.slice(0, a)), p(x.slice(a))]];
  },
  Unsqueeze: (s, n) => {
    const x = s.shape(n.inputs[0]!);
    const axes = s.constInts(n.inputs[1]!);
    if (!x || !axes) return [undefined];
    const r = x.length + axes.length;
    const set = new Set(axes.map((a) => norm(a, r)));
    const out: SDim[] = [];
    let j = 0;
    for (let i = 0; i < r; i++) out.push(set.has(i) ? 1 : x[j++]!);
    return [out];
  },
  Squeeze: (s, n) => {
    const x = s.shape(n.inputs[0]!);
    if (!x) return [undefined];
    const axes = n.inputs[1] ? s.constInts(n.inputs[1]) : x.flatMap((d, i) => (d === 1 ? [i] : []));
    if (!axes) return [undefined];
    const set = new Set(axes.map((a) => norm(a, x.length)));
    return [x.filter((_, i) => !set.has(i))];
  },
  Concat: (s, n) => {
    const xs = n.inputs.map((i) => s.shape(i));
    if (xs.some((x) => !x)) return [undefined];
    const r = xs[0]!.length;
    const a = norm(intAttr(n, 'axis', 0), r);
    const out: SDim[] = [...xs[0]!];
    const total = xs.reduce<number | undefined>((acc, x) => (acc !== undefined && typeof x![a] === 'number' ? acc + (x![a] as number) : undefined), 0);
    out[a] = total ?? s.freshDim();
    return [out];
  },
  Split: (s, n) => {
    const x = s.shape(n.inputs[0]!);
    const sizes = n.inputs[1] ? s.constInts(n.inputs[1]) : undefined;
    if (!x) return n.outputs.map(() => undefined);
    const a = norm(intAttr(n, 'axis', 0), x.length);
    return n.outputs.map((_, i) => {
      const out: SDim[] = [...x];
      const d = x[a]!;
      out[a] = sizes ? sizes[i]! : typeof d === 'number' ? d / n.outputs.length : s.freshDim();
      return out;
    });
  },
  Slice: (s, n) => [sliceShape(s, n)],
  Gather: (s, n) => {
    const x = s.shape(n.inputs[0]!);
    const idx = s.shape(n.inputs[1]!);
    if (!x || !idx) return [undefined];
    const a = norm(intAttr(n, 'axis', 0), x.length);
    return [[...x.slice(0, a), ...idx, ...x.slice(a + 1)]];
  },
  Expand: (s, n) => {
    const t = s.constInts(n.inputs[1]!);
    return [t ? broadcastShapes(s, [s.shape(n.inputs[0]!), t]) : undefined];
  },
  ReduceMean: (s, n) => [reduceShape(s, n)],
  ReduceSum: (s, n) => [reduceShape(s, n)],
  Shape: (s, n) => {
    const r = s.rank(n.inputs[0]!);
    return [r === undefined ? undefined : [r]];
  },
  SoftmaxCrossEntropyLoss: (s, n) => [(n.attrs.reduction ?? 'mean') === 'none' ? s.shape(n.inputs[1]!) : [], s.shape(n.inputs[0]!)],
  ConstantOfShape: (s, n) => {
    const t = s.constInts(n.inputs[0]!);
    return [t];
  },
  Resize: (s, n) => {
    const sizes = n.inputs[3] ? s.constInts(n.inputs[3]) : undefined;
    return [sizes];
  },
};

/** The static value of an int tensor made by `n`, where known. */
function intValue(s: ShapeInfer, n: GraphNode): number[] | undefined {
  switch (n.op) {
    case 'Shape': {
      const x = s.shape(n.inputs[0]!);
      if (!x || x.some((d) => typeof d !== 'number')) return undefined;
      const r = x.length;
      const start = norm(intAttr(n, 'start', 0), r);
      const end = n.attrs.end === undefined ? r : norm(intAttr(n, 'end', r), r);
      return (x as number[]).slice(start, end);
    }
    case 'Concat': {
      const parts = n.inputs.map((i) => s.constInts(i));
      return parts.every((p) => p) ? parts.flatMap((p) => p!) : undefined;
    }
    case 'Identity':
      return s.constInts(n.inputs[0]!);
    case 'Slice': {
      const x = s.constInts(n.inputs[0]!);
      const [st, en] = [s.constInts(n.inputs[1]!), s.constInts(n.inputs[2]!)];
      if (!x || !st || !en || st.length !== 1 || (n.inputs[4] && s.constInts(n.inputs[4])?.[0] !== 1)) return undefined;
      const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + x.length : v, 0), x.length);
      return x.slice(clamp(st[0]!), clamp(en[0]!));
    }
    case 'Gather': {
      const x = s.constInts(n.inputs[0]!);
      const idx = s.constInts(n.inputs[1]!);
      if (!x || !idx) return undefined;
      return idx.map((i) => x[i < 0 ? i + x.length : i]!);
    }
    default:
      return undefined;
  }
}
