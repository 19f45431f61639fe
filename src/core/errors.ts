// Errors a user can cause and fix (a bad path, a corrupt file, a wrong argument). The CLI prints
// their message as one line and exits non-zero; anything else is a bug and keeps its stack.

export class InputError extends Error {
  override readonly name = 'InputError';
  /** The file or argument at fault, when there is one. */
  readonly subject?: string;
  constructor(message: string, subject?: string) {
    super(message);
    this.subject = subject;
  }
}
