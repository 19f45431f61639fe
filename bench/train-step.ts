// One training step (forward + backward + AdamW) of `mgllava train`, measured in its own
// process: the step graph (src/train/step-graph.ts) on a fixed batch, then clipping and AdamW, for
// stage 1 (fuse_module, projector, bbox_projector learn) or stage 2 (the LLM too). The frozen
// encoders' outputs are fixed random tensors of their real shapes (the encoders do not learn, and
// their cost is the vision bench's). The batch is the bench workload's prompt: 576 image tokens,
// `promptBoxes` box tokens and text around the image, the last 10 text tokens labelled; written to
// `inputsFile` for the PyTorch peer (bench/peer_torch_train.py) to run the same batch.

import { resolveModelFiles } from '../src/model/model-files.js';
import { loadTrainModel, StepRunner } from '../src/train/step-runner.js';
import { batchFeeds } from '../src/train/batch.js';
import { AdamW, clipGradNorm } from '../src/train/optimizer.js';
import { trainableSelector } from '../src/train/trainer.js';
import { IMAGE_TOKEN_INDEX, IGNORE_INDEX } from '../src/train/labels.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { seededRandom } from '../src/generate/sampling.js';
import { Workload } from './presets.js';

export interface TrainTimes {
  stage: 1 | 2;
  /** Median of the timed steps (after one warm-up step), seconds. */
  step_s: number;
  steps_s: number[];
  /** The step graph's build + session creation, seconds. */
  load_s: number;
  trainable_params: number;
  seq: number;
  peak_rss_bytes: number;
  loss: number;
}

export interface TrainJob {
  kind: 'ours-train';
  model: string;
  llm: string;
  stage: 1 | 2;
  threads: number;
  workload: Workload;
  inputsFile: string;
  steps: number;
}

export async function measureOursTrain(job: TrainJob): Promise<TrainTimes> {
  const files = resolveModelFiles({ model: job.model, llm: job.llm });
  const model = await loadTrainModel(files, { threads: job.threads });
  const sh = model.shapes;
  // A fixed pseudo-random sequence (mulberry32), the same on every run.
  const r = seededRandom(11);
  const randn = (n: number, scale: number) => Float32Array.from({ length: n }, () => (2 * r() - 1) * scale);
  const N = sh.grid * sh.grid;
  const w = job.workload;
  const textCount = w.promptTokens - N - w.promptBoxes;
  const before = Math.floor(textCount / 3);
  const text = Array.from({ length: textCount }, () => 3 + Math.floor(r() * (model.llmConfig.vocabSize - 3)));
  const inputIds = [...text.slice(0, before), IMAGE_TOKEN_INDEX, ...text.slice(before)];
  const labels = inputIds.map((id, i) => (i >= inputIds.length - 10 ? id : IGNORE_INDEX));
  const features = {
    lowRes: { dims: [N, sh.clipWidth], data: randn(N * sh.clipWidth, 1) },
    highRes: { dims: [sh.convWidth, sh.grid, sh.grid], data: randn(sh.convWidth * N, 1) },
    boxFeats: { dims: [w.promptBoxes, sh.boxWidth], data: randn(w.promptBoxes * sh.boxWidth, 1) },
  };
  writeSafetensors(job.inputsFile, [
    { name: 'low_res_feat', dtype: 'F32', shape: [1, N, sh.clipWidth], data: features.lowRes.data },
    { name: 'high_feat', dtype: 'F32', shape: [1, sh.convWidth, sh.grid, sh.grid], data: features.highRes.data },
    { name: 'box_feats', dtype: 'F32', shape: [w.promptBoxes, sh.boxWidth], data: features.boxFeats.data },
    { name: 'input_ids', dtype: 'I64', shape: [inputIds.length], data: new Uint8Array(BigInt64Array.from(inputIds, BigInt).buffer) },
    { name: 'labels', dtype: 'I64', shape: [labels.length], data: new Uint8Array(BigInt64Array.from(labels, BigInt).buffer) },
  ]);
  const feeds = batchFeeds([{ inputIds, labels, features }], N);

  const t0 = performance.now();
  const runner = new StepRunner(model, trainableSelector(job.stage), job.threads);
  const values = runner.initialValues();
  const adam = new AdamW();
  const step = async () => {
    const res = await runner.run(feeds, values);
    clipGradNorm(res.grads, 1);
    adam.step(values, res.grads, 1e-5);
    return res.loss;
  };
  let loss = await step(); // builds the session, then the warm-up step
  const load = (performance.now() - t0) / 1000;
  const times: number[] = [];
  for (let i = 0; i < job.steps; i++) {
    const s = performance.now();
    loss = await step();
    times.push((performance.now() - s) / 1000);
  }
  await runner.release();
  const sorted = [...times].sort((a, b) => a - b);
  return {
    stage: job.stage,
    step_s: sorted[Math.floor(sorted.length / 2)]!,
    steps_s: times,
    load_s: load - times[0]!,
    trainable_params: [...values.values()].reduce((a, v) => a + v.length, 0),
    seq: feeds.seq,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    loss,
  };
}
