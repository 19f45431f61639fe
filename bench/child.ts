// One measurement in its own process, so that its peak RSS and its timings are its own:
//   node dist/bench/child.js '<job JSON>'
// prints one JSON line with the result on stdout (progress and engine logs go to stderr).

import { measureBandwidth } from './bandwidth.js';
import { measureOursLlm, measureOursVision, packOurs } from './measure-ours.js';
import { measureLlamaCpp } from './peer-llamacpp.js';
import { Workload } from './presets.js';
import { TrainJob, measureOursTrain } from './train-step.js';
import { QualityOptions, formatQuality } from './format-quality.js';
import { promptIds, promptLayout } from './workload.js';

export type Job =
  | { kind: 'bandwidth'; threads: number; bytes: number }
  | { kind: 'ours-vision'; model: string; image: string; threads: number; workload: Workload; inputsFile: string; packedCache: string }
  | { kind: 'ours-llm'; llm: string; threads: number; workload: Workload; packedCache: string | false }
  | { kind: 'ours-pack'; model?: string; llm?: string; threads: number; packedCache: string }
  | { kind: 'llamacpp'; dir: string; gguf: string; vocab: number; threads: number; workload: Workload; flashAttention: boolean }
  | { kind: 'quality'; options: Omit<QualityOptions, 'ids' | 'log'>; vocab: number; workload: Workload }
  | TrainJob;

async function run(job: Job): Promise<unknown> {
  switch (job.kind) {
    case 'bandwidth': return measureBandwidth(job.threads, job.bytes);
    case 'ours-vision': return measureOursVision(job.model, job.image, job.threads, job.workload, job.inputsFile, job.packedCache);
    case 'ours-llm': return measureOursLlm(job.llm, job.threads, job.workload, job.packedCache);
    case 'ours-pack': return packOurs(job);
    case 'llamacpp': return measureLlamaCpp(job.dir, job.gguf, job.vocab, job.threads, job.workload, job.flashAttention);
    case 'ours-train': return measureOursTrain(job);
    case 'quality': return formatQuality({
      ...job.options, ids: promptIds(promptLayout(job.workload, job.vocab), job.vocab), log: (m) => process.stderr.write(`  ${m}\n`),
    });
  }
}

try {
  const result = await run(JSON.parse(process.argv[2] ?? '') as Job);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0); // native libraries may hold handles open
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
}
