// TSV reading and writing as VLMEvalKit does it (`vlmeval/smp` load/dump of a `.tsv`):
// reading follows `pandas.read_csv(f, sep='\t')` (pandas 2.x defaults) for the files the
// evaluation harness meets: tab separator, `"` quoting with doubled quotes inside, newlines
// inside quotes, blank lines skipped, the pandas 2.x NA tokens turned into NaN, and the column
// dtype inference that decides how Python's `str(x)` prints a cell (an integer column `5`, a
// float column (numbers with a NaN among them) `5.0`, a NaN `nan`). Writing is `csv.QUOTE_ALL`
// (what VLMEvalKit's dump() does for a `.tsv`): every field quoted, NaN as `""`.

import { readFileSync, writeFileSync } from 'node:fs';

/** A cell after reading: text, a number, a boolean, or null for NaN (pandas NA). */
export type Cell = string | number | boolean | null;

/** The dtype pandas infers for a column. */
export type ColumnKind = 'int' | 'float' | 'bool' | 'str';

/** pandas 2.x default NA tokens (`None` is one from pandas 2.0 on); an empty field is NA too. */
export const PANDAS_NA_VALUES: ReadonlySet<string> = new Set([
  '', '#N/A', '#N/A N/A', '#NA', '-1.#IND', '-1.#QNAN', '-NaN', '-nan', '1.#IND', '1.#QNAN',
  '<NA>', 'N/A', 'NA', 'NULL', 'NaN', 'None', 'n/a', 'nan', 'null',
]);

/** Split TSV text into records of raw fields (quotes removed), csv-module style. */
export function parseTsvRecords(text: string, sep = '\t'): { fields: string[]; quoted: boolean[] }[] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const out: { fields: string[]; quoted: boolean[] }[] = [];
  let fields: string[] = [];
  let quoted: boolean[] = [];
  let field = '';
  let wasQuoted = false;
  let inQuotes = false;
  let atFieldStart = true;
  let recordHasContent = false;
  const endField = (): void => {
    fields.push(field);
    quoted.push(wasQuoted);
    field = '';
    wasQuoted = false;
    atFieldStart = true;
  };
  const endRecord = (): void => {
    endField();
    // pandas skips blank lines (skip_blank_lines=True)
    if (recordHasContent) out.push({ fields, quoted });
    fields = [];
    quoted = [];
    recordHasContent = false;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inQuotes) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          inQuotes = false;
        }
      } else {
        field += ch;
      }
      continue;
    }
    if (ch === '"' && atFieldStart) {
      inQuotes = true;
      wasQuoted = true;
      atFieldStart = false;
      recordHasContent = true;
      continue;
    }
    if (ch === sep) {
      recordHasContent = true;
      endField();
      continue;
    }
    if (ch === '\r' || ch === '\n') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      continue;
    }
    field += ch;
    atFieldStart = false;
    recordHasContent = true;
  }
  if (inQuotes) throw new Error('TSV: end of file inside a quoted field');
  if (field !== '' || fields.length > 0 || wasQuoted) endRecord();
  return out;
}

const INT_RE = /^[ ]*[-+]?[0-9]+[ ]*$/;
const FLOAT_RE = /^[ ]*[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf|infinity|Inf|Infinity|INF)[ ]*$/;
const TRUE_SET = new Set(['True', 'TRUE', 'true']);
const FALSE_SET = new Set(['False', 'FALSE', 'false']);

/** A table read the pandas way. */
export class TsvTable {
  constructor(
    readonly columns: string[],
    readonly kinds: ColumnKind[],
    /** One array per row, in column order. */
    readonly data: Cell[][],
  ) {}

  get length(): number {
    return this.data.length;
  }

  has(column: string): boolean {
    return this.columns.includes(column);
  }

  col(column: string): number {
    const j = this.columns.indexOf(column);
    if (j < 0) throw new Error(`TSV: no column ${JSON.stringify(column)}`);
    return j;
  }

  kind(column: string): ColumnKind {
    return this.kinds[this.col(column)]!;
  }

  get(row: number, column: string): Cell {
    return this.data[row]![this.col(column)]!;
  }

  isNa(row: number, column: string): boolean {
    return this.get(row, column) === null;
  }

  /** Python's `str(x)` of the cell as pandas holds it. */
  str(row: number, column: string): string {
    return pyStr(this.get(row, column), this.kind(column));
  }

  /** A row as an object, column name -> cell. */
  row(row: number): Record<string, Cell> {
    const r: Record<string, Cell> = {};
    this.columns.forEach((c, j) => (r[c] = this.data[row]![j]!));
    return r;
  }
}

