// Decode steps of concurrent conversations gathered into one decoder run (CausalLM.forwardBatch):
// each conversation asks for its next token's logits; the asks that arrive while a run is under
// way (or within the same turn of the event loop) go together in the next one, up to the
// decoder's batch slots. The weights are then read once per step for all of them, which on a
// memory-bound CPU makes the extra conversations nearly free.

import type { F32Tensor } from '../core/tensor.js';
import type { CausalLM, KvCache } from '../model/llm/causal-lm.js';

interface Ask {
  id: number;
  cache: KvCache;
  resolve: (logits: Float32Array) => void;
  reject: (e: unknown) => void;
}

export class StepBatcher {
  private readonly queue: Ask[] = [];
  private busy = false;
  /** Runs made and rows they carried (for metrics and tests). */
  runs = 0;
  rows = 0;

  constructor(private readonly lm: CausalLM) {}

  /** The logits after feeding token `id` to `cache` (which grows by one). */
  step(id: number, cache: KvCache): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.queue.push({ id, cache, resolve, reject });
      if (!this.busy) {
        this.busy = true;
        // Let the other conversations' asks of this turn of the event loop join.
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const group = this.queue.splice(0, Math.max(1, this.lm.batchSlots));
      try {
        const embeds = await this.lm.embed(group.map((a) => a.id)); // [n, H]
        const H = this.lm.config.hiddenSize;
        const rows = group.map((a, k): { embeds: F32Tensor; cache: KvCache } => ({ embeds: { dims: [1, H], data: embeds.data.subarray(k * H, (k + 1) * H) }, cache: a.cache }));
        const out = await this.lm.forwardBatch(rows);
        this.runs++;
        this.rows += group.length;
        group.forEach((a, k) => a.resolve(out[k]!.data));
      } catch (e) {
        for (const a of group) a.reject(e);
      }
      // The conversations just answered ask again within microtasks: wait for them.
      await new Promise((r) => setImmediate(r));
    }
    this.busy = false;
  }
}
