// Loaded into every test process (`node --test --import`): the packed-weights cache
// (src/runtime/packed-cache.ts) goes to one temporary folder per `npm test` run, never to the
// user's ~/.cache. The runner's process makes it and removes it at exit; the test files' processes
// inherit it through the environment.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

if (!process.env.MGLLAVA_TEST_CACHE_DIR) {
  const dir = mkdtempSync(join(tmpdir(), 'mgllava-test-cache-'));
  process.env.MGLLAVA_TEST_CACHE_DIR = dir;
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
}
process.env.MGLLAVA_CACHE_DIR = process.env.MGLLAVA_TEST_CACHE_DIR;
