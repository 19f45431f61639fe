// The GPT judge of open-ended video QA (MSVD-QA, MSRVTT-QA, ...): Video-ChatGPT's protocol
// (quantitative_evaluation/evaluate_activitynet_qa.py; Video-LLaVA's eval_video_qa.py is the same
// judge on the `{id, question, answer, pred}` records MG-LLaVA's VIDEOQADataset writes). The
// release's video QA numbers are this protocol with gpt-3.5-turbo.
//
// The protocol, reproduced:
//   - one chat-completions request per item, model "gpt-3.5-turbo", the system and user messages
//     below character for character (Python's adjacent-literal concatenation included: no space
//     in "the task:------##INSTRUCTIONS: ", nor in "not STRING.DO NOT", two in "is  a string"),
//     the question, correct answer and predicted answer put in with str();
//   - no temperature (nor any other sampling parameter) is sent: the API's default applies
//     (`temperature` here sends one, which the protocol does not);
//   - the reply's content goes through `ast.literal_eval` (pyLiteralEval below: Python literal
//     syntax only; anything else, a code fence or a word around the dict included, fails);
//   - a failed item (an API error, a reply that does not parse) is asked again: the protocol
//     loops over the unfinished items until none is left; here each item gets `attempts` asks
//     (default 5) and is then recorded as an error, the run going on;
//   - aggregation over the judged items: score = int(reply['score']) (Python int(): a float is
//     truncated, a digit string read), average score = sum / judged; pred: "yes" in
//     pred.lower() counts yes, else "no" in pred.lower() counts no, else neither; accuracy =
//     yes / (yes + no). Printed as the protocol prints them (Python's print of the numbers):
//       Yes count: N / No count: N / Accuracy: 0.xx / Average score: x.xx
//
// Where this differs (robustness): a reply that parses but is not a dict with a str 'pred' and an
// int()-able 'score' is a failed ask and asked again (the protocol would save it and then crash
// or skip it in the aggregation); 401/403/404 from the API stop the run with an InputError (a
// wrong key, model or URL, asked again for every item otherwise); 400/422 (a request the API
// refuses) are recorded as the item's error at once. The OpenAI client's own retries
// (`maxRetries`, default 2: connection errors, 408/409/429/5xx with its backoff) come under each
// ask.
//
// Cache (`cache`: a jsonl path): every verdict is appended as one JSON line as soon as it comes
// (written synchronously); a rerun reads the file and does not ask again for an item whose id,
// question, answer, prediction and model are all the same as a line's. Errors are not cached (a
// rerun asks again, as the protocol's rerun does). A torn last line (a run killed mid-write) is
// skipped when read and cut off before the next append.

import { appendFileSync, existsSync, mkdirSync, readFileSync, truncateSync } from 'node:fs';
import { dirname } from 'node:path';
import OpenAI from 'openai';
import { InputError } from '../core/errors.js';
import { pyFloatRepr } from './tsv.js';

/** The protocol's judge model. */
export const DEFAULT_JUDGE_MODEL = 'gpt-3.5-turbo';

/** The protocol's system message. */
export const JUDGE_SYSTEM_PROMPT =
  'You are an intelligent chatbot designed for evaluating the correctness of generative outputs for question-answer pairs. ' +
  "Your task is to compare the predicted answer with the correct answer and determine if they match meaningfully. Here's how you can accomplish the task:" +
  '------' +
  '##INSTRUCTIONS: ' +
  '- Focus on the meaningful match between the predicted answer and the correct answer.\n' +
  '- Consider synonyms or paraphrases as valid matches.\n' +
  '- Evaluate the correctness of the prediction compared to the answer.';

/** The protocol's user message for one item. */
export function judgeUserPrompt(question: string, answer: string, prediction: string): string {
  return (
    'Please evaluate the following video-based question-answer pair:\n\n' +
    `Question: ${question}\n` +
    `Correct Answer: ${answer}\n` +
    `Predicted Answer: ${prediction}\n\n` +
    'Provide your evaluation only as a yes/no and score where the score is an integer value between 0 and 5, with 5 indicating the highest meaningful match. ' +
    "Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', where value of 'pred' is  a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING." +
    'DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. ' +
    "For example, your response should look like this: {'pred': 'yes', 'score': 4.8}."
  );
}

export interface JudgeMessage {
  role: 'system' | 'user';
  content: string;
}

