// The server's side of the model worker: starts it, queues chat jobs (bounded), streams their
// tokens to the caller, cancels on request, and closes it (finishing nothing new).

import { Worker } from 'node:worker_threads';
import { ApiError } from './errors.js';
import type { FromWorker, ModelInfo, ToWorker, WorkerInit, WorkerJob, WorkerResult, WorkerTokenLogprob } from './protocol.js';

export interface JobHandle {
  result: Promise<WorkerResult>;
  cancel(): void;
}

interface Pending {
  onToken: (text: string, logprob?: WorkerTokenLogprob) => void;
  resolve: (r: WorkerResult) => void;
  reject: (e: unknown) => void;
}

export class ModelHost {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private info?: ModelInfo;
  private loadError?: string;
  readonly ready: Promise<ModelInfo>;
  private closed?: Promise<void>;

  private readonly parallel: number;

  constructor(init: WorkerInit, private readonly maxQueue: number) {
    this.parallel = Math.max(1, init.parallel ?? 1);
    this.worker = new Worker(new URL('./model-worker.js', import.meta.url), { workerData: init });
    let onClosed: () => void = () => undefined;
    const closedPromise = new Promise<void>((r) => (onClosed = r));
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready':
            this.info = m.model;
            resolve(m.model);
            break;
          case 'loadError':
            this.loadError = m.message;
            reject(new Error(m.message));
            break;
          case 'token':
            this.pending.get(m.id)?.onToken(m.text, m.logprob);
            break;
          case 'done':
            this.pending.get(m.id)?.resolve(m.result);
            this.pending.delete(m.id);
            break;
          case 'error': {
            const p = this.pending.get(m.id);
            this.pending.delete(m.id);
            p?.reject(m.input ? new ApiError(400, m.message) : new ApiError(500, m.message, 'server_error'));
            break;
          }
          case 'closed':
            onClosed();
            break;
        }
      });
      this.worker.on('error', (e) => {
        this.loadError ??= e.message;
        reject(e);
        for (const p of this.pending.values()) p.reject(new ApiError(500, `the model worker failed: ${e.message}`, 'server_error'));
        this.pending.clear();
        onClosed();
      });
      this.worker.on('exit', () => onClosed());
    });
    this.ready.catch(() => undefined);
    this.closedSignal = closedPromise;
  }

  private readonly closedSignal: Promise<void>;

  get model(): ModelInfo | undefined {
    return this.info;
  }

  get failed(): string | undefined {
    return this.loadError;
  }

  /** Jobs waiting or running. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Jobs waiting for a free slot. */
  get waiting(): number {
    return Math.max(0, this.pending.size - this.parallel);
  }

  /** Queue a job (429 when the queue is full; 503 while the model loads). */
  submit(job: WorkerJob, onToken: Pending['onToken']): JobHandle {
    if (this.loadError) throw new ApiError(500, `the model failed to load: ${this.loadError}`, 'server_error');
    if (!this.info) throw new ApiError(503, 'the model is still loading', 'service_unavailable', null, 'model_loading', { 'Retry-After': '5' });
    if (this.closed) throw new ApiError(503, 'the server is shutting down', 'service_unavailable', null, 'shutting_down');
    // `parallel` jobs run, maxQueue wait.
    if (this.pending.size >= this.maxQueue + this.parallel) {
      throw new ApiError(429, `the server is busy (${this.pending.size} requests in flight: ${this.parallel} running, a queue of ${this.maxQueue}); retry later`, 'rate_limit_error', null, 'queue_full', { 'Retry-After': '1' });
    }
    const id = this.nextId++;
    const result = new Promise<WorkerResult>((resolve, reject) => this.pending.set(id, { onToken, resolve, reject }));
    // A copy of its own (a small Buffer lives in a shared pool), then moved to the worker.
    const image = job.image ? new Uint8Array(job.image) : undefined;
    this.post({ type: 'run', id, job: { ...job, ...(image ? { image } : {}) } }, image ? [image.buffer] : undefined);
    return { result, cancel: () => this.post({ type: 'cancel', id }) };
  }

  private post(m: ToWorker, transfer?: ArrayBuffer[]): void {
    this.worker.postMessage(m, transfer);
  }

  /** Stop: queued jobs are cancelled, the running one finishes its current token; then the worker ends. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      if (this.info) {
        this.post({ type: 'close' });
        for (const id of this.pending.keys()) this.post({ type: 'cancel', id });
        await this.closedSignal;
      }
      await this.worker.terminate();
    })();
    return this.closed;
  }
}
