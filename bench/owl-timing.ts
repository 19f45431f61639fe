// Detection time at the real OWLv2-L/14 size (960 px, 68 x 68 patches, ViT-L vision tower,
// 12-layer text tower) with random weights written to a temporary folder (1.7 GB, deleted
// afterwards). A timing run, not a test: it takes minutes and wants the machine to itself.
// Prints one JSON line with the timings (docs/detection.md records the numbers).
//   node dist/bench/owl-timing.js

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, loadavg, cpus } from 'node:os';
import { join } from 'node:path';
import { TINY } from '../test/helpers/fixtures.js';
import { Owlv2Detector } from '../src/detect/owlv2.js';
import { COCO_80 } from '../src/detect/tags.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { OWLV2_LARGE, writeRandomOwlv2 } from '../test/detect/random-owlv2.js';

{
  const dir = mkdtempSync(join(tmpdir(), 'mgllava-owl-large-'));
  try {
    let t = performance.now();
    writeRandomOwlv2(dir, OWLV2_LARGE);
    const writeS = (performance.now() - t) / 1000;
    const load1 = loadavg()[0];
    t = performance.now();
    const d = await Owlv2Detector.load(dir);
    const loadS = (performance.now() - t) / 1000;
    const img = await decodeImage(join(TINY, 'example.jpg'));
    const runs: Record<string, unknown>[] = [];
    try {
      if (d.patches !== 68 * 68) throw new Error(`expected 68 x 68 patches, got ${d.patches}`);
      for (const [name, tags] of [['4 tags (first run)', ['cat', 'table', 'red square', 'window']], ['4 tags', ['bus', 'car', 'person', 'window']], ['COCO-80', COCO_80]] as const) {
        t = performance.now();
        const r = await d.detect(img, tags, { threshold: 0.2 });
        const totalS = (performance.now() - t) / 1000;
        runs.push({ name, total_s: +totalS.toFixed(2), preprocess_ms: +r.timings.preprocessMs.toFixed(1), text_ms: +r.timings.textMs.toFixed(1), vision_s: +(r.timings.visionMs / 1000).toFixed(2), boxes: r.labels.length });
      }
      // Preprocessing of a large photo (4000 x 3000 -> blur sigma 1.58, 11 taps -> 960).
      const big = { width: 4000, height: 3000, data: new Uint8Array(4000 * 3000 * 3).map((_, i) => (i * 2654435761) >>> 24) };
      t = performance.now();
      d.preprocess(big);
      runs.push({ name: 'preprocess 4000x3000', ms: +(performance.now() - t).toFixed(1) });
    } finally {
      await d.release();
    }
    process.stdout.write(`${JSON.stringify({ cores: cpus().length, loadavg_before: load1, write_weights_s: +writeS.toFixed(1), load_s: +loadS.toFixed(2), peak_rss_gib: +(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2), runs })}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