/** The two messages the protocol sends for an item. */
export function judgeMessages(item: Pick<JudgeItem, 'question' | 'answer' | 'prediction'>): JudgeMessage[] {
  return [
    { role: 'system', content: JUDGE_SYSTEM_PROMPT },
    { role: 'user', content: judgeUserPrompt(item.question, item.answer, item.prediction) },
  ];
}

// ---------------------------------------------------------------------------------------------
// ast.literal_eval

/** A Python value as `ast.literal_eval` returns it. */
export type PyValue =
  | { type: 'str'; value: string }
  | { type: 'bytes'; value: string }
  | { type: 'int'; value: bigint }
  | { type: 'float'; value: number }
  | { type: 'complex'; re: number; im: number }
  | { type: 'bool'; value: boolean }
  | { type: 'none' }
  | { type: 'ellipsis' }
  | { type: 'tuple' | 'list' | 'set'; items: PyValue[] }
  | { type: 'dict'; entries: [PyValue, PyValue][] };

/** What `ast.literal_eval` would raise (ValueError, SyntaxError, TypeError). */
export class PyLiteralError extends Error {
  override readonly name = 'PyLiteralError';
}

type Tok =
  | { k: 'str'; bytes: boolean; value: string; pos: number }
  | { k: 'num'; value: PyValue; pos: number }
  | { k: 'name'; value: string; pos: number }
  | { k: 'op'; value: string; pos: number }
  | { k: 'nl'; pos: number }
  | { k: 'end'; pos: number };

const SIMPLE_ESC: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

function pyErr(msg: string, pos?: number): never {
  throw new PyLiteralError(pos === undefined ? msg : `${msg} (at ${pos})`);
}

function readNumber(s: string, i: number): { value: PyValue; end: number } {
  const rest = s.slice(i);
  const D = '[0-9](?:_?[0-9])*';
  let m: RegExpExecArray | null;
  let value: PyValue | undefined;
  let len = 0;
  if ((m = /^0[xX](?:_?[0-9a-fA-F])+/.exec(rest))) {
    value = { type: 'int', value: BigInt('0x' + m[0].slice(2).replace(/_/g, '')) };
  } else if ((m = /^0[oO](?:_?[0-7])+/.exec(rest))) {
    value = { type: 'int', value: BigInt('0o' + m[0].slice(2).replace(/_/g, '')) };
  } else if ((m = /^0[bB](?:_?[01])+/.exec(rest))) {
    value = { type: 'int', value: BigInt('0b' + m[0].slice(2).replace(/_/g, '')) };
  } else if ((m = new RegExp(`^(?:(?:${D})?\\.${D}|${D}\\.)(?:[eE][-+]?${D})?[jJ]?|^${D}(?:[eE][-+]?${D})[jJ]?|^${D}[jJ]`).exec(rest))) {
    const t = m[0].replace(/_/g, '');
    const imag = /[jJ]$/.test(t);
    const x = Number(imag ? t.slice(0, -1) : t);
    value = imag ? { type: 'complex', re: 0, im: x } : { type: 'float', value: x };
  } else if ((m = new RegExp(`^${D}`).exec(rest))) {
    const t = m[0].replace(/_/g, '');
    if (t.length > 1 && t[0] === '0' && /[1-9]/.test(t)) pyErr('leading zeros in decimal integer literals are not permitted', i);
    value = { type: 'int', value: BigInt(t) };
  }
  if (!value || !m) pyErr('invalid number', i);
  len = m[0].length;
  if (/[A-Za-z0-9_]/.test(s[i + len] ?? '')) pyErr('invalid number literal', i);
  return { value, end: i + len };
}

