// The vision side of MG-LLaVA: visual_encoder (CLIP), visual_encoder_aux (ConvNeXt),
// fuse_module, projector, and the object path (pooled box features, bbox_projector).
// Three onnxruntime sessions:
//   view:    pixel_values_aux [B,3,S,S] -> pixel_values [B,3,s,s] (bilinear, S=768, s=336)
//   encoder: pixel_values, pixel_values_aux -> image_tokens [B,N,H] (+ stages for the boxes)
//   boxes:   F images' stages + box weights per image + box_index -> box_tokens [k,H]
//            (one image: F = 1; a video's frames: all of them in one run)

import { Graph } from '../graph/graph.js';
import { reshape, resizeBilinear } from '../graph/blocks.js';
import { Feed, PackedState, Session } from '../runtime/session.js';
import { packedCacheRoot } from '../runtime/packed-cache.js';
import { F32Tensor } from '../core/tensor.js';
import { InputError } from '../core/errors.js';
import { WeightStore } from '../weights/types.js';
import { Params } from './params.js';
import { ClipVisionConfig, clipTokens, clipVision } from './clip-vit.js';
import { ConvNextConfig, convNextConfig, convNextStages } from './convnext.js';
import { fuseModule } from './fusion.js';
import { projector, projectorWidth } from './projector.js';
import { boxPoolingWeights } from './object-features.js';

export interface VisionSettings {
  /** HF hidden_states index of the CLIP features (-2). */
  visualSelectLayer: number;
  /** Side of the high-resolution input (768). */
  imageSizeAux: number;
  /** RoIAlign output size (56). */
  boxFeatSize: number;
  /** Linear layers in each projector (2). */
  projectorDepth: number;
  /**
   * The side RoIAlign's spatial scale divides by (stage-0 side / this). The release divides by a
   * literal 768 whatever image_size_aux is, so boxes land in the right place only at 768; a model
   * trained at another size sets mgllava_config.json "box_scale_base" to its image_size_aux.
   * Absent: 768, the release.
   */
  boxScaleBase?: number;
  /**
   * false: no Conv-Gate fusion, the CLIP tokens go to the projector as in LLaVA (mgllava_config.json
   * "fusion": false; the ablation's variants without the high-resolution branch). The ConvNeXt
   * still runs for the object features. Absent: true, the release.
   */
  fusion?: boolean;
}

/** RoIAlign's spatial scale for these settings: stage-0 side / box_scale_base (the release: / 768). */
export function boxSpatialScale(stage0Side: number, s: VisionSettings): number {
  return stage0Side / (s.boxScaleBase ?? 768);
}

export interface VisionWeights {
  /** CLIP tensors with keys as in the HF checkpoint (`vision_model.*`). */
  clip: WeightStore;
  clipConfig: ClipVisionConfig;
  /** open_clip tensors (`visual.trunk.*`). */
  convnext: WeightStore;
  /** The MG-LLaVA checkpoint (`fuse_module.*`, `projector.*`, `bbox_projector.*`, `llm.*`). */
  checkpoint: WeightStore;
}

export interface VisionOptions {
  threads?: number;
  /**
   * Folder of this machine's pre-packed weights (src/runtime/packed-cache.ts; default
   * `~/.cache/mgllava/packed`, or `$MGLLAVA_CACHE_DIR/packed`); false packs them at every load.
   */
  packedCache?: string | false;
  /** Told when the packed cache was asked for and not used (a folder that cannot be written...). */
  onNote?: (message: string) => void;
  /** Also output every CLIP hidden state and each intermediate (parity tests). */
  debugOutputs?: boolean;
}

/** Architecture facts derived from configs and checkpoint shapes. */
export interface VisionShapes {
  clip: ClipVisionConfig;
  convnext: ConvNextConfig;
  /** [H_l, W_l] of each ConvNeXt stage. */
  stageSizes: [number, number][];
  /** LLM hidden width H. */
  llmWidth: number;
}

export interface ImageEncoding {
  /** [B, N, H] */
  imageTokens: F32Tensor;
  /** ConvNeXt stages [B, C_l, H_l, W_l], for object features. */
  stages: F32Tensor[];
  /** Only with debugOutputs: every other named output. */
  debug: Record<string, F32Tensor>;
}

export interface BoxEncoding {
  /** [k, sum C_l] */
  pooled: F32Tensor;
  /** [k, H] */
  boxTokens: F32Tensor;
}

const STAGES = [0, 1, 2, 3];

export class VisionModel {
  private constructor(
    readonly shapes: VisionShapes,
    readonly settings: VisionSettings,
    private readonly view: Session,
    private readonly encoder: Session,
    private readonly boxes: Session,
  ) {}

  /** Where the encoder's pre-packed weights came from (as CausalLM.packed). */
  get packed(): PackedState {
    return this.encoder.packed;
  }

