// The model worker: loads MG-LLaVA once, then answers chat jobs one at a time, streaming each
// token back to the server. A cancel stops the job before its next token.
//
//   main --run{id, job}--> worker --token*--> --done{result} | error{message, input}
//   main --cancel{id}-->   (the running job stops at its next token; a queued one is dropped)

import { basename } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { InputError } from '../core/errors.js';
import { toDetections } from '../detect/owlv2.js';
import { readLlmFolderConfig } from '../model/llm/causal-lm.js';
import { MgLlava } from '../model/mg-llava.js';
import type { Detections } from '../preprocess/boxes.js';
import { decodeImage } from '../preprocess/decode.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import type { FromWorker, ToWorker, WorkerInit, WorkerJob, WorkerResult, WorkerTokenLogprob } from './protocol.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const post = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);

function detectionsOut(d: Detections, detected: boolean): NonNullable<WorkerResult['boxes']> {
  const n = d.labels.length;
  return { boxes: Array.from({ length: n }, (_, i) => Array.from(d.boxes.subarray(i * 4, i * 4 + 4))), labels: [...d.labels], scores: Array.from(d.scores), detected };
}

async function main(): Promise<void> {
  let model: MgLlava;
  let tokenizer: Tokenizer;
  try {
    model = await MgLlava.load(init.spec, { threads: init.threads, template: init.template, packedCache: init.packedCache, detection: init.detection });
    tokenizer = Tokenizer.fromFolder(model.files.llm!);
  } catch (e) {
    post({ type: 'loadError', message: (e as Error).message });
    return;
  }
  const name = init.spec.model ? basename(init.spec.model.replace(/\/+$/, '')) : basename(model.files.checkpoint).replace(/\.[^.]+$/, '');
  post({ type: 'ready', model: { id: name, template: model.template!.name, contextLength: readLlmFolderConfig(model.files.llm!).config.maxPositions, detector: model.detectsBoxes } });

  const queue: { id: number; job: WorkerJob }[] = [];
  const cancelled = new Set<number>();
  let running: number | undefined;
  let closing = false;

  const tokenText = (id: number) => tokenizer.decode([id]);
  const logprobJson = (id: number, logprob: number) => {
    const token = tokenText(id);
    return { token, logprob, bytes: [...Buffer.from(token, 'utf8')] };
  };

  async function run(id: number, job: WorkerJob): Promise<WorkerResult> {
    let visual;
    let boxesOut: WorkerResult['boxes'];
    let encodeMs = 0;
    if (job.image) {
      const t0 = performance.now();
      const image = await decodeImage(job.image, { name: 'the image', maxPixels: init.maxPixels });
      let boxes: Detections | null | undefined = job.boxes;
      if (!boxes) {
        if (job.detect === true && !model.detectsBoxes) throw new InputError('this server has no detector configured (mgllava.detect)');
        if (job.detect !== false && model.detectsBoxes) {
          boxes = toDetections(await model.detectObjects(image));
          boxesOut = detectionsOut(boxes, true);
        } else {
          boxes = null;
        }
      } else {
        boxesOut = detectionsOut(boxes, false);
      }
      visual = await model.encode(image, boxes, { limit: job.boxLimit });
      encodeMs = performance.now() - t0;
    }
    const g = job.generation;
    const stream = model.chat({
      prompt: job.prompt,
      history: job.history,
      ...(job.system !== undefined ? { system: job.system } : {}),
      ...(visual ? { visualTokens: visual } : {}),
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
    let n = 0;
    let text = '';
    const t1 = performance.now();
    for await (const t of stream) {
      n++;
      text += t.text;
      let logprob: WorkerTokenLogprob | undefined;
      if (g.topLogprobs !== null) logprob = { ...logprobJson(t.id, t.logprob), top_logprobs: t.top.slice(0, g.topLogprobs).map((x) => logprobJson(x.id, x.logprob)) };
      post({ type: 'token', id, text: t.text, ...(logprob ? { logprob } : {}) });
      if (cancelled.has(id)) {
        // Leaving the loop ends the generator: no further token is computed.
        return { text, finishReason: 'abort', promptTokens: 0, completionTokens: n, cachedTokens: 0, timings: { encodeMs, prefillMs: 0, decodeTokensPerS: 0, decodeMs: performance.now() - t1 }, ...(boxesOut ? { boxes: boxesOut } : {}) };
      }
    }
    const r = await stream.result;
    return {
      text: r.text,
      finishReason: r.finishReason === 'length' ? 'length' : 'stop',
      promptTokens: r.promptTokens,
      completionTokens: r.ids.length,
      cachedTokens: (r as { cachedTokens?: number }).cachedTokens ?? 0,
      timings: { encodeMs, prefillMs: r.timings.prefillMs, decodeTokensPerS: r.timings.decodeTokensPerS, decodeMs: r.decodeSeconds * 1000 },
      ...(boxesOut ? { boxes: boxesOut } : {}),
    };
  }

  async function pump(): Promise<void> {
    if (running !== undefined) return;
    const next = queue.shift();
    if (!next) {
      if (closing) {
        await model.release();
        post({ type: 'closed' });
      }
      return;
    }
    running = next.id;
    try {
      if (cancelled.has(next.id)) throw new InputError('cancelled');
      post({ type: 'done', id: next.id, result: await run(next.id, next.job) });
    } catch (e) {
      post({ type: 'error', id: next.id, message: (e as Error).message, input: e instanceof InputError });
    } finally {
      cancelled.delete(next.id);
      running = undefined;
    }
    void pump();
  }

  port.on('message', (m: ToWorker) => {
    if (m.type === 'run') {
      queue.push({ id: m.id, job: m.job });
      void pump();
    } else if (m.type === 'cancel') {
      cancelled.add(m.id);
    } else if (m.type === 'close') {
      closing = true;
      for (const q of queue) cancelled.add(q.id);
      void pump();
    }
  });
}

void main();
