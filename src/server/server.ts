// `mgllava serve`: an OpenAI-compatible HTTP server in front of the model worker.
//
//   POST /v1/chat/completions   OpenAI chat completions (text + image_url or video_url parts; SSE with stream)
//   GET  /v1/models             the served model
//   GET  /health                {"status": "ok" | "loading" | "error"}
//   GET  /metrics               Prometheus text
//   GET  /                      the chat page (web/), when it is there
//
// Errors are OpenAI's error object with its status (400, 401, 404, 405, 413, 429, 503).
// Loopback by default; with an API key every /v1 route needs `Authorization: Bearer KEY`.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { extname, join } from 'node:path';
import { ApiError, badRequest } from './errors.js';
import { fetchImage } from './images.js';
import { fetchVideo, type FetchedVideo } from './videos.js';
import { Metrics } from './metrics.js';
import { ModelHost } from './model-host.js';
import type { ModelInfo, WorkerInit, WorkerResult, WorkerTokenLogprob } from './protocol.js';
import { parseChatRequest, type ChatJob } from './request.js';

export interface ServeOptions {
  host: string;
  port: number;
  apiKey?: string;
  /** requests waiting beyond the running ones (worker.parallel); more get 429 */
  maxQueue: number;
  /** largest request body (and fetched image) in bytes */
  maxBody: number;
  cors?: string;
  allowLocalFiles: boolean;
  /** milliseconds to fetch an http(s) image */
  imageTimeoutMs?: number;
  worker: WorkerInit;
}

export interface RunningServer {
  url: string;
  ready: Promise<ModelInfo>;
  metrics: Metrics;
  /** stop accepting, cancel what waits and runs, end the worker */
  close(): Promise<void>;
}

/** The page's files: web/ at the package root. */
const WEB = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..', 'web');
const MIME: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png' };

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, e: ApiError): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.end();
    return;
  }
  send(res, e.status, e.body(), e.headers);
}

