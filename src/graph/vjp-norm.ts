// VJP rules of the normalising ops: Softmax, LayerNormalization, SimplifiedLayerNormalization
// (RMSNorm) and SoftmaxCrossEntropyLoss (mean over the labels that are not ignored).

import { Value } from './graph.js';
import type { VjpContext, VjpRule } from './autodiff.js';
import { scalar, unbroadcast } from './autodiff.js';

function epsilon(c: VjpContext, dflt: number): number {
  const e = c.node.attrs.epsilon as { float: number } | undefined;
  return e ? e.float : dflt;
}

function lastAxisOnly(c: VjpContext): void {
  const axis = (c.node.attrs.axis as number | undefined) ?? -1;
  const r = c.shapes.rank(c.input(0));
  if (axis !== -1 && !(r !== undefined && axis === r - 1)) {
    throw new Error(`autodiff: ${c.node.op} ${c.node.outputs[0]} over axis ${axis}: only the last axis has a rule`);
  }
}

function mean(c: VjpContext, x: Value, axis: number): Value {
  return c.g.op1('ReduceMean', [x, c.g.constI64([axis])], { keepdims: 1 }, { name: `${c.name}.mean` });
}

export const NORM_RULES: Readonly<Record<string, VjpRule>> = {
  // y = softmax(x): dx = y (dy - sum(dy y))
  Softmax: {
    diff: [0],
    vjp: (c) => {
      const { g } = c;
      const axis = (c.node.attrs.axis as number | undefined) ?? -1;
      const y = c.output(0);
      const dot = g.op1('ReduceSum', [g.op1('Mul', [c.dy[0]!, y]), g.constI64([axis])], { keepdims: 1 });
      return [g.op1('Mul', [y, g.op1('Sub', [c.dy[0]!, dot])], {}, { name: c.name })];
    },
  },
  // y = xhat w + b, xhat = (x - mu) r, r = 1/sqrt(var + eps):
  // dx = r (gw - mean(gw) - xhat mean(gw xhat)), gw = dy w; dw = sum(dy xhat); db = sum(dy)
  LayerNormalization: {
    diff: [0, 1, 2],
    vjp: (c) => {
      lastAxisOnly(c);
      if (c.dy.slice(1).some((d) => d)) throw new Error(`autodiff: LayerNormalization ${c.node.outputs[0]}: gradients through its mean/inv_std outputs have no rule`);
      const { g } = c;
      const [x, w] = [c.input(0), c.input(1)];
      const dy = c.dy[0]!;
      const xc = g.op1('Sub', [x, mean(c, x, -1)]);
      const r = g.op1('Reciprocal', [g.op1('Sqrt', [g.op1('Add', [mean(c, g.op1('Mul', [xc, xc]), -1), scalar(g, epsilon(c, 1e-5))])])]);
      const xhat = g.op1('Mul', [xc, r]);
      const out: (Value | null)[] = [null, null, null];
      if (c.need[0]) {
        const gw = g.op1('Mul', [dy, w]);
        const inner = g.op1('Sub', [g.op1('Sub', [gw, mean(c, gw, -1)]), g.op1('Mul', [xhat, mean(c, g.op1('Mul', [gw, xhat]), -1)])]);
        out[0] = g.op1('Mul', [r, inner], {}, { name: `${c.name}.dx` });
      }
      if (c.need[1]) out[1] = unbroadcast(c, g.op1('Mul', [dy, xhat]), w, c.shapes.shape(x));
      if (c.need[2] && c.node.inputs[2]) out[2] = unbroadcast(c, dy, c.input(2), c.shapes.shape(x));
      return out;
    },
  },
  // y = xhat w, xhat = x r, r = 1/sqrt(mean(x^2) + eps):
  // dx = r (gw - xhat mean(gw xhat)), gw = dy w; dw = sum(dy xhat)
  SimplifiedLayerNormalization: {
    diff: [0, 1],
    vjp: (c) => {
      lastAxisOnly(c);
      const { g } = c;
      const [x, w] = [c.input(0), c.input(1)];
      const dy = c.dy[0]!;
      const r = g.op1('Reciprocal', [g.op1('Sqrt', [g.op1('Add', [mean(c, g.op1('Mul', [x, x]), -1), scalar(g, epsilon(c, 1e-5))])])]);
      const xhat = g.op1('Mul', [x, r]);
      const out: (Value | null)[] = [null, null];
      if (c.need[0]) {
        const gw = g.op1('Mul', [dy, w]);
        out[0] = g.op1('Mul', [r, g.op1('Sub', [gw, g.op1('Mul', [xhat, mean(c, g.op1('Mul', [gw, xhat]), -1)])])], {}, { name: `${c.name}.dx` });
      }
      if (c.need[1]) out[1] = unbroadcast(c, g.op1('Mul', [dy, xhat]), w, c.shapes.shape(x));
      return out;
    },
  },
  // loss = -mean over rows i with label_i != ignore of log softmax(x_i)[label_i]:
  // dx_i = (softmax(x_i) - onehot(label_i)) * dloss / n for those rows, 0 for ignored rows.
  SoftmaxCrossEntropyLoss: {
    diff: [0],
    vjp: (c) => {
      const { g, node } = c;
      if ((node.attrs.reduction ?? 'mean') !== 'mean') throw new Error(`autodiff: SoftmaxCrossEntropyLoss ${node.outputs[0]}: only reduction 'mean' has a rule`);
      if (node.inputs[2]) throw new Error(`autodiff: SoftmaxCrossEntropyLoss ${node.outputs[0]}: class weights have no rule`);
      if (c.dy[1]) throw new Error(`autodiff: SoftmaxCrossEntropyLoss ${node.outputs[0]}: a gradient through log_prob has no rule`);
      if (c.shapes.rank(c.input(0)) !== 2) throw new Error(`autodiff: SoftmaxCrossEntropyLoss ${node.outputs[0]}: only scores [N, C] have a rule`);
      const [x, labels] = [c.input(0), c.input(1)];
      const ignore = node.attrs.ignore_index as number | undefined;
      const valid = ignore === undefined
        ? g.op1('Cast', [g.op1('Equal', [labels, labels])], { to: 1 })
        : g.op1('Cast', [g.op1('Not', [g.op1('Equal', [labels, g.constI64([ignore], [])])])], { to: 1 }); // [N]
      const count = g.op1('ReduceSum', [valid, g.constI64([0])], { keepdims: 0 });
      const scale = g.op1('Unsqueeze', [g.op1('Mul', [valid, g.op1('Div', [c.dy[0]!, count])]), g.constI64([1])]); // [N, 1]
      const p = g.op1('Mul', [g.op1('Softmax', [x], { axis: 1 }), scale]);
      const safe = ignore === undefined ? labels : g.op1('Where', [g.op1('Equal', [labels, g.constI64([ignore], [])]), g.constI64([0], []), labels]);
      const col = g.op1('Unsqueeze', [safe, g.constI64([1])]); // [N, 1]
      const atLabel = g.op1('Sub', [g.op1('GatherElements', [p, col], { axis: 1 }), scale]);
      return [g.op1('ScatterElements', [p, col, atLabel], { axis: 1 }, { name: c.name })];
    },
  },
};