function readString(s: string, i: number, prefix: string): { tok: Tok; end: number } {
  const p = prefix.toLowerCase();
  const raw = p.includes('r');
  const bytes = p.includes('b');
  if (p.includes('f')) pyErr('f-strings are not literals', i);
  const q = s[i]!;
  const triple = s.startsWith(q + q + q, i);
  const close = triple ? q + q + q : q;
  let j = i + close.length;
  let v = '';
  for (;;) {
    if (j >= s.length) pyErr('unterminated string literal', i);
    if (s.startsWith(close, j)) {
      j += close.length;
      break;
    }
    const c = s[j]!;
    if ((c === '\n' || c === '\r') && !triple) pyErr('unterminated string literal', i);
    if (bytes && c.charCodeAt(0) > 0x7f) pyErr('bytes can only contain ASCII literal characters', j);
    if (c !== '\\') {
      v += c;
      j++;
      continue;
    }
    const n = s[j + 1];
    if (n === undefined) pyErr('unterminated string literal', i);
    if (raw) {
      // the backslash stays; it keeps the next character (a quote, a newline) from ending anything
      v += c + n;
      j += 2;
      continue;
    }
    if (n === '\n') {
      j += 2;
      continue;
    }
    if (n === '\r') {
      j += s[j + 2] === '\n' ? 3 : 2;
      continue;
    }
    if (SIMPLE_ESC[n] !== undefined) {
      v += SIMPLE_ESC[n];
      j += 2;
      continue;
    }
    if (/[0-7]/.test(n)) {
      const m = /^[0-7]{1,3}/.exec(s.slice(j + 1))!;
      const code = parseInt(m[0], 8);
      if (bytes && code > 0xff) pyErr('invalid octal escape', j);
      v += String.fromCharCode(code);
      j += 1 + m[0].length;
      continue;
    }
    const hexLen = n === 'x' ? 2 : !bytes && n === 'u' ? 4 : !bytes && n === 'U' ? 8 : 0;
    if (hexLen > 0) {
      const h = s.slice(j + 2, j + 2 + hexLen);
      if (h.length !== hexLen || !/^[0-9a-fA-F]+$/.test(h)) pyErr(`truncated \\${n} escape`, j);
      const code = parseInt(h, 16);
      if (code > 0x10ffff) pyErr('illegal Unicode character', j);
      v += String.fromCodePoint(code);
      j += 2 + hexLen;
      continue;
    }
    if (!bytes && n === 'N') pyErr('\\N{...} escapes are not supported', j);
    // an unknown escape keeps its backslash
    v += c + n;
    j += 2;
  }
  return { tok: { k: 'str', bytes, value: v, pos: i }, end: j };
}

function tokenize(src: string): Tok[] {
  const toks: Tok[] = [];
  let depth = 0;
  let i = 0;
  let lineStart = true;
  let lineHasContent = false;
  const n = src.length;
  while (i < n) {
    const c = src[i]!;
    if (lineStart && depth === 0) {
      // the indentation of a logical line: only a blank or comment line may have any
      let j = i;
      while (j < n && (src[j] === ' ' || src[j] === '\t' || src[j] === '\f')) j++;
      const after = src[j];
      const blank = after === undefined || after === '\n' || after === '\r' || after === '#';
      if (j > i && !blank) pyErr('unexpected indent', i);
      i = j;
      lineStart = false;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\f') {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < n && src[i] !== '\n' && src[i] !== '\r') i++;
      continue;
    }
    if (c === '\\' && (src[i + 1] === '\n' || src[i + 1] === '\r')) {
      i += src[i + 1] === '\r' && src[i + 2] === '\n' ? 3 : 2;
      continue;
    }
    if (c === '\n' || c === '\r') {
      i += c === '\r' && src[i + 1] === '\n' ? 2 : 1;
      if (depth === 0) {
        if (lineHasContent) toks.push({ k: 'nl', pos: i });
        lineHasContent = false;
        lineStart = true;
      }
      continue;
    }
    lineHasContent = true;
    const pm = /^([rRbBuUfF]{1,2})?(['"])/.exec(src.slice(i, i + 3));
    if (pm) {
      const prefix = pm[1] ?? '';
      const pl = prefix.toLowerCase();
      if (['', 'r', 'u', 'b', 'br', 'rb', 'f', 'fr', 'rf'].includes(pl)) {
        const { tok, end } = readString(src, i + prefix.length, prefix);
        toks.push({ ...tok, pos: i });
        i = end;
        continue;
      }
    }
    if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(src[i + 1] ?? ''))) {
      const { value, end } = readNumber(src, i);
      toks.push({ k: 'num', value, pos: i });
      i = end;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))!;
      toks.push({ k: 'name', value: m[0], pos: i });
      i += m[0].length;
      continue;
    }
    if (src.startsWith('...', i)) {
      toks.push({ k: 'op', value: '...', pos: i });
      i += 3;
      continue;
    }
    if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) {
      if (depth === 0) pyErr(`unmatched '${c}'`, i);
      depth--;
    }
    toks.push({ k: 'op', value: c, pos: i });
    i++;
  }
  if (depth > 0) pyErr("'(' was never closed", n);
  toks.push({ k: 'end', pos: n });
  return toks;
}

/** a number's value for == across bool, int, float and complex (null: not a number) */
function numOf(v: PyValue): { re: number; im: number; big?: bigint } | null {
  if (v.type === 'bool') return { re: v.value ? 1 : 0, im: 0, big: v.value ? 1n : 0n };
  if (v.type === 'int') return { re: Number(v.value), im: 0, big: v.value };
  if (v.type === 'float') return { re: v.value, im: 0 };
  if (v.type === 'complex') return { re: v.re, im: v.im };
  return null;
}

