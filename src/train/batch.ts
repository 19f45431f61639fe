// A batch of samples as the training step graph's feeds (step-graph.ts), laid out as the
// release's prepare_inputs_labels_for_multimodal does: each sample's text ids in order, the
// image's N tokens then its k box tokens at the image position (all labelled -100), right
// padding to the batch's longest sequence (labels -100); the targets are the labels shifted
// left by one (HF's causal-LM loss predicts token t+1 at position t), given with their flat
// positions b * T + t for the positions that have one.

import { F32Tensor } from '../core/tensor.js';
import { Feed } from '../runtime/session.js';
import { FrozenFeatures, ImageInputs } from './frozen-features.js';
import { IGNORE_INDEX, IMAGE_TOKEN_INDEX } from './labels.js';
import { PAD_TOKEN_INDEX } from './data.js';
import { STEP_NAMES } from './step-graph.js';

export interface BatchItem {
  inputIds: readonly number[];
  labels: readonly number[];
  /** The sample's image features, when it has an image (frozen encoders). */
  features?: FrozenFeatures;
  /** Or its pixels and box pooling weights (encoders in the step graph). */
  inputs?: ImageInputs;
}

export interface BatchFeeds {
  feeds: Record<string, Feed>;
  withImages: boolean;
  /** [B, T] */
  batch: number;
  seq: number;
  /** Positions whose target is a label (the loss's denominator). */
  labelled: number;
}

/** Feeds for one micro-batch; `tokens` is N, the image tokens per image (576). */
export function batchFeeds(items: readonly BatchItem[], tokens: number): BatchFeeds {
  // Pass 1: the expanded sequences as (kind, index) per position.
  const text: number[] = [];
  const images: (FrozenFeatures | ImageInputs)[] = [];
  let boxRows = 0;
  type Pos = { kind: 0 | 1 | 2; i: number; label: number };
  const seqs: Pos[][] = items.map((it) => {
    const out: Pos[] = [];
    let used = false;
    it.inputIds.forEach((id, t) => {
      if (id !== IMAGE_TOKEN_INDEX) {
        out.push({ kind: 0, i: text.length, label: it.labels[t]! });
        text.push(id);
        return;
      }
      const image = it.features ?? it.inputs;
      if (!image || used) throw new Error('batchFeeds: an image position without (or with a second use of) its image features');
      used = true;
      const img = images.length;
      images.push(image);
      for (let j = 0; j < tokens; j++) out.push({ kind: 1, i: img * tokens + j, label: IGNORE_INDEX });
      const k = boxCount(image);
      for (let j = 0; j < k; j++) out.push({ kind: 2, i: boxRows + j, label: IGNORE_INDEX });
      boxRows += k;
    });
    return out;
  });
  const T = Math.max(...seqs.map((s) => s.length));
  const B = items.length;
  const padRow = text.length;
  text.push(PAD_TOKEN_INDEX);
  const withImages = images.length > 0;
  const imageBase = text.length;
  const boxBase = imageBase + images.length * tokens;

  // Pass 2: row indices, and the positions whose next token is labelled with that label.
  const idx = new BigInt64Array(B * T);
  const positions: number[] = [];
  const targets: number[] = [];
  seqs.forEach((s, b) => {
    for (let t = 0; t < T; t++) {
      const p = s[t];
      idx[b * T + t] = BigInt(p ? (p.kind === 0 ? p.i : p.kind === 1 ? imageBase + p.i : boxBase + p.i) : padRow);
      const next = s[t + 1];
      if (next && next.label !== IGNORE_INDEX) {
        positions.push(b * T + t);
        targets.push(next.label);
      }
    }
  });
  const labelled = positions.length;
  if (labelled === 0) throw new Error('batchFeeds: a batch without any label');

  const feeds: Record<string, Feed> = {
    [STEP_NAMES.textIds]: { dims: [text.length], data: BigInt64Array.from(text, BigInt) },
    [STEP_NAMES.gatherIdx]: { dims: [B, T], data: idx },
    [STEP_NAMES.labelPositions]: { dims: [labelled], data: BigInt64Array.from(positions, BigInt) },
    [STEP_NAMES.targets]: { dims: [labelled], data: BigInt64Array.from(targets, BigInt) },
  };
  if (withImages && images.every((f): f is FrozenFeatures => 'lowRes' in f)) {
    feeds[STEP_NAMES.lowRes] = stack(images.map((f) => f.lowRes));
    feeds[STEP_NAMES.highRes] = stack(images.map((f) => f.highRes));
    feeds[STEP_NAMES.boxFeats] = concatRows(images.map((f) => f.boxFeats));
  } else if (withImages) {
    Object.assign(feeds, encoderFeeds(images as ImageInputs[]));
  }
  return { feeds, withImages, batch: B, seq: T, labelled };
}

function boxCount(f: FrozenFeatures | ImageInputs): number {
  return 'boxFeats' in f ? f.boxFeats.dims[0]! : f.boxWeights[0]!.dims[1]!;
}

/** Pixels, box weights padded to the batch's most boxes (zero columns), and the real boxes' rows. */
function encoderFeeds(images: readonly ImageInputs[]): Record<string, Feed> {
  const kMax = Math.max(1, ...images.map(boxCount));
  const feeds: Record<string, Feed> = {
    [STEP_NAMES.pixelValues]: stack(images.map((f) => f.pixelValues)),
    [STEP_NAMES.pixelValuesAux]: stack(images.map((f) => f.pixelValuesAux)),
  };
  images[0]!.boxWeights.forEach((w0, l) => {
    const hw = w0.dims[0]!;
    const data = new Float32Array(images.length * hw * kMax);
    images.forEach((f, i) => {
      const w = f.boxWeights[l]!;
      const k = w.dims[1]!;
      for (let p = 0; p < hw; p++) data.set(w.data.subarray(p * k, (p + 1) * k), (i * hw + p) * kMax);
    });
    feeds[STEP_NAMES.boxWeights(l)] = { dims: [images.length, hw, kMax], data };
  });
  const rows: bigint[] = [];
  images.forEach((f, i) => {
    for (let j = 0; j < boxCount(f); j++) rows.push(BigInt(i * kMax + j));
  });
  feeds[STEP_NAMES.boxRows] = { dims: [rows.length], data: BigInt64Array.from(rows) };
  return feeds;
}

/** [n] tensors of one shape -> [n, ...shape]. */
function stack(ts: readonly F32Tensor[]): F32Tensor {
  const per = ts[0]!.data.length;
  const data = new Float32Array(per * ts.length);
  ts.forEach((t, i) => data.set(t.data, i * per));
  return { dims: [ts.length, ...ts[0]!.dims], data };
}

/** [k_i, C] tensors -> [sum k_i, C]. */
function concatRows(ts: readonly F32Tensor[]): F32Tensor {
  const C = ts[0]!.dims[1]!;
  const rows = ts.reduce((a, t) => a + t.dims[0]!, 0);
  const data = new Float32Array(rows * C);
  let o = 0;
  for (const t of ts) {
    data.set(t.data, o);
    o += t.data.length;
  }
  return { dims: [rows, C], data };
}
