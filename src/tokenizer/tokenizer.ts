// Tokenizers read from a model folder's `tokenizer.json` (+ `tokenizer_config.json`), encoded and
// decoded as the Hugging Face stack does (transformers 5, the version the fixtures were recorded
// with). The BPE / byte-fallback / byte-level machinery is @huggingface/tokenizers (pure JS); this
// wrapper only corrects the few places where that library and transformers disagree, each with a
// comment saying why, and adds a streaming detokeniser.
//
// Node-only code (reading files) is confined to `fromFolder`; `fromJson` works anywhere.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import { hf as lib, type HfDecoder, type HfSequenceDecoder, type HfTokenizer } from './hf-lib.js';
import { readSentencePieceModel, sentencePieceToTokenizerJson } from './sentencepiece.js';

export interface EncodeOptions {
  /** Add the tokenizer's special tokens (BOS/EOS per its post-processor); default true, like HF. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special added tokens (BOS, EOS, <|eot_id|>, ...); default false, like HF. */
  skipSpecialTokens?: boolean;
}

/** Incremental detokeniser: feed generated ids one at a time. */
export interface StreamDecoder {
  /** Text completed by this id (possibly ''), never half a character. */
  push(id: number): string;
  /** Whatever is still held back (an unfinished byte sequence, ...), as full decode renders it. */
  flush(): string;
}

type Json = Record<string, unknown>;

const SPIECE_UNDERLINE = '\u2581';
const BYTE_TOKEN = /^<0x[0-9A-Fa-f]{2}>$/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

// transformers' `clean_up_tokenization` (applied only where transformers applies it, see below).
const CLEANUP_PATTERNS: readonly (readonly [string, string])[] = [
  [' .', '.'], [' ?', '?'], [' !', '!'], [' ,', ','], [" ' ", "'"], [" n't", "n't"],
  [" 'm", "'m"], [" 's", "'s"], [" 've", "'ve"], [" 're", "'re"],
];

function cleanUpTokenization(text: string): string {
  for (const [from, to] of CLEANUP_PATTERNS) text = text.split(from).join(to);
  return text;
}

/**
 * How many trailing characters of cleaned text may still change when more text is appended. Each
 * replacement pass scans left to right without overlaps, so appending can only alter what that
 * pass made of its input's last (pattern length - 1) characters, and replacements never lengthen
 * the text; over all passes the unsettled tail is at most the sum of (length - 1).
 */
const CLEANUP_LAG = CLEANUP_PATTERNS.reduce((n, [from]) => n + from.length - 1, 0);

/** `bos_token` etc. in tokenizer_config.json: a string, an AddedToken dict, or null. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * HF `tokenizers`' ByteFallback decoder. The library decodes a run of <0xNN> tokens with a
 * lenient TextDecoder, which renders an invalid run as "maximal subparts" (e.g. a valid char
 * followed by one U+FFFD) and drops a leading BOM; the Rust decoder, which transformers uses,
 * turns an invalid run into one U+FFFD per byte and keeps everything else verbatim.
 */
class HfByteFallbackDecoder extends lib.ByteFallbackDecoder {
  private readonly strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

  override decode_chain(tokens: string[]): string[] {
    const out: string[] = [];
    let run: number[] = [];
    const closeRun = (): void => {
      if (run.length === 0) return;
      try {
        out.push(this.strict.decode(Uint8Array.from(run)));
      } catch {
        for (let i = 0; i < run.length; i++) out.push('\uFFFD');
      }
      run = [];
    };
    for (const token of tokens) {
      const byte = BYTE_TOKEN.test(token) ? parseInt(token.slice(3, 5), 16) : NaN;
      if (!Number.isNaN(byte)) {
        run.push(byte);
      } else {
        closeRun();
        out.push(token);
      }
    }
    closeRun();
    return out;
  }
}

// (Plain boolean tests: TS narrowing on these structurally identical decoder types misleads.)
const isByteFallback = (d: unknown): boolean => d instanceof lib.ByteFallbackDecoder;
const isSequence = (d: unknown): d is HfSequenceDecoder => d instanceof lib.SequenceDecoder;

/** Replace every ByteFallback decoder in the tree by the HF-exact one; true if there was one. */
function patchByteFallback(holder: { decoder: HfDecoder | null } | { decoders: HfDecoder[] }): boolean {
  let found = false;
  if ('decoders' in holder) {
    holder.decoders.forEach((d, i) => {
      if (isByteFallback(d)) {
        holder.decoders[i] = new HfByteFallbackDecoder({ type: 'ByteFallback' });
        found = true;
      } else if (isSequence(d)) {
        found = patchByteFallback(d) || found;
      }
    });
  } else if (isByteFallback(holder.decoder)) {
    holder.decoder = new HfByteFallbackDecoder({ type: 'ByteFallback' });
    found = true;
  } else if (isSequence(holder.decoder)) {
    found = patchByteFallback(holder.decoder);
  }
  return found;
}

