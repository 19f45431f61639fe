// A batch of samples as the training step graph's feeds (step-graph.ts), laid out as the
// release's prepare_inputs_labels_for_multimodal does: each sample's text ids in order, the
// image's N tokens then its k box tokens at the image position (all labelled -100), right
// padding to the batch's longest sequence (labels -100); the targets are the labels shifted
// left by one (HF's causal-LM loss predicts token t+1 at position t), given with their flat
// positions b * T + t for the positions that have one.

import { F32Tensor } from '../core/tensor.js';
import { Feed } from '../runtime/session.js';
import { FrozenFeatures } from './frozen-features.js';
import { IGNORE_INDEX, IMAGE_TOKEN_INDEX } from './labels.js';
import { PAD_TOKEN_INDEX } from './data.js';
import { STEP_NAMES } from './step-graph.js';

export interface BatchItem {
  inputIds: readonly number[];
  labels: readonly number[];
  /** The sample's image features, when it has an image. */
  features?: FrozenFeatures;
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
  const images: FrozenFeatures[] = [];
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
      if (!it.features || used) throw new Error('batchFeeds: an image position without (or with a second use of) its image features');
      used = true;
      const img = images.length;
      images.push(it.features);
      for (let j = 0; j < tokens; j++) out.push({ kind: 1, i: img * tokens + j, label: IGNORE_INDEX });
      const k = it.features.boxFeats.dims[0]!;
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
  if (withImages) {
    feeds[STEP_NAMES.lowRes] = stack(images.map((f) => f.lowRes));
    feeds[STEP_NAMES.highRes] = stack(images.map((f) => f.highRes));
    feeds[STEP_NAMES.boxFeats] = concatRows(images.map((f) => f.boxFeats));
  }
  return { feeds, withImages, batch: B, seq: T, labelled };
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
