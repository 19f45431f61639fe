// The synthetic world of `mgllava synth`: flat-coloured circles, squares and triangles on a
// noisy flat background. A scene is drawn from a seeded generator (src/train/rng.ts) and is all
// that questions, captions and boxes are computed from; pixels come from renderScene(scene).
//
// Rules (docs: `mgllava synth`):
// - image: width, height uniform integers in [320, 640]; background one colour, each channel a
//   uniform integer in [200, 250]; per-pixel, per-channel uniform integer noise in [-8, 8]
//   (clamped to 0..255) on the background only: objects are drawn flat in their exact colour.
// - 1 to 6 objects (uniform), each a shape (circle, square, triangle: upright isosceles, base and
//   height = its size), a colour and a size (small: side 16..32 px, large: 56..112 px, uniform
//   integers; the side of its square bounding box); boxes wholly inside the image and at least
//   4 px apart on x or on y; placement by rejection sampling, the whole scene drawn again when
//   an object finds no place in 100 tries.
// - a pixel (px, py) belongs to an object when its centre (px + 0.5, py + 0.5) is inside the
//   shape: circle by distance to the box centre <= side / 2, triangle by its three edges.

import { Rng } from '../train/rng.js';

export const SHAPES = ['circle', 'square', 'triangle'] as const;
export const COLOURS = ['red', 'green', 'blue', 'yellow'] as const;
export const SIZES = ['small', 'large'] as const;
export type Shape = (typeof SHAPES)[number];
export type Colour = (typeof COLOURS)[number];
export type Size = (typeof SIZES)[number];

export const COLOUR_RGB: Readonly<Record<Colour, readonly [number, number, number]>> = {
  red: [220, 40, 40],
  green: [40, 170, 70],
  blue: [50, 90, 220],
  yellow: [230, 200, 40],
};

/** Side ranges (inclusive) of each size, in pixels. */
export const SIZE_RANGE: Readonly<Record<Size, readonly [number, number]>> = { small: [16, 32], large: [56, 112] };
export const IMAGE_RANGE = [320, 640] as const;
export const BACKGROUND_RANGE = [200, 250] as const;
export const NOISE = 8;
export const MIN_GAP = 4;
export const MAX_OBJECTS = 6;
const PLACE_TRIES = 100;

export interface SynthObject {
  shape: Shape;
  colour: Colour;
  size: Size;
  /** side of the square bounding box, px */
  side: number;
  /** bounding box [x1, y1, x2, y2] in image pixels (x2 = x1 + side, y2 = y1 + side) */
  box: [number, number, number, number];
}

export interface Scene {
  width: number;
  height: number;
  background: [number, number, number];
  /** seed of the background noise (renderScene is a function of the scene alone) */
  noiseSeed: number;
  objects: SynthObject[];
}

/** A uniform integer in [lo, hi]. */
export function uniformInt(rng: Rng, lo: number, hi: number): number {
  return lo + rng.nextInt(hi - lo + 1);
}

export function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.nextInt(xs.length)]!;
}

/** Two boxes are at least MIN_GAP apart on x or on y. */
export function boxesApart(a: readonly number[], b: readonly number[], gap = MIN_GAP): boolean {
  return a[2]! + gap <= b[0]! || b[2]! + gap <= a[0]! || a[3]! + gap <= b[1]! || b[3]! + gap <= a[1]!;
}

export function objectLabel(o: { colour: Colour; shape: Shape }): string {
  return `${o.colour} ${o.shape}`;
}

/** The centre of an object's box. */
export function centreOf(o: SynthObject): [number, number] {
  return [(o.box[0] + o.box[2]) / 2, (o.box[1] + o.box[3]) / 2];
}

export interface SceneOptions {
  /** number of objects (default: uniform in 1..maxObjects) */
  objects?: number;
  /** the most objects when `objects` is not given (default 6): a curriculum's easy scenes */
  maxObjects?: number;
}

