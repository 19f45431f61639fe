// In-memory caches bounded by bytes, least recently used out first: a generic ByteLru, and the
// visual tokens of recent images (MgLlava.chat), keyed by what determines them: a sha256 of the
// image (its encoded bytes, or its decoded pixels) and of the boxes (given, or the configured
// detector and its settings) and box options. A repeated image then skips decoding, detection
// and every vision session. (The on-disk visual-token file of `mgllava encode` is visual-cache.ts.)

import { createHash } from 'node:crypto';
import { F32Tensor } from '../core/tensor.js';
import { BoxOptions, Detections } from '../preprocess/boxes.js';
import { RgbImage } from '../preprocess/image.js';
import type { DetectionResult } from '../detect/owlv2.js';

/** A map bounded by the bytes its values hold; get() makes an entry the most recent. */
export class ByteLru<K, V> {
  private readonly map = new Map<K, { value: V; bytes: number }>();
  private used = 0;

  constructor(
    /** Most bytes held; an entry larger than this is not kept at all. */
    readonly budget: number,
    /** Told of each entry evicted to make room (not of delete()). */
    private readonly onEvict?: (key: K, value: V) => void,
  ) {
    if (!(budget >= 0)) throw new RangeError(`cache budget must be a non-negative number of bytes, got ${budget}`);
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }

  /** Without making it the most recent. */
  peek(key: K): V | undefined {
    return this.map.get(key)?.value;
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  /** Insert or replace as the most recent, then evict the least recent until within budget; false when it is too large to keep. */
  set(key: K, value: V, bytes: number): boolean {
    this.delete(key);
    if (bytes > this.budget) return false;
    this.map.set(key, { value, bytes });
    this.used += bytes;
    for (const [k, e] of this.map) {
      if (this.used <= this.budget) break;
      this.map.delete(k);
      this.used -= e.bytes;
      this.onEvict?.(k, e.value);
    }
    return true;
  }

  delete(key: K): V | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    this.used -= e.bytes;
    return e.value;
  }

  /** Least recent first. */
  *entries(): IterableIterator<[K, V]> {
    for (const [k, e] of this.map) yield [k, e.value];
  }

  clear(): void {
    this.map.clear();
    this.used = 0;
  }
}

/** What a chat needs of an image's visual tokens, plus what the boxes were. */
export interface CachedVisual {
  /** [N, H] */
  imageTokens: F32Tensor;
  /** [k, H] */
  boxTokens: F32Tensor;
  labels: readonly string[];
  /** What the configured detector found, when it made the boxes. */
  detections?: DetectionResult;
  /** width x height of the decoded image (a request with a lower pixel limit does not hit). */
  pixels: number;
}

/** Visual tokens of recent images, by visualKey(); LRU within a byte budget. */
export class VisualTokenCache {
  private readonly lru: ByteLru<string, CachedVisual>;
  /** Encodings under way, so that concurrent requests for one new image encode it once. */
  private readonly pending = new Map<string, Promise<CachedVisual>>();
  hits = 0;
  misses = 0;

  constructor(budget: number) {
    this.lru = new ByteLru(budget);
  }

  get bytes(): number {
    return this.lru.bytes;
  }

  get size(): number {
    return this.lru.size;
  }

  get(key: string, maxPixels = Infinity): CachedVisual | undefined {
    const v = this.lru.get(key);
    return v && v.pixels <= maxPixels ? v : undefined;
  }

  /** The cached tokens, else those `make` produces (kept when they fit the budget). */
  async getOrMake(key: string, maxPixels: number, make: () => Promise<CachedVisual>): Promise<{ visual: CachedVisual; hit: boolean }> {
    const hit = this.get(key, maxPixels);
    if (hit) {
      this.hits++;
      return { visual: hit, hit: true };
    }
    const running = this.pending.get(key);
    if (running) return { visual: await running, hit: false };
    this.misses++;
    const p = make();
    this.pending.set(key, p);
    try {
      const v = await p;
      this.lru.set(key, v, visualBytes(v));
      return { visual: v, hit: false };
    } finally {
      this.pending.delete(key);
    }
  }

  clear(): void {
    this.lru.clear();
  }
}

export function visualBytes(v: Pick<CachedVisual, 'imageTokens' | 'boxTokens'>): number {
  return v.imageTokens.data.byteLength + v.boxTokens.data.byteLength + 256;
}

/** sha256 of the image: its encoded bytes, or the decoded pixels with their size. */
export function imageHash(image: Uint8Array | RgbImage): string {
  const h = createHash('sha256');
  if (image instanceof Uint8Array) {
    h.update('bytes\0');
    h.update(image);
  } else {
    h.update(`rgb\0${image.width}x${image.height}\0`);
    h.update(image.data);
  }
  return h.digest('hex');
}

/** sha256 of visual tokens given as they are (a chat request's visualTokens). */
export function tokensHash(t: { imageTokens: F32Tensor; boxTokens: F32Tensor }): string {
  const h = createHash('sha256');
  for (const x of [t.imageTokens, t.boxTokens]) {
    h.update(`${x.dims.join('x')}\0`);
    h.update(new Uint8Array(x.data.buffer, x.data.byteOffset, x.data.byteLength));
  }
  return `tokens:${h.digest('hex')}`;
}

/**
 * The key of an image's visual tokens: the image's hash, the boxes (given: their values; found:
 * `detector`, the detector's settings as a string; neither: none), the box options.
 */
export function visualKey(imageSha: string, boxes: Detections | null | { detector: string }, boxOptions?: BoxOptions): string {
  let b: string;
  if (boxes === null) b = 'none';
  else if ('detector' in boxes) b = `detector:${boxes.detector}`;
  else b = `boxes:${JSON.stringify({ boxes: Array.from(boxes.boxes), labels: boxes.labels, scores: Array.from(boxes.scores) })}`;
  const h = createHash('sha256');
  h.update(`${imageSha}\0${b}\0${JSON.stringify(boxOptions ?? {})}`);
  return `image:${h.digest('hex')}`;
}
