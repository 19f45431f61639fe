// The OWLv2 open-vocabulary detector (HF Owlv2ForObjectDetection folders: config.json,
// model.safetensors, tokenizer files, optional preprocessor_config.json) as the release's box
// generator uses it (mg_llava/module/chat_utils.py): prompts "a photo of {tag}", queries padded
// to the text tower's 16 positions, the image padded to a square at the bottom/right and resized
// to the model size, post_process_object_detection at threshold 0.2 with target size
// max(w, h) x max(w, h), labels mapped back to the tags.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import { F32Tensor } from '../core/tensor.js';
import { RgbImage } from '../preprocess/image.js';
import { Detections } from '../preprocess/boxes.js';
import { Session } from '../runtime/session.js';
import { packedCacheRoot } from '../runtime/packed-cache.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { openWeights } from '../weights/open.js';
import { Owlv2Config, Owlv2ProcessorConfig, owlv2Config, owlv2ProcessorConfig, patchGrid } from './owlv2-config.js';
import { buildTextGraph, buildVisionGraph } from './owlv2-graph.js';
import { Owlv2Processing, owlv2Preprocess } from './owlv2-image.js';
import { postProcess } from './post-process.js';
import { checkTags, promptFor } from './tags.js';

export const OWLV2_PROCESSING: readonly Owlv2Processing[] = ['transformers5', 'transformers4'];

/** The release's score threshold (chat_utils.py, image_offline_to_bbox.py). */
export const DEFAULT_DETECTION_THRESHOLD = 0.2;

export interface DetectorLoadOptions {
  threads?: number;
  /** Also output the detection features (parity tests). */
  debugOutputs?: boolean;
  /**
   * Image processing to reproduce: 'transformers5' (default, the fixtures' and OWLv2's official
   * black padding) or 'transformers4' (grey padding and scipy resize, as the release's box files
   * were made); see owlv2-image.ts.
   */
  processing?: Owlv2Processing;
  /** Folder of this machine's pre-packed weights, or false (as VisionOptions.packedCache). */
  packedCache?: string | false;
  onNote?: (message: string) => void;
}

export interface DetectOptions {
  /** Keep boxes whose score is above this (default 0.2). */
  threshold?: number;
}

/** Token ids of the queries, as Owlv2Processor gives them: [Q, L] padded, with attention mask. */
export interface QueryTokens {
  readonly ids: number[][];
  readonly attentionMask: number[][];
  /** Position of each query's pooled token (HF: argmax of the ids = the first EOS). */
  readonly eosIndex: number[];
}

export interface DetectorOutputs {
  /** [1, N, Q] */
  logits: F32Tensor;
  /** [1, N] */
  objectnessLogits: F32Tensor;
  /** [1, N, 4] cxcywh in 0..1 of the padded square */
  predBoxes: F32Tensor;
  /** Only with debugOutputs. */
  debug: Record<string, F32Tensor>;
}

export interface DetectionResult {
  /** [k, 4] x0, y0, x1, y1 in pixels of the original image, as post_process_object_detection gives them. */
  readonly boxes: Float32Array;
  readonly scores: Float32Array;
  /** Index into `tags` of each box. */
  readonly labelIds: Int32Array;
  /** The tag of each box. */
  readonly labels: readonly string[];
  /** The tags that were queried. */
  readonly tags: readonly string[];
  readonly threshold: number;
  readonly timings: { preprocessMs: number; textMs: number; visionMs: number };
}

function readJson(path: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InputError(`${path}: cannot read JSON (${(e as Error).message})`, path);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InputError(`${path}: expected a JSON object`, path);
  return v as Record<string, unknown>;
}

/** Throws unless 0 <= t <= 1. */
export function checkThreshold(t: number, what = 'threshold'): number {
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0 || t > 1) throw new InputError(`${what} must be a number in [0, 1], got ${t}`, what);
  return t;
}

export class Owlv2Detector {
  private readonly queryCache = new Map<string, Float32Array>();

  private constructor(
    readonly dir: string,
    readonly config: Owlv2Config,
    readonly processor: Owlv2ProcessorConfig,
    readonly tokenizer: Tokenizer,
    readonly processing: Owlv2Processing,
    private readonly padId: number,
    private readonly text: Session,
    private readonly vision: Session,
  ) {}