/** Python's == of two hashable literals (as dict keys and set items are merged) */
function pyEq(a: PyValue, b: PyValue): boolean {
  const na = numOf(a);
  const nb = numOf(b);
  if (na || nb) {
    if (!na || !nb) return false;
    if (na.big !== undefined && nb.big !== undefined) return na.big === nb.big;
    return na.re === nb.re && na.im === nb.im;
  }
  if (a.type === 'str' || a.type === 'bytes') return b.type === a.type && b.value === a.value;
  if (a.type === 'tuple') return b.type === 'tuple' && a.items.length === b.items.length && a.items.every((x, i) => pyEq(x, b.items[i]!));
  return a.type === b.type; // None, Ellipsis
}

function hashable(v: PyValue): boolean {
  if (v.type === 'list' || v.type === 'dict' || v.type === 'set') return false;
  if (v.type === 'tuple') return v.items.every(hashable);
  return true;
}

/** A parsed expression and what literal_eval's number rules need to know of its node. */
interface Node {
  value: PyValue;
  /** a number Constant (num && !signed) or a sign on one (num && signed) */
  num: boolean;
  signed: boolean;
}

const plain = (value: PyValue): Node => ({ value, num: false, signed: false });

class LiteralParser {
  private i = 0;
  constructor(private readonly toks: Tok[]) {}

  private peek(): Tok {
    return this.toks[this.i]!;
  }

  private isOp(v: string, t: Tok | undefined = this.peek()): boolean {
    return t !== undefined && t.k === 'op' && t.value === v;
  }

  private expectOp(v: string): void {
    const t = this.peek();
    if (!this.isOp(v, t)) pyErr(`expected '${v}'`, t.pos);
    this.i++;
  }

  /** the whole input: an expression or a bare tuple, then only newlines */
  top(): PyValue {
    const t0 = this.peek();
    if (t0.k === 'end' || t0.k === 'nl') pyErr('unexpected end of input', t0.pos);
    const first = this.expr().value;
    let v = first;
    if (this.isOp(',')) {
      const items = [first];
      while (this.isOp(',')) {
        this.i++;
        const t = this.peek();
        if (t.k === 'nl' || t.k === 'end') break;
        items.push(this.expr().value);
      }
      v = { type: 'tuple', items };
    }
    while (this.peek().k === 'nl') this.i++;
    const t = this.peek();
    if (t.k !== 'end') pyErr('invalid syntax', t.pos);
    return v;
  }

  /** a literal, a signed number, or real +/- imaginary (the one BinOp literal_eval takes) */
  private expr(): Node {
    const start = this.peek();
    const left = this.signed();
    if (!this.isOp('+') && !this.isOp('-')) return left;
    const minus = this.isOp('-');
    this.i++;
    const right = this.signed();
    const lv = left.value;
    const rv = right.value;
    if (!left.num || !(lv.type === 'int' || lv.type === 'float') || !right.num || right.signed || rv.type !== 'complex' || this.isOp('+') || this.isOp('-')) {
      pyErr('malformed node or string', start.pos);
    }
    const re = lv.type === 'int' ? Number(lv.value) : lv.value;
    return plain({ type: 'complex', re, im: minus ? -rv.im : rv.im });
  }

  /** a sign on a number constant (not on True, not on another sign), or an atom */
  private signed(): Node {
    if (!this.isOp('+') && !this.isOp('-')) return this.atom();
    const t = this.peek() as { value: string; pos: number };
    this.i++;
    const a = this.signed();
    if (!a.num || a.signed) pyErr('malformed node or string', t.pos);
    const v = a.value;
    let out: PyValue = v;
    if (t.value === '-') {
      if (v.type === 'int') out = { type: 'int', value: -v.value };
      else if (v.type === 'float') out = { type: 'float', value: -v.value };
      else if (v.type === 'complex') out = { type: 'complex', re: -v.re, im: -v.im };
    }
    return { value: out, num: true, signed: true };
  }

