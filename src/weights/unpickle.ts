// A restricted pickle decoder for the `data.pkl` of torch.save checkpoints.
//
// It never executes anything. A pickle is a program for a stack machine whose GLOBAL opcodes name
// arbitrary Python callables (os.system, builtins.eval, ...) and whose REDUCE opcode calls them;
// loading untrusted checkpoints with Python's pickle is remote code execution. Here GLOBAL /
// STACK_GLOBAL resolve only against a small allow-list, and REDUCE on an allowed name builds an
// inert JavaScript value (a dict, a tensor record). Any other name is refused the moment it is
// referenced, anywhere in the file, even inside parts we would ignore (optimizer state, meta):
// refusing is the security property. Unknown opcodes are refused too.
//
// What torch.save writes for a state dict (protocol 2):
//   {name: _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks), ...}
// where `storage` comes from BINPERSID with the persistent id
//   ('storage', torch.<Dtype>Storage, key, location, numel)
// and hooks is `collections.OrderedDict()`. Parameters wrap this in `_rebuild_parameter`.
//
// Trainer checkpoints hold more than tensors beside the state dict, and the whole pickle must be
// decoded to reach it: mmengine's `message_hub` (MessageHub.state_dict(): HistoryBuffer objects
// whose `_log_history` / `_count_history` are numpy arrays, numpy scalars in runtime_info) and
// DeepSpeed's `sparse_tensor_module_names = set()`. Under protocol 2 those pickle as
//   set:      __builtin__.set([items])                      (REDUCE)
//   bytes:    _codecs.encode(latin-1 text, 'latin1')         (REDUCE; protocol 2 has no bytes opcode)
//   ndarray:  numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b') then BUILD(state)
//   dtype:    numpy.dtype('f8', False, True) then BUILD(state)
//   scalar:   numpy.core.multiarray.scalar(dtype, raw bytes)  (numpy 2 spells it numpy._core)
//   object:   HistoryBuffer, () NEWOBJ, then BUILD(its __dict__)
// Those names are allowed as INERT globals: REDUCE / NEWOBJ on them make a PyOpaque record of the
// name and its arguments, BUILD stores the state on it, and nothing is ever looked up or run.
// (_codecs.encode with 'latin1' yields the bytes it stands for, which is a decoding, not a call.)

import { InputError } from '../core/errors.js';

/** A Python name from the allow-list, e.g. `torch.BFloat16Storage`, as an inert marker. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

/** A dict (or OrderedDict) with hashable keys; insertion order kept, like Python's. */
export class PyDict {
  private readonly map = new Map<string, [PyValue, PyValue]>();
  /** Instance attributes set by BUILD (e.g. the `_metadata` of a state_dict); unused. */
  attrs: PyValue = null;
  set(key: PyValue, value: PyValue): void {
    this.map.set(hashKey(key), [key, value]);
  }
  get(key: PyValue): PyValue | undefined {
    return this.map.get(hashKey(key))?.[1];
  }
  entries(): IterableIterator<[PyValue, PyValue]> {
    return this.map.values();
  }
  get size(): number {
    return this.map.size;
  }
}

/** What BINPERSID produced: the persistent id, left for the caller to interpret. */
export class PyPersistent {
  constructor(readonly pid: PyValue) {}
}

