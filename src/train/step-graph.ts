// One training step of MG-LLaVA as a single ONNX graph: the trainable modules' forward pass,
// the release's loss and its backward pass (src/graph/autodiff.ts), so that one onnxruntime run
// gives the loss and every trainable tensor's gradient. The frozen encoders run outside it
// (their outputs for an image do not change during training: frozen-features.ts):
//
//   low_res_feat [nImg, N, C], high_feat [nImg, Ch, g, g]  -> fuse_module -> projector -> [nImg*N, H]
//   box_feats [K, sumC] (pooled object features)           -> bbox_projector            -> [K, H]
//   text_ids [nText]                                       -> embed_tokens              -> [nText, H]
//   rows = concat(text, image tokens, box tokens) [R, H];  inputs_embeds = rows[gather_idx] [B, T, H]
//   -> LLM -> logits [n, V] at the n positions whose next token is labelled -> cross-entropy
//   with those labels (the mean over the batch's labelled tokens, as HF's shifted causal-LM loss
//   over all positions with -100 ignored).
//
// gather_idx is how the release's prepare_inputs_labels_for_multimodal lays out each sample:
// its text tokens with the image's 576 tokens then its k box tokens where `<image>` was, and
// right padding (any row: padded positions see nothing real after them and carry no label).
// Trainable tensors are graph inputs named as in the release's checkpoint (`fuse_module.*`,
// `projector.model.*`, `bbox_projector.model.*`, `llm.*`); frozen ones stay initializers read
// from their files.

import { Graph, Value } from '../graph/graph.js';
import { appendBackward } from '../graph/autodiff.js';
import { WeightStore } from '../weights/types.js';
import { Params, TrainableInputs } from '../model/params.js';
import { fuseModule } from '../model/fusion.js';
import { projector } from '../model/projector.js';
import { LlmConfig } from '../model/llm/config.js';
import { trainDecoder } from '../model/llm/train-decoder.js';
import { QuantizedLinears } from '../model/llm/quantized.js';
import { ClipVisionConfig, clipVision } from '../model/clip-vit.js';
import { ConvNextConfig, convNextStages } from '../model/convnext.js';

export interface StepGraphShapes {
  /** CLIP width C. */
  clipWidth: number;
  /** ConvNeXt last-stage width Ch. */
  convWidth: number;
  /** Token grid side (24). */
  grid: number;
  /** Sum of the ConvNeXt stage widths (the pooled box feature width). */
  boxWidth: number;
  projectorDepth: number;
  /** false: no fuse_module, the CLIP features go to the projector (VisionSettings.fusion) */
  fusion?: boolean;
}

export interface StepGraphSpec {
  /** The MG-LLaVA checkpoint (fuse_module, projector, bbox_projector). */
  checkpoint: WeightStore;
  /** The LLM's tensors under its own keys (model/llm-weights.ts: base + the checkpoint's llm.*). */
  llm: WeightStore;
  llmConfig: LlmConfig;
  shapes: StepGraphShapes;
  /** Which tensors learn, by release name (`fuse_module.gate.0.weight`, `llm.model.norm.weight`...). */
  trainable: (releaseName: string) => boolean;
  /** Whether the batch has images (a text-only batch has no visual inputs). */
  withImages: boolean;
  /** LoRA's alpha / r when `llm` holds adapters. */
  loraScale?: number;
  /** The LLM's linears are stored quantized (frozen; gradients flow through them to the inputs). */
  quantization?: QuantizedLinears;
  /**
   * Vision encoders inside the graph (some of their tensors learn): the step then takes pixels
   * and box pooling weights instead of the frozen encoders' outputs.
   */
  encoders?: StepEncoders;
}

/** The vision encoders for a step graph in which they learn. */
export interface StepEncoders {
  /** CLIP tensors (`vision_model.*`); graph names `visual_encoder.` + key. */
  clip: WeightStore;
  clipConfig: ClipVisionConfig;
  /** open_clip ConvNeXt tensors (`visual.trunk.*`); graph names `visual_encoder_aux.` + key. */
  convnext: WeightStore;
  convnextConfig: ConvNextConfig;
  visualSelectLayer: number;
  /** Side of pixel_values_aux (768). */
  imageSizeAux: number;
  /** [H_l, W_l] of each ConvNeXt stage. */
  stageSizes: readonly (readonly [number, number])[];
}