/**
 * transformers 5's `LlamaTokenizer` (also used for Vicuna, Phi-3, Yi, Mistral: every
 * `tokenizer_class` "LlamaTokenizer"/"LlamaTokenizerFast") keeps only the vocabulary, merges and
 * post-processor of tokenizer.json and rebuilds the rest: no normalizer, a Metaspace pre-tokenizer
 * (prepend "▁" unless the piece already starts with one; scheme "always" when `legacy` is true,
 * "first" otherwise, "never" with add_prefix_space false) and a Replace/ByteFallback/Fuse/Strip
 * decoder. Files written by older versions carry a `Prepend("▁")` normalizer instead, which
 * encodes " leading space" as ["▁", "▁leading", ...] and text after a special token differently
 * from transformers (fixture T.results). Only applied to SentencePiece-style files (byte fallback
 * or "▁" in the pipeline); transformers 5 also rewrites byte-level files declared as
 * LlamaTokenizer, which breaks them, and that is not reproduced.
 */
function llamaPipeline(tj: Json, config: Json): Json {
  const cls = config.tokenizer_class;
  if (cls !== 'LlamaTokenizer' && cls !== 'LlamaTokenizerFast') return tj;
  const model = tj.model;
  if (!isObject(model) || model.type !== 'BPE') return tj;
  const pipeline = JSON.stringify([tj.normalizer ?? null, tj.pre_tokenizer ?? null, tj.decoder ?? null]);
  if (model.byte_fallback !== true && !pipeline.includes(SPIECE_UNDERLINE)) return tj;
  const addPrefixSpace = config.add_prefix_space === undefined || config.add_prefix_space === null
    ? true
    : config.add_prefix_space === true;
  const legacy = config.legacy === true; // transformers 5's LlamaTokenizer default is legacy=False
  const prependScheme = addPrefixSpace ? (legacy ? 'always' : 'first') : 'never';
  const decoders: Json[] = [
    { type: 'Replace', pattern: { String: SPIECE_UNDERLINE }, content: ' ' },
    { type: 'ByteFallback' },
    { type: 'Fuse' },
  ];
  if (addPrefixSpace) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });
  return {
    ...tj,
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: SPIECE_UNDERLINE, prepend_scheme: prependScheme, split: false },
    decoder: { type: 'Sequence', decoders },
  };
}

/**
 * transformers 5 (`TokenizersBackend`): when tokenizer_config.json states `add_bos_token` or
 * `add_eos_token`, the post-processor is rebuilt from them ("<bos>:0 $A:0 <eos>:0"), whatever
 * tokenizer.json says; otherwise the file's post-processor is used as is.
 */
function postProcessorFromConfig(tj: Json, config: Json, bos?: string, eos?: string): Json {
  if (!('add_bos_token' in config) && !('add_eos_token' in config)) return tj;
  const addBos = config.add_bos_token === true && bos !== undefined;
  const addEos = config.add_eos_token === true && eos !== undefined;
  const special = (id: string, typeId: number): Json => ({ SpecialToken: { id, type_id: typeId } });
  const seq = (id: string, typeId: number): Json => ({ Sequence: { id, type_id: typeId } });
  const part = (id: string, typeId: number): Json[] => [
    ...(addBos ? [special(bos!, typeId)] : []),
    seq(id, typeId),
    ...(addEos ? [special(eos!, typeId)] : []),
  ];
  const specialTokens: Json = {};
  const idOf = (content: string): number | undefined => {
    const added = Array.isArray(tj.added_tokens) ? (tj.added_tokens as Json[]).find((t) => t.content === content) : undefined;
    if (added && typeof added.id === 'number') return added.id;
    const model = tj.model as Json | undefined;
    const vocab = model?.vocab;
    if (isObject(vocab) && typeof vocab[content] === 'number') return vocab[content] as number;
    return undefined;
  };
  for (const t of [addBos ? bos : undefined, addEos ? eos : undefined]) {
    if (t === undefined) continue;
    const id = idOf(t);
    if (id === undefined) continue;
    specialTokens[t] = { id: t, ids: [id], tokens: [t] };
  }
  return {
    ...tj,
    post_processor: { type: 'TemplateProcessing', single: part('A', 0), pair: [...part('A', 0), ...part('B', 1)], special_tokens: specialTokens },
  };
}

