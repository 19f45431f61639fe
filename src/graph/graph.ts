// A typed ONNX graph builder: values, nodes, initializers (inline or external) and
// serialisation to a ModelProto. Knows nothing about MG-LLaVA.

import { ProtoWriter } from './proto-writer.js';
import { DType, DTYPE_BYTES, ONNX_DTYPE, numel } from '../core/tensor.js';

/** A named value in the graph (an input, an initializer or a node output). */
export interface Value {
  readonly name: string;
}

export type Dim = number | string;

export type AttrValue =
  | number
  | string
  | readonly number[]
  | { readonly floats: readonly number[] }
  | { readonly float: number }
  /** A subgraph (If's branches), made with Graph.branch(). */
  | { readonly graph: Graph };

/** Bytes held in memory, stored inline in the model. */
export interface InlineData {
  readonly kind: 'inline';
  readonly bytes: Uint8Array;
}

/**
 * Bytes inside a file on disk (a weights file): onnxruntime reads (or maps) them itself, so
 * they never pass through the JS heap.
 */
export interface ExternalData {
  readonly kind: 'external';
  /** Absolute path of the file; serialised relative to the model's external-data folder. */
  readonly path: string;
  readonly offset: number;
  readonly length: number;
}

export interface Initializer {
  readonly name: string;
  readonly dtype: DType;
  readonly dims: readonly number[];
  readonly data: InlineData | ExternalData;
}

/** A node as the graph holds it (inputs/outputs by value name; '' = an omitted optional input). */
export interface GraphNode {
  readonly op: string;
  readonly domain: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Readonly<Record<string, AttrValue>>;
}

/** A declared graph input or output. */
export interface GraphIO {
  readonly name: string;
  readonly dtype: DType;
  readonly dims: readonly Dim[];
}

export interface OpOptions {
  domain?: string;
  /** Number of outputs (default 1). */
  outputs?: number;
  /** Name hint for the outputs. */
  name?: string;
}

export const MS_DOMAIN = 'com.microsoft';

export class Graph {
  private readonly nodes: GraphNode[] = [];
  private readonly inits: Initializer[] = [];
  private readonly inputs: GraphIO[] = [];
  private readonly outputs: GraphIO[] = [];
  /** Value names in use, shared by a graph and its branches (ONNX subgraphs may not shadow). */
  private readonly names: { used: Set<string>; counter: number };

  constructor(readonly name: string, private readonly parent?: Graph) {
    this.names = parent ? parent.names : { used: new Set<string>(), counter: 0 };
  }

  /**
   * A subgraph for a control-flow node's attribute (`{ graph: branch }`, e.g. If's
   * then_branch / else_branch): its nodes may read this graph's values directly (onnxruntime
   * passes them in as outer-scope values); it declares what it gives back with `output`. Its
   * constants and weights are kept in the main graph.
   */
  branch(name: string): Graph {
    return new Graph(name, this);
  }

  /** The nodes in the order they were added: a topological order (a node reads earlier values). */
  get nodeList(): readonly GraphNode[] {
    return this.nodes;
  }

  get inputList(): readonly GraphIO[] {
    return this.inputs;
  }

  get outputList(): readonly GraphIO[] {
    return this.outputs;
  }

  /** The initializer of that name (a branch looks in the main graph), if the value is one. */
  initializerOf(name: string): Initializer | undefined {
    if (this.parent) return this.parent.initializerOf(name);
    this.initIndex ??= new Map();
    if (this.initIndex.size !== this.inits.length) for (const i of this.inits) this.initIndex.set(i.name, i);
    return this.initIndex.get(name);
  }

  private initIndex?: Map<string, Initializer>;

  private fresh(hint: string): string {
    const { used } = this.names;
    let n = hint;
    while (used.has(n)) n = `${hint}_${++this.names.counter}`;
    used.add(n);
    return n;
  }

