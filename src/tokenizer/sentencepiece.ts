// A SentencePiece `tokenizer.model` (serialized `sentencepiece.ModelProto`) read and converted to
// the tokenizer.json structure that Hugging Face builds from it. A model folder that ships only
// `tokenizer.model` (lmsys/vicuna-7b-v1.5, the original LLaMA-2 releases) is loaded by
// transformers' AutoTokenizer through its `LlamaConverter`; producing the same tokenizer.json lets
// `Tokenizer` reuse its whole encode / decode / streaming path, so a tokenizer.model folder and the
// tokenizer.json transformers would write for it behave the same.
//
// Facts carried over from transformers' convert_slow_tokenizer.py (LlamaConverter / SpmConverter /
// generate_merges) and from google/sentencepiece's sentencepiece_model.proto (field numbers).
//
// The protobuf is read with protobufjs (maintained, widely used, pure JS): the few ModelProto fields
// we need are declared below as a JSON descriptor (no .proto file at run time, no code generation).
// Unknown fields (self-test data, newer trainer options) are skipped by the library.

import protobuf from 'protobufjs';
import { InputError } from '../core/errors.js';

export type SpmPieceType = 'normal' | 'unknown' | 'control' | 'user_defined' | 'unused' | 'byte';

export interface SpmPiece {
  piece: string;
  /** The stored float32 score, widened to double. */
  score: number;
  type: SpmPieceType;
}

export interface SpmModel {
  pieces: SpmPiece[];
  modelType: 'unigram' | 'bpe' | 'word' | 'char';
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  normalizer: {
    name: string;
    addDummyPrefix: boolean;
    removeExtraWhitespaces: boolean;
    escapeWhitespaces: boolean;
    /** Length of `precompiled_charsmap` (LLaMA-style models have none). */
    precompiledCharsmapBytes: number;
  };
}

const PIECE_TYPES: Record<number, SpmPieceType> = {
  1: 'normal', 2: 'unknown', 3: 'control', 4: 'user_defined', 5: 'unused', 6: 'byte',
};
const MODEL_TYPES: Record<number, SpmModel['modelType']> = { 1: 'unigram', 2: 'bpe', 3: 'word', 4: 'char' };

// Field numbers from sentencepiece_model.proto. Each message says `edition: 'proto2'` (the file is
// proto2): without it protobufjs treats nested JSON types as proto3, which drops a stored `false`
// (e.g. remove_extra_whitespaces) and so loses the difference from a proto2 default. Enums are read as int32 (same varint wire format) so
// that an unknown enum value is reported by us rather than silently mapped.
const root = protobuf.Root.fromJSON({
  nested: {
    ModelProto: {
      edition: 'proto2',
      fields: {
        pieces: { rule: 'repeated', type: 'SentencePiece', id: 1 },
        trainerSpec: { type: 'TrainerSpec', id: 2 },
        normalizerSpec: { type: 'NormalizerSpec', id: 3 },
      },
      nested: {
        SentencePiece: {
          edition: 'proto2',
          fields: {
            piece: { type: 'string', id: 1 },
            score: { type: 'float', id: 2 },
            type: { type: 'int32', id: 3 },
          },
        },
      },
    },
    TrainerSpec: {
      edition: 'proto2',
      fields: {
        modelType: { type: 'int32', id: 3 },
        vocabSize: { type: 'int32', id: 4 },
        byteFallback: { type: 'bool', id: 35 },
        unkId: { type: 'int32', id: 40 },
        bosId: { type: 'int32', id: 41 },
        eosId: { type: 'int32', id: 42 },
        padId: { type: 'int32', id: 43 },
        unkPiece: { type: 'string', id: 45 },
        bosPiece: { type: 'string', id: 46 },
        eosPiece: { type: 'string', id: 47 },
      },
    },
    NormalizerSpec: {
      edition: 'proto2',
      fields: {
        name: { type: 'string', id: 1 },
        precompiledCharsmap: { type: 'bytes', id: 2 },
        addDummyPrefix: { type: 'bool', id: 3 },
        removeExtraWhitespaces: { type: 'bool', id: 4 },
        escapeWhitespaces: { type: 'bool', id: 5 },
      },
    },
  },
});
const ModelProto = root.lookupType('ModelProto');

type Obj = Record<string, unknown>;

