// The model as training sees it: the frozen encoders (frozen-features.ts), the checkpoint and the
// LLM's tensors, and the step graph (step-graph.ts) compiled once per kind of batch (with images,
// text only). `run` feeds a batch and the current trainable tensors and returns the loss and
// every trainable tensor's gradient.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { InputError } from '../core/errors.js';
import { Session, Feed } from '../runtime/session.js';
import { WeightStore, readF32 } from '../weights/types.js';
import { openWeights } from '../weights/open.js';
import { ModelFiles } from '../model/model-files.js';
import { clipVisionConfig } from '../model/clip-vit.js';
import { llmWeights } from '../model/llm-weights.js';
import { LlmConfig } from '../model/llm/config.js';
import { checkQuantizedAgainstCheckpoint, readLlmFolderConfig } from '../model/llm/causal-lm.js';
import { QuantizedLinears, quantizedLinears } from '../model/llm/quantized.js';
import { FrozenVision } from './frozen-features.js';
import { encoderStores } from '../model/load-vision.js';
import { BatchFeeds } from './batch.js';
import { STEP_NAMES, StepGraph, StepGraphShapes, TrainableTensor, buildStepGraph } from './step-graph.js';

export interface TrainModel {
  files: ModelFiles;
  /** The MG-LLaVA checkpoint (fuse_module, projector, bbox_projector, maybe llm.*). */
  checkpoint: WeightStore;
  /** The LLM's tensors (base folder + the checkpoint's llm.*), under the LLM's own keys. */
  llm: WeightStore;
  llmConfig: LlmConfig;
  /** Set when the LLM folder is quantized: its linears run on MatMulNBits and cannot learn. */
  quantization?: QuantizedLinears;
  frozen: FrozenVision;
  shapes: StepGraphShapes;
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`${path}: cannot read JSON (${(e as Error).message})`, path);
  }
}

export async function loadTrainModel(files: ModelFiles, opts: { threads?: number; featureCache?: string } = {}): Promise<TrainModel> {
  if (!files.llm) throw new InputError('no LLM folder: set "llm" in mgllava_config.json or pass --llm', '--llm');
  const clipDir = files.visualEncoder;
  const clipCfg = join(clipDir, 'config.json');
  if (!statSync(clipDir).isDirectory() || !existsSync(clipCfg)) throw new InputError(`${clipDir}: --visual-encoder must be the CLIP model folder (with config.json)`, clipDir);
  const checkpoint = openWeights(files.checkpoint);
  const { config, quantization } = readLlmFolderConfig(files.llm);
  // A quantized folder (mgllava quantize) already holds the checkpoint's llm.* weights: it is
  // read alone, as chat reads it; its linears stay frozen (stage 1, or LoRA over them).
  if (quantization) checkQuantizedAgainstCheckpoint(files.llm, quantization, checkpoint);
  const frozen = await FrozenVision.load({
    ...encoderStores(openWeights(clipDir), openWeights(files.visualEncoderAux), checkpoint),
    clipConfig: clipVisionConfig(readJson(clipCfg), clipCfg),
  }, files.vision, opts);
  return {
    files,
    checkpoint,
    llm: quantization ? openWeights(files.llm) : llmWeights(openWeights(files.llm), checkpoint, files.loraAlpha),
    llmConfig: config,
    ...(quantization ? { quantization: quantizedLinears(quantization) } : {}),
    frozen,
    shapes: {
      clipWidth: frozen.clip.hiddenSize,
      convWidth: frozen.convnext.dims[3]!,
      grid: frozen.grid,
      boxWidth: frozen.boxWidth,
      projectorDepth: files.vision.projectorDepth,
      ...(files.vision.fusion === false ? { fusion: false } : {}),
    },
  };
}

export interface StepResult {
  loss: number;
  /** Gradient of each trainable tensor that the batch reaches (a text-only batch leaves out the vision modules'). */
  grads: Map<string, Float32Array>;
}

export class StepRunner {
  private readonly sessions = new Map<boolean, Promise<{ session: Session; trainable: TrainableTensor[] }>>();
  /** Every trainable tensor, by release name (from the graph with images, which has them all). */
  readonly trainable: TrainableTensor[];

  /** Whether some vision encoder tensor learns: the step then takes pixels (FrozenVision.inputs), not features. */
  readonly encodersLearn: boolean;
  private imageGraph?: StepGraph;

  constructor(
    private readonly model: TrainModel,
    private readonly wants: (name: string) => boolean,
    private readonly threads?: number,
    private readonly loraScale?: number,
  ) {
    const w = model.frozen.weights;
    this.encodersLearn = w.clip.keys().some((k) => wants(`visual_encoder.${k}`)) || w.convnext.keys().some((k) => wants(`visual_encoder_aux.${k}`));
    // The graph with images has every trainable tensor; it is kept for its session.
    this.imageGraph = this.build(true);
    this.trainable = this.imageGraph.trainable;
    if (this.trainable.length === 0) throw new InputError('nothing to train: no tensor matches the trainable modules');
  }

  private build(withImages: boolean) {
    const m = this.model;
    const f = m.frozen;
    const encoders = this.encodersLearn ? {
      clip: f.weights.clip, clipConfig: f.clip, convnext: f.weights.convnext, convnextConfig: f.convnext,
      visualSelectLayer: f.settings.visualSelectLayer, imageSizeAux: f.settings.imageSizeAux, stageSizes: f.stageSizes,
    } : undefined;
    return buildStepGraph({ checkpoint: m.checkpoint, llm: m.llm, llmConfig: m.llmConfig, quantization: m.quantization, shapes: m.shapes, trainable: this.wants, withImages, loraScale: this.loraScale, encoders });
  }

  /** The trainable tensors' starting values in float32 (bf16/f16 upcast), by release name. */
  initialValues(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    for (const t of this.trainable) {
      const ref = t.store.get(t.key)!;
      out.set(t.name, Float32Array.from(readF32(ref)));
    }
    return out;
  }

  private session(withImages: boolean) {
    let s = this.sessions.get(withImages);
    if (!s) {
      s = (async () => {
        const built = withImages && this.imageGraph ? this.imageGraph : this.build(withImages);
        if (withImages) this.imageGraph = undefined; // the session holds what it needs
        const { graph, trainable } = built;
        // No memory pattern: its one planned block for all of a step's intermediates held ~0.35 GB
        // more per decoder layer at the 3.8B shape, and ran slower (measured; docs/training.md).
        return { session: await Session.fromGraph(graph, { threads: this.threads, memPattern: false }), trainable };
      })();
      this.sessions.set(withImages, s);
    }
    return s;
  }

  async run(batch: BatchFeeds, values: ReadonlyMap<string, Float32Array>): Promise<StepResult> {
    const { session, trainable } = await this.session(batch.withImages);
    const feeds: Record<string, Feed> = { ...batch.feeds };
    for (const t of trainable) feeds[t.name] = { dims: t.shape, data: values.get(t.name)! };
    const out = await session.run(feeds, [STEP_NAMES.loss, ...trainable.map((t) => STEP_NAMES.grad(t.name))]);
    const grads = new Map<string, Float32Array>();
    for (const t of trainable) grads.set(t.name, out[STEP_NAMES.grad(t.name)]!.data);
    return { loss: out[STEP_NAMES.loss]!.data[0]!, grads };
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).session.release();
    await this.model.frozen.release();
  }
}
