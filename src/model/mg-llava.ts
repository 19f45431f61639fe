// The MG-LLaVA spine. Field names follow the checkpoint prefixes: the vision side
// (visual_encoder, visual_encoder_aux, fuse_module, projector, bbox_projector) turns an image and
// its boxes into visual tokens; `llm` (with the checkpoint's llm.* weights) answers.

import { F32Tensor } from '../core/tensor.js';
import { InputError } from '../core/errors.js';
import { RgbImage } from '../preprocess/image.js';
import { clipPreprocess } from '../preprocess/clip-image.js';
import { DEFAULT_MAX_PIXELS, decodeImage } from '../preprocess/decode.js';
import { readFile } from 'node:fs/promises';
import { BoxOptions, Detections, prepareBoxes } from '../preprocess/boxes.js';
import { openWeights } from '../weights/open.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { PromptTemplate, getTemplate } from '../tokenizer/templates.js';
import { ModelFiles, ModelSpec, resolveModelFiles } from './model-files.js';
import { VisionModel, VisionOptions } from './mg-llava-vision.js';
import { loadVisionModel } from './load-vision.js';
import { CausalLM } from './llm/causal-lm.js';
import { ChatInput, ChatStream, VisualSpan, chatTurn } from './chat.js';
import { StepBatcher } from '../generate/step-batcher.js';
import { PromptCache } from './prompt-cache.js';
import { CachedVisual, VisualTokenCache, imageHash, tokensHash, visualKey } from './visual-cache-lru.js';
import { DEFAULT_DETECTION_THRESHOLD, DetectionResult, Owlv2Detector, checkThreshold, toDetections } from '../detect/owlv2.js';
import { TagSource, cocoTags, fixedTags } from '../detect/tags.js';
import { VideoFrames } from '../video/frames.js';
import { VideoEncodeOptions, VideoTokens, VideoTokensInput, encodeVideoTokens, videoFramesOf, videoOptions, videoSequence, videoTokenCount, videoTokensKey } from '../video/video-tokens.js';

export type { VideoTokens, VideoEncodeOptions } from '../video/video-tokens.js';

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
  /**
   * What chat() keeps between requests (docs/serving-cache.md); false keeps nothing (every
   * turn encodes its image and prefills its whole prompt).
   */
  cache?: CacheOptions | false;
  /**
   * Conversations whose decode steps run together (batched decoding: one decoder run per step
   * for all of them, each against its own KV cache; default 1). Concurrent chat() calls share it.
   */
  parallel?: number;
}

export interface CacheOptions {
  /**
   * Visual tokens of recent images, by a hash of the image and its boxes (default 256 MiB:
   * 7B's 576 + k tokens x 4096 x 4 bytes are ~9.5 MB an image; 0: none).
   */
  visualBytes?: number;
  /**
   * KV caches of recent turns, reused for the longest common prompt prefix (default 2 GiB; 0:
   * none). An entry costs its cache's capacity x layers x 2 x kvHeads x headDim x 4 bytes:
   * 1 MiB per position for Vicuna-7B (float32, 32 layers x 32 heads x 128), 128 KiB for
   * LLaMA-3-8B (8 kv heads), so 2 GiB is ~2 image conversations of 7B.
   */
  promptBytes?: number;
}

export const DEFAULT_VISUAL_CACHE_BYTES = 256 * 2 ** 20;
export const DEFAULT_PROMPT_CACHE_BYTES = 2 * 2 ** 30;

export interface DetectionSettings {
  /** A tag source, or a fixed tag list (default: the config's tags, else COCO-80). */
  tags?: TagSource | readonly string[];
  /** Score threshold in [0, 1] (default: the config's, else the release's 0.2). */
  threshold?: number;
}

/**
 * A chat request: an image (a path, its encoded bytes, or decoded pixels, with optional
 * detector boxes) or its visual tokens.
 */
