// A `POST /v1/chat/completions` body, as OpenAI defines it, checked and turned into a chat job:
// system text, the history of (question, answer) turns, the last question, the conversation's
// image, the sampling settings. Anything malformed is a 400 naming the parameter.
//
// Our extensions live under one key, "mgllava":
//   {"mgllava": {"boxes": {"boxes": [[x0,y0,x1,y1], ...], "labels": [...], "scores": [...]},
//                "detect": true, "box_limit": 100}}
// boxes: the release's box JSON for the image (its pixels); detect: run the configured detector
// (the default when the model has one and no boxes are given); box_limit: the release's cap.
//
// A video instead of an image: a `{"type": "video_url", "video_url": {"url": ...}}` part (one
// visual, image or video, per conversation), with
//   {"mgllava": {"video_boxes": [{boxes, labels, scores}, ...], "frames": 8, "pad": true}}
// video_boxes: the release's per-frame list for the sampled frames (entry j for frame j, frame
// pixels); frames: frames sampled (np.linspace, default 8); pad: pad_image_to_square (default true).

import { InputError } from '../core/errors.js';
import { detectionsFromObject, type Detections } from '../preprocess/boxes.js';
import { badRequest } from './errors.js';

export interface JobGeneration {
  maxNewTokens?: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  stop: string[];
  /** alternatives per token in the answer's logprobs (0: none); null: no logprobs */
  topLogprobs: number | null;
}

export interface ChatJob {
  model: string;
  /** undefined: the template's system block with an empty text; a string: that text */
  system?: string;
  history: { question: string; answer: string }[];
  prompt: string;
  /** the url of the conversation's one image (data:, http(s): or file:) */
  imageUrl?: string;
  boxes?: Detections;
  /** false: no boxes even when a detector is configured */
  detect?: boolean;
  boxLimit: number | null;
  /** the url of the conversation's one video (data:, http(s): or file:) */
  videoUrl?: string;
  /** detector boxes per sampled frame, in the frame's pixels */
  videoBoxes?: Detections[];
  /** frames to sample (the video's default: 8) */
  frames?: number;
  /** pad_image_to_square for the video frames (default true) */
  pad?: boolean;
  generation: JobGeneration;
  stream: boolean;
  includeUsage: boolean;
}

/** The release chat's sampling defaults (those of `mgllava chat`), for what a request leaves out. */
export const DEFAULTS = { temperature: 0.1, topP: 0.75, topK: 40, seed: 0, boxLimit: 100 } as const;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function num(o: Record<string, unknown>, key: string, lo: number, hi: number): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest(`'${key}' must be a number`, key);
  if (v < lo || v > hi) throw badRequest(`'${key}' must be between ${lo} and ${hi}, got ${v}`, key);
  return v;
}

function int(o: Record<string, unknown>, key: string, lo: number, hi: number): number | undefined {
  const v = num(o, key, lo, hi);
  if (v !== undefined && !Number.isInteger(v)) throw badRequest(`'${key}' must be an integer`, key);
  return v;
}

function bool(o: Record<string, unknown>, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badRequest(`'${key}' must be a boolean`, key);
  return v;
}

interface Parsed {
  role: 'system' | 'user' | 'assistant';
  text: string;
  images: string[];
  videos: string[];
}

function parseContent(content: unknown, i: number, role: string): { text: string; images: string[]; videos: string[] } {
  const param = `messages[${i}].content`;
  if (typeof content === 'string') return { text: content, images: [], videos: [] };
  if (!Array.isArray(content)) throw badRequest(`${param} must be a string or an array of content parts`, param);
  const texts: string[] = [];
  const images: string[] = [];
  const videos: string[] = [];
  content.forEach((p: unknown, j) => {
    const pp = `${param}[${j}]`;
    if (!isObject(p)) throw badRequest(`${pp} must be an object`, pp);
    if (p['type'] === 'text') {
      if (typeof p['text'] !== 'string') throw badRequest(`${pp}.text must be a string`, `${pp}.text`);
      texts.push(p['text']);
    } else if (p['type'] === 'image_url') {
      if (role !== 'user') throw badRequest(`${pp}: images go in user messages`, pp);
      const u = p['image_url'];
      const url = typeof u === 'string' ? u : isObject(u) ? u['url'] : undefined;
      if (typeof url !== 'string' || url === '') throw badRequest(`${pp}.image_url.url must be a string`, `${pp}.image_url.url`);
      images.push(url);
    } else if (p['type'] === 'video_url') {
      if (role !== 'user') throw badRequest(`${pp}: videos go in user messages`, pp);
      const u = p['video_url'];
      const url = typeof u === 'string' ? u : isObject(u) ? u['url'] : undefined;
      if (typeof url !== 'string' || url === '') throw badRequest(`${pp}.video_url.url must be a string`, `${pp}.video_url.url`);
      videos.push(url);
    } else {
      throw badRequest(`${pp}.type must be 'text', 'image_url' or 'video_url', got ${JSON.stringify(p['type'])}`, `${pp}.type`);
    }
  });
  // OpenAI joins text parts; a newline keeps them apart.
  return { text: texts.join('\n'), images, videos };
}

