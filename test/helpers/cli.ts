// Runs the built `mgllava` command as a user would, capturing exit code, stdout and stderr.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { ROOT } from './fixtures.js';

export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const run = promisify(execFile);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function mgllava(args: string[]): Promise<CliResult> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { maxBuffer: 1 << 26 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as CliResult;
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** A user mistake: non-zero exit, exactly one `mgllava: ...` line on stderr matching `error`, nothing on stdout. */
export function assertOneLineError(r: CliResult, error: RegExp): void {
  assert.notEqual(r.code, 0);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^mgllava: /);
  assert.doesNotMatch(lines[0]!, /internal error/);
  assert.match(lines[0]!, error);
  assert.equal(r.stdout, '');
}
