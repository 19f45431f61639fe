// Rule-based scoring of open answers as VLMEvalKit does it (vlmeval/dataset/utils/vqa_eval.py,
// vlmeval/dataset/image_vqa.py `evaluate_heuristic`, commit e8e78f05), plus the official TextVQA
// accuracy of MMF (mmf/utils/m4c_evaluators.py `TextVQAAccuracyEvaluator`).
//
// Python semantics reproduced where they change a score: `str.split()`/`strip()` use Python's
// whitespace set, lengths count code points, `\d` is any Unicode decimal digit, `re.sub(p, '', s,
// re.UNICODE)` passes 32 as the *count* (only the first 32 periods go), `float()` accepts what
// Python accepts, and `np.mean` sums pairwise like numpy.

/** Python `str.isspace()` characters (what `split()` and `strip()` with no argument use). */
const PY_WS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WS_RUN = new RegExp(`[${PY_WS}]+`, 'u');
const WS_EDGES = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, 'gu');

/** Python `s.strip()`. */
export function pyStrip(s: string): string {
  return s.replace(WS_EDGES, '');
}

/** Python `s.split()`. */
export function pySplit(s: string): string[] {
  return s.split(WS_RUN).filter((w) => w.length > 0);
}

/** Python `len(s)`: code points. */
export function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Python's code-point order of strings (`sorted()`). */
export function pyCompare(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** numpy's pairwise float64 sum (`np.add.reduce` on a contiguous 1-D array). */
export function pairwiseSum(a: readonly number[], start = 0, n = a.length - start): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i]!;
    return res;
  }
  if (n <= 128) {
    const r = [0, 0, 0, 0, 0, 0, 0, 0].map((_, j) => a[start + j]!);
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] = r[j]! + a[start + i + j]!;
    }
    let res = r[0]! + r[1]! + (r[2]! + r[3]!) + (r[4]! + r[5]! + (r[6]! + r[7]!));
    for (; i < n; i++) res += a[start + i]!;
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2);
}

/** `np.mean` of a list (NaN for an empty one, as numpy gives with a warning). */
export function npMean(a: readonly (number | boolean)[]): number {
  if (a.length === 0) return NaN;
  return pairwiseSum(a.map(Number)) / a.length;
}

// ---------------------------------------------------------------------------------------------
// Answer normalisation (VQA / EvalAI style)

const PUNCT = [';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!'];
const COMMA_STRIP = /\p{Nd},\p{Nd}/u;
const PERIOD_STRIP = /(?<!\p{Nd})\.(?!\p{Nd})/gu;
/** MMF's `(?!<=\d)(\.)(?!\d)`: the first group is a (vacuous) lookahead, so only "not followed by a digit" counts. */
const MMF_PERIOD_STRIP = /\.(?!\p{Nd})/gu;
const MMF_COMMA_STRIP = /(?<=\p{Nd}),+(?=\p{Nd})/u;

function replaceAll(s: string, find: string, by: string): string {
  return s.split(find).join(by);
}

/** `re.sub(pattern, '', s, 32)`: only the first 32 matches are removed. */
function subFirst32(s: string, re: RegExp): string {
  let n = 0;
  return s.replace(re, (m) => (n++ < 32 ? '' : m));
}

function punctuation(inText: string, commaStrip: RegExp, periodStrip: RegExp): string {
  let out = inText;
  const hasDigitComma = commaStrip.test(inText);
  for (const p of PUNCT) {
    if (inText.includes(p + ' ') || inText.includes(' ' + p) || hasDigitComma) out = replaceAll(out, p, '');
    else out = replaceAll(out, p, ' ');
  }
  return subFirst32(out, periodStrip);
}

/** `vlmeval.smp.misc.process_punctuation`. */
export function processPunctuation(inText: string): string {
  return punctuation(inText, COMMA_STRIP, PERIOD_STRIP);
}