  static async load(dir: string, opts: DetectorLoadOptions = {}): Promise<Owlv2Detector> {
    if (opts.processing !== undefined && !OWLV2_PROCESSING.includes(opts.processing)) {
      throw new InputError(`unknown OWLv2 image processing ${JSON.stringify(opts.processing)} (expected ${OWLV2_PROCESSING.join(' or ')})`, 'processing');
    }
    let isDir = false;
    try {
      isDir = statSync(dir).isDirectory();
    } catch {
      throw new InputError(`${dir}: no such detector folder`, dir);
    }
    if (!isDir) throw new InputError(`${dir}: the detector must be an OWLv2 model folder (config.json, model.safetensors, tokenizer.json)`, dir);
    const cfgPath = join(dir, 'config.json');
    if (!existsSync(cfgPath)) throw new InputError(`${dir}: no config.json in the detector folder`, dir);
    const config = owlv2Config(readJson(cfgPath), cfgPath);
    const ppPath = join(dir, 'preprocessor_config.json');
    const processor = owlv2ProcessorConfig(existsSync(ppPath) ? readJson(ppPath) : undefined, ppPath, config.vision.imageSize);
    if (!existsSync(join(dir, 'tokenizer.json'))) {
      throw new InputError(`${dir}: no tokenizer.json in the detector folder (OWLv2 needs its CLIP tokenizer)`, dir);
    }
    const tokenizer = Tokenizer.fromFolder(dir);
    if (tokenizer.bosId === undefined || tokenizer.eosId === undefined) {
      throw new InputError(`${dir}: the tokenizer has no BOS/EOS tokens (expected a CLIP tokenizer)`, dir);
    }
    const padId = padTokenId(dir, tokenizer);
    const store = openWeights(dir);
    const packedCache = packedCacheRoot(opts.packedCache);
    const make = (name: string, g: ReturnType<typeof buildTextGraph>) => Session.fromGraph(g, { threads: opts.threads, prepack: true, packedCache, onNote: opts.onNote }, name);
    const [text, vision] = await Promise.all([
      make('OWLv2 text tower', buildTextGraph(store, config)),
      make('OWLv2 vision tower', buildVisionGraph(store, config, opts.debugOutputs ?? false)),
    ]);
    return new Owlv2Detector(dir, config, processor, tokenizer, opts.processing ?? 'transformers5', padId, text, vision);
  }

  /** Model input side S (960 for OWLv2-L). */
  get imageSize(): number {
    return this.config.vision.imageSize;
  }

  /** Number of patches N (boxes per image before the threshold). */
  get patches(): number {
    return patchGrid(this.config.vision) ** 2;
  }

  /**
   * Queries -> ids padded to the text tower's length (16) with the pad token, as Owlv2Processor
   * (padding="max_length"). A query longer than that keeps its first tokens and its EOS (what
   * truncation=True would do; the release itself would fail on it).
   */
  tokenize(queries: readonly string[]): QueryTokens {
    const L = this.config.text.maxPositions;
    const eos = this.tokenizer.eosId!;
    const ids: number[][] = [];
    const attentionMask: number[][] = [];
    const eosIndex: number[] = [];
    for (const q of queries) {
      let t = this.tokenizer.encode(q);
      if (t.length > L) t = [...t.slice(0, L - 1), eos];
      const row = [...t, ...new Array<number>(L - t.length).fill(this.padId)];
      ids.push(row);
      attentionMask.push(row.map((_, i) => (i < t.length ? 1 : 0)));
      let best = 0;
      for (let i = 1; i < L; i++) if (row[i]! > row[best]!) best = i;
      eosIndex.push(best);
    }
    return { ids, attentionMask, eosIndex };
  }

  /** Text tower on already tokenised queries -> query_embeds [Q, P]. */
  async embedTokens(tok: QueryTokens): Promise<F32Tensor> {
    const Q = tok.ids.length;
    const L = this.config.text.maxPositions;
    const i64 = (rows: number[][]) => BigInt64Array.from(rows.flat(), (v) => BigInt(v));
    const out = await this.text.run({
      input_ids: { dims: [Q, L], data: i64(tok.ids) },
      attention_mask: { dims: [Q, L], data: i64(tok.attentionMask) },
      eos_index: { dims: [Q, 1], data: BigInt64Array.from(tok.eosIndex, (v) => BigInt(v)) },
    });
    return out.query_embeds!;
  }

