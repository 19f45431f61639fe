// A small seeded random generator for training (data order, any sampling the trainer does)
// whose whole state is four 32-bit integers, so it round-trips through trainer_state.json.
//
// Generator: xoshiro128** (Blackman & Vigna, 2018): 128-bit state, period 2^128 - 1, 32-bit
// outputs. Seeding: the seed (an integer 0 <= seed < 2^53) and a stream number are mixed with
// the murmur3 32-bit finaliser and expanded over a Weyl sequence (step 0x9e3779b9) into the
// four state words.
//
// The data order is NOT torch's: mmengine's DefaultSampler draws torch.randperm from a
// torch.Generator seeded with seed + epoch, and this module does not reproduce torch's
// Mersenne-Twister/randperm. Same seed -> same order here, on every platform, and a resumed run
// continues the same order; it is simply a different order from the release's.

/** The generator's state: four unsigned 32-bit integers, not all zero. */
export type RngState = [number, number, number, number];

const GOLDEN = 0x9e3779b9;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  private constructor(s: RngState) {
    [this.s0, this.s1, this.s2, this.s3] = s;
  }

  /** A generator from a seed (integer in [0, 2^53)) and an optional stream number (e.g. the epoch). */
  static seeded(seed: number, stream = 0): Rng {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be an integer in [0, 2^53), got ${seed}`);
    if (!Number.isSafeInteger(stream) || stream < 0) throw new RangeError(`stream must be a non-negative integer, got ${stream}`);
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 2 ** 32) >>> 0;
    const shi = Math.floor(stream / 2 ** 32) >>> 0;
    let x = (lo ^ fmix32(hi ^ 0x5bd1e995) ^ fmix32((stream >>> 0) ^ 0x27d4eb2f) ^ fmix32(shi ^ 0x165667b1)) >>> 0;
    const s: number[] = [];
    for (let i = 0; i < 4; i++) {
      x = (x + GOLDEN) >>> 0;
      s.push(fmix32(x));
    }
    if (!s.some((w) => w !== 0)) s[0] = 1; // the one state xoshiro cannot leave
    return new Rng(s as RngState);
  }

  /** A generator continuing from a saved state. */
  static fromState(state: readonly number[]): Rng {
    if (!Array.isArray(state) || state.length !== 4 || !state.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)) {
      throw new RangeError(`rng state must be four unsigned 32-bit integers, got ${JSON.stringify(state)}`);
    }
    if (state.every((w) => w === 0)) throw new RangeError('rng state must not be all zero');
    return new Rng([state[0]!, state[1]!, state[2]!, state[3]!]);
  }

  /** The state (a copy), JSON-serialisable. */
  getState(): RngState {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  /** Next unsigned 32-bit output (xoshiro128**: rotl(s1 * 5, 7) * 9, then the state update). */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits (two outputs). */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 2 ** 26 + lo) / 2 ** 53;
  }

  /** Uniform integer in [0, n), 1 <= n <= 2^32, without modulo bias (rejection of the top remainder). */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) throw new RangeError(`nextInt bound must be an integer in [1, 2^32], got ${n}`);
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }
}

/** Fisher-Yates (Durstenfeld) shuffle of `items` in place, drawing from `rng`. */
export function shuffleInPlace<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = items[i]!;
    items[i] = items[j]!;
    items[j] = t;
  }
  return items;
}

/**
 * The sample order of one epoch: a permutation of 0..count-1 determined by (seed, epoch) alone,
 * so a resumed run needs only the seed, the epoch and its position in it.
 */
export function epochOrder(count: number, seed: number, epoch: number): number[] {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
  const order = Array.from({ length: count }, (_, i) => i);
  return shuffleInPlace(order, Rng.seeded(seed, epoch));
}
