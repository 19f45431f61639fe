// What images.ts and videos.ts share in reading an `image_url` / `video_url`: the data URL's
// base64 (bounded), the URL itself, a file:// path (only with --allow-local-files), an http(s)
// fetch with a size and a time limit. Errors are 400s (413 for size) naming the medium, with
// codes `invalid_<noun>_url`, `<noun>_fetch_failed`, `<noun>_too_large`, `invalid_<noun>`.

import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ApiError, badRequest } from './errors.js';

export type MediaNoun = 'image' | 'video';

export interface MediaLimits {
  maxBytes: number;
  timeoutMs: number;
  allowLocalFiles: boolean;
}

const paramOf = (noun: MediaNoun) => `messages.content.${noun}_url`;

export function mediaTooLarge(noun: MediaNoun, what: string, max: number): ApiError {
  return new ApiError(413, `${what} is larger than the server's limit of ${max} bytes`, 'invalid_request_error', paramOf(noun), `${noun}_too_large`);
}

/** The bytes of a data URL's base64 part, refused beyond `max` bytes or when not base64. */
export function dataUrlBytes(noun: MediaNoun, b64: string, max: number): Buffer {
  if (b64.length > Math.ceil((max * 4) / 3) + 4) throw mediaTooLarge(noun, `the ${noun}`, max);
  if (!/^[A-Za-z0-9+/=\s]*$/.test(b64)) throw badRequest('the data URL is not valid base64', paramOf(noun), `invalid_${noun}`);
  return Buffer.from(b64, 'base64');
}

export function parseMediaUrl(noun: MediaNoun, url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw badRequest(`${noun}_url ${JSON.stringify(url.slice(0, 80))} is not a URL`, paramOf(noun), `invalid_${noun}_url`);
  }
}

/** The path of a file:// URL: an existing file within the size limit, and only when allowed. */
export async function localMediaPath(noun: MediaNoun, u: URL, o: MediaLimits): Promise<string> {
  if (!o.allowLocalFiles) throw badRequest(`file:// ${noun}s are off (start the server with --allow-local-files)`, paramOf(noun), 'local_files_disabled');
  const path = fileURLToPath(u);
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new Error('not a file');
    size = s.size;
  } catch {
    throw badRequest(`${noun} file not found: ${path}`, paramOf(noun), `invalid_${noun}_url`);
  }
  if (size > o.maxBytes) throw mediaTooLarge(noun, path, o.maxBytes);
  return path;
}

export function unsupportedScheme(noun: MediaNoun, u: URL): ApiError {
  return badRequest(`${noun}_url scheme ${u.protocol} is not supported (data:, http:, https:, file:)`, paramOf(noun), `invalid_${noun}_url`);
}

function fetchFailed(noun: MediaNoun, href: string, e: unknown, ms: number): ApiError {
  return badRequest(`could not fetch the ${noun} ${href}: ${(e as Error).name === 'TimeoutError' ? `no answer within ${ms} ms` : (e as Error).message}`, paramOf(noun), `${noun}_fetch_failed`);
}

/** The body of an http(s) URL, at most maxBytes whatever the headers say, within the time limit. */
export async function fetchMediaBytes(noun: MediaNoun, u: URL, o: MediaLimits): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(u, { signal: AbortSignal.timeout(o.timeoutMs), redirect: 'follow' });
  } catch (e) {
    throw fetchFailed(noun, u.href, e, o.timeoutMs);
  }
  if (!res.ok) throw badRequest(`could not fetch the ${noun} ${u.href}: HTTP ${res.status}`, paramOf(noun), `${noun}_fetch_failed`);
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > o.maxBytes) throw mediaTooLarge(noun, u.href, o.maxBytes);
  const reader = res.body?.getReader();
  if (!reader) throw badRequest(`the ${noun} ${u.href} has no body`, paramOf(noun), `${noun}_fetch_failed`);
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > o.maxBytes) {
        await reader.cancel();
        throw mediaTooLarge(noun, u.href, o.maxBytes);
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw fetchFailed(noun, u.href, e, o.timeoutMs);
  }
  return Buffer.concat(chunks);
}
