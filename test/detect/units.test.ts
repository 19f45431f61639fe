// Pieces of the detector checked on their own: the folded resize against a direct
// pad/blur/bilinear implementation, post-processing rules, the box bias, tag parsing and the
// config reader's defaults and refusals.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../../src/core/errors.js';
import { Owlv2Processing, antiAliasKernel, axisTaps, owlv2Preprocess, scipyAntiAliasKernel } from '../../src/detect/owlv2-image.js';
import { postProcess, sigmoid32 } from '../../src/detect/post-process.js';
import { boxBias } from '../../src/detect/owlv2-graph.js';
import { COCO_80, checkTags, cocoTags, fixedTags, parseTagList, promptFor, ramTagString } from '../../src/detect/tags.js';
import { owlv2Config, owlv2ProcessorConfig, patchGrid } from '../../src/detect/owlv2-config.js';
import { checkThreshold } from '../../src/detect/owlv2.js';
import { CLIP_MEAN, CLIP_STD } from '../../src/preprocess/clip-image.js';
import { RgbImage } from '../../src/preprocess/image.js';

function randomImage(w: number, h: number, seed = 3): RgbImage {
  let s = seed;
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    data[i] = s >>> 24;
  }
  return { width: w, height: h, data };
}

/**
 * The processor step by step on a full float image: pad, 2-D blur (reflect), bilinear (torch:
 * clamped source coordinates; scipy: mirrored), normalise.
 */
function directPreprocess(img: RgbImage, S: number, processing: Owlv2Processing = 'transformers5'): Float32Array {
  const legacy = processing === 'transformers4';
  const side = Math.max(img.width, img.height);
  const pad = new Float64Array(3 * side * side).fill(legacy ? 0.5 : 0);
  for (let y = 0; y < img.height; y++)
    for (let x = 0; x < img.width; x++)
      for (let c = 0; c < 3; c++) pad[c * side * side + y * side + x] = Math.fround(img.data[(y * img.width + x) * 3 + c]! * Math.fround(1 / 255));
  const aa = legacy ? scipyAntiAliasKernel(side, S) : antiAliasKernel(side, S);
  let blurred = pad;
  if (aa) {
    const k: number[] = [];
    const half = (aa.size - 1) / 2;
    for (let i = 0; i < aa.size; i++) k.push(Math.exp(-0.5 * ((i - half) / aa.sigma) ** 2));
    const sum = k.reduce((a, b) => a + b, 0);
    const refl = (i: number) => (i < 0 ? -i : i >= side ? 2 * side - 2 - i : i);
    blurred = new Float64Array(pad.length);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < side; y++)
        for (let x = 0; x < side; x++) {
          let acc = 0;
          for (let i = 0; i < aa.size; i++)
            for (let j = 0; j < aa.size; j++) acc += (k[i]! * k[j]! / (sum * sum)) * pad[c * side * side + refl(y + i - half) * side + refl(x + j - half)]!;
          blurred[c * side * side + y * side + x] = acc;
        }
  }
  const out = new Float32Array(3 * S * S);
  const scale = side / S;
  const mirror = (i: number) => (side === 1 ? 0 : i < 0 ? -i : i >= side ? 2 * side - 2 - i : i);
  const coord = (o: number) => {
    if (legacy) {
      const src = (o + 0.5) * scale - 0.5;
      const i0 = Math.floor(src);
      return [mirror(i0), mirror(i0 + 1), src - i0] as const;
    }
    const src = Math.max(0, (o + 0.5) * scale - 0.5);
    const i0 = Math.min(Math.floor(src), side - 1);
    return [i0, Math.min(i0 + 1, side - 1), src - i0] as const;
  };
  for (let c = 0; c < 3; c++)
    for (let oy = 0; oy < S; oy++)
      for (let ox = 0; ox < S; ox++) {
        const [y0, y1, ly] = coord(oy);
        const [x0, x1, lx] = coord(ox);
        const at = (y: number, x: number) => blurred[c * side * side + y * side + x]!;
        const v = (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
        out[c * S * S + oy * S + ox] = (v - CLIP_MEAN[c]!) / CLIP_STD[c]!;
      }
  return out;
}

