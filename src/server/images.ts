// The bytes of an `image_url`: a data URL (PNG, JPEG or WebP, base64), an http(s) URL fetched
// with a size and a time limit, or a file:// URL when the server allows local files. Failures
// are 400s naming the image; nothing is read from disk otherwise.

import { readFile } from 'node:fs/promises';
import { badRequest } from './errors.js';
import { dataUrlBytes, fetchMediaBytes, localMediaPath, parseMediaUrl, unsupportedScheme, type MediaLimits } from './media-url.js';

export type ImageFetchOptions = MediaLimits;

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

export async function fetchImage(url: string, o: ImageFetchOptions): Promise<Uint8Array> {
  if (url.startsWith('data:')) {
    const m = DATA_URL.exec(url);
    if (!m) throw badRequest('a data URL image must be data:image/png|jpeg|webp;base64,...', PARAM, 'invalid_image');
    return checked(dataUrlBytes('image', url.slice(m[0].length), o.maxBytes), 'the data URL');
  }
  const u = parseMediaUrl('image', url);
  if (u.protocol === 'file:') {
    const path = await localMediaPath('image', u, o);
    return checked(await readFile(path), path);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw unsupportedScheme('image', u);
  return checked(await fetchMediaBytes('image', u, o), u.href);
}