  static async load(w: VisionWeights, settings: VisionSettings, opts: VisionOptions = {}): Promise<VisionModel> {
    const shapes = deriveShapes(w, settings);
    // Pre-packed weights (MLAS's GEMM/conv layouts) run the encoder ~25% faster; packing them
    // takes ~10 s at every load unless the packed cache holds them (src/runtime/packed-cache.ts).
    const packedCache = packedCacheRoot(opts.packedCache);
    const make = (name: string, g: Graph) => Session.fromGraph(g, { threads: opts.threads, prepack: true, packedCache, onNote: opts.onNote }, name);
    const [view, encoder, boxes] = await Promise.all([
      make('low-res view', buildViewGraph(shapes, settings)),
      make('vision encoder', buildEncoderGraph(w, shapes, settings, opts.debugOutputs ?? false)),
      make('object features', buildBoxGraph(w, shapes, settings)),
    ]);
    return new VisionModel(shapes, settings, view, encoder, boxes);
  }

  /** pixel_values_aux [B,3,S,S] -> pixel_values [B,3,s,s] */
  async lowResView(aux: F32Tensor): Promise<F32Tensor> {
    return (await this.view.run({ pixel_values_aux: aux })).pixel_values!;
  }

  async encodeImage(pixelValues: F32Tensor, pixelValuesAux: F32Tensor): Promise<ImageEncoding> {
    const out = await this.encoder.run({ pixel_values: pixelValues, pixel_values_aux: pixelValuesAux });
    const { image_tokens, ...rest } = out;
    return { imageTokens: image_tokens!, stages: STAGES.map((l) => out[`stage_${l}`]!), debug: rest };
  }

  /**
   * Object tokens for one image (batch index `index` of the stages) and its boxes [k, 4] in
   * image_size_aux pixels. k = 0 gives empty tensors.
   */
  async encodeBoxes(stages: readonly F32Tensor[], boxes: Float32Array, index = 0): Promise<BoxEncoding> {
    return this.encodeBoxesBatch(stages.map((t) => batchItem(t, index)), [boxes]);
  }

  /**
   * Object tokens of every image of a batch at once: `stages` [F, C_l, H_l, W_l] (the encoder's
   * for F images), `boxes[f]` image f's boxes [k_f, 4] in image_size_aux pixels. One run of the
   * object-feature session: per image, weights [H_l*W_l, max k] (zero columns past k_f) against
   * that image's stages (a batched MatMul), then the rows of the real boxes (box_index, images
   * in order) through bbox_projector: [sum k_f, ...], image 0's boxes first.
   */
  async encodeBoxesBatch(stages: readonly F32Tensor[], boxes: readonly Float32Array[]): Promise<BoxEncoding> {
    const F = boxes.length;
    if (stages.some((t) => t.dims[0] !== F)) throw new InputError(`object features: ${boxes.length} box sets for stages of batch ${stages[0]?.dims[0]}`);
    const counts = boxes.map((b) => b.length / 4);
    const K = counts.reduce((a, b) => a + b, 0);
    const sumC = this.shapes.convnext.dims.reduce((a, b) => a + b, 0);
    if (K === 0) return { pooled: { dims: [0, sumC], data: new Float32Array(0) }, boxTokens: { dims: [0, this.shapes.llmWidth], data: new Float32Array(0) } };
    const kMax = Math.max(...counts);
    const roi = {
      outputSize: this.settings.boxFeatSize,
      spatialScale: boxSpatialScale(this.shapes.stageSizes[0]![0], this.settings),
    };
    const perImage = boxes.map((b) => boxPoolingWeights(b, this.shapes.stageSizes, roi));
    const feeds: Record<string, Feed> = {};
    STAGES.forEach((l) => {
      feeds[`stage_${l}`] = stages[l]!;
      const [h, w] = this.shapes.stageSizes[l]!;
      const hw = h * w;
      if (F === 1) {
        feeds[`weights_${l}`] = { dims: [1, hw, kMax], data: perImage[0]![l]!.data };
        return;
      }
      const data = new Float32Array(F * hw * kMax);
      perImage.forEach((ws, f) => {
        const k = counts[f]!;
        if (k === 0) return;
        const src = ws[l]!.data;
        const base = f * hw * kMax;
        if (k === kMax) data.set(src, base);
        else for (let p = 0; p < hw; p++) data.set(src.subarray(p * k, (p + 1) * k), base + p * kMax);
      });
      feeds[`weights_${l}`] = { dims: [F, hw, kMax], data };
    });
    const index = new BigInt64Array(K);
    let i = 0;
    counts.forEach((k, f) => {
      for (let b = 0; b < k; b++) index[i++] = BigInt(f * kMax + b);
    });
    feeds.box_index = { dims: [K], data: index };
    const out = await this.boxes.run(feeds);
    return { pooled: out.box_pooled!, boxTokens: out.box_tokens! };
  }

