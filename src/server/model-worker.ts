// The model worker: loads MG-LLaVA once, then answers chat jobs one at a time, streaming each
// token back to the server. A cancel stops the job before its next token.
//
//   main --run{id, job}--> worker --token*--> --done{result} | error{message, input}
//   main --cancel{id}-->   (the running job stops at its next token; a queued one is dropped)

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { InputError } from '../core/errors.js';
import { toDetections } from '../detect/owlv2.js';
import { readLlmFolderConfig } from '../model/llm/causal-lm.js';
import { MgLlava } from '../model/mg-llava.js';
import type { Detections } from '../preprocess/boxes.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { DEFAULT_VIDEO_FRAMES, loadVideoFrames } from '../video/frames.js';
import type { BoxesJson, FromWorker, ToWorker, WorkerInit, WorkerJob, WorkerResult, WorkerTokenLogprob } from './protocol.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const post = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);

function detectionsOut(d: Detections, detected: boolean): BoxesJson {
  const n = d.labels.length;
  return { boxes: Array.from({ length: n }, (_, i) => Array.from(d.boxes.subarray(i * 4, i * 4 + 4))), labels: [...d.labels], scores: Array.from(d.scores), detected };
}

async function main(): Promise<void> {
  let model: MgLlava;
  let tokenizer: Tokenizer;
  try {
    model = await MgLlava.load(init.spec, { threads: init.threads, template: init.template, packedCache: init.packedCache, detection: init.detection, parallel: init.parallel });
    tokenizer = Tokenizer.fromFolder(model.files.llm!);
  } catch (e) {
    post({ type: 'loadError', message: (e as Error).message });
    return;
  }
  const name = init.spec.model ? basename(init.spec.model.replace(/\/+$/, '')) : basename(model.files.checkpoint).replace(/\.[^.]+$/, '');
  post({ type: 'ready', model: { id: name, template: model.template!.name, contextLength: readLlmFolderConfig(model.files.llm!).config.maxPositions, detector: model.detectsBoxes } });

  const queue: { id: number; job: WorkerJob }[] = [];
  const cancelled = new Set<number>();
  // Up to `parallel` jobs at once: their decode steps run together (MgLlava's batcher).
  const running = new Map<number, AbortController>();
  const parallel = Math.max(1, init.parallel ?? 1);
  let closing = false;

  const tokenText = (id: number) => tokenizer.decode([id]);
  const logprobJson = (id: number, logprob: number) => {
    const token = tokenText(id);
    return { token, logprob, bytes: [...Buffer.from(token, 'utf8')] };
  };

  // The detector's boxes of recent videos' sampled frames, by the file's hash and the frame
  // count: a follow-up about the same video does not detect again.
  const detectedVideos = new Map<string, Detections[]>();
  async function detectVideo(path: string, frames: number, signal: AbortSignal): Promise<Detections[]> {
    const key = `${createHash('sha256').update(await readFile(path)).digest('hex')}:${frames}`;
    const hit = detectedVideos.get(key);
    if (hit) {
      detectedVideos.delete(key);
      detectedVideos.set(key, hit);
      return hit;
    }
    const video = await loadVideoFrames(path, { frames });
    const out: Detections[] = [];
    for (const f of video.frames) {
      if (signal.aborted) break;
      out.push(toDetections(await model.detectObjects(f)));
    }
    if (out.length === video.frames.length) {
      detectedVideos.set(key, out);
      if (detectedVideos.size > 32) detectedVideos.delete(detectedVideos.keys().next().value!);
    }
    return out;
  }

  async function run(id: number, job: WorkerJob, signal: AbortSignal): Promise<WorkerResult> {
    if (job.detect === true && !model.detectsBoxes) throw new InputError('this server has no detector configured (mgllava.detect)');
    const frames = job.frames ?? DEFAULT_VIDEO_FRAMES;
    // A video's boxes: given, none, or the detector's on each sampled frame (found here, so that
    // the answer can report them).
    let videoBoxes: Detections[] | null | undefined;
    let videoDetected = false;
    if (job.video !== undefined) {
      videoBoxes = job.videoBoxes ?? (job.detect === false || !model.detectsBoxes ? null : undefined);
      if (videoBoxes === undefined) {
        videoBoxes = await detectVideo(job.video, frames, signal);
        videoDetected = true;
      }
    }
    // Boxes given, or none (detect: false), or the detector's when one is configured.
    const boxes: Detections | null | undefined = job.boxes ?? (job.detect === false || !model.detectsBoxes ? null : undefined);
    const g = job.generation;
    const stream = model.chat({
      prompt: job.prompt,
      history: job.history,
      ...(job.system !== undefined ? { system: job.system } : {}),
      ...(job.image ? { image: job.image, boxes, boxOptions: { limit: job.boxLimit }, maxPixels: init.maxPixels } : {}),
      ...(job.video !== undefined ? { video: job.video, videoBoxes, videoOptions: { pad: job.pad ?? true, limit: job.boxLimit, frames } } : {}),
      signal,
      generation: {
        ...(g.maxNewTokens !== undefined ? { maxNewTokens: g.maxNewTokens } : {}),
        temperature: g.temperature,
        topP: g.topP,
        topK: g.topK,
        seed: g.seed,
        topLogprobs: g.topLogprobs ?? 0,
        ...(g.stop.length ? { stopWords: [...model.template!.stopWords, ...g.stop] } : {}),
      },
    });
    for await (const t of stream) {
      let logprob: WorkerTokenLogprob | undefined;
      if (g.topLogprobs !== null) logprob = { ...logprobJson(t.id, t.logprob), top_logprobs: t.top.slice(0, g.topLogprobs).map((x) => logprobJson(x.id, x.logprob)) };
      post({ type: 'token', id, text: t.text, ...(logprob ? { logprob } : {}) });
    }
    const r = await stream.result;
    const used = job.video !== undefined
      ? videoBoxes ? videoBoxes.slice(0, frames).map((d) => detectionsOut(d, videoDetected)) : undefined
      : job.boxes ? detectionsOut(job.boxes, false) : r.detections ? detectionsOut(toDetections(r.detections), true) : undefined;
    return {
      text: r.text,
      finishReason: r.finishReason === 'length' ? 'length' : r.finishReason === 'abort' ? 'abort' : 'stop',
      promptTokens: r.promptTokens,
      completionTokens: r.ids.length,
      cachedTokens: r.cachedTokens,
      timings: { encodeMs: r.timings.encodeMs, prefillMs: r.timings.prefillMs, decodeTokensPerS: r.timings.decodeTokensPerS, decodeMs: r.decodeSeconds * 1000 },
      ...(used ? { boxes: used } : {}),
      ...(job.frameIndices ? { frameIndices: job.frameIndices } : {}),
    };
  }

  async function start(next: { id: number; job: WorkerJob }): Promise<void> {
    const abort = new AbortController();
    running.set(next.id, abort);
    try {
      if (cancelled.has(next.id)) abort.abort();
      post({ type: 'done', id: next.id, result: await run(next.id, next.job, abort.signal) });
    } catch (e) {
      post({ type: 'error', id: next.id, message: (e as Error).message, input: e instanceof InputError });
    } finally {
      cancelled.delete(next.id);
      running.delete(next.id);
    }
    pump();
  }

  function pump(): void {
    while (running.size < parallel && queue.length > 0) void start(queue.shift()!);
    if (closing && running.size === 0 && queue.length === 0) {
      closing = false;
      void model.release().then(() => post({ type: 'closed' }));
    }
  }

  port.on('message', (m: ToWorker) => {
    if (m.type === 'run') {
      queue.push({ id: m.id, job: m.job });
      pump();
    } else if (m.type === 'cancel') {
      cancelled.add(m.id);
      running.get(m.id)?.abort();
    } else if (m.type === 'close') {
      closing = true;
      for (const q of queue) cancelled.add(q.id);
      pump();
    }
  });
}

void main();