export interface TrainableTensor {
  /** Graph input and release checkpoint name. */
  name: string;
  /** Key in its store. */
  key: string;
  store: WeightStore;
  shape: readonly number[];
}

export interface StepGraph {
  graph: Graph;
  trainable: TrainableTensor[];
}

export const STEP_NAMES = {
  lowRes: 'low_res_feat',
  highRes: 'high_feat',
  boxFeats: 'box_feats',
  textIds: 'text_ids',
  gatherIdx: 'gather_idx',
  /** int64 [n]: flat positions b * T + t whose next token is a label. */
  labelPositions: 'label_positions',
  /** With trainable encoders: float [nImg, 3, s, s] and [nImg, 3, S, S]. */
  pixelValues: 'pixel_values',
  pixelValuesAux: 'pixel_values_aux',
  /** With trainable encoders: float [nImg, H_l * W_l, kMax], each image's box pooling weights (zero columns past its k). */
  boxWeights: (l: number) => `box_weights_${l}`,
  /** With trainable encoders: int64 [K], the real boxes' rows of the [nImg * kMax] pooled rows, in order. */
  boxRows: 'box_rows',
  /** int64 [n]: those labels (the label at t + 1). */
  targets: 'targets',
  loss: 'loss',
  grad: (name: string) => `grad.${name}`,
} as const;

export function buildStepGraph(s: StepGraphSpec): StepGraph {
  const g = new Graph(s.withImages ? 'train_step' : 'train_step_text');
  const c = s.llmConfig;
  const H = c.hiddenSize;
  const sh = s.shapes;
  const vis = new TrainableInputs(g, s.trainable);
  const lm = new TrainableInputs(g, (key) => s.trainable(`llm.${key}`), 'llm.');

  const rows: Value[] = [];
  const textIds = g.input(STEP_NAMES.textIds, 'I64', ['text']);
  const table = new Params(g, s.llm, '', lm).raw('model.embed_tokens.weight', [c.vocabSize, H]);
  let text = g.op1('Gather', [table.value, textIds], { axis: 0 }, { name: 'text_embeds' });
  if (table.dtype !== 'F32') text = g.op1('Cast', [text], { to: 1 });
  rows.push(text);
  const encoderInputs: TrainableInputs[] = [];
  if (s.withImages) {
    const N = sh.grid * sh.grid;
    let low: Value;
    let high: Value;
    let boxes: Value;
    if (s.encoders) {
      const e = s.encoders;
      const clipIn = new TrainableInputs(g, (key) => s.trainable(`visual_encoder.${key}`), 'visual_encoder.');
      const auxIn = new TrainableInputs(g, (key) => s.trainable(`visual_encoder_aux.${key}`), 'visual_encoder_aux.');
      encoderInputs.push(clipIn, auxIn);
      ({ low, high, boxes } = encodersForward(g, e, clipIn, auxIn));
    } else {
      low = g.input(STEP_NAMES.lowRes, 'F32', ['images', N, sh.clipWidth]);
      high = g.input(STEP_NAMES.highRes, 'F32', ['images', sh.convWidth, sh.grid, sh.grid]);
      boxes = g.input(STEP_NAMES.boxFeats, 'F32', ['boxes', sh.boxWidth]);
    }
    const ck = new Params(g, s.checkpoint, '', vis);
    const fused = sh.fusion === false ? low : fuseModule(g, ck.sub('fuse_module.'), { low: sh.clipWidth, high: sh.convWidth, grid: sh.grid }, low, high);
    const image = projector(g, ck.sub('projector.'), sh.projectorDepth, sh.clipWidth, H, fused, 'projector');
    rows.push(g.op1('Reshape', [image, g.constI64([-1, H])], {}, { name: 'image_rows' }));
    rows.push(projector(g, ck.sub('bbox_projector.'), sh.projectorDepth, sh.boxWidth, H, boxes, 'bbox_projector'));
  }
  const all = g.op1('Concat', rows, { axis: 0 }, { name: 'embed_rows' });
  const idx = g.input(STEP_NAMES.gatherIdx, 'I64', ['batch', 'seq']);
  const embeds = g.op1('Gather', [all, idx], { axis: 0 }, { name: 'inputs_embeds' });
  // Logits only where a label is predicted: the same mean cross-entropy as over all B x T
  // positions with -100 ignored, without the head's work on the rest.
  const positions = g.input(STEP_NAMES.labelPositions, 'I64', ['labelled']);
  const targets = g.input(STEP_NAMES.targets, 'I64', ['labelled']);
  const logits = trainDecoder(g, s.llm, c, embeds, { trainable: lm, loraScale: s.loraScale, positions, quantization: s.quantization });
  const loss = g.op1('SoftmaxCrossEntropyLoss', [logits, targets], { reduction: 'mean', ignore_index: -100 }, { name: 'ce' });
  g.output(loss, STEP_NAMES.loss, 'F32', []);

  const made = [
    ...vis.list().map((t) => ({ ...t, store: s.checkpoint })),
    ...lm.list().map((t) => ({ ...t, store: s.llm })),
    ...(encoderInputs[0]?.list() ?? []).map((t) => ({ ...t, store: s.encoders!.clip })),
    ...(encoderInputs[1]?.list() ?? []).map((t) => ({ ...t, store: s.encoders!.convnext })),
  ];
  appendBackward(g, loss, made.map((t) => t.value), { outputName: STEP_NAMES.grad });
  return { graph: g, trainable: made.map(({ name, key, store, shape }) => ({ name, key, store, shape })) };
}

