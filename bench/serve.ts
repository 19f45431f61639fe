// `npm run bench -- --serve [--preset small|full] [--models a,b] [--threads N] [--no-docs]`
//
// `mgllava serve` under load, on the bench's random-weight models (4-bit LLM), through HTTP on
// 127.0.0.1 with the official `openai` client:
// - throughput: requests/s and p50/p95 latency at concurrency 1, 4 and 16 (small preset), each
//   request an image with the workload's boxes, a question and 16 new tokens;
// - follow-up: time to first token of a question about an image, then of a second question about
//   the same image (the visual-token and prompt caches);
// - decode: aggregate tokens/s of 4 concurrent requests against one alone (the batched-decoding
//   gain: the server runs with --parallel 4).
// Writes the preset's serving section of docs/BENCHMARKS.md.

import { cpus, loadavg } from 'node:os';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { ROOT, defaultCache, prepareFiles } from './orchestrate.js';
import { prepareOurLlm } from './our-llm.js';
import { PRESETS, type BenchModel, type Preset } from './presets.js';
import { benchBoxes } from './workload.js';
import { startServer } from '../src/server/server.js';

interface Args {
  preset: Preset['name'];
  models?: string[];
  threads: number;
  cache: string;
  docs: boolean;
}

const IMAGE = join(ROOT, 'fixtures', 'tiny', 'example.jpg');
const DATA_URL = `data:image/jpeg;base64,${readFileSync(IMAGE).toString('base64')}`;
const QUESTION = 'Describe the objects in this image and where they are.';
/** The server's --parallel: requests decoded together. */
const PARALLEL = 4;

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

/** The workload's boxes in the example image's pixels (its boxes are for the 768 crop). */
function boxesFor(k: number) {
  const b = benchBoxes(k, 768);
  const boxes = Array.from({ length: k }, (_, i) => Array.from(b.subarray(i * 4, i * 4 + 4)).map((v) => Math.round(v)));
  return { boxes, labels: boxes.map((_, i) => `object ${i % 10}`), scores: boxes.map((_, i) => 0.9 - i * 0.001) };
}

interface ModelServeResult {
  title: string;
  throughput?: { concurrency: number; requests: number; requests_per_s: number; p50_ms: number; p95_ms: number }[];
  followup?: { first_ttft_ms: number; followup_ttft_ms: number; first_prompt_tokens: number; followup_prompt_tokens: number; followup_cached_tokens: number };
  decode?: { single_tokens_per_s: number; concurrent4_tokens_per_s: number; gain: number; parallel: number };
}

async function ttft(client: OpenAI, model: string, messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[], boxes: unknown, maxTokens: number) {
  const t0 = performance.now();
  let first = -1;
  let text = '';
  let usage: OpenAI.CompletionUsage | undefined;
  const s = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true }, mgllava: { boxes } } as OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming);
  for await (const c of s) {
    if (first < 0 && c.choices[0]?.delta.content) first = performance.now() - t0;
    text += c.choices[0]?.delta.content ?? '';
    if (c.usage) usage = c.usage;
  }
  return { ms: first, text, usage: usage! };
}