  input(name: string, dtype: DType, dims: readonly Dim[]): Value {
    if (this.parent) throw new Error(`graph ${this.name}: a branch takes no inputs (it reads the outer graph's values)`);
    if (this.names.used.has(name)) throw new Error(`graph ${this.name}: duplicate value name ${name}`);
    this.names.used.add(name);
    this.inputs.push({ name, dtype, dims });
    return { name };
  }

  output(v: Value, name: string, dtype: DType = 'F32', dims: readonly Dim[] = []): void {
    let src = v;
    if (v.name !== name) src = this.op('Identity', [v], {}, { name })[0]!;
    if (src.name !== name) throw new Error(`graph ${this.name}: output name ${name} is taken`);
    this.outputs.push({ name, dtype, dims });
  }

  initializer(name: string, dtype: DType, dims: readonly number[], data: InlineData | ExternalData): Value {
    // A branch's constants live in the main graph: onnxruntime (1.30) saves an optimised model
    // whose branches hold initializers with names it then refuses as not unique at load.
    if (this.parent) return this.parent.initializer(name, dtype, dims, data);
    const expected = numel(dims) * DTYPE_BYTES[dtype];
    const length = data.kind === 'inline' ? data.bytes.length : data.length;
    if (length !== expected) {
      throw new Error(`initializer ${name}: ${length} bytes for ${dtype}[${dims.join(',')}], expected ${expected}`);
    }
    const unique = this.fresh(name);
    this.inits.push({ name: unique, dtype, dims: [...dims], data });
    return { name: unique };
  }

  /** A float32 constant stored inline. */
  constF32(values: ArrayLike<number>, dims: readonly number[], hint = 'const'): Value {
    const a = Float32Array.from(values as ArrayLike<number>);
    return this.initializer(hint, 'F32', dims, { kind: 'inline', bytes: new Uint8Array(a.buffer) });
  }

  /** An int64 constant stored inline (shapes, axes, pads). */
  constI64(values: readonly number[], dims: readonly number[] = [values.length], hint = 'ints'): Value {
    const a = BigInt64Array.from(values.map((v) => BigInt(v)));
    return this.initializer(hint, 'I64', dims, { kind: 'inline', bytes: new Uint8Array(a.buffer) });
  }

  /** Add a node; returns its outputs. A null input is an omitted optional input. */
  op(op: string, inputs: readonly (Value | null)[], attrs: Record<string, AttrValue> = {}, opts: OpOptions = {}): Value[] {
    const n = opts.outputs ?? 1;
    const hint = opts.name ?? op.toLowerCase();
    const outs: string[] = [];
    for (let i = 0; i < n; i++) outs.push(this.fresh(n === 1 ? hint : `${hint}_${i}`));
    this.nodes.push({
      op,
      domain: opts.domain ?? '',
      inputs: inputs.map((v) => (v ? v.name : '')),
      outputs: outs,
      attrs,
    });
    return outs.map((name) => ({ name }));
  }

  /** Shortcut for single-output nodes. */
  op1(op: string, inputs: readonly (Value | null)[], attrs: Record<string, AttrValue> = {}, opts: OpOptions = {}): Value {
    return this.op(op, inputs, attrs, opts)[0]!;
  }

  /**
   * Serialise to an ONNX ModelProto (IR 10, default opset 21, com.microsoft 1).
   * onnxruntime refuses absolute or `..` external-data paths, so external initializers are
   * written relative to the deepest folder that holds all their files, which is returned for
   * the session to use as its external-data folder, with the files themselves.
   */
  serialize(): { bytes: Uint8Array; externalDataFolder?: string; externalFiles: string[] } {
    const files = new Set<string>();
    for (const i of this.inits) if (i.data.kind === 'external') files.add(i.data.path);
    const folder = files.size ? commonFolder([...files]) : undefined;
    const m = new ProtoWriter();
    m.int(1, 10); // ir_version
    m.string(2, 'mgllava-ts');
    m.message(7, this.encode(folder ?? ''));
    m.message(8, new ProtoWriter().string(1, '').int(2, 21));
    m.message(8, new ProtoWriter().string(1, MS_DOMAIN).int(2, 1));
    return { bytes: m.finish(), externalDataFolder: folder, externalFiles: [...files].sort() };
  }

