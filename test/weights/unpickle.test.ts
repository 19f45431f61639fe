import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../../src/core/errors.js';
import { unpickle, PyDict, PyTuple, PyTensor, PyPersistent, PyGlobal, PyOpaque, INERT_GLOBALS } from '../../src/weights/unpickle.js';
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

// --- inert globals: what trainer checkpoints hold beside the state dict ----------------------

/**
 * CPython 3.11 `pickle.dumps(obj, protocol=2)` (numpy 2.4, so `numpy._core`) of
 *   {'message_hub': {'log_scalars': OrderedDict([('train/lr', HistoryBuffer())]),
 *                    'runtime_info': OrderedDict([('iter', np.int64(500)), ('loss', np.float64(2.5))])},
 *    'sparse_tensor_module_names': set(), 'names': {'a', 'b'}, 'raw': b'\x00\xff'}
 * where HistoryBuffer is a class in module `mmengine.logging.history_buffer` whose __dict__ is
 * {max_length: 1000000, _log_history: np.array([0.001, 0.0009]), _count_history: np.array([1, 1])}.
 */
const CPYTHON_TRAINER_STATE =
  '80027d710028580b0000006d6573736167655f68756271017d710228580b0000006c6f675f7363616c617273710363636f6c6c656374696f6e730a4f726465726564446963740a7104295271055808000000747261696e2f6c727106636d6d656e67696e652e6c6f6767696e672e686973746f72795f6275666665720a486973746f72794275666665720a7107298171087d710928580a0000006d61785f6c656e677468710a4a40420f00580c0000005f6c6f675f686973746f7279710b636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a710c636e756d70790a6e6461727261790a710d4b0085710e635f636f646563730a656e636f64650a710f580100000062711058060000006c6174696e317111867112527113877114527115284b014b02857116636e756d70790a64747970650a7117580200000066387118898887711952711a284b0358010000003c711b4e4e4e4affffffff4affffffff4b0074711c6289680f5817000000c3bcc2a9c3b1c3924d62503fc292c38b7f48c2bf7d4d3f711d681186711e52711f74712062580e0000005f636f756e745f686973746f72797121680c680d4b008571226813877123527124284b014b0285712568175802000000693871268988877127527128284b03681b4e4e4e4affffffff4affffffff4b007471296289680f581000000001000000000000000100000000000000712a681186712b52712c74712d62756273580c00000072756e74696d655f696e666f712e68042952712f285804000000697465727130636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a71316828680f5809000000c3b4010000000000007132681186713352713486713552713658040000006c6f737371376831681a680f580800000000000000000004407138681186713952713a86713b52713c7575581a0000007370617273655f74656e736f725f6d6f64756c655f6e616d6573713d635f5f6275696c74696e5f5f0a7365740a713e5d713f85714052714158050000006e616d65737142683e5d714328580100000061714458010000006271456585714652714758030000007261777148680f580300000000c3bf7149681186714a52714b752e';

const dict = (v: unknown): PyDict => {
  assert.ok(v instanceof PyDict, `expected a dict, got ${String(v)}`);
  return v;
};
const opaque = (v: unknown, qualified: string): PyOpaque => {
  assert.ok(v instanceof PyOpaque, `expected an inert ${qualified}, got ${String(v)}`);
  assert.equal(v.cls.qualified, qualified);
  return v;
};
const f64 = (b: unknown): number[] => {
  assert.ok(b instanceof Uint8Array);
  return [...new Float64Array(Uint8Array.from(b).buffer)];
};

test('mmengine message_hub, numpy arrays and scalars, sets and bytes from CPython load as inert data', () => {
  const root = dict(unpickle(Buffer.from(CPYTHON_TRAINER_STATE, 'hex'), 'iter_500.pth'));
  const hub = dict(root.get('message_hub'));
  const buffer = opaque(dict(hub.get('log_scalars')).get('train/lr'), 'mmengine.logging.history_buffer.HistoryBuffer');
  assert.deepEqual(buffer.args, [], 'NEWOBJ with () only records the class');
  const state = dict(buffer.state);
  assert.equal(state.get('max_length'), 1000000);
  // ndarray: _reconstruct(ndarray, (0,), b'b') then BUILD (version, shape, dtype, fortran, raw bytes)
  const arr = opaque(state.get('_log_history'), 'numpy._core.multiarray._reconstruct');
  assert.ok(arr.args[0] instanceof PyGlobal && arr.args[0].qualified === 'numpy.ndarray');
  assert.deepEqual(arr.args[2], new Uint8Array([0x62]), "_codecs.encode('b', 'latin1') is the bytes b'b'");
  assert.ok(arr.state instanceof PyTuple);
  const [version, shape, dtype, fortran, raw] = arr.state.items;
  assert.deepEqual([version, shape, fortran], [1, new PyTuple([2]), false]);
  const dt = opaque(dtype, 'numpy.dtype');
  assert.deepEqual(dt.args, ['f8', false, true]);
  assert.ok(dt.state instanceof PyTuple && dt.state.items[1] === '<', 'BUILD state of the dtype kept');
  assert.deepEqual(f64(raw), [0.001, 0.0009]);
  // numpy scalars: scalar(dtype, raw bytes); the memoised dtype object is shared
  const loss = opaque(dict(hub.get('runtime_info')).get('loss'), 'numpy._core.multiarray.scalar');
  assert.equal(loss.args[0], dt);
  assert.deepEqual(f64(loss.args[1]), [2.5]);
  opaque(dict(hub.get('runtime_info')).get('iter'), 'numpy._core.multiarray.scalar');
  // set() and {'a', 'b'}: __builtin__.set([items])
  assert.deepEqual(opaque(root.get('sparse_tensor_module_names'), '__builtin__.set').args, [[]]);
  const names = opaque(root.get('names'), '__builtin__.set').args[0];
  assert.deepEqual(new Set(names as string[]), new Set(['a', 'b']));
  assert.deepEqual(root.get('raw'), new Uint8Array([0x00, 0xff]));
});

