// A copy of the tiny LLM folder whose context holds an 8-frame video prompt (~4.8k positions;
// the fixture's max_position_embeddings is 2048), same weights, under `dir`.

import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY } from './fixtures.js';

export function longContextLlm(dir: string): string {
  const llm = join(dir, 'llm');
  cpSync(join(TINY, 'llm'), llm, { recursive: true });
  const cfgPath = join(llm, 'config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, max_position_embeddings: 8192 }));
  return llm;
}
