// The frozen encoders' outputs for training: CLIP's layer features (low_res_feat [N, C]), the
// last ConvNeXt stage (high_feat [Ch, g, g]) and the pooled object features of the image's boxes
// (box_feats [k, sumC]; RoIAlign over the ConvNeXt stages, which do not learn either). They are
// what the training step graph takes as inputs, computed once per image per run and kept in
// memory up to a byte budget (an image's features do not change while the encoders are frozen),
// and, on request, in a folder on disk that later runs read (`--feature-cache DIR`): one
// safetensors file per image and box set, under a subfolder named by the encoders' fingerprint
// (their weight files' paths, sizes and modification times, the configs and settings), so that
// other encoders never read another's features.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Graph } from '../graph/graph.js';
import { resizeBilinear } from '../graph/blocks.js';
import { Session } from '../runtime/session.js';
import { F32Tensor } from '../core/tensor.js';
import { InputError } from '../core/errors.js';
import { WeightStore, readF32 } from '../weights/types.js';
import { SafetensorsStore } from '../weights/safetensors.js';
import { writeSafetensors } from '../weights/write-safetensors.js';
import { Params } from '../model/params.js';
import { ClipVisionConfig, clipTokens, clipVision } from '../model/clip-vit.js';
import { ConvNextConfig, convNextConfig, convNextStages } from '../model/convnext.js';
import { boxPoolingWeights, pooledBoxFeatures } from '../model/object-features.js';
import { VisionSettings, boxSpatialScale } from '../model/mg-llava-vision.js';
import { RgbImage } from '../preprocess/image.js';
import { clipPreprocess } from '../preprocess/clip-image.js';
import { BoxOptions, Detections, prepareBoxes } from '../preprocess/boxes.js';

export interface FrozenFeatures {
  /** [N, C] */
  lowRes: F32Tensor;
  /** [Ch, g, g] */
  highRes: F32Tensor;
  /** [k, sumC]; k >= 1 with boxes (the [0,0,0,0] placeholder when none survive), 0 without. */
  boxFeats: F32Tensor;
}

/** An image as the step graph takes it when the encoders learn (step-graph.ts StepEncoders). */
export interface ImageInputs {
  /** [3, s, s] */
  pixelValues: F32Tensor;
  /** [3, S, S] */
  pixelValuesAux: F32Tensor;
  /** Per ConvNeXt stage: [H_l * W_l, k] pooling weights of the image's boxes (k = 0 without boxes). */
  boxWeights: F32Tensor[];
}

export interface FrozenVisionWeights {
  clip: WeightStore;
  clipConfig: ClipVisionConfig;
  convnext: WeightStore;
}

const STAGES = [0, 1, 2, 3];

export class FrozenVision {
  private readonly cache = new Map<string, FrozenFeatures>();
  private cachedBytes = 0;

  private constructor(
    readonly clip: ClipVisionConfig,
    readonly convnext: ConvNextConfig,
    readonly settings: VisionSettings,
    readonly stageSizes: [number, number][],
    readonly weights: FrozenVisionWeights,
    private readonly view: Session,
    private readonly encoder: Session,
    private readonly pool: Session,
    /** Bytes of features kept in memory. */
    private readonly budget: number,
  ) {}

