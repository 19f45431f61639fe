// `mgllava pull --preset NAME --out DIR [--quantize 4|8]`: every part of a released MG-LLaVA from
// the Hub (src/hub/preset-pull.ts) and a model folder that `chat --model DIR` loads. Progress on
// stderr as for `pull REPO_ID`; the last line on stdout is the model folder.

import { pullPreset } from '../hub/preset-pull.js';
import { NBits } from '../weights/nbits.js';
import { formatBytes, progressLine } from './pull.js';
import { noteOnStderr } from './progress.js';

export interface PullPresetArgs {
  preset: string;
  out: string;
  quantize?: NBits;
  cacheDir?: string;
  json?: boolean;
  quiet?: boolean;
}

export async function runPullPreset(a: PullPresetArgs): Promise<void> {
  const err = process.stderr;
  const tty = Boolean(err.isTTY) && !a.quiet;
  const t0 = performance.now();
  let lastDraw = 0;
  const r = await pullPreset({
    preset: a.preset,
    out: a.out,
    quantize: a.quantize,
    cacheDir: a.cacheDir,
    onNote: noteOnStderr(a.quiet),
    onRepo: (repo, what) => {
      if (!a.quiet) err.write(`${tty ? '\r\x1b[2K' : ''}${what}: ${repo}\n`);
    },
    onProgress: (p) => {
      if (!tty) return;
      const now = performance.now();
      if (p.fileDone < p.fileTotal && now - lastDraw < 100) return;
      lastDraw = now;
      err.write(`\r\x1b[2K${progressLine(p, (now - t0) / 1000).slice(0, Math.max((err.columns || 100) - 1, 20))}`);
    },
  });
  if (tty) err.write('\r\x1b[2K');
  if (!a.quiet) {
    const bytes = r.pulls.reduce((s, p) => s + p.bytes, 0);
    err.write(`wrote ${r.out}: ${r.pulls.length} repositories, ${formatBytes(bytes)} downloaded in ${((performance.now() - t0) / 1000).toFixed(1)} s; chat with it: mgllava chat --model ${r.out}\n`);
  }
  process.stdout.write(a.json ? `${JSON.stringify({ preset: a.preset, path: r.out, parts: r.parts })}\n` : `${r.out}\n`);
}
