// The release's video frames (mg_llava/dataset/utils.py::load_and_transform_video, decord branch):
// `len(VideoReader)` frames, `np.linspace(0, len - 1, 8, dtype=int)` of them, decoded as RGB24.
// decord is not available from Node, so the ffmpeg command-line tools (Debian's `ffmpeg` package)
// stand in for it:
//
// - the frame count is decord's `len(vr)`, the number of packets of the video stream, counted by
//   `ffprobe -count_packets` (demuxing only, no decoding);
// - the frames are decoded once by `ffmpeg`, in presentation order, with a `select` filter that
//   keeps the wanted frame numbers (`n`, counted from 0 over the decoded frames, `-vsync
//   passthrough`: no frame dropped or duplicated), converted to rgb24 and written raw to a pipe.
//   Only the wanted frames cross the pipe: memory is the output (frames x width x height x 3
//   bytes) and nothing else, and `-frames:v` stops decoding after the last wanted frame;
// - the video stream is the first one that is not an attached picture (`V:0`, for both tools; the
//   cover art of an .mp4 or .mkv is a video stream too, and decord's av_find_best_stream does not
//   pick it), and the frames are not auto-rotated (`-noautorotate`: decord ignores the display
//   matrix, and the size stays the one ffprobe reports).
//
// Lossless sources (the fixture: FFV1 bgr0) decode byte-identical to decord's. For lossy codecs
// with a YUV pixel format the RGB conversion is swscale's, which may differ from decord's (also
// swscale, through its own filter graph) by rounding.

import { execFile, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { RgbImage } from '../preprocess/image.js';

/** Frames the release samples per video (`load_and_transform_video(..., num_frames=8)`). */
export const DEFAULT_VIDEO_FRAMES = 8;

export interface VideoInfo {
  /** The path as given. */
  readonly path: string;
  readonly width: number;
  readonly height: number;
  /** Frames of the video stream: its packet count (decord's `len(VideoReader)`). */
  readonly count: number;
}

export interface FfmpegOptions {
  /** The ffprobe executable (default `ffprobe`, found on PATH). */
  readonly ffprobe?: string;
  /** The ffmpeg executable (default `ffmpeg`, found on PATH). */
  readonly ffmpeg?: string;
  /** Limit for one ffprobe or ffmpeg run, milliseconds (default 60 000 for ffprobe, 600 000 for ffmpeg). */
  readonly timeoutMs?: number;
}

export interface ReadFramesOptions extends FfmpegOptions {
  /** The video's probe, when the caller has it already (saves one ffprobe run). */
  readonly info?: VideoInfo;
}

export interface LoadVideoOptions extends FfmpegOptions {
  /** How many frames to sample (default 8, the release's). */
  readonly frames?: number;
}

export interface VideoFrames {
  /** The sampled frame indices, ascending. */
  readonly indices: number[];
  /** The decoded frames, in the order of `indices`. */
  readonly frames: RgbImage[];
  readonly width: number;
  readonly height: number;
  /** Frames in the video. */
  readonly count: number;
}

const PROBE_TIMEOUT_MS = 60_000;
const DECODE_TIMEOUT_MS = 600_000;
const INSTALL_HINT = "install Debian's `ffmpeg` package (apt-get install ffmpeg), which provides ffmpeg and ffprobe";

/** The last non-empty lines of a tool's stderr, for an error message. */
function tail(stderr: string, lines = 2): string {
  const all = stderr.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return all.slice(-lines).join('; ');
}

/** A path the tools read as a plain file, whatever its name (`-x.mp4`, `concat:a|b`, `a:b.mkv`). */
function fileUrl(path: string): string {
  return `file:${resolve(path)}`;
}

/** The file exists and is a regular file (or a link to one); otherwise an InputError. */
function checkFile(path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`${path}: no such video file`, path);
    throw new InputError(`${path}: cannot read the video file (${code ?? (e as Error).message})`, path);
  }
  if (st.isDirectory()) throw new InputError(`${path}: is a folder, not a video file`, path);
  if (!st.isFile()) throw new InputError(`${path}: not a regular file, so not a video file`, path);
}

