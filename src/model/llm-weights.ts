// The LLM's tensors: the base LLM folder's, with the MG-LLaVA checkpoint's `llm.*` tensors (the
// stage-2 fine-tuned LLM) taking their place where present. Keys are the base model's
// (`model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`, ...).
//
// XTuner LoRA checkpoints (`llm_lora=dict(type=LoraConfig, r=..., lora_alpha=...)`): the LLM is a
// PEFT model, so its state-dict keys gain `base_model.model.` and XTuner's model.state_dict()
// keeps only the adapter tensors (xtuner/model/utils.py get_peft_model_state_dict: keys holding
// "lora_" and the adapter name, which, unlike PEFT's own function, stays in the key):
//   llm.base_model.model.<module>.lora_A.default.weight   A [r, in]
//   llm.base_model.model.<module>.lora_B.default.weight   B [out, r]
// plus, with `modules_to_save`, `llm.base_model.model.<module>.modules_to_save.default.<param>`
// (a full trained copy; `original_module.<param>` is the frozen one). A full PEFT state dict also
// has `<module>.base_layer.weight` (PEFT >= 0.7) or `<module>.weight` beside the adapters, and the
// other tensors under `llm.base_model.model.<key>`. PEFT's merge (LoraLayer.get_delta_weight) is
//   <module>.weight = W + scaling * B A,  scaling = lora_alpha / r  (lora_alpha / sqrt(r) with use_rslora)
// r is A's first dimension; lora_alpha is only in the training config (and PEFT's
// adapter_config.json), so it comes from the caller or an adapter_config.json next to the
// checkpoint. W is the checkpoint's base_layer / plain copy when present, else the base LLM's.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InputError } from '../core/errors.js';
import { OverlayStore, PrefixStore, TensorRef, WeightStore, readF32 } from '../weights/types.js';

const PEFT_PREFIX = 'llm.base_model.model.';
const ADAPTER_CONFIG = 'adapter_config.json';

/**
 * The LLM's tensors under the base model's keys. `loraAlpha` is the training config's
 * `llm_lora.lora_alpha`; it is needed (or an adapter_config.json next to the checkpoint) only when
 * the checkpoint holds XTuner LoRA adapters, which are then merged into the weights.
 */
export function llmWeights(base: WeightStore, checkpoint: WeightStore, loraAlpha?: number): WeightStore {
  const label = `${base.path} + ${checkpoint.path} (llm.*)`;
  const keys = checkpoint.keys();
  if (!keys.some((k) => k.startsWith(PEFT_PREFIX))) return new OverlayStore(label, [base, new PrefixStore(checkpoint, 'llm.')]);
  // Plain `llm.<key>` tensors (those outside the PEFT wrapper) still override the base.
  const plain = new FilteredStore(new PrefixStore(checkpoint, 'llm.'), (k) => !k.startsWith('base_model.model.'));
  const below = new OverlayStore(label, [base, plain]);
  return new OverlayStore(label, [below, new PeftStore(label, checkpoint, below, loraAlpha)]);
}

/** A store showing only the keys `keep` accepts. */
class FilteredStore implements WeightStore {
  constructor(private readonly inner: WeightStore, private readonly keep: (key: string) => boolean) {}
  get path(): string {
    return this.inner.path;
  }
  keys(): string[] {
    return this.inner.keys().filter(this.keep);
  }
  get(name: string): TensorRef | undefined {
    return this.keep(name) ? this.inner.get(name) : undefined;
  }
}

interface LoraModule {
  a?: string;
  b?: string;
  /** The checkpoint's own frozen weight for the module (base_layer or plain), when it has one. */
  w?: string;
}

/** `llm.base_model.model.*` of a checkpoint under the base model's keys, LoRA adapters merged. */
class PeftStore implements WeightStore {
  /** Plain key -> checkpoint key, for tensors passed through. */
  private readonly direct = new Map<string, string>();
  private readonly lora = new Map<string, LoraModule>();
  private readonly scaling: (r: number) => number;
  /** Merged weights, kept while someone holds them (recomputed if collected). */
  private readonly merged = new Map<string, WeakRef<Uint8Array>>();

