// Training labels as the release builds them (XTuner llava_map_fn -> template_map_fn -> encode_fn):
// the turn layout per template, exactly which positions are -100, the image position, BOS/EOS
// rules, truncation. Expected ids are written out with their token strings, read off the
// tokenizers' vocabularies.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { getTemplate } from '../../src/tokenizer/templates.js';
import { InputError } from '../../src/core/errors.js';
import {
  IGNORE_INDEX,
  IMAGE_TOKEN_INDEX,
  MAX_LENGTH,
  encodeConversation,
  encodeTurns,
  hasLabel,
  llavaMapFn,
  type LabelTokenizer,
} from '../../src/train/labels.js';
import { TINY } from '../helpers/fixtures.js';
import { llama2Tokenizer, llama3Tokenizer } from '../tokenizer/load.js';

const I = IGNORE_INDEX;
const IMG = IMAGE_TOKEN_INDEX;

/** Literal segments: [ids, true when the segment carries the loss]. */
function layout(...segments: [number[], boolean][]): { inputIds: number[]; labels: number[] } {
  const inputIds = segments.flatMap(([ids]) => ids);
  const labels = segments.flatMap(([ids, loss]) => ids.map((id) => (loss && id !== IMG ? id : I)));
  return { inputIds, labels };
}

/** The fixture tokenizer with extra special tokens (ids past its 32000-token vocabulary). */
function withAdded(added: [string, number][], config: Record<string, unknown>): Tokenizer {
  const tj = JSON.parse(readFileSync(join(TINY, 'llm', 'tokenizer.json'), 'utf8')) as { added_tokens: object[] };
  const cfg = JSON.parse(readFileSync(join(TINY, 'llm', 'tokenizer_config.json'), 'utf8')) as object;
  const tokens = added.map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  return Tokenizer.fromJson({ ...tj, added_tokens: [...tj.added_tokens, ...tokens] }, { ...cfg, ...config });
}

// Phi-3's added tokens (its tokenizer is the LLaMA-2 one plus these).
const phi3Tokenizer = () =>
  withAdded([['<|endoftext|>', 32000], ['<|assistant|>', 32001], ['<|end|>', 32007], ['<|user|>', 32010]], { eos_token: '<|endoftext|>' });
// Yi-1.5 (qwen_chat template, LlamaTokenizer: a BOS) and a Qwen-like tokenizer without BOS.
const yiTokenizer = () => withAdded([['<|im_start|>', 32000], ['<|im_end|>', 32001]], { eos_token: '<|im_end|>' });
const qwenTokenizer = () =>
  withAdded([['<|im_start|>', 32000], ['<|im_end|>', 32001]], { bos_token: null, add_bos_token: false, eos_token: '<|im_end|>' });

// Two turns, the image after the first question (llava_map_fn moves it to the front).
const CONV = [
  { from: 'human', value: 'What is it?\n<image>' },
  { from: 'gpt', value: 'A cat.' },
  { from: 'human', value: 'Why?' },
  { from: 'gpt', value: 'Because.' },
];

// Fixture tokenizer pieces (legacy SentencePiece: each text segment gets a leading ▁).
const USER_ = [2223, 725, 28747, 28705]; // ▁US ER : ▁                      "USER: "
const Q1_TAIL = [28705, 13, 3195, 349, 378, 28804]; // ▁ <0x0A> What ▁is ▁it ?   "\nWhat is it?"
const ASSISTANT_ = [8602, 8048, 12738, 28747]; // ▁ASS IST ANT :             " ASSISTANT:"
const A1 = [330, 5255, 28723]; // ▁A ▁cat .
const A2 = [5518, 28723]; // ▁Because .
const NL = [28705, 13]; // ▁ <0x0A>   (SEP "\n" and a "\n" after a special token)