export interface ChatRequest extends ChatInput {
  /** A path, encoded bytes (PNG/JPEG/WebP/... as uploaded), or decoded pixels. */
  image?: RgbImage | string | Uint8Array;
  /**
   * Detector boxes in the image's pixels (the release's box JSON, parsed); null: no boxes, even
   * with a detector configured; undefined: the configured detector's, else none.
   */
  boxes?: Detections | null;
  boxOptions?: BoxOptions;
  /** Pixel limit when decoding a path or bytes (default DEFAULT_MAX_PIXELS). */
  maxPixels?: number;
  visualTokens?: Pick<VisualTokens, 'imageTokens' | 'boxTokens'>;
  /**
   * A video (a path, or frames already sampled and decoded): the question becomes the release's
   * `<video>\n{question}`, the marker receiving every frame's image tokens then box tokens, in
   * frame order. Not with an image.
   */
  video?: string | VideoFrames;
  /** Detector boxes per sampled frame (see VideoEncodeOptions.boxes). */
  videoBoxes?: Detections[] | null;
  videoOptions?: Omit<VideoEncodeOptions, 'boxes'>;
  /** A video's tokens as encodeVideo gives them (instead of video). */
  videoTokens?: VideoTokensInput;
}

interface Language {
  llm: CausalLM;
  tokenizer: Tokenizer;
  template: PromptTemplate;
}

export class MgLlava {
  private vision?: Promise<VisionModel>;
  private detectorModel?: Promise<Owlv2Detector>;
  /** Visual tokens of recent images (undefined: cache off). */
  readonly visualCache?: VisualTokenCache;
  /** KV caches of recent turns by their sequences (undefined: cache off). */
  readonly promptCache?: PromptCache;

  /** Gathers concurrent conversations' decode steps (parallel > 1). */
  private readonly batcher?: StepBatcher;

  /** Batched decoding so far: decoder runs and the rows they carried (undefined: parallel 1). */
  get decodeBatches(): { runs: number; rows: number } | undefined {
    return this.batcher && { runs: this.batcher.runs, rows: this.batcher.rows };
  }

  private constructor(
    readonly files: ModelFiles,
    private readonly opts: LoadOptions,
    private readonly language?: Language,
  ) {
    if (language && language.llm.batchSlots > 1) this.batcher = new StepBatcher(language.llm);
    const c = opts.cache === false ? { visualBytes: 0, promptBytes: 0 } : (opts.cache ?? {});
    const visualBytes = c.visualBytes ?? DEFAULT_VISUAL_CACHE_BYTES;
    const promptBytes = c.promptBytes ?? DEFAULT_PROMPT_CACHE_BYTES;
    if (visualBytes > 0) this.visualCache = new VisualTokenCache(visualBytes);
    if (promptBytes > 0 && language) this.promptCache = new PromptCache(promptBytes);
  }

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
    const llm = await CausalLM.load(files.llm, { checkpoint: openWeights(files.checkpoint), loraAlpha: files.loraAlpha, threads: opts.threads, packedCache: opts.packedCache, onNote: opts.onNote, batchSlots: opts.parallel });
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
   * Visual tokens of a video (a path: np.linspace-sampled frames decoded by ffmpeg; or frames
   * as loadVideoFrames gives them): per frame the video pixel transform, the vision towers and
   * fusion, and the object tokens of that frame's boxes (src/video/video-tokens.ts).
   */
  async encodeVideo(video: string | VideoFrames, o: VideoEncodeOptions = {}): Promise<VideoTokens> {
    const frames = await videoFramesOf(video, videoOptions(o).frames);
    const detect = this.detectsBoxes ? async (f: RgbImage) => toDetections(await this.detectObjects(f)) : undefined;
    return encodeVideoTokens({ vision: await this.visionModel(), ...(detect ? { detect } : {}) }, frames, o);
  }

