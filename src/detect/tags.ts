// Where the detector's text queries come from. The release asks RAM++ (a Swin-L image tagger with
// a tag-query decoder over ~4,500 tags) for the image's tags and prompts OWLv2 with
// "a photo of {tag}" for each. Here a TagSource gives the tags of an image: a fixed list (--tags),
// the COCO-80 class names (the paper's ablation baseline, --coco), or an image tagging model
// implementing the same interface. RAM++ itself is not implemented (see docs/detection.md for
// what it needs); `ramTagString` reproduces the release's parsing of RAM++'s output so that a
// tagger can plug in unchanged.

import { InputError } from '../core/errors.js';
import { RgbImage } from '../preprocess/image.js';

export interface TagSource {
  /** Short description for progress lines and errors ("3 tags", "COCO-80", "RAM++"). */
  readonly name: string;
  /** The tags for this image (non-empty strings, in the order their label ids will have). */
  tagsFor(image: RgbImage): Promise<readonly string[]>;
}

/** The 80 COCO detection classes, in the usual order (the paper's fixed-vocabulary ablation). */
export const COCO_80: readonly string[] = Object.freeze([
  'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
  'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
  'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
  'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
  'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
  'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed',
  'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven',
  'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',
]);

/** The release's prompt for a tag. */
export function promptFor(tag: string): string {
  return `a photo of ${tag}`;
}

/**
 * A comma-separated tag list as the user types it ("cat, table,red square"): entries trimmed,
 * empty entries dropped; an empty result is an InputError naming `what`.
 */
export function parseTagList(text: string, what = '--tags'): string[] {
  const tags = text.split(',').map((t) => t.trim()).filter((t) => t.length > 0);
  if (tags.length === 0) throw new InputError(`${what}: no tags given (expected a comma-separated list such as "cat,table,window")`, what);
  return tags;
}

/** The release's handling of RAM++'s "tag1 | tag2 | ..." string: ' |' -> ',', lower case, split, strip. */
export function ramTagString(text: string): string[] {
  return text.replaceAll(' |', ',').toLowerCase().trim().split(',').map((t) => t.trim());
}

/** Check a tag list from any source: a non-empty array of non-empty strings. */
export function checkTags(tags: readonly unknown[], what: string): string[] {
  if (tags.length === 0) throw new InputError(`${what}: the tag list is empty`, what);
  tags.forEach((t, i) => {
    if (typeof t !== 'string' || t.trim() === '') throw new InputError(`${what}: tag ${i} is ${JSON.stringify(t)}, expected a non-empty string`, what);
  });
  return tags as string[];
}

/** The same tags for every image. */
export function fixedTags(tags: readonly string[], name = `${tags.length} tag${tags.length === 1 ? '' : 's'}`): TagSource {
  const list = Object.freeze(checkTags(tags, 'tags').slice());
  return { name, tagsFor: async () => list };
}

/** The COCO-80 class names for every image. */
export function cocoTags(): TagSource {
  return fixedTags(COCO_80, 'COCO-80');
}
