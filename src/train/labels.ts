// Training text and labels as the release builds them (DESIGN.md s7 "Labels"): XTuner's
// `llava_map_fn` (LLaVA messages -> input/output turns), then `template_map_fn` (the prompt
// template around each turn) and `encode_fn` (token ids and loss labels), as the release's bundled
// XTuner has them (xtuner/dataset/map_fns/dataset_map_fns/llava_map_fn.py,
// xtuner/dataset/map_fns/template_map_fn.py, xtuner/dataset/utils.py).
//
// Shapes: a sample becomes two equal-length id lists, `inputIds` (token ids, the image position a
// single IMAGE_TOKEN_INDEX) and `labels` (the id where the loss applies, IGNORE_INDEX elsewhere),
// at most maxLength long. The trainer later replaces the image position by 576 image tokens and
// the k box tokens, all with label IGNORE_INDEX.
//
// Errors are InputErrors without file or sample context; data.ts prefixes both.

import { InputError } from '../core/errors.js';
import { IMAGE_TOKEN, type PromptTemplate } from '../tokenizer/templates.js';

/** XTuner IGNORE_INDEX: label of positions without loss (and of padding). */
export const IGNORE_INDEX = -100;
/** XTuner IMAGE_TOKEN_INDEX: the id that marks the image position in input_ids. */
export const IMAGE_TOKEN_INDEX = -200;
/** The release's max_length: 2048 - (336 // 14) ** 2 text positions (the image counts as one). */
export const MAX_LENGTH = 2048 - (336 / 14) ** 2;

/** One LLaVA message: `{"from": "human" | "gpt", "value": text}`. */
export interface LlavaMessage {
  readonly from: string;
  readonly value: string;
}

/** One turn after llava_map_fn: the human text (all human messages since the last answer) and the answer. */
export interface TrainTurn {
  readonly input: string;
  readonly output: string;
}

/** What the label builder needs from a tokenizer (src/tokenizer/tokenizer.ts Tokenizer fits). */
export interface LabelTokenizer {
  readonly bosId?: number;
  readonly eosId?: number;
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
}

export interface LabelOptions {
  /** Truncation length of input_ids and labels; default MAX_LENGTH (1472). */
  maxLength?: number;
}

export interface EncodedSample {
  /** Token ids; the image position (if any) is IMAGE_TOKEN_INDEX. */
  readonly inputIds: number[];
  /** Same length: the token id where the loss applies, IGNORE_INDEX elsewhere. */
  readonly labels: number[];
}

// Python's str.strip() whitespace (str.isspace). templates.ts has the same set but keeps it private.
const PY_SPACE = '[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, 'g');
const pyStrip = (s: string): string => s.replace(PY_STRIP, '');

/**
 * llava_map_fn: drop the leading gpt messages; a human message that holds `<image>` loses every
 * `<image>`, is stripped, gets `<image>\n` in front and is stripped again (so a message that was
 * only `<image>` becomes `<image>`); consecutive human messages are concatenated without a
 * separator; each gpt message closes a turn with the human text gathered since the previous one.
 * Human messages after the last gpt message are dropped, as in the reference. No system text.
 * A `from` other than "human"/"gpt" is an error (the reference raises NotImplementedError).
 * An empty result (no gpt message after a human one) is returned as []: the release drops such
 * samples silently (process_hf_dataset filters `len(conversation) > 0`).
 */
export function llavaMapFn(messages: readonly LlavaMessage[]): TrainTurn[] {
  let start = 0;
  while (start < messages.length && messages[start]!.from === 'gpt') start++;
  const turns: TrainTurn[] = [];
  let input = '';
  for (let i = start; i < messages.length; i++) {
    const { from, value } = messages[i]!;
    if (from === 'human') {
      input += value.includes(IMAGE_TOKEN)
        ? pyStrip(`${IMAGE_TOKEN}\n${pyStrip(value.split(IMAGE_TOKEN).join(''))}`)
        : value;
    } else if (from === 'gpt') {
      turns.push({ input, output: value });
      input = '';
    } else {
      throw new InputError(`conversations[${i}]: unknown "from" ${JSON.stringify(from)} (expected "human" or "gpt")`);
    }
  }
  return turns;
}