test('the folded resize equals pad + Gaussian blur + bilinear done directly (both generations; shrink, grow, portrait, landscape)', () => {
  for (const processing of ['transformers5', 'transformers4'] as const) {
    for (const [w, h, S] of [[37, 23, 11], [23, 37, 9], [20, 20, 20], [9, 6, 16], [50, 31, 7]] as const) {
      const img = randomImage(w, h, w * 7 + h);
      const ours = owlv2Preprocess(img, { size: S, mean: CLIP_MEAN, std: CLIP_STD, processing });
      const ref = directPreprocess(img, S, processing);
      let max = 0;
      for (let i = 0; i < ours.length; i++) max = Math.max(max, Math.abs(ours[i]! - ref[i]!));
      assert.ok(max < 1e-5, `${processing} ${w}x${h} -> ${S}: ${max}`);
    }
  }
  // transformers 4 pads with grey 0.5, transformers 5 with black: the padded rows differ.
  const img = randomImage(30, 10);
  const [a, b] = (['transformers5', 'transformers4'] as const).map((processing) => owlv2Preprocess(img, { size: 30, mean: CLIP_MEAN, std: CLIP_STD, processing }));
  assert.ok(Math.abs(a![29 * 30]! - (0 - CLIP_MEAN[0]) / CLIP_STD[0]) < 1e-6);
  assert.ok(Math.abs(b![29 * 30]! - (0.5 - CLIP_MEAN[0]) / CLIP_STD[0]) < 1e-6);
  assert.equal(scipyAntiAliasKernel(640, 96)!.size, 2 * Math.trunc(4 * (640 / 96 - 1) / 2 + 0.5) + 1);
});

test('anti-aliasing follows torchvision: sigma (s/S-1)/2 in float32, 2*ceil(3 sigma)+1 taps, none when not shrinking', () => {
  assert.equal(antiAliasKernel(640, 960), null);
  assert.equal(antiAliasKernel(960, 960), null);
  const k = antiAliasKernel(640, 96)!;
  assert.equal(k.sigma, Math.fround(Math.fround(Math.fround(640 / 96) - 1) / 2));
  assert.equal(k.size, 19);
  assert.equal(antiAliasKernel(640, 240)!.size, 7);
  // Rows of an unpadded axis sum to 1; a padded axis loses the weight that falls on the padding.
  const full = axisTaps(50, 50, 7);
  for (let o = 0; o < 7; o++) {
    let s = 0;
    for (let t = full.start[o]!; t < full.start[o + 1]!; t++) s += full.weight[t]!;
    assert.ok(Math.abs(s - 1) < 1e-12);
  }
  const padded = axisTaps(10, 50, 7);
  assert.ok(Array.from(padded.index).every((i) => i < 10));
  assert.equal(padded.start[7]! - padded.start[6]!, 0); // the last rows see only padding
});

test('post-processing: best query per patch, strict threshold, cxcywh -> corners scaled by the target side', () => {
  const logits = Float32Array.from([0.1, 2.0, /* p1 */ -3, -4, /* p2 */ 1.5, 1.5]);
  const predBoxes = Float32Array.from([0.5, 0.5, 0.25, 0.5, 0.1, 0.1, 0.1, 0.1, 0.25, 0.75, 0.5, 0.5]);
  const pp = postProcess({ logits, predBoxes, queries: 2 }, 0.5, 100);
  assert.deepEqual(Array.from(pp.patches), [0, 2]);
  assert.deepEqual(Array.from(pp.labels), [1, 0]); // ties go to the first query
  assert.deepEqual(Array.from(pp.scores), [sigmoid32(2), sigmoid32(1.5)]);
  assert.deepEqual(Array.from(pp.boxes), [37.5, 25, 62.5, 75, 0, 50, 50, 100]);
  // Exactly at the threshold is dropped (scores > threshold).
  assert.equal(postProcess({ logits: Float32Array.of(0), predBoxes: Float32Array.of(0.5, 0.5, 1, 1), queries: 1 }, 0.5, 10).scores.length, 0);
  assert.equal(postProcess({ logits: Float32Array.of(0), predBoxes: Float32Array.of(0.5, 0.5, 1, 1), queries: 1 }, 0, 10).scores.length, 1);
});