function parseMessages(v: unknown): Parsed[] {
  if (!Array.isArray(v) || v.length === 0) throw badRequest("'messages' must be a non-empty array", 'messages');
  return v.map((m: unknown, i) => {
    if (!isObject(m)) throw badRequest(`messages[${i}] must be an object`, `messages[${i}]`);
    const role = m['role'];
    if (role !== 'system' && role !== 'developer' && role !== 'user' && role !== 'assistant') {
      throw badRequest(`messages[${i}].role must be 'system', 'developer', 'user' or 'assistant', got ${JSON.stringify(role)}`, `messages[${i}].role`);
    }
    const c = parseContent(m['content'], i, role);
    return { role: role === 'developer' ? 'system' : role, ...c };
  });
}

function parseStop(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || !list.every((s) => typeof s === 'string' && s !== '')) {
    throw badRequest("'stop' must be a string or an array of up to 4 non-empty strings", 'stop');
  }
  return list as string[];
}

function parseVideoBoxes(v: unknown): Detections[] {
  if (!Array.isArray(v) || v.length === 0) throw badRequest("'mgllava.video_boxes' must be a non-empty list of {boxes, labels, scores}, one per sampled frame", 'mgllava.video_boxes');
  return v.map((f: unknown, j) => {
    try {
      return detectionsFromObject(f, `mgllava.video_boxes[${j}]`);
    } catch (e) {
      if (e instanceof InputError) throw badRequest(e.message, 'mgllava.video_boxes');
      throw e;
    }
  });
}

function parseExtension(v: unknown, visual: 'image' | 'video' | null): Pick<ChatJob, 'boxes' | 'detect' | 'boxLimit' | 'videoBoxes' | 'frames' | 'pad'> {
  if (v === undefined || v === null) return { boxLimit: DEFAULTS.boxLimit };
  if (!isObject(v)) throw badRequest("'mgllava' must be an object {boxes?, video_boxes?, detect?, box_limit?, frames?, pad?}", 'mgllava');
  let boxes: Detections | undefined;
  if (v['boxes'] !== undefined) {
    try {
      boxes = detectionsFromObject(v['boxes'], 'mgllava.boxes');
    } catch (e) {
      if (e instanceof InputError) throw badRequest(e.message, 'mgllava.boxes');
      throw e;
    }
  }
  const detect = bool(v, 'detect');
  if (boxes && detect) throw badRequest("give 'mgllava.boxes' or 'mgllava.detect', not both", 'mgllava.detect');
  const limit = int(v, 'box_limit', 0, 1e6);
  const videoBoxes = v['video_boxes'] !== undefined && v['video_boxes'] !== null ? parseVideoBoxes(v['video_boxes']) : undefined;
  const frames = int(v, 'frames', 1, 1024);
  const pad = bool(v, 'pad');
  if (visual === 'video') {
    if (boxes) throw badRequest("'mgllava.boxes' are an image's; for a video give 'mgllava.video_boxes' (one entry per sampled frame)", 'mgllava.boxes');
  } else {
    for (const [key, given] of [['video_boxes', videoBoxes !== undefined], ['frames', frames !== undefined], ['pad', pad !== undefined]] as const) {
      if (given) throw badRequest(`'mgllava.${key}' goes with a video (a video_url part)`, `mgllava.${key}`);
    }
  }
  if (videoBoxes && detect) throw badRequest("give 'mgllava.video_boxes' or 'mgllava.detect', not both", 'mgllava.detect');
  const wanted = frames ?? 8;
  if (videoBoxes && videoBoxes.length < wanted) {
    throw badRequest(`'mgllava.video_boxes' has ${videoBoxes.length} entries for ${wanted} sampled frames (one per frame; extra entries are ignored, fewer fail as in the release)`, 'mgllava.video_boxes');
  }
  return {
    ...(boxes ? { boxes } : {}),
    ...(detect !== undefined ? { detect } : {}),
    boxLimit: limit === undefined ? DEFAULTS.boxLimit : limit === 0 ? null : limit,
    ...(videoBoxes ? { videoBoxes } : {}),
    ...(frames !== undefined ? { frames } : {}),
    ...(pad !== undefined ? { pad } : {}),
  };
}

