// A local MG-LLaVA as an eval Answerer, set as the release evaluates (DESIGN.md, Evaluation):
// BOS + the template's instruction with `<image>\n` + the question and no system text, greedy,
// max_new_tokens 100, the template's stop words, the benchmark's box cap; the answer decoded
// without special tokens and stripped. Boxes come from the release's box file (by the item's
// index / question_id), or from the configured detector (kept in the run folder's
// detections.jsonl, so that a rerun does not detect again), or are none at all (--no-boxes).
//
// A video item (MSVD-QA, MSRVTT-QA) is asked as the release's VideoObjectLLaVAProxyEvalDataset
// asks it: `<video>\n{question}` with no system text (use_system False), `frames` frames sampled
// with np.linspace (default 8), pad_image_to_square true, the benchmark's box cap (100). Its
// boxes: the release's video box JSON entry of the video's file stem (entry j for sampled frame
// j), or the detector on each sampled frame (kept in detections.jsonl by the stem, so that the
// questions about one video and a rerun detect once), or none (one placeholder box per frame).

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { toDetections } from '../detect/owlv2.js';
import { MgLlava, type DetectionSettings } from '../model/mg-llava.js';
import { resolveModelFiles, type ModelSpec } from '../model/model-files.js';
import { entryDetections } from '../preprocess/box-index.js';
import { detectionsFromObject, type Detections } from '../preprocess/boxes.js';
import { decodeImage } from '../preprocess/decode.js';
import type { RgbImage } from '../preprocess/image.js';
import type { MediaRef } from './dataset.js';
import { DEFAULT_VIDEO_FRAMES, loadVideoFrames, type VideoFrames } from '../video/frames.js';
import { videoBoxEntry } from '../video/boxes.js';
import { DETECTIONS_FILE, JsonlLog } from './run-dir.js';
import { pyStrip } from './vqa.js';
import type { Answerer, EvalItem } from './runner.js';

/** Where an item's boxes come from. */
export type BoxSource =
  | { kind: 'file'; path: string; index: Map<string, unknown> }
  /** the release's video box JSON, by file stem (src/video/boxes.ts readVideoBoxFile) */
  | { kind: 'video-file'; path: string; index: Map<string, Detections[]> }
  | { kind: 'detector' }
  | { kind: 'none' };

export interface LocalAnswererOptions {
  spec: ModelSpec;
  /** detector tags and threshold (when the boxes come from the detector) */
  detection?: DetectionSettings;
  threads?: number;
  template?: string;
  packedCache?: string | false;
  boxes: BoxSource;
  /** the benchmark's box cap (null: none) */
  boxLimit: number | null;
  maxNewTokens: number;
  /** the run folder (detector boxes are kept there) */
  runDir: string;
  maxPixels?: number;
  /** video items: frames sampled per video (default 8, the release's) */
  frames?: number;
  onNote?: (m: string) => void;
}

interface FrameDetections {
  boxes: number[][];
  labels: string[];
  scores: number[];
}

interface DetectionLine extends FrameDetections {
  key: string;
}

/** A video's detector boxes: one entry per sampled frame (`frame_indices` of `frames` sampled). */
interface VideoDetectionLine {
  key: string;
  video: true;
  frame_indices: number[];
  frames: FrameDetections[];
}

/** The release's video settings of an eval run (pad_image_to_square, limit_num, frames). */
export interface EvalVideoSettings {
  frames: number;
  pad: true;
  limit: number | null;
}

export function evalVideoSettings(frames: number | undefined, boxLimit: number | null): EvalVideoSettings {
  return { frames: frames ?? DEFAULT_VIDEO_FRAMES, pad: true, limit: boxLimit };
}

function frameDetections(d: Detections): FrameDetections {
  return { boxes: Array.from({ length: d.labels.length }, (_, i) => Array.from(d.boxes.subarray(i * 4, i * 4 + 4))), labels: [...d.labels], scores: Array.from(d.scores) };
}

/** Text naming the model files, changing when the config or the weights named in it move. */
export function localModelIdentity(spec: ModelSpec, template?: string): string {
  const files = resolveModelFiles(spec);
  const parts: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(spec)) if (typeof v === 'string') parts[k] = resolve(v);
  const config = spec.model ? (existsSync(join(spec.model, 'mgllava_config.json')) ? join(spec.model, 'mgllava_config.json') : spec.model) : undefined;
  if (config && existsSync(config)) parts['config_sha256'] = createHash('sha256').update(readFileSync(config)).digest('hex').slice(0, 16);
  parts['template'] = template ?? null;
  parts['detector'] = files.detector?.path ?? null;
  return `local ${JSON.stringify(parts)}`;
}

export async function decodeMedia(m: MediaRef, key: string, maxPixels?: number): Promise<RgbImage> {
  if (m.kind === 'video') throw new InputError(`row ${key}: a video item, not an image`, 'video');
  if (m.kind === 'image') {
    if (!existsSync(m.path)) throw new InputError(`row ${key}: image not found: ${m.path}`, m.path);
    return decodeImage(m.path, { maxPixels });
  }
  const bytes = Buffer.from(m.data, 'base64');
  if (bytes.length === 0) throw new InputError(`row ${key}: the image cell is not base64`, 'image');
  try {
    return await decodeImage(bytes, { name: `row ${key}`, maxPixels });
  } catch (e) {
    if (e instanceof InputError) throw new InputError(`row ${key}: the image cell is not a decodable image (${e.message.replace(/^row \S+: /, '')})`, 'image');
    throw e;
  }
}