  /**
   * Answer a question, optionally about an image; iterate the stream for tokens as they come,
   * or await `.result` / `.complete()` for the whole answer. A repeated image (same bytes or
   * pixels, same boxes) takes its visual tokens from the visual cache; a prompt sharing a
   * prefix with an earlier turn's (a follow-up with that turn as history) runs only the rest.
   */
  chat(req: ChatRequest): ChatStream {
    const language = this.language;
    if (!language) throw new Error('this model was loaded without its LLM (llm: false)');
    if (req.boxes && req.image === undefined) throw new InputError('boxes were given without an image');
    const hasVideo = req.video !== undefined || req.videoTokens !== undefined;
    if (hasVideo && (req.image !== undefined || req.visualTokens !== undefined)) throw new InputError('an image and a video in one request; give one or the other');
    if (req.videoBoxes && req.video === undefined) throw new InputError('video boxes were given without a video');
    return new ChatStream(async function* (this: MgLlava) {
      const signal = req.signal ?? req.generation?.signal;
      const t0 = performance.now();
      let span: VisualSpan | undefined;
      const found: Found = {};
      if (req.visualTokens) {
        const v = req.visualTokens;
        span = { key: this.promptCache ? tokensHash(v) : '', length: v.imageTokens.dims[0]! + v.boxTokens.dims[0]!, tokens: async () => v };
      } else if (req.videoTokens) {
        const v = req.videoTokens;
        const seq = videoSequence(v);
        span = { key: this.promptCache ? tokensHash({ imageTokens: seq, boxTokens: { dims: [0, seq.dims[1]!], data: new Float32Array(0) } }) : '', length: videoTokenCount(v), tokens: async () => ({ imageTokens: seq, boxTokens: { dims: [0, seq.dims[1]!], data: new Float32Array(0) } }), marker: 'video' };
      } else if (req.image !== undefined && !signal?.aborted) {
        span = await this.imageSpan(req, found);
      } else if (req.video !== undefined && !signal?.aborted) {
        span = await this.videoSpan(req, found);
      }
      // A model trained without the system block (mgllava_config.json "system_prompt": false) is asked without it by default.
      const system = req.system === undefined && this.files.systemPrompt === false ? null : req.system;
      const r = yield* chatTurn(language, { ...req, system, signal }, span, { promptCache: this.promptCache, batcher: this.batcher, encodeMs: performance.now() - t0 });
      const v = found.visual;
      // Tokens never asked for: the prompt cache covered the image's span, no vision ran.
      const visualCached = found.hit ?? (found.spanned ? true : undefined);
      return { ...r, ...(visualCached !== undefined ? { visualCached } : {}), ...(v?.detections ? { detections: v.detections } : {}) };
    }.bind(this));
  }

  /**
   * The image's span in the prompt: its key, its length (from the visual cache, or from a
   * prompt-cache entry holding it, else by encoding it now), its tokens (encoded on demand).
   */
  private async imageSpan(req: ChatRequest, found: Found): Promise<VisualSpan> {
    const input = req.image!;
    const maxPixels = req.maxPixels ?? DEFAULT_MAX_PIXELS;
    // A path is read here (its bytes are the key); decodeImage then gives its own errors.
    let bytes: Uint8Array | RgbImage;
    if (typeof input === 'string') {
      try {
        bytes = await readFile(input);
      } catch {
        await decodeImage(input, { maxPixels });
        throw new InputError(`${input}: cannot read image`, input);
      }
    } else {
      bytes = input;
    }
    const name = typeof input === 'string' ? input : undefined;
    const boxes = req.boxes !== undefined ? req.boxes : this.detectsBoxes ? { detector: this.detectorSettingsKey() } : null;
    const key = visualKey(imageHash(bytes), boxes, req.boxOptions);
    const make = async (): Promise<CachedVisual> => {
      const image = bytes instanceof Uint8Array ? await decodeImage(bytes, { maxPixels, ...(name ? { name } : {}) }) : bytes;
      const v = await this.encode(image, req.boxes, req.boxOptions);
      return { imageTokens: v.imageTokens, boxTokens: v.boxTokens, labels: v.labels, ...(v.detections ? { detections: v.detections } : {}), pixels: image.width * image.height };
    };
    return this.cachedSpan(key, maxPixels, make, found);
  }

