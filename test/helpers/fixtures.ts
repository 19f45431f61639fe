// Access to the reference fixtures copied into fixtures/tiny, and the comparison measures that
// the fixture README's tolerances are written in.

import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { readFileSync } from 'node:fs';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { TensorRef, readBytes, readF32 } from '../../src/weights/types.js';

/** Repository root (tests run from dist/test/..., sources live at the root). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const TINY = join(ROOT, 'fixtures', 'tiny');

let cases: SafetensorsStore | undefined;
let extra: SafetensorsStore | undefined;

function ref(name: string): TensorRef {
  cases ??= SafetensorsStore.open(join(TINY, 'cases.safetensors'));
  extra ??= SafetensorsStore.open(join(TINY, 'extra_cases.safetensors'));
  const r = cases.get(name) ?? extra.get(name);
  if (!r) throw new Error(`fixture tensor ${name} not found`);
  return r;
}

/** A recorded float tensor (f16 fixtures upcast to f32). */
export function fixture(name: string): { dims: number[]; data: Float32Array } {
  const r = ref(name);
  return { dims: [...r.shape], data: readF32(r) };
}

export function fixtureU8(name: string): Uint8Array {
  return readBytes(ref(name));
}

export function fixtureI64(name: string): number[] {
  const b = readBytes(ref(name));
  const copy = new Uint8Array(b);
  return Array.from(new BigInt64Array(copy.buffer), Number);
}

export function casesJson(): Record<string, unknown> {
  return JSON.parse(readFileSync(join(TINY, 'cases.json'), 'utf8')) as Record<string, unknown>;
}

/** ‖out − ref‖ / ‖ref‖ */
export function relErr(out: ArrayLike<number>, refv: ArrayLike<number>): number {
  if (out.length !== refv.length) throw new Error(`length ${out.length} vs reference ${refv.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < out.length; i++) {
    const d = out[i]! - refv[i]!;
    num += d * d;
    den += refv[i]! * refv[i]!;
  }
  return Math.sqrt(num) / Math.sqrt(den);
}

export function absErr(out: ArrayLike<number>, refv: ArrayLike<number>): { max: number; mean: number } {
  if (out.length !== refv.length) throw new Error(`length ${out.length} vs reference ${refv.length}`);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < out.length; i++) {
    const d = Math.abs(out[i]! - refv[i]!);
    if (d > max) max = d;
    sum += d;
  }
  return { max, mean: sum / out.length };
}

/** wave(n,c,h,w; p) from the fixture README, float64 then float32. */
export function wave(n: number, c: number, h: number, w: number, p: number): Float32Array {
  const out = new Float32Array(n * c * h * w);
  let i = 0;
  for (let a = 0; a < n; a++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++)
          out[i++] = 1.5 * Math.sin(0.37 * x + 0.73 * y + 1.1 * ch + 0.5 * a + p) * Math.cos(0.13 * x - 0.29 * y + 0.7 * ch + p);
  return out;
}
