// `mgllava synth`: a synthetic shapes data set (training data for both stages, boxes, and
// evaluation TSVs) from a seed; see src/synth/write.ts for the layout.

import { writeSynth, type SynthOptions } from '../synth/write.js';
import { Progress } from './progress.js';

/** The writer's options as the command line gives them, plus the output switches. */
export type SynthArgs = Omit<SynthOptions, 'signal' | 'onProgress'> & { json?: boolean; quiet?: boolean };

export async function runSynth(a: SynthArgs, write: (s: string) => void = (s) => process.stdout.write(s)): Promise<void> {
  const progress = new Progress(!a.quiet);
  const bars = { train: progress.bar('training images'), eval: progress.bar('evaluation images') };
  const state: { phase: 'train' | 'eval' | null } = { phase: null };
  const t0 = performance.now();
  // Ctrl-C / kill: stop between images so the partial folder is removed.
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const { json: _json, quiet: _quiet, ...options } = a;
    const r = await writeSynth({
      ...options, signal: ac.signal,
      onProgress: (p, done, total) => {
        if (state.phase !== p && state.phase) bars[state.phase].end(true);
        state.phase = p;
        bars[p].update(done, total);
      },
    });
    if (state.phase) bars[state.phase].end(true);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    if (a.json) write(`${JSON.stringify({ ...r, seconds: Number(secs) })}\n`);
    else {
      const ev = r.evalImages ? `, ${r.evalImages} eval images (mcq.tsv ${r.mcqRows} rows, pope.tsv ${r.popeRows}, vqa.tsv ${r.vqaRows})` : '';
      write(`synth: ${r.images} images, ${r.stage2Questions} stage-2 questions${ev} in ${r.out} (${secs} s)\n`);
    }
  } catch (e) {
    if (state.phase) bars[state.phase].end(false);
    throw e;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
