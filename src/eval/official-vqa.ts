// The official VQA accuracy (github.com/GT-Vision-Lab/VQA,
// PythonEvaluationTools/vqaEvaluation/vqaEval.py `VQAEval.evaluate`), which the VQAv2 EvalAI
// server applies to an upload file (vqav2.ts). For TextVQA the release scores with MMF's m4c
// `TextVQAAccuracyEvaluator` instead: vqa.ts `mmfTextVqaRow` / `mmfTextVqaAccuracy`.
//
// Per question, with the 10 human answers and the submitted answer:
//   1. every answer and the prediction: `\n`, `\t` -> space, strip
//   2. only if the 10 answers are not all the same string: processPunctuation then
//      processDigitArticle of each answer and of the prediction
//   3. for each answer i: acc_i = min(1, #{j != i : answer_j == pred} / 3); the question's
//      accuracy is sum(acc) / 10 (Python's left-to-right sum)
// (the evaluator also rounds: each question's x100 to 2 decimals in evalQA and the overall mean
// x100 to 2 decimals; these functions return the unrounded values).
//
// Where this differs from VLMEvalKit's `vqa_score` (vqa.ts `processAnswer` / `processLine`):
//  a. Periods. The official `(?!<=\d)(\.)(?!\d)` has a mistyped look-behind (a no-op lookahead),
//     so a period after a digit is deleted as well: `2.` -> `2`, `route 66.` -> `route 66`.
//     VLMEvalKit's `(?<!\d)\.(?!\d)` keeps it (`2.` stays `2.` and matches no `2`).
//  b. Unanimous answers. When all 10 answers are the same (after step 1) neither they nor the
//     prediction are normalised: `Yes`, `yes.` or `the yes` against ten `yes` score 0 here and 1
//     in VLMEvalKit, which always normalises. (Uploads made through the EvalAI processor are
//     already normalised, so this bites only raw predictions.)
//  c. Digits. The evaluator is Python 2 code whose str patterns have no re.UNICODE flag, so
//     `\d` is [0-9] only; VLMEvalKit's Python 3 patterns take any Unicode digit. A digit-comma
//     such as `١,٢` switches VLMEvalKit's punctuation to deleting (`١,٢ a-b` -> `١٢ ab`) but not the
//     official one (`١ ٢ b`), and `x.٤` keeps its period in VLMEvalKit only.
//  d. The mean. VLMEvalKit averages the 10 values with `np.mean` (pairwise sum), the official
//     evaluator with `sum()/len()`: three matching answers in the last three places give 0.9
//     here and 0.8999999999999998 in VLMEvalKit.
// MMF's processor (TextVQA, and the EvalAI processor of vqav2.ts) differs from both: it always
// normalises, lower-cases first, deletes every `,` and `?` outright and splits `'s` off.

import { processDigitArticle, pyStrip } from './vqa.js';

const PUNCT = [';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!'];
/** `(\d)(\,)(\d)` with Python 2 `\d` = [0-9] */
const COMMA_STRIP = /[0-9],[0-9]/;
/** `(?!<=\d)(\.)(?!\d)`: the first group never fails before a `.`; only "not followed by [0-9]" counts */
const PERIOD_STRIP = /\.(?![0-9])/g;

/** `VQAEval.processPunctuation`. */
export function officialProcessPunctuation(inText: string): string {
  let out = inText;
  const digitComma = COMMA_STRIP.test(inText);
  for (const p of PUNCT) {
    if (inText.includes(p + ' ') || inText.includes(' ' + p) || digitComma) out = out.split(p).join('');
    else out = out.split(p).join(' ');
  }
  // `periodStrip.sub("", outText, re.UNICODE)`: re.UNICODE (32) is the count
  let n = 0;
  return out.replace(PERIOD_STRIP, (m) => (n++ < 32 ? '' : m));
}

/**
 * `VQAEval.processDigitArticle`: lower-case, split, number words to digits, articles dropped,
 * contractions expanded: the same table and steps as VLMEvalKit's `_process_digit_article`.
 */
export function officialProcessDigitArticle(inText: string): string {
  return processDigitArticle(inText);
}

function clean(s: string): string {
  return pyStrip(s.replaceAll('\n', ' ').replaceAll('\t', ' '));
}

/** The official accuracy of one prediction against its (10) human answers, as a fraction. */
export function officialVqaAccuracy(gtAnswers: readonly string[], pred: string): number {
  if (gtAnswers.length === 0) throw new Error('official VQA accuracy needs the human answers');
  let gts = gtAnswers.map(clean);
  let res = clean(pred);
  if (new Set(gts).size > 1) {
    gts = gts.map((a) => officialProcessDigitArticle(officialProcessPunctuation(a)));
    res = officialProcessDigitArticle(officialProcessPunctuation(res));
  }
  let sum = 0;
  for (let i = 0; i < gts.length; i++) {
    let matching = 0;
    for (let j = 0; j < gts.length; j++) if (j !== i && gts[j] === res) matching++;
    sum += Math.min(1, matching / 3);
  }
  return sum / gts.length;
}

export interface OfficialVqaEntry {
  gtAnswers: readonly string[];
  pred: string;
  questionType?: string;
  answerType?: string;
}

/** `VQAEval.evaluate`'s accuracies x100, unrounded: overall, per question type, per answer type. */
export function officialVqaEvaluate(entries: readonly OfficialVqaEntry[]): {
  perQuestion: number[];
  overall: number;
  perQuestionType: Record<string, number>;
  perAnswerType: Record<string, number>;
} {
  const perQuestion = entries.map((e) => officialVqaAccuracy(e.gtAnswers, e.pred));
  const mean100 = (xs: readonly number[]): number => {
    let s = 0;
    for (const x of xs) s += x;
    return (100 * s) / xs.length;
  };
  const group = (key: 'questionType' | 'answerType'): Record<string, number> => {
    const g = new Map<string, number[]>();
    entries.forEach((e, i) => {
      const k = e[key];
      if (k === undefined) return;
      let l = g.get(k);
      if (!l) g.set(k, (l = []));
      l.push(perQuestion[i]!);
    });
    return Object.fromEntries([...g].map(([k, v]) => [k, mean100(v)]));
  };
  return { perQuestion, overall: mean100(perQuestion), perQuestionType: group('questionType'), perAnswerType: group('answerType') };
}
