// The learning rate of each training iteration, as the MG-LLaVA release's XTuner configs set it:
//
//   param_scheduler = [LinearLR(start_factor=1e-5, by_epoch=True, begin=0, end=warmup_ratio*max_epochs,
//                               convert_to_iter_based=True),
//                      CosineAnnealingLR(eta_min=0, by_epoch=True, begin=warmup_ratio*max_epochs,
//                                        end=max_epochs, convert_to_iter_based=True)]
//
// mmengine builds both with `build_iter_from_epoch(epoch_length = len(train_dataloader))`, which
// truncates: begin = int(begin * epoch_length), end = int(end * epoch_length). Each scheduler
// steps once at construction and once after every training iteration; it changes the lr only
// while begin <= global_step < end, and each change is a chained (recursive) update of the lr
// the optimizer holds at that moment. Iteration `s` (0-based) therefore uses the value computed
// at global step s. Unrolled, with W = trunc(warmupRatio * totalSteps) and T = W - 1:
//
//   s < W (LinearLR):          lr = base * (f + (1 - f) * s / T)      (W = 1: lr = base * f)
//   W <= s < N (cosine):       lr = start * (1 + cos(pi * (s - W) / (N - W))) / 2
//
// where f = start factor and `start` is the lr LinearLR left behind: base when W >= 2, but
// base * f when W = 1 (LinearLR's only step applies the start factor and it never ramps; the
// cosine's first value is "keep the current lr", so the whole run stays around base * 1e-5).
// That quirk is reproduced because the release has it. Steps at or past the end keep the last
// value (a scheduler outside its range leaves the lr alone).
//
// Iterations are dataloader iterations (micro-batches): with accumulative_counts > 1 mmengine still
// steps the schedulers after every iteration (ParamSchedulerHook.after_train_iter), so an update
// uses the lr of the iteration that triggers it, the last of its window. The release uses 1.
//
// Where mmengine refuses to run, we choose: W = 0 (fewer than 34 iterations at ratio 0.03, or
// ratio 0) makes LinearLR raise "end should be larger than begin"; here it means no warm-up,
// the cosine spans all iterations from base.
//
// 'constant' is LinearLR alone (the same warm-up, then whatever lr it left: base, or base * f
// when W = 1). The closed forms agree with mmengine's recursive products to ~1e-15 relative
// (see test/train/schedule.test.ts for a table computed by a plain re-implementation of the
// recursion).

export type ScheduleKind = 'cosine' | 'constant';

export interface ScheduleOptions {
  /** The optimiser's configured lr (mmengine's `initial_lr`). */
  readonly baseLr: number;
  /** Training iterations in all (max_epochs * len(train_dataloader)), a positive integer. */
  readonly totalSteps: number;
  /** Fraction of one epoch's iterations spent warming up, in [0, 1); the release uses 0.03. */
  readonly warmupRatio: number;
  readonly schedule: ScheduleKind;
  /** LinearLR's start factor; the release uses 1e-5. */
  readonly startFactor?: number;
  /**
   * Epochs the totalSteps span (default 1, as in the release). mmengine converts epoch-based
   * bounds with the per-epoch iteration count, so the warm-up ends at
   * trunc((warmupRatio * epochs) * (totalSteps / epochs)).
   */
  readonly epochs?: number;
}

export const RELEASE_START_FACTOR = 1e-5;

/**
 * Iterations of linear warm-up: mmengine's int(end * epoch_length) with end = warmupRatio * epochs
 * (param_scheduler.py, LinearParamScheduler.build_iter_from_epoch). 0 means no warm-up.
 */
export function warmupIterations(opts: Pick<ScheduleOptions, 'totalSteps' | 'warmupRatio' | 'epochs'>): number {
  const { totalSteps, warmupRatio } = opts;
  const epochs = opts.epochs ?? 1;
  if (!Number.isInteger(totalSteps) || totalSteps < 1) throw new RangeError(`totalSteps must be a positive integer, got ${totalSteps}`);
  if (!Number.isInteger(epochs) || epochs < 1 || totalSteps % epochs !== 0) {
    throw new RangeError(`epochs must be a positive integer dividing totalSteps (${totalSteps}), got ${epochs}`);
  }
  if (!(warmupRatio >= 0 && warmupRatio < 1)) throw new RangeError(`warmupRatio must be in [0, 1), got ${warmupRatio}`);
  // Same double operations as Python: (warmup_ratio * max_epochs) * epoch_length, then int().
  return Math.trunc(warmupRatio * epochs * (totalSteps / epochs));
}

/** The lr the optimiser uses at iteration `step` (0-based). */
export function learningRate(step: number, opts: ScheduleOptions): number {
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`step must be a non-negative integer, got ${step}`);
  const { baseLr, totalSteps, schedule } = opts;
  const f = opts.startFactor ?? RELEASE_START_FACTOR;
  if (!(f >= 0 && f <= 1)) throw new RangeError(`startFactor must be in [0, 1], got ${f}`);
  if (schedule !== 'cosine' && schedule !== 'constant') throw new RangeError(`unknown schedule ${String(schedule)}`);
  const w = warmupIterations(opts);

  if (step < w) return warmupValue(baseLr, f, w, step);
  // The lr LinearLR leaves behind (its value at its last step w - 1), or base without warm-up.
  // (LinearLR reaches exactly end_factor = 1 at its last step when w >= 2.)
  const start = w === 1 ? baseLr * f : baseLr;
  if (schedule === 'constant') return start;

  // CosineAnnealingLR over [w, totalSteps): T_max = end - begin; eta_min = 0.
  const tMax = totalSteps - w;
  const k = Math.min(step, totalSteps - 1) - w;
  return (start * (1 + Math.cos((Math.PI * k) / tMax))) / 2;
}

/** LinearLR's value at its k-th step: start_factor, rising linearly to 1 over total_iters = w - 1 steps. */
function warmupValue(base: number, f: number, w: number, k: number): number {
  if (w === 1) return base * f; // total_iters = 0: only the first-step branch ever runs
  return base * (f + ((1 - f) * k) / (w - 1));
}