/** Parse a serialized ModelProto. `source` names the file in errors. Proto2 defaults are applied. */
export function readSentencePieceModel(bytes: Uint8Array, source = 'tokenizer.model'): SpmModel {
  let m: Obj;
  try {
    m = ModelProto.toObject(ModelProto.decode(bytes), { defaults: false, longs: Number }) as Obj;
  } catch (e) {
    throw new InputError(`${source} is not a SentencePiece model: ${(e as Error).message}`, source);
  }
  const raw = (m.pieces ?? []) as Obj[];
  if (raw.length === 0) throw new InputError(`${source} is not a SentencePiece model: it has no pieces`, source);
  const pieces = raw.map((p, id): SpmPiece => {
    const typeNum = (p.type as number | undefined) ?? 1;
    const type = PIECE_TYPES[typeNum];
    if (type === undefined) throw new InputError(`${source}: piece ${id} has unknown type ${typeNum}`, source);
    return { piece: (p.piece as string | undefined) ?? '', score: (p.score as number | undefined) ?? 0, type };
  });
  const t = (m.trainerSpec ?? {}) as Obj;
  const n = (m.normalizerSpec ?? {}) as Obj;
  const modelTypeNum = (t.modelType as number | undefined) ?? 1;
  const modelType = MODEL_TYPES[modelTypeNum];
  if (modelType === undefined) throw new InputError(`${source}: unknown model_type ${modelTypeNum}`, source);
  const charsmap = n.precompiledCharsmap as Uint8Array | undefined;
  return {
    pieces,
    modelType,
    byteFallback: (t.byteFallback as boolean | undefined) ?? false,
    unkId: (t.unkId as number | undefined) ?? 0,
    bosId: (t.bosId as number | undefined) ?? 1,
    eosId: (t.eosId as number | undefined) ?? 2,
    padId: (t.padId as number | undefined) ?? -1,
    unkPiece: (t.unkPiece as string | undefined) ?? '<unk>',
    bosPiece: (t.bosPiece as string | undefined) ?? '<s>',
    eosPiece: (t.eosPiece as string | undefined) ?? '</s>',
    normalizer: {
      name: (n.name as string | undefined) ?? '',
      addDummyPrefix: (n.addDummyPrefix as boolean | undefined) ?? true,
      removeExtraWhitespaces: (n.removeExtraWhitespaces as boolean | undefined) ?? true,
      escapeWhitespaces: (n.escapeWhitespaces as boolean | undefined) ?? true,
      precompiledCharsmapBytes: charsmap?.length ?? 0,
    },
  };
}

export interface ConvertOptions {
  /** tokenizer_config `legacy`; absent means true (transformers' LlamaTokenizer default, with a warning). */
  legacy?: boolean;
  /** tokenizer_config `add_prefix_space`; default true. */
  addPrefixSpace?: boolean;
  /** Default true (LlamaTokenizerFast). */
  addBosToken?: boolean;
  /** Default false. */
  addEosToken?: boolean;
  /** Special token strings from the config (registered as special added tokens, as transformers does). */
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
  padToken?: string;
}

const SPIECE_UNDERLINE = '\u2581';

const codePoints = (s: string): string[] => Array.from(s);

/**
 * transformers' `generate_merges(vocab, vocab_scores)`: every split (left, right) of a piece (at
 * code-point boundaries) whose halves are both in the vocabulary; per piece ordered by
 * (id(left), id(right)); then all of them by the merged piece's score, highest first, ties by the
 * longer left then the longer right half (a stable reversed sort, as Python's `sorted(reverse=True)`).
 */
function generateMerges(vocab: ReadonlyMap<string, number>, scored: readonly (readonly [string, number])[]): [string, string][] {
  const all: { l: string; r: string; score: number; ll: number; lr: number; order: number }[] = [];
  // dict(vocab_scores): a repeated piece keeps its first position and its last score.
  const scores = new Map<string, number>();
  for (const [piece, score] of scored) scores.set(piece, score);
  for (const [piece, score] of scores) {
    const cps = codePoints(piece);
    const local: { l: string; r: string; ll: number; lr: number }[] = [];
    for (let i = 1; i < cps.length; i++) {
      const l = cps.slice(0, i).join('');
      const r = cps.slice(i).join('');
      if (vocab.has(l) && vocab.has(r)) local.push({ l, r, ll: i, lr: cps.length - i });
    }
    local.sort((a, b) => vocab.get(a.l)! - vocab.get(b.l)! || vocab.get(a.r)! - vocab.get(b.r)!);
    for (const x of local) all.push({ ...x, score, order: all.length });
  }
  all.sort((a, b) => b.score - a.score || b.ll - a.ll || b.lr - a.lr || a.order - b.order);
  return all.map((x) => [x.l, x.r]);
}