  private atom(): Node {
    const t = this.peek();
    if (t.k === 'num') {
      this.i++;
      return { value: t.value, num: true, signed: false };
    }
    if (t.k === 'str') {
      let v = '';
      const bytes = t.bytes;
      while (this.peek().k === 'str') {
        const s = this.peek() as Extract<Tok, { k: 'str' }>;
        if (s.bytes !== bytes) pyErr('cannot mix bytes and nonbytes literals', s.pos);
        v += s.value;
        this.i++;
      }
      return plain({ type: bytes ? 'bytes' : 'str', value: v });
    }
    if (t.k === 'name') {
      this.i++;
      if (t.value === 'True') return plain({ type: 'bool', value: true });
      if (t.value === 'False') return plain({ type: 'bool', value: false });
      if (t.value === 'None') return plain({ type: 'none' });
      if (t.value === 'set' && this.isOp('(') && this.isOp(')', this.toks[this.i + 1])) {
        this.i += 2;
        return plain({ type: 'set', items: [] });
      }
      pyErr(`malformed node or string: name ${t.value}`, t.pos);
    }
    if (this.isOp('...')) {
      this.i++;
      return plain({ type: 'ellipsis' });
    }
    if (this.isOp('(')) {
      this.i++;
      if (this.isOp(')')) {
        this.i++;
        return plain({ type: 'tuple', items: [] });
      }
      const first = this.expr();
      if (this.isOp(')')) {
        this.i++;
        return first; // parentheses make no node
      }
      const items = [first.value];
      while (this.isOp(',')) {
        this.i++;
        if (this.isOp(')')) break;
        items.push(this.expr().value);
      }
      this.expectOp(')');
      return plain({ type: 'tuple', items });
    }
    if (this.isOp('[')) {
      this.i++;
      const items: PyValue[] = [];
      while (!this.isOp(']')) {
        items.push(this.expr().value);
        if (!this.isOp(',')) break;
        this.i++;
      }
      this.expectOp(']');
      return plain({ type: 'list', items });
    }
    if (this.isOp('{')) {
      this.i++;
      if (this.isOp('}')) {
        this.i++;
        return plain({ type: 'dict', entries: [] });
      }
      const k = this.expr().value;
      if (this.isOp(':')) {
        this.i++;
        const entries: [PyValue, PyValue][] = [[k, this.expr().value]];
        while (this.isOp(',')) {
          this.i++;
          if (this.isOp('}')) break;
          const key = this.expr().value;
          this.expectOp(':');
          entries.push([key, this.expr().value]);
        }
        this.expectOp('}');
        // as dict(): a repeated key keeps its first place and its last value
        const merged: [PyValue, PyValue][] = [];
        for (const [key, value] of entries) {
          if (!hashable(key)) pyErr(`unhashable type: '${key.type}'`, t.pos);
          const j = merged.findIndex(([k2]) => pyEq(k2, key));
          if (j >= 0) merged[j]![1] = value;
          else merged.push([key, value]);
        }
        return plain({ type: 'dict', entries: merged });
      }
      const items = [k];
      while (this.isOp(',')) {
        this.i++;
        if (this.isOp('}')) break;
        items.push(this.expr().value);
      }
      this.expectOp('}');
      const merged: PyValue[] = [];
      for (const x of items) {
        if (!hashable(x)) pyErr(`unhashable type: '${x.type}'`, t.pos);
        if (!merged.some((y) => pyEq(y, x))) merged.push(x);
      }
      return plain({ type: 'set', items: merged });
    }
    pyErr(t.k === 'end' || t.k === 'nl' ? 'unexpected end of input' : 'invalid syntax', t.pos);
  }
}

/**
 * Python's `ast.literal_eval(text)`: strings (with their prefixes, escapes and implicit
 * concatenation; \N{...} aside), bytes, numbers, True/False/None, tuples, lists, dicts, sets,
 * set(), signed numbers and real +/- imaginary; comments, leading spaces and tabs, trailing
 * newlines. Anything else throws a PyLiteralError.
 */
export function pyLiteralEval(text: string): PyValue {
  const src = text.replace(/^[ \t]+/, '');
  return new LiteralParser(tokenize(src)).top();
}

/** `d[key]` for a str key, or undefined. */
export function pyDictGet(d: PyValue, key: string): PyValue | undefined {
  if (d.type !== 'dict') return undefined;
  return d.entries.find(([k]) => k.type === 'str' && k.value === key)?.[1];
}

