// `mgllava train`: parse, call src/train/trainer.ts, report. A progress line per iteration with
// the loss, learning rate, tokens/s and ETA on stderr (live on a terminal); --json prints one JSON
// object per iteration on stdout instead.

import { StepReport, train } from '../train/trainer.js';
import { ScheduleKind } from '../train/schedule.js';
import { InputError } from '../core/errors.js';
import { Progress } from './progress.js';
import { dirname, resolve } from 'node:path';
import { exportXtuner } from '../train/export-xtuner.js';
import { resolveModelFiles } from '../model/model-files.js';
import { openWeights } from '../weights/open.js';
import { readBytes } from '../weights/types.js';
import { writeTorchCheckpoint } from '../weights/write-torch.js';

export interface TrainArgs {
  stage: 1 | 2;
  model?: string;
  checkpoint?: string;
  llm?: string;
  visualEncoder?: string;
  visualEncoderAux?: string;
  data: string;
  imageFolder?: string;
  boxes?: string;
  out: string;
  epochs?: number;
  maxSteps?: number;
  batchSize: number;
  gradAccum: number;
  lr?: number;
  lrSchedule: ScheduleKind;
  warmupRatio: number;
  maxGradNorm: number;
  weightDecay: number;
  trainable?: string[];
  lora?: number;
  loraAlpha?: number;
  seed: number;
  saveEvery?: number;
  resume?: string;
  saveFirstGrads?: string;
  template?: string;
  threads?: number;
  exportXtuner?: string;
  featureCache?: string;
  json?: boolean;
  quiet?: boolean;
}

/**
 * XTuner loads `pretrained_pth` with torch.load: a safetensors checkpoint (ours, after `mgllava
 * train --stage 1`) is written beside the export folder as a torch file, `<export>.pretrained.pth`.
 */
function torchCheckpointFor(checkpoint: string, exportDir: string, quiet?: boolean): string {
  if (!/\.safetensors$|\.safetensors\.index\.json$/.test(checkpoint)) return checkpoint;
  const out = `${resolve(exportDir)}.pretrained.pth`;
  const store = openWeights(checkpoint);
  writeTorchCheckpoint(out, store.keys().map((k) => {
    const t = store.get(k)!;
    if (t.dtype !== 'F32' && t.dtype !== 'BF16' && t.dtype !== 'F16') throw new InputError(`${checkpoint}: tensor ${k} is ${t.dtype}; a checkpoint for XTuner holds float tensors`, checkpoint);
    return { name: k, dtype: t.dtype, shape: t.shape, data: readBytes(t) };
  }));
  if (!quiet) process.stderr.write(`wrote ${out} (${checkpoint} as a torch file, for XTuner's pretrained_pth)\n`);
  return out;
}

/** --export-xtuner: the same job as the release's XTuner config and data files, instead of training here. */
function runExport(a: TrainArgs, bundledModel: string | undefined): void {
  const files = resolveModelFiles({ model: a.model ?? bundledModel, checkpoint: a.checkpoint, llm: a.llm, visualEncoder: a.visualEncoder, visualEncoderAux: a.visualEncoderAux });
  if (!files.llm) throw new InputError('no LLM folder: set "llm" in mgllava_config.json or pass --llm', '--llm');
  if (a.lrSchedule !== 'cosine') throw new InputError('--export-xtuner: the release\'s configs schedule cosine only (drop --lr-schedule constant)', '--lr-schedule');
  const r = exportXtuner({
    out: a.exportXtuner!,
    stage: a.stage,
    llm: files.llm,
    visualEncoder: files.visualEncoder,
    visualEncoderAux: files.visualEncoderAux,
    template: a.template ?? files.promptTemplate,
    data: a.data,
    imageFolder: a.imageFolder ?? dirname(resolve(a.data)),
    boxes: a.boxes,
    // Stage 2 starts from the model's checkpoint (stage 1's), which XTuner reads with torch.load.
    pretrainedCheckpoint: a.stage === 2 ? torchCheckpointFor(files.checkpoint, a.exportXtuner!, a.quiet) : undefined,
    epochs: a.epochs,
    maxSteps: a.maxSteps,
    batchSize: a.batchSize,
    gradAccum: a.gradAccum,
    lr: a.lr ?? (a.stage === 1 ? 1e-3 : 2e-5),
    warmupRatio: a.warmupRatio,
    maxGradNorm: a.maxGradNorm,
    weightDecay: a.weightDecay,
    seed: a.seed,
    saveEvery: a.saveEvery,
    lora: a.lora === undefined ? undefined : { r: a.lora, alpha: a.loraAlpha ?? a.lora },
  });
  if (!a.quiet) process.stderr.write(`wrote ${r.dir}: ${r.config}, ${r.samples} samples; run it on a GPU cluster with:\n  ${r.command}\n`);
}