  /** Embeddings of text queries (full prompts), cached per query text. */
  async embedQueries(queries: readonly string[]): Promise<F32Tensor> {
    const P = this.config.projectionDim;
    const missing = [...new Set(queries.filter((q) => !this.queryCache.has(q)))];
    if (missing.length) {
      const e = await this.embedTokens(this.tokenize(missing));
      missing.forEach((q, i) => this.queryCache.set(q, e.data.slice(i * P, (i + 1) * P)));
    }
    const data = new Float32Array(queries.length * P);
    queries.forEach((q, i) => data.set(this.queryCache.get(q)!, i * P));
    return { dims: [queries.length, P], data };
  }

  /** The image processor: RGB -> pixel_values [1, 3, S, S]. */
  preprocess(image: RgbImage): F32Tensor {
    const S = this.imageSize;
    const data = owlv2Preprocess(image, { size: S, mean: this.processor.mean, std: this.processor.std, rescale: this.processor.rescale, processing: this.processing });
    return { dims: [1, 3, S, S], data };
  }

  /** The detection model on preprocessed pixels and query embeddings. */
  async run(pixelValues: F32Tensor, queryEmbeds: F32Tensor): Promise<DetectorOutputs> {
    const out = await this.vision.run({ pixel_values: pixelValues, query_embeds: queryEmbeds });
    const { logits, objectness_logits, pred_boxes, ...debug } = out;
    return { logits: logits!, objectnessLogits: objectness_logits!, predBoxes: pred_boxes!, debug };
  }

  /** Boxes for `tags` in an image: the release's box generator with tags given. */
  async detect(image: RgbImage, tags: readonly string[], opts: DetectOptions = {}): Promise<DetectionResult> {
    const threshold = checkThreshold(opts.threshold ?? DEFAULT_DETECTION_THRESHOLD);
    const list = checkTags(tags, 'tags');
    const t0 = performance.now();
    const pixels = this.preprocess(image);
    const t1 = performance.now();
    const queries = await this.embedQueries(list.map(promptFor));
    const t2 = performance.now();
    const out = await this.run(pixels, queries);
    const t3 = performance.now();
    const pp = postProcess({ logits: out.logits.data, predBoxes: out.predBoxes.data, queries: list.length }, threshold, Math.max(image.width, image.height));
    return {
      boxes: pp.boxes,
      scores: pp.scores,
      labelIds: pp.labels,
      labels: Array.from(pp.labels, (i) => list[i]!),
      tags: list,
      threshold,
      timings: { preprocessMs: t1 - t0, textMs: t2 - t1, visionMs: t3 - t2 },
    };
  }

  async release(): Promise<void> {
    await Promise.all([this.text.release(), this.vision.release()]);
  }
}

/** tokenizer_config.json's pad_token (CLIP's is <|endoftext|>, OWLv2's hub files say "!"), else EOS. */
function padTokenId(dir: string, tok: Tokenizer): number {
  const cfgPath = join(dir, 'tokenizer_config.json');
  let pad: unknown;
  if (existsSync(cfgPath)) pad = readJson(cfgPath)['pad_token'];
  const mapPath = join(dir, 'special_tokens_map.json');
  if (pad === undefined && existsSync(mapPath)) pad = readJson(mapPath)['pad_token'];
  const content = typeof pad === 'string' ? pad : pad && typeof pad === 'object' ? (pad as Record<string, unknown>)['content'] : undefined;
  const id = typeof content === 'string' ? tok.tokenId(content) : undefined;
  return id ?? tok.eosId!;
}

/**
 * The detections as the release's box JSON: {"boxes", "labels", "scores"} in image pixels. With
 * `integerBoxes`, boxes are truncated toward zero as the release stores them (`boxes.int()`);
 * otherwise the float32 values of post_process_object_detection.
 */
export function detectionsJson(r: DetectionResult, integerBoxes = false): { boxes: number[][]; labels: string[]; scores: number[] } {
  const boxes: number[][] = [];
  for (let i = 0; i < r.labels.length; i++) {
    const b = Array.from(r.boxes.subarray(i * 4, i * 4 + 4));
    boxes.push(integerBoxes ? b.map((v) => Math.trunc(v) + 0) : b);
  }
  return { boxes, labels: [...r.labels], scores: Array.from(r.scores) };
}

/**
 * The detections as the MG-LLaVA box pipeline receives them from the release's box generator:
 * boxes truncated to integers (`boxes.int()`), scores and tag labels.
 */
export function toDetections(r: DetectionResult): Detections {
  const boxes = Float64Array.from(r.boxes, (v) => Math.trunc(v) + 0);
  return { boxes, labels: [...r.labels], scores: Float64Array.from(r.scores) };
}
