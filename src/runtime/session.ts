// The only module that imports onnxruntime: sessions, threads and tensor conversion.

import ort from 'onnxruntime-node';
import { join } from 'node:path';
import { F32Tensor } from '../core/tensor.js';
import { Graph } from '../graph/graph.js';
import { PACKED_DATA, PACKED_MODEL, beginEntry, commitEntry, discardEntry, entryComplete, packedCacheEntry } from './packed-cache.js';

export interface SessionOptions {
  /** Folder that external initializer locations are relative to. */
  externalDataFolder?: string;
  /** Intra-op threads (default: onnxruntime's choice, one per core). */
  threads?: number;
  /**
   * Let kernels pre-pack constant weights at load (default false): a copy of the weights in the
   * layout the kernels read. Worth it for the big graphs (7B vision side: encode 5.7 s instead of
   * 7.4 s; MatMulNBits unpacks its weights on every run without it), costly at load unless
   * `packedCache` keeps the packed copy (docs/BENCHMARKS.md, "Pre-packed weights cache").
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
   * With `prepack`: a folder for onnxruntime's pre-packed weights (src/runtime/packed-cache.ts).
   * The first load packs and saves them there; later loads on this machine map them from the
   * file. A cache that cannot be written or read is skipped (the session loads as without it).
   */
  packedCache?: string;
  /** The files the graph's external initializers live in (part of the packed cache's key). */
  externalFiles?: readonly string[];
  /** Told why the packed cache was not used, when it was asked for (also kept as `packedNote`). */
  onNote?: (message: string) => void;
  /**
   * Write onnxruntime's per-node timing profile (a JSON trace) to files starting with this
   * prefix; the file is complete after {@link Session.endProfiling} or release.
   */
  profilePrefix?: string;
  /**
   * Use the packed cache even for a graph of several MatMulNBits nodes, which onnxruntime 1.30
   * maps back wrong (see Session.fromGraph): only for the test that watches that bug.
   */
  allowBrokenNBitsCache?: boolean;
}

/** Nodes of type `op` in the graph and its subgraphs (If branches). */
function countOps(g: Graph, op: string): number {
  let n = 0;
  for (const node of g.nodeList) {
    if (node.op === op) n++;
    for (const a of Object.values(node.attrs)) if (typeof a === 'object' && 'graph' in a) n += countOps(a.graph, op);
  }
  return n;
}

/** How a session got its pre-packed weights: from the cache, packed and saved to it, or packed in memory only. */
export type PackedState = 'mapped' | 'saved' | 'none';

export type Feed = F32Tensor | { readonly dims: readonly number[]; readonly data: BigInt64Array | Int32Array };

/** A compiled graph ready to run; inputs and outputs by name. */
export class Session {
  private constructor(
    private readonly inner: ort.InferenceSession,
    readonly name: string,
    readonly packed: PackedState = 'none',
    /** Why the packed cache was not used, when it was asked for and could not be. */
    readonly packedNote?: string,
  ) {}

  /** A session for a built graph (its external weight files found by serialize()). */
  static fromGraph(g: Graph, opts: Omit<SessionOptions, 'externalDataFolder' | 'externalFiles'> = {}, name = g.name): Promise<Session> {
    const { bytes, externalDataFolder, externalFiles } = g.serialize();
    // onnxruntime 1.30 saves MatMulNBits' pre-packed buffers, but maps them back wrong for every
    // such node after the first (measured: a graph of two 512 x 512 4-bit MatMulNBits gives the
    // first node's output right and the second's as +-1e36 and NaN; one node alone round-trips).
    // A quantized LLM would answer garbage from its second load on, so those graphs pack in
    // memory at every load (test/runtime/packed-cache.test.ts keeps watching onnxruntime's side).
    const cacheable = !opts.packedCache || countOps(g, 'MatMulNBits') < 2 || opts.allowBrokenNBitsCache === true;
    return Session.create(name, bytes, { ...opts, ...(cacheable ? {} : { packedCache: undefined }), externalDataFolder, externalFiles });
  }

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
    // The binding flattens `extra` into config keys: { session: { k: v } } sets `session.k`.
    const session: Record<string, string> = {};
    if (opts.externalDataFolder) session.model_external_initializers_file_folder_path = opts.externalDataFolder;
    if (!(opts.prepack ?? false)) session.disable_prepacking = '1';
    so.extra = { session };
    const create = async (model: Uint8Array | string, o: ort.InferenceSession.SessionOptions) => {
      try {
        return await ort.InferenceSession.create(model as Uint8Array, o);
      } catch (e) {
        throw new Error(`onnxruntime could not load the ${name} graph: ${(e as Error).message}`);
      }
    };
    // Graphs without weight files (small constants only) have nothing worth caching.
    if (!opts.packedCache || !opts.prepack || !opts.externalFiles?.length) return new Session(await create(model, so), name);

    // The packed cache: map a saved entry, else pack now and save one.
    let note: string | undefined;
    const entry = packedCacheEntry(opts.packedCache, name, model, opts.externalFiles, ort.env.versions.node ?? ort.env.versions.common);
    if (entryComplete(entry)) {
      try {
        // The saved graph is already optimised for this machine (onnxruntime's offline mode) and
        // its external data lies beside it.
        return new Session(await create(entry.model, { ...so, graphOptimizationLevel: 'disabled', extra: { session: {} } }), name, 'mapped');
      } catch (e) {
        note = `the packed cache entry ${entry.dir} did not load (${(e as Error).message}); packing again`;
        discardEntry(entry.dir);
      }
    }
    const tmp = beginEntry(entry);
    // A note on an entry that did not load goes along with whatever happens next.
    const noted = (state: PackedState, inner: ort.InferenceSession, message?: string) => {
      const all = [note, message].filter((m) => m !== undefined).join('; ') || undefined;
      if (all) opts.onNote?.(all);
      return new Session(inner, name, state, all);
    };
    if (tmp instanceof Error) return noted('none', await create(model, so), tmp.message);
    try {
      const saving: ort.InferenceSession.SessionOptions = {
        ...so,
        optimizedModelFilePath: join(tmp, PACKED_MODEL),
        extra: {
          session: {
            ...session,
            save_external_prepacked_constant_initializers: '1',
            optimized_model_external_initializers_file_name: PACKED_DATA,
            optimized_model_external_initializers_min_size_in_bytes: '1024',
          },
        },
      };
      const inner = await create(model, saving);
      try {
        commitEntry(entry, tmp);
      } catch (e) {
        discardEntry(tmp);
        return noted('none', inner, `cannot keep the packed cache entry ${entry.dir} (${(e as Error).message})`);
      }
      return noted('saved', inner);
    } catch (e) {
      discardEntry(tmp);
      // A graph onnxruntime refuses fails the same way without the cache; anything else (a full
      // disk while saving) leaves the cache out.
      return noted('none', await create(model, so), `packing into ${entry.dir} failed (${(e as Error).message})`);
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
