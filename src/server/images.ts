// The bytes of an `image_url`: a data URL (PNG, JPEG or WebP, base64), an http(s) URL fetched
// with a size and a time limit, or a file:// URL when the server allows local files. Failures
// are 400s naming the image; nothing is read from disk otherwise.

import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ApiError, badRequest } from './errors.js';

export interface ImageFetchOptions {
  maxBytes: number;
  timeoutMs: number;
  allowLocalFiles: boolean;
}

const PARAM = 'messages.content.image_url';
const DATA_URL = /^data:(image\/(?:png|jpeg|jpg|webp));base64,/i;

/** What the bytes are by their signature, or null. */
export function imageKind(b: Uint8Array): 'png' | 'jpeg' | 'webp' | null {
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 12 && b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50) return 'webp';
  return null;
}

function checked(bytes: Uint8Array, what: string): Uint8Array {
  if (!imageKind(bytes)) throw badRequest(`${what} is not a PNG, JPEG or WebP image`, PARAM, 'invalid_image');
  return bytes;
}

function tooLarge(what: string, max: number): ApiError {
  return new ApiError(413, `${what} is larger than the server's limit of ${max} bytes`, 'invalid_request_error', PARAM, 'image_too_large');
}

export async function fetchImage(url: string, o: ImageFetchOptions): Promise<Uint8Array> {
  if (url.startsWith('data:')) {
    const m = DATA_URL.exec(url);
    if (!m) throw badRequest('a data URL image must be data:image/png|jpeg|webp;base64,...', PARAM, 'invalid_image');
    const b64 = url.slice(m[0].length);
    if (b64.length > Math.ceil((o.maxBytes * 4) / 3) + 4) throw tooLarge('the image', o.maxBytes);
    if (!/^[A-Za-z0-9+/=\s]*$/.test(b64)) throw badRequest('the data URL is not valid base64', PARAM, 'invalid_image');
    return checked(Buffer.from(b64, 'base64'), 'the data URL');
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw badRequest(`image_url ${JSON.stringify(url.slice(0, 80))} is not a URL`, PARAM, 'invalid_image_url');
  }
  if (u.protocol === 'file:') {
    if (!o.allowLocalFiles) throw badRequest('file:// images are off (start the server with --allow-local-files)', PARAM, 'local_files_disabled');
    const path = fileURLToPath(u);
    let size: number;
    try {
      const s = await stat(path);
      if (!s.isFile()) throw new Error('not a file');
      size = s.size;
    } catch {
      throw badRequest(`image file not found: ${path}`, PARAM, 'invalid_image_url');
    }
    if (size > o.maxBytes) throw tooLarge(path, o.maxBytes);
    return checked(await readFile(path), path);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw badRequest(`image_url scheme ${u.protocol} is not supported (data:, http:, https:, file:)`, PARAM, 'invalid_image_url');
  let res: Response;
  try {
    res = await fetch(u, { signal: AbortSignal.timeout(o.timeoutMs), redirect: 'follow' });
  } catch (e) {
    throw badRequest(`could not fetch the image ${u.href}: ${(e as Error).name === 'TimeoutError' ? `no answer within ${o.timeoutMs} ms` : (e as Error).message}`, PARAM, 'image_fetch_failed');
  }
  if (!res.ok) throw badRequest(`could not fetch the image ${u.href}: HTTP ${res.status}`, PARAM, 'image_fetch_failed');
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > o.maxBytes) throw tooLarge(u.href, o.maxBytes);
  // Read at most maxBytes, whatever the header said.
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = res.body?.getReader();
  if (!reader) throw badRequest(`the image ${u.href} has no body`, PARAM, 'image_fetch_failed');
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > o.maxBytes) {
        await reader.cancel();
        throw tooLarge(u.href, o.maxBytes);
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw badRequest(`could not fetch the image ${u.href}: ${(e as Error).name === 'TimeoutError' ? `no answer within ${o.timeoutMs} ms` : (e as Error).message}`, PARAM, 'image_fetch_failed');
  }
  return checked(Buffer.concat(chunks), u.href);
}
