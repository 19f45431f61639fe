// `mgllava pull REPO_ID`: a model repository from the Hugging Face Hub into the cache shared with
// Python's huggingface_hub (src/hub). Progress on stderr (a live bar with bytes, speed and ETA on a
// terminal, a line per file otherwise, nothing with --quiet); the last line on stdout is the
// snapshot folder, or with --json one object {repo, revision, commit, path, files}.

import { pull, PullProgress } from '../hub/client.js';
import { noteOnStderr } from './progress.js';

export interface PullArgs {
  revision?: string;
  include?: string[];
  cacheDir?: string;
  json?: boolean;
  quiet?: boolean;
}

/** 1536 -> "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

/** 75 -> "1m15s". */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  if (s < 60) return `${Math.ceil(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** The live line for a terminal: file, its bar and bytes, overall speed and ETA. */
export function progressLine(p: PullProgress, elapsedS: number, width = 24): string {
  const frac = p.fileTotal > 0 ? Math.min(p.fileDone / p.fileTotal, 1) : 1;
  const fill = Math.round(frac * width);
  const speed = elapsedS > 0 ? p.done / elapsedS : 0;
  const eta = speed > 0 ? (p.total - p.done) / speed : Number.NaN;
  return `[${p.filesDone + 1}/${p.files}] ${p.file} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${formatBytes(p.fileDone)}/${formatBytes(p.fileTotal)}`
    + ` | all ${formatBytes(p.done)}/${formatBytes(p.total)} ${formatBytes(speed)}/s ETA ${formatDuration(eta)}`;
}

export async function runPull(repoId: string, a: PullArgs): Promise<void> {
  const err = process.stderr;
  const tty = Boolean(err.isTTY) && !a.quiet;
  const t0 = performance.now();
  let tDownload: number | undefined; // the speed counts from the first byte asked for
  let lastDraw = 0;
  let live = false;
  const clear = () => {
    if (live) err.write('\r\x1b[2K');
    live = false;
  };
  const secs = (from: number) => (performance.now() - from) / 1000;
  try {
    const r = await pull({
      repoId,
      revision: a.revision,
      include: a.include,
      cacheDir: a.cacheDir,
      onNote: noteOnStderr(a.quiet),
      onProgress: (p) => {
        tDownload ??= performance.now();
        if (!tty) return;
        const now = performance.now();
        if (p.fileDone < p.fileTotal && now - lastDraw < 100) return; // at most 10 redraws a second
        lastDraw = now;
        const cols = err.columns || 100;
        err.write(`\r\x1b[2K${progressLine(p, secs(tDownload)).slice(0, Math.max(cols - 1, 20))}`);
        live = true;
      },
      onFile: (file, status, size) => {
        if (a.quiet) return;
        clear();
        const what = status === 'downloaded' ? 'downloaded' : status === 'linked' ? 'linked to a cached blob' : 'cached';
        err.write(`${file} (${formatBytes(size)}): ${what}\n`);
      },
    });
    clear();
    if (!a.quiet) {
      const took = secs(t0);
      const rate = r.bytes > 0 && tDownload !== undefined ? `, ${formatBytes(r.bytes / Math.max(secs(tDownload), 1e-3))}/s` : '';
      const how = r.offline ? ' from the cache only' : '';
      err.write(`${repoId} at ${r.commit}${how}: ${r.files.length} files, ${r.downloaded} downloaded (${formatBytes(r.bytes)}) in ${took.toFixed(1)} s${rate}\n`);
    }
    if (a.json) {
      process.stdout.write(`${JSON.stringify({ repo: r.repo, revision: r.revision, commit: r.commit, path: r.path, files: r.files })}\n`);
    } else {
      process.stdout.write(`${r.path}\n`);
    }
  } catch (e) {
    clear();
    throw e;
  }
}