  /**
   * A visual span under `key`: its tokens from the visual cache or `make`, its length from them,
   * or, without them at hand, from a prompt-cache entry that holds the span (then `make` runs
   * only if the prompt cache does not cover the span after all).
   */
  private async cachedSpan(key: string, maxPixels: number, make: () => Promise<CachedVisual>, found: Found, marker?: 'video'): Promise<VisualSpan> {
    const get = async (): Promise<CachedVisual> => {
      if (found.visual) return found.visual;
      if (this.visualCache) {
        const r = await this.visualCache.getOrMake(key, maxPixels, make);
        found.hit = r.hit;
        found.visual = r.visual;
      } else {
        found.hit = false;
        found.visual = await make();
      }
      return found.visual;
    };
    const cached = this.visualCache?.get(key, maxPixels);
    const length = cached ? undefined : this.promptCache?.visualLength(key);
    found.spanned = true;
    const m = marker ? { marker } : {};
    if (length !== undefined) return { key, length, tokens: get, ...m };
    const v = await get();
    return { key, length: v.imageTokens.dims[0]! + v.boxTokens.dims[0]!, tokens: async () => v, ...m };
  }

  /**
   * The video's span: keyed by its file's bytes (or frames), boxes and options, so that a
   * follow-up about the same video reuses the visual cache's tokens or the prompt cache's span.
   */
  private async videoSpan(req: ChatRequest, found: Found): Promise<VisualSpan> {
    const input = req.video!;
    const o: VideoEncodeOptions = { ...req.videoOptions, ...(req.videoBoxes !== undefined ? { boxes: req.videoBoxes } : {}) };
    let bytes: Uint8Array | VideoFrames;
    if (typeof input === 'string') {
      try {
        bytes = await readFile(input);
      } catch {
        throw new InputError(`${input}: cannot read video`, input);
      }
    } else {
      bytes = input;
    }
    const boxes = req.videoBoxes !== undefined ? req.videoBoxes : this.detectsBoxes ? { detector: this.detectorSettingsKey() } : null;
    const key = videoTokensKey(bytes, boxes, o);
    const make = async (): Promise<CachedVisual> => {
      const v = await this.encodeVideo(input, o);
      const H = v.imageTokens.dims[2]!;
      return { imageTokens: videoSequence(v), boxTokens: { dims: [0, H], data: new Float32Array(0) }, labels: v.labels.flat(), pixels: 0 };
    };
    return this.cachedSpan(key, Infinity, make, found, 'video');
  }

  /** The detector and its settings, as part of a visual-cache key. */
  private detectorSettingsKey(): string {
    const d = this.files.detector!;
    const tags = this.opts.detection?.tags ?? d.tags;
    const t = tags === undefined || tags === 'coco' ? 'coco' : Array.isArray(tags) ? JSON.stringify(tags) : `source:${(tags as TagSource).name}`;
    const threshold = this.opts.detection?.threshold ?? d.threshold ?? DEFAULT_DETECTION_THRESHOLD;
    return JSON.stringify({ path: d.path, tags: t, threshold, processing: d.processing ?? null });
  }

  async release(): Promise<void> {
    if (this.vision) await (await this.vision).release();
    if (this.detectorModel) await (await this.detectorModel).release();
    await this.language?.llm.release();
  }
}

/** What chat() learnt of its image's visual tokens. */
interface Found {
  visual?: CachedVisual;
  /** Whether they came from the visual cache (undefined: not needed). */
  hit?: boolean;
  /** The image's span was made. */
  spanned?: boolean;
}

/** [1, ...] -> [...] */
function drop0(t: F32Tensor): F32Tensor {
  return { dims: t.dims.slice(1), data: t.data };
}
