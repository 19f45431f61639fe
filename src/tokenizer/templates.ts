// Prompt templates of the MG-LLaVA release (XTuner's PROMPT_TEMPLATE, xtuner/utils/templates.py)
// for the LLMs the release ships: Vicuna (`vicuna`), LLaMA-3 (`llama3_chat`), Phi-3
// (`phi3_chat`) and Yi-1.5-34B (`qwen_chat`); how the release turns a conversation into text; and
// the `<image>` split that turns that text into token ids (DESIGN.md s2 "Tokens", "Templates").
//
// How the release builds the text:
// - evaluation (mg_llava/evaluation/mg_llava_proxy_eval_dataset.py, the path the fixtures
//   record): `SYSTEM.format(system='')` + `INSTRUCTION.format(input='<image>\n' + question)`;
// - chat (mg_llava/module/chat.py), turn by turn: on the first turn `<image>\n` before the
//   question and SYSTEM only when a system text is given; each turn appends
//   `INSTRUCTION.format(input=question)`; after generation it appends the decoded answer
//   (`skip_special_tokens=True`, `.strip()`) and then SEP. The answer is not followed by SUFFIX
//   there (SUFFIX/SUFFIX_AS_EOS only shape training targets).
// - tokens: split on `<image>`; the first chunk gets BOS by hand then
//   `encode(chunk, add_special_tokens=False)`, every other chunk `encode(chunk,
//   add_special_tokens=False)`; each `<image>` receives the visual tokens.
// - stop: generation stops at the tokenizer's EOS or when the decoded text, with '\r' and '\n'
//   removed, ends with a stop word (xtuner/utils/stop_criteria.py).

import { InputError } from '../core/errors.js';

export interface PromptTemplate {
  readonly name: string;
  /** SYSTEM, with a `{system}` placeholder. */
  readonly system: string;
  /** INSTRUCTION, with an `{input}` placeholder. */
  readonly instruction: string;
  /** SEP appended after each answer in the history ('' when the template has none). */
  readonly sep: string;
  /** SUFFIX that ends an answer in training data, when the template has one. */
  readonly suffix?: string;
  /** SUFFIX_AS_EOS: the suffix replaces the tokenizer's EOS at the end of training answers. */
  readonly suffixAsEos: boolean;
  /** STOP_WORDS: generation stops when the text ends with one of them. */
  readonly stopWords: readonly string[];
}

export const IMAGE_TOKEN = '<image>';

const TEMPLATES: Readonly<Record<string, PromptTemplate>> = {
  vicuna: {
    name: 'vicuna',
    system:
      'A chat between a curious user and an artificial intelligence assistant. The assistant gives ' +
      "helpful, detailed, and polite answers to the user's questions. {system}\n ",
    instruction: 'USER: {input} ASSISTANT:',
    sep: '\n',
    suffixAsEos: false,
    stopWords: [],
  },
  llama3_chat: {
    name: 'llama3_chat',
    system: '<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>',
    instruction:
      '<|start_header_id|>user<|end_header_id|>\n\n{input}<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
    sep: '',
    suffix: '<|eot_id|>',
    suffixAsEos: true,
    stopWords: ['<|eot_id|>'],
  },
  phi3_chat: {
    name: 'phi3_chat',
    system: '<|system|>{system}<|end|>\n',
    instruction: '<|user|>{input}<|end|>\n<|assistant|>\n',
    sep: '\n',
    suffix: '<|end|>',
    suffixAsEos: true,
    stopWords: ['<|end|>'],
  },
  qwen_chat: {
    name: 'qwen_chat',
    system: '<|im_start|>system\n{system}<|im_end|>\n',
    instruction: '<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n',
    sep: '\n',
    suffix: '<|im_end|>',
    suffixAsEos: true,
    stopWords: ['<|im_end|>', '<|endoftext|>'],
  },
};

export const TEMPLATE_NAMES: readonly string[] = Object.keys(TEMPLATES);

/** A template by its XTuner name; unknown names are an InputError listing the known ones. */
export function getTemplate(name: string): PromptTemplate {
  const t = Object.hasOwn(TEMPLATES, name) ? TEMPLATES[name] : undefined;
  if (!t) throw new InputError(`unknown prompt template "${name}" (known: ${TEMPLATE_NAMES.join(', ')})`, name);
  return t;
}

/** The release's image question: `<image>\n` before the text. */
export function withImage(question: string): string {
  return `${IMAGE_TOKEN}\n${question}`;
}

export interface Turn {
  question: string;
  /** The model's answer; absent on the last turn (the one to generate), present on all others. */
  answer?: string;
}

export interface Conversation {
  /**
   * undefined: SYSTEM with an empty `{system}` (the release's evaluation prompts, fixture C);
   * a string: SYSTEM with that text; null: no SYSTEM block (the release's chat.py without --system).
   */
  system?: string | null;
  turns: readonly Turn[];
  /** Put `<image>\n` before the first question (what the release does with an image). */
  image?: boolean;
}

/** Python's str.format for the named fields a template uses (`{system}`, `{input}`, `{round}`). */
function fill(template: string, fields: Record<string, string>): string {
  return template.replace(/\{(system|input|round)\}/g, (m, key: string) => fields[key] ?? m);
}

// Python's str.strip() whitespace (str.isspace), which differs from String.prototype.trim.
const PY_SPACE = '[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, 'g');

/** The exact text the release feeds the tokenizer for this conversation. */
export function buildPrompt(t: PromptTemplate, conv: Conversation): string {
  const { turns } = conv;
  if (turns.length === 0) throw new InputError('a conversation needs at least one question');
  let text = '';
  if (conv.system !== null) text += fill(t.system, { system: conv.system ?? '' });
  turns.forEach((turn, i) => {
    const last = i === turns.length - 1;
    const question = conv.image && i === 0 ? withImage(turn.question) : turn.question;
    text += fill(t.instruction, { input: question, round: String(i + 1) });
    if (last) {
      if (turn.answer !== undefined) {
        throw new InputError('the last turn must not have an answer: it is what the model generates');
      }
    } else {
      if (turn.answer === undefined) throw new InputError(`turn ${i + 1} of the history has no answer`);
      text += turn.answer.replace(PY_STRIP, '') + t.sep;
    }
  });
  return text;
}

/** What promptChunks needs from a tokenizer. */
export interface ChunkTokenizer {
  readonly bosId?: number;
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
}

/**
 * The release's `<image>` split: one id list per side of each `<image>` (n images give n+1 lists);
 * BOS by hand before the first list only (omitted when the tokenizer has no BOS), then each chunk
 * encoded without special tokens.
 */
export function promptChunks(tokenizer: ChunkTokenizer, prompt: string): number[][] {
  return prompt.split(IMAGE_TOKEN).map((chunk, i) => {
    const ids = tokenizer.encode(chunk, { addSpecialTokens: false });
    return i === 0 && tokenizer.bosId !== undefined ? [tokenizer.bosId, ...ids] : ids;
  });
}

/**
 * The release's stop-word test: the stop word that the decoded text (special tokens kept), with
 * every '\r' and '\n' removed, ends with; undefined when none.
 */
export function stopWordHit(decoded: string, stopWords: readonly string[]): string | undefined {
  const text = decoded.replace(/[\r\n]/g, '');
  return stopWords.find((w) => w.length > 0 && text.endsWith(w));
}
