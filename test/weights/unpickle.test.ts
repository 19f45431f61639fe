import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../../src/core/errors.js';
import { unpickle, PyDict, PyTuple, PyTensor, PyPersistent, PyGlobal } from '../../src/weights/unpickle.js';
import { Pickle } from './torch-builders.js';

test('scalars, containers and the memo', () => {
  const p = new Pickle().proto().mark();
  p.int(7).int(300).int(-5).int(100000).none().bool(true);
  p.op(0x8a).op(2).op(0x00).op(0x80); // LONG1 2 bytes: -32768
  p.op(0x47).op(0x3f).op(0xf8).op(0).op(0).op(0).op(0).op(0).op(0); // BINFLOAT 1.5
  p.op(0x8c).op(2).op(0x68).op(0x69); // SHORT_BINUNICODE 'hi'
  p.op(0x55).op(1).op(0xe9); // SHORT_BINSTRING latin-1
  p.op(0x43).op(2).op(1).op(2); // SHORT_BINBYTES
  p.op(0x5d).put(1).str('x').op(0x61); // list ['x'], memoised
  p.get(1); // the same list again
  p.tuple().stop();
  const v = unpickle(p.bytes(), 'mem');
  assert.ok(v instanceof PyTuple);
  const [a, b, c, d, e, f, g, h, i, j, k, l, m] = v.items;
  assert.deepEqual([a, b, c, d, e, f, g, h, i, j], [7, 300, -5, 100000, null, true, -32768, 1.5, 'hi', '\u00e9']);
  assert.deepEqual(k, new Uint8Array([1, 2]));
  assert.deepEqual(l, ['x']);
  assert.equal(l, m, 'BINGET returns the same object');
});

test('dicts keep insertion order; tuple keys hash by value', () => {
  const p = new Pickle().proto().emptyDict().mark();
  p.str('b').int(1).str('a').int(2);
  p.int(1).int(2).op(0x86).str('pair'); // (1, 2): 'pair'
  p.setitems().stop();
  const d = unpickle(p.bytes(), 'mem');
  assert.ok(d instanceof PyDict);
  assert.deepEqual([...d.entries()].map(([k]) => (typeof k === 'string' ? k : 'tuple')), ['b', 'a', 'tuple']);
  assert.equal(d.get(new PyTuple([1, 2])), 'pair');
  assert.equal(d.get('a'), 2);
});

test('tensor records and persistent ids are inert data', () => {
  const t = unpickle(
    new Pickle().proto().tensor({ storageType: 'BFloat16Storage', key: '3', numel: 6, offset: 2, size: [2, 2], stride: [2, 1] }).stop().bytes(),
    'mem',
  );
  assert.ok(t instanceof PyTensor);
  assert.deepEqual([t.storageOffset, t.size, t.stride], [2, [2, 2], [2, 1]]);
  assert.ok(t.storage instanceof PyPersistent && t.storage.pid instanceof PyTuple);
  const [tag, cls, key, loc, n] = t.storage.pid.items;
  assert.deepEqual([tag, key, loc, n], ['storage', '3', 'cpu', 6]);
  assert.ok(cls instanceof PyGlobal && cls.qualified === 'torch.BFloat16Storage');
});

function refused(bytes: Uint8Array, re: RegExp): void {
  assert.throws(() => unpickle(bytes, 'some/file.pth'), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, /^some\/file\.pth: /);
    assert.match(e.message, re);
    return true;
  });
}

test('forbidden globals, unknown opcodes and truncation are refused', () => {
  refused(new Pickle().proto().global('os', 'system').stop().bytes(), /refusing to load: pickle references forbidden global os\.system/);
  refused(new Pickle().proto().global('builtins', 'getattr').stop().bytes(), /forbidden global builtins\.getattr/);
  refused(new Pickle().proto().global('torch', 'load').stop().bytes(), /forbidden global torch\.load/);
  // an allowed name that is not a constructor cannot be called
  refused(new Pickle().proto().global('torch', 'FloatStorage').emptyTuple().reduce().stop().bytes(), /not a constructor/);
  refused(new Pickle().proto().op(0x69).stop().bytes(), /unsupported pickle opcode 0x69/); // INST
  refused(new Pickle().proto().str('abc').bytes().subarray(0, 6), /truncated/);
  refused(new Pickle().proto().get(9).stop().bytes(), /memo slot 9/);
});