  /** This graph as a GraphProto (external initializers relative to `folder`). */
  private encode(folder: string): ProtoWriter {
    const g = new ProtoWriter();
    for (const n of this.nodes) g.message(1, encodeNode(n));
    g.string(2, this.name);
    for (const i of this.inits) g.message(5, encodeInitializer(i, folder));
    for (const i of this.inputs) g.message(11, encodeValueInfo(i));
    for (const o of this.outputs) g.message(12, encodeValueInfo(o));
    return g;
  }

  /** A branch as the GraphProto of an attribute. */
  static encodeBranch(b: Graph): ProtoWriter {
    if (!b.parent) throw new Error(`graph ${b.name} is not a branch (make it with Graph.branch)`);
    return b.encode('');
  }
}

// Path handling by string on '/'-separated absolute paths (backslashes normalised), so that
// the graph layer has no Node.js imports and can run in a browser too.
function folderParts(path: string): string[] {
  const parts = path.replace(/\\/g, '/').split('/');
  parts.pop();
  return parts;
}

function commonFolder(paths: readonly string[]): string {
  const split = paths.map(folderParts);
  const first = split[0]!;
  let n = first.length;
  for (const s of split) {
    let i = 0;
    while (i < n && i < s.length && s[i] === first[i]) i++;
    n = i;
  }
  return first.slice(0, n).join('/') || '/';
}

function relativeTo(folder: string, path: string): string {
  const p = path.replace(/\\/g, '/');
  const prefix = folder.endsWith('/') ? folder : folder + '/';
  if (!p.startsWith(prefix)) throw new Error(`${path} is not under ${folder}`);
  return p.slice(prefix.length);
}

function encodeNode(n: GraphNode): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.outputs[0] ?? n.op);
  w.string(4, n.op);
  for (const [k, v] of Object.entries(n.attrs)) w.message(5, encodeAttr(k, v));
  if (n.domain) w.string(7, n.domain);
  return w;
}

// AttributeProto.AttributeType values.
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_GRAPH = 5;
const ATTR_FLOATS = 6;
const ATTR_INTS = 7;

function encodeAttr(name: string, v: AttrValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: use { float } for non-integers`);
    w.int(3, v).int(20, ATTR_INT);
  } else if (typeof v === 'string') {
    w.string(4, v).int(20, ATTR_STRING);
  } else if (Array.isArray(v)) {
    for (const x of v as number[]) w.int(8, x);
    w.int(20, ATTR_INTS);
  } else if ('floats' in v) {
    for (const x of v.floats) w.float(7, x);
    w.int(20, ATTR_FLOATS);
  } else if ('float' in v) {
    w.float(2, v.float).int(20, ATTR_FLOAT);
  } else if ('graph' in v) {
    w.message(6, Graph.encodeBranch(v.graph)).int(20, ATTR_GRAPH);
  }
  return w;
}

function encodeInitializer(t: Initializer, folder: string): ProtoWriter {
  const w = new ProtoWriter();
  for (const d of t.dims) w.int(1, d);
  w.int(2, ONNX_DTYPE[t.dtype]);
  w.string(8, t.name);
  if (t.data.kind === 'inline') {
    w.bytes(9, t.data.bytes);
  } else {
    const entry = (k: string, v: string) => new ProtoWriter().string(1, k).string(2, v);
    w.message(13, entry('location', relativeTo(folder, t.data.path)));
    w.message(13, entry('offset', String(t.data.offset)));
    w.message(13, entry('length', String(t.data.length)));
    w.int(14, 1); // data_location = EXTERNAL
  }
  return w;
}

function encodeValueInfo(io: GraphIO): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of io.dims) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoWriter().int(1, ONNX_DTYPE[io.dtype]);
  if (io.dims.length) tensorType.message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, io.name).message(2, type);
}
