// An OpenAI-compatible chat-completions server as an eval Answerer: one user message with the
// image (a data URL) and the question, temperature 0, max_tokens as the run's max_new_tokens.
// The server does its own detection (boxes are not sent). Up to `concurrency` requests at once;
// the client retries what fails transiently (connection errors, 408/409/429/5xx).
//
// A video item (MSVD-QA, MSRVTT-QA) goes as a `{"type": "video_url", "video_url": {"url":
// "data:video/...;base64,..."}}` part (the video file's bytes; OpenAI has no standard video part:
// `mgllava serve` reads this one, vLLM-style servers use the same part name) with `"mgllava":
// {"frames": N, "pad": true, "box_limit": 100}` (mgllava serve's extension: frames to sample,
// pad_image_to_square, the box cap); the server adds the release's `<video>\n` itself.

import OpenAI from 'openai';
import { readFileSync, existsSync } from 'node:fs';
import { InputError } from '../core/errors.js';
import type { MediaRef } from './dataset.js';
import type { Answerer, EvalItem } from './runner.js';
import { pyStrip } from './vqa.js';

export interface EndpointOptions {
  /** base URL of the API, e.g. http://127.0.0.1:8000/v1 */
  url: string;
  /** the model name to request (default: the first one GET /models lists) */
  model?: string;
  apiKey?: string;
  concurrency: number;
  maxNewTokens: number;
  /** milliseconds per request (default 10 minutes) */
  timeoutMs?: number;
  /** video items: the frames the server is asked to sample, pad_image_to_square, the box cap */
  video?: { frames: number; pad: boolean; limit: number | null };
}

/** A video's MIME type by its extension (the server decodes whatever ffmpeg reads). */
export function videoMime(path: string): string {
  const ext = path.slice(path.lastIndexOf('.') + 1).toLowerCase();
  const known: Record<string, string> = { mp4: 'video/mp4', m4v: 'video/mp4', avi: 'video/x-msvideo', mov: 'video/quicktime', mkv: 'video/x-matroska', webm: 'video/webm', mpg: 'video/mpeg', mpeg: 'video/mpeg', ogv: 'video/ogg' };
  return known[ext] ?? 'application/octet-stream';
}

/** The video file of a video item as a data URL. */
export function videoDataUrl(path: string, key: string): string {
  if (!existsSync(path)) throw new InputError(`row ${key}: video not found: ${path}`, path);
  return `data:${videoMime(path)};base64,${readFileSync(path).toString('base64')}`;
}

/** The MIME type of image bytes by their signature (PNG, JPEG, GIF, WebP, BMP), else PNG. */
export function imageMime(b: Uint8Array): string {
  if (b[0] === 0xff && b[1] === 0xd8) return 'image/jpeg';
  if (b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return 'image/gif';
  if (b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57 && b[9] === 0x45) return 'image/webp';
  if (b[0] === 0x42 && b[1] === 0x4d) return 'image/bmp';
  return 'image/png';
}

export function mediaDataUrl(m: MediaRef, key: string): string {
  if (m.kind === 'video') throw new InputError(`row ${key}: a video item, not an image`, 'video');
  let bytes: Buffer;
  if (m.kind === 'image') {
    if (!existsSync(m.path)) throw new InputError(`row ${key}: image not found: ${m.path}`, m.path);
    bytes = readFileSync(m.path);
  } else {
    bytes = Buffer.from(m.data, 'base64');
    if (bytes.length === 0) throw new InputError(`row ${key}: the image cell is not base64`, 'image');
  }
  return `data:${imageMime(bytes)};base64,${bytes.toString('base64')}`;
}

export class EndpointAnswerer implements Answerer {
  readonly concurrency: number;

  private constructor(
    private readonly client: OpenAI,
    private readonly model: string,
    private readonly o: EndpointOptions,
  ) {
    this.concurrency = o.concurrency;
  }

  get identity(): string {
    return `endpoint ${JSON.stringify({ url: this.o.url, model: this.model })}`;
  }

  static async connect(o: EndpointOptions): Promise<EndpointAnswerer> {
    let url: URL;
    try {
      url = new URL(o.url);
    } catch {
      throw new InputError(`--endpoint ${o.url} is not a URL (e.g. http://127.0.0.1:8000/v1)`, '--endpoint');
    }
    const client = new OpenAI({ baseURL: url.href.replace(/\/$/, ''), apiKey: o.apiKey || 'none', timeout: o.timeoutMs ?? 600_000, maxRetries: 3 });
    let model = o.model;
    if (!model) {
      try {
        const list = await client.models.list();
        model = list.data[0]?.id;
      } catch (e) {
        throw new InputError(`--endpoint ${o.url}: cannot list its models (${(e as Error).message}); give --endpoint-model`, '--endpoint');
      }
      if (!model) throw new InputError(`--endpoint ${o.url} lists no models; give --endpoint-model`, '--endpoint');
    }
    return new EndpointAnswerer(client, model, o);
  }

  async answer(item: EvalItem): Promise<string> {
    const content: OpenAI.Chat.Completions.ChatCompletionContentPart[] = [];
    const video = item.media?.kind === 'video' ? item.media.path : undefined;
    if (video !== undefined) {
      // Not in OpenAI's types: the part mgllava serve reads.
      content.push({ type: 'video_url', video_url: { url: videoDataUrl(video, item.key) } } as unknown as OpenAI.Chat.Completions.ChatCompletionContentPart);
    } else if (item.media) {
      content.push({ type: 'image_url', image_url: { url: mediaDataUrl(item.media, item.key) } });
    }
    content.push({ type: 'text', text: item.prompt });
    let r: OpenAI.Chat.Completions.ChatCompletion;
    try {
      const body: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming = {
        model: this.model,
        messages: [{ role: 'user', content }],
        temperature: 0,
        max_tokens: this.o.maxNewTokens,
      };
      r = await this.client.chat.completions.create(video !== undefined && this.o.video ? ({ ...body, mgllava: { frames: this.o.video.frames, pad: this.o.video.pad, box_limit: this.o.video.limit ?? 0 } } as typeof body) : body);
    } catch (e) {
      const status = (e as { status?: number }).status;
      throw new InputError(`--endpoint ${this.o.url}: row ${item.key}: ${status ? `HTTP ${status}: ` : ''}${(e as Error).message}`, '--endpoint');
    }
    const text = r.choices[0]?.message?.content;
    if (typeof text !== 'string') throw new InputError(`--endpoint ${this.o.url}: row ${item.key}: the reply has no message content`, '--endpoint');
    return pyStrip(text);
  }

  async close(): Promise<void> {}
}