/**
 * The tokenizer.json (as a plain object) that transformers' LlamaConverter builds for
 * LlamaTokenizerFast from this model:
 * - model: BPE over the pieces in id order (ids 0..2 keep their pieces, score 0), merges from
 *   `generateMerges`, unk_token = trainer_spec.unk_piece, fuse_unk, byte_fallback true;
 * - added tokens: CONTROL pieces (special) and USER_DEFINED pieces (not special), normalized false,
 *   plus the config's unk/bos/eos/pad strings as special tokens (transformers registers them);
 * - legacy true: normalizer Prepend("▁") (when add_prefix_space) + Replace(" ", "▁"), no pre-tokenizer;
 *   legacy false: no normalizer, pre-tokenizer Metaspace("▁", prepend_scheme "first" / "never"
 *   without add_prefix_space, split false);
 * - decoder: Replace("▁", " "), ByteFallback, Fuse, and Strip(" ", 1, 0) when add_prefix_space;
 * - post-processor: TemplateProcessing "<bos> $A <eos>" per add_bos_token / add_eos_token.
 * The normalizer spec of the model is not used (LlamaConverter ignores it; LLaMA's is identity).
 */
export function sentencePieceToTokenizerJson(model: SpmModel, opts: ConvertOptions = {}, source = 'tokenizer.model'): Record<string, unknown> {
  if (model.modelType !== 'bpe') {
    throw new InputError(`${source}: only SentencePiece BPE models (LLaMA style) are supported, this one is ${model.modelType}`, source);
  }
  const legacy = opts.legacy ?? true;
  const addPrefixSpace = opts.addPrefixSpace ?? true;
  const scored: [string, number][] = model.pieces.map((p, id) => [p.piece, id < 3 ? 0 : p.score]);
  const vocab = new Map<string, number>();
  scored.forEach(([piece], id) => vocab.set(piece, id));
  const merges = generateMerges(vocab, scored);

  const added: Record<string, unknown>[] = [];
  const addedSeen = new Set<string>();
  const addToken = (content: string, id: number, special: boolean): void => {
    if (addedSeen.has(content)) return;
    addedSeen.add(content);
    added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  };
  model.pieces.forEach((p, id) => {
    if (p.type === 'control' || p.type === 'user_defined') addToken(p.piece, id, p.type === 'control');
  });
  let nextId = model.pieces.length;
  for (const t of [opts.unkToken ?? model.unkPiece, opts.bosToken, opts.eosToken, opts.padToken]) {
    if (t === undefined) continue;
    const id = vocab.get(t) ?? added.find((a) => a.content === t)?.id as number | undefined;
    addToken(t, id ?? nextId++, true);
  }
  added.sort((a, b) => (a.id as number) - (b.id as number));

  const vocabObj: Record<string, number> = {};
  for (const [piece, id] of vocab) vocabObj[piece] = id;

  const normalizer = legacy
    ? {
      type: 'Sequence',
      normalizers: [
        ...(addPrefixSpace ? [{ type: 'Prepend', prepend: SPIECE_UNDERLINE }] : []),
        { type: 'Replace', pattern: { String: ' ' }, content: SPIECE_UNDERLINE },
      ],
    }
    : null;
  const preTokenizer = legacy
    ? null
    : { type: 'Metaspace', replacement: SPIECE_UNDERLINE, prepend_scheme: addPrefixSpace ? 'first' : 'never', split: false };
  const decoders: Record<string, unknown>[] = [
    { type: 'Replace', pattern: { String: SPIECE_UNDERLINE }, content: ' ' },
    { type: 'ByteFallback' },
    { type: 'Fuse' },
  ];
  if (addPrefixSpace) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });

  const bos = opts.bosToken ?? model.bosPiece;
  const eos = opts.eosToken ?? model.eosPiece;
  const idOf = (t: string): number | undefined => vocab.get(t) ?? (added.find((a) => a.content === t)?.id as number | undefined);
  const addBos = (opts.addBosToken ?? true) && idOf(bos) !== undefined;
  const addEos = (opts.addEosToken ?? false) && idOf(eos) !== undefined;
  const part = (seq: string, typeId: number): Record<string, unknown>[] => [
    ...(addBos ? [{ SpecialToken: { id: bos, type_id: typeId } }] : []),
    { Sequence: { id: seq, type_id: typeId } },
    ...(addEos ? [{ SpecialToken: { id: eos, type_id: typeId } }] : []),
  ];
  const specialTokens: Record<string, unknown> = {};
  if (addBos) specialTokens[bos] = { id: bos, ids: [idOf(bos)], tokens: [bos] };
  if (addEos) specialTokens[eos] = { id: eos, ids: [idOf(eos)], tokens: [eos] };

  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer,
    pre_tokenizer: preTokenizer,
    post_processor: { type: 'TemplateProcessing', single: part('A', 0), pair: [...part('A', 0), ...part('B', 1)], special_tokens: specialTokens },
    decoder: { type: 'Sequence', decoders },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: model.unkPiece,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: vocabObj,
      merges,
    },
  };
}