async function readBody(req: IncomingMessage, max: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > max) throw new ApiError(413, `the request body is larger than the server's limit of ${max} bytes`, 'invalid_request_error', null, 'request_too_large');
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    total += c.length;
    if (total > max) throw new ApiError(413, `the request body is larger than the server's limit of ${max} bytes`, 'invalid_request_error', null, 'request_too_large');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw badRequest('the request body is empty (expected JSON)');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${(e as Error).message}`);
  }
}

interface CompletionMeta {
  id: string;
  created: number;
  model: string;
}

function usage(r: WorkerResult) {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens, prompt_tokens_details: { cached_tokens: r.cachedTokens } };
}

function extension(r: WorkerResult) {
  return {
    ...(r.boxes ? { boxes: r.boxes } : {}),
    ...(r.frameIndices ? { frame_indices: r.frameIndices } : {}),
    timings: { encode_ms: round(r.timings.encodeMs), prefill_ms: round(r.timings.prefillMs), decode_ms: round(r.timings.decodeMs), decode_tokens_per_s: round(r.timings.decodeTokensPerS) },
  };
}

const round = (x: number) => Math.round(x * 100) / 100;

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const metrics = new Metrics();
  const host = new ModelHost(o.worker, o.maxQueue);
  const live = new Set<ServerResponse>();
  let closing = false;

  const cors = (res: ServerResponse) => {
    if (!o.cors) return;
    res.setHeader('access-control-allow-origin', o.cors);
    res.setHeader('access-control-allow-headers', 'authorization, content-type');
    res.setHeader('access-control-allow-methods', 'GET, POST, OPTIONS');
  };

  const authorised = (req: IncomingMessage): boolean => !o.apiKey || req.headers.authorization === `Bearer ${o.apiKey}`;

  async function chat(req: IncomingMessage, res: ServerResponse): Promise<number> {
    const body = await readBody(req, o.maxBody);
    const job: ChatJob = parseChatRequest(body);
    const info = host.model;
    if (info && job.model !== info.id) throw new ApiError(404, `The model '${job.model}' does not exist (this server has '${info.id}')`, 'invalid_request_error', 'model', 'model_not_found');
    const image = job.imageUrl ? await fetchImage(job.imageUrl, { maxBytes: o.maxBody, timeoutMs: o.imageTimeoutMs ?? 15_000, allowLocalFiles: o.allowLocalFiles }) : undefined;
    // A video's temporary file lives until its job ends.
    const video = job.videoUrl ? await fetchVideo(job.videoUrl, { maxBytes: o.maxBody, timeoutMs: o.imageTimeoutMs ?? 15_000, allowLocalFiles: o.allowLocalFiles, frames: job.frames ?? 8 }) : undefined;
    try {
      return await answer(res, job, image, video);
    } finally {
      await video?.cleanup();
    }
  }

  async function answer(res: ServerResponse, job: ChatJob, image: Uint8Array | undefined, video: FetchedVideo | undefined): Promise<number> {
    const info = host.model;
    const meta: CompletionMeta = { id: `chatcmpl-${randomBytes(12).toString('hex')}`, created: Math.floor(Date.now() / 1000), model: info?.id ?? job.model };
    const { imageUrl: _u, videoUrl: _v, stream, includeUsage, model: _m, ...rest } = job;
    void _u;
    void _v;
    void _m;
    const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}) =>
      `data: ${JSON.stringify({ id: meta.id, object: 'chat.completion.chunk', created: meta.created, model: meta.model, choices: [{ index: 0, delta, logprobs: extra['logprobs'] ?? null, finish_reason: finish }], ...(extra['mgllava'] ? { mgllava: extra['mgllava'] } : {}) })}\n\n`;
    const logprobs: WorkerTokenLogprob[] = [];
    const wantLogprobs = job.generation.topLogprobs !== null;
    let started = false;
    const handle = host.submit({ ...rest, ...(image ? { image } : {}), ...(video ? { video: video.path, frameIndices: video.frameIndices } : {}) }, (text, lp) => {
      if (lp) logprobs.push(lp);
      if (!stream || res.writableEnded) return;
      if (!started) {
        started = true;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        res.write(chunk({ role: 'assistant', content: '' }, null));
      }
      if (text || lp) res.write(chunk({ content: text }, null, lp ? { logprobs: { content: [lp] } } : {}));
    });
    // A client that goes away cancels its generation.
    res.on('close', () => {
      if (!res.writableFinished) handle.cancel();
    });
    let r: WorkerResult;
    try {
      r = await handle.result;
    } catch (e) {
      if (stream && started) {
        const err = e instanceof ApiError ? e : new ApiError(500, (e as Error).message, 'server_error');
        res.write(`data: ${JSON.stringify(err.body())}\n\n`);
        res.end();
        return err.status;
      }
      throw e;
    }
    metrics.promptTokens += r.promptTokens;
    metrics.cachedTokens += r.cachedTokens;
    metrics.generatedTokens += r.completionTokens;
    metrics.encodeSeconds += r.timings.encodeMs / 1000;
    metrics.prefillSeconds += r.timings.prefillMs / 1000;
    metrics.decodeSeconds += r.timings.decodeMs / 1000;
    if (r.finishReason === 'abort') {
      // Cancelled with the client still there: the server is stopping.
      if (res.destroyed || res.writableEnded) return 499;
      const err = new ApiError(503, 'the server is shutting down', 'service_unavailable', null, 'shutting_down');
      if (stream && started) {
        res.end(`data: ${JSON.stringify(err.body())}\n\n`);
        return 503;
      }
      throw err;
    }
    if (stream) {
      if (!started) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        res.write(chunk({ role: 'assistant', content: '' }, null));
      }
      res.write(chunk({}, r.finishReason, { mgllava: extension(r) }));
      if (includeUsage) res.write(`data: ${JSON.stringify({ id: meta.id, object: 'chat.completion.chunk', created: meta.created, model: meta.model, choices: [], usage: usage(r) })}\n\n`);
      res.end('data: [DONE]\n\n');
      return 200;
    }
    send(res, 200, {
      id: meta.id,
      object: 'chat.completion',
      created: meta.created,
      model: meta.model,
      choices: [{ index: 0, message: { role: 'assistant', content: r.text, refusal: null }, logprobs: wantLogprobs ? { content: logprobs } : null, finish_reason: r.finishReason }],
      usage: usage(r),
      mgllava: extension(r),
    });
    return 200;
  }

  function page(path: string, res: ServerResponse): number {
    const file = path === '/' ? 'index.html' : path.slice(1);
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)+$/.test(file) || !existsSync(join(WEB, file))) throw new ApiError(404, `no route ${path}`, 'not_found_error', null, 'not_found');
    const data = readFileSync(join(WEB, file));
    res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream', 'content-length': data.length, 'cache-control': 'no-cache' });
    res.end(data);
    return 200;
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<[string, number]> {
    const path = (req.url ?? '/').split('?')[0]!;
    const method = req.method ?? 'GET';
    cors(res);
    if (method === 'OPTIONS' && o.cors) {
      res.writeHead(204).end();
      return [path, 204];
    }
    if (closing) throw new ApiError(503, 'the server is shutting down', 'service_unavailable', null, 'shutting_down');
    const only = (m: string) => {
      if (method !== m) throw new ApiError(405, `${method} is not allowed on ${path} (use ${m})`, 'invalid_request_error', null, 'method_not_allowed', { allow: m });
    };
    if (path.startsWith('/v1/') && !authorised(req)) throw new ApiError(401, 'Incorrect API key provided (send Authorization: Bearer KEY)', 'invalid_request_error', null, 'invalid_api_key');
    switch (path) {
      case '/v1/chat/completions':
        only('POST');
        return [path, await chat(req, res)];
      case '/v1/models': {
        only('GET');
        const info = host.model;
        if (!info) throw new ApiError(503, 'the model is still loading', 'service_unavailable', null, 'model_loading', { 'Retry-After': '5' });
        send(res, 200, { object: 'list', data: [{ id: info.id, object: 'model', created: 0, owned_by: 'mgllava', context_length: info.contextLength, template: info.template, detector: info.detector }] });
        return [path, 200];
      }
      case '/health': {
        only('GET');
        const status = host.failed ? 500 : host.model ? 200 : 503;
        send(res, status, { status: host.failed ? 'error' : host.model ? 'ok' : 'loading', ...(host.failed ? { message: host.failed } : {}), ...(host.model ? { model: host.model.id } : {}) });
        return [path, status];
      }
      case '/metrics':
        only('GET');
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(metrics.text({ queue: host.waiting, inFlight: host.inFlight, ready: host.model !== undefined }));
        return [path, 200];
      default:
        if (method === 'GET' && !path.startsWith('/v1/')) return [path, page(path, res)];
        throw new ApiError(404, `no route ${method} ${path}`, 'not_found_error', null, 'not_found');
    }
  }

  const server: Server = createServer((req, res) => {
    live.add(res);
    res.on('close', () => live.delete(res));
    route(req, res)
      .then(([path, status]) => metrics.request(routeName(path), status))
      .catch((e: unknown) => {
        const err = e instanceof ApiError ? e : new ApiError(500, (e as Error).message, 'server_error');
        metrics.request(routeName((req.url ?? '/').split('?')[0]!), err.status);
        // A request body not read to the end: close the connection after the answer.
        if (!req.complete) res.setHeader('connection', 'close');
        sendError(res, err);
      });
  });
  server.requestTimeout = 0; // long generations
  server.headersTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  let closed: Promise<void> | undefined;
  return {
    url,
    ready: host.ready,
    metrics,
    close: () =>
      (closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((r) => server.close(() => r()));
        server.closeIdleConnections();
        await host.close();
        // Responses still open end with their jobs; then the remaining sockets go.
        const t0 = Date.now();
        while (live.size > 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
        server.closeAllConnections();
        await stopped;
      })()),
  };
}

const KNOWN = new Set(['/v1/chat/completions', '/v1/models', '/health', '/metrics', '/']);
/** Metric label: the route, or "other" (unbounded paths stay out of the labels). */
function routeName(path: string): string {
  return KNOWN.has(path) ? path : 'other';
}