  static async load(w: FrozenVisionWeights, settings: VisionSettings, opts: { threads?: number; cacheBytes?: number; featureCache?: string } = {}): Promise<FrozenVision> {
    const convnext = convNextConfig(w.convnext);
    const S = settings.imageSizeAux;
    const stageSizes = STAGES.map((l): [number, number] => [S / (4 * 2 ** l), S / (4 * 2 ** l)]);
    const grid = Math.sqrt(clipTokens(w.clipConfig));
    if (stageSizes[3]![0] !== grid) throw new InputError(`image_size_aux ${S} gives a ${stageSizes[3]![0]}-pixel last ConvNeXt stage; the fusion needs the CLIP grid of ${grid}`);

    const view = new Graph('train_low_res_view');
    const aux = view.input('pixel_values_aux', 'F32', [1, 3, S, S]);
    view.output(resizeBilinear(view, aux, w.clipConfig.imageSize, w.clipConfig.imageSize), 'pixel_values');

    const enc = new Graph('train_frozen_encoders');
    const px = enc.input('pixel_values', 'F32', [1, 3, w.clipConfig.imageSize, w.clipConfig.imageSize]);
    const px2 = enc.input('pixel_values_aux', 'F32', [1, 3, S, S]);
    const clip = clipVision(enc, new Params(enc, w.clip, 'vision_model.'), w.clipConfig, px, settings.visualSelectLayer);
    enc.output(clip.features, 'low_res_feat');
    convNextStages(enc, new Params(enc, w.convnext, 'visual.trunk.'), convnext, px2).forEach((v, l) => enc.output(v, `stage_${l}`));

    const pool = new Graph('train_box_pooling');
    const stages = STAGES.map((l) => pool.input(`stage_${l}`, 'F32', [1, convnext.dims[l]!, ...stageSizes[l]!]));
    const weights = STAGES.map((l) => pool.input(`weights_${l}`, 'F32', [stageSizes[l]![0] * stageSizes[l]![1], 'boxes']));
    pool.output(pooledBoxFeatures(pool, stages, weights, convnext.dims, stageSizes), 'box_pooled');

    const make = (g: Graph) => Session.fromGraph(g, { threads: opts.threads, prepack: true });
    const [v, e, p] = await Promise.all([make(view), make(enc), make(pool)]);
    const fv = new FrozenVision(w.clipConfig, convnext, settings, stageSizes, w, v, e, p, opts.cacheBytes ?? 1 << 30);
    if (opts.featureCache) fv.diskDir = join(resolve(opts.featureCache), encoderFingerprint(w, settings));
    return fv;
  }

  get boxWidth(): number {
    return this.convnext.dims.reduce((a, b) => a + b, 0);
  }

  get grid(): number {
    return Math.sqrt(clipTokens(this.clip));
  }

  /**
   * Features of one image (decoded) and its detector boxes (undefined: no object tokens), as the
   * release's training pipeline prepares them. `key` identifies the image and its box settings
   * in the in-memory cache (omit to skip the cache).
   */
  async features(image: RgbImage | (() => Promise<RgbImage>), detections: Detections | undefined, boxOptions: BoxOptions, key?: string): Promise<FrozenFeatures> {
    const hit = key === undefined ? undefined : this.cache.get(key) ?? this.fromDisk(key);
    if (hit) return this.remember(key!, hit);
    const x = await this.prepare(image, detections, boxOptions);
    const out = await this.encoder.run({ pixel_values: batched(x.pixelValues), pixel_values_aux: batched(x.pixelValuesAux) });
    const lowRes = out.low_res_feat!;
    const high = out.stage_3!;
    let boxFeats: F32Tensor = { dims: [0, this.boxWidth], data: new Float32Array(0) };
    if (x.boxWeights[0]!.dims[1]! > 0) {
      const feeds: Record<string, F32Tensor> = {};
      STAGES.forEach((l) => {
        feeds[`stage_${l}`] = out[`stage_${l}`]!;
        feeds[`weights_${l}`] = x.boxWeights[l]!;
      });
      boxFeats = (await this.pool.run(feeds)).box_pooled!;
    }
    const f: FrozenFeatures = {
      lowRes: { dims: lowRes.dims.slice(1), data: lowRes.data },
      highRes: { dims: high.dims.slice(1), data: high.data },
      boxFeats,
    };
    if (key === undefined) return f;
    this.toDisk(key, f);
    return this.remember(key, f);
  }

  /** Folder of this encoder set's features on disk, when asked for. */
  private diskDir?: string;

  private remember(key: string, f: FrozenFeatures): FrozenFeatures {
    if (this.cache.has(key)) return f;
    const bytes = 4 * (f.lowRes.data.length + f.highRes.data.length + f.boxFeats.data.length);
    if (this.cachedBytes + bytes <= this.budget) {
      this.cache.set(key, f);
      this.cachedBytes += bytes;
    }
    return f;
  }

