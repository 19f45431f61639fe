// The host image type shared by decoding, resizing and the CLIP pipeline. Kept free of Node and
// sharp so that the pixel code can run in a browser build too (only decode.ts needs sharp).

/** An 8-bit RGB image, row-major, interleaved: data[(y * width + x) * 3 + c], shape [h, w, 3]. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/** An RGB fill colour, each channel an integer 0..255. */
export type Rgb = readonly [number, number, number];

/** Checks the invariants every function here relies on; throws a plain Error (a bug, not input). */
export function checkRgbImage(img: RgbImage, what = 'image'): void {
  const { width, height, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`${what}: size ${width}x${height} is not a positive integer size`);
  }
  if (data.length !== width * height * 3) {
    throw new Error(`${what}: ${data.length} bytes, ${width}x${height} RGB needs ${width * height * 3}`);
  }
}
