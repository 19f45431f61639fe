// glibc's malloc, tuned for onnxruntime, by running the CLI again with GLIBC_TUNABLES set (glibc
// reads them once, at process start, so Node cannot change them for itself).
//
// Why: loading pre-packed weights from the packed cache, onnxruntime reads each weight into a
// zero-filled scratch buffer, packs it to check the saved copy, and frees both (3.3 GB of 4-bit
// weights in all for a 7B model). Each buffer is above glibc's mmap threshold, so each is fresh
// memory from the kernel, faulted in page by page: on the development VM (page faults at
// ~200 MB/s) that was 16-20 s of a 7B load. With a 64 MiB threshold and freed memory kept up to 256 MiB, the same
// pages are reused: the load took 5.5 s (docs/BENCHMARKS.md). `hugetlb=1` (glibc 2.35+; older
// ones ignore it) has malloc ask for transparent huge pages on what it maps (madvise), one fault
// per 2 MiB instead of per 4 KiB: first writes into fresh memory went from ~300 MiB/s to ~12
// GiB/s on the same VM once the huge pages had been used, which is what a prefill's new
// activations, KV rows and output copies are. Library users can set the same variable before
// starting Node.

import { spawn } from 'node:child_process';

export const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456:glibc.malloc.hugetlb=1';
/** Set in the re-run process (so it does not re-run again); set it yourself to opt out. */
export const TUNED_MARK = 'MGLLAVA_MALLOC_TUNED';

function isGlibc(): boolean {
  if (process.platform !== 'linux') return false;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return typeof header?.glibcVersionRuntime === 'string';
}

/** The environment to run the CLI again with, or undefined when this process should just go on. */
export function tunedMallocEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv | undefined {
  if (env[TUNED_MARK] || (env.GLIBC_TUNABLES ?? '').includes('glibc.malloc.')) return undefined;
  if (!isGlibc()) return undefined;
  const tunables = env.GLIBC_TUNABLES ? `${env.GLIBC_TUNABLES}:${MALLOC_TUNABLES}` : MALLOC_TUNABLES;
  return { ...env, GLIBC_TUNABLES: tunables, [TUNED_MARK]: '1' };
}

/**
 * Runs this same command in a child with `env`, stdio shared, and resolves with its exit code.
 * A terminal's Ctrl-C reaches the child directly (same process group); SIGTERM and SIGHUP sent
 * to this process are passed on. A child killed by a signal kills this process the same way.
 */
export function rerun(env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env });
    const pass = (sig: NodeJS.Signals) => () => child.kill(sig);
    const handlers: [NodeJS.Signals, () => void][] = [['SIGINT', () => {}], ['SIGTERM', pass('SIGTERM')], ['SIGHUP', pass('SIGHUP')]];
    for (const [s, h] of handlers) process.on(s, h);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      if (signal) process.kill(process.pid, signal);
      resolve(code ?? 1);
    });
  });
}