export class LocalAnswerer implements Answerer {
  readonly concurrency = 1;
  private readonly detections: JsonlLog<DetectionLine | VideoDetectionLine>;
  private readonly detected = new Map<string, DetectionLine>();
  private readonly detectedVideos = new Map<string, VideoDetectionLine>();
  private readonly video: EvalVideoSettings;

  private constructor(
    private readonly model: MgLlava,
    private readonly o: LocalAnswererOptions,
    readonly identity: string,
  ) {
    this.video = evalVideoSettings(o.frames, o.boxLimit);
    this.detections = new JsonlLog(join(o.runDir, DETECTIONS_FILE));
    if (o.boxes.kind === 'detector') {
      for (const d of this.detections.read((v) => v as DetectionLine | VideoDetectionLine)) {
        if ('video' in d) this.detectedVideos.set(d.key, d);
        else this.detected.set(d.key, d);
      }
    }
  }

  static async load(o: LocalAnswererOptions): Promise<LocalAnswerer> {
    const identity = localModelIdentity(o.spec, o.template);
    const model = await MgLlava.load(o.spec, { threads: o.threads, template: o.template, packedCache: o.packedCache, onNote: o.onNote, ...(o.boxes.kind === 'detector' ? { detection: o.detection } : {}) });
    return new LocalAnswerer(model, o, identity);
  }

  /** The item's boxes: its box-file entry (own key first), detected ones, or none. */
  private async boxesFor(item: EvalItem, image: RgbImage): Promise<Detections | null> {
    const src = this.o.boxes;
    if (src.kind === 'none') return null;
    if (src.kind === 'video-file') throw new InputError(`row ${item.key}: an image item, but --boxes ${src.path} is a video box file`, '--boxes');
    if (src.kind === 'file') {
      const key = item.boxKeys.find((k) => src.index.has(k)) ?? item.key;
      return entryDetections(src.index, src.path, key, `row ${item.key}`);
    }
    const key = item.boxKeys[item.boxKeys.length - 1]!; // the image's own row
    let d = this.detected.get(key);
    if (!d) {
      const found = toDetections(await this.model.detectObjects(image));
      d = { key, ...frameDetections(found) };
      this.detections.append(d);
      this.detected.set(key, d);
    }
    return detectionsFromObject(d, join(this.o.runDir, DETECTIONS_FILE));
  }

  /**
   * A video item's frames (sampled here only when the detector needs them; else chat samples
   * them from the path) and per-frame boxes (null: a placeholder box per frame).
   */
  private async videoInput(item: EvalItem, path: string): Promise<{ video: string | VideoFrames; boxes: Detections[] | null }> {
    const src = this.o.boxes;
    const stem = item.boxKeys[0] ?? item.key;
    if (src.kind === 'none') return { video: path, boxes: null };
    if (src.kind === 'video-file') return { video: path, boxes: videoBoxEntry(src.index, src.path, stem, this.video.frames) };
    if (src.kind === 'file') throw new InputError(`row ${item.key}: a video item, but --boxes ${src.path} is not a video box file (a list of {"video", "frames"})`, '--boxes');
    const frames = await loadVideoFrames(path, { frames: this.video.frames });
    let d = this.detectedVideos.get(stem);
    if (d && d.frame_indices.join() !== frames.indices.join()) d = undefined; // another sampling: detect again
    if (!d) {
      const per: FrameDetections[] = [];
      for (const f of frames.frames) per.push(frameDetections(toDetections(await this.model.detectObjects(f))));
      d = { key: stem, video: true, frame_indices: [...frames.indices], frames: per };
      this.detections.append(d);
      this.detectedVideos.set(stem, d);
    }
    const where = join(this.o.runDir, DETECTIONS_FILE);
    return { video: frames, boxes: d.frames.map((f, j) => detectionsFromObject(f, `${where} (video ${stem}, frame ${j})`)) };
  }

  private async answerVideo(item: EvalItem, path: string): Promise<string> {
    if (!existsSync(path)) throw new InputError(`row ${item.key}: video not found: ${path}`, path);
    const { video, boxes } = await this.videoInput(item, path);
    try {
      const r = await this.model.chat({
        prompt: item.prompt,
        system: null,
        video,
        videoBoxes: boxes,
        videoOptions: { pad: this.video.pad, limit: this.video.limit, frames: this.video.frames },
        generation: { maxNewTokens: this.o.maxNewTokens, temperature: 0, topLogprobs: 0 },
      }).complete();
      return pyStrip(r.text);
    } catch (e) {
      // Each sampled frame takes its 576 image tokens and its box tokens in the prompt.
      if (e instanceof InputError && /exceeds the model's context/.test(e.message)) {
        throw new InputError(`row ${item.key} (video ${item.boxKeys[0] ?? ''}): ${e.message} (${this.video.frames} frames of image and box tokens; fewer --frames make it shorter)`, '--frames');
      }
      throw e;
    }
  }

  async answer(item: EvalItem): Promise<string> {
    if (!item.media) throw new InputError(`row ${item.key} has no image`, 'image');
    if (item.media.kind === 'video') return this.answerVideo(item, item.media.path);
    const image = await decodeMedia(item.media, item.key, this.o.maxPixels);
    const boxes = await this.boxesFor(item, image);
    const visual = await this.model.encode(image, boxes, { limit: this.o.boxLimit });
    const r = await this.model.chat({
      prompt: item.prompt,
      system: null,
      visualTokens: visual,
      generation: { maxNewTokens: this.o.maxNewTokens, temperature: 0, topLogprobs: 0 },
    }).complete();
    return pyStrip(r.text);
  }

  async close(): Promise<void> {
    this.detections.close();
    await this.model.release();
  }
}