function readJson(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read ${path}: ${(e as Error).message}`, path);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${path} is not valid JSON: ${(e as Error).message}`, path);
  }
  if (!isObject(value)) throw new InputError(`${path} does not hold a JSON object`, path);
  return value;
}

export class Tokenizer {
  /** Beginning-of-sequence id (tokenizer_config `bos_token`), when the tokenizer has one. */
  readonly bosId?: number;
  /** End-of-sequence id (tokenizer_config `eos_token`), when the tokenizer has one. */
  readonly eosId?: number;
  /** Number of ids, added tokens included (HF `len(tokenizer)`): valid ids are 0..vocabSize-1. */
  readonly vocabSize: number;

  private readonly hf: HfTokenizer;
  /** transformers' clean_up_tokenization applies on decode. */
  private readonly cleanUp: boolean;
  /** The decoder merges runs of <0xNN> tokens (SentencePiece byte fallback). */
  private readonly byteFallback: boolean;
  private readonly specialIds: ReadonlySet<number>;

  private constructor(tokenizerJson: Json, config: Json) {
    if (!isObject(tokenizerJson.model)) throw new InputError('tokenizer.json has no "model" section');
    const bos = tokenContent(config.bos_token);
    const eos = tokenContent(config.eos_token);
    let tj = llamaPipeline(tokenizerJson, config);
    tj = postProcessorFromConfig(tj, config, bos, eos);
    if (!Array.isArray(tj.added_tokens)) tj = { ...tj, added_tokens: [] };
    try {
      this.hf = new lib.Tokenizer(tj, config);
    } catch (e) {
      throw new InputError(`cannot build the tokenizer: ${(e as Error).message}`);
    }
    this.byteFallback = patchByteFallback(this.hf);

    // transformers 5 ignores clean_up_tokenization_spaces=True for BPE models (it would corrupt
    // their output) unless `clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output`
    // is set; its default is False. The library would default it to True: we always switch the
    // library's clean-up off and apply transformers' rule ourselves.
    const modelType = (tj.model as Json).type;
    this.cleanUp = config.clean_up_tokenization_spaces === true &&
      (modelType !== 'BPE' || config.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output === true);

    const idOf = (t: string | undefined): number | undefined => (t === undefined ? undefined : this.hf.token_to_id(t));
    this.bosId = idOf(bos);
    this.eosId = idOf(eos);
    let size = 0;
    for (const id of this.hf.get_vocab(true).values()) if (id + 1 > size) size = id + 1;
    this.vocabSize = size;
    // What skipSpecialTokens drops: special added tokens, plus config additional_special_tokens.
    const special = new Set<number>();
    for (const [id, tok] of this.hf.get_added_tokens_decoder()) if (tok.special) special.add(id);
    const extra = Array.isArray(config.additional_special_tokens) ? config.additional_special_tokens : [];
    for (const t of extra) {
      const id = idOf(tokenContent(t));
      if (id !== undefined) special.add(id);
    }
    this.specialIds = special;
  }

