// The only module that imports onnxruntime: sessions, threads and tensor conversion.

import ort from 'onnxruntime-node';
import { F32Tensor } from '../core/tensor.js';

export interface SessionOptions {
  /** Folder that external initializer locations are relative to. */
  externalDataFolder?: string;
  /** Intra-op threads (default: onnxruntime's choice, one per core). */
  threads?: number;
  /**
   * Let kernels pre-pack constant weights at load (default false). Measured on the CLIP-L and
   * ConvNeXt-L graphs (docs/BENCHMARKS.md): pre-packing took seconds and a copy of every weight
   * for no run-time gain.
   */
  prepack?: boolean;
  /**
   * onnxruntime's memory pattern (default true): one planned block for all intermediates per
   * input shape. Off for the LLM decoder: with it, the large elementwise nodes of a 666-token
   * prefill ran on freshly faulted memory every run (the SwiGLU Mul took 2.2-2.7 s of a 28 s
   * 7B prefill, even on a second prompt; ~0 without). Decode steps measured the same either way.
   */
  memPattern?: boolean;
  /** Execution providers in order of preference (default: cpu). */
  providers?: string[];
  /**
   * Write onnxruntime's per-node timing profile (a JSON trace) to files starting with this
   * prefix; the file is complete after {@link Session.endProfiling} or release.
   */
  profilePrefix?: string;
}

export type Feed = F32Tensor | { readonly dims: readonly number[]; readonly data: BigInt64Array | Int32Array };

/** A compiled graph ready to run; inputs and outputs by name. */
export class Session {
  private constructor(private readonly inner: ort.InferenceSession, readonly name: string) {}

  static async create(name: string, model: Uint8Array, opts: SessionOptions = {}): Promise<Session> {
    const so: ort.InferenceSession.SessionOptions = {
      executionProviders: opts.providers ?? ['cpu'],
      graphOptimizationLevel: 'all',
      enableMemPattern: opts.memPattern ?? true,
      logSeverityLevel: 3,
    };
    if (opts.threads) so.intraOpNumThreads = opts.threads;
    if (opts.profilePrefix) {
      so.enableProfiling = true;
      so.profileFilePrefix = opts.profilePrefix;
    }
    const session: Record<string, string> = {};
    if (opts.externalDataFolder) session.model_external_initializers_file_folder_path = opts.externalDataFolder;
    if (!(opts.prepack ?? false)) session['session.disable_prepacking'] = '1';
    so.extra = { session };
    try {
      return new Session(await ort.InferenceSession.create(model, so), name);
    } catch (e) {
      throw new Error(`onnxruntime could not load the ${name} graph: ${(e as Error).message}`);
    }
  }

  get inputNames(): readonly string[] {
    return this.inner.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.inner.outputNames;
  }

  /** Run with float32/int feeds; returns every float32 output by name. */
  async run(feeds: Record<string, Feed>, outputs?: readonly string[]): Promise<Record<string, F32Tensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) {
      const type = v.data instanceof Float32Array ? 'float32' : v.data instanceof BigInt64Array ? 'int64' : 'int32';
      ortFeeds[k] = new ort.Tensor(type, v.data, [...v.dims]);
    }
    const res = outputs ? await this.inner.run(ortFeeds, [...outputs]) : await this.inner.run(ortFeeds);
    const out: Record<string, F32Tensor> = {};
    for (const [k, t] of Object.entries(res)) {
      if (t.type !== 'float32') throw new Error(`${this.name}: output ${k} is ${t.type}, expected float32`);
      out[k] = { dims: [...t.dims], data: t.data as Float32Array };
    }
    return out;
  }

  /** Ends a profile started by `profilePrefix` (onnxruntime writes the file now). */
  endProfiling(): void {
    this.inner.endProfiling();
  }

  async release(): Promise<void> {
    await this.inner.release();
  }
}
