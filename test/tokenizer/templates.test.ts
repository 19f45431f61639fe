// The release's prompt templates (xtuner/utils/templates.py), how its chat and evaluation code
// turn a conversation into text, and the <image> split with the hand-added BOS (fixture C).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  IMAGE_TOKEN,
  TEMPLATE_NAMES,
  buildPrompt,
  getTemplate,
  promptChunks,
  stopWordHit,
  withImage,
} from '../../src/tokenizer/templates.js';
import { InputError } from '../../src/core/errors.js';
import { casesJson } from '../helpers/fixtures.js';
import { llama2Tokenizer, llama3Tokenizer } from './load.js';

const C = casesJson();
const Q = 'What is shown in this image?';
const VICUNA_SYSTEM =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. ";

test('fixture C: the vicuna prompt with an image and the default system', () => {
  const prompt = buildPrompt(getTemplate('vicuna'), { turns: [{ question: Q }], image: true });
  assert.equal(prompt, C['C.prompt']);
  assert.equal(buildPrompt(getTemplate('vicuna'), { turns: [{ question: withImage(Q) }] }), C['C.prompt']);
});

test('fixture C: ids on each side of <image>, BOS added by hand before the first chunk', () => {
  const chunks = promptChunks(llama2Tokenizer(), C['C.prompt'] as string);
  assert.deepEqual(chunks, [C['C.ids_before_image'], C['C.ids_after_image']]);
});

test('the four templates, strings as the release spells them', () => {
  assert.deepEqual([...TEMPLATE_NAMES].sort(), ['llama3_chat', 'phi3_chat', 'qwen_chat', 'vicuna']);
  const v = getTemplate('vicuna');
  assert.equal(v.system, `${VICUNA_SYSTEM}{system}\n `);
  assert.equal(v.instruction, 'USER: {input} ASSISTANT:');
  assert.equal(v.sep, '\n');
  assert.equal(v.suffix, undefined);
  assert.equal(v.suffixAsEos, false);

  const l3 = getTemplate('llama3_chat');
  assert.equal(l3.system, '<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>');
  assert.equal(l3.instruction, '<|start_header_id|>user<|end_header_id|>\n\n{input}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n');
  assert.equal(l3.sep, ''); // llama3_chat has no SEP
  assert.equal(l3.suffix, '<|eot_id|>');
  assert.equal(l3.suffixAsEos, true);

  const p3 = getTemplate('phi3_chat');
  assert.equal(p3.system, '<|system|>{system}<|end|>\n');
  assert.equal(p3.instruction, '<|user|>{input}<|end|>\n<|assistant|>\n');
  assert.equal(p3.sep, '\n');
  assert.equal(p3.suffix, '<|end|>');
  assert.equal(p3.suffixAsEos, true);

  const qw = getTemplate('qwen_chat');
  assert.equal(qw.system, '<|im_start|>system\n{system}<|im_end|>\n');
  assert.equal(qw.instruction, '<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n');
  assert.equal(qw.sep, '\n');
  assert.equal(qw.suffix, '<|im_end|>');
  assert.equal(qw.suffixAsEos, true);
});

test('stop words per template', () => {
  assert.deepEqual(getTemplate('vicuna').stopWords, []); // Vicuna stops on the tokenizer's EOS only
  assert.deepEqual(getTemplate('llama3_chat').stopWords, ['<|eot_id|>']);
  assert.deepEqual(getTemplate('phi3_chat').stopWords, ['<|end|>']);
  assert.deepEqual(getTemplate('qwen_chat').stopWords, ['<|im_end|>', '<|endoftext|>']);
});

test('single-turn prompts: default system, given system, no system', () => {
  const one = { turns: [{ question: Q }], image: true };
  assert.equal(
    buildPrompt(getTemplate('vicuna'), { ...one, system: 'Be brief.' }),
    `${VICUNA_SYSTEM}Be brief.\n USER: <image>\n${Q} ASSISTANT:`,
  );
  assert.equal(buildPrompt(getTemplate('vicuna'), { ...one, system: null }), `USER: <image>\n${Q} ASSISTANT:`);

  assert.equal(
    buildPrompt(getTemplate('llama3_chat'), one),
    '<|start_header_id|>system<|end_header_id|>\n\n<|eot_id|>' +
      `<|start_header_id|>user<|end_header_id|>\n\n<image>\n${Q}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`,
  );
  assert.equal(
    buildPrompt(getTemplate('phi3_chat'), { ...one, system: 'Be brief.' }),
    `<|system|>Be brief.<|end|>\n<|user|><image>\n${Q}<|end|>\n<|assistant|>\n`,
  );
  assert.equal(
    buildPrompt(getTemplate('qwen_chat'), one),
    `<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<image>\n${Q}<|im_end|>\n<|im_start|>assistant\n`,
  );
  // Text-only question: no <image>.
  assert.equal(buildPrompt(getTemplate('phi3_chat'), { turns: [{ question: 'Hi' }], system: null }), '<|user|>Hi<|end|>\n<|assistant|>\n');
});

