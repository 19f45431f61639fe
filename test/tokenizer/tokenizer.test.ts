// Tokenizer parity with the HF stack (fixture T for a LLaMA-2-style and a LLaMA-3 tokenizer),
// the places where the wrapper corrects the library, bad input, and the streaming detokeniser.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer, type DecodeOptions } from '../../src/tokenizer/tokenizer.js';
import { InputError } from '../../src/core/errors.js';
import { TINY } from '../helpers/fixtures.js';
import { LLAMA2_DIR, extraJson, fixtureT, llama2Tokenizer, llama3Tokenizer } from './load.js';
import { seededRandom } from '../../src/generate/sampling.js';

const T = fixtureT();
const TOKENIZERS = { llama2_tok: llama2Tokenizer, llama3_tok: llama3Tokenizer } as const;

for (const name of ['llama2_tok', 'llama3_tok'] as const) {
  test(`T.results ${name}: ids without special tokens`, () => {
    const tok = TOKENIZERS[name]();
    T.texts.forEach((text, i) => {
      assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), T.results[name].plain[i], JSON.stringify(text));
    });
  });

  test(`T.results ${name}: ids with special tokens`, () => {
    const tok = TOKENIZERS[name]();
    T.texts.forEach((text, i) => {
      assert.deepEqual(tok.encode(text), T.results[name].special[i], JSON.stringify(text));
      assert.deepEqual(tok.encode(text, { addSpecialTokens: true }), T.results[name].special[i]);
    });
  });

  test(`T.results ${name}: decode round trips`, () => {
    const tok = TOKENIZERS[name]();
    T.texts.forEach((text, i) => {
      assert.equal(tok.decode(T.results[name].plain[i]), T.results[name].decode_roundtrip[i], JSON.stringify(text));
    });
  });
}

test('special token ids and vocabulary size', () => {
  const l2 = llama2Tokenizer();
  assert.equal(l2.bosId, 1);
  assert.equal(l2.eosId, 2);
  assert.equal(l2.vocabSize, 32000);
  assert.equal(l2.tokenId('<s>'), 1);
  assert.equal(l2.tokenId('<0x0A>'), 13);
  assert.equal(l2.tokenId('no such token'), undefined);
  assert.equal(l2.idToToken(20819), '\u2581literal');
  assert.ok(l2.isSpecial(1) && l2.isSpecial(2) && !l2.isSpecial(20819));

  const l3 = llama3Tokenizer();
  assert.equal(l3.bosId, 128000); // <|begin_of_text|>
  assert.equal(l3.eosId, 128001); // <|end_of_text|>
  assert.equal(l3.vocabSize, 128256);
  assert.equal(l3.tokenId('<|eot_id|>'), 128009);
  assert.equal(l3.tokenId('<|start_header_id|>'), 128006);
  assert.ok(l3.isSpecial(128009));
});

test('decode: skipping special tokens, empty input, ids outside the vocabulary', () => {
  const l2 = llama2Tokenizer();
  // "<s>literal</s> tags": without the specials the first piece's "▁" is the one stripped.
  assert.equal(l2.decode([1, 20819, 2, 12944], { skipSpecialTokens: true }), 'literal tags');
  assert.equal(l2.decode([1, 20819, 2, 12944]), '<s> literal</s> tags');
  assert.equal(l2.decode([]), '');
  assert.equal(l2.decode([22557, 99999, -1, 1526]), 'Hello world');

  const l3 = llama3Tokenizer();
  assert.equal(l3.decode([128000, 9906, 1917, 128009]), '<|begin_of_text|>Hello world<|eot_id|>');
  assert.equal(l3.decode([128000, 9906, 1917, 128009], { skipSpecialTokens: true }), 'Hello world');
});

test('encode: empty text, special tokens in text', () => {
  const l2 = llama2Tokenizer();
  assert.deepEqual(l2.encode('', { addSpecialTokens: false }), []);
  assert.deepEqual(l2.encode(''), [1]);
  const l3 = llama3Tokenizer();
  assert.deepEqual(l3.encode('<|eot_id|>', { addSpecialTokens: false }), [128009]);
  assert.deepEqual(l3.encode(''), []);
});

