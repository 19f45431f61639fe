// Messages between the server (main thread) and the model worker (worker_threads). The model
// runs in the worker because onnxruntime's session runs block the thread they run on.

import type { ModelSpec } from '../model/model-files.js';
import type { ChatJob } from './request.js';

export interface WorkerInit {
  spec: ModelSpec;
  threads?: number;
  template?: string;
  packedCache?: string | false;
  maxPixels: number;
  /** requests decoded together (batched decoding) */
  parallel?: number;
  /** detector settings from the command line */
  detection?: { tags?: string[]; threshold?: number };
}

/** A chat job as the worker gets it: the image already fetched, the video in a file. */
export interface WorkerJob extends Omit<ChatJob, 'imageUrl' | 'videoUrl' | 'stream' | 'includeUsage' | 'model'> {
  image?: Uint8Array;
  /** the video's file (the server removes a temporary one after the job) */
  video?: string;
  /** the frames the video job samples (the server's probe) */
  frameIndices?: number[];
}

/** Boxes as the model was given them, in the image's (or frame's) pixels. */
export interface BoxesJson {
  boxes: number[][];
  labels: string[];
  scores: number[];
  detected: boolean;
}

export interface TokenLogprobJson {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface WorkerTokenLogprob extends TokenLogprobJson {
  top_logprobs: TokenLogprobJson[];
}

export interface WorkerResult {
  text: string;
  finishReason: 'stop' | 'length' | 'abort';
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  timings: { encodeMs: number; prefillMs: number; decodeTokensPerS: number; decodeMs: number };
  /** the boxes the model was given for the image, in its pixels; for a video, one entry per sampled frame */
  boxes?: BoxesJson | BoxesJson[];
  /** a video's sampled frame indices */
  frameIndices?: number[];
}

export interface ModelInfo {
  id: string;
  template: string;
  contextLength: number;
  detector: boolean;
}

export type ToWorker = { type: 'run'; id: number; job: WorkerJob } | { type: 'cancel'; id: number } | { type: 'close' };

export type FromWorker =
  | { type: 'ready'; model: ModelInfo }
  | { type: 'loadError'; message: string }
  | { type: 'token'; id: number; text: string; logprob?: WorkerTokenLogprob }
  | { type: 'done'; id: number; result: WorkerResult }
  | { type: 'error'; id: number; message: string; input: boolean }
  | { type: 'closed' };