/** `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)` as data. Offsets/strides in elements. */
export class PyTensor {
  constructor(
    readonly storage: PyValue,
    readonly storageOffset: number,
    readonly size: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

/**
 * What REDUCE / NEWOBJ on an inert global (a numpy array, a set, mmengine's HistoryBuffer) leaves:
 * the name, its arguments and any BUILD state, as data. Nothing was constructed.
 */
export class PyOpaque {
  /** The state BUILD gave it (`__setstate__` argument); null before any BUILD. */
  state: PyValue = null;
  constructor(readonly cls: PyGlobal, readonly args: readonly PyValue[]) {}
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | PyTuple
  | PyDict
  | PyGlobal
  | PyPersistent
  | PyTensor
  | PyOpaque;

const STORAGE_CLASSES = ['Float', 'Half', 'BFloat16', 'Double', 'Long', 'Int', 'Short', 'Char', 'Byte', 'Bool'].map((d) => `torch.${d}Storage`);

/**
 * Names that trainer checkpoints use for non-tensor values (see the header). REDUCE, NEWOBJ and
 * BUILD on them only record data (PyOpaque); they are never resolved to anything callable.
 */
export const INERT_GLOBALS: ReadonlySet<string> = new Set([
  '__builtin__.set', // Python 2 spelling, which protocol 2 writes (pickle's fix_imports)
  'builtins.set',
  '_codecs.encode',
  'numpy.core.multiarray._reconstruct',
  'numpy._core.multiarray._reconstruct',
  'numpy.core.multiarray.scalar',
  'numpy._core.multiarray.scalar',
  'numpy.ndarray',
  'numpy.dtype',
  'mmengine.logging.history_buffer.HistoryBuffer',
]);

/** Every name a pickle may reference. Nothing here is ever called; see `reduce` below. */
export const ALLOWED_GLOBALS: ReadonlySet<string> = new Set([
  ...INERT_GLOBALS,
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch._tensor._rebuild_from_type_v2',
  'torch.Tensor',
  'torch.nn.parameter.Parameter',
  'torch.Size',
  ...STORAGE_CLASSES,
]);

function hashKey(k: PyValue): string {
  if (k === null) return 'N';
  switch (typeof k) {
    case 'string':
      return `s${k}`;
    case 'number':
    case 'bigint':
      return `n${k}`; // 1 and 1n hash alike, as in Python
    case 'boolean':
      return k ? 'n1' : 'n0'; // Python: True == 1
  }
  if (k instanceof PyTuple) return `t(${k.items.map(hashKey).join(',')})`;
  if (k instanceof PyGlobal) return `g${k.qualified}`;
  throw new Error('unhashable');
}

const MARK = Symbol('mark');
type Slot = PyValue | typeof MARK;

/**
 * Decode `bytes` (a pickle) into inert values. `where` names the file in error messages.
 * Throws InputError on forbidden globals, unknown opcodes and malformed data.
 */
export function unpickle(bytes: Uint8Array, where: string): PyValue {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Explicitly typed so that TypeScript narrows after `if (...) fail(...)`.
  const fail: (why: string) => never = (why) => {
    throw new InputError(`${where}: ${why}`, where);
  };
  const stack: Slot[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;

  const need = (n: number) => {
    if (pos + n > buf.length) fail(`pickle is truncated at byte ${pos}`);
  };
  const u8 = () => (need(1), buf[pos++]!);
  const u16 = () => (need(2), (pos += 2), buf.readUInt16LE(pos - 2));
  const u32 = () => (need(4), (pos += 4), buf.readUInt32LE(pos - 4));
  const i32 = () => (need(4), (pos += 4), buf.readInt32LE(pos - 4));
  const u64 = () => {
    need(8);
    const v = buf.readBigUInt64LE(pos);
    pos += 8;
    if (v > BigInt(buf.length)) fail(`pickle length field ${v} exceeds the data`);
    return Number(v);
  };
  const take = (n: number) => (need(n), (pos += n), buf.subarray(pos - n, pos));
  const line = () => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail('pickle is truncated in a GLOBAL name');
    const s = buf.toString('utf8', pos, end);
    pos = end + 1;
    return s;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined) fail(`pickle stack underflow at byte ${pos}`);
    if (v === MARK) fail(`unexpected MARK at byte ${pos}`);
    return v as PyValue;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail(`pickle stack underflow at byte ${pos}`);
    return v as PyValue;
  };
  /** Pop everything down to the topmost MARK (and the mark itself). */
  const popMark = (): PyValue[] => {
    let i = stack.length - 1;
    while (i >= 0 && stack[i] !== MARK) i--;
    if (i < 0) fail(`pickle has no MARK for the opcode at byte ${pos}`);
    const items = stack.splice(i) as PyValue[];
    items.shift();
    return items;
  };
  const global = (module: string, name: string): PyGlobal => {
    const q = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(q)) fail(`refusing to load: pickle references forbidden global ${q}`);
    return new PyGlobal(module, name);
  };
  const int = (v: PyValue, what: string): number => {
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    if (typeof v === 'boolean') return v ? 1 : 0;
    return fail(`${what} is not an integer`);
  };
  const ints = (v: PyValue, what: string): number[] => {
    if (v instanceof PyTuple || Array.isArray(v)) {
      const items = v instanceof PyTuple ? v.items : v;
      return items.map((x) => int(x, what));
    }
    return fail(`${what} is not a tuple of integers`);
  };
  const tupleArgs = (v: PyValue, what: string): readonly PyValue[] => {
    if (v instanceof PyTuple) return v.items;
    return fail(`arguments of ${what} are not a tuple`);
  };
  const setItem = (d: PyValue, k: PyValue, v: PyValue) => {
    if (!(d instanceof PyDict)) fail('SETITEM on something that is not a dict');
    try {
      (d as PyDict).set(k, v);
    } catch {
      fail('pickle uses an unhashable dict key');
    }
  };

  /** The only "calls": build inert values for the allow-listed names. */
  const reduce = (fn: PyValue, argv: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal)) return fail('REDUCE/NEWOBJ on something that is not an allowed global');
    const q = fn.qualified;
    const args = tupleArgs(argv, q);
    if (INERT_GLOBALS.has(q)) {
      // Protocol 2 bytes: _codecs.encode(text, 'latin1'); latin-1 maps code points 0-255 to bytes.
      const [text, codec] = args;
      if (q === '_codecs.encode' && typeof text === 'string' && (codec === 'latin1' || codec === 'latin-1')) {
        if (/[^\u0000-\u00ff]/.test(text)) fail('_codecs.encode of text outside latin-1');
        return new Uint8Array(Buffer.from(text, 'latin1'));
      }
      return new PyOpaque(fn, args);
    }
    switch (q) {
      case 'collections.OrderedDict': {
        const d = new PyDict();
        if (args.length > 0) fail('OrderedDict with constructor arguments is not supported');
        return d;
      }
      case 'torch._utils._rebuild_tensor_v2': {
        if (args.length < 4) fail(`${q} needs at least 4 arguments, got ${args.length}`);
        const size = ints(args[2]!, 'tensor size');
        const stride = ints(args[3]!, 'tensor stride');
        if (size.length !== stride.length) fail(`tensor size has ${size.length} dims but stride ${stride.length}`);
        if (size.some((s) => s < 0) || stride.some((s) => s < 0)) fail('negative tensor size or stride');
        return new PyTensor(args[0]!, int(args[1]!, 'storage offset'), size, stride);
      }
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        // (data, requires_grad, backward_hooks[, state]): the parameter's data is the tensor.
        if (!(args[0] instanceof PyTensor)) fail(`${q} does not wrap a tensor`);
        return args[0]!;
      case 'torch._tensor._rebuild_from_type_v2': {
        // (func, new_type, args, state): only plain Tensor/Parameter types, func applied to args.
        const t = args[1];
        if (!(t instanceof PyGlobal) || (t.qualified !== 'torch.Tensor' && t.qualified !== 'torch.nn.parameter.Parameter')) {
          fail(`${q} with a tensor subclass is not supported`);
        }
        return reduce(args[0] ?? null, args[2] ?? null);
      }
      case 'torch.Size':
        return new PyTuple(ints(args[0] ?? new PyTuple([]), 'torch.Size'));
      default:
        return fail(`refusing to load: pickle calls ${q}, which is not a constructor`);
    }
  };

  for (;;) {
    const at = pos;
    const op = u8();
    switch (op) {
      case 0x80: if (u8() > 5) fail('pickle protocol above 5'); break; // PROTO n
      case 0x95: take(8); break; // FRAME length (framing is only a read-ahead hint)
      case 0x2e: // STOP
        if (stack.length !== 1) fail(`pickle ends with ${stack.length} values on the stack`);
        return pop();
      case 0x7d: stack.push(new PyDict()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(new PyTuple([])); break; // EMPTY_TUPLE
      case 0x28: stack.push(MARK); break; // MARK
      case 0x30: if (stack.pop() === undefined) fail('POP on an empty stack'); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: // BINGET
      case 0x6a: { // LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        const v = memo.get(k);
        if (v === undefined) fail(`pickle reads memo slot ${k} before writing it`);
        stack.push(v!);
        break;
      }
      case 0x58: stack.push(take(u32()).toString('utf8')); break; // BINUNICODE
      case 0x8c: stack.push(take(u8()).toString('utf8')); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(take(u64()).toString('utf8')); break; // BINUNICODE8
      case 0x54: stack.push(take(u32()).toString('latin1')); break; // BINSTRING (Python 2 str): read as latin-1 text
      case 0x55: stack.push(take(u8()).toString('latin1')); break; // SHORT_BINSTRING
      case 0x42: stack.push(new Uint8Array(take(u32()))); break; // BINBYTES
      case 0x43: stack.push(new Uint8Array(take(u8()))); break; // SHORT_BINBYTES
      case 0x8e: // BINBYTES8
      case 0x96: stack.push(new Uint8Array(take(u64()))); break; // BYTEARRAY8
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: // LONG1
      case 0x8b: { // LONG4: little-endian two's complement of n bytes
        const n = op === 0x8a ? u8() : u32();
        const b = take(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
        if (n > 0 && b[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        stack.push(buf.readDoubleBE(pos));
        pos += 8;
        break;
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x74: stack.push(new PyTuple(popMark())); break; // TUPLE
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: { // TUPLE3
        const n = op - 0x84;
        const items: PyValue[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        stack.push(new PyTuple(items));
        break;
      }
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x64: { // DICT
        const items = popMark();
        const d = new PyDict();
        for (let i = 0; i + 1 < items.length; i += 2) setItem(d, items[i]!, items[i + 1]!);
        stack.push(d);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) fail('APPEND on something that is not a list');
        (l as PyValue[]).push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) fail('APPENDS on something that is not a list');
        for (const it of items) (l as PyValue[]).push(it);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        setItem(top(), k, v);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        const d = top();
        if (items.length % 2) fail('SETITEMS with an odd number of items');
        for (let i = 0; i < items.length; i += 2) setItem(d, items[i]!, items[i + 1]!);
        break;
      }
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL with non-string names');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE: callable, args -> callable(*args), restricted to the allow-list
        const args = pop();
        stack.push(reduce(pop(), args));
        break;
      }
      case 0x81: { // NEWOBJ: cls, args -> cls.__new__(cls, *args)
        const args = pop();
        stack.push(reduce(pop(), args));
        break;
      }
      case 0x62: { // BUILD: obj, state -> obj.__setstate__(state); recorded as data, never run
        const state = pop();
        const obj = top();
        if (obj instanceof PyDict) obj.attrs = state;
        else if (obj instanceof PyOpaque) obj.state = state;
        else if (!(obj instanceof PyTensor)) fail('BUILD on an object that is not a dict, tensor or inert object');
        break;
      }
      case 0x51: stack.push(new PyPersistent(pop())); break; // BINPERSID
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at}`);
    }
  }
}