  /**
   * Load `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json` and
   * `dir/special_tokens_map.json` (the latter only fills special tokens the config lacks). A folder
   * with only a SentencePiece `tokenizer.model` is converted as transformers' LlamaConverter does
   * (sentencepiece.ts); where both files exist tokenizer.json wins, as in Hugging Face.
   */
  static fromFolder(dir: string): Tokenizer {
    let tjPath = join(dir, 'tokenizer.json');
    const spmPath = join(dir, 'tokenizer.model');
    const fromSpm = !existsSync(tjPath) && existsSync(spmPath);
    if (!fromSpm && !existsSync(tjPath)) throw new InputError(`tokenizer file not found: ${tjPath} (nor ${spmPath})`, tjPath);
    const cfgPath = join(dir, 'tokenizer_config.json');
    const config: Json = existsSync(cfgPath) ? { ...readJson(cfgPath) } : {};
    const mapPath = join(dir, 'special_tokens_map.json');
    if (existsSync(mapPath)) {
      const map = readJson(mapPath);
      for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'additional_special_tokens']) {
        if (config[key] === undefined && map[key] !== undefined) config[key] = map[key];
      }
    }
    let tj: Json;
    if (fromSpm) {
      tjPath = spmPath;
      let bytes: Uint8Array;
      try {
        bytes = readFileSync(spmPath);
      } catch (e) {
        throw new InputError(`cannot read ${spmPath}: ${(e as Error).message}`, spmPath);
      }
      const flag = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);
      tj = sentencePieceToTokenizerJson(readSentencePieceModel(bytes, spmPath), {
        legacy: flag(config.legacy),
        addPrefixSpace: flag(config.add_prefix_space),
        addBosToken: flag(config.add_bos_token),
        addEosToken: flag(config.add_eos_token),
        bosToken: tokenContent(config.bos_token),
        eosToken: tokenContent(config.eos_token),
        unkToken: tokenContent(config.unk_token),
        padToken: tokenContent(config.pad_token),
      }, spmPath);
    } else {
      tj = readJson(tjPath);
    }
    try {
      return new Tokenizer(tj, config);
    } catch (e) {
      if (e instanceof InputError) throw new InputError(`${tjPath}: ${e.message}`, tjPath);
      throw e;
    }
  }

  /** Build from parsed `tokenizer.json` and `tokenizer_config.json` objects (neither is modified). */
  static fromJson(tokenizerJson: object, config?: object): Tokenizer {
    return new Tokenizer({ ...(tokenizerJson as Json) }, { ...((config ?? {}) as Json) });
  }

  /** HF `tokenizer.encode(text, add_special_tokens=...)`. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const bad = LONE_SURROGATE.exec(text);
    if (bad) throw new InputError(`text is not valid Unicode: lone surrogate at character ${bad.index}`);
    return this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** HF `tokenizer.decode(ids, skip_special_tokens=...)`. Ids outside the vocabulary are ignored, as HF does. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const text = this.rawDecode(ids, opts.skipSpecialTokens ?? false);
    return this.cleanUp ? cleanUpTokenization(text) : text;
  }

  /** Id of a token string (vocabulary or added token). */
  tokenId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** Token string of an id. */
  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** Whether the id is a special added token (what skipSpecialTokens drops). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /**
   * A streaming detokeniser for generated ids. The concatenation of every `push` result and the
   * final `flush` equals `decode(ids, opts)` of all pushed ids. Text is held back while it could
   * still change: an unfinished UTF-8 sequence (decode would render it as U+FFFD), and for byte-
   * fallback tokenizers a run of <0xNN> tokens until a non-byte token closes it (HF renders a run
   * that turns out invalid as one U+FFFD per byte, including bytes of characters already
   * complete, so a run cannot be emitted early and stay exact).
   */
  streamDecoder(opts: DecodeOptions = {}): StreamDecoder {
    const skip = opts.skipSpecialTokens ?? false;
    const ids: number[] = [];
    // Window trick: decode ids[prefix..] and ids[prefix..read]; the difference is the new text.
    // Decoding from `prefix` rather than 0 keeps each step O(window); starting the window on an
    // already-emitted token makes decoder effects at the window start (the SentencePiece Strip
    // of one leading space) cancel out.
    let prefix = 0;
    let read = 0;
    let lastEffective: number | undefined; // last id the decoder sees (skipped specials excluded)
    // Clean-up state (only for tokenizers where transformers applies clean_up_tokenization).
    let raw = '';
    let cleanedOut = 0;

    const cleaned = (final: boolean): string => {
      if (!this.cleanUp) {
        const out = raw;
        raw = '';
        return out;
      }
      const text = cleanUpTokenization(raw);
      let upto = final ? text.length : Math.max(cleanedOut, text.length - CLEANUP_LAG);
      const last = text.charCodeAt(upto - 1);
      if (!final && upto > cleanedOut && last >= 0xd800 && last <= 0xdbff) upto--; // keep pairs whole
      const out = text.slice(cleanedOut, upto);
      cleanedOut = upto;
      return out;
    };

    const step = (final: boolean): string => {
      const before = this.rawDecode(ids.slice(prefix, read), skip);
      const after = this.rawDecode(ids.slice(prefix), skip);
      if (!final) {
        if (after.length <= before.length || after.endsWith('\uFFFD') || !after.startsWith(before)) return '';
      }
      // (`after` always extends `before` for the decoders in use; the fallback is defensive.)
      let common = 0;
      if (after.startsWith(before)) common = before.length;
      else while (common < before.length && before[common] === after[common]) common++;
      const add = after.slice(common);
      prefix = read;
      read = ids.length;
      raw += add;
      return cleaned(final);
    };

    return {
      push: (id: number): string => {
        ids.push(id);
        if (!(skip && this.specialIds.has(id)) && this.hf.id_to_token(id) !== undefined) lastEffective = id;
        if (this.byteFallback && lastEffective !== undefined && BYTE_TOKEN.test(this.hf.id_to_token(lastEffective) ?? '')) return '';
        return step(false);
      },
      flush: (): string => step(true),
    };
  }

  private rawDecode(ids: readonly number[], skipSpecial: boolean): string {
    const known = ids.filter((id) => Number.isInteger(id) && this.hf.id_to_token(id) !== undefined);
    if (known.length === 0) return '';
    return this.hf.decode(known, { skip_special_tokens: skipSpecial, clean_up_tokenization_spaces: false });
  }
}