test('every inert global loads; REDUCE, NEWOBJ and BUILD on them only record data', () => {
  for (const q of INERT_GLOBALS) {
    const dot = q.lastIndexOf('.');
    const [module, name] = [q.slice(0, dot), q.slice(dot + 1)];
    const g = unpickle(new Pickle().proto().global(module, name).stop().bytes(), 'mem');
    assert.ok(g instanceof PyGlobal && g.qualified === q, `${q} as a bare reference`);
    const called = unpickle(new Pickle().proto().global(module, name).mark().int(1).str('x').tuple().reduce().emptyDict().build().stop().bytes(), 'mem');
    const o = opaque(called, q);
    assert.deepEqual(o.args, [1, 'x']);
    assert.ok(o.state instanceof PyDict);
    const made = unpickle(new Pickle().proto().global(module, name).emptyTuple().op(0x81).stop().bytes(), 'mem');
    assert.deepEqual(opaque(made, q).args, []);
  }
  for (const q of ['builtins.set', 'numpy.core.multiarray._reconstruct', 'numpy.core.multiarray.scalar']) assert.ok(INERT_GLOBALS.has(q), q);
  // bytes need latin-1 text; another codec stays an opaque record, not a decoding
  const other = unpickle(new Pickle().proto().global('_codecs', 'encode').mark().str('x').str('utf-16').tuple().reduce().stop().bytes(), 'mem');
  assert.deepEqual(opaque(other, '_codecs.encode').args, ['x', 'utf-16']);
  refused(new Pickle().proto().global('_codecs', 'encode').mark().str('\u0100').str('latin1').tuple().reduce().stop().bytes(), /outside latin-1/);
  // an inert value is not callable in turn
  refused(new Pickle().proto().global('numpy', 'dtype').emptyTuple().reduce().emptyTuple().reduce().stop().bytes(), /not an allowed global/);
});

test('code-execution globals stay refused, also where inert objects are built', () => {
  for (const [module, name] of [
    ['os', 'system'], ['posix', 'system'], ['builtins', 'eval'], ['builtins', 'exec'], ['__builtin__', 'eval'],
    ['builtins', '__import__'], ['subprocess', 'Popen'], ['subprocess', 'check_output'], ['numpy', 'load'],
    ['numpy.core.multiarray', '_reconstruct_evil'], ['numpy', 'frombuffer'], ['numpy.testing._private.utils', 'runstring'],
    ['mmengine.logging.history_buffer', 'HistoryBuffer.__init__'], ['mmengine.logging', 'MessageHub'], ['builtins', 'frozenset'],
    ['copyreg', '_reconstructor'], ['pickle', 'loads'], ['_codecs', 'decode'],
  ]) {
    refused(new Pickle().proto().global(module!, name!).stop().bytes(), new RegExp(`forbidden global ${`${module}.${name}`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
  }
  // inside an inert object's state, inside a set, as a persistent id: still refused on sight
  refused(new Pickle().proto().global('mmengine.logging.history_buffer', 'HistoryBuffer').emptyTuple().op(0x81)
    .emptyDict().mark().str('x').global('os', 'system').mark().str('id').tuple().reduce().setitems().build().stop().bytes(), /forbidden global os\.system/);
  refused(new Pickle().proto().global('__builtin__', 'set').mark().op(0x5d).mark().global('subprocess', 'Popen').op(0x65).tuple().reduce().stop().bytes(), /forbidden global subprocess\.Popen/);
  refused(new Pickle().proto().global('builtins', 'eval').op(0x51).stop().bytes(), /forbidden global builtins\.eval/);
});