/** The chat job of a request body (already parsed JSON). */
export function parseChatRequest(body: unknown): ChatJob {
  if (!isObject(body)) throw badRequest('the request body must be a JSON object');
  if (typeof body['model'] !== 'string' || body['model'] === '') throw badRequest("'model' must be a string", 'model');
  const n = int(body, 'n', 1, 128);
  if (n !== undefined && n !== 1) throw badRequest("only 'n': 1 is supported", 'n');
  const msgs = parseMessages(body['messages']);
  const images = msgs.flatMap((m) => m.images);
  const videos = msgs.flatMap((m) => m.videos);
  if (images.length > 1) throw badRequest('one image per conversation is supported (MG-LLaVA takes a single image)', 'messages');
  if (videos.length > 1) throw badRequest('one video per conversation is supported', 'messages');
  if (images.length > 0 && videos.length > 0) throw badRequest('an image and a video in one conversation: MG-LLaVA takes one visual, give one or the other', 'messages');

  // System text first (several are joined), then user/assistant turns ending with a user turn;
  // consecutive messages of one role are joined.
  const system = msgs.filter((m) => m.role === 'system').map((m) => m.text);
  const turns: Parsed[] = [];
  let seenTurn = false;
  msgs.forEach((m, i) => {
    if (m.role === 'system') {
      if (seenTurn) throw badRequest('system messages go before the conversation', `messages[${i}]`);
      return;
    }
    seenTurn = true;
    const last = turns[turns.length - 1];
    if (last && last.role === m.role) last.text += `\n${m.text}`;
    else turns.push({ ...m });
  });
  if (turns.length === 0 || turns[turns.length - 1]!.role !== 'user') throw badRequest('the last message must be a user message', 'messages');
  if (turns[0]!.role !== 'user') throw badRequest('the conversation must start with a user message (after the system messages)', 'messages');
  const history: { question: string; answer: string }[] = [];
  for (let k = 0; k + 1 < turns.length; k += 2) history.push({ question: turns[k]!.text, answer: turns[k + 1]!.text });
  const prompt = turns[turns.length - 1]!.text;
  if (prompt.trim() === '' && images.length === 0 && videos.length === 0) throw badRequest('the last user message is empty', 'messages');

  const maxTokens = int(body, 'max_completion_tokens', 1, 1e7) ?? int(body, 'max_tokens', 1, 1e7);
  const logprobs = bool(body, 'logprobs') ?? false;
  const top = int(body, 'top_logprobs', 0, 20);
  if (top !== undefined && !logprobs) throw badRequest("'top_logprobs' needs 'logprobs': true", 'top_logprobs');
  const stream = bool(body, 'stream') ?? false;
  const so = body['stream_options'];
  if (so !== undefined && so !== null && !isObject(so)) throw badRequest("'stream_options' must be an object", 'stream_options');
  const includeUsage = isObject(so) ? (bool(so, 'include_usage') ?? false) : false;
  return {
    model: body['model'],
    ...(system.length ? { system: system.join('\n') } : {}),
    history,
    prompt,
    ...(images.length ? { imageUrl: images[0]! } : {}),
    ...(videos.length ? { videoUrl: videos[0]! } : {}),
    ...parseExtension(body['mgllava'], images.length ? 'image' : videos.length ? 'video' : null),
    generation: {
      ...(maxTokens !== undefined ? { maxNewTokens: maxTokens } : {}),
      temperature: num(body, 'temperature', 0, 2) ?? DEFAULTS.temperature,
      topP: num(body, 'top_p', 0, 1) ?? DEFAULTS.topP,
      topK: DEFAULTS.topK,
      seed: int(body, 'seed', -(2 ** 53), 2 ** 53) ?? DEFAULTS.seed,
      stop: parseStop(body['stop']),
      topLogprobs: logprobs ? (top ?? 0) : null,
    },
    stream,
    includeUsage,
  };
}