  private diskPath(key: string): string | undefined {
    return this.diskDir && join(this.diskDir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.safetensors`);
  }

  private fromDisk(key: string): FrozenFeatures | undefined {
    const path = this.diskPath(key);
    if (!path || !existsSync(path)) return undefined;
    try {
      const st = SafetensorsStore.open(path);
      if (st.metadata['key'] !== key) return undefined; // a hash collision, or another writer's
      const t = (name: string): F32Tensor => {
        const r = st.get(name)!;
        return { dims: [...r.shape], data: Float32Array.from(readF32(r)) };
      };
      return { lowRes: t('low_res_feat'), highRes: t('high_feat'), boxFeats: t('box_feats') };
    } catch {
      return undefined; // unreadable: computed again and rewritten
    }
  }

  private toDisk(key: string, f: FrozenFeatures): void {
    const path = this.diskPath(key);
    if (!path) return;
    mkdirSync(dirname(path), { recursive: true });
    writeSafetensors(path, [
      { name: 'low_res_feat', dtype: 'F32', shape: f.lowRes.dims, data: f.lowRes.data },
      { name: 'high_feat', dtype: 'F32', shape: f.highRes.dims, data: f.highRes.data },
      { name: 'box_feats', dtype: 'F32', shape: f.boxFeats.dims, data: f.boxFeats.data },
    ], { key });
  }

  /**
   * The pixels and box pooling weights of one image, for a step graph in which the encoders
   * learn (the same preprocessing and box pipeline as `features`), kept in the same cache.
   */
  async inputs(image: RgbImage | (() => Promise<RgbImage>), detections: Detections | undefined, boxOptions: BoxOptions, key?: string): Promise<ImageInputs> {
    const hit = key === undefined ? undefined : this.inputCache.get(key);
    if (hit) return hit;
    const out = await this.prepare(image, detections, boxOptions);
    const { boxWeights } = out;
    if (key !== undefined) {
      const bytes = 4 * (out.pixelValues.data.length + out.pixelValuesAux.data.length + boxWeights.reduce((a, w) => a + w.data.length, 0));
      if (this.cachedBytes + bytes <= this.budget) {
        this.inputCache.set(key, out);
        this.cachedBytes += bytes;
      }
    }
    return out;
  }

  private readonly inputCache = new Map<string, ImageInputs>();

  /**
   * The release's preprocessing of one image: pixel_values_aux (pad to square, resize, crop,
   * normalise), pixel_values (the bilinear low-res view of it) and the pooling weights of its
   * boxes after the box pipeline (k = 0 columns without detections).
   */
  private async prepare(image: RgbImage | (() => Promise<RgbImage>), detections: Detections | undefined, boxOptions: BoxOptions): Promise<ImageInputs> {
    const img = typeof image === 'function' ? await image() : image;
    const S = this.settings.imageSizeAux;
    const pre = clipPreprocess(img, { size: S });
    const aux: F32Tensor = { dims: [1, 3, S, S], data: pre.pixelValues };
    const low = (await this.view.run({ pixel_values_aux: aux })).pixel_values!;
    const boxes = detections ? prepareBoxes(detections, pre.geometry, boxOptions).boxes : new Float32Array(0);
    const boxWeights = boxes.length
      ? boxPoolingWeights(boxes, this.stageSizes, { outputSize: this.settings.boxFeatSize, spatialScale: boxSpatialScale(this.stageSizes[0]![0], this.settings) })
      : this.stageSizes.map(([h, w]) => ({ dims: [h * w, 0], data: new Float32Array(0) }));
    return { pixelValues: { dims: low.dims.slice(1), data: low.data }, pixelValuesAux: { dims: [3, S, S], data: aux.data }, boxWeights };
  }

  async release(): Promise<void> {
    await Promise.all([this.view.release(), this.encoder.release(), this.pool.release()]);
  }
}

/** What the features depend on besides the image and its boxes: the encoders' files and settings. */
function encoderFingerprint(w: FrozenVisionWeights, settings: VisionSettings): string {
  const h = createHash('sha256').update(JSON.stringify({ version: 1, settings, clip: w.clipConfig }));
  const files = new Set<string>();
  for (const store of [w.clip, w.convnext]) {
    for (const k of store.keys()) {
      const src = store.get(k)!.source;
      if (src.kind === 'file') files.add(src.path);
      else h.update(`${k}\n`).update(src.bytes);
    }
  }
  for (const f of [...files].sort()) {
    const st = statSync(f);
    h.update(`\n${f}\n${st.size}\n${st.mtimeMs}`);
  }
  return h.digest('hex').slice(0, 16);
}

/** [...] -> [1, ...] (a view, no copy). */
function batched(t: F32Tensor): F32Tensor {
  return { dims: [1, ...t.dims], data: t.data };
}