test('llava_map_fn: leading gpt dropped, <image> moved to the front, humans joined, trailing human dropped', () => {
  assert.deepEqual(
    llavaMapFn([
      { from: 'gpt', value: 'ignored' },
      { from: 'gpt', value: 'also ignored' },
      { from: 'human', value: '  Describe <image> this.\n' },
      { from: 'gpt', value: ' An answer. ' },
      { from: 'human', value: 'First part. ' },
      { from: 'human', value: 'second part' },
      { from: 'gpt', value: 'Two.' },
      { from: 'human', value: 'never answered' },
    ]),
    [
      // replace('<image>', '').strip(), then '<image>\n' + text; the answer is kept as is.
      { input: '<image>\nDescribe  this.', output: ' An answer. ' },
      // No <image>: the human text is not stripped; consecutive messages join without separator.
      { input: 'First part. second part', output: 'Two.' },
    ],
  );
  // A message that is only <image>: '<image>\n' + '' is stripped to '<image>'; every <image> goes.
  assert.deepEqual(llavaMapFn([{ from: 'human', value: '\n<image>\u3000' }, { from: 'gpt', value: 'x' }]), [{ input: '<image>', output: 'x' }]);
  assert.deepEqual(llavaMapFn([{ from: 'human', value: '<image>a<image>b' }, { from: 'gpt', value: 'x' }]), [{ input: '<image>\nab', output: 'x' }]);
  // No answer at all: nothing (the release filters such samples out).
  assert.deepEqual(llavaMapFn([{ from: 'gpt', value: 'x' }, { from: 'human', value: 'q' }]), []);
  assert.deepEqual(llavaMapFn([]), []);
  assert.throws(
    () => llavaMapFn([{ from: 'human', value: 'q' }, { from: 'assistant', value: 'a' }]),
    (e: unknown) => e instanceof InputError && e.message === 'conversations[1]: unknown "from" "assistant" (expected "human" or "gpt")',
  );
});

test('vicuna: BOS + instruction -100, answer and EOS labelled, SEP -100, a new BOS after each EOS', () => {
  const got = encodeConversation(llama2Tokenizer(), getTemplate('vicuna'), CONV);
  const expected = layout(
    [[1], false], // <s>
    [USER_, false],
    [[IMG], false],
    [[...Q1_TAIL, ...ASSISTANT_], false],
    [A1, true],
    [[2], true], // </s>
    [NL, false], // SEP
    [[1], false], // <s> again: the turn ended with EOS
    [[2223, 725, 28747, 4315, 28804, ...ASSISTANT_], false], // ▁US ER : ▁Why ?  ASSISTANT:
    [A2, true],
    [[2], true],
    [NL, false],
  );
  assert.deepEqual(got, expected);
  // The same, position by position: exactly these 7 positions carry a loss.
  const withLoss = got.labels.flatMap((l, i) => (l === I ? [] : [i]));
  assert.deepEqual(withLoss, [16, 17, 18, 19, 32, 33, 34]);
  assert.equal(got.inputIds.length, 37);
  assert.equal(got.inputIds[5], IMG);
});

test('phi3_chat: one BOS, SUFFIX <|end|> labelled in place of EOS, SEP -100', () => {
  const got = encodeConversation(phi3Tokenizer(), getTemplate('phi3_chat'), CONV);
  const USER = 32010;
  const ASSISTANT = 32001;
  const END = 32007;
  const expected = layout(
    [[1, USER, IMG, ...Q1_TAIL, END, ...NL, ASSISTANT, ...NL], false], // <s><|user|><image>\nWhat is it?<|end|>\n<|assistant|>\n
    [[...A1, END], true], // "A cat.<|end|>"
    [NL, false], // SEP
    [[USER, 4315, 28804, END, ...NL, ASSISTANT, ...NL], false], // no BOS: SUFFIX_AS_EOS
    [[...A2, END], true],
    [NL, false],
  );
  assert.deepEqual(got, expected);
  assert.equal(got.inputIds.filter((t) => t === 1).length, 1);
  assert.ok(!got.inputIds.includes(32000), 'no <|endoftext|> (the tokenizer EOS) is added');
});

test('llama3_chat: one <|begin_of_text|>, <|eot_id|> labelled, no SEP', () => {
  const got = encodeConversation(llama3Tokenizer(), getTemplate('llama3_chat'), CONV);
  const BOT = 128000;
  const SH = 128006; // <|start_header_id|>
  const EH = 128007; // <|end_header_id|>
  const EOT = 128009;
  const expected = layout(
    [[BOT, SH, 882, EH, 271, IMG, 198, 3923, 374, 433, 30, EOT, SH, 78191, EH, 271], false], // user ĊĊ <image> Ċ What Ġis Ġit ? ... assistant ĊĊ
    [[32, 8415, 13, EOT], true], // A Ġcat . <|eot_id|>
    [[SH, 882, EH, 271, 10445, 30, EOT, SH, 78191, EH, 271], false], // user ĊĊ Why ? ... assistant ĊĊ
    [[18433, 13, EOT], true], // Because . <|eot_id|>
  );
  assert.deepEqual(got, expected);
});

