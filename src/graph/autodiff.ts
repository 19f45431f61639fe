// Reverse-mode differentiation on the graph IR: given a graph, a scalar output and the values to
// differentiate, append the backward nodes (vector-Jacobian products, one small rule per op in
// vjp-*.ts) built from standard ONNX ops, and return the gradient values. onnxruntime's CPU build
// has no *Grad kernels and no training API from JavaScript, so the backward pass is ordinary
// nodes in the same graph: one engine for both directions. Knows nothing of MG-LLaVA.
//
// The pass: the values that depend on `wrt` (through differentiable inputs only) and that the
// loss depends on are active; nodes are visited in reverse of the order they were added (a
// topological order), each active node's output gradients summed and handed to its op's rule,
// which returns the gradients of its active inputs. An op without a rule is an error naming it.

import { Graph, GraphNode, MS_DOMAIN, Value } from './graph.js';
import { SShape, ShapeInfer, sameDim } from './shapes.js';
import { ELEMENTWISE_RULES } from './vjp-elementwise.js';
import { LINEAR_RULES } from './vjp-linear.js';
import { SHAPE_RULES } from './vjp-shape.js';
import { NORM_RULES } from './vjp-norm.js';

/** What a rule sees: the node, the gradients of its outputs, which inputs want gradients. */
export interface VjpContext {
  readonly g: Graph;
  readonly shapes: ShapeInfer;
  readonly node: GraphNode;
  /** Gradient of each output (null when nothing downstream of it reaches the loss). */
  readonly dy: readonly (Value | null)[];
  /** Whether input i needs a gradient. */
  readonly need: readonly boolean[];
  input(i: number): Value;
  output(i: number): Value;
  /** A hint for the names of the backward nodes. */
  readonly name: string;
}

export interface VjpRule {
  /** Input indices a gradient can flow into (others are shapes, indices, conditions...). */
  readonly diff: readonly number[] | 'all';
  /** The gradients of the node's inputs (null where not needed or not differentiable). */
  readonly vjp: (c: VjpContext) => (Value | null)[];
}

const RULES: Readonly<Record<string, VjpRule>> = {
  ...ELEMENTWISE_RULES,
  ...LINEAR_RULES,
  ...SHAPE_RULES,
  ...NORM_RULES,
};

/** Ops whose outputs carry no gradient (integer or boolean results, shapes). */
const NON_DIFFERENTIABLE = new Set([
  'Shape', 'Size', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Not', 'And', 'Or', 'ArgMax', 'ArgMin',
  'NonZero', 'ConstantOfShape', 'Range', 'Floor', 'Ceil', 'Round', 'Trilu', 'OneHot', 'TopK',
]);

const FLOAT_TO = new Set([1, 10, 11, 16]);

function ruleKey(n: GraphNode): string {
  return n.domain === MS_DOMAIN ? `${MS_DOMAIN}.${n.op}` : n.op;
}

function differentiableInputs(n: GraphNode): readonly number[] {
  if (NON_DIFFERENTIABLE.has(n.op)) return [];
  if (n.op === 'Cast') return FLOAT_TO.has(n.attrs.to as number) ? [0] : [];
  const r = RULES[ruleKey(n)];
  if (!r) return n.inputs.map((_, i) => i); // reported when the pass reaches it
  return r.diff === 'all' ? n.inputs.map((_, i) => i) : r.diff;
}

export interface BackwardOptions {
  /** Name of each gradient output (default `grad.<name>`); outputs are added only with this or `addOutputs`. */
  outputName?: (wrt: string) => string;
  /** Add each gradient as a graph output (default true). */
  addOutputs?: boolean;
}

/**
 * Appends to `g` the gradient of the scalar `loss` with respect to each of `wrt` (graph inputs
 * or any values) and returns them by name, as graph outputs `grad.<name>` unless told otherwise.
 * A value the loss does not depend on gets a zero gradient of its shape.
 */
