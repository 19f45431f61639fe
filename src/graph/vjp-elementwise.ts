// VJP rules of elementwise ops. Binary ops broadcast (numpy rules), so each input's gradient is
// summed back to its own shape (unbroadcast).

import { Value } from './graph.js';
import type { VjpContext, VjpRule } from './autodiff.js';
import { scalar, unbroadcast } from './autodiff.js';

const op = (c: VjpContext, type: string, inputs: (Value | null)[], attrs: Record<string, never> | Record<string, number | string> = {}) =>
  c.g.op1(type, inputs, attrs, { name: c.name });

/** dy of a single-output node (the pass only calls a rule when some output has a gradient). */
const dy0 = (c: VjpContext): Value => c.dy[0]!;

/** Unary op: dx = dy * f'(x, y). */
function unary(deriv: (c: VjpContext, x: Value, y: Value) => Value): VjpRule {
  return { diff: [0], vjp: (c) => [op(c, 'Mul', [dy0(c), deriv(c, c.input(0), c.output(0))])] };
}

const pass: VjpRule = { diff: [0], vjp: (c) => [dy0(c)] };

export const ELEMENTWISE_RULES: Readonly<Record<string, VjpRule>> = {
  Identity: pass,
  Cast: pass, // float -> float only (autodiff.ts stops at casts to other types)
  Dropout: pass, // inference mode: the identity
  Add: {
    diff: 'all',
    vjp: (c) => [0, 1].map((i) => (c.need[i] ? unbroadcast(c, dy0(c), c.input(i), c.shapes.shape(c.output(0))) : null)),
  },
  Sub: {
    diff: 'all',
    vjp: (c) => [
      c.need[0] ? unbroadcast(c, dy0(c), c.input(0), c.shapes.shape(c.output(0))) : null,
      c.need[1] ? unbroadcast(c, op(c, 'Neg', [dy0(c)]), c.input(1), c.shapes.shape(c.output(0))) : null,
    ],
  },
  Mul: {
    diff: 'all',
    vjp: (c) => [0, 1].map((i) => (c.need[i]
      ? unbroadcast(c, op(c, 'Mul', [dy0(c), c.input(1 - i)]), c.input(i), c.shapes.shape(c.output(0)))
      : null)),
  },
  Div: {
    diff: 'all',
    vjp: (c) => {
      const [a, b, y] = [c.input(0), c.input(1), c.output(0)];
      const s = c.shapes.shape(y);
      return [
        c.need[0] ? unbroadcast(c, op(c, 'Div', [dy0(c), b]), a, s) : null,
        c.need[1] ? unbroadcast(c, op(c, 'Neg', [op(c, 'Div', [op(c, 'Mul', [dy0(c), y]), b])]), b, s) : null,
      ];
    },
  },
  Neg: unary((c) => scalar(c.g, -1)),
  Pow: {
    diff: 'all',
    vjp: (c) => {
      const [a, b, y] = [c.input(0), c.input(1), c.output(0)];
      const s = c.shapes.shape(y);
      // d/da a^b = b a^(b-1); d/db a^b = a^b ln a
      const da = c.need[0] ? unbroadcast(c, op(c, 'Mul', [dy0(c), op(c, 'Mul', [b, op(c, 'Pow', [a, op(c, 'Sub', [b, scalar(c.g, 1)])])])]), a, s) : null;
      const db = c.need[1] ? unbroadcast(c, op(c, 'Mul', [dy0(c), op(c, 'Mul', [y, op(c, 'Log', [a])])]), b, s) : null;
      return [da, db];
    },
  },
  Sqrt: unary((c, _x, y) => op(c, 'Div', [scalar(c.g, 0.5), y])),
  Reciprocal: unary((c, _x, y) => op(c, 'Neg', [op(c, 'Mul', [y, y])])),
  Exp: unary((_c, _x, y) => y),
  Log: unary((c, x) => op(c, 'Reciprocal', [x])),
  Tanh: unary((c, _x, y) => op(c, 'Sub', [scalar(c.g, 1), op(c, 'Mul', [y, y])])),
  Sigmoid: unary((c, _x, y) => op(c, 'Mul', [y, op(c, 'Sub', [scalar(c.g, 1), y])])),
  Sin: unary((c, x) => op(c, 'Cos', [x])),
  Cos: unary((c, x) => op(c, 'Neg', [op(c, 'Sin', [x])])),
  Erf: unary((c, x) => op(c, 'Mul', [scalar(c.g, 2 / Math.sqrt(Math.PI)), op(c, 'Exp', [op(c, 'Neg', [op(c, 'Mul', [x, x])])])])),
  Relu: {
    diff: [0],
    vjp: (c) => [op(c, 'Where', [op(c, 'Greater', [c.input(0), scalar(c.g, 0)]), dy0(c), scalar(c.g, 0)])],
  },
  Gelu: unary(geluDerivative),
  [`com.microsoft.Gelu`]: unary((c, x) => geluExact(c, x)),
  Where: {
    diff: [1, 2],
    vjp: (c) => {
      const cond = c.input(0);
      const s = c.shapes.shape(c.output(0));
      const zero = scalar(c.g, 0);
      return [
        null,
        c.need[1] ? unbroadcast(c, op(c, 'Where', [cond, dy0(c), zero]), c.input(1), s) : null,
        c.need[2] ? unbroadcast(c, op(c, 'Where', [cond, zero, dy0(c)]), c.input(2), s) : null,
      ];
    },
  },
};