function inferKind(values: string[], hasNa: boolean): ColumnKind {
  if (values.length === 0) return 'float'; // an all-NaN column is float64
  if (values.every((v) => INT_RE.test(v))) return hasNa ? 'float' : 'int';
  if (values.every((v) => FLOAT_RE.test(v))) return 'float';
  if (!hasNa && values.every((v) => TRUE_SET.has(v) || FALSE_SET.has(v))) return 'bool';
  return 'str';
}

function convert(v: string, kind: ColumnKind): Cell {
  switch (kind) {
    case 'int':
    case 'float': {
      const t = v.trim().replace(/^\+/, '');
      if (/^-?inf(inity)?$/i.test(t)) return t.startsWith('-') ? -Infinity : Infinity;
      return Number(t);
    }
    case 'bool':
      return TRUE_SET.has(v);
    case 'str':
      return v;
  }
}

/**
 * Parse TSV text as `pandas.read_csv(text, sep='\t')` would (the first record is the header).
 * `textColumns` are kept exactly as written (`dtype=str, keep_default_na=False` for them): an index
 * with leading zeros, or a prediction as the model gave it.
 */
export function parseTsv(text: string, textColumns: readonly string[] = []): TsvTable {
  const recs = parseTsvRecords(text);
  if (recs.length === 0) return new TsvTable([], [], []);
  const columns = recs[0]!.fields.slice();
  // pandas makes duplicate names unique as name.1, name.2, ...
  const seen = new Map<string, number>();
  for (let j = 0; j < columns.length; j++) {
    const c = columns[j]!;
    const n = seen.get(c) ?? 0;
    if (n > 0) columns[j] = `${c}.${n}`;
    seen.set(c, n + 1);
  }
  const raw = recs.slice(1).map((r, i) => {
    if (r.fields.length > columns.length) {
      throw new Error(`TSV: row ${i + 2} has ${r.fields.length} fields, the header ${columns.length}`);
    }
    const f = r.fields.slice();
    while (f.length < columns.length) f.push('');
    return f;
  });
  const kinds: ColumnKind[] = columns.map((_, j) => {
    const vals: string[] = [];
    let hasNa = false;
    for (const r of raw) {
      const v = r[j]!;
      if (PANDAS_NA_VALUES.has(v)) hasNa = true;
      else vals.push(v);
    }
    return textColumns.includes(columns[j]!) ? 'str' : inferKind(vals, hasNa);
  });
  const asText = columns.map((c) => textColumns.includes(c));
  const data = raw.map((r) => r.map((v, j) => (asText[j] ? v : PANDAS_NA_VALUES.has(v) ? null : convert(v, kinds[j]!))));
  return new TsvTable(columns, kinds, data);
}

/** Read a TSV file the way VLMEvalKit's `load()` does. */
export function readTsv(path: string, textColumns: readonly string[] = []): TsvTable {
  return parseTsv(readFileSync(path, 'utf8'), textColumns);
}