test('byte fallback decodes like the Rust decoder: an invalid run is one U+FFFD per byte', () => {
  const l2 = llama2Tokenizer();
  const b = (hex: string): number => l2.tokenId(`<0x${hex}>`)!;
  assert.equal(l2.decode([b('E4'), b('BD'), b('A0')]), '你');
  // The library alone gives '\uFFFD' (one per maximal subpart) and '你\uFFFD' here.
  assert.equal(l2.decode([b('E4'), b('BD')]), '\uFFFD\uFFFD');
  assert.equal(l2.decode([b('E4'), b('BD'), b('A0'), b('E4')]), '\uFFFD'.repeat(4));
  // A BOM decoded from bytes is kept (the library's default TextDecoder would drop it).
  assert.equal(l2.decode([b('EF'), b('BB'), b('BF'), 22557]), '\uFEFF Hello');
});

test('LlamaTokenizer pipeline of transformers 5: legacy=false prepends "▁" to the first piece only', () => {
  const tj = JSON.parse(readFileSync(join(LLAMA2_DIR, 'tokenizer.json'), 'utf8')) as object;
  const cfg = JSON.parse(readFileSync(join(LLAMA2_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  const pieces = (tok: Tokenizer, text: string): string[] =>
    tok.encode(text, { addSpecialTokens: false }).map((id) => tok.idToToken(id)!);

  const first = Tokenizer.fromJson(tj, { ...cfg, legacy: false });
  assert.equal(pieces(first, 'Hello')[0], '\u2581Hello');
  const afterSpecial = pieces(first, '<s>literal');
  assert.equal(afterSpecial[0], '<s>');
  assert.equal(afterSpecial.slice(1).join(''), 'literal');

  const never = Tokenizer.fromJson(tj, { ...cfg, add_prefix_space: false });
  assert.equal(pieces(never, 'Hello world').join(''), 'Hello\u2581world');
  assert.equal(never.decode(never.encode('Hello world', { addSpecialTokens: false })), 'Hello world');

  // Without a config (no tokenizer_class) the file's own pipeline is used unchanged: its
  // Prepend normalizer adds "▁" even before a leading space, and its post-processor adds <s>.
  const raw = Tokenizer.fromJson(tj);
  assert.deepEqual(raw.encode(' leading space'), [1, 28705, 5374, 2764]);
  assert.equal(raw.bosId, undefined);
});

test('add_bos_token / add_eos_token in the config rebuild the post-processor', () => {
  const tj = JSON.parse(readFileSync(join(LLAMA2_DIR, 'tokenizer.json'), 'utf8')) as object;
  const cfg = JSON.parse(readFileSync(join(LLAMA2_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(Tokenizer.fromJson(tj, { ...cfg, add_bos_token: false }).encode('Hello world'), [22557, 1526]);
  assert.deepEqual(Tokenizer.fromJson(tj, { ...cfg, add_eos_token: true }).encode('Hello world'), [1, 22557, 1526, 2]);
});

test('fromJson leaves its arguments untouched', () => {
  const tj = JSON.parse(readFileSync(join(LLAMA2_DIR, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  const cfg = JSON.parse(readFileSync(join(LLAMA2_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  const before = JSON.stringify([tj.normalizer, tj.pre_tokenizer, tj.decoder, tj.post_processor, cfg]);
  Tokenizer.fromJson(tj, cfg);
  assert.equal(JSON.stringify([tj.normalizer, tj.pre_tokenizer, tj.decoder, tj.post_processor, cfg]), before);
});

test('a byte-level BPE tokenizer with a lowercasing normalizer (OWLv2 CLIP) matches O.input_ids', () => {
  const clip = Tokenizer.fromFolder(join(TINY, 'owlv2'));
  const e = extraJson();
  const queries = e['O.queries'] as string[];
  const ids = e['O.input_ids'] as number[][];
  queries.forEach((q, i) => {
    const enc = clip.encode(q);
    assert.deepEqual(enc, ids[i]!.slice(0, enc.length));
    assert.ok(ids[i]!.slice(enc.length).every((id) => id === clip.eosId)); // padding
  });
});

test('missing or broken tokenizer files are one-line InputErrors naming the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tok-'));
  try {
    const path = join(dir, 'tokenizer.json');
    assert.throws(() => Tokenizer.fromFolder(dir), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.equal(e.subject, path);
      assert.ok(e.message.includes(path) && !e.message.includes('\n'), e.message);
      return true;
    });
    await writeFile(path, '{"model": ');
    assert.throws(() => Tokenizer.fromFolder(dir), (e: unknown) => e instanceof InputError && e.message.includes(path));
    await writeFile(path, '{"version": "1.0"}');
    assert.throws(() => Tokenizer.fromFolder(dir), (e: unknown) => e instanceof InputError && e.message.includes(path));
    await rm(path);
    await mkdir(path); // a directory where the file should be
    assert.throws(() => Tokenizer.fromFolder(dir), (e: unknown) => e instanceof InputError && e.message.includes(path));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('text that is not valid Unicode is an InputError', () => {
  assert.throws(() => llama2Tokenizer().encode('bad \uD800 text'), InputError);
  assert.throws(() => llama3Tokenizer().encode('bad \uDC00'), InputError);
});

// ---- streaming ----

function isWellFormed(s: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

function stream(tok: Tokenizer, ids: readonly number[], opts?: DecodeOptions): string[] {
  const sd = tok.streamDecoder(opts);
  const chunks = ids.map((id) => sd.push(id));
  chunks.push(sd.flush());
  return chunks;
}

/** Push ids one by one: no chunk with U+FFFD or half a surrogate pair, and the pieces add up to decode. */
function checkStream(tok: Tokenizer, ids: readonly number[], opts?: DecodeOptions): string[] {
  const chunks = stream(tok, ids, opts);
  for (const c of chunks) {
    assert.ok(!c.includes('\uFFFD'), `U+FFFD in chunk ${JSON.stringify(c)} of ${JSON.stringify(chunks)}`);
    assert.ok(isWellFormed(c), `half a character in ${JSON.stringify(c)}`);
  }
  assert.equal(chunks.join(''), tok.decode(ids, opts));
  return chunks;
}

test('stream: Chinese and emoji through byte fallback (LLaMA-2 vocabulary)', () => {
  const tok = llama2Tokenizer();
  for (const text of ['龘靐齉 are rare', '请描述一下这张照片', '𠀀 emoji 🤖🎉 end', 'Ünïcödé café naïve 😀', '\n\nnewlines\n']) {
    const ids = tok.encode(text, { addSpecialTokens: false });
    const chunks = checkStream(tok, ids);
    assert.equal(chunks.join(''), text); // and decode round-trips these texts
  }
  // Byte tokens are held until their run closes, then come out whole.
  const ids = tok.encode('a 🤖 b', { addSpecialTokens: false });
  const chunks = stream(tok, ids);
  const robot = ids.findIndex((id) => tok.idToToken(id) === '<0xF0>');
  assert.ok(robot > 0);
  for (let i = robot; i < robot + 4; i++) assert.equal(chunks[i], '');
  assert.equal(chunks[robot + 4], '🤖 b');
});

test('stream: byte-level BPE splits characters across tokens (LLaMA-3 vocabulary)', () => {
  const tok = llama3Tokenizer();
  let held = 0;
  for (const text of ['请描述一下这张照片', 'emoji 🤖 and tabs\tand   spaces', '龘靐齉 and 𠀀', 'Ünïcödé café naïve']) {
    const ids = tok.encode(text, { addSpecialTokens: false });
    const chunks = checkStream(tok, ids);
    assert.equal(chunks.join(''), text);
    held += chunks.slice(0, -1).filter((c) => c === '').length;
  }
  assert.ok(held > 0, 'some ids end inside a character and must be held back');
});

test('stream: text comes out as soon as it is complete, with decode\'s leading-space rule', () => {
  const l2 = llama2Tokenizer();
  assert.deepEqual(stream(l2, [22557, 1526]), ['Hello', ' world', '']);
  // A generated answer "▁The▁answer": the first piece's space is stripped as in decode.
  const ans = l2.encode('The answer is 42.', { addSpecialTokens: false });
  const chunks = checkStream(l2, ans);
  assert.equal(chunks[0], 'The');
  assert.equal(chunks.join(''), 'The answer is 42.');
  const l3 = llama3Tokenizer();
  assert.deepEqual(stream(l3, [9906, 1917]), ['Hello', ' world', '']);
});

test('stream: special tokens kept or skipped as decode does', () => {
  const l2 = llama2Tokenizer();
  const ids = [...l2.encode('A cat.', { addSpecialTokens: false }), 2];
  assert.equal(checkStream(l2, ids, { skipSpecialTokens: true }).join(''), 'A cat.');
  assert.equal(checkStream(l2, ids).join(''), 'A cat.</s>');
  const l3 = llama3Tokenizer();
  const ids3 = [...l3.encode('A cat.', { addSpecialTokens: false }), 128009];
  assert.equal(checkStream(l3, ids3, { skipSpecialTokens: true }).join(''), 'A cat.');
  assert.equal(checkStream(l3, ids3).join(''), 'A cat.<|eot_id|>');
});

test('stream: an invalid byte run is rendered exactly as decode renders it', () => {
  const tok = llama2Tokenizer();
  const b = (hex: string): number => tok.tokenId(`<0x${hex}>`)!;
  // 你 then a stray lead byte: HF renders the whole run as four U+FFFD, so "你" must not be sent early.
  const ids = [b('E4'), b('BD'), b('A0'), b('E4'), tok.tokenId('\u2581x')!];
  const chunks = stream(tok, ids);
  assert.deepEqual(chunks.slice(0, 4), ['', '', '', '']);
  assert.equal(chunks.join(''), tok.decode(ids));
  assert.equal(tok.decode(ids), '\uFFFD\uFFFD\uFFFD\uFFFD x');
});

test('stream: random id sequences always add up to decode (both tokenizers, specials kept and skipped)', () => {
  const rand = seededRandom(1234);
  const cases: [Tokenizer, number[]][] = [
    [llama2Tokenizer(), [0, 1, 2, 28705, 13]],
    [llama3Tokenizer(), [128000, 128001, 128009, 220, 198]],
  ];
  for (const [tok, favourites] of cases) {
    const byteIds = tok.tokenId('<0x00>') !== undefined ? Array.from({ length: 256 }, (_, i) => tok.tokenId(`<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`)!) : [];
    for (let n = 0; n < 150; n++) {
      const len = 1 + Math.floor(rand() * 24);
      const ids: number[] = [];
      for (let i = 0; i < len; i++) {
        const r = rand();
        if (r < 0.35 && byteIds.length) ids.push(byteIds[Math.floor(rand() * 256)]!);
        else if (r < 0.5) ids.push(favourites[Math.floor(rand() * favourites.length)]!);
        else ids.push(Math.floor(rand() * tok.vocabSize));
      }
      for (const skipSpecialTokens of [false, true]) {
        const chunks = stream(tok, ids, { skipSpecialTokens });
        assert.equal(chunks.join(''), tok.decode(ids, { skipSpecialTokens }), `ids ${JSON.stringify(ids)}`);
        for (const c of chunks) assert.ok(isWellFormed(c));
      }
    }
  }
});

test('stream: valid UTF-8 from random characters never yields U+FFFD', () => {
  const rand = seededRandom(99);
  const pick = (): string => {
    const ranges: [number, number][] = [[0x20, 0x7e], [0xa0, 0x2ff], [0x4e00, 0x9fff], [0x1f300, 0x1faff], [0x20000, 0x2a6df]];
    const [lo, hi] = ranges[Math.floor(rand() * ranges.length)]!;
    return String.fromCodePoint(lo + Math.floor(rand() * (hi - lo + 1)));
  };
  for (const tok of [llama2Tokenizer(), llama3Tokenizer()]) {
    for (let n = 0; n < 40; n++) {
      let text = '';
      const len = 1 + Math.floor(rand() * 20);
      for (let i = 0; i < len; i++) text += pick();
      const ids = tok.encode(text, { addSpecialTokens: false });
      checkStream(tok, ids);
    }
  }
});

test('clean_up_tokenization_spaces: ignored for BPE (transformers 5) unless forced, and streamed exactly', () => {
  const tj = JSON.parse(readFileSync(join(LLAMA2_DIR, 'tokenizer.json'), 'utf8')) as object;
  const cfg = JSON.parse(readFileSync(join(LLAMA2_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  const text = "Hello , world . It 's what I 've said ! Is n't it ?";
  const plain = Tokenizer.fromJson(tj, { ...cfg, clean_up_tokenization_spaces: true });
  const ids = plain.encode(text, { addSpecialTokens: false });
  assert.equal(plain.decode(ids), text);
  const forced = Tokenizer.fromJson(tj, {
    ...cfg,
    clean_up_tokenization_spaces: true,
    clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: true,
  });
  assert.equal(forced.decode(ids), "Hello, world. It's what I've said! Isn't it?");
  checkStream(forced, ids);
  const rand = seededRandom(7);
  const words = ['a', ' .', ' ?', ' !', ' ,', " '", ' n', "'t", "'s", 're', 've', 'm', ' ', 'x'];
  for (let n = 0; n < 60; n++) {
    let s = '';
    for (let i = 0; i < 12; i++) s += words[Math.floor(rand() * words.length)];
    checkStream(forced, forced.encode(s, { addSpecialTokens: false }));
  }
});