/** GELU's derivative for its `approximate` attribute ('none': erf; 'tanh'). */
function geluDerivative(c: VjpContext, x: Value): Value {
  return (c.node.attrs.approximate ?? 'none') === 'tanh' ? geluTanh(c, x) : geluExact(c, x);
}

/** d/dx x Phi(x) = Phi(x) + x phi(x), Phi(x) = (1 + erf(x/sqrt 2))/2, phi(x) = exp(-x^2/2)/sqrt(2 pi). */
function geluExact(c: VjpContext, x: Value): Value {
  const cdf = op(c, 'Mul', [scalar(c.g, 0.5), op(c, 'Add', [scalar(c.g, 1), op(c, 'Erf', [op(c, 'Mul', [x, scalar(c.g, Math.SQRT1_2)])])])]);
  const pdf = op(c, 'Mul', [scalar(c.g, 1 / Math.sqrt(2 * Math.PI)), op(c, 'Exp', [op(c, 'Mul', [op(c, 'Mul', [x, x]), scalar(c.g, -0.5)])])]);
  return op(c, 'Add', [cdf, op(c, 'Mul', [x, pdf])]);
}

/** tanh form: y = x/2 (1 + tanh(u)), u = sqrt(2/pi)(x + 0.044715 x^3). */
function geluTanh(c: VjpContext, x: Value): Value {
  const k = Math.sqrt(2 / Math.PI);
  const x2 = op(c, 'Mul', [x, x]);
  const u = op(c, 'Mul', [scalar(c.g, k), op(c, 'Add', [x, op(c, 'Mul', [scalar(c.g, 0.044715), op(c, 'Mul', [x2, x])])])]);
  const t = op(c, 'Tanh', [u]);
  const du = op(c, 'Mul', [scalar(c.g, k), op(c, 'Add', [scalar(c.g, 1), op(c, 'Mul', [scalar(c.g, 3 * 0.044715), x2])])]);
  const sech2 = op(c, 'Sub', [scalar(c.g, 1), op(c, 'Mul', [t, t])]);
  return op(c, 'Add', [
    op(c, 'Mul', [scalar(c.g, 0.5), op(c, 'Add', [scalar(c.g, 1), t])]),
    op(c, 'Mul', [op(c, 'Mul', [scalar(c.g, 0.5), x]), op(c, 'Mul', [sech2, du])]),
  ]);
}
