// `mgllava detect`: boxes, labels and scores for an image from an OWLv2 detector, as the release's
// box generator makes them (tags from --tags or the COCO-80 list); printed as lines or as the
// release's box JSON, and drawn over the image to a PNG on request.

import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { decodeImage } from '../preprocess/decode.js';
import { DetectionResult, Owlv2Detector, checkThreshold, detectionsJson } from '../detect/owlv2.js';
import { COCO_80, cocoTags, parseTagList } from '../detect/tags.js';
import { drawDetections } from '../detect/draw.js';
import { Owlv2Processing } from '../detect/owlv2-image.js';
import { Progress, noteOnStderr } from './progress.js';

export interface DetectArgs {
  detector: string;
  image: string;
  tags?: string;
  coco?: boolean;
  threshold: number;
  json?: boolean;
  intBoxes?: boolean;
  draw?: string;
  processor?: string;
  maxPixels: number;
  threads?: number;
  /** --packed-cache DIR, or false for --no-packed-cache. */
  packedCache?: string | false;
  quiet?: boolean;
}

/** --tags LIST or --coco (exactly one) -> the tag list. */
export function tagsFromFlags(a: { tags?: string; coco?: boolean }, required: boolean): string[] | undefined {
  if (a.tags !== undefined && a.coco) throw new InputError('give --tags or --coco, not both', '--tags');
  if (a.coco) return [...COCO_80];
  if (a.tags !== undefined) return parseTagList(a.tags, '--tags');
  if (required) throw new InputError('say what to look for: --tags "cat,table,..." or --coco', '--tags');
  return undefined;
}

/** The detection flags, checked against the box flags (shared with encode). */
export function detectionFlags(a: { detector?: string; tags?: string; coco?: boolean; threshold?: number; boxes?: string; visualCache?: string }) {
  const given = a.detector !== undefined || a.tags !== undefined || a.coco === true || a.threshold !== undefined;
  if (given && a.boxes) throw new InputError('--boxes replaces detection: drop --detector/--tags/--coco/--threshold, or --boxes', '--boxes');
  if (given && a.visualCache) throw new InputError('--visual-cache already holds its boxes: drop --detector/--tags/--coco/--threshold', '--visual-cache');
  const tags = a.coco && a.tags === undefined ? cocoTags() : tagsFromFlags(a, false);
  return tags === undefined && a.threshold === undefined ? undefined : { tags, threshold: a.threshold };
}

export async function runDetect(a: DetectArgs): Promise<void> {
  // Arguments and inputs first: a mistake fails before the model is loaded.
  const tags = tagsFromFlags(a, true)!;
  const threshold = checkThreshold(a.threshold, '--threshold');
  if (a.draw !== undefined) checkOutputPath(a.draw);
  const progress = new Progress(!a.quiet && !a.json);
  const image = await decodeImage(a.image, { maxPixels: a.maxPixels });
  const processing = a.processor as Owlv2Processing | undefined;
  const detector = await progress.step(`loading detector ${a.detector}`, () => Owlv2Detector.load(a.detector, { threads: a.threads, processing, packedCache: a.packedCache, onNote: noteOnStderr(a.quiet) }));
  try {
    const r = await progress.step(`detecting ${tags.length} tag${tags.length === 1 ? '' : 's'} in ${a.image} (${image.width}x${image.height})`, () =>
      detector.detect(image, tags, { threshold }));
    if (a.json) process.stdout.write(`${JSON.stringify(detectionsJson(r, a.intBoxes))}\n`);
    else process.stdout.write(formatTable(r, a.intBoxes ?? false));
    if (a.draw !== undefined) {
      const out = a.draw;
      await progress.step(`drawing ${out}`, () => drawDetections(image, r, out));
    }
  } finally {
    await detector.release();
  }
}

/** One line per box: label, score, box; a summary line when nothing was found. */
function formatTable(r: DetectionResult, integer: boolean): string {
  if (r.labels.length === 0) return `no boxes above ${r.threshold} for ${r.tags.length} tag${r.tags.length === 1 ? '' : 's'}\n`;
  const width = Math.max(5, ...r.labels.map((l) => l.length));
  const fmt = (v: number) => (integer ? String(Math.trunc(v) + 0) : v.toFixed(2));
  const lines = [`${'label'.padEnd(width)}  score   x0, y0, x1, y1`];
  for (let i = 0; i < r.labels.length; i++) {
    const b = Array.from(r.boxes.subarray(i * 4, i * 4 + 4), fmt).join(', ');
    lines.push(`${r.labels[i]!.padEnd(width)}  ${r.scores[i]!.toFixed(3)}   ${b}`);
  }
  return `${lines.join('\n')}\n`;
}

function checkOutputPath(out: string): void {
  const abs = resolve(out);
  if (existsSync(abs) && statSync(abs).isDirectory()) throw new InputError(`${out}: --draw is a folder, expected a file path`, out);
  if (!existsSync(dirname(abs))) throw new InputError(`${out}: folder ${dirname(abs)} does not exist (--draw)`, out);
}