/** Python's `repr(float)` (which is also its `str`). */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const e = x.toExponential(); // shortest round-trip digits, e.g. "-1.25e+3"
  const m = /^(-?)(\d)(?:\.(\d+))?e([-+]\d+)$/.exec(e)!;
  const sign = m[1]!;
  const digits = m[2]! + (m[3] ?? '');
  const exp = Number(m[4]);
  if (exp < -4 || exp >= 16) {
    const mant = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const es = exp < 0 ? `-${String(-exp).padStart(2, '0')}` : `+${String(exp).padStart(2, '0')}`;
    return `${sign}${mant}e${es}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intLen = exp + 1;
  if (digits.length <= intLen) return `${sign}${digits}${'0'.repeat(intLen - digits.length)}.0`;
  return `${sign}${digits.slice(0, intLen)}.${digits.slice(intLen)}`;
}

/** Python's `str(x)` of a cell that pandas holds in a column of the given kind. */
export function pyStr(cell: Cell, kind: ColumnKind = 'str'): string {
  if (cell === null) return 'nan';
  if (typeof cell === 'boolean') return cell ? 'True' : 'False';
  if (typeof cell === 'number') {
    if (kind === 'int' && Number.isInteger(cell)) return String(cell);
    return pyFloatRepr(cell);
  }
  return cell;
}

/** One field quoted the csv.QUOTE_ALL way. */
function quoteAll(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

/** TSV text with every field quoted (csv.QUOTE_ALL), NaN/undefined as `""`, `\n` line ends. */
export function formatTsvQuoteAll(
  columns: readonly string[],
  rows: readonly (readonly (Cell | undefined)[])[],
  kinds?: readonly ColumnKind[],
): string {
  const lines = [columns.map(quoteAll).join('\t')];
  for (const r of rows) {
    lines.push(
      columns
        .map((_, j) => {
          const v = r[j];
          if (v === null || v === undefined || (typeof v === 'number' && Number.isNaN(v))) return '""';
          return quoteAll(pyStr(v, kinds?.[j] ?? (typeof v === 'number' && Number.isInteger(v) ? 'int' : 'str')));
        })
        .join('\t'),
    );
  }
  return lines.join('\n') + '\n';
}

/** Write rows (objects keyed by column) as a QUOTE_ALL TSV. */
export function writeTsvQuoteAll(
  path: string,
  columns: readonly string[],
  rows: readonly Record<string, Cell | undefined>[],
  kinds?: readonly ColumnKind[],
): void {
  writeFileSync(path, formatTsvQuoteAll(columns, rows.map((r) => columns.map((c) => r[c])), kinds));
}

/** Write a TsvTable back as a QUOTE_ALL TSV. */
export function writeTable(path: string, t: TsvTable): void {
  writeFileSync(path, formatTsvQuoteAll(t.columns, t.data, t.kinds));
}

/** Python literal of a list of strings (`['a', "b's"]`), as `eval` reads it; numbers become their text. */
export function parsePyStrList(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  const ws = (): void => {
    while (i < s.length && /\s/.test(s[i]!)) i++;
  };
  const fail = (): never => {
    throw new Error(`not a Python list of strings: ${s.slice(0, 80)}`);
  };
  ws();
  if (s[i] !== '[') fail();
  i++;
  ws();
  if (s[i] === ']') return out;
  for (;;) {
    ws();
    const q = s[i];
    if (q === "'" || q === '"') {
      i++;
      let v = '';
      while (i < s.length && s[i] !== q) {
        if (s[i] === '\\') {
          const n = s[i + 1];
          const esc: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', '0': '\0' };
          if (n === 'x' || n === 'u') {
            const len = n === 'x' ? 2 : 4;
            v += String.fromCharCode(parseInt(s.slice(i + 2, i + 2 + len), 16));
            i += 2 + len;
            continue;
          }
          if (n !== undefined && esc[n] !== undefined) v += esc[n];
          else v += '\\' + (n ?? '');
          i += 2;
          continue;
        }
        v += s[i];
        i++;
      }
      if (s[i] !== q) fail();
      i++;
      out.push(v);
    } else {
      const m = /^[-+]?[0-9.eE+-]+/.exec(s.slice(i));
      if (!m) fail();
      out.push(m![0]);
      i += m![0].length;
    }
    ws();
    if (s[i] === ',') {
      i++;
      ws();
      if (s[i] === ']') break;
      continue;
    }
    if (s[i] === ']') break;
    fail();
  }
  return out;
}

/** `toliststr`: a `[...]` text is a Python list, any other text one item. */
export function toListStr(s: string): string[] {
  if (s.length > 1 && s[0] === '[' && s[s.length - 1] === ']') return parsePyStrList(s);
  return [s];
}

/**
 * The image of every row as VLMEvalKit's ImageBaseDataset resolves it: NaN -> '', a non-empty
 * cell of 64 characters or fewer names another row's index (by `str(index)`), whose image (over
 * 64 characters) it takes; then `toliststr`, one image as a string, several as a list.
 */
export function resolveImages(t: TsvTable, imageColumn = 'image'): (string | string[])[] {
  const keys: string[] = [];
  const map = new Map<string, string>();
  for (let i = 0; i < t.length; i++) {
    const k = t.str(i, 'index');
    const v = t.isNa(i, imageColumn) ? '' : t.str(i, imageColumn);
    keys.push(k);
    map.set(k, v);
  }
  for (const [k, v] of map) {
    const len = [...v].length;
    if (len <= 64 && len > 0) {
      const target = map.get(v);
      if (target === undefined || [...target].length <= 64) {
        throw new Error(`image of row ${k} names ${JSON.stringify(v)}, which is not a row with an image`);
      }
      map.set(k, target);
    }
  }
  return keys.map((k) => {
    const l = toListStr(map.get(k)!);
    return l.length === 1 ? l[0]! : l;
  });
}

const NON_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

/** Python's `repr(s)` of a str: quotes chosen as Python chooses them, non-printables escaped. */
export function pyStrRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    if (ch === quote || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch !== ' ' && NON_PRINTABLE.test(ch)) {
      const cp = ch.codePointAt(0)!;
      if (cp < 0x100) out += '\\x' + cp.toString(16).padStart(2, '0');
      else if (cp < 0x10000) out += '\\u' + cp.toString(16).padStart(4, '0');
      else out += '\\U' + cp.toString(16).padStart(8, '0');
    } else out += ch;
  }
  return out + quote;
}

/** Python's `repr(list_of_str)` (= `str()`), the form of VLMEvalKit's multi-answer cells. */
export function pyStrListRepr(xs: readonly string[]): string {
  return `[${xs.map(pyStrRepr).join(', ')}]`;
}