test('box bias: logit of each patch corner and of the patch size', () => {
  const b = boxBias(6);
  const logit = (p: number) => Math.log(p + 1e-4) - Math.log1p(-p + 1e-4);
  assert.equal(b.length, 36 * 4);
  // float32 like torch: near 1, log1p(-c + 1e-4) carries float32's error on 1e-4 (about 1e-3 relative).
  const close = (a: number, b: number) => Math.abs(a - b) < 2e-3 * Math.max(1, Math.abs(b));
  for (const [p, cx, cy] of [[0, 1 / 6, 1 / 6], [7, 2 / 6, 2 / 6], [11, 1, 2 / 6], [35, 1, 1]] as const) {
    assert.ok(close(b[p * 4]!, logit(cx)) && close(b[p * 4 + 1]!, logit(cy)), `patch ${p}: ${b[p * 4]} ${logit(cx)}`);
    assert.ok(Math.abs(b[p * 4 + 2]! - logit(1 / 6)) < 1e-5 && b[p * 4 + 3] === b[p * 4 + 2]);
  }
});

test('tags: --tags lists, COCO-80, RAM++ strings, and refusals', async () => {
  assert.deepEqual(parseTagList(' cat, table ,,red square '), ['cat', 'table', 'red square']);
  assert.throws(() => parseTagList(''), InputError);
  assert.throws(() => parseTagList(' , ,'), /no tags given/);
  assert.equal(COCO_80.length, 80);
  assert.equal(new Set(COCO_80).size, 80);
  assert.deepEqual(await cocoTags().tagsFor({ width: 1, height: 1, data: new Uint8Array(3) }), COCO_80);
  assert.equal(cocoTags().name, 'COCO-80');
  assert.equal(fixedTags(['a', 'b']).name, '2 tags');
  assert.deepEqual(ramTagString('Bus | Street | Building '), ['bus', 'street', 'building']);
  assert.equal(promptFor('red square'), 'a photo of red square');
  assert.throws(() => checkTags([], 'tags'), /empty/);
  assert.throws(() => checkTags(['cat', ' '], 'tags'), /tag 1/);
  assert.throws(() => fixedTags([]), InputError);
});

test('thresholds outside [0, 1] are refused', () => {
  for (const bad of [-0.01, 1.01, NaN, Infinity]) assert.throws(() => checkThreshold(bad), InputError);
  assert.equal(checkThreshold(0), 0);
  assert.equal(checkThreshold(1), 1);
});

test('config: HF defaults for omitted keys, floor(image/patch) patches, refusals', () => {
  const c = owlv2Config({ model_type: 'owlv2', projection_dim: 768, text_config: { hidden_size: 768, intermediate_size: 3072, num_attention_heads: 12 },
    vision_config: { hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, patch_size: 14, image_size: 960 } }, 'c');
  assert.equal(c.text.layers, 12);
  assert.equal(c.text.maxPositions, 16);
  assert.equal(c.text.act, 'quick_gelu');
  assert.equal(patchGrid(c.vision), 68);
  assert.throws(() => owlv2Config({ model_type: 'clip' }, 'c'), /expected "owlv2"/);
  assert.throws(() => owlv2Config({ text_config: { hidden_size: 10, num_attention_heads: 3 } }, 'c'), /divisible/);
  assert.throws(() => owlv2Config({ projection_dim: 64 }, 'c'), /projection_dim/);
  assert.throws(() => owlv2Config({ vision_config: { image_size: 'big' } }, 'c'), /image_size/);
  const pp = owlv2ProcessorConfig({ size: { height: 960, width: 960 }, image_mean: [0.5, 0.5, 0.5] }, 'p', 960);
  assert.deepEqual(pp.mean, [0.5, 0.5, 0.5]);
  assert.throws(() => owlv2ProcessorConfig({ size: { height: 768, width: 768 } }, 'p', 960), /differs/);
  assert.throws(() => owlv2ProcessorConfig({ do_pad: false }, 'p', 960), /do_pad/);
});
