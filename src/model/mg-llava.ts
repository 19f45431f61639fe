// The MG-LLaVA spine. Field names follow the checkpoint prefixes; this part is the
// vision side: image (+ detector boxes) -> visual tokens, the cache that chat reuses.

import { F32Tensor } from '../core/tensor.js';
import { RgbImage } from '../preprocess/image.js';
import { clipPreprocess } from '../preprocess/clip-image.js';
import { BoxOptions, Detections, prepareBoxes } from '../preprocess/boxes.js';
import { ModelFiles, ModelSpec, resolveModelFiles } from './model-files.js';
import { VisionModel, VisionOptions } from './mg-llava-vision.js';
import { loadVisionModel } from './load-vision.js';

export interface VisualTokens {
  /** [N, H]: fused CLIP/ConvNeXt tokens after `projector` (576 x H). */
  imageTokens: F32Tensor;
  /** [k, H]: object tokens after `bbox_projector` (k = 0 without boxes). */
  boxTokens: F32Tensor;
  /** [k, 4]: the boxes the object tokens come from, in image_size_aux pixels. */
  boxes: F32Tensor;
  /** One label per box ('' for the placeholder box when none survived). */
  labels: string[];
  /** [3, s, s] low-resolution view fed to CLIP. */
  pixelValues: F32Tensor;
  /** [3, S, S] high-resolution input fed to ConvNeXt. */
  pixelValuesAux: F32Tensor;
}

export class MgLlava {
  private constructor(readonly files: ModelFiles, readonly vision: VisionModel) {}

  static async load(spec: ModelSpec, opts: VisionOptions = {}): Promise<MgLlava> {
    const files = resolveModelFiles(spec);
    return new MgLlava(files, await loadVisionModel(files, opts));
  }

  /** Visual tokens of one decoded image and, optionally, its detector boxes. */
  async encode(image: RgbImage, detections?: Detections, boxOptions?: BoxOptions): Promise<VisualTokens> {
    const S = this.vision.settings.imageSizeAux;
    const pre = clipPreprocess(image, { size: S });
    const aux: F32Tensor = { dims: [1, 3, S, S], data: pre.pixelValues };
    const low = await this.vision.lowResView(aux);
    const enc = await this.vision.encodeImage(low, aux);
    const boxes = detections ? prepareBoxes(detections, pre.geometry, boxOptions) : undefined;
    const boxData = boxes?.boxes ?? new Float32Array(0);
    const objects = await this.vision.encodeBoxes(enc.stages, boxData);
    return {
      imageTokens: drop0(enc.imageTokens),
      boxTokens: objects.boxTokens,
      boxes: { dims: [boxData.length / 4, 4], data: boxData },
      labels: boxes ? [...boxes.labels] : [],
      pixelValues: drop0(low),
      pixelValuesAux: drop0(aux),
    };
  }

  async release(): Promise<void> {
    await this.vision.release();
  }
}

/** [1, ...] -> [...] */
function drop0(t: F32Tensor): F32Tensor {
  return { dims: t.dims.slice(1), data: t.data };
}