  constructor(
    readonly path: string,
    private readonly ckpt: WeightStore,
    /** Where W comes from when the checkpoint has no copy: the base LLM with plain llm.* over it. */
    private readonly below: WeightStore,
    loraAlpha: number | undefined,
  ) {
    const where = ckpt.path;
    const adapters = new Set<string>();
    const saved = new Map<string, string>(); // modules_to_save copies win over everything else
    for (const full of ckpt.keys()) {
      if (!full.startsWith(PEFT_PREFIX)) continue;
      const k = full.slice(PEFT_PREFIX.length);
      let m: RegExpExecArray | null;
      if ((m = /^(.+)\.lora_([AB])(?:\.([^.]+))?\.weight$/.exec(k))) {
        const mod = this.module(m[1]!);
        if (m[2] === 'A') mod.a = full;
        else mod.b = full;
        adapters.add(m[3] ?? '');
      } else if ((m = /^(.+)\.base_layer\.(.+)$/.exec(k))) {
        if (m[2] === 'weight') this.module(m[1]!).w = full;
        else this.direct.set(`${m[1]}.${m[2]}`, full);
      } else if ((m = /^(.+)\.modules_to_save\.([^.]+)\.(.+)$/.exec(k))) {
        saved.set(`${m[1]}.${m[3]}`, full);
        adapters.add(m[2]!);
      } else if (/\.original_module\./.test(k)) {
        continue; // the frozen original of a modules_to_save module: the base has it
      } else if (/(^|\.)lora_/.test(k)) {
        throw new InputError(`${where}: unsupported PEFT tensor ${full} (only LoRA on linear layers, lora_A/lora_B, can be merged)`, where);
      } else {
        this.direct.set(k, full);
      }
    }
    if (adapters.size > 1) throw new InputError(`${where}: several PEFT adapters (${[...adapters].map((a) => a || '(unnamed)').join(', ')}); only one can be merged`, where);
    for (const [key, full] of saved) this.direct.set(key, full);
    // A module's own plain `<module>.weight` next to its adapters is its frozen W.
    for (const [name, mod] of this.lora) {
      const plainW = `${name}.weight`;
      const own = this.direct.get(plainW);
      if (own !== undefined) {
        mod.w ??= own;
        this.direct.delete(plainW);
      }
    }
    this.scaling = this.lora.size ? loraScaling(where, loraAlpha) : () => 1;
    for (const [name, mod] of this.lora) this.check(name, mod);
  }

  private module(name: string): LoraModule {
    let m = this.lora.get(name);
    if (!m) this.lora.set(name, (m = {}));
    return m;
  }

  /** Both adapters present and shaped A [r, in], B [out, r] against W [out, in]. */
  private check(name: string, mod: LoraModule): void {
    const where = this.ckpt.path;
    if (!mod.a || !mod.b) throw new InputError(`${where}: LoRA module ${name} has ${mod.a ? 'lora_A' : 'lora_B'} but no ${mod.a ? 'lora_B' : 'lora_A'}`, where);
    const a = this.ckpt.get(mod.a)!;
    const b = this.ckpt.get(mod.b)!;
    const w = this.baseWeight(name, mod);
    if (!w) throw new InputError(`${where}: LoRA module ${name} has no ${name}.weight to merge into, in the checkpoint or the base LLM`, where);
    const [r, inDim] = a.shape;
    const ok = a.shape.length === 2 && b.shape.length === 2 && w.shape.length === 2 && b.shape[1] === r && w.shape[0] === b.shape[0] && w.shape[1] === inDim && r! > 0;
    if (!ok) {
      throw new InputError(
        `${where}: LoRA module ${name}: lora_A [${a.shape.join(', ')}], lora_B [${b.shape.join(', ')}] do not fit the weight [${w.shape.join(', ')}] (need A [r, in], B [out, r])`,
        where,
      );
    }
  }

  private baseWeight(name: string, mod: LoraModule): TensorRef | undefined {
    return mod.w ? this.ckpt.get(mod.w) : this.below.get(`${name}.weight`);
  }

