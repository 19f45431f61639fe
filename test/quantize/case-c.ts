// Case C of the reference fixtures run through a CausalLM: the 722-position multimodal sequence,
// greedy decoding from it, and the logits along the reference's greedy path (teacher-forced), so
// that quantized and cache variants can be compared with the float model and the fixture.

import { casesJson, fixture } from '../helpers/fixtures.js';
import { CausalLM } from '../../src/model/llm/causal-lm.js';
import { F32Tensor } from '../../src/core/tensor.js';

const cases = casesJson();
export const GREEDY = cases['C.greedy_ids'] as number[];

export function argmax(data: Float32Array): number {
  let best = 0;
  for (let j = 1; j < data.length; j++) if (data[j]! > data[best]!) best = j;
  return best;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** [embed(ids_before), image tokens, box tokens, embed(ids_after)] as [722, H]. */
export async function caseCSequence(lm: CausalLM): Promise<F32Tensor> {
  const parts = [
    await lm.embed(cases['C.ids_before_image'] as number[]),
    fixture('C.image_tokens'),
    fixture('C.box_tokens'),
    await lm.embed(cases['C.ids_after_image'] as number[]),
  ];
  const H = parts[0]!.dims[1]!;
  const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
  let o = 0;
  for (const p of parts) {
    data.set(p.data, o);
    o += p.data.length;
  }
  return { dims: [data.length / H, H], data };
}

export interface CaseCRun {
  /** Greedy ids chosen by the model itself (12, as the fixture). */
  ids: number[];
  /** Logits after the prefill, then after feeding each of the reference's greedy ids. */
  logits: Float32Array[];
}

/** Free-running greedy ids, and the logits along the reference path (each on its own cache). */
export async function runCaseC(lm: CausalLM, maxLength?: number): Promise<CaseCRun> {
  const seq = await caseCSequence(lm);
  const ids: number[] = [];
  let cache = lm.newCache(maxLength);
  let l = await lm.forward(seq, cache);
  for (let i = 0; i < GREEDY.length; i++) {
    ids.push(argmax(l.data));
    if (i < GREEDY.length - 1) l = await lm.forward(await lm.embed([ids[i]!]), cache);
  }
  cache = lm.newCache(maxLength);
  const logits = [(await lm.forward(seq, cache)).data];
  for (const id of GREEDY) logits.push((await lm.forward(await lm.embed([id]), cache)).data);
  return { ids, logits };
}
