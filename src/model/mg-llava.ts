// The MG-LLaVA spine. Field names follow the checkpoint prefixes: the vision side
// (visual_encoder, visual_encoder_aux, fuse_module, projector, bbox_projector) turns an image and
// its boxes into visual tokens; `llm` (with the checkpoint's llm.* weights) answers.

import { F32Tensor } from '../core/tensor.js';
import { InputError } from '../core/errors.js';
import { RgbImage } from '../preprocess/image.js';
import { clipPreprocess } from '../preprocess/clip-image.js';
import { decodeImage } from '../preprocess/decode.js';
import { BoxOptions, Detections, prepareBoxes } from '../preprocess/boxes.js';
import { openWeights } from '../weights/open.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { PromptTemplate, getTemplate } from '../tokenizer/templates.js';
import { ModelFiles, ModelSpec, resolveModelFiles } from './model-files.js';
import { VisionModel, VisionOptions } from './mg-llava-vision.js';
import { loadVisionModel } from './load-vision.js';
import { CausalLM } from './llm/causal-lm.js';
import { ChatInput, ChatStream, chatTurn } from './chat.js';
import { DEFAULT_DETECTION_THRESHOLD, DetectionResult, Owlv2Detector, checkThreshold, toDetections } from '../detect/owlv2.js';
import { TagSource, cocoTags, fixedTags } from '../detect/tags.js';

export interface VisualTokens {
  /** [N, H]: fused CLIP/ConvNeXt tokens after `projector` (576 x H). */
  imageTokens: F32Tensor;
  /** [k, H]: object tokens after `bbox_projector` (k = 0 without boxes). */
  boxTokens: F32Tensor;
  /** [k, 4]: the boxes the object tokens come from, in image_size_aux pixels. */
  boxes: F32Tensor;
  /** One label per box ('' for the placeholder box when none survived). */
  labels: string[];
  /** What the configured detector found, when it ran (no boxes were given). */
  detections?: DetectionResult;
  /** [3, s, s] low-resolution view fed to CLIP. */
  pixelValues: F32Tensor;
  /** [3, S, S] high-resolution input fed to ConvNeXt. */
  pixelValuesAux: F32Tensor;
}

export interface LoadOptions extends VisionOptions {
  /** Prompt template name, overriding mgllava_config.json's prompt_template. */
  template?: string;
  /** Load the LLM and tokenizer (default true; `encode` needs only the vision side). */
  llm?: boolean;
  /** Tags and threshold for the configured detector, overriding mgllava_config.json's. */
  detection?: DetectionSettings;
}

export interface DetectionSettings {
  /** A tag source, or a fixed tag list (default: the config's tags, else COCO-80). */
  tags?: TagSource | readonly string[];
  /** Score threshold in [0, 1] (default: the config's, else the release's 0.2). */
  threshold?: number;
}

/** A chat request: an image (a path or decoded pixels, with optional detector boxes) or its cached visual tokens. */
export interface ChatRequest extends ChatInput {
  image?: RgbImage | string;
  /** Detector boxes in the image's pixels (the release's box JSON, parsed). */
  boxes?: Detections;
  boxOptions?: BoxOptions;
  visualTokens?: Pick<VisualTokens, 'imageTokens' | 'boxTokens'>;
}

interface Language {
  llm: CausalLM;
  tokenizer: Tokenizer;
  template: PromptTemplate;
}

export class MgLlava {
  private vision?: Promise<VisionModel>;
  private detectorModel?: Promise<Owlv2Detector>;

  private constructor(
    readonly files: ModelFiles,
    private readonly opts: LoadOptions,
    private readonly language?: Language,
  ) {}

  static async load(spec: ModelSpec, opts: LoadOptions = {}): Promise<MgLlava> {
    const files = resolveModelFiles(spec);
    const d = opts.detection;
    if (d && (d.tags !== undefined || d.threshold !== undefined) && !files.detector) {
      throw new InputError('detector tags or threshold were given but no detector is configured (--detector, or "detector" in mgllava_config.json)', '--detector');
    }
    if (d?.threshold !== undefined) checkThreshold(d.threshold, '--threshold');
    if (opts.llm === false) {
      const m = new MgLlava(files, opts);
      await m.visionModel();
      return m;
    }
    if (!files.llm) throw new InputError('no LLM folder: set "llm" in mgllava_config.json or pass --llm', '--llm');
    const template = getTemplate(opts.template ?? files.promptTemplate);
    const tokenizer = Tokenizer.fromFolder(files.llm);
    const llm = await CausalLM.load(files.llm, { checkpoint: openWeights(files.checkpoint), loraAlpha: files.loraAlpha, threads: opts.threads, packedCache: opts.packedCache, onNote: opts.onNote });
    return new MgLlava(files, opts, { llm, tokenizer, template });
  }