  keys(): string[] {
    return [...this.direct.keys(), ...[...this.lora.keys()].map((m) => `${m}.weight`)];
  }

  get(name: string): TensorRef | undefined {
    const full = this.direct.get(name);
    if (full !== undefined) {
      const t = this.ckpt.get(full);
      return t && { ...t, name };
    }
    if (!name.endsWith('.weight')) return undefined;
    const module = name.slice(0, -'.weight'.length);
    const mod = this.lora.get(module);
    if (!mod) return undefined;
    const w = this.baseWeight(module, mod)!;
    let bytes = this.merged.get(name)?.deref();
    if (!bytes) {
      bytes = mergeLora(readF32(w), readF32(this.ckpt.get(mod.a!)!), readF32(this.ckpt.get(mod.b!)!), w.shape[0]!, w.shape[1]!, this.scaling);
      this.merged.set(name, new WeakRef(bytes));
    }
    return { name, dtype: 'F32', shape: w.shape, source: { kind: 'memory', bytes } };
  }
}

/** W + scaling(r) * B A in float32, W [out, in], A [r, in], B [out, r]; returns the bytes. */
function mergeLora(w: Float32Array, a: Float32Array, b: Float32Array, out: number, inDim: number, scaling: (r: number) => number): Uint8Array {
  const r = a.length / inDim;
  const s = scaling(r);
  const m = Float32Array.from(w);
  for (let o = 0; o < out; o++) {
    const row = o * inDim;
    for (let k = 0; k < r; k++) {
      const c = b[o * r + k]! * s;
      if (c === 0) continue;
      const ak = k * inDim;
      for (let i = 0; i < inDim; i++) m[row + i] = m[row + i]! + c * a[ak + i]!;
    }
  }
  return new Uint8Array(m.buffer);
}

/**
 * scaling(r) from `loraAlpha`, else from PEFT's adapter_config.json next to the checkpoint (in a
 * checkpoint folder, or beside the file / folder): lora_alpha / r, or / sqrt(r) with use_rslora.
 */
function loraScaling(checkpoint: string, loraAlpha: number | undefined): (r: number) => number {
  if (loraAlpha !== undefined) {
    if (!Number.isFinite(loraAlpha) || loraAlpha <= 0) throw new InputError(`${checkpoint}: lora_alpha must be a positive number, got ${loraAlpha}`, checkpoint);
    return (r) => loraAlpha / r;
  }
  const file = adapterConfigPath(checkpoint);
  if (!file) {
    throw new InputError(
      `${checkpoint}: XTuner LoRA checkpoint (llm.base_model.model.*.lora_A/lora_B) but lora_alpha is unknown: set "lora_alpha" in mgllava_config.json (the training config's llm_lora=dict(r=..., lora_alpha=...)) or put PEFT's ${ADAPTER_CONFIG} next to it`,
      checkpoint,
    );
  }
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`${file}: not valid JSON (${(e as Error).message})`, file);
  }
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new InputError(`${file}: expected a JSON object`, file);
  const alpha = cfg['lora_alpha'];
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha <= 0) throw new InputError(`${file}: "lora_alpha" must be a positive number`, file);
  const pattern = cfg['alpha_pattern'];
  if (pattern && typeof pattern === 'object' && Object.keys(pattern).length > 0) throw new InputError(`${file}: per-module "alpha_pattern" is not supported`, file);
  if (cfg['fan_in_fan_out'] === true) throw new InputError(`${file}: "fan_in_fan_out" (Conv1D weights) is not supported`, file);
  return cfg['use_rslora'] === true ? (r) => alpha / Math.sqrt(r) : (r) => alpha / r;
}

function adapterConfigPath(checkpoint: string): string | undefined {
  let isDir: boolean;
  try {
    isDir = statSync(checkpoint).isDirectory();
  } catch {
    return undefined; // not a path on disk (a composite store)
  }
  const candidates = isDir ? [join(checkpoint, ADAPTER_CONFIG), join(dirname(checkpoint), ADAPTER_CONFIG)] : [join(dirname(checkpoint), ADAPTER_CONFIG)];
  return candidates.find((p) => existsSync(p));
}