  async release(): Promise<void> {
    await Promise.all([this.view.release(), this.encoder.release(), this.boxes.release()]);
  }
}

/** [B, ...] -> [1, ...] for item i (a view, no copy). */
function batchItem(t: F32Tensor, i: number): F32Tensor {
  const per = t.data.length / t.dims[0]!;
  return { dims: [1, ...t.dims.slice(1)], data: t.data.subarray(i * per, (i + 1) * per) };
}

function deriveShapes(w: VisionWeights, s: VisionSettings): VisionShapes {
  const clip = w.clipConfig;
  const convnext = convNextConfig(w.convnext);
  const stageSizes: [number, number][] = STAGES.map((l) => {
    const side = s.imageSizeAux / (4 * 2 ** l);
    return [side, side];
  });
  const grid = Math.sqrt(clipTokens(clip));
  if (stageSizes[3]![0] !== grid) {
    throw new InputError(`image_size_aux ${s.imageSizeAux} gives a ${stageSizes[3]![0]}-pixel last ConvNeXt stage; the fusion needs the CLIP grid of ${grid}`);
  }
  const llmWidth = projectorWidth(w.checkpoint);
  return { clip, convnext, stageSizes, llmWidth };
}

function buildViewGraph(sh: VisionShapes, s: VisionSettings): Graph {
  const g = new Graph('low_res_view');
  const aux = g.input('pixel_values_aux', 'F32', ['batch', 3, s.imageSizeAux, s.imageSizeAux]);
  g.output(resizeBilinear(g, aux, sh.clip.imageSize, sh.clip.imageSize), 'pixel_values');
  return g;
}

function buildEncoderGraph(w: VisionWeights, sh: VisionShapes, s: VisionSettings, debug: boolean): Graph {
  const g = new Graph('vision_encoder');
  const D = sh.clip.hiddenSize;
  const px = g.input('pixel_values', 'F32', ['batch', 3, sh.clip.imageSize, sh.clip.imageSize]);
  const aux = g.input('pixel_values_aux', 'F32', ['batch', 3, s.imageSizeAux, s.imageSizeAux]);
  const clip = clipVision(g, new Params(g, w.clip, 'vision_model.'), sh.clip, px, s.visualSelectLayer);
  const stages = convNextStages(g, new Params(g, w.convnext, 'visual.trunk.'), sh.convnext, aux);
  const ck = new Params(g, w.checkpoint);
  const grid = Math.sqrt(clipTokens(sh.clip));
  const fused = s.fusion === false ? clip.features : fuseModule(g, ck.sub('fuse_module.'), { low: D, high: sh.convnext.dims[3]!, grid }, clip.features, stages[3]!);
  const tokens = projector(g, ck.sub('projector.'), s.projectorDepth, D, sh.llmWidth, fused, 'projector');
  g.output(tokens, 'image_tokens');
  stages.forEach((v, l) => g.output(v, `stage_${l}`));
  if (debug) {
    g.output(clip.features, 'low_res_feat');
    g.output(fused, 'fused');
    clip.hidden.forEach((v, i) => g.output(v, `hidden_state_${i}`));
  }
  return g;
}

function buildBoxGraph(w: VisionWeights, sh: VisionShapes, s: VisionSettings): Graph {
  const g = new Graph('object_features');
  const sumC = sh.convnext.dims.reduce((a, b) => a + b, 0);
  // Per image f: stages [F, C_l, H_l*W_l] @ weights [F, H_l*W_l, kMax] -> [F, C_l, kMax]; the
  // stages concatenated -> [F, kMax, sum C] -> [F*kMax, sum C]; the real boxes' rows (box_index).
  const parts = STAGES.map((l) => {
    const [h, wd] = sh.stageSizes[l]!;
    const C = sh.convnext.dims[l]!;
    const stage = g.input(`stage_${l}`, 'F32', ['images', C, h, wd]);
    const weights = g.input(`weights_${l}`, 'F32', ['images', h * wd, 'boxes']);
    const flat = reshape(g, stage, [0, C, h * wd], `stage${l}.flat`);
    return g.op1('MatMul', [flat, weights], {}, { name: `pool${l}` });
  });
  const index = g.input('box_index', 'I64', ['k']);
  const all = reshape(g, g.op1('Transpose', [g.op1('Concat', parts, { axis: 1 })], { perm: [0, 2, 1] }), [-1, sumC], 'box_rows');
  const pooled = g.op1('Gather', [all, index], { axis: 0 }, { name: 'box_pooled' });
  const tokens = projector(g, new Params(g, w.checkpoint, 'bbox_projector.'), s.projectorDepth, sumC, sh.llmWidth, pooled, 'bbox_projector');
  g.output(pooled, 'box_pooled');
  g.output(tokens, 'box_tokens');
  return g;
}
