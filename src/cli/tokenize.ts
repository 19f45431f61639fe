// `mgllava tokenize`: a model folder's tokenizer (tokenizer.json, or a SentencePiece tokenizer.model)
// on a text, or on a list of ids with --decode. Without --special the ids are what the release
// encodes for each prompt chunk (no BOS/EOS); --special adds them as tokenizer_config.json says.

import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';

export interface TokenizeOptions {
  llm: string;
  special?: boolean;
  json?: boolean;
  decode?: string;
}

/** "1,2,3" (spaces allowed) -> [1, 2, 3]; anything else is a one-line InputError. */
export function parseIdList(list: string): number[] {
  const parts = list.split(',').map((s) => s.trim());
  if (list.trim() === '') return [];
  return parts.map((p) => {
    if (!/^\d+$/.test(p) || !Number.isSafeInteger(Number(p))) {
      throw new InputError(`--decode: expected comma-separated token ids like 1,2,3, got ${JSON.stringify(list)}`);
    }
    return Number(p);
  });
}

export function runTokenize(text: string | undefined, o: TokenizeOptions, write: (s: string) => void = (s) => process.stdout.write(s)): void {
  const dir = resolve(o.llm);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new InputError(`--llm: not a folder: ${dir}`, dir);
  if (o.decode !== undefined) {
    if (text !== undefined) throw new InputError('give either a TEXT or --decode IDS, not both');
    const ids = parseIdList(o.decode);
    const tok = Tokenizer.fromFolder(dir);
    const bad = ids.find((id) => id >= tok.vocabSize);
    if (bad !== undefined) throw new InputError(`--decode: id ${bad} is outside the vocabulary (0..${tok.vocabSize - 1})`);
    const out = tok.decode(ids, { skipSpecialTokens: !o.special });
    write(o.json ? `${JSON.stringify({ text: out })}\n` : `${out}\n`);
    return;
  }
  if (text === undefined) throw new InputError('nothing to tokenize: give a TEXT (or --decode IDS)');
  const tok = Tokenizer.fromFolder(dir);
  const ids = tok.encode(text, { addSpecialTokens: o.special === true });
  if (o.json) write(`${JSON.stringify({ ids, pieces: ids.map((id) => tok.idToToken(id) ?? null) })}\n`);
  else write(`${ids.join(' ')}\n`);
}
