// Assertions on the errors users see.

import assert from 'node:assert/strict';
import { InputError } from '../../src/core/errors.js';

/** `fn` throws an InputError whose message is one line matching `re`. */
export function assertInputError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, re);
    return true;
  });
}
