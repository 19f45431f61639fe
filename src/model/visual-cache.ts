// The visual-token cache: what `mgllava encode` writes and `mgllava chat --visual-cache` reads,
// so an image is encoded once and asked about many times. A safetensors file with float32
// image_tokens [N, H], box_tokens [k, H], boxes [k, 4], pixel_values [3, s, s],
// pixel_values_aux [3, S, S], and the box labels (JSON) in the metadata.

import { InputError } from '../core/errors.js';
import { F32Tensor } from '../core/tensor.js';
import { SafetensorsStore } from '../weights/safetensors.js';
import { readF32 } from '../weights/types.js';
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

export function readVisualCache(path: string): VisualTokens {
  const s = SafetensorsStore.open(path);
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
