// Step-by-step progress on stderr: a live line with a spinner and elapsed time on a terminal,
// plain "step ... done (1.2 s)" lines otherwise (logs, CI), nothing with --quiet. Long loops over
// countable items (tensors) get a bar: live on a terminal, a line per tenth otherwise.

import { InputError } from '../core/errors.js';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export class Progress {
  private readonly tty: boolean;

  constructor(private readonly enabled: boolean, private readonly out: NodeJS.WriteStream = process.stderr) {
    this.tty = Boolean(out.isTTY);
  }

  /** Run `work` as one named step and report how long it took. */
  async step<T>(label: string, work: () => Promise<T> | T): Promise<T> {
    if (!this.enabled) return work();
    const t0 = performance.now();
    const secs = () => ((performance.now() - t0) / 1000).toFixed(1);
    let frame = 0;
    let timer: NodeJS.Timeout | undefined;
    if (this.tty) {
      const draw = () => this.out.write(`\r\x1b[2K${FRAMES[frame++ % FRAMES.length]} ${label} ${secs()} s`);
      draw();
      timer = setInterval(draw, 100);
      timer.unref();
    }
    try {
      const r = await work();
      this.finish(label, `done (${secs()} s)`);
      return r;
    } catch (e) {
      // A user mistake is told in one line of its own (the CLI's contract): no "failed" line.
      if (e instanceof InputError) {
        if (this.tty) this.out.write('\r\x1b[2K');
      } else {
        this.finish(label, 'failed');
      }
      throw e;
    } finally {
      if (timer) clearInterval(timer);
    }
  }

  private finish(label: string, status: string): void {
    this.out.write(`${this.tty ? '\r\x1b[2K' : ''}${label} ... ${status}\n`);
  }

  /** A bar for a step made of countable items; `update` after each, then `end`. */
  bar(label: string): ProgressBar {
    return new ProgressBar(label, this.enabled, this.tty, this.out);
  }
}

export class ProgressBar {
  private readonly t0 = performance.now();
  private lastTenth = 0;
  private lastDraw = 0;
  private started = false;

  constructor(
    private readonly label: string,
    private readonly enabled: boolean,
    private readonly tty: boolean,
    private readonly out: NodeJS.WriteStream,
  ) {}

  private secs(): string {
    return ((performance.now() - this.t0) / 1000).toFixed(1);
  }

  /** `done` of `total` items finished, the last one being `item`. */
  update(done: number, total: number, item = ''): void {
    if (!this.enabled || total <= 0) return;
    this.started = true;
    if (this.tty) {
      const now = performance.now();
      if (done < total && now - this.lastDraw < 50) return; // at most 20 redraws a second
      this.lastDraw = now;
      const width = 24;
      const fill = Math.round((done / total) * width);
      const cols = this.out.columns ?? 100;
      const line = `${this.label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${done}/${total} ${this.secs()} s ${item}`;
      this.out.write(`\r\x1b[2K${line.slice(0, Math.max(cols - 1, 20))}`);
    } else {
      const tenth = Math.floor((done / total) * 10);
      if (tenth > this.lastTenth) {
        this.lastTenth = tenth;
        this.out.write(`${this.label}: ${tenth * 10}% (${done}/${total}, ${this.secs()} s${item ? `, ${item}` : ''})\n`);
      }
    }
  }

  /** Close the bar with "done" or "failed" ("failed" only once something was counted). */
  end(ok: boolean): void {
    if (!this.enabled || (!ok && !this.started)) return;
    this.out.write(`${this.tty ? '\r\x1b[2K' : ''}${this.label} ... ${ok ? `done (${this.secs()} s)` : 'failed'}\n`);
  }
}

/** A one-line note on stderr ("mgllava: note: ..."), or nothing with --quiet. */
export function noteOnStderr(quiet: boolean | undefined): ((message: string) => void) | undefined {
  return quiet ? undefined : (message) => process.stderr.write(`mgllava: note: ${message}\n`);
}
