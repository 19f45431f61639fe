// The release's video frames (decord's len, np.linspace sampling, RGB24 decode) through the
// ffmpeg tools, against fixtures/video (frame_indices, frames_rgb), plus bad inputs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../src/core/errors.js';
import { SafetensorsStore } from '../../src/weights/safetensors.js';
import { readBytes } from '../../src/weights/types.js';
import { loadVideoFrames, probeVideo, readFrames, sampleIndices } from '../../src/video/frames.js';
import { ROOT } from '../helpers/fixtures.js';

const VIDEO_DIR = join(ROOT, 'fixtures', 'video');
const VIDEO = join(VIDEO_DIR, 'synthetic_landscape.mkv');

function cases(): SafetensorsStore {
  return SafetensorsStore.open(join(VIDEO_DIR, 'video_cases.safetensors'));
}

function tensor(name: string): { shape: readonly number[]; dtype: string; bytes: Uint8Array } {
  const r = cases().get(name);
  if (!r) throw new Error(`fixture tensor ${name} not found`);
  return { shape: r.shape, dtype: r.dtype, bytes: readBytes(r) };
}

function fixtureIndices(): number[] {
  const t = tensor('frame_indices');
  assert.equal(t.dtype, 'I64');
  return Array.from(new BigInt64Array(new Uint8Array(t.bytes).buffer), Number);
}

/** An InputError whose message matches `re`. */
function inputError(re: RegExp) {
  return (e: unknown) => e instanceof InputError && re.test(e.message);
}

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'mgllava-video-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('probeVideo: the fixture is 320x240 with 40 frames (packets)', async () => {
  const info = await probeVideo(VIDEO);
  assert.deepEqual(info, { path: VIDEO, width: 320, height: 240, count: 40 });
});

test('loadVideoFrames: indices and RGB frames equal the fixture exactly', async () => {
  const want = fixtureIndices();
  assert.deepEqual(want, [0, 5, 11, 16, 22, 27, 33, 39]);
  const rgb = tensor('frames_rgb');
  assert.equal(rgb.dtype, 'U8');
  assert.deepEqual([...rgb.shape], [8, 240, 320, 3]);

  const v = await loadVideoFrames(VIDEO);
  assert.equal(v.count, 40);
  assert.equal(v.width, 320);
  assert.equal(v.height, 240);
  assert.deepEqual(v.indices, want);
  assert.equal(v.frames.length, 8);
  const frameBytes = 240 * 320 * 3;
  v.frames.forEach((f, j) => {
    assert.equal(f.width, 320);
    assert.equal(f.height, 240);
    assert.equal(f.data.length, frameBytes);
    const ref = rgb.bytes.subarray(j * frameBytes, (j + 1) * frameBytes);
    assert.ok(Buffer.from(f.data.buffer, f.data.byteOffset, f.data.length).equals(Buffer.from(ref)), `frame ${j} (index ${want[j]}) differs`);
  });
});

test('readFrames: any order and repeats, in the order asked', async () => {
  const rgb = tensor('frames_rgb');
  const frameBytes = 240 * 320 * 3;
  const ref = (j: number) => Buffer.from(rgb.bytes.subarray(j * frameBytes, (j + 1) * frameBytes));
  // Fixture positions: index 39 is position 7, 5 is 1, 0 is 0.
  const frames = await readFrames(VIDEO, [39, 5, 39, 0]);
  assert.equal(frames.length, 4);
  const same = (k: number, j: number) => assert.ok(Buffer.from(frames[k]!.data).equals(ref(j)), `frame ${k}`);
  same(0, 7);
  same(1, 1);
  same(2, 7);
  same(3, 0);
  assert.deepEqual(await readFrames(VIDEO, []), []);
  await assert.rejects(readFrames(VIDEO, [40]), inputError(/synthetic_landscape\.mkv: frame 40 asked, the video has 40 frames/));
  await assert.rejects(readFrames(VIDEO, [-1]), inputError(/frame index -1/));
  await assert.rejects(readFrames(VIDEO, [1.5]), inputError(/frame index 1\.5/));
});

test('readFrames: a frame the decoder does not give (a wrong probe) is an error naming the file', async () => {
  await assert.rejects(
    readFrames(VIDEO, [3, 45], { info: { path: VIDEO, width: 320, height: 240, count: 50 } }),
    inputError(/synthetic_landscape\.mkv: frame 45 missing: the decoder gave 1 of the 2 frames/),
  );
});