function missingTool(tool: string): InputError {
  return new InputError(`${tool} not found: ${INSTALL_HINT}`);
}

function timedOut(tool: string, path: string, ms: number): InputError {
  return new InputError(`${path}: ${tool} did not finish within ${ms / 1000} s`, path);
}

/**
 * Width, height and frame count of the video at `path`. The count is the number of packets of
 * the video stream (`ffprobe -count_packets`), which is what decord's `len(VideoReader)` indexes.
 * Throws an InputError when ffprobe is missing, or when the file is missing, a folder, not a
 * video, without a video stream, or without frames.
 */
export async function probeVideo(path: string, opts: FfmpegOptions = {}): Promise<VideoInfo> {
  checkFile(path);
  const tool = opts.ffprobe ?? 'ffprobe';
  const timeout = opts.timeoutMs ?? PROBE_TIMEOUT_MS;
  const args = [
    '-v', 'error',
    '-select_streams', 'V:0',
    '-count_packets',
    '-show_entries', 'stream=nb_read_packets,width,height',
    '-of', 'json',
    fileUrl(path),
  ];
  const stdout = await new Promise<string>((done, fail) => {
    execFile(tool, args, { timeout, maxBuffer: 1 << 20, encoding: 'utf8' }, (err, out, errOut) => {
      if (!err) return done(out);
      const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
      if (e.code === 'ENOENT') return fail(missingTool(tool));
      if (e.killed || e.signal === 'SIGTERM') return fail(timedOut('ffprobe', path, timeout));
      const why = tail(errOut) || e.message;
      fail(new InputError(`${path}: not a readable video (ffprobe: ${why})`, path));
    });
  });
  let parsed: { streams?: { width?: unknown; height?: unknown; nb_read_packets?: unknown }[] };
  try {
    parsed = JSON.parse(stdout) as typeof parsed;
  } catch {
    throw new InputError(`${path}: not a readable video (ffprobe printed no JSON)`, path);
  }
  const s = parsed.streams?.[0];
  if (!s) throw new InputError(`${path}: not a video (no video stream)`, path);
  const width = Number(s.width);
  const height = Number(s.height);
  const count = Number(s.nb_read_packets);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new InputError(`${path}: the video stream has no frame size (ffprobe gave ${String(s.width)}x${String(s.height)})`, path);
  }
  if (!Number.isInteger(count) || count < 1) {
    throw new InputError(`${path}: the video stream has no frames`, path);
  }
  return { path, width, height, count };
}

/**
 * The release's `np.linspace(0, n - 1, count, dtype=int)`: numpy's float64 arithmetic
 * (step = (n-1)/(count-1), value i = i*step, the last one set to n-1 exactly), truncated toward
 * zero. Throws an InputError when n < count (the release would sample some frames twice).
 */
export function sampleIndices(n: number, count: number = DEFAULT_VIDEO_FRAMES): number[] {
  if (!Number.isSafeInteger(count) || count < 1) throw new InputError(`frame count ${count}: must be a positive integer`);
  if (!Number.isSafeInteger(n) || n < 0) throw new InputError(`video frame count ${n}: must be a non-negative integer`);
  if (n < count) throw new InputError(`the video has ${n} frame${n === 1 ? '' : 's'}, fewer than the ${count} asked`);
  if (count === 1) return [0];
  const stop = n - 1;
  const step = stop / (count - 1);
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) out[i] = Math.trunc(i * step);
  out[count - 1] = stop;
  return out;
}

/**
 * Decodes the frames at `indices` (0-based, presentation order; any order, repeats allowed) as
 * RGB24, in the order given. One ffmpeg run with a `select` filter; only the wanted frames are
 * kept. A frame the decoder does not produce (an index past the end) is an InputError naming the
 * file.
 */