/** A random scene, as the rules above say. */
export function generateScene(rng: Rng, o: SceneOptions = {}): Scene {
  if (o.objects !== undefined && (!Number.isInteger(o.objects) || o.objects < 1 || o.objects > MAX_OBJECTS)) {
    throw new RangeError(`objects must be an integer in [1, ${MAX_OBJECTS}], got ${o.objects}`);
  }
  const most = o.maxObjects ?? MAX_OBJECTS;
  if (!Number.isInteger(most) || most < 1 || most > MAX_OBJECTS) throw new RangeError(`maxObjects must be an integer in [1, ${MAX_OBJECTS}], got ${most}`);
  const width = uniformInt(rng, IMAGE_RANGE[0], IMAGE_RANGE[1]);
  const height = uniformInt(rng, IMAGE_RANGE[0], IMAGE_RANGE[1]);
  const background: [number, number, number] = [0, 0, 0].map(() => uniformInt(rng, BACKGROUND_RANGE[0], BACKGROUND_RANGE[1])) as [number, number, number];
  const noiseSeed = rng.nextU32();
  for (;;) {
    const n = o.objects ?? uniformInt(rng, 1, most);
    const objects: SynthObject[] = [];
    let failed = false;
    for (let i = 0; i < n && !failed; i++) {
      const shape = pick(rng, SHAPES);
      const colour = pick(rng, COLOURS);
      const size = pick(rng, SIZES);
      const side = uniformInt(rng, SIZE_RANGE[size][0], SIZE_RANGE[size][1]);
      failed = true;
      for (let t = 0; t < PLACE_TRIES; t++) {
        const x1 = uniformInt(rng, 0, width - side);
        const y1 = uniformInt(rng, 0, height - side);
        const box: [number, number, number, number] = [x1, y1, x1 + side, y1 + side];
        if (objects.every((p) => boxesApart(p.box, box))) {
          objects.push({ shape, colour, size, side, box });
          failed = false;
          break;
        }
      }
    }
    if (!failed) return { width, height, background, noiseSeed, objects };
  }
}

/** Whether the pixel centre (cx, cy) is inside the object's shape. */
export function insideShape(o: SynthObject, cx: number, cy: number): boolean {
  const [x1, y1, x2, y2] = o.box;
  if (cx < x1 || cx > x2 || cy < y1 || cy > y2) return false;
  const s = o.side;
  const mx = x1 + s / 2;
  switch (o.shape) {
    case 'square':
      return true;
    case 'circle': {
      const dx = cx - mx;
      const dy = cy - (y1 + s / 2);
      return dx * dx + dy * dy <= (s / 2) * (s / 2);
    }
    case 'triangle':
      // apex (mx, y1), base from (x1, y2) to (x2, y2): half-width at height cy is (cy - y1) / 2
      return Math.abs(cx - mx) <= (cy - y1) / 2;
  }
}

/** The scene as packed RGB bytes (row-major, width * height * 3). */
export function renderScene(scene: Scene): Uint8Array {
  const { width: w, height: h, background: bg } = scene;
  const px = new Uint8Array(w * h * 3);
  // Background noise: bytes of a seeded generator, 255 rejected (255 = 15 * 17), byte % 17 - 8.
  const rng = Rng.seeded(scene.noiseSeed);
  let word = 0;
  let left = 0;
  const n = w * h * 3;
  for (let i = 0; i < n; ) {
    if (left === 0) {
      word = rng.nextU32();
      left = 4;
    }
    const b = word & 0xff;
    word >>>= 8;
    left--;
    if (b === 255) continue;
    const v = bg[i % 3]! + (b % 17) - NOISE;
    px[i] = v < 0 ? 0 : v > 255 ? 255 : v;
    i++;
  }
  for (const o of scene.objects) {
    const [r, g, b] = COLOUR_RGB[o.colour];
    const [x1, y1, x2, y2] = o.box;
    for (let y = y1; y < y2; y++) {
      for (let x = x1; x < x2; x++) {
        if (!insideShape(o, x + 0.5, y + 0.5)) continue;
        const k = (y * w + x) * 3;
        px[k] = r;
        px[k + 1] = g;
        px[k + 2] = b;
      }
    }
  }
  return px;
}

/** "small red circle" */
export function describeObject(o: SynthObject): string {
  return `${o.size} ${o.colour} ${o.shape}`;
}

/**
 * "A small red circle, a large blue square and a small green triangle.": the objects in the
 * order of the scene's box entry (the detector's order, which is the order of the object tokens
 * the model sees), so a caption can be read off the object tokens one by one. The order carries
 * no position: objects are drawn in a random order.
 */
export function caption(scene: Scene): string {
  const parts = scene.objects.map((o, i) => `${i === 0 ? 'A' : 'a'} ${describeObject(o)}`);
  if (parts.length === 1) return `${parts[0]}.`;
  return `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}.`;
}

/** The scene's box entry {id, boxes, labels, scores} (the trainer's and eval's --boxes format). */
export function boxEntry(id: string | number, scene: Scene): { id: string | number; boxes: number[][]; labels: string[]; scores: number[] } {
  return {
    id,
    boxes: scene.objects.map((o) => [...o.box]),
    labels: scene.objects.map(objectLabel),
    scores: scene.objects.map(() => 1.0),
  };
}
