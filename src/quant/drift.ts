// How far a quantized model's next-token distributions drift from the float model's, position
// by position over the same prompt:
//
//   KL(p || q) = sum_v p_v (log p_v - log q_v),   p = softmax(reference logits), q = the test's
//   top-1 agreement = share of positions where argmax p = argmax q
//
// The test side comes as logits (ours) or as probabilities (what llama.cpp hands out); a
// probability of 0 (underflow) counts as 1e-30, so one token cannot make the mean infinite.

export interface Drift {
  positions: number;
  meanKl: number;
  maxKl: number;
  top1Agreement: number;
}

/** log-softmax of one row of logits, in float64. */
export function logSoftmax(logits: ArrayLike<number>, from = 0, V = logits.length): Float64Array {
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, logits[from + v]!);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(logits[from + v]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(V);
  for (let v = 0; v < V; v++) out[v] = logits[from + v]! - lse;
  return out;
}

const FLOOR = Math.log(1e-30);

function argmax(x: ArrayLike<number>, from: number, V: number): number {
  let best = 0;
  for (let v = 1; v < V; v++) if (x[from + v]! > x[from + best]!) best = v;
  return best;
}

/**
 * reference logits [P, V] against test logits or probabilities [P, V] (row p of each is the same
 * prompt position).
 */
export function distributionDrift(reference: ArrayLike<number>, test: ArrayLike<number>, V: number, testIs: 'logits' | 'probabilities'): Drift {
  if (reference.length !== test.length || reference.length % V !== 0 || reference.length === 0) {
    throw new RangeError(`drift: reference has ${reference.length} values, test ${test.length}; both must be [positions, ${V}]`);
  }
  const P = reference.length / V;
  let sum = 0;
  let max = 0;
  let agree = 0;
  for (let p = 0; p < P; p++) {
    const lp = logSoftmax(reference, p * V, V);
    let lq: Float64Array;
    if (testIs === 'logits') lq = logSoftmax(test, p * V, V);
    else {
      lq = new Float64Array(V);
      for (let v = 0; v < V; v++) {
        const q = test[p * V + v]!;
        lq[v] = q > 0 ? Math.log(q) : FLOOR;
      }
    }
    let kl = 0;
    for (let v = 0; v < V; v++) kl += Math.exp(lp[v]!) * (lp[v]! - Math.max(lq[v]!, FLOOR));
    kl = Math.max(0, kl); // rounding can leave -1e-17 where the two agree
    sum += kl;
    max = Math.max(max, kl);
    if (argmax(reference, p * V, V) === argmax(test, p * V, V)) agree++;
  }
  return { positions: P, meanKl: sum / P, maxKl: max, top1Agreement: agree / P };
}
