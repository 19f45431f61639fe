// Image decoding to 8-bit RGB with sharp (libvips), matching what the reference gets from
// `PIL.Image.open(path).convert('RGB')`:
// - no EXIF auto-rotation (PIL does not rotate on open, and the reference never calls exif_transpose);
// - alpha dropped without compositing onto a background (convert('RGB') just discards the band);
// - grey, grey+alpha and palette images expanded to RGB;
// - embedded ICC profiles ignored (PIL keeps the stored values; libvips would colour-convert them);
// - only the first frame of an animated GIF/WebP (PIL's current frame after open).
// Known differences from PIL, all rare in practice: 16-bit greyscale PNGs (libvips scales to 8
// bits, PIL clips), CMYK JPEGs (PIL's naive CMYK->RGB formula vs libvips's colour management).
// JPEG decoding goes through libjpeg-turbo in both stacks; example.jpg decodes bit-identically.

import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { InputError } from '../core/errors.js';
import { RgbImage } from './image.js';

export type { RgbImage } from './image.js';

/** Default refusal threshold for decompression bombs: 100 megapixels (e.g. 10000 x 10000). */
export const DEFAULT_MAX_PIXELS = 100_000_000;

export interface DecodeOptions {
  /** Refuse images with more pixels than this (width * height); default DEFAULT_MAX_PIXELS. */
  maxPixels?: number;
  /** Name used in error messages for byte input (a path input names itself). */
  name?: string;
}

/**
 * Decode a JPEG/PNG/WebP/GIF/TIFF/AVIF (whatever this sharp build reads) from a path or bytes.
 * Throws InputError naming the file for a missing/unreadable file, data that is not an image,
 * corrupt or truncated data, and images over the pixel limit.
 */
export async function decodeImage(input: string | Uint8Array, opts: DecodeOptions = {}): Promise<RgbImage> {
  const name = typeof input === 'string' ? input : (opts.name ?? '<image bytes>');
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(maxPixels > 0)) throw new Error(`decodeImage: maxPixels must be positive, got ${maxPixels}`);

  let bytes: Uint8Array;
  if (typeof input === 'string') {
    try {
      bytes = await readFile(input);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : String((e as Error).message);
      throw new InputError(`${name}: cannot read image: ${why}`, name);
    }
  } else {
    bytes = input;
  }
  if (bytes.length === 0) throw new InputError(`${name}: image file is empty`, name);

  // Header first: it is cheap, and it lets the pixel limit name the image's real dimensions
  // before any pixel memory is allocated.
  let width: number;
  let height: number;
  try {
    const meta = await sharp(bytes, { failOn: 'error' }).metadata();
    width = meta.width;
    // For multi-page images libvips reports the first page's height in pageHeight.
    height = meta.pageHeight ?? meta.height;
  } catch (e) {
    throw new InputError(`${name}: not a readable image (${describe(e)})`, name);
  }
  if (!(width > 0) || !(height > 0)) {
    throw new InputError(`${name}: image has no size (${width}x${height})`, name);
  }
  if (width * height > maxPixels) {
    throw new InputError(
      `${name}: image is ${width}x${height} = ${width * height} pixels, more than the limit of ${maxPixels} ` +
        `(a decompression-bomb guard; raise the limit with --max-pixels, or maxPixels in the API)`,
      name,
    );
  }

  let data: Buffer;
  let channels: number;
  try {
    // failOn 'error': truncated or undecodable data throws instead of returning grey padding
    // (PIL also refuses truncated files); libjpeg warnings that PIL tolerates are tolerated.
    // limitInputPixels repeats the guard inside libvips in case the header lied.
    const out = await sharp(bytes, { failOn: 'error', limitInputPixels: maxPixels, ignoreIcc: true, autoOrient: false })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    data = out.data;
    channels = out.info.channels;
    if (out.info.width !== width || out.info.height !== height) {
      throw new Error(`decoded ${out.info.width}x${out.info.height}, header said ${width}x${height}`);
    }
  } catch (e) {
    throw new InputError(`${name}: corrupt or truncated image (${describe(e)})`, name);
  }
  return { width, height, data: toRgb(data, width * height, channels, name) };
}

/** Expand 1 (grey) or drop extra bands so the result is [h, w, 3]. */
function toRgb(src: Uint8Array, n: number, channels: number, name: string): Uint8Array {
  if (channels === 3) return new Uint8Array(src.buffer, src.byteOffset, n * 3);
  const out = new Uint8Array(n * 3);
  if (channels === 1 || channels === 2) {
    for (let i = 0; i < n; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = src[i * channels]!;
  } else if (channels >= 4) {
    for (let i = 0; i < n; i++) {
      out[3 * i] = src[i * channels]!;
      out[3 * i + 1] = src[i * channels + 1]!;
      out[3 * i + 2] = src[i * channels + 2]!;
    }
  } else {
    throw new InputError(`${name}: unsupported image with ${channels} channels`, name);
  }
  return out;
}

function describe(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.trim();
}
