// The training loop of `mgllava train`: the release's two stages (DESIGN.md s7) on our graphs.
// Per iteration (one batch of `batchSize` samples, what XTuner counts as an iteration): the
// frozen encoders' features (once per image per run), the step graph's loss and gradients, then
// every `gradAccum` iterations an update: clip_grad_norm_ (max-norm), AdamW at the schedule's
// lr for that iteration (mmengine steps the schedule every iteration). The output folder is a
// model folder that `mgllava chat --model OUT` loads, and a checkpoint that `--resume` continues
// exactly: the weights, the optimiser moments, the iteration, the data order (a function of
// the seed and the epoch).

import { resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { decodeImage } from '../preprocess/decode.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { getTemplate } from '../tokenizer/templates.js';
import { ModelSpec, resolveModelFiles } from '../model/model-files.js';
import { statSync } from 'node:fs';
import { OverlayStore } from '../weights/types.js';
import { writeSafetensors } from '../weights/write-safetensors.js';
import { LoraSettings, MemoryStore, initLora, loraTargets } from './lora.js';
import { ADAPTER_FILE, LORA_TENSOR, LoraState, readAdapters, saveCheckpoint } from './output-folder.js';
import { loadTrainData, TrainSample } from './data.js';
import { batchFeeds } from './batch.js';
import { StepRunner, loadTrainModel } from './step-runner.js';
import { readLlmFolderConfig } from '../model/llm/causal-lm.js';
import { AdamW, accumulationLossFactor, accumulationShouldUpdate, GradAccumulator, clipGradNorm } from './optimizer.js';
import { ScheduleKind, learningRate, warmupIterations } from './schedule.js';
import { epochOrder } from './rng.js';
import { checkpointTargetOk, readCheckpoint } from './checkpoint.js';

export interface TrainOptions {
  stage: 1 | 2;
  model: ModelSpec;
  data: string;
  imageFolder?: string;
  boxes?: string;
  out: string;
  /** Epochs (default 1), unless maxSteps is given. */
  epochs?: number;
  /** Iterations in all (overrides epochs). */
  maxSteps?: number;
  batchSize?: number;
  gradAccum?: number;
  /** Default: the release's 1e-3 (stage 1) or 2e-5 (stage 2). */
  lr?: number;
  schedule?: ScheduleKind;
  warmupRatio?: number;
  /** 0 = no clipping. */
  maxGradNorm?: number;
  weightDecay?: number;
  /** LoRA adapters on the LLM's linear layers (the LLM itself stays frozen). */
  lora?: LoraSettings;
  /** Extra trainable tensors: comma-free patterns over release names, `*` any run of characters. */
  trainable?: readonly string[];
  seed?: number;
  /** Write the checkpoint every N iterations (at the next update), besides at the end. */
  saveEvery?: number;
  /** A checkpoint folder written by an earlier run with the same settings. */
  resume?: string;
  /** Write the first update's raw gradients (before clipping and the update) here. */
  saveFirstGrads?: string;
  template?: string;
  threads?: number;
  /** Keep the frozen encoders' outputs in this folder, for later runs on the same images. */
  featureCache?: string;
  onStep?: (s: StepReport) => void;
  onNote?: (message: string) => void;
  /** Told of slow set-up phases (loading, data). */
  onPhase?: <T>(label: string, work: () => Promise<T>) => Promise<T>;
}

export interface StepReport {
  /** Iterations done (1-based), of `total`. */
  step: number;
  total: number;
  epoch: number;
  loss: number;
  lr: number;
  /** Gradient norm before clipping, on iterations that updated. */
  gradNorm?: number;
  /** Sequence positions processed per second in this iteration. */
  tokensPerSecond: number;
  elapsedMs: number;
  etaMs: number;
}

export interface TrainResult {
  out: string;
  steps: number;
  lastLoss: number;
  skipped: { reason: string; count: number }[];
}

const STAGE_MODULES = /^(fuse_module|projector|bbox_projector)\./;
const RELEASE_LR = { 1: 1e-3, 2: 2e-5 } as const;

/** A release-name pattern with `*` wildcards as a RegExp (a plain name also matches its sub-names). */
function patternRegex(p: string): RegExp {
  const body = p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${body}(\\..*)?$`);
}

/** Which tensors learn: the stage's modules (the whole LLM in stage 2, or its LoRA adapters), plus `extra` patterns. */
export function trainableSelector(stage: 1 | 2, extra: readonly string[] = [], lora = false): (name: string) => boolean {
  const res = extra.map(patternRegex);
  return (n) => STAGE_MODULES.test(n) || (lora ? LORA_TENSOR.test(n) : stage === 2 && n.startsWith('llm.')) || res.some((r) => r.test(n));
}

interface Settings {
  stage: number;
  batchSize: number;
  gradAccum: number;
  lr: number;
  schedule: ScheduleKind;
  warmupRatio: number;
  maxGradNorm: number;
  weightDecay: number;
  seed: number;
  epochs: number;
  total: number;
  trainable: string[];
  samples: number;
  lora: LoraSettings | null;
}

export async function train(o: TrainOptions): Promise<TrainResult> {
  const phase = o.onPhase ?? (<T>(_l: string, w: () => Promise<T>) => w());
  const out = resolve(o.out);
  // Found out before the training, not when its result is to be written.
  if (!checkpointTargetOk(out)) throw new InputError(`${o.out}: exists and is not a training output folder (no checkpoint.json); give a new or empty folder`, o.out);
  const files = resolveModelFiles(o.model);
  if (!files.llm) throw new InputError('no LLM folder: set "llm" in mgllava_config.json or pass --llm', '--llm');
  if (readLlmFolderConfig(files.llm).quantization && o.stage === 2 && !o.lora) {
    throw new InputError(`${files.llm}: a quantized LLM cannot learn in stage 2; give the float LLM folder, or train LoRA adapters over it (--lora)`, files.llm);
  }
  if (o.lora && !(Number.isInteger(o.lora.r) && o.lora.r > 0 && o.lora.alpha > 0)) throw new InputError('--lora needs a positive integer rank and a positive --lora-alpha', '--lora');
  const template = getTemplate(o.template ?? files.promptTemplate);
  const tokenizer = Tokenizer.fromFolder(files.llm);
  const data = await phase('reading the training data', () => loadTrainData({ data: o.data, imageFolder: o.imageFolder, boxes: o.boxes, tokenizer, template }));
  for (const s of data.skipped) o.onNote?.(`skipped ${s.count} sample${s.count === 1 ? '' : 's'}: ${s.reason}`);
  if (data.samples.length === 0) throw new InputError(`${o.data}: no trainable sample (every sample was skipped)`, o.data);

  const batchSize = o.batchSize ?? 1;
  const perEpoch = Math.ceil(data.samples.length / batchSize);
  const epochs = o.epochs ?? 1;
  const total = o.maxSteps ?? epochs * perEpoch;
  const settings: Settings = {
    stage: o.stage,
    batchSize,
    gradAccum: o.gradAccum ?? 1,
    lr: o.lr ?? RELEASE_LR[o.stage],
    schedule: o.schedule ?? 'cosine',
    warmupRatio: o.warmupRatio ?? 0.03,
    maxGradNorm: o.maxGradNorm ?? 1,
    weightDecay: o.weightDecay ?? 0,
    seed: o.seed ?? 2024,
    epochs: o.maxSteps === undefined ? epochs : 1,
    total,
    trainable: [...(o.trainable ?? [])],
    samples: data.samples.length,
    lora: o.lora ?? null,
  };
  if (warmupIterations({ totalSteps: total, warmupRatio: settings.warmupRatio, epochs: settings.epochs }) === 1) {
    o.onNote?.(`the warm-up is 1 of ${total} iterations: as in the release's mmengine schedule, the lr then never ramps up and stays near ${settings.lr} x 1e-5 (use --warmup-ratio 0, or more iterations)`);
  }

  const loaded = await phase('loading the model', () => loadTrainModel(files, { threads: o.threads, featureCache: o.featureCache }));
  let model = loaded;
  let lora: LoraState | undefined;
  if (o.lora) {
    const targets = loraTargets(loaded.llm, loaded.llmConfig);
    const adapters = o.resume ? readAdapters(o.resume, targets) : initLora(targets, o.lora, settings.seed);
    lora = { settings: o.lora, targets, base: loaded.llm };
    model = { ...loaded, llm: new OverlayStore(`${loaded.llm.path} + LoRA`, [loaded.llm, new MemoryStore('LoRA adapters', adapters)]) };
    if (loaded.quantization) o.onNote?.(`${files.llm} is quantized: the LoRA adapter is saved on its own (${ADAPTER_FILE}), not merged; chat runs this LLM without it`);
  }
  const runner = new StepRunner(model, trainableSelector(o.stage, o.trainable, !!o.lora), o.threads, o.lora && o.lora.alpha / o.lora.r);
  for (const p of o.trainable ?? []) {
    if (!runner.trainable.some((t) => patternRegex(p).test(t.name))) {
      await runner.release();
      throw new InputError(`--trainable ${p}: matches no tensor that can learn (fuse_module.*, projector.*, bbox_projector.*, llm.*, visual_encoder.vision_model.*, visual_encoder_aux.visual.trunk.*)`, '--trainable');
    }
  }
  try {
    const values = runner.initialValues();
    let adam = new AdamW({ weightDecay: settings.weightDecay });
    let done = 0;
    if (o.resume) {
      const ck = readCheckpoint(o.resume);
      const st = ck.trainerState as { iteration?: number; settings?: Settings };
      if (!st.settings || typeof st.iteration !== 'number') throw new InputError(`${o.resume}: not a checkpoint of mgllava train (no trainer state)`, o.resume);
      // The length of the run may change (continue a finished run for longer); nothing else may.
      const diff = (Object.keys(settings) as (keyof Settings)[])
        .filter((k) => k !== 'total' && k !== 'epochs' && JSON.stringify(st.settings![k]) !== JSON.stringify(settings[k]));
      if (diff.length) throw new InputError(`${o.resume}: was trained with other settings (${diff.join(', ')}); resume with the same ones`, o.resume);
      for (const [name, v] of values) {
        if (LORA_TENSOR.test(name)) continue; // read with the adapters above
        const t = ck.model.get(name);
        if (!t || t.data.length !== v.length) throw new InputError(`${o.resume}: checkpoint lacks ${name}`, o.resume);
        v.set(t.data);
      }
      if (ck.optimizer) adam = AdamW.fromState(ck.optimizer);
      done = st.iteration;
      if (done > total) throw new InputError(`${o.resume}: already trained for ${done} iterations, more than the ${total} asked for`, o.resume);
    }

    const acc = new GradAccumulator();
    let lastSave = done;
    const t0 = performance.now();
    let lastLoss = NaN;
    let firstGradsSaved = false;
    const image = (s: TrainSample) => () => decodeImage(s.image!);
    let order: { epoch: number; ids: number[] } | undefined;
    // Each image's cache key (a stat and its boxes as JSON) made once per run, not per epoch.
    const keys = new Map<TrainSample, string>();
    for (let it = done; it < total; it++) {
      const tIt = performance.now();
      const epoch = Math.floor(it / perEpoch);
      if (!order || order.epoch !== epoch) order = { epoch, ids: epochOrder(data.samples.length, settings.seed, epoch) };
      const pos = (it % perEpoch) * batchSize;
      const samples = order.ids.slice(pos, pos + batchSize).map((i) => data.samples[i]!);
      const items = [];
      for (const s of samples) {
        let key = keys.get(s);
        if (key === undefined && s.image) keys.set(s, (key = imageKey(s)));
        if (!s.image) items.push({ inputIds: s.inputIds, labels: s.labels });
        else if (runner.encodersLearn) items.push({ inputIds: s.inputIds, labels: s.labels, inputs: await model.frozen.inputs(image(s), s.detections, s.boxOptions, key!) });
        else items.push({ inputIds: s.inputIds, labels: s.labels, features: await model.frozen.features(image(s), s.detections, s.boxOptions, key!) });
      }
      const feeds = batchFeeds(items, model.frozen.grid ** 2);
      const r = await runner.run(feeds, values);
      if (!Number.isFinite(r.loss)) throw new InputError(`iteration ${it + 1}: the loss is ${r.loss} (lower --lr?)`);
      lastLoss = r.loss;
      // Tensors a text-only batch does not reach get zero gradients, as the release's zero image does.
      for (const [name, v] of values) if (!r.grads.has(name)) r.grads.set(name, new Float32Array(v.length));
      acc.add(r.grads, accumulationLossFactor(it, settings.gradAccum, total));
      const lr = learningRate(it, { baseLr: settings.lr, totalSteps: total, warmupRatio: settings.warmupRatio, schedule: settings.schedule, epochs: settings.epochs });
      let gradNorm: number | undefined;
      if (accumulationShouldUpdate(it, settings.gradAccum, total)) {
        const grads = acc.take();
        if (o.saveFirstGrads && !firstGradsSaved) {
          writeSafetensors(o.saveFirstGrads, [...grads].map(([name, g]) => ({ name, dtype: 'F32' as const, shape: shapeOf(runner, name), data: g })));
          firstGradsSaved = true;
        }
        gradNorm = clipGradNorm(grads, settings.maxGradNorm);
        adam.step(values, grads, lr);
        // Checkpoints only at updates: nothing of an accumulation window is left unsaved.
        if (it + 1 === total || (o.saveEvery !== undefined && it + 1 - lastSave >= o.saveEvery)) {
          saveCheckpoint(out, model, runner, values, adam, { iteration: it + 1, settings }, lora);
          lastSave = it + 1;
        }
      }
      const now = performance.now();
      const elapsed = now - t0;
      const per = elapsed / (it + 1 - done);
      o.onStep?.({
        step: it + 1, total, epoch, loss: r.loss, lr, gradNorm,
        tokensPerSecond: (feeds.batch * feeds.seq) / ((now - tIt) / 1000),
        elapsedMs: elapsed, etaMs: per * (total - it - 1),
      });
    }
    return { out, steps: total, lastLoss, skipped: data.skipped };
  } finally {
    await runner.release();
  }
}

/**
 * What an image's features depend on: the file (path, size, modification time), its boxes and
 * the box cap. The in-memory and on-disk feature caches are keyed by it.
 */
function imageKey(s: TrainSample): string {
  const st = statSync(s.image!);
  const d = s.detections;
  return JSON.stringify([s.image, st.size, st.mtimeMs, s.boxOptions, d ? [Array.from(d.boxes), d.labels, Array.from(d.scores)] : null]);
}

function shapeOf(runner: StepRunner, name: string): readonly number[] {
  return runner.trainable.find((t) => t.name === name)!.shape;
}

