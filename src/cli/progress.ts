// Step-by-step progress on stderr: a live line with a spinner and elapsed time on a terminal,
// plain "step ... done (1.2 s)" lines otherwise (logs, CI), nothing with --quiet.

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
      this.finish(label, 'failed');
      throw e;
    } finally {
      if (timer) clearInterval(timer);
    }
  }

  private finish(label: string, status: string): void {
    this.out.write(`${this.tty ? '\r\x1b[2K' : ''}${label} ... ${status}\n`);
  }
}
