// `mgllava encode`: image (+ boxes) -> visual-token cache in a safetensors file.

import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { MgLlava } from '../model/mg-llava.js';
import { writeVisualCache } from '../model/visual-cache.js';
import { ModelSpec } from '../model/model-files.js';
import { decodeImage } from '../preprocess/decode.js';
import { readBoxFile } from '../preprocess/box-file.js';
import { Progress, noteOnStderr } from './progress.js';
import { detectionFlags } from './detect.js';
import { toDetections } from '../detect/owlv2.js';
import { F32Tensor } from '../core/tensor.js';
import { writeSafetensors } from '../weights/write-safetensors.js';
import { readVideoInput } from './chat.js';

export interface EncodeArgs extends ModelSpec {
  image?: string;
  /** A video instead of an image: its sampled frames' tokens (runEncodeVideo). */
  video?: string;
  videoBoxes?: string;
  frames?: number;
  /** false: --no-pad (video frames not padded to square). */
  pad?: boolean;
  boxes?: string;
  out: string;
  boxLimit: number;
  maxPixels: number;
  threads?: number;
  /** --packed-cache DIR, or false for --no-packed-cache. */
  packedCache?: string | false;
  quiet?: boolean;
  /** Detector tags / COCO-80 / threshold, used when no --boxes are given and a detector is configured. */
  tags?: string;
  coco?: boolean;
  threshold?: number;
}

export async function runEncode(a: EncodeArgs): Promise<void> {
  if (a.video !== undefined && a.image !== undefined) throw new InputError('--video with --image: give one or the other', '--video');
  if (a.video === undefined && a.image === undefined) throw new InputError('give --image or --video', '--image');
  if (a.video === undefined) {
    for (const [flag, v] of [['--video-boxes', a.videoBoxes], ['--frames', a.frames]] as const) if (v !== undefined) throw new InputError(`${flag} needs --video`, flag);
    if (a.pad === false) throw new InputError('--no-pad needs --video (images are always padded, as the release)', '--no-pad');
  } else if (a.boxes) {
    throw new InputError('--boxes is the image box JSON; for a video give --video-boxes', '--boxes');
  }
  const progress = new Progress(!a.quiet);
  checkOutputPath(a.out);
  const detection = detectionFlags(a);
  if (a.video !== undefined) return runEncodeVideo(a, progress, detection);
  const imagePath = a.image!;
  // Inputs first: a bad image or box file fails before the model is loaded.
  const image = await decodeImage(imagePath, { maxPixels: a.maxPixels });
  const detections = a.boxes ? await readBoxFile(a.boxes) : undefined;
  const model = await progress.step('loading model', () => MgLlava.load(a, { threads: a.threads, llm: false, detection, packedCache: a.packedCache, onNote: noteOnStderr(a.quiet) }));
  try {
    let boxes = detections;
    if (!boxes && model.detectsBoxes) {
      const found = await progress.step(`detecting objects in ${imagePath} (${model.tagSource.name})`, () => model.detectObjects(image));
      boxes = toDetections(found);
    }
    const tokens = await progress.step(`encoding ${a.image} (${image.width}x${image.height})`, () =>
      model.encode(image, boxes, { limit: a.boxLimit === 0 ? null : a.boxLimit }));
    await progress.step(`writing ${a.out}`, () => writeVisualCache(a.out, tokens, { image: imagePath }));
  } finally {
    await model.release();
  }
}

/**
 * `encode --video`: a safetensors file with pixel_values [F,3,s,s], pixel_values_aux [F,3,S,S],
 * image_tokens [F,N,H], box_tokens [sum k,H], boxes [sum k,4] (F32), frame_indices [F] and
 * frame_box_counts [F] (I64), the labels per frame (JSON) in the metadata.
 */
async function runEncodeVideo(a: EncodeArgs, progress: Progress, detection: ReturnType<typeof detectionFlags>): Promise<void> {
  const video = await readVideoInput(a);
  const model = await progress.step('loading model', () => MgLlava.load(a, { threads: a.threads, llm: false, detection, packedCache: a.packedCache, onNote: noteOnStderr(a.quiet) }));
  try {
    const F = video.frames.frames.length;
    const t = await progress.step(`encoding ${a.video} (${F} frames of ${video.frames.width}x${video.frames.height})`, () =>
      model.encodeVideo(video.frames, { ...(video.boxes ? { boxes: video.boxes } : {}), pad: a.pad !== false, limit: a.boxLimit === 0 ? null : a.boxLimit }));
    const f32 = (name: string, x: F32Tensor) => ({ name, dtype: 'F32' as const, shape: x.dims, data: x.data });
    const i64 = (name: string, v: readonly number[]) => ({ name, dtype: 'I64' as const, shape: [v.length], data: new Uint8Array(BigInt64Array.from(v, BigInt).buffer) });
    await progress.step(`writing ${a.out}`, () =>
      writeSafetensors(a.out, [
        f32('pixel_values', t.pixelValues),
        f32('pixel_values_aux', t.pixelValuesAux),
        f32('image_tokens', t.imageTokens),
        f32('box_tokens', t.boxTokens),
        f32('boxes', t.boxes),
        i64('frame_indices', t.frameIndices),
        i64('frame_box_counts', t.boxCounts),
      ], { format: 'mgllava-video-tokens', video: a.video!, labels: JSON.stringify(t.labels), pad: String(a.pad !== false) }));
  } finally {
    await model.release();
  }
}

function checkOutputPath(out: string): void {
  const abs = resolve(out);
  if (existsSync(abs) && statSync(abs).isDirectory()) throw new InputError(`${out}: --out is a folder, expected a file path`, out);
  if (!existsSync(dirname(abs))) throw new InputError(`${out}: folder ${dirname(abs)} does not exist (--out)`, out);
}