test('sampleIndices: numpy linspace(0, n-1, count, dtype=int)', () => {
  // Values from numpy 1.24: np.linspace(0, n - 1, count, dtype=int).tolist()
  const cases: [number, number, number[]][] = [
    [40, 8, [0, 5, 11, 16, 22, 27, 33, 39]],
    [10, 8, [0, 1, 2, 3, 5, 6, 7, 9]],
    [8, 8, [0, 1, 2, 3, 4, 5, 6, 7]],
    [9, 8, [0, 1, 2, 3, 4, 5, 6, 8]],
    [1000, 8, [0, 142, 285, 428, 570, 713, 856, 999]],
    [7, 3, [0, 3, 6]],
    [100, 16, [0, 6, 13, 19, 26, 33, 39, 46, 52, 59, 66, 72, 79, 85, 92, 99]],
    [2, 2, [0, 1]],
    [1, 1, [0]],
    [17, 1, [0]],
  ];
  for (const [n, count, want] of cases) assert.deepEqual(sampleIndices(n, count), want, `n=${n}, count=${count}`);
  assert.deepEqual(sampleIndices(40), [0, 5, 11, 16, 22, 27, 33, 39]);
  assert.throws(() => sampleIndices(7, 8), inputError(/the video has 7 frames, fewer than the 8 asked/));
  assert.throws(() => sampleIndices(1), inputError(/the video has 1 frame, fewer than the 8 asked/));
  assert.throws(() => sampleIndices(10, 0), inputError(/frame count 0/));
  assert.throws(() => sampleIndices(10, 2.5), inputError(/frame count 2\.5/));
});

test('sampleIndices: float64 i*step, truncated (not the exact rational floor)', () => {
  // np.linspace(0, 30, 23, dtype=int): 11 * (30/22) is 14.999999999999998 in float64, so 14 where
  // floor(11*30/22) = 15; likewise n=31, count=27 at i=13. Values from numpy 1.24.
  assert.deepEqual(sampleIndices(31, 23), [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 19, 20, 21, 23, 24, 25, 27, 28, 30]);
  assert.deepEqual(sampleIndices(31, 27), [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 30]);
  assert.deepEqual(sampleIndices(200), [0, 28, 56, 85, 113, 142, 170, 199]);
});

test('bad inputs: each one InputError naming the file', async () => {
  const text = join(tmp, 'notes.mp4');
  await writeFile(text, 'this is a text file, not a video\n');
  await assert.rejects(probeVideo(text), inputError(/notes\.mp4: not a readable video \(ffprobe: /));
  await assert.rejects(loadVideoFrames(text), inputError(/notes\.mp4: not a readable video/));

  const missing = join(tmp, 'nope.mkv');
  await assert.rejects(loadVideoFrames(missing), inputError(/nope\.mkv: no such video file/));
  await assert.rejects(readFrames(missing, [0]), inputError(/nope\.mkv: no such video file/));

  await assert.rejects(loadVideoFrames(tmp), inputError(/is a folder, not a video file/));

  // Audio only: a readable media file without a video stream.
  const wav = join(tmp, 'tone.wav');
  execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'sine=d=0.05', wav]);
  await assert.rejects(probeVideo(wav), inputError(/tone\.wav: not a video \(no video stream\)/));

  // A one-frame video: probed fine, too short for 8 frames, fine for 1.
  const one = join(tmp, 'one.mkv');
  execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'color=c=red:s=32x32:d=0.04,format=bgr0', '-c:v', 'ffv1', one]);
  assert.deepEqual(await probeVideo(one), { path: one, width: 32, height: 32, count: 1 });
  await assert.rejects(loadVideoFrames(one), inputError(/one\.mkv: the video has 1 frame, fewer than the 8 asked/));
  const single = await loadVideoFrames(one, { frames: 1 });
  assert.deepEqual(single.indices, [0]);
  assert.equal(single.frames.length, 1);
  const px = single.frames[0]!.data;
  assert.equal(px.length, 32 * 32 * 3);
  for (let i = 0; i < px.length; i += 3) assert.deepEqual([px[i], px[i + 1], px[i + 2]], [255, 0, 0]);

  // More frames than the fixture has.
  await assert.rejects(loadVideoFrames(VIDEO, { frames: 41 }), inputError(/synthetic_landscape\.mkv: the video has 40 frames, fewer than the 41 asked/));

  // A name ffmpeg would otherwise read as an option or a protocol.
  const odd = join(tmp, 'concat:odd.mkv');
  await copyFile(one, odd);
  assert.equal((await probeVideo(odd)).count, 1);
});

test('a tool that runs past its time limit is an InputError', async () => {
  await assert.rejects(probeVideo(VIDEO, { timeoutMs: 1 }), inputError(/synthetic_landscape\.mkv: ffprobe did not finish within 0\.001 s/));
  const info = await probeVideo(VIDEO);
  await assert.rejects(readFrames(VIDEO, [39], { info, timeoutMs: 1 }), inputError(/synthetic_landscape\.mkv: ffmpeg did not finish within 0\.001 s/));
  // A wrong frame size in the probe shows as bytes that are not whole frames.
  await assert.rejects(
    readFrames(VIDEO, [3], { info: { ...info, height: 300 } }),
    inputError(/ffmpeg gave 230400 bytes, not whole 320x300 RGB frames/),
  );
});

test('a missing ffprobe or ffmpeg says to install Debian\'s ffmpeg package', async () => {
  const nowhere = join(tmp, 'no-such-dir', 'ffprobe');
  await assert.rejects(probeVideo(VIDEO, { ffprobe: nowhere }), inputError(/ffprobe not found: install Debian's `ffmpeg` package/));
  const info = await probeVideo(VIDEO);
  await assert.rejects(
    readFrames(VIDEO, [0], { info, ffmpeg: join(tmp, 'no-such-dir', 'ffmpeg') }),
    inputError(/ffmpeg not found: install Debian's `ffmpeg` package/),
  );
});
