// The CLI's packed-cache flags and its malloc re-run: `--packed-cache DIR` writes the entries
// there and the next run maps them with the same answer; a folder that cannot be written gives
// a one-line note (none with --quiet) and the same answer; `--no-packed-cache` writes nothing.
// tunedMallocEnv: when the CLI runs itself again, and with what.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY } from '../helpers/fixtures.js';
import { tempDir } from '../weights/torch-builders.js';
import { mgllava } from '../helpers/cli.js';
import { MALLOC_TUNABLES, TUNED_MARK, tunedMallocEnv } from '../../src/cli/malloc-tuning.js';

let tmp: string;
before(() => (tmp = tempDir()));
after(() => rmSync(tmp, { recursive: true, force: true }));

const ask = (...flags: string[]) => mgllava(['chat', '--model', join(TINY, 'mgllava'), '--image', join(TINY, 'example.jpg'), '--boxes', join(TINY, 'boxes_raw.json'),
  '--max-new-tokens', '4', '--temperature', '0', '--json', ...flags, 'What is shown in this image?']);
const ids = (stdout: string) => (JSON.parse(stdout) as { ids: number[] }).ids;

test('--packed-cache DIR: the first run writes the vision entries there, the second maps them; same answer', async () => {
  const dir = join(tmp, 'packed');
  const first = await ask('--packed-cache', dir);
  assert.equal(first.code, 0, first.stderr);
  const entries = readdirSync(dir).filter((d) => !d.startsWith('.'));
  assert.ok(entries.some((d) => d.startsWith('vision_encoder-')), entries.join(', '));
  assert.ok(entries.some((d) => d.startsWith('object_features-')), entries.join(', '));
  const second = await ask('--packed-cache', dir);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(ids(second.stdout), ids(first.stdout));
  assert.deepEqual(readdirSync(dir).filter((d) => !d.startsWith('.')).sort(), entries.sort());
  assert.doesNotMatch(second.stderr, /note:/);
});

test('a cache folder that cannot be written: one note per graph on stderr, the same answer; --quiet hides it', async () => {
  const blocker = join(tmp, 'a-file');
  writeFileSync(blocker, 'x');
  const r = await ask('--packed-cache', join(blocker, 'cache'));
  assert.equal(r.code, 0, r.stderr);
  const notes = r.stderr.split('\n').filter((l) => l.startsWith('mgllava: note: '));
  assert.ok(notes.length >= 1);
  for (const n of notes) assert.match(n, /cannot write the packed-weights cache in .*a-file\/cache/);
  assert.deepEqual(ids(r.stdout), ids((await ask('--no-packed-cache')).stdout));
  const quiet = await ask('--packed-cache', join(blocker, 'cache'), '--quiet');
  assert.equal(quiet.code, 0);
  assert.equal(quiet.stderr, '');
});

test('--no-packed-cache writes nothing', async () => {
  const dir = join(tmp, 'unused');
  const r = await ask('--packed-cache', dir, '--no-packed-cache'); // the last flag wins
  assert.equal(r.code, 0, r.stderr);
  assert.equal(existsSync(dir), false);
});

test('tunedMallocEnv: adds the malloc tunables once, keeps other tunables, leaves a user choice alone', () => {
  if (!tunedMallocEnv({})) return; // not glibc Linux: the CLI never re-runs (nothing to check)
  const env = tunedMallocEnv({ PATH: '/bin' })!;
  assert.equal(env.GLIBC_TUNABLES, MALLOC_TUNABLES);
  assert.equal(env[TUNED_MARK], '1');
  assert.equal(env.PATH, '/bin');
  assert.equal(tunedMallocEnv(env), undefined, 'the re-run process does not re-run again');
  assert.equal(tunedMallocEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }), undefined);
  assert.equal(tunedMallocEnv({ GLIBC_TUNABLES: 'glibc.cpu.hwcaps=-AVX' })!.GLIBC_TUNABLES, `glibc.cpu.hwcaps=-AVX:${MALLOC_TUNABLES}`);
});