async function measureModel(m: BenchModel, a: Args, log: (s: string) => void): Promise<ModelServeResult> {
  const files = prepareFiles(m, { preset: a.preset, threads: a.threads, cache: a.cache, peers: false, python: '', command: '', log });
  const llm = await prepareOurLlm(files.llm, files.llmCache, m, { log });
  const server = await startServer({
    host: '127.0.0.1', port: 0, maxQueue: 64, maxBody: 64 * 1024 * 1024, allowLocalFiles: false,
    worker: { spec: { model: files.mg, llm: llm.folder }, threads: a.threads, packedCache: join(a.cache, 'packed'), maxPixels: 100_000_000, parallel: PARALLEL },
  });
  try {
    log(`${m.name}: loading the model in the server`);
    const info = await server.ready;
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 3_600_000 });
    const boxes = boxesFor(PRESETS[a.preset].workload.boxes);
    const out: ModelServeResult = { title: m.title };
    const small = a.preset !== 'full';

    if (small) {
      out.throughput = [];
      for (const c of [1, 4, 16]) {
        const n = Math.max(8, 2 * c);
        const lat: number[] = [];
        const t0 = performance.now();
        let next = 0;
        await Promise.all(Array.from({ length: c }, async () => {
          while (next < n) {
            const i = next++;
            const s0 = performance.now();
            await client.chat.completions.create({ model: info.id, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: DATA_URL } }, { type: 'text', text: `${QUESTION} (${i})` }] }], max_tokens: 16, temperature: 0, mgllava: { boxes } } as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming);
            lat.push(performance.now() - s0);
          }
        }));
        const secs = (performance.now() - t0) / 1000;
        out.throughput.push({ concurrency: c, requests: n, requests_per_s: n / secs, p50_ms: pct(lat, 50), p95_ms: pct(lat, 95) });
        log(`${m.name}: concurrency ${c}: ${(n / secs).toFixed(2)} req/s, p50 ${pct(lat, 50).toFixed(0)} ms, p95 ${pct(lat, 95).toFixed(0)} ms`);
      }
    }

    // Follow-up: an image the server has not seen (the JPEG with a byte appended: other bytes, the
    // same pixels), then a second question about it after the first answer.
    const fresh = `data:image/jpeg;base64,${Buffer.concat([readFileSync(IMAGE), Buffer.from([0])]).toString('base64')}`;
    const firstMsgs: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: 'user', content: [{ type: 'image_url', image_url: { url: fresh } }, { type: 'text', text: QUESTION }] }];
    const first = await ttft(client, info.id, firstMsgs, boxes, 16);
    const second = await ttft(client, info.id, [...firstMsgs, { role: 'assistant', content: first.text }, { role: 'user', content: 'What colour is the largest one?' }], boxes, 16);
    out.followup = {
      first_ttft_ms: first.ms, followup_ttft_ms: second.ms,
      first_prompt_tokens: first.usage.prompt_tokens, followup_prompt_tokens: second.usage.prompt_tokens,
      followup_cached_tokens: (second.usage as { prompt_tokens_details?: { cached_tokens?: number } }).prompt_tokens_details?.cached_tokens ?? 0,
    };
    log(`${m.name}: TTFT first ${first.ms.toFixed(0)} ms, follow-up ${second.ms.toFixed(0)} ms (${out.followup.followup_cached_tokens} of ${second.usage.prompt_tokens} prompt tokens cached)`);

    // Decode: one request alone, then 4 at once; tokens/s over the decode phase only (from the
    // moment every stream has its first token to the first stream's end: prefills, which are not
    // batched, stay out of it).
    const D = small ? 96 : 48;
    const streamTimes = async (i: number): Promise<number[]> => {
      const times: number[] = [];
      const s = await client.chat.completions.create({ model: info.id, messages: [{ role: 'user', content: `Write a long list of numbers, ${i}.` }], max_tokens: D, temperature: 0, stream: true });
      for await (const c of s) if (c.choices[0]?.delta.content !== undefined && c.choices[0]?.finish_reason === null) times.push(performance.now());
      return times;
    };
    const rate = (streams: number[][]): number => {
      const from = Math.max(...streams.map((t) => t[0]!));
      const to = Math.min(...streams.map((t) => t[t.length - 1]!));
      const n = streams.reduce((k, t) => k + t.filter((x) => x > from && x <= to).length, 0);
      return n / ((to - from) / 1000);
    };
    await streamTimes(99);
    const single = rate([await streamTimes(0)]);
    const agg = rate(await Promise.all([1, 2, 3, 4].map(streamTimes)));
    out.decode = { single_tokens_per_s: single, concurrent4_tokens_per_s: agg, gain: agg / single, parallel: PARALLEL };
    log(`${m.name}: decode ${single.toFixed(1)} tok/s alone, ${agg.toFixed(1)} tok/s with 4 concurrent (${(agg / single).toFixed(2)}x)`);
    return out;
  } finally {
    await server.close();
  }
}

