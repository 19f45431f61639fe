// `mgllava chat`: one question (streamed to stdout, or one JSON object with --json), or an
// interactive multi-turn session like the release's chat.py (double Enter ends a question,
// RESET clears the history, EXIT quits).

import { InputError } from '../core/errors.js';
import { MgLlava, ChatRequest, VisualTokens } from '../model/mg-llava.js';
import { ModelSpec } from '../model/model-files.js';
import { ChatResult, ChatTurn } from '../model/chat.js';
import { readAnyVisualCache } from '../model/visual-cache.js';
import { decodeImage } from '../preprocess/decode.js';
import { readBoxFile } from '../preprocess/box-file.js';
import { GenerationOptions } from '../generate/generate.js';
import { Progress, noteOnStderr } from './progress.js';
import { DetectionResult, detectionsJson, toDetections } from '../detect/owlv2.js';
import { detectionFlags } from './detect.js';
import { basename } from 'node:path';
import { Detections } from '../preprocess/boxes.js';
import { DEFAULT_VIDEO_FRAMES, VideoFrames, loadVideoFrames } from '../video/frames.js';
import { readVideoBoxFile, videoBoxEntry, videoKey } from '../video/boxes.js';
import { VideoTokens } from '../video/video-tokens.js';

export interface ChatArgs extends ModelSpec {
  image?: string;
  /** A video to ask about (the release's `<video>\n{question}`). */
  video?: string;
  /** The release's video box JSON (entries keyed by the video's stem, one per sampled frame). */
  videoBoxes?: string;
  /** Frames to sample from the video (default 8). */
  frames?: number;
  /** false: --no-pad (the video frames are not padded to square). */
  pad?: boolean;
  boxes?: string;
  visualCache?: string;
  template?: string;
  /** false: --no-system (no system block). */
  system?: string | false;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
  boxLimit: number;
  maxPixels: number;
  threads?: number;
  /** --packed-cache DIR, or false for --no-packed-cache. */
  packedCache?: string | false;
  json?: boolean;
  quiet?: boolean;
  /** Detector tags (comma-separated) / the COCO-80 list / score threshold, for images without --boxes. */
  tags?: string;
  coco?: boolean;
  threshold?: number;
}

export async function runChat(question: string | undefined, a: ChatArgs): Promise<void> {
  if (a.visualCache && (a.image || a.boxes)) throw new InputError('--visual-cache replaces --image and --boxes; give one or the other', '--visual-cache');
  if (a.boxes && !a.image) throw new InputError('--boxes needs --image', '--boxes');
  if (a.video && (a.image || a.visualCache)) throw new InputError(`--video with ${a.image ? '--image' : '--visual-cache'}: an image and a video in one conversation are not supported; give one or the other`, '--video');
  if (a.videoBoxes && !a.video) throw new InputError('--video-boxes needs --video', '--video-boxes');
  if (a.frames !== undefined && !a.video) throw new InputError('--frames needs --video', '--frames');
  if (a.pad === false && !a.video) throw new InputError('--no-pad needs --video (images are always padded, as the release)', '--no-pad');
  const detection = detectionFlags(a);
  if (question !== undefined) checkUtf8(question);
  const progress = new Progress(!a.quiet && !a.json);
  // Inputs first: a bad image, box or cache file fails before the model is loaded.
  const image = a.image ? await decodeImage(a.image, { maxPixels: a.maxPixels }) : undefined;
  const detections = a.boxes ? await readBoxFile(a.boxes) : undefined;
  const cache = a.visualCache ? readAnyVisualCache(a.visualCache) : undefined;
  const cached = cache?.kind === 'image' ? cache.tokens : undefined;
  const video = a.video ? await readVideoInput(a) : undefined;

  const t0 = performance.now();
  const model = await progress.step('loading model', () => MgLlava.load(a, { threads: a.threads, template: a.template, detection, packedCache: a.packedCache, onNote: noteOnStderr(a.quiet) }));
  const loadMs = performance.now() - t0;
  try {
    let visual: VisualTokens | undefined = cached;
    let videoTokens: VideoTokens | undefined = cache?.kind === 'video' ? cache.tokens : undefined;
    let encodeMs = 0;
    let found: DetectionResult | undefined;
    let detectMs = 0;
    if (image) {
      let boxes = detections;
      if (!boxes && model.detectsBoxes) {
        const t = performance.now();
        found = await progress.step(`detecting objects in ${a.image} (${model.tagSource.name})`, () => model.detectObjects(image));
        detectMs = performance.now() - t;
        boxes = toDetections(found);
      }
      const t1 = performance.now();
      visual = await progress.step(`encoding ${a.image}`, () => model.encode(image, boxes, { limit: a.boxLimit === 0 ? null : a.boxLimit }));
      encodeMs = performance.now() - t1;
    }
    if (video) {
      const t1 = performance.now();
      const what = model.detectsBoxes && !video.boxes ? ' (detecting objects in each frame)' : '';
      videoTokens = await progress.step(`encoding ${a.video} (${video.frames.frames.length} frames${what})`, () =>
        model.encodeVideo(video.frames, { ...(video.boxes ? { boxes: video.boxes } : {}), pad: a.pad !== false, limit: a.boxLimit === 0 ? null : a.boxLimit }));
      encodeMs = performance.now() - t1;
    }
    const generation: GenerationOptions = {
      maxNewTokens: a.maxNewTokens,
      temperature: a.temperature,
      topK: a.topK,
      topP: a.topP,
      repetitionPenalty: a.repetitionPenalty,
      seed: a.seed,
    };
    const ask = (prompt: string, history: ChatTurn[]) =>
      answer(model, { prompt, history, system: a.system === false ? null : a.system, generation, ...(videoTokens ? { videoTokens } : { visualTokens: visual }) }, !a.json);
    if (question !== undefined) {
      const r = await ask(question, []);
      if (a.json) {
        const j = toJson(r, loadMs, encodeMs, found && { found, ms: detectMs });
        const v = videoTokens ? { video: { frame_indices: videoTokens.frameIndices, frame_box_counts: videoTokens.boxCounts } } : {};
        process.stdout.write(`${JSON.stringify({ ...v, ...j })}\n`);
      }
    } else {
      await interactive(ask);
    }
  } finally {
    await model.release();
  }
}