/** str.format of an INSTRUCTION with the two fields template_map_fn passes. */
function fillInstruction(instruction: string, input: string, round: number): string {
  return instruction.replace(/\{(input|round)\}/g, (_, key: string) => (key === 'input' ? input : String(round)));
}

/**
 * encode_fn's input encoding with with_image_token=True: text with one `<image>` is encoded on
 * each side (no special tokens) with IMAGE_TOKEN_INDEX between; the reference asserts one
 * `<image>` at most per turn.
 */
function encodeInput(tokenizer: LabelTokenizer, text: string): number[] {
  const chunks = text.split(IMAGE_TOKEN);
  if (chunks.length > 2) {
    throw new InputError(`a turn holds ${chunks.length - 1} <image> tokens (the release allows one per turn)`);
  }
  const ids = tokenizer.encode(chunks[0]!, { addSpecialTokens: false });
  if (chunks.length === 2) ids.push(IMAGE_TOKEN_INDEX, ...tokenizer.encode(chunks[1]!, { addSpecialTokens: false }));
  return ids;
}

/**
 * template_map_fn + encode_fn. Per turn i (1-based round):
 *   [BOS]                                   if the previous turn ended with EOS (or i = 1)   -100
 *   encode(INSTRUCTION.format(input))       `<image>` -> IMAGE_TOKEN_INDEX                   -100
 *   encode(output + SUFFIX)                 SUFFIX appended to the text before encoding     labelled
 *   [EOS]                                   unless SUFFIX_AS_EOS                            labelled
 *   encode(SEP)                             when SEP is not ''                               -100
 * all with add_special_tokens=False. BOS: XTuner's get_bos_eos_token_ids gives the tokenizer's
 * bos_token_id, none for Qwen's own tokenizer classes (whose bos_token is unset, i.e. bosId
 * undefined here). With SUFFIX_AS_EOS no EOS is added and no BOS follows, so those templates
 * (phi3_chat, llama3_chat, qwen_chat) have one BOS at the start only. Then input_ids and labels
 * are cut to maxLength. The caller drops samples whose labels are all IGNORE_INDEX.
 */
export function encodeTurns(
  tokenizer: LabelTokenizer,
  template: PromptTemplate,
  turns: readonly TrainTurn[],
  opts: LabelOptions = {},
): EncodedSample {
  const maxLength = opts.maxLength ?? MAX_LENGTH;
  const bos = tokenizer.bosId === undefined ? [] : [tokenizer.bosId];
  const needEos = !template.suffixAsEos;
  if (needEos && tokenizer.eosId === undefined) {
    throw new InputError(`the tokenizer has no EOS token, which template ${template.name} puts after each answer`);
  }
  const inputIds: number[] = [];
  const labels: number[] = [];
  const add = (ids: readonly number[], withLoss: boolean): void => {
    for (const id of ids) {
      inputIds.push(id);
      labels.push(withLoss ? id : IGNORE_INDEX);
    }
  };
  let needBos = true;
  turns.forEach((turn, i) => {
    const input = encodeInput(tokenizer, fillInstruction(template.instruction, turn.input, i + 1));
    if (needBos) add(bos, false);
    add(input, false);
    // template_map_fn appends SUFFIX when the template has a non-empty one.
    const output = template.suffix ? turn.output + template.suffix : turn.output;
    add(tokenizer.encode(output, { addSpecialTokens: false }), true);
    if (needEos) add([tokenizer.eosId!], true);
    needBos = needEos;
    if (template.sep !== '') add(tokenizer.encode(template.sep, { addSpecialTokens: false }), false);
  });
  if (inputIds.length > maxLength) {
    inputIds.length = maxLength;
    labels.length = maxLength;
  }
  return { inputIds, labels };
}

/** llava_map_fn then template_map_fn + encode_fn: LLaVA messages -> ids and labels. */
export function encodeConversation(
  tokenizer: LabelTokenizer,
  template: PromptTemplate,
  conversations: readonly LlavaMessage[],
  opts: LabelOptions = {},
): EncodedSample {
  return encodeTurns(tokenizer, template, llavaMapFn(conversations), opts);
}

/** Whether any position carries a loss (the release drops samples where none does). */
export function hasLabel(labels: readonly number[]): boolean {
  return labels.some((l) => l >= 0);
}
