// The file of a `video_url`: a data URL (MP4, WebM, Matroska or QuickTime, base64) or an http(s)
// URL fetched with the image limits (size, time), written to a temporary file that the caller
// removes after the job (ffmpeg reads paths); or a file:// URL, read in place, when the server
// allows local files. The file is then checked as the model will read it: a container signature,
// ffprobe's video stream and frame count, enough frames for the sampling. Failures are 400s
// naming the video and the problem.

import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import { probeVideo, sampleIndices, type VideoInfo } from '../video/frames.js';
import { badRequest } from './errors.js';
import { dataUrlBytes, fetchMediaBytes, localMediaPath, parseMediaUrl, unsupportedScheme, type MediaLimits } from './media-url.js';

const PARAM = 'messages.content.video_url';
const DATA_URL = /^data:video\/(mp4|webm|x-matroska|quicktime);base64,/i;
const EXTENSION: Record<string, string> = { mp4: 'mp4', webm: 'webm', 'x-matroska': 'mkv', quicktime: 'mov' };

export interface VideoFetchOptions extends MediaLimits {
  /** frames the job samples (np.linspace): the video needs at least as many */
  frames: number;
}

export interface FetchedVideo {
  /** where ffmpeg reads it */
  path: string;
  /** how messages name it (not the temporary path) */
  label: string;
  info: VideoInfo;
  /** the frames the job samples */
  frameIndices: number[];
  /** remove the temporary file (nothing for a local file) */
  cleanup(): Promise<void>;
}

/** The container by its signature (the formats ffmpeg commonly reads), or null. */
export function videoKind(b: Uint8Array): string | null {
  const ascii = (o: number, s: string) => b.length >= o + s.length && [...s].every((c, i) => b[o + i] === c.charCodeAt(0));
  if (b.length >= 4 && b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3) return 'matroska';
  if (['ftyp', 'moov', 'mdat', 'free', 'skip', 'wide', 'pnot'].some((t) => ascii(4, t))) return 'mp4';
  if (ascii(0, 'RIFF') && ascii(8, 'AVI ')) return 'avi';
  if (ascii(0, 'FLV')) return 'flv';
  if (ascii(0, 'OggS')) return 'ogg';
  if (b.length >= 4 && b[0] === 0x30 && b[1] === 0x26 && b[2] === 0xb2 && b[3] === 0x75) return 'asf';
  if (b.length >= 4 && b[0] === 0 && b[1] === 0 && b[2] === 1 && (b[3] === 0xba || b[3] === 0xb3)) return 'mpeg';
  if (b.length >= 189 && b[0] === 0x47 && b[188] === 0x47) return 'mpegts';
  return null;
}

const NOT_VIDEO = 'is not a video (MP4, WebM, Matroska, QuickTime, AVI, FLV, Ogg, MPEG)';

/** The video's bytes in a temporary file of their own. */
async function temporary(bytes: Uint8Array, ext: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mgllava-serve-video-'));
  const path = join(dir, `video.${ext}`);
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    await writeFile(path, bytes);
  } catch (e) {
    await cleanup();
    throw e;
  }
  return { path, cleanup };
}

async function head(path: string): Promise<Uint8Array> {
  const f = await open(path, 'r');
  try {
    const b = new Uint8Array(256);
    const { bytesRead } = await f.read(b, 0, b.length, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await f.close();
  }
}

/** The video of a `video_url`, in a file, checked (see the file comment). */
export async function fetchVideo(url: string, o: VideoFetchOptions): Promise<FetchedVideo> {
  let file: { path: string; cleanup: () => Promise<void> };
  let label: string;
  if (url.startsWith('data:')) {
    const m = DATA_URL.exec(url);
    if (!m) throw badRequest('a data URL video must be data:video/mp4|webm|x-matroska|quicktime;base64,...', PARAM, 'invalid_video');
    const bytes = dataUrlBytes('video', url.slice(m[0].length), o.maxBytes);
    label = 'the data URL video';
    if (!videoKind(bytes)) throw badRequest(`${label} ${NOT_VIDEO}`, PARAM, 'invalid_video');
    file = await temporary(bytes, EXTENSION[m[1]!.toLowerCase()]!);
  } else {
    const u = parseMediaUrl('video', url);
    if (u.protocol === 'file:') {
      const path = await localMediaPath('video', u, o);
      label = path;
      if (!videoKind(await head(path))) throw badRequest(`${label} ${NOT_VIDEO}`, PARAM, 'invalid_video');
      file = { path, cleanup: async () => undefined };
    } else if (u.protocol === 'http:' || u.protocol === 'https:') {
      const bytes = await fetchMediaBytes('video', u, o);
      label = u.href;
      if (!videoKind(bytes)) throw badRequest(`${label} ${NOT_VIDEO}`, PARAM, 'invalid_video');
      const ext = /\.([A-Za-z0-9]{2,5})$/.exec(u.pathname)?.[1] ?? 'video';
      file = await temporary(bytes, ext);
    } else {
      throw unsupportedScheme('video', u);
    }
  }
  try {
    let info: VideoInfo;
    try {
      info = await probeVideo(file.path);
    } catch (e) {
      if (e instanceof InputError) throw badRequest(e.message.split(file.path).join(label), PARAM, 'invalid_video');
      throw e;
    }
    let frameIndices: number[];
    try {
      frameIndices = sampleIndices(info.count, o.frames);
    } catch (e) {
      if (e instanceof InputError) throw badRequest(`${label}: ${e.message} (mgllava.frames: ${o.frames})`, PARAM, 'invalid_video');
      throw e;
    }
    return { path: file.path, label, info, frameIndices, cleanup: file.cleanup };
  } catch (e) {
    await file.cleanup();
    throw e;
  }
}
