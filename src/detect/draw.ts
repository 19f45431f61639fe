// Labelled boxes drawn over an image (`mgllava detect --draw`): an SVG of the boxes and labels
// composited over the decoded pixels by sharp (librsvg), written as an RGB PNG of the image's
// size. Each box is an unfilled rectangle with a stroke at least 2 px wide centred on its edges,
// so the pixel an edge passes through is always fully covered by the box colour; the label
// ("tag 0.77") sits on a tab of the same colour above the box (inside it when the box touches the
// top). Text needs a system font (fontconfig); without one only the boxes appear.

import sharp from 'sharp';
import { InputError } from '../core/errors.js';
import { RgbImage } from '../preprocess/image.js';

export interface DrawableDetections {
  /** [k, 4] x0, y0, x1, y1 in image pixels. */
  readonly boxes: ArrayLike<number>;
  readonly labels: readonly string[];
  readonly scores: ArrayLike<number>;
}

/** Distinct, saturated colours (one per tag, cycling). */
export const BOX_COLOURS: readonly (readonly [number, number, number])[] = [
  [255, 0, 0], [0, 200, 0], [0, 90, 255], [255, 160, 0], [200, 0, 255],
  [0, 200, 220], [255, 0, 140], [140, 200, 0], [120, 60, 0], [0, 120, 120],
];

const hex = (c: readonly number[]) => `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (ch) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[ch]!);
}

/** Stroke width for an image: 2 px, more on large images so boxes stay visible. */
export function strokeWidth(width: number, height: number): number {
  return Math.max(2, Math.round(Math.max(width, height) / 320));
}

/** Colour of a label: by order of first appearance among the labels. */
export function labelColours(labels: readonly string[]): Map<string, readonly [number, number, number]> {
  const m = new Map<string, readonly [number, number, number]>();
  for (const l of labels) if (!m.has(l)) m.set(l, BOX_COLOURS[m.size % BOX_COLOURS.length]!);
  return m;
}

/** The overlay as SVG text (boxes first, then all labels on top). */
export function detectionsSvg(width: number, height: number, d: DrawableDetections): string {
  const sw = strokeWidth(width, height);
  const font = Math.max(11, Math.round(Math.max(width, height) / 60));
  const colours = labelColours(d.labels);
  const rects: string[] = [];
  const tabs: string[] = [];
  const fmt = (v: number) => String(Math.round(v * 100) / 100);
  for (let i = 0; i < d.labels.length; i++) {
    const [x0, y0, x1, y1] = [0, 1, 2, 3].map((c) => d.boxes[i * 4 + c]!) as [number, number, number, number];
    const colour = hex(colours.get(d.labels[i]!)!);
    rects.push(`<rect x="${fmt(x0)}" y="${fmt(y0)}" width="${fmt(Math.max(0, x1 - x0))}" height="${fmt(Math.max(0, y1 - y0))}" fill="none" stroke="${colour}" stroke-width="${sw}"/>`);
    const text = `${d.labels[i]} ${Number(d.scores[i]).toFixed(2)}`;
    const th = Math.round(font * 1.3);
    const tw = Math.round(text.length * font * 0.62) + 6;
    const tx = Math.max(0, Math.min(x0 - sw / 2, width - tw));
    const ty = y0 - sw / 2 - th >= 0 ? y0 - sw / 2 - th : Math.max(0, y0 + sw / 2);
    tabs.push(`<rect x="${fmt(tx)}" y="${fmt(ty)}" width="${tw}" height="${th}" fill="${colour}"/>` +
      `<text x="${fmt(tx + 3)}" y="${fmt(ty + th - Math.round(font * 0.3))}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif" font-size="${font}" fill="#ffffff">${escapeXml(text)}</text>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${rects.join('')}${tabs.join('')}</svg>`;
}

/** Draw the detections over the image and write an RGB PNG of the image's size to `outPath`. */
export async function drawDetections(image: RgbImage, d: DrawableDetections, outPath: string): Promise<void> {
  const { width, height } = image;
  const svg = Buffer.from(detectionsSvg(width, height, d));
  try {
    await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), { raw: { width, height, channels: 3 } })
      .composite([{ input: svg, top: 0, left: 0 }])
      .removeAlpha()
      .png()
      .toFile(outPath);
  } catch (e) {
    throw new InputError(`${outPath}: cannot write the drawing (${(e as Error).message.split('\n')[0]})`, outPath);
  }
}