test('qwen_chat: BOS when the tokenizer has one (Yi), none otherwise (Qwen); <|im_end|> labelled', () => {
  const IS = 32000;
  const IE = 32001;
  const rest = (): [number[], boolean][] => [
    [[IS, 2188, 13, IMG, ...Q1_TAIL, IE, ...NL, IS, 13892, 13], false], // <|im_start|>▁user\n<image>\nWhat is it?<|im_end|>\n<|im_start|>▁assistant\n
    [[...A1, IE], true],
    [NL, false],
    [[IS, 2188, 13, 7638, 28804, IE, ...NL, IS, 13892, 13], false], // ... user\nWhy? ...
    [[...A2, IE], true],
    [NL, false],
  ];
  assert.deepEqual(encodeConversation(yiTokenizer(), getTemplate('qwen_chat'), CONV), layout([[1], false], ...rest()));
  assert.deepEqual(encodeConversation(qwenTokenizer(), getTemplate('qwen_chat'), CONV), layout(...rest()));
});

test('SUFFIX is appended to the answer text before encoding (template_map_fn), SEP encoded alone', () => {
  const base = phi3Tokenizer();
  const calls: string[] = [];
  const recording: LabelTokenizer = {
    bosId: base.bosId,
    eosId: base.eosId,
    encode: (text, opts) => {
      assert.equal(opts?.addSpecialTokens, false);
      calls.push(text);
      return base.encode(text, opts);
    },
  };
  encodeTurns(recording, getTemplate('phi3_chat'), [{ input: '<image>\nQ', output: 'A' }]);
  assert.deepEqual(calls, ['<|user|>', '\nQ<|end|>\n<|assistant|>\n', 'A<|end|>', '\n']);
});

test('text-only sample: no image position', () => {
  const got = encodeConversation(llama2Tokenizer(), getTemplate('vicuna'), [
    { from: 'human', value: 'Why?' },
    { from: 'gpt', value: 'Because.' },
  ]);
  assert.deepEqual(got, layout([[1, 2223, 725, 28747, 4315, 28804, ...ASSISTANT_], false], [[...A2, 2], true], [NL, false]));
});

test('truncation after encoding: ids and labels cut to maxLength; a cut before any answer leaves no label', () => {
  const tok = llama2Tokenizer();
  const full = encodeConversation(tok, getTemplate('vicuna'), CONV);
  assert.equal(MAX_LENGTH, 1472);
  assert.deepEqual(encodeConversation(tok, getTemplate('vicuna'), CONV, { maxLength: 1472 }), full); // no cut
  const cut = encodeConversation(tok, getTemplate('vicuna'), CONV, { maxLength: 18 });
  assert.deepEqual(cut, { inputIds: full.inputIds.slice(0, 18), labels: full.labels.slice(0, 18) });
  assert.deepEqual(cut.labels.slice(16), [330, 5255]); // two answer tokens survive
  assert.ok(hasLabel(cut.labels));
  const none = encodeConversation(tok, getTemplate('vicuna'), CONV, { maxLength: 16 });
  assert.equal(none.inputIds.length, 16);
  assert.ok(!hasLabel(none.labels));
});

test('errors: two <image> in one turn; a template that needs EOS with a tokenizer without one', () => {
  assert.throws(
    () =>
      encodeConversation(llama2Tokenizer(), getTemplate('vicuna'), [
        { from: 'human', value: '<image>' },
        { from: 'human', value: '<image>' },
        { from: 'gpt', value: 'x' },
      ]),
    (e: unknown) => e instanceof InputError && e.message === 'a turn holds 2 <image> tokens (the release allows one per turn)',
  );
  const noEos: LabelTokenizer = { bosId: 1, encode: (t, o) => llama2Tokenizer().encode(t, o) };
  assert.throws(
    () => encodeTurns(noEos, getTemplate('vicuna'), [{ input: 'q', output: 'a' }]),
    (e: unknown) => e instanceof InputError && /no EOS token, which template vicuna/.test(e.message),
  );
  // SUFFIX_AS_EOS templates never need it.
  assert.ok(hasLabel(encodeTurns(noEos, getTemplate('qwen_chat'), [{ input: 'q', output: 'a' }]).labels));
});