export async function readFrames(path: string, indices: readonly number[], opts: ReadFramesOptions = {}): Promise<RgbImage[]> {
  for (const i of indices) {
    if (!Number.isSafeInteger(i) || i < 0) throw new InputError(`frame index ${i}: must be a non-negative integer`);
  }
  const info = opts.info ?? (await probeVideo(path, opts));
  if (indices.length === 0) return [];
  checkFile(path);
  const wanted = [...new Set(indices)].sort((a, b) => a - b);
  const past = wanted.filter((i) => i >= info.count);
  if (past.length > 0) {
    throw new InputError(`${path}: frame ${past[0]} asked, the video has ${info.count} frames (0..${info.count - 1})`, path);
  }
  const { width, height } = info;
  const frameBytes = width * height * 3;
  const total = frameBytes * wanted.length;
  const expr = wanted.map((i) => `eq(n\\,${i})`).join('+');
  const tool = opts.ffmpeg ?? 'ffmpeg';
  const timeout = opts.timeoutMs ?? DECODE_TIMEOUT_MS;
  const args = [
    '-nostdin', '-hide_banner', '-v', 'error',
    '-noautorotate',
    '-i', fileUrl(path),
    '-map', '0:V:0',
    '-vf', `select=${expr}`,
    '-vsync', 'passthrough',
    '-frames:v', String(wanted.length),
    '-f', 'rawvideo', '-pix_fmt', 'rgb24',
    'pipe:1',
  ];
  const buf = new Uint8Array(total);
  const got = await new Promise<number>((done, fail) => {
    const child = spawn(tool, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let filled = 0;
    let overflow = false;
    let stderr = '';
    let settled = false;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(() => fail(timedOut('ffmpeg', path, timeout)));
    }, timeout);
    child.stdout.on('data', (chunk: Buffer) => {
      const room = total - filled;
      if (chunk.length > room) overflow = true;
      const n = Math.min(room, chunk.length);
      buf.set(chunk.subarray(0, n), filled);
      filled += n;
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      stderr = (stderr + s).slice(-4096);
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      finish(() => fail(err.code === 'ENOENT' ? missingTool(tool) : new InputError(`${path}: cannot run ${tool} (${err.message})`, path)));
    });
    child.on('close', (code, signal) => {
      finish(() => {
        if (code !== 0) {
          const why = tail(stderr) || (signal ? `killed by ${signal}` : `exit status ${code}`);
          return fail(new InputError(`${path}: decoding failed (ffmpeg: ${why})`, path));
        }
        if (overflow) {
          return fail(new InputError(`${path}: ffmpeg gave more than ${total} bytes for ${wanted.length} frames of ${width}x${height}: the frame size changes within the video?`, path));
        }
        done(filled);
      });
    });
  });
  if (got % frameBytes !== 0) {
    throw new InputError(`${path}: ffmpeg gave ${got} bytes, not whole ${width}x${height} RGB frames: the frame size changes within the video?`, path);
  }
  if (got !== total) {
    const complete = got / frameBytes;
    throw new InputError(
      `${path}: frame ${wanted[complete]} missing: the decoder gave ${complete} of the ${wanted.length} frames asked, ` +
        `though the video stream has ${info.count} packets`,
      path,
    );
  }
  const byIndex = new Map<number, RgbImage>();
  wanted.forEach((idx, k) => {
    byIndex.set(idx, { width, height, data: buf.subarray(k * frameBytes, (k + 1) * frameBytes) });
  });
  return indices.map((i) => byIndex.get(i)!);
}

/**
 * The release's video frames: probe the video, sample `frames` (default 8) indices with
 * np.linspace, decode them as RGB24.
 */
export async function loadVideoFrames(path: string, opts: LoadVideoOptions = {}): Promise<VideoFrames> {
  const info = await probeVideo(path, opts);
  const count = opts.frames ?? DEFAULT_VIDEO_FRAMES;
  let indices: number[];
  try {
    indices = sampleIndices(info.count, count);
  } catch (e) {
    if (e instanceof InputError) throw new InputError(`${path}: ${e.message}`, path);
    throw e;
  }
  const frames = await readFrames(path, indices, { ...opts, info });
  return { indices, frames, width: info.width, height: info.height, count: info.count };
}