/** Python's `int(x)`, or null where it raises. */
export function pyInt(v: PyValue): number | null {
  switch (v.type) {
    case 'int':
      return Number(v.value);
    case 'bool':
      return v.value ? 1 : 0;
    case 'float':
      return Number.isFinite(v.value) ? Math.trunc(v.value) + 0 : null;
    case 'str':
    case 'bytes': {
      const m = /^\s*([-+]?)([0-9](?:_?[0-9])*)\s*$/.exec(v.value);
      if (!m) return null;
      const x = Number(BigInt(m[2]!.replace(/_/g, '')));
      return m[1] === '-' ? -x + 0 : x;
    }
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------------------------
// one reply

export interface JudgeVerdict {
  /** the reply's 'pred' */
  pred: string;
  /** Python int() of the reply's 'score' */
  score: number;
}

/** Parse a judge reply the protocol's way; throws a PyLiteralError (or an Error) when it cannot. */
export function parseJudgeReply(reply: string | null | undefined): JudgeVerdict {
  if (typeof reply !== 'string') throw new PyLiteralError('malformed node or string: None (no reply content)');
  const v = pyLiteralEval(reply);
  if (v.type !== 'dict') throw new PyLiteralError(`the reply is a ${v.type}, not a dict`);
  const pred = pyDictGet(v, 'pred');
  const score = pyDictGet(v, 'score');
  if (pred === undefined) throw new PyLiteralError("the reply has no 'pred'");
  if (score === undefined) throw new PyLiteralError("the reply has no 'score'");
  if (pred.type !== 'str') throw new PyLiteralError(`the reply's 'pred' is a ${pred.type}, not a str`);
  const s = pyInt(score);
  if (s === null) throw new PyLiteralError(`the reply's 'score' cannot be int()-ed`);
  return { pred: pred.value, score: s };
}

// ---------------------------------------------------------------------------------------------
// aggregation

export interface JudgeSummary {
  /** items with a verdict */
  judged: number;
  /** items recorded as errors */
  errors: number;
  yes: number;
  no: number;
  /** yes / (yes + no), null when both are 0 */
  accuracy: number | null;
  /** sum of int(score) / judged, null when nothing was judged */
  averageScore: number | null;
  /** the protocol's printed lines */
  lines: string[];
}

function pyNum(x: number | null): string {
  return x === null ? 'n/a (division by zero)' : pyFloatRepr(x);
}

/** The protocol's aggregation of verdicts (items that failed are counted apart, not judged). */
export function judgeSummary(results: readonly { ok: boolean; verdict?: JudgeVerdict }[]): JudgeSummary {
  let judged = 0;
  let errors = 0;
  let sum = 0;
  let yes = 0;
  let no = 0;
  for (const r of results) {
    if (!r.ok || !r.verdict) {
      errors++;
      continue;
    }
    judged++;
    sum += r.verdict.score;
    const p = r.verdict.pred.toLowerCase();
    if (p.includes('yes')) yes++;
    else if (p.includes('no')) no++;
  }
  const accuracy = yes + no > 0 ? yes / (yes + no) : null;
  const averageScore = judged > 0 ? sum / judged : null;
  return {
    judged, errors, yes, no, accuracy, averageScore,
    lines: [`Yes count: ${yes}`, `No count: ${no}`, `Accuracy: ${pyNum(accuracy)}`, `Average score: ${pyNum(averageScore)}`],
  };
}

// ---------------------------------------------------------------------------------------------
// the run

export interface JudgeItem {
  /** the item's key (question_id) */
  id: string | number;
  question: string;
  /** the correct answer */
  answer: string;
  /** the model's answer */
  prediction: string;
}

export type JudgeResult = JudgeItem &
  (
    | { ok: true; verdict: JudgeVerdict; reply: string; attempts: number; cached: boolean }
    | { ok: false; error: string; reply: string | null; attempts: number; cached: false }
  );

export interface JudgeOptions {
  /** the OpenAI-compatible API's base URL (default: the client's, https://api.openai.com/v1 or OPENAI_BASE_URL) */
  baseURL?: string;
  /** the judge model (default gpt-3.5-turbo, the protocol's) */
  model?: string;
  /** the key itself; wins over apiKeyEnv */
  apiKey?: string;
  /** the environment variable holding the key (default OPENAI_API_KEY) */
  apiKeyEnv?: string;
  /** requests in flight at once (default 4) */
  concurrency?: number;
  /** asks per item before it is recorded as an error (default 5) */
  attempts?: number;
  /** the OpenAI client's own retries per ask (default 2) */
  maxRetries?: number;
  /** per-request timeout in ms (default the client's, 10 minutes) */
  timeoutMs?: number;
  /** wait before asking again after an API error, ms (default 1000; none after a bad reply) */
  retryDelayMs?: number;
  /** send this temperature (the protocol sends none) */
  temperature?: number;
  /** a jsonl file of verdicts: read first, appended to as verdicts come */
  cache?: string;
  /** each item's result as it is settled (cached ones too), with the count so far */
  onResult?: (result: JudgeResult, progress: { done: number; total: number }) => void;
  signal?: AbortSignal;
}

export interface JudgeRun {
  /** in the items' order */
  results: JudgeResult[];
  summary: JudgeSummary;
  model: string;
}

/** One verdict line of a judge cache file. */
export interface JudgeCacheLine {
  id: string | number;
  model: string;
  question: string;
  answer: string;
  prediction: string;
  reply: string;
  pred: string;
  score: number;
}

function cacheKey(model: string, x: { id: string | number; question: string; answer: string; prediction: string }): string {
  return JSON.stringify([model, x.id, x.question, x.answer, x.prediction]);
}

/** The verdict lines of a judge cache file (a missing file is empty). */
export function readJudgeCache(path: string): JudgeCacheLine[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  const out: JudgeCacheLine[] = [];
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (line === '') continue;
    const last = lines.slice(n + 1).every((l) => l.trim() === '');
    let x: unknown;
    try {
      x = JSON.parse(line);
    } catch {
      if (last && !text.endsWith('\n')) continue; // torn by a killed run
      throw new InputError(`judge cache ${path}, line ${n + 1}: not JSON`, path);
    }
    const o = x as Partial<JudgeCacheLine>;
    const ok =
      typeof o === 'object' && o !== null && (typeof o.id === 'string' || typeof o.id === 'number') &&
      typeof o.model === 'string' && typeof o.question === 'string' && typeof o.answer === 'string' &&
      typeof o.prediction === 'string' && typeof o.reply === 'string' && typeof o.pred === 'string' && typeof o.score === 'number';
    if (!ok) throw new InputError(`judge cache ${path}, line ${n + 1}: not a verdict line`, path);
    out.push(o as JudgeCacheLine);
  }
  return out;
}

function errorText(e: unknown): string {
  if (e instanceof OpenAI.APIError) return `${e.constructor.name}${e.status !== undefined ? ` ${e.status}` : ''}: ${e.message}`;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

function positiveInt(x: number | undefined, dflt: number, what: string): number {
  if (x === undefined) return dflt;
  if (!Number.isInteger(x) || x < 1) throw new InputError(`${what} must be a positive integer, not ${x}`, what);
  return x;
}

/** Judge every item (asking only for those the cache does not hold); see the file's head. */
export async function judgeItems(items: readonly JudgeItem[], options: JudgeOptions = {}): Promise<JudgeRun> {
  const model = options.model ?? DEFAULT_JUDGE_MODEL;
  const concurrency = positiveInt(options.concurrency, 4, 'concurrency');
  const attempts = positiveInt(options.attempts, 5, 'attempts');
  const retryDelayMs = options.retryDelayMs ?? 1000;
  const signal = options.signal;
  signal?.throwIfAborted();

  const seen = new Set<string>();
  for (const it of items) {
    const k = typeof it.id === 'string' ? `s:${it.id}` : `n:${it.id}`;
    if (seen.has(k)) throw new InputError(`judge items repeat id ${JSON.stringify(it.id)}`, String(it.id));
    seen.add(k);
  }

  const cached = new Map<string, JudgeCacheLine>();
  if (options.cache) for (const l of readJudgeCache(options.cache)) cached.set(cacheKey(l.model, l), l);

  const results: (JudgeResult | undefined)[] = new Array(items.length);
  let done = 0;
  const settle = (i: number, r: JudgeResult): void => {
    results[i] = r;
    done++;
    options.onResult?.(r, { done, total: items.length });
  };
  const todo: number[] = [];
  items.forEach((it, i) => {
    const hit = cached.get(cacheKey(model, it));
    if (hit) {
      settle(i, { ...it, ok: true, verdict: { pred: hit.pred, score: hit.score }, reply: hit.reply, attempts: 0, cached: true });
    } else todo.push(i);
  });

  if (todo.length > 0) {
    const envName = options.apiKeyEnv ?? 'OPENAI_API_KEY';
    const apiKey = options.apiKey ?? process.env[envName];
    if (!apiKey) {
      throw new InputError(
        `no API key for the judge: set the environment variable ${envName}` +
          (options.apiKeyEnv ? '' : ' (or name another variable for the key)') +
          ` (${todo.length} of ${items.length} items are not in the cache)`,
        envName,
      );
    }
    const client = new OpenAI({
      apiKey,
      ...(options.baseURL !== undefined ? { baseURL: options.baseURL } : {}),
      maxRetries: options.maxRetries ?? 2,
      ...(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : {}),
    });
    if (options.cache) {
      mkdirSync(dirname(options.cache), { recursive: true });
      // a torn last line (no verdict in it) is cut off before appending
      if (existsSync(options.cache)) {
        const t = readFileSync(options.cache);
        if (t.length > 0 && t[t.length - 1] !== 0x0a) truncateSync(options.cache, t.lastIndexOf(0x0a) + 1);
      }
    }

    let fatal: unknown;
    let next = 0;
    const judgeOne = async (i: number): Promise<JudgeResult | undefined> => {
      const it = items[i]!;
      let lastError = '';
      let lastReply: string | null = null;
      for (let a = 1; a <= attempts; a++) {
        if (signal?.aborted || fatal !== undefined) return undefined;
        let reply: string | null;
        try {
          const completion = await client.chat.completions.create(
            {
              model,
              messages: judgeMessages(it),
              ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
            },
            signal ? { signal } : undefined,
          );
          reply = completion.choices?.[0]?.message?.content ?? null;
        } catch (e) {
          if (signal?.aborted) return undefined;
          const status = e instanceof OpenAI.APIError ? e.status : undefined;
          if (status === 401 || status === 403 || status === 404) {
            fatal ??= new InputError(`the judge API refused the request (${errorText(e)}); check the key, the model ${JSON.stringify(model)} and the base URL`, options.baseURL ?? 'api');
            return undefined;
          }
          lastError = errorText(e);
          if (status === 400 || status === 422) return { ...it, ok: false, error: lastError, reply: null, attempts: a, cached: false };
          if (a < attempts) await sleep(retryDelayMs, signal);
          continue;
        }
        lastReply = reply;
        try {
          const verdict = parseJudgeReply(reply);
          return { ...it, ok: true, verdict, reply: reply!, attempts: a, cached: false };
        } catch (e) {
          lastError = `cannot parse the reply ${JSON.stringify(reply)}: ${(e as Error).message}`;
        }
      }
      return { ...it, ok: false, error: lastError, reply: lastReply, attempts, cached: false };
    };
    const worker = async (): Promise<void> => {
      while (next < todo.length && !signal?.aborted && fatal === undefined) {
        const i = todo[next++]!;
        const r = await judgeOne(i);
        if (!r) continue;
        if (r.ok && options.cache) {
          const line: JudgeCacheLine = { id: r.id, model, question: r.question, answer: r.answer, prediction: r.prediction, reply: r.reply, pred: r.verdict.pred, score: r.verdict.score };
          appendFileSync(options.cache, JSON.stringify(line) + '\n');
        }
        settle(i, r);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, () => worker()));
    if (fatal !== undefined) throw fatal;
    signal?.throwIfAborted();
  }

  const all = results as JudgeResult[];
  return { results: all, summary: judgeSummary(all), model };
}

// ---------------------------------------------------------------------------------------------
// the fallback without a judge

/** The label of the fallback score: it is NOT the paper's number. */
export const EXACT_MATCH_LABEL = "exact match (not the paper's judge)";

/** The fallback's rule, in words. */
export const EXACT_MATCH_RULE =
  'both lowercased, punctuation and symbols turned into spaces, whitespace collapsed; a hit when the ' +
  'answer is non-empty and occurs in the prediction as a whole-word run (so an equal prediction is a hit)';

function normalizeForMatch(s: string): string {
  return s.toLowerCase().replace(/[\p{P}\p{S}]/gu, ' ').replace(/\s+/g, ' ').trim();
}

export interface ExactMatchResult {
  method: typeof EXACT_MATCH_LABEL;
  rule: string;
  total: number;
  hits: number;
  /** hits / total (a fraction, like the judge's accuracy); null for no rows */
  accuracy: number | null;
  /** 1 or 0 per row, in order */
  rows: { hit: 0 | 1 }[];
}

/** The clearly labelled fallback score when no judge is given (see EXACT_MATCH_RULE). */
export function exactMatchVideoQa(rows: readonly { answer: string; prediction: string }[]): ExactMatchResult {
  const out = rows.map((r) => {
    const a = normalizeForMatch(r.answer);
    const p = normalizeForMatch(r.prediction);
    return { hit: (a !== '' && ` ${p} `.includes(` ${a} `) ? 1 : 0) as 0 | 1 };
  });
  const hits = out.reduce((s, r) => s + r.hit, 0);
  return { method: EXACT_MATCH_LABEL, rule: EXACT_MATCH_RULE, total: rows.length, hits, accuracy: rows.length ? hits / rows.length : null, rows: out };
}
