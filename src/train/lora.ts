// LoRA adapters on the LLM's linear layers (Hu et al., 2021; the PEFT library's form, which
// XTuner's `llm_lora` uses): y = x W^T + (alpha / r) (x A^T) B^T, with A [r, in] drawn as PEFT
// draws it (kaiming_uniform_ with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))) and B [out, r] zeros,
// so training starts from the frozen model exactly. No dropout. The adapters live in a memory
// store beside the LLM's tensors, under `<module>.lora_A.weight` / `.lora_B.weight`, so that the
// training decoder finds them by name (model/llm/quantized.ts LlmParams.linear). The release
// trains no LoRA; this is how one machine fine-tunes the LLM.

import { WeightStore, TensorRef, readF32 } from '../weights/types.js';
import { LlmConfig } from '../model/llm/config.js';
import { layerLayout } from '../model/llm/decoder.js';
import { Rng } from './rng.js';

export interface LoraSettings {
  r: number;
  alpha: number;
}

export interface LoraTarget {
  /** e.g. `model.layers.0.self_attn.q_proj` */
  module: string;
  out: number;
  in: number;
}

export const loraA = (module: string) => `${module}.lora_A.weight`;
export const loraB = (module: string) => `${module}.lora_B.weight`;

/** [out, in] of a decoder layer's linear, from the config (a quantized folder stores no float shape). */
function linearShape(c: LlmConfig, name: string): [number, number] {
  const H = c.hiddenSize;
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const I = c.intermediateSize;
  const shapes: Record<string, [number, number]> = {
    q_proj: [q, H], k_proj: [kv, H], v_proj: [kv, H], o_proj: [H, q], qkv_proj: [q + 2 * kv, H],
    gate_proj: [I, H], up_proj: [I, H], gate_up_proj: [2 * I, H], down_proj: [H, I],
  };
  const s = shapes[name];
  if (!s) throw new Error(`LoRA: no shape rule for the linear ${name}`);
  return s;
}

/** Every linear layer of the decoder layers, with its weight's shape. */
export function loraTargets(llm: WeightStore, c: LlmConfig): LoraTarget[] {
  const out: LoraTarget[] = [];
  for (let i = 0; i < c.layers; i++) {
    for (const lin of layerLayout(c).linears) {
      const module = `model.layers.${i}.${lin}`;
      if (!llm.get(`${module}.weight`) && !llm.get(`${module}.weight.qweight`)) throw new Error(`LoRA: ${llm.path} has no ${module}.weight`);
      const [o, inp] = linearShape(c, lin.split('.').pop()!);
      out.push({ module, out: o, in: inp });
    }
  }
  return out;
}

/** A store of float32 tensors held in memory. */
export class MemoryStore implements WeightStore {
  constructor(readonly path: string, private readonly tensors: Map<string, { shape: readonly number[]; data: Float32Array }>) {}
  keys(): string[] {
    return [...this.tensors.keys()];
  }
  get(name: string): TensorRef | undefined {
    const t = this.tensors.get(name);
    if (!t) return undefined;
    return { name, dtype: 'F32', shape: t.shape, source: { kind: 'memory', bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) } };
  }
}

/** Fresh adapters for `targets` (A uniform, B zero), seeded. */
export function initLora(targets: readonly LoraTarget[], s: LoraSettings, seed: number): Map<string, { shape: number[]; data: Float32Array }> {
  const rng = Rng.seeded(seed, 0x10a);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const t of targets) {
    const bound = 1 / Math.sqrt(t.in);
    out.set(loraA(t.module), { shape: [s.r, t.in], data: Float32Array.from({ length: s.r * t.in }, () => (2 * rng.nextFloat() - 1) * bound) });
    out.set(loraB(t.module), { shape: [t.out, s.r], data: new Float32Array(t.out * s.r) });
  }
  return out;
}

/** W + (alpha / r) B A for one target: the merged weight [out, in], float32. */
export function mergedWeight(llm: WeightStore, t: LoraTarget, A: Float32Array, B: Float32Array, s: LoraSettings): Float32Array {
  const W = Float32Array.from(readF32(llm.get(`${t.module}.weight`)!));
  const scale = s.alpha / s.r;
  for (let o = 0; o < t.out; o++) {
    for (let k = 0; k < s.r; k++) {
      const b = B[o * s.r + k]! * scale;
      if (b === 0) continue;
      const row = k * t.in;
      const w = o * t.in;
      for (let i = 0; i < t.in; i++) W[w + i] = W[w + i]! + b * A[row + i]!;
    }
  }
  return W;
}

/** PEFT's adapter_config.json for these adapters. */
export function adapterConfig(s: LoraSettings, targets: readonly LoraTarget[], baseModel: string): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: s.r,
    lora_alpha: s.alpha,
    lora_dropout: 0,
    bias: 'none',
    fan_in_fan_out: false,
    target_modules: [...new Set(targets.map((t) => t.module.split('.').pop()!))],
  };
}

/** PEFT's tensor name for an adapter tensor (`base_model.model.` before the LLM's key). */
export const peftName = (key: string) => `base_model.model.${key}`;
