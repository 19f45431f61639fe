// Choosing the next token from a logits vector [V], as Hugging Face `generate` does with the
// release's settings: repetition penalty over the generated ids, then temperature, top-k and
// top-p; temperature 0 is greedy. Plus the log-softmax and top-k alternatives we report.

export interface SamplingOptions {
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set whose probability reaches p (1 = off). */
  topP?: number;
  /** > 1 discourages tokens already generated (HF CTRL-style: divide positive logits, multiply negative). */
  repetitionPenalty?: number;
  /** Seed of the sampler's random numbers (sampling only). */
  seed?: number;
}

/** mulberry32: a small, fast, seedable generator; enough for sampling. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** log-softmax of logits, in float64 for stable sums. */
export function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! - lse;
  return out;
}

/** Indices of the k largest values, largest first (ties: lower index first). */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (best.length === k && v <= values[best[k - 1]!]!) continue;
    let j = best.length < k ? best.length : k - 1;
    best[j] = i;
    while (j > 0 && values[best[j - 1]!]! < v) {
      best[j] = best[j - 1]!;
      best[j - 1] = i;
      j--;
    }
  }
  return best;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

export class Sampler {
  private readonly random: () => number;

  constructor(private readonly o: SamplingOptions = {}) {
    this.random = seededRandom(o.seed ?? 0);
    if ((o.temperature ?? 0) < 0) throw new RangeError('temperature must be >= 0');
    if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new RangeError('top-p must be in (0, 1]');
    if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new RangeError('top-k must be a non-negative integer');
    if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0)) throw new RangeError('repetition penalty must be > 0');
  }

  /** The next token id given raw logits [V] and the ids generated so far. */
  next(logits: Float32Array, generated: readonly number[]): number {
    const scores = new Float64Array(logits);
    const penalty = this.o.repetitionPenalty ?? 1;
    if (penalty !== 1) {
      for (const id of new Set(generated)) {
        const s = scores[id]!;
        scores[id] = s < 0 ? s * penalty : s / penalty;
      }
    }
    const temperature = this.o.temperature ?? 0;
    if (temperature === 0) return argmax(scores);
    for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / temperature;
    // Candidates by descending score, cut by top-k, then by top-p on their softmax.
    const k = this.o.topK && this.o.topK > 0 ? Math.min(this.o.topK, scores.length) : scores.length;
    const order = k < scores.length ? topIndices(scores, k) : Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]!);
    const max = scores[order[0]!]!;
    const probs = order.map((i) => Math.exp(scores[i]! - max));
    const total = probs.reduce((a, b) => a + b, 0);
    const topP = this.o.topP ?? 1;
    let keep = order.length;
    if (topP < 1) {
      let acc = 0;
      for (let j = 0; j < order.length; j++) {
        acc += probs[j]! / total;
        if (acc >= topP) {
          keep = j + 1;
          break;
        }
      }
    }
    const kept = probs.slice(0, keep);
    const mass = kept.reduce((a, b) => a + b, 0);
    let r = this.random() * mass;
    for (let j = 0; j < keep; j++) {
      r -= kept[j]!;
      if (r <= 0) return order[j]!;
    }
    return order[keep - 1]!;
  }
}
