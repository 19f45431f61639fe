// The visual-token cache: what `mgllava encode` writes and `mgllava chat --visual-cache` reads,
// so an image is encoded once and asked about many times. A safetensors file with float32
// image_tokens [N, H], box_tokens [k, H], boxes [k, 4], pixel_values [3, s, s],
// pixel_values_aux [3, S, S], and the box labels (JSON) in the metadata.

import { InputError } from '../core/errors.js';
import { F32Tensor } from '../core/tensor.js';
import { SafetensorsStore } from '../weights/safetensors.js';
import { readBytes, readF32 } from '../weights/types.js';
import type { VideoTokens } from '../video/video-tokens.js';
import { writeSafetensors } from '../weights/write-safetensors.js';
import { VisualTokens } from './mg-llava.js';

const FORMAT = 'mgllava-visual-tokens';

export function writeVisualCache(path: string, t: VisualTokens, extra: Record<string, string> = {}): void {
  const tensor = (name: string, x: F32Tensor) => ({ name, dtype: 'F32' as const, shape: x.dims, data: x.data });
  writeSafetensors(path, [
    tensor('image_tokens', t.imageTokens),
    tensor('box_tokens', t.boxTokens),
    tensor('boxes', t.boxes),
    tensor('pixel_values', t.pixelValues),
    tensor('pixel_values_aux', t.pixelValuesAux),
  ], { format: FORMAT, labels: JSON.stringify(t.labels), ...extra });
}

/** What `mgllava encode --video` writes (src/cli/encode.ts). */
const VIDEO_FORMAT = 'mgllava-video-tokens';

/** The tokens of an image or a video encoded by `mgllava encode`, told apart by the file's format. */
export function readAnyVisualCache(path: string): { kind: 'image'; tokens: VisualTokens } | { kind: 'video'; tokens: VideoTokens } {
  const s = SafetensorsStore.open(path);
  return s.metadata['format'] === VIDEO_FORMAT ? { kind: 'video', tokens: readVideoCache(path) } : { kind: 'image', tokens: readVisualCache(path) };
}

/** A video's tokens as `mgllava encode --video` writes them. */
export function readVideoCache(path: string): VideoTokens {
  const s = SafetensorsStore.open(path);
  if (s.metadata['format'] !== VIDEO_FORMAT) throw new InputError(`${path}: not a video-token cache written by \`mgllava encode --video\``, path);
  const get = (name: string, rank: number): F32Tensor => {
    const r = s.get(name);
    if (!r || r.dtype !== 'F32' || r.shape.length !== rank) throw new InputError(`${path}: missing or malformed tensor ${name}`, path);
    return { dims: [...r.shape], data: readF32(r) };
  };
  const ints = (name: string): number[] => {
    const r = s.get(name);
    if (!r || r.dtype !== 'I64' || r.shape.length !== 1) throw new InputError(`${path}: missing or malformed tensor ${name}`, path);
    const b = readBytes(r);
    return Array.from(new BigInt64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), Number);
  };
  const imageTokens = get('image_tokens', 3);
  const boxTokens = get('box_tokens', 2);
  const boxCounts = ints('frame_box_counts');
  const frameIndices = ints('frame_indices');
  const F = imageTokens.dims[0]!;
  if (boxCounts.length !== F || frameIndices.length !== F || boxCounts.reduce((a, b) => a + b, 0) !== boxTokens.dims[0] || boxTokens.dims[1] !== imageTokens.dims[2]) {
    throw new InputError(`${path}: the frames' tensors do not agree (${F} frames of image tokens, ${boxCounts.length} box counts, ${boxTokens.dims[0]} box tokens)`, path);
  }
  let labels: string[][];
  try {
    labels = JSON.parse(s.metadata['labels'] ?? '[]') as string[][];
  } catch {
    throw new InputError(`${path}: malformed labels metadata`, path);
  }
  return { imageTokens, boxTokens, boxes: get('boxes', 2), boxCounts, labels, frameIndices, pixelValues: get('pixel_values', 4), pixelValuesAux: get('pixel_values_aux', 4) };
}

export function readVisualCache(path: string): VisualTokens {
  const s = SafetensorsStore.open(path);
  if (s.metadata['format'] === VIDEO_FORMAT) throw new InputError(`${path}: a video's tokens (mgllava encode --video); read them with readVideoCache`, path);
  if (s.metadata['format'] !== FORMAT) throw new InputError(`${path}: not a visual-token cache written by \`mgllava encode\``, path);
  const get = (name: string, rank: number): F32Tensor => {
    const r = s.get(name);
    if (!r || r.dtype !== 'F32' || r.shape.length !== rank) throw new InputError(`${path}: missing or malformed tensor ${name}`, path);
    return { dims: [...r.shape], data: readF32(r) };
  };
  const imageTokens = get('image_tokens', 2);
  const boxTokens = get('box_tokens', 2);
  if (boxTokens.dims[1] !== imageTokens.dims[1]) throw new InputError(`${path}: box_tokens width ${boxTokens.dims[1]} differs from image_tokens width ${imageTokens.dims[1]}`, path);
  let labels: string[];
  try {
    labels = JSON.parse(s.metadata['labels'] ?? '[]') as string[];
  } catch {
    throw new InputError(`${path}: malformed labels metadata`, path);
  }
  return {
    imageTokens,
    boxTokens,
    boxes: get('boxes', 2),
    labels,
    pixelValues: get('pixel_values', 3),
    pixelValuesAux: get('pixel_values_aux', 3),
  };
}