const NUMBER_MAP: Record<string, string> = {
  none: '0', zero: '0', one: '1', two: '2', three: '3', four: '4', five: '5', six: '6', seven: '7', eight: '8',
  nine: '9', ten: '10',
};
const ARTICLES = new Set(['a', 'an', 'the']);
// The VQA contraction table (identical in VLMEvalKit and MMF). Keys with capitals can never match
// (the text is lower-cased first) but are kept as the table has them.
const CONTRACTIONS: Record<string, string> = {
  aint: "ain't", arent: "aren't", cant: "can't", couldve: "could've", couldnt: "couldn't",
  "couldn'tve": "couldn't've", "couldnt've": "couldn't've", didnt: "didn't", doesnt: "doesn't", dont: "don't",
  hadnt: "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", hasnt: "hasn't", havent: "haven't",
  hed: "he'd", "hed've": "he'd've", "he'dve": "he'd've", hes: "he's", howd: "how'd", howll: "how'll",
  hows: "how's", "Id've": "I'd've", "I'dve": "I'd've", Im: "I'm", Ive: "I've", isnt: "isn't", itd: "it'd",
  "itd've": "it'd've", "it'dve": "it'd've", itll: "it'll", "let's": "let's", maam: "ma'am", mightnt: "mightn't",
  "mightnt've": "mightn't've", "mightn'tve": "mightn't've", mightve: "might've", mustnt: "mustn't",
  mustve: "must've", neednt: "needn't", notve: "not've", oclock: "o'clock", oughtnt: "oughtn't",
  "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", shant: "shan't", "shed've": "she'd've",
  "she'dve": "she'd've", "she's": "she's", shouldve: "should've", shouldnt: "shouldn't",
  "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": 'somebodyd',
  "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", somebodyll: "somebody'll",
  somebodys: "somebody's", someoned: "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
  someonell: "someone'll", someones: "someone's", somethingd: "something'd", "somethingd've": "something'd've",
  "something'dve": "something'd've", somethingll: "something'll", thats: "that's", thered: "there'd",
  "thered've": "there'd've", "there'dve": "there'd've", therere: "there're", theres: "there's", theyd: "they'd",
  "theyd've": "they'd've", "they'dve": "they'd've", theyll: "they'll", theyre: "they're", theyve: "they've",
  twas: "'twas", wasnt: "wasn't", "wed've": "we'd've", "we'dve": "we'd've", weve: "we've", werent: "weren't",
  whatll: "what'll", whatre: "what're", whats: "what's", whatve: "what've", whens: "when's", whered: "where'd",
  wheres: "where's", whereve: "where've", whod: "who'd", "whod've": "who'd've", "who'dve": "who'd've",
  wholl: "who'll", whos: "who's", whove: "who've", whyll: "why'll", whyre: "why're", whys: "why's",
  wont: "won't", wouldve: "would've", wouldnt: "wouldn't", "wouldnt've": "wouldn't've",
  "wouldn'tve": "wouldn't've", yall: "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
  "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", youd: "you'd",
  "youd've": "you'd've", "you'dve": "you'd've", youll: "you'll", youre: "you're", youve: "you've",
};

function own(map: Record<string, string>, k: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(map, k) ? map[k] : undefined;
}

/** `_process_digit_article`: lower-case, number words to digits, drop articles, contractions. */
export function processDigitArticle(inText: string): string {
  const out: string[] = [];
  for (const w of pySplit(inText.toLowerCase())) {
    const word = own(NUMBER_MAP, w) ?? w;
    if (!ARTICLES.has(word)) out.push(word);
  }
  return out.map((w) => own(CONTRACTIONS, w) ?? w).join(' ');
}

/** VLMEvalKit `process_answer`. */
export function processAnswer(answer: string): string {
  const s = pyStrip(answer.replaceAll('\n', ' ').replaceAll('\t', ' '));
  return processDigitArticle(processPunctuation(s));
}

/** MMF `EvalAIAnswerProcessor` (the official TextVQA / VQAv2 normalisation). */
export function mmfProcessAnswer(item: string): string {
  let s = item.toLowerCase().replaceAll(',', '').replaceAll('?', '').replaceAll("'s", " 's");
  s = pyStrip(s);
  s = pyStrip(s.replaceAll('\n', ' ').replaceAll('\t', ' '));
  s = punctuation(s, MMF_COMMA_STRIP, MMF_PERIOD_STRIP);
  return processDigitArticle(s);
}

// ---------------------------------------------------------------------------------------------
// Answer cells

/**
 * The answers of a cell as `process_line` takes them: a Python list literal of strings (as
 * VLMEvalKit stores several answers) gives its items, anything else `[cell]`.
 */
export function answerList(cell: string): string[] {
  return parsePyStrList(cell) ?? [cell];
}