test('multi-turn prompts: question, stripped answer, SEP, next question (chat.py)', () => {
  const turns = [
    { question: 'What is this?', answer: ' A cat.\n' },
    { question: 'What color?', answer: 'Black.' },
    { question: 'Is it cute?' },
  ];
  assert.equal(
    buildPrompt(getTemplate('vicuna'), { turns, image: true }),
    `${VICUNA_SYSTEM}\n USER: <image>\nWhat is this? ASSISTANT:A cat.\nUSER: What color? ASSISTANT:Black.\nUSER: Is it cute? ASSISTANT:`,
  );
  assert.equal(
    buildPrompt(getTemplate('llama3_chat'), { turns, image: true, system: 'Be brief.' }),
    '<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat is this?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' +
      'A cat.' +
      '<|start_header_id|>user<|end_header_id|>\n\nWhat color?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' +
      'Black.' +
      '<|start_header_id|>user<|end_header_id|>\n\nIs it cute?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
  );
  assert.equal(
    buildPrompt(getTemplate('phi3_chat'), { turns, image: true, system: null }),
    '<|user|><image>\nWhat is this?<|end|>\n<|assistant|>\nA cat.\n' +
      '<|user|>What color?<|end|>\n<|assistant|>\nBlack.\n' +
      '<|user|>Is it cute?<|end|>\n<|assistant|>\n',
  );
  assert.equal(
    buildPrompt(getTemplate('qwen_chat'), { turns, image: true }),
    '<|im_start|>system\n<|im_end|>\n' +
      '<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\nA cat.\n' +
      '<|im_start|>user\nWhat color?<|im_end|>\n<|im_start|>assistant\nBlack.\n' +
      '<|im_start|>user\nIs it cute?<|im_end|>\n<|im_start|>assistant\n',
  );
  // Python's str.strip(): \x1c-\x1f and U+0085 are whitespace, U+FEFF is not.
  const odd = buildPrompt(getTemplate('vicuna'), {
    system: null,
    turns: [{ question: 'a', answer: '\x1c\x85 ok \u3000' }, { question: 'b' }],
  });
  assert.equal(odd, 'USER: a ASSISTANT:ok\nUSER: b ASSISTANT:');
  const bom = buildPrompt(getTemplate('vicuna'), { system: null, turns: [{ question: 'a', answer: '\uFEFFok' }, { question: 'b' }] });
  assert.equal(bom, 'USER: a ASSISTANT:\uFEFFok\nUSER: b ASSISTANT:');
});

test('placeholders are filled literally (no $-patterns, braces in text kept)', () => {
  const p = buildPrompt(getTemplate('vicuna'), { system: '$& {input}', turns: [{ question: 'cost $1 {system} $$' }] });
  assert.equal(p, `${VICUNA_SYSTEM}$& {input}\n USER: cost $1 {system} $$ ASSISTANT:`);
});

test('bad conversations and unknown templates are InputErrors', () => {
  assert.throws(() => getTemplate('chatml'), (e: unknown) => {
    assert.ok(e instanceof InputError);
    for (const name of TEMPLATE_NAMES) assert.ok(e.message.includes(name), e.message);
    assert.ok(e.message.includes('chatml'));
    return true;
  });
  assert.throws(() => getTemplate('toString'), InputError);
  const v = getTemplate('vicuna');
  assert.throws(() => buildPrompt(v, { turns: [] }), InputError);
  assert.throws(() => buildPrompt(v, { turns: [{ question: 'a' }, { question: 'b' }] }), InputError);
  assert.throws(() => buildPrompt(v, { turns: [{ question: 'a', answer: 'x' }] }), InputError);
});

test('promptChunks: n images give n+1 chunks, BOS only first, none without a BOS', () => {
  const tok = llama2Tokenizer();
  const chunks = promptChunks(tok, `a${IMAGE_TOKEN}b${IMAGE_TOKEN}`);
  assert.equal(chunks.length, 3);
  assert.deepEqual(chunks[0], [1, ...tok.encode('a', { addSpecialTokens: false })]);
  assert.deepEqual(chunks[1], tok.encode('b', { addSpecialTokens: false }));
  assert.deepEqual(chunks[2], []);
  assert.deepEqual(promptChunks(tok, 'no image'), [[1, ...tok.encode('no image', { addSpecialTokens: false })]]);
  const noBos = { encode: (t: string) => [...t].map((c) => c.charCodeAt(0)) };
  assert.deepEqual(promptChunks(noBos, `ab${IMAGE_TOKEN}c`), [[97, 98], [99]]);
});

test('llama3_chat prompt through the LLaMA-3 tokenizer: header tokens are single special ids', () => {
  const tok = llama3Tokenizer();
  const prompt = buildPrompt(getTemplate('llama3_chat'), { turns: [{ question: Q }], image: true });
  const [before, after] = promptChunks(tok, prompt);
  assert.deepEqual(before!.slice(0, 2), [128000, 128006]); // <|begin_of_text|> by hand, <|start_header_id|>
  assert.equal(before!.filter((id) => id === 128009).length, 1); // the system block's <|eot_id|>
  assert.equal(before!.filter((id) => id === 128007).length, 2); // <|end_header_id|> x2
  const nn = tok.encode('\n\n', { addSpecialTokens: false });
  assert.equal(nn.length, 1);
  assert.equal(before![before!.length - 1], nn[0]);
  const assistant = tok.encode('assistant', { addSpecialTokens: false });
  assert.deepEqual(after!.slice(-5), [128009, 128006, ...assistant, 128007, nn[0]]);
  assert.equal(tok.decode([...before!, ...after!]), `<|begin_of_text|>${prompt.replace(IMAGE_TOKEN, '')}`);
});

test('stopWordHit: the release compares the end of the text with newlines removed', () => {
  assert.equal(stopWordHit('The cat.<|eot_id|>', ['<|eot_id|>']), '<|eot_id|>');
  assert.equal(stopWordHit('The cat.<|end|>\n', ['<|end|>']), '<|end|>');
  assert.equal(stopWordHit('<|im_end|> more', ['<|im_end|>', '<|endoftext|>']), undefined);
  assert.equal(stopWordHit('done<|endoftext|>', getTemplate('qwen_chat').stopWords), '<|endoftext|>');
  assert.equal(stopWordHit('anything', []), undefined);
});