export function appendBackward(g: Graph, loss: Value, wrt: readonly Value[], opts: BackwardOptions = {}): Map<string, Value> {
  const nodes = [...g.nodeList];
  const shapes = new ShapeInfer(g);

  // Values that depend on wrt through differentiable edges.
  const depends = new Set(wrt.map((v) => v.name));
  for (const n of nodes) {
    const diff = differentiableInputs(n);
    if (diff.some((i) => depends.has(n.inputs[i]!))) for (const o of n.outputs) depends.add(o);
  }
  // Values the loss depends on.
  const reaches = new Set([loss.name]);
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k]!;
    if (n.outputs.some((o) => reaches.has(o))) for (const i of n.inputs) if (i) reaches.add(i);
  }
  const active = (name: string) => depends.has(name) && reaches.has(name);

  const parts = new Map<string, Value[]>();
  const add = (name: string, v: Value) => {
    const l = parts.get(name);
    if (l) l.push(v);
    else parts.set(name, [v]);
  };
  const total = (name: string): Value | null => {
    const l = parts.get(name);
    if (!l || l.length === 0) return null;
    let s = l[0]!;
    for (let i = 1; i < l.length; i++) s = g.op1('Add', [s, l[i]!], {}, { name: `grad.${name}.sum` });
    parts.set(name, [s]);
    return s;
  };

  const lossShape = shapes.shape(loss);
  add(loss.name, lossShape && lossShape.length === 0
    ? g.constF32([1], [], 'grad.seed')
    : g.op1('Expand', [g.constF32([1], []), g.op1('Shape', [loss])], {}, { name: 'grad.seed' }));

  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k]!;
    const diff = differentiableInputs(n);
    const need = n.inputs.map((name, i) => !!name && diff.includes(i) && active(name));
    if (!need.some((x) => x)) continue;
    const dy = n.outputs.map((o) => (active(o) ? total(o) : null));
    if (dy.every((d) => d === null)) continue;
    const rule = RULES[ruleKey(n)];
    if (!rule) {
      throw new Error(`autodiff: no gradient rule for op ${n.domain ? `${n.domain}.` : ''}${n.op} (node ${n.outputs[0]})`);
    }
    const ctx: VjpContext = {
      g, shapes, node: n, dy, need,
      input: (i) => ({ name: n.inputs[i]! }),
      output: (i) => ({ name: n.outputs[i]! }),
      name: `grad.${n.outputs[0]}`,
    };
    const grads = rule.vjp(ctx);
    n.inputs.forEach((name, i) => {
      const d = grads[i];
      if (need[i] && d) add(name, d);
    });
  }

  const out = new Map<string, Value>();
  for (const v of wrt) {
    const d = total(v.name) ?? zerosLike(g, v, `grad.${v.name}.zero`);
    out.set(v.name, d);
    if (opts.addOutputs ?? true) {
      const name = opts.outputName ? opts.outputName(v.name) : `grad.${v.name}`;
      g.output(d, name, 'F32', shapes.shape(v)?.map((x) => (typeof x === 'string' && x.startsWith('?') ? `d${x.slice(1)}` : x)) ?? []);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the rules.

/** A float32 zero tensor of x's shape. */
export function zerosLike(g: Graph, x: Value, name = 'zeros'): Value {
  return g.op1('Mul', [x, g.constF32([0], [])], {}, { name });
}

export function scalar(g: Graph, v: number, name = 'k'): Value {
  return g.constF32([v], [], name);
}

/**
 * `grad` (the shape of a broadcast result) summed down to the shape of `x`, as broadcasting's
 * VJP: leading axes summed away, axes where x has size 1 summed with keepdims. Static where the
 * shapes decide it, else by run-time shape ops (only the ranks need not be known).
 */
export function unbroadcast(c: VjpContext, grad: Value, x: Value, gradShape?: SShape): Value {
  const { g, shapes } = c;
  const xs = shapes.shape(x);
  const gs = gradShape ?? shapes.shape(grad);
  if (xs && gs && xs.length <= gs.length) {
    const lead = gs.length - xs.length;
    let decided = true;
    const keepAxes: number[] = [];
    xs.forEach((d, i) => {
      const e = gs[lead + i]!;
      if (sameDim(d, e)) return;
      if (d === 1) keepAxes.push(lead + i);
      else decided = false;
    });
    if (decided) {
      let r = grad;
      if (keepAxes.length) r = g.op1('ReduceSum', [r, g.constI64(keepAxes)], { keepdims: 1 }, { name: `${c.name}.sum` });
      if (lead) r = g.op1('ReduceSum', [r, g.constI64(Array.from({ length: lead }, (_, i) => i))], { keepdims: 0 }, { name: `${c.name}.sum_lead` });
      return r;
    }
  }
  // Run-time form: pad x's shape with leading ones to grad's rank, sum the axes where it is 1
  // and grad's is not, then reshape to x's shape.
  const sg = g.op1('Shape', [grad]);
  const sx = g.op1('Shape', [x]);
  const lead = g.op1('Sub', [g.op1('Shape', [sg]), g.op1('Shape', [sx])]);
  const ones = g.op1('Expand', [g.constI64([1]), lead]); // [rank(grad) - rank(x)] ones
  const padded = g.op1('Concat', [ones, sx], { axis: 0 });
  const one = g.constI64([1], []);
  const reduce = g.op1('And', [g.op1('Equal', [padded, one]), g.op1('Not', [g.op1('Equal', [sg, one])])]);
  const axes = g.op1('Reshape', [g.op1('NonZero', [reduce]), g.constI64([-1])]);
  const summed = g.op1('ReduceSum', [grad, axes], { keepdims: 1, noop_with_empty_axes: 1 }, { name: `${c.name}.sum` });
  return g.op1('Reshape', [summed, sx], {}, { name: `${c.name}.unbroadcast` });
}