/**
 * CLIP (plain-op attention) and the ConvNeXt stages on the batch's pixels, and each image's
 * object features as the inference graphs compute them (object-features.ts: one MatMul per stage
 * with the box pooling weights), here batched over images with kMax weight columns each:
 *   stage_l [nImg, C_l, H_l W_l] @ W_l [nImg, H_l W_l, kMax] -> [nImg, C_l, kMax]
 *   -> [nImg * kMax, sumC] -> the real boxes' rows [K, sumC].
 */
function encodersForward(g: Graph, e: StepEncoders, clipIn: TrainableInputs, auxIn: TrainableInputs): { low: Value; high: Value; boxes: Value } {
  const s = e.clipConfig.imageSize;
  const S = e.imageSizeAux;
  const px = g.input(STEP_NAMES.pixelValues, 'F32', ['images', 3, s, s]);
  const aux = g.input(STEP_NAMES.pixelValuesAux, 'F32', ['images', 3, S, S]);
  const low = clipVision(g, new Params(g, e.clip, 'vision_model.', clipIn), e.clipConfig, px, e.visualSelectLayer, 'ops').features;
  const stages = convNextStages(g, new Params(g, e.convnext, 'visual.trunk.', auxIn), e.convnextConfig, aux);
  const sumC = e.convnextConfig.dims.reduce((a, b) => a + b, 0);
  const pooled = stages.map((st, l) => {
    const [h, w] = e.stageSizes[l]!;
    const flat = g.op1('Reshape', [st, g.constI64([0, e.convnextConfig.dims[l]!, h * w])]);
    return g.op1('MatMul', [flat, g.input(STEP_NAMES.boxWeights(l), 'F32', ['images', h * w, 'kmax'])]); // [nImg, C_l, kMax]
  });
  const rows = g.op1('Reshape', [g.op1('Transpose', [g.op1('Concat', pooled, { axis: 1 })], { perm: [0, 2, 1] }), g.constI64([-1, sumC])]);
  const boxes = g.op1('Gather', [rows, g.input(STEP_NAMES.boxRows, 'I64', ['boxes'])], { axis: 0 }, { name: 'box_pooled' });
  return { low, high: stages[3]!, boxes };
}
