// Graph.branch: If's then/else subgraphs that read the outer graph's values and constants; only
// the taken branch's result comes out; a branch takes no inputs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { Session } from '../../src/runtime/session.js';

test('If with branches: each reads outer values and its own constants, the condition picks one', async () => {
  const g = new Graph('if_test');
  const x = g.input('x', 'F32', ['n']);
  const n = g.op1('Shape', [x]);
  const one = g.op1('Equal', [n, g.constI64([1])]); // bool [1]
  const doubled = g.op1('Mul', [x, g.constF32([2], [])]);
  const a = g.branch('one_element');
  const ya = a.op1('Add', [doubled, a.constF32([100], [])]); // 2x + 100
  a.output(ya, ya.name);
  const b = g.branch('more');
  const yb = b.op1('Neg', [doubled]); // -2x
  b.output(yb, yb.name);
  const [y] = g.op('If', [one], { then_branch: { graph: a }, else_branch: { graph: b } });
  g.output(y!, 'y', 'F32', ['n']);
  const s = await Session.fromGraph(g);
  try {
    assert.deepEqual(Array.from((await s.run({ x: { dims: [1], data: Float32Array.of(3) } })).y!.data), [106]);
    assert.deepEqual(Array.from((await s.run({ x: { dims: [2], data: Float32Array.of(3, -1) } })).y!.data), [-6, 2]);
  } finally {
    await s.release();
  }
  assert.throws(() => a.input('z', 'F32', [1]), /a branch takes no inputs/);
});
