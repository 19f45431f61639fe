// AdamW, gradient-norm clipping and gradient accumulation for the trainable weights of
// `mgllava train`, computed the way the release's PyTorch stack computes them in float32.
//
// Parameters, gradients and moments are flat Float32Arrays (row-major, any shape) keyed by
// the parameter's name (`fuse_module.gate.0.weight`, ...). Every intermediate is rounded to
// float32 (Math.fround) where torch's CPU kernels round; python-side scalars (bias corrections,
// step size) stay float64 until torch converts them to float32 for the kernel.

/** Parameters or gradients by name. */
export type NamedArrays = ReadonlyMap<string, Float32Array>;

export interface AdamWOptions {
  /** (beta1, beta2), default (0.9, 0.999). */
  readonly betas?: readonly [number, number];
  /** Added to the denominator, default 1e-8. */
  readonly eps?: number;
  /** Decoupled weight decay, default 0 (the release's setting; torch's own default is 1e-2). */
  readonly weightDecay?: number;
}

/** One parameter's optimiser state (torch's `state[p]`: step, exp_avg, exp_avg_sq). */
export interface AdamWParamState {
  /** Updates applied so far. */
  step: number;
  /** First moment m, same length as the parameter. */
  readonly expAvg: Float32Array;
  /** Second moment v, same length as the parameter. */
  readonly expAvgSq: Float32Array;
}

/** Everything needed to continue an AdamW run bit-identically. */
export interface AdamWState {
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly params: ReadonlyMap<string, AdamWParamState>;
}

const fr = Math.fround;