/** The video's sampled frames and, with --video-boxes, its entry of the box file (read before the model loads). */
export async function readVideoInput(a: { video?: string; videoBoxes?: string; frames?: number }): Promise<{ frames: VideoFrames; boxes?: Detections[] }> {
  const frames = await loadVideoFrames(a.video!, { frames: a.frames ?? DEFAULT_VIDEO_FRAMES });
  if (!a.videoBoxes) return { frames };
  const index = await readVideoBoxFile(a.videoBoxes);
  const name = basename(a.video!);
  const key = videoKey(name) ?? name;
  return { frames, boxes: videoBoxEntry(index, a.videoBoxes, key, frames.frames.length) };
}

/** Stream one answer to stdout (unless quiet); returns the whole result. */
async function answer(model: MgLlava, req: ChatRequest, stream: boolean): Promise<ChatResult> {
  const s = model.chat(req);
  for await (const t of s) if (stream && t.text) process.stdout.write(t.text);
  if (stream) process.stdout.write('\n');
  return s.result;
}

function toJson(r: ChatResult, loadMs: number, encodeMs: number, detected?: { found: DetectionResult; ms: number }) {
  return {
    ...(detected ? { detections: detectionsJson(detected.found, true) } : {}),
    text: r.text,
    ids: r.ids,
    prompt_tokens: r.promptTokens,
    cached_tokens: r.cachedTokens,
    finish_reason: r.finishReason,
    logprobs: r.logprobs.map((l) => ({ id: l.id, logprob: l.logprob, top: l.top.map((t) => ({ id: t.id, logprob: t.logprob })) })),
    timings: {
      load_ms: round(loadMs),
      encode_ms: round(encodeMs),
      ...(detected ? { detect_ms: round(detected.ms) } : {}),
      prefill_ms: round(r.timings.prefillMs),
      prefill_tokens: r.timings.prefillTokens,
      decode_tokens_per_s: round(r.timings.decodeTokensPerS),
    },
  };
}

const round = (x: number) => Math.round(x * 100) / 100;

function checkUtf8(text: string): void {
  // Node decodes invalid UTF-8 in argv to U+FFFD; a question can't be tokenised faithfully then.
  if (text.includes('\uFFFD')) throw new InputError('the question is not valid UTF-8', 'question');
}

/** The release's loop: a question ends at an empty line; RESET clears history; EXIT quits. */
async function interactive(ask: (q: string, h: ChatTurn[]) => Promise<ChatResult>): Promise<void> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let history: ChatTurn[] = [];
  let lines: string[] = [];
  const promptUser = () => process.stderr.write('\ndouble enter to end input (EXIT: exit chat, RESET: reset history) >>> ');
  const submit = async (): Promise<boolean> => {
    const text = lines.join('\n');
    lines = [];
    if (text.trim() === 'EXIT') return false;
    if (text.trim() === 'RESET') {
      history = [];
      process.stderr.write('history cleared\n');
    } else if (text.trim()) {
      const r = await ask(text, history);
      history = [...history, { question: text, answer: r.text }];
    }
    promptUser();
    return true;
  };
  promptUser();
  let pending = Buffer.alloc(0);
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    pending = Buffer.concat([pending, chunk]);
    let nl: number;
    while ((nl = pending.indexOf(10)) >= 0) {
      const raw = pending.subarray(0, nl);
      pending = pending.subarray(nl + 1);
      let line: string;
      try {
        line = decoder.decode(raw).replace(/\r$/, '');
      } catch {
        process.stderr.write('invalid characters (not UTF-8) in that line; enter it again\n');
        continue;
      }
      if (line === '' && lines.length) {
        if (!(await submit())) return;
      } else if (line !== '') {
        lines.push(line);
        if (line.trim() === 'EXIT' || line.trim() === 'RESET') if (!(await submit())) return;
      }
    }
  }
  if (pending.length) lines.push(decoder.decode(pending));
  if (lines.length) await submit();
}