function markdown(preset: string, res: Record<string, ModelServeResult>, meta: { command: string; date: string; cpu: string; threads: number; load: number[] }): string {
  const f = (x: number, d = 1) => x.toFixed(d);
  const lines = [`### Serving, ${preset} preset (mgllava serve --parallel ${PARALLEL})`, '', `\`${meta.command}\` on ${meta.cpu}, ${meta.threads} threads, ${meta.date} (load average ${meta.load.map((x) => x.toFixed(2)).join(' ')}).`, ''];
  for (const [name, r] of Object.entries(res)) {
    lines.push(`**${name}**: ${r.title}`, '');
    if (r.throughput) {
      lines.push('| concurrency | requests | requests/s | p50 latency | p95 latency |', '| --- | --- | --- | --- | --- |');
      for (const t of r.throughput) lines.push(`| ${t.concurrency} | ${t.requests} | ${f(t.requests_per_s, 2)} | ${f(t.p50_ms, 0)} ms | ${f(t.p95_ms, 0)} ms |`);
      lines.push('');
    }
    if (r.followup) {
      const u = r.followup;
      lines.push(`- Time to first token: first question ${f(u.first_ttft_ms / 1000, 2)} s (${u.first_prompt_tokens} prompt positions); follow-up about the same image ${f(u.followup_ttft_ms / 1000, 2)} s (${u.followup_prompt_tokens} positions, ${u.followup_cached_tokens} of them from the prompt cache).`);
    }
    if (r.decode) {
      const d = r.decode;
      lines.push(`- Decode: ${f(d.single_tokens_per_s)} tokens/s alone, ${f(d.concurrent4_tokens_per_s)} tokens/s in all with 4 concurrent requests, while all four decode: ${f(d.gain, 2)}x (--parallel ${d.parallel}: their steps in one decoder run).`);
    }
    lines.push('');
  }
  return lines.join('\n').trimEnd();
}

export async function runServeBench(argv: string[]): Promise<void> {
  const a: Args = { preset: 'small', threads: Number(process.env.MGLLAVA_BENCH_THREADS ?? Math.min(cpus().length, 2)), cache: defaultCache(), docs: true };
  for (let i = 0; i < argv.length; i++) {
    const v = () => argv[++i] ?? '';
    switch (argv[i]) {
      case '--serve': break;
      case '--preset': a.preset = v() as Preset['name']; break;
      case '--models': a.models = v().split(','); break;
      case '--threads': a.threads = Number(v()); break;
      case '--cache': a.cache = v(); break;
      case '--no-docs': a.docs = false; break;
      default: throw new Error(`unknown option ${argv[i]} (with --serve: --preset, --models, --threads, --cache, --no-docs)`);
    }
  }
  if (!(a.preset in PRESETS) || a.preset === 'tiny') throw new Error('--serve runs the small or full preset');
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const load = loadavg();
  const res: Record<string, ModelServeResult> = {};
  for (const m of PRESETS[a.preset].models) {
    if (a.models && !a.models.includes(m.name)) continue;
    res[m.name] = await measureModel(m, a, log);
  }
  const meta = { command: `npm run bench -- ${argv.join(' ')}`, date: new Date().toISOString().slice(0, 10), cpu: cpus()[0]?.model ?? 'cpu', threads: a.threads, load };
  const md = markdown(a.preset, res, meta);
  console.log(md);
  if (a.docs) {
    const path = join(ROOT, 'docs', 'BENCHMARKS.md');
    const open = `<!-- serve:${a.preset} -->`;
    const close = `<!-- /serve:${a.preset} -->`;
    let text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
    const x = text.indexOf(open);
    const y = text.indexOf(close);
    const block = `${open}\n${md}\n${close}`;
    text = x >= 0 && y > x ? text.slice(0, x) + block + text.slice(y + close.length) : `${text.trimEnd()}\n\n${block}\n`;
    writeFileSync(path, text);
    log(`wrote the ${a.preset} serving section of ${path}`);
  }
}