/**
 * torch.optim.AdamW (torch >= 2: Adam with decoupled_weight_decay; `_single_tensor_adam`, the
 * path torch takes for CPU tensors, foreach and fused off). Per parameter p with gradient g, at
 * step t (per-parameter count, incremented first):
 *
 *   p   *= 1 - lr * wd                      (only if wd != 0)
 *   m    = lerp(m, g, 1 - beta1)            (CPU: fma(w, g - m, m) with w = float(1 - beta1))
 *   v    = v * beta2 + (1 - beta2) * g * g  (mul_ then addcmul_)
 *   bc1  = 1 - beta1^t, bc2 = 1 - beta2^t   (float64)
 *   den  = sqrt(v) / sqrt(bc2) + eps
 *   p   += (-lr / bc1) * m / den            (addcdiv_: value * m, then / den, then + p)
 *
 * Parameters without a gradient in `grads` are skipped (their step count does not advance), as
 * torch skips parameters whose .grad is None.
 */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly state = new Map<string, AdamWParamState>();

  constructor(opts: AdamWOptions = {}) {
    const [b1, b2] = opts.betas ?? [0.9, 0.999];
    this.beta1 = b1;
    this.beta2 = b2;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1)) throw new RangeError(`AdamW betas must be in [0, 1), got (${b1}, ${b2})`);
    if (!(this.eps >= 0)) throw new RangeError(`AdamW eps must be >= 0, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new RangeError(`AdamW weightDecay must be >= 0, got ${this.weightDecay}`);
  }

  /** An optimiser continuing from `state` (takes ownership of its arrays). */
  static fromState(state: AdamWState): AdamW {
    const opt = new AdamW({ betas: state.betas, eps: state.eps, weightDecay: state.weightDecay });
    for (const [name, s] of state.params) {
      if (s.expAvg.length !== s.expAvgSq.length) throw new RangeError(`AdamW state ${name}: exp_avg has ${s.expAvg.length} values, exp_avg_sq ${s.expAvgSq.length}`);
      if (!Number.isInteger(s.step) || s.step < 0) throw new RangeError(`AdamW state ${name}: bad step ${s.step}`);
      opt.state.set(name, { step: s.step, expAvg: s.expAvg, expAvgSq: s.expAvgSq });
    }
    return opt;
  }

  /**
   * The current state. The moment arrays are the optimiser's own (no copy): serialise them
   * before the next `step`.
   */
  getState(): AdamWState {
    return { betas: [this.beta1, this.beta2], eps: this.eps, weightDecay: this.weightDecay, params: this.state };
  }

  /** One update of every parameter that has a gradient, in place. */
  step(params: NamedArrays, grads: NamedArrays, lr: number): void {
    for (const name of grads.keys()) {
      if (!params.has(name)) throw new RangeError(`AdamW: gradient for unknown parameter ${name}`);
    }
    // Scalars as torch hands them to the float32 kernels.
    const decay = fr(1 - lr * this.weightDecay);
    const w1 = fr(1 - this.beta1);
    const b2 = fr(this.beta2);
    const c2 = fr(1 - this.beta2);
    const eps = fr(this.eps);

    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) continue;
      if (g.length !== p.length) throw new RangeError(`AdamW: ${name} has ${p.length} values but its gradient ${g.length}`);
      let st = this.state.get(name);
      if (!st) {
        st = { step: 0, expAvg: new Float32Array(p.length), expAvgSq: new Float32Array(p.length) };
        this.state.set(name, st);
      } else if (st.expAvg.length !== p.length) {
        throw new RangeError(`AdamW: ${name} has ${p.length} values but its state ${st.expAvg.length}`);
      }
      st.step += 1;
      const t = st.step;
      // Python floats (float64): bias corrections, step size, sqrt(bc2).
      const bc1 = 1 - this.beta1 ** t;
      const bc2 = 1 - this.beta2 ** t;
      const negStep = fr(-(lr / bc1));
      const bc2Sqrt = fr(Math.sqrt(bc2));
      const m = st.expAvg;
      const v = st.expAvgSq;

      if (this.weightDecay !== 0) for (let i = 0; i < p.length; i++) p[i] = fr(p[i]! * decay);
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        const mi = fmaf(w1, fr(gi - m[i]!), m[i]!);
        const vi = fr(fr(v[i]! * b2) + fr(fr(c2 * gi) * gi));
        m[i] = mi;
        v[i] = vi;
        const den = fr(fr(fr(Math.sqrt(vi)) / bc2Sqrt) + eps);
        p[i] = fr(p[i]! + fr(fr(negStep * mi) / den));
      }
    }
  }
}

/**
 * torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2, error_if_nonfinite=False), in place:
 *
 *   total = || [ ||g_1||, ||g_2||, ... ] ||       (each norm a float32 value)
 *   coef  = min(max_norm / (total + 1e-6), 1)     (python scalar / tensor = reciprocal * scalar)
 *   g    *= coef                                  (torch multiplies by 1 too; skipped here)
 *
 * Returns the total norm (float32 value, before clipping). maxNorm <= 0 disables the clipping
 * (the norm is still returned). Sums of squares run in float64 and are rounded once, which is
 * the correctly rounded value torch's float32 reductions approximate. Non-finite norms go
 * through the same arithmetic (torch neither raises nor skips with error_if_nonfinite=False).
 */
export function clipGradNorm(grads: NamedArrays | Iterable<Float32Array>, maxNorm: number): number {
  const list = isMap(grads) ? [...grads.values()] : [...grads];
  let sq = 0;
  for (const g of list) {
    let s = 0;
    for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
    const n = fr(Math.sqrt(s));
    sq += n * n;
  }
  const total = fr(Math.sqrt(sq));
  if (!(maxNorm > 0)) return total;
  const coef = Math.min(fr(fr(1 / fr(total + fr(1e-6))) * fr(maxNorm)), 1);
  if (coef !== 1) for (const g of list) for (let i = 0; i < g.length; i++) g[i] = fr(g[i]! * coef);
  return total;
}

function isMap(x: NamedArrays | Iterable<Float32Array>): x is NamedArrays {
  return x instanceof Map;
}

/**
 * mmengine OptimWrapper.scale_loss: the divisor of micro-batch `iter`'s loss (0-based iteration)
 * with `accumulativeCounts` micro-batches per update. When `maxIters` is not a multiple, the
 * last, shorter window divides by its own length (mmengine's `_remainder_counts`).
 */
export function accumulationLossFactor(iter: number, accumulativeCounts: number, maxIters?: number): number {
  checkCounts(iter, accumulativeCounts);
  if (accumulativeCounts === 1) return 1;
  if (maxIters === undefined) return accumulativeCounts;
  const remainder = maxIters % accumulativeCounts;
  return iter < maxIters - remainder ? accumulativeCounts : remainder;
}

/**
 * mmengine OptimWrapper.should_update after the backward of micro-batch `iter`: update when the
 * window is full or the run's last iteration is done.
 */
export function accumulationShouldUpdate(iter: number, accumulativeCounts: number, maxIters?: number): boolean {
  checkCounts(iter, accumulativeCounts);
  const done = iter + 1;
  return done % accumulativeCounts === 0 || done === maxIters;
}

function checkCounts(iter: number, counts: number): void {
  if (!Number.isInteger(iter) || iter < 0) throw new RangeError(`iteration must be a non-negative integer, got ${iter}`);
  if (!Number.isInteger(counts) || counts < 1) throw new RangeError(`accumulative counts must be a positive integer, got ${counts}`);
}

/**
 * Sums micro-batch gradients as torch accumulates `.grad` under mmengine's OptimWrapper: each
 * backward of loss / factor contributes float32(g * float32(1 / factor)) (the scaled seed
 * gradient carried through; exact when factor is a power of two), added into the running sum in
 * float32.
 */
export class GradAccumulator {
  private sums = new Map<string, Float32Array>();
  private n = 0;

  /** Micro-batches added since the last `take`. */
  get count(): number {
    return this.n;
  }

  /** Add one micro-batch's gradients (of its unscaled loss), divided by `lossFactor`. */
  add(grads: NamedArrays, lossFactor = 1): void {
    if (!(lossFactor > 0)) throw new RangeError(`loss factor must be positive, got ${lossFactor}`);
    const scale = fr(1 / lossFactor);
    for (const [name, g] of grads) {
      let acc = this.sums.get(name);
      if (!acc) {
        acc = new Float32Array(g.length);
        this.sums.set(name, acc);
      } else if (acc.length !== g.length) {
        throw new RangeError(`GradAccumulator: ${name} has ${g.length} values, earlier micro-batches ${acc.length}`);
      }
      if (lossFactor === 1) for (let i = 0; i < g.length; i++) acc[i] = fr(acc[i]! + g[i]!);
      else for (let i = 0; i < g.length; i++) acc[i] = fr(acc[i]! + fr(g[i]! * scale));
    }
    this.n++;
  }

  /** The accumulated gradients; the accumulator starts empty again (zero_grad). */
  take(): Map<string, Float32Array> {
    const out = this.sums;
    this.sums = new Map();
    this.n = 0;
    return out;
  }
}

// fmaf for float32 inputs: round(a * b + c) once to float32. a * b is exact in float64 (24-bit
// significands); the sum is exact as s + e (TwoSum). Rounding s alone can only go wrong when s
// lies exactly halfway between two floats and e != 0: then e decides the direction.
const F32 = new Float32Array(1);
const I32 = new Int32Array(F32.buffer);

export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bb = s - p;
  const e = p - (s - bb) + (c - bb);
  const r = fr(s);
  if (e === 0 || r === s || !Number.isFinite(s)) return r;
  const other = nextFloatToward(r, s);
  if ((r + other) / 2 !== s) return r;
  return e > 0 ? Math.max(r, other) : Math.min(r, other);
}

function nextFloatToward(r: number, t: number): number {
  if (r === 0) return t > 0 ? 2 ** -149 : -(2 ** -149);
  F32[0] = r;
  I32[0] += (t > r) === (r > 0) ? 1 : -1;
  return F32[0];
}
