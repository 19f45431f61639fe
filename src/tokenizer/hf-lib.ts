// Typed view of the parts of @huggingface/tokenizers that this folder uses. The package's own
// declarations import their siblings without file extensions, which NodeNext resolution rejects:
// its `Tokenizer` type comes out as `any` and the decoder classes are missing. The runtime
// exports are fine; this file states the shapes we rely on (checked by the tests).

import * as lib from '@huggingface/tokenizers';

/** A decoder step (the library's `Decoder`; instances are also callable). */
export interface HfDecoder {
  decode_chain(tokens: string[]): string[];
}

export interface HfSequenceDecoder extends HfDecoder {
  decoders: HfDecoder[];
}

export interface HfAddedToken {
  content: string;
  special: boolean;
}

export interface HfTokenizer {
  decoder: HfDecoder | null;
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[]; tokens: string[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
  get_added_tokens_decoder(): Map<number, HfAddedToken>;
}

interface HfLib {
  Tokenizer: new (tokenizerJson: object, config: object) => HfTokenizer;
  ByteFallbackDecoder: new (config: { type: 'ByteFallback' }) => HfDecoder;
  SequenceDecoder: new (config: { type: 'Sequence'; decoders: object[] }) => HfSequenceDecoder;
}

export const hf = lib as unknown as HfLib;