function clock(ms: number): string {
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

function stepLine(r: StepReport): string {
  const width = 20;
  const fill = Math.round((r.step / r.total) * width);
  const tps = r.tokensPerSecond >= 1000 ? `${(r.tokensPerSecond / 1000).toFixed(1)}k` : r.tokensPerSecond.toFixed(0);
  return `train [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${r.step}/${r.total} loss ${r.loss.toFixed(4)} lr ${r.lr.toExponential(2)} ${tps} tok/s ETA ${clock(r.etaMs)}`;
}

export async function runTrain(a: TrainArgs, bundledModel: string | undefined): Promise<void> {
  if (a.exportXtuner) {
    if (a.resume || a.saveFirstGrads || a.trainable?.length) throw new InputError('--export-xtuner writes the job for XTuner; --resume, --save-first-grads and --trainable apply to training here', '--export-xtuner');
    return runExport(a, bundledModel);
  }
  if (a.loraAlpha !== undefined && a.lora === undefined) throw new InputError('--lora-alpha needs --lora', '--lora-alpha');
  if (a.epochs !== undefined && a.maxSteps !== undefined) throw new InputError('give --epochs or --max-steps, not both', '--max-steps');
  const progress = new Progress(!a.quiet);
  const tty = Boolean(process.stderr.isTTY);
  let lastLineAt = 0;
  const onStep = (r: StepReport) => {
    if (a.json) {
      process.stdout.write(JSON.stringify({
        step: r.step, total: r.total, epoch: r.epoch, loss: r.loss, lr: r.lr,
        grad_norm: r.gradNorm ?? null, tokens_per_s: r.tokensPerSecond, elapsed_ms: r.elapsedMs, eta_ms: r.etaMs,
      }) + '\n');
    }
    if (a.quiet) return;
    if (tty) {
      process.stderr.write(`\r\x1b[2K${stepLine(r).slice(0, (process.stderr.columns ?? 120) - 1)}${r.step === r.total ? '\n' : ''}`);
    } else if (!a.json) {
      // Logs: every iteration of a short run, about fifty lines of a long one.
      const every = Math.max(1, Math.floor(r.total / 50));
      if (r.step === r.total || r.step - lastLineAt >= every) {
        process.stderr.write(stepLine(r) + '\n');
        lastLineAt = r.step;
      }
    }
  };
  const result = await train({
    stage: a.stage,
    model: { model: a.model ?? bundledModel, checkpoint: a.checkpoint, llm: a.llm, visualEncoder: a.visualEncoder, visualEncoderAux: a.visualEncoderAux },
    data: a.data,
    imageFolder: a.imageFolder,
    boxes: a.boxes,
    out: a.out,
    epochs: a.epochs,
    maxSteps: a.maxSteps,
    batchSize: a.batchSize,
    gradAccum: a.gradAccum,
    lr: a.lr,
    schedule: a.lrSchedule,
    warmupRatio: a.warmupRatio,
    maxGradNorm: a.maxGradNorm,
    weightDecay: a.weightDecay,
    trainable: a.trainable,
    lora: a.lora === undefined ? undefined : { r: a.lora, alpha: a.loraAlpha ?? a.lora },
    seed: a.seed,
    saveEvery: a.saveEvery,
    resume: a.resume,
    saveFirstGrads: a.saveFirstGrads,
    template: a.template,
    threads: a.threads,
    featureCache: a.featureCache,
    onStep,
    onNote: a.quiet ? undefined : (m) => process.stderr.write(`mgllava: note: ${m}\n`),
    onPhase: (label, work) => progress.step(label, work),
  });
  if (!a.quiet) process.stderr.write(`wrote ${result.out} after ${result.steps} iterations (last loss ${result.lastLoss.toFixed(4)}); chat with it: mgllava chat --model ${result.out}\n`);
}