  /** The vision side, built on first use (a text-only or cached-token chat never needs it). */
  visionModel(): Promise<VisionModel> {
    this.vision ??= loadVisionModel(this.files, this.opts);
    return this.vision;
  }

  /** True when a detector is configured: images without boxes get detected boxes. */
  get detectsBoxes(): boolean {
    return this.files.detector !== undefined;
  }

  /** The configured OWLv2 detector, loaded on first use. */
  detector(): Promise<Owlv2Detector> {
    const d = this.files.detector;
    if (!d) throw new InputError('no detector is configured (--detector, or "detector" in mgllava_config.json)', '--detector');
    this.detectorModel ??= Owlv2Detector.load(d.path, { threads: this.opts.threads, processing: d.processing, packedCache: this.opts.packedCache, onNote: this.opts.onNote });
    return this.detectorModel;
  }

  /** Where the detector's tags come from: load options, else the config, else COCO-80. */
  get tagSource(): TagSource {
    const t = this.opts.detection?.tags ?? this.files.detector?.tags;
    if (t === undefined || t === 'coco') return cocoTags();
    return Array.isArray(t) ? fixedTags(t as readonly string[]) : (t as TagSource);
  }

  /** Run the configured detector on an image (the release's box generator, tags from tagSource). */
  async detectObjects(image: RgbImage): Promise<DetectionResult> {
    const detector = await this.detector();
    const tags = await this.tagSource.tagsFor(image);
    const threshold = this.opts.detection?.threshold ?? this.files.detector?.threshold ?? DEFAULT_DETECTION_THRESHOLD;
    return detector.detect(image, tags, { threshold });
  }

  get template(): PromptTemplate | undefined {
    return this.language?.template;
  }

  /**
   * Visual tokens of one decoded image and, optionally, its detector boxes. Without boxes and
   * with a detector configured, the detector finds them (null: no boxes and no detection).
   */
  async encode(image: RgbImage, detections?: Detections | null, boxOptions?: BoxOptions): Promise<VisualTokens> {
    let found: DetectionResult | undefined;
    if (detections === undefined && this.detectsBoxes) {
      found = await this.detectObjects(image);
      detections = toDetections(found);
    }
    const vision = await this.visionModel();
    const S = vision.settings.imageSizeAux;
    const pre = clipPreprocess(image, { size: S });
    const aux: F32Tensor = { dims: [1, 3, S, S], data: pre.pixelValues };
    const low = await vision.lowResView(aux);
    const enc = await vision.encodeImage(low, aux);
    const boxes = detections ? prepareBoxes(detections, pre.geometry, boxOptions) : undefined;
    const boxData = boxes?.boxes ?? new Float32Array(0);
    const objects = await vision.encodeBoxes(enc.stages, boxData);
    return {
      imageTokens: drop0(enc.imageTokens),
      boxTokens: objects.boxTokens,
      boxes: { dims: [boxData.length / 4, 4], data: boxData },
      labels: boxes ? [...boxes.labels] : [],
      ...(found ? { detections: found } : {}),
      pixelValues: drop0(low),
      pixelValuesAux: drop0(aux),
    };
  }

  /**
   * Answer a question, optionally about an image; iterate the stream for tokens as they come,
   * or await `.result` / `.complete()` for the whole answer.
   */
  chat(req: ChatRequest): ChatStream {
    const language = this.language;
    if (!language) throw new Error('this model was loaded without its LLM (llm: false)');
    if (req.boxes && !req.image) throw new InputError('boxes were given without an image');
    return new ChatStream(async function* (this: MgLlava) {
      let visual = req.visualTokens;
      let encodeMs = 0;
      if (!visual && req.image) {
        const t0 = performance.now();
        const image = typeof req.image === 'string' ? await decodeImage(req.image) : req.image;
        visual = await this.encode(image, req.boxes, req.boxOptions);
        encodeMs = performance.now() - t0;
      }
      return yield* chatTurn(language, req, visual, encodeMs);
    }.bind(this));
  }

  async release(): Promise<void> {
    if (this.vision) await (await this.vision).release();
    if (this.detectorModel) await (await this.detectorModel).release();
    await this.language?.llm.release();
  }
}

/** [1, ...] -> [...] */
function drop0(t: F32Tensor): F32Tensor {
  return { dims: t.dims.slice(1), data: t.data };
}