/** Parses `[ 'a', "b", ... ]` (a Python list of string literals); null when it is not one. */
export function parsePyStrList(src: string): string[] | null {
  let i = 0;
  const n = src.length;
  const ws = () => {
    while (i < n && ' \t\n\r\f\v'.includes(src[i]!)) i++;
  };
  ws();
  if (src[i] !== '[') return null;
  i++;
  const items: string[] = [];
  ws();
  if (src[i] === ']') {
    i++;
  } else {
    for (;;) {
      ws();
      let str = '';
      let any = false;
      // adjacent literals concatenate, as in Python
      while (i < n && (src[i] === "'" || src[i] === '"')) {
        const lit = readPyString(src, i);
        if (!lit) return null;
        str += lit.value;
        i = lit.end;
        any = true;
        ws();
      }
      if (!any) return null;
      items.push(str);
      ws();
      if (src[i] === ',') {
        i++;
        ws();
        if (src[i] === ']') {
          i++;
          break;
        }
        continue;
      }
      if (src[i] === ']') {
        i++;
        break;
      }
      return null;
    }
  }
  ws();
  return i === n ? items : null;
}

function readPyString(src: string, start: number): { value: string; end: number } | null {
  const q = src[start]!;
  let i = start + 1;
  let out = '';
  while (i < src.length) {
    const c = src[i]!;
    if (c === q) return { value: out, end: i + 1 };
    if (c === '\n') return null;
    if (c === '\\') {
      const e = src[i + 1];
      if (e === undefined) return null;
      const simple: Record<string, string> = {
        '\\': '\\', "'": "'", '"': '"', n: '\n', t: '\t', r: '\r', a: '\x07', b: '\b', f: '\f', v: '\v', '\n': '',
      };
      if (e in simple) {
        out += simple[e];
        i += 2;
        continue;
      }
      const hex = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
      if (hex) {
        const h = src.slice(i + 2, i + 2 + hex);
        if (!new RegExp(`^[0-9a-fA-F]{${hex}}$`).test(h)) return null;
        out += String.fromCodePoint(parseInt(h, 16));
        i += 2 + hex;
        continue;
      }
      if (/[0-7]/.test(e)) {
        const m = /^[0-7]{1,3}/.exec(src.slice(i + 1))![0];
        out += String.fromCodePoint(parseInt(m, 8));
        i += 1 + m.length;
        continue;
      }
      out += '\\' + e; // unknown escapes stay as written
      i += 2;
      continue;
    }
    out += c;
    i++;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Per-answer measures

/** Levenshtein distance over code points. */
export function levenshtein(a: string, b: string): number {
  let s1 = [...a];
  let s2 = [...b];
  if (s1.length > s2.length) [s1, s2] = [s2, s1];
  let prev = Array.from({ length: s1.length + 1 }, (_, k) => k);
  for (let i2 = 0; i2 < s2.length; i2++) {
    const cur = [i2 + 1];
    for (let i1 = 0; i1 < s1.length; i1++) {
      if (s1[i1] === s2[i2]) cur.push(prev[i1]!);
      else cur.push(1 + Math.min(prev[i1]!, prev[i1 + 1]!, cur[cur.length - 1]!));
    }
    prev = cur;
  }
  return prev[prev.length - 1]!;
}

/**
 * `anls_compute`: the normalised Levenshtein *distance* (0 = equal) between the lower-cased,
 * whitespace-collapsed strings, over the longer of the raw strings' upper-cased lengths.
 */
export function anlsCompute(groundtruth: string, prediction: string): number {
  const gt = pySplit(pyStrip(groundtruth).toLowerCase()).join(' ');
  const det = pySplit(pyStrip(prediction).toLowerCase()).join(' ');
  const dist = levenshtein(gt, det);
  const length = Math.max(pyLen(groundtruth.toUpperCase()), pyLen(prediction.toUpperCase()));
  return length === 0 ? 0 : dist / length;
}

/** The ANLS hit of a row from its distances: `1 - min`, or 0 when that is below the threshold. */
export function anlsHit(distances: readonly number[], threshold = 0.5): number {
  const v = 1 - Math.min(...distances);
  return v < threshold ? 0 : v;
}

/** Python `float(text)`; null where Python raises ValueError. */
export function pyFloat(text: string): number | null {
  let s = '';
  for (const ch of pyStrip(text)) {
    if (/^\p{Nd}$/u.test(ch)) s += String(ndValue(ch));
    else s += ch;
  }
  const m = /^([+-]?)(inf|infinity|nan)$/i.exec(s);
  if (m) return m[2]!.toLowerCase() === 'nan' ? NaN : m[1] === '-' ? -Infinity : Infinity;
  const D = '[0-9](?:_?[0-9])*';
  if (!new RegExp(`^[+-]?(?:${D}(?:\\.(?:${D})?)?|\\.${D})(?:[eE][+-]?${D})?$`).test(s)) return null;
  return Number(s.replaceAll('_', ''));
}

/** The value of a Unicode decimal digit (digit runs are contiguous blocks starting at zero). */
function ndValue(ch: string): number {
  let cp = ch.codePointAt(0)!;
  let k = 0;
  while (cp - 1 >= 0 && /^\p{Nd}$/u.test(String.fromCodePoint(cp - 1))) {
    cp--;
    k++;
  }
  return k % 10;
}

/** pix2struct / VLMEvalKit `relaxed_correctness`. */
export function relaxedCorrectness(target: string, prediction: string, maxRelativeChange = 0.05): boolean {
  const toFloat = (t: string): number | null => (t.endsWith('%') ? divPct(pyFloat(t.replace(/%+$/, ''))) : pyFloat(t));
  const p = toFloat(prediction);
  const t = toFloat(target);
  // `target_float` is truthy for any non-zero value, NaN included
  if (p !== null && t !== null && t !== 0) return Math.abs(p - t) / Math.abs(t) <= maxRelativeChange;
  return prediction.toLowerCase() === target.toLowerCase();
}

function divPct(v: number | null): number | null {
  return v === null ? null : v / 100;
}

/** VQA accuracy with each answer left out in turn (VLMEvalKit's `vqa_score` match list). */
export function vqaLeaveOneOut(gt: readonly string[], pred: string): number[] {
  return gt.map((_, cur) => {
    let matching = 0;
    gt.forEach((item, k) => {
      if (k !== cur && item === pred) matching++;
    });
    return Math.min(1, matching / 3);
  });
}

// ---------------------------------------------------------------------------------------------
// Rows and tables

export type VqaMethod = 'vqa_score' | 'anls' | 'relaxed_accuracy' | 'accuracy' | 'exact';

/**
 * The method `evaluate_heuristic` picks from the dataset name. (`exact` is `process_line`'s
 * fallback for an unknown method name: processed answers compared for equality.)
 */
export function vqaMethodFor(datasetName: string): VqaMethod {
  if (datasetName.includes('TextVQA')) return 'vqa_score';
  if (datasetName.includes('ChartQA')) return 'relaxed_accuracy';
  if (datasetName.includes('OCRVQA') || datasetName.includes('GQA')) return 'accuracy';
  if (datasetName.includes('DocVQA') || datasetName.includes('InfoVQA')) return 'anls';
  return 'vqa_score';
}

export interface LineResult {
  /** `eval_gt` */
  gt: string[];
  /** `eval_pred` */
  pred: string;
  /** `eval_match`: VQA accuracies, ANLS distances, relaxed booleans, or exact 0/1 */
  match: (number | boolean)[];
}

/** `process_line(line, method)`: `answer` is the answer cell, `prediction` the scored text. */
export function processLine(answer: string, prediction: string, method: VqaMethod = 'vqa_score'): LineResult {
  const answers = answerList(answer);
  switch (method) {
    case 'vqa_score': {
      const gt = answers.map(processAnswer);
      const pred = processAnswer(prediction);
      return { gt, pred, match: vqaLeaveOneOut(gt, pred) };
    }
    case 'anls':
      return { gt: answers, pred: prediction, match: answers.map((x) => anlsCompute(x, prediction)) };
    case 'relaxed_accuracy': {
      const pred = pyStrip(prediction);
      return { gt: answers, pred, match: answers.map((x) => relaxedCorrectness(x, pred)) };
    }
    case 'accuracy': {
      const pred = pyStrip(prediction);
      const p = pyStrip(pred).toLowerCase();
      return { gt: answers, pred, match: answers.map((x) => (pyStrip(x).toLowerCase() === p ? 1 : 0)) };
    }
    case 'exact': {
      const gt = answers.map(processAnswer);
      const pred = processAnswer(prediction);
      return { gt, pred, match: gt.map((x) => x === pred) };
    }
  }
}

/** `hit_calculate`: the per-row score that enters the table. */
export function hitCalculate(results: readonly LineResult[], datasetName: string, anlsThreshold = 0.5): number[] {
  if (datasetName.includes('TextVQA')) return results.map((r) => npMean(r.match));
  if (datasetName.includes('DocVQA') || datasetName.includes('InfoVQA'))
    return results.map((r) => anlsHit(r.match.map(Number), anlsThreshold));
  if (datasetName.includes('ChartQA') || datasetName.includes('OCRVQA'))
    return results.map((r) => Math.max(...r.match.map(Number)));
  return results.map((r) => npMean(r.match));
}

export interface VqaInputRow {
  /** the answer cell (a Python list literal or a plain string) */
  answer: string;
  /** the prediction as VLMEvalKit scores it (`str(cell)`: an NA cell is `nan`) */
  prediction: string;
  /** present when the benchmark has a `split` column */
  split?: string | null;
  /** present when the benchmark has a `category` column */
  category?: string | null;
}

export interface VqaRowResult extends LineResult {
  /** `eval_score` = mean of `match` */
  score: number;
  /** the row's `hit_calculate` value */
  hit: number;
}

export interface VqaEvaluation {
  method: VqaMethod;
  rows: VqaRowResult[];
  /** the `_acc` table (one row, x100), in column order */
  acc: Record<string, number>;
  accColumns: string[];
}

/**
 * `ImageVQADataset.evaluate_heuristic`. With a `split` column: each split (sorted; VLMEvalKit
 * uses set order) then `Overall`; otherwise `Overall`, then each `category` sorted.
 */
export function evaluateVqa(rows: readonly VqaInputRow[], datasetName: string, anlsThreshold = 0.5): VqaEvaluation {
  const method = vqaMethodFor(datasetName);
  const res = rows.map((r) => processLine(r.answer, r.prediction, method));
  const hits = hitCalculate(res, datasetName, anlsThreshold);
  const out: VqaRowResult[] = res.map((r, i) => ({ ...r, score: npMean(r.match), hit: hits[i]! }));
  const acc: Record<string, number> = {};
  const cols: string[] = [];
  const put = (k: string, v: number) => {
    if (!(k in acc)) cols.push(k);
    acc[k] = v;
  };
  const tableOf = (sel: (r: VqaInputRow) => boolean) =>
    npMean(hitCalculate(res.filter((_, i) => sel(rows[i]!)), datasetName, anlsThreshold)) * 100;
  const hasSplit = rows.some((r) => r.split !== undefined);
  if (hasSplit) {
    const splits = [...new Set(rows.map((r) => r.split ?? null))];
    const named = splits.filter((s): s is string => s !== null).sort(pyCompare);
    for (const sp of named) put(sp, tableOf((r) => r.split === sp));
    if (splits.includes(null)) put('nan', NaN); // NaN never equals itself: an empty mean
    put('Overall', npMean(hits) * 100);
  } else {
    put('Overall', npMean(hits) * 100);
    if (rows.some((r) => r.category !== undefined)) {
      const cates = [...new Set(rows.map((r) => r.category))].filter((c): c is string => typeof c === 'string');
      for (const c of cates.sort(pyCompare)) put(c, tableOf((r) => r.category === c));
    }
  }
  return { method, rows: out, acc, accColumns: cols };
}

// ---------------------------------------------------------------------------------------------
// MMF (official TextVQA)

/** MMF `_compute_answer_scores`: each distinct processed answer's leave-one-out accuracy. */
export function mmfAnswerScores(rawAnswers: readonly string[]): Map<string, number> {
  const answers = rawAnswers.map(mmfProcessAnswer);
  if (answers.length !== 10) throw new Error(`MMF TextVQA needs 10 answers, got ${answers.length}`);
  const scores = new Map<string, number>();
  for (const u of new Set(answers)) {
    const accs = vqaLeaveOneOut(answers, u);
    let sum = 0;
    for (const a of accs) sum += a; // Python sum(): left to right
    scores.set(u, sum / accs.length);
  }
  return scores;
}

export interface MmfRowResult {
  gt: string[];
  pred: string;
  score: number;
}

/** MMF `TextVQAAccuracyEvaluator` on one row: `predAnswer` is the raw prediction cell. */
export function mmfTextVqaRow(gtAnswers: readonly string[], predAnswer: string): MmfRowResult {
  const pred = mmfProcessAnswer(predAnswer);
  return { gt: gtAnswers.map(mmfProcessAnswer), pred, score: mmfAnswerScores(gtAnswers).get(pred) ?? 0 };
}

/** MMF `eval_pred_list`: the mean row score as a fraction (Python `sum` / n). */
export function mmfTextVqaAccuracy(entries: readonly { gtAnswers: readonly string[]; predAnswer: string }[]): {
  rows: MmfRowResult[];
  accuracy: number;
} {
  const rows = entries.map((e) => mmfTextVqaRow(e.gtAnswers, e.predAnswer));
  let sum = 0;
  for (const r of rows) sum += r.score;
  return { rows, accuracy: sum / rows.length };
}
