// The benchmark's plumbing, without peers and without timing asserts: the GGUF writer (header,
// metadata, tensor table, F16 and Q4_0 data, llama.cpp's q/k row order), the fp16 and Q4_0
// codecs, and a whole `--preset tiny` run on the tiny fixture whose report has every ratio, with
// nulls for the peers that were not run.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { TINY } from '../helpers/fixtures.js';
import { openWeights } from '../../src/weights/open.js';
import { readBytes, readF32 } from '../../src/weights/types.js';
import { f16ToF32 } from '../../src/core/tensor.js';
import { GGML_TYPE, fromHalf, readGgufHeader, toHalf } from '../../bench/gguf.js';
import { dequantizeGgml, quantizeGgml } from '../../src/quant/ggml-blocks.js';
import { ggufTensorType, writeGgufFromHf, writeRandomLlm } from '../../bench/llm-files.js';
import { runBench } from '../../bench/orchestrate.js';
import { bestOf, ratios, writeDocs } from '../../bench/report.js';
import type { LlmTimes } from '../../bench/measure-ours.js';
import { benchBoxes, lcg, promptIds, promptLayout } from '../../bench/workload.js';
import { PRESETS } from '../../bench/presets.js';

let tmp: string;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bench-test-'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

test('fp16: exact values, round to nearest even, subnormals, overflow', () => {
  for (const x of [0, 1, -2, 0.5, 65504, 2 ** -14, 2 ** -24, 1 + 2 ** -10]) assert.equal(fromHalf(toHalf(x)), x);
  assert.equal(fromHalf(toHalf(1 + 2 ** -11)), 1); // tie -> even mantissa
  assert.equal(fromHalf(toHalf(1 + 3 * 2 ** -11)), 1 + 2 * 2 ** -10); // tie -> even, upwards
  assert.equal(fromHalf(toHalf(3 * 2 ** -26)), 2 ** -24); // subnormal rounding
  assert.equal(fromHalf(toHalf(1e6)), Infinity);
  assert.equal(toHalf(-0), 0x8000);
});

test('Q4_0: block layout (scale, low nibbles = first 16, high nibbles = last 16) and round trip within a step', () => {
  const x = Float32Array.from({ length: 32 }, (_, i) => i - 16); // largest magnitude is -16: d = 2
  const q = quantizeGgml('Q4_0', x);
  assert.equal(q.length, 18);
  assert.equal(fromHalf(q[0]! | (q[1]! << 8)), 2);
  // x = d (q - 8): -16 -> q 0 (low nibble of byte 0), 0 -> q 8 (high nibble of byte 0)
  assert.equal(q[2]! & 15, 0);
  assert.equal(q[2]! >> 4, 8);
  assert.equal(q[17]! >> 4, 15); // 15 -> 7.5 + 8 rounds to 15 (clamped range)

  const r = lcg(9);
  const n = 32 * 200;
  const data = Float32Array.from({ length: n }, (_, i) => (i < 32 ? 0 : (r() - 0.5) * (1 + (i % 7))));
  const back = dequantizeGgml('Q4_0', quantizeGgml('Q4_0', data));
  for (let b = 0; b < n / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(data[b * 32 + j]!));
    const step = amax / 8;
    for (let j = 0; j < 32; j++) {
      const i = b * 32 + j;
      assert.ok(Math.abs(back[i]! - data[i]!) <= step * 1.01 + 1e-12, `block ${b} value ${j}: ${data[i]} -> ${back[i]}, step ${step}`);
    }
  }
  assert.ok(back.subarray(0, 32).every((v) => v === 0)); // an all-zero block (d = 0) stays zero
});

test('GGUF of the tiny LLM: header, llama metadata, vocabulary, tensor table, F16 data, q/k row order', () => {
  const path = join(tmp, 'tiny.gguf');
  writeGgufFromHf(join(TINY, 'llm'), path);
  const h = readGgufHeader(path);
  const cfg = JSON.parse(readFileSync(join(TINY, 'llm', 'config.json'), 'utf8')) as Record<string, number>;
  assert.equal(h.version, 3);
  assert.equal(h.metadata.get('general.architecture'), 'llama');
  assert.equal(h.metadata.get('general.alignment'), 32);
  assert.equal(h.metadata.get('llama.embedding_length'), cfg.hidden_size);
  assert.equal(h.metadata.get('llama.block_count'), cfg.num_hidden_layers);
  assert.equal(h.metadata.get('llama.feed_forward_length'), cfg.intermediate_size);
  assert.equal(h.metadata.get('llama.attention.head_count'), cfg.num_attention_heads);
  assert.equal(h.metadata.get('llama.attention.head_count_kv'), cfg.num_key_value_heads);
  assert.equal(h.metadata.get('llama.rope.dimension_count'), cfg.head_dim);
  assert.ok(Math.abs((h.metadata.get('llama.attention.layer_norm_rms_epsilon') as number) - 1e-5) < 1e-10);
  const tokens = h.metadata.get('tokenizer.ggml.tokens') as string[];
  assert.equal(tokens.length, cfg.vocab_size);
  assert.deepEqual(tokens.slice(0, 4), ['<unk>', '<s>', '</s>', '<0x00>']);
  assert.equal((h.metadata.get('tokenizer.ggml.token_type') as number[])[3], 6); // byte token

  const store = openWeights(join(TINY, 'llm'));
  const names = h.tensors.map((t) => t.name);
  assert.equal(names.length, store.keys().length);
  for (const n of ['token_embd.weight', 'output_norm.weight', 'output.weight', 'blk.1.attn_q.weight', 'blk.1.ffn_down.weight']) assert.ok(names.includes(n), n);
  const size = statSync(path).size;
  for (const t of h.tensors) {
    assert.equal(t.offset % 32, 0, `${t.name} aligned`);
    // Rows of 16 or 48 values are no whole Q4_0 blocks: F16 matrices, F32 norms.
    assert.equal(t.type, t.shape.length === 1 ? GGML_TYPE.F32 : GGML_TYPE.F16, t.name);
    assert.ok(t.offset + t.shape.reduce((a, b) => a * b, 1) * (t.type === GGML_TYPE.F32 ? 4 : 2) <= size);
  }
  const tensor = (name: string) => {
    const t = h.tensors.find((x) => x.name === name)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    const bytes = new Uint8Array(readFileSync(path).subarray(t.offset, t.offset + 2 * n));
    return { t, x: f16ToF32(bytes) };
  };
  const close = (a: Float32Array, b: Float32Array) => a.every((v, i) => Math.abs(v - b[i]!) <= 1e-3 * Math.abs(b[i]!) + 1e-6);
  const down = tensor('blk.0.ffn_down.weight');
  const hfDown = store.get('model.layers.0.mlp.down_proj.weight')!;
  assert.deepEqual(down.t.shape, [...hfDown.shape]);
  assert.ok(close(down.x, readF32(hfDown)));
  // llama.cpp's rotary pairs adjacent dims: row r of a head comes from row (r % 2) * half + r / 2.
  const q = tensor('blk.0.attn_q.weight').x;
  const hfQ = readF32(store.get('model.layers.0.self_attn.q_proj.weight')!);
  const [H, hd] = [cfg.hidden_size!, cfg.head_dim!];
  for (let r = 0; r < hd; r++) {
    const src = (r % 2) * (hd / 2) + (r >> 1);
    assert.ok(close(q.subarray(r * H, (r + 1) * H), hfQ.subarray(src * H, (src + 1) * H)), `q row ${r}`);
  }
});

test('GGUF in Q4_0 from a random LLM folder: matrices decode back to the bf16 weights within a step; Phi-3 fused tensors', () => {
  for (const arch of ['llama', 'phi3'] as const) {
    const dir = join(tmp, `rand-${arch}`);
    writeRandomLlm(dir, { arch, hidden: 64, layers: 1, heads: 2, kvHeads: 2, intermediate: 96, vocab: 32064, maxPositions: 256 }, join(TINY, 'llm'));
    const path = join(tmp, `rand-${arch}.gguf`);
    writeGgufFromHf(dir, path);
    const h = readGgufHeader(path);
    const store = openWeights(dir);
    const file = readFileSync(path);
    const up = h.tensors.find((t) => t.name === 'blk.0.ffn_up.weight')!;
    assert.equal(up.type, GGML_TYPE.Q4_0);
    const hfUp = store.get(arch === 'llama' ? 'model.layers.0.mlp.up_proj.weight' : 'model.layers.0.mlp.gate_up_proj.weight')!;
    assert.deepEqual(up.shape, [...hfUp.shape]);
    const n = up.shape[0]! * up.shape[1]!;
    const back = dequantizeGgml('Q4_0', new Uint8Array(file.subarray(up.offset, up.offset + (n / 32) * 18)));
    const orig = readF32(hfUp);
    const step = 1 / Math.sqrt(64) / 8; // |w| < 1/sqrt(fan-in)
    assert.ok(orig.every((v, i) => Math.abs(v - back[i]!) <= step * 1.01));
    if (arch === 'phi3') {
      assert.ok(h.tensors.some((t) => t.name === 'blk.0.attn_qkv.weight'));
      assert.equal((h.metadata.get('tokenizer.ggml.tokens') as string[])[32007], '<|end|>');
    }
    assert.equal(readBytes(store.get('model.norm.weight')!).length, 128); // bf16 [64]
  }
});

test('GGUF in llama.cpp\'s Q4_K_M from a random LLM folder: its per-tensor types, and blocks that decode back to the weights', () => {
  // (that llama.cpp itself reads these blocks as written was checked with node-llama-cpp's
  // probabilities: docs/BENCHMARKS.md, "Answer quality per weight format")
  const dir = join(tmp, 'rand-kquant');
  writeRandomLlm(dir, { arch: 'llama', hidden: 256, layers: 4, heads: 4, kvHeads: 4, intermediate: 768, vocab: 32064, maxPositions: 256 }, join(TINY, 'llm'));
  const path = join(tmp, 'rand-q4_k_m.gguf');
  writeGgufFromHf(dir, path, { ftype: 'Q4_K_M' });
  const h = readGgufHeader(path);
  const type = (name: string) => h.tensors.find((t) => t.name === name)!.type;
  assert.equal(h.metadata.get('general.file_type'), 15);
  // 4 layers: use_more_bits picks layers 2 and 3 for v and down
  assert.deepEqual([0, 1, 2, 3].map((i) => type(`blk.${i}.attn_v.weight`)), [GGML_TYPE.Q4_K, GGML_TYPE.Q4_K, GGML_TYPE.Q6_K, GGML_TYPE.Q6_K]);
  assert.deepEqual([0, 1, 2, 3].map((i) => type(`blk.${i}.ffn_down.weight`)), [GGML_TYPE.Q4_K, GGML_TYPE.Q4_K, GGML_TYPE.Q6_K, GGML_TYPE.Q6_K]);
  assert.equal(type('blk.0.attn_q.weight'), GGML_TYPE.Q4_K);
  assert.equal(type('output.weight'), GGML_TYPE.Q6_K);
  assert.equal(type('token_embd.weight'), GGML_TYPE.Q4_K);
  assert.equal(type('output_norm.weight'), GGML_TYPE.F32);
  // tied embeddings: the token embedding is the head too, and gets its type
  assert.equal(ggufTensorType('model.embed_tokens.weight', [32064, 256], 4, { ftype: 'Q4_K_M' }, true), 'Q6_K');
  assert.equal(ggufTensorType('model.embed_tokens.weight', [32064, 256], 4, { ftype: 'Q4_K_M' }), 'Q4_K');
  assert.equal(ggufTensorType('model.embed_tokens.weight', [32064, 256], 4, { ftype: 'Q4_0', pure: true }, true), 'Q4_0');
  const file = readFileSync(path);
  const store = openWeights(dir);
  for (const [name, hf, t] of [['blk.3.ffn_down.weight', 'model.layers.3.mlp.down_proj.weight', 'Q6_K'], ['blk.0.ffn_up.weight', 'model.layers.0.mlp.up_proj.weight', 'Q4_K']] as const) {
    const info = h.tensors.find((x) => x.name === name)!;
    const orig = readF32(store.get(hf)!);
    const bytes = (orig.length / 256) * (t === 'Q6_K' ? 210 : 144);
    const back = dequantizeGgml(t, new Uint8Array(file.subarray(info.offset, info.offset + bytes)));
    let e = 0;
    let w = 0;
    for (let i = 0; i < orig.length; i++) {
      e += (orig[i]! - back[i]!) ** 2;
      w += orig[i]! ** 2;
    }
    assert.ok(Math.sqrt(e / w) < (t === 'Q6_K' ? 0.03 : 0.1), `${name}: relative RMS ${Math.sqrt(e / w)}`);
  }
});

test('bench inputs: 100 boxes inside the image with a degenerate one; a 666-token prompt', () => {
  const b = benchBoxes(100);
  assert.equal(b.length, 400);
  assert.ok(b.every((v) => v >= 0 && v <= 768));
  assert.equal(b[4], b[6]); // box 1 has zero size
  const w = PRESETS.full.workload;
  const p = promptLayout(w, 32000);
  assert.equal(p.before.length + p.imageTokens + p.boxTokens + p.after.length, 666);
  assert.equal(p.before[0], 1);
  assert.equal(promptIds(p, 32000).length, 666);
});

test('a tiny-preset run without peers reports every ratio, nulls for the peers, and writes only its docs block', async () => {
  const logs: string[] = [];
  const rep = await runBench({
    preset: 'tiny', threads: 1, cache: join(tmp, 'cache'), peers: false, python: '/nonexistent/python3',
    command: 'test', bandwidthBytes: 2 ** 24, log: (m) => logs.push(m),
  });
  const m = rep.models.tiny!;
  for (const k of ['vision_time_vs_torch', 'object_features_speedup_vs_materialised', 'decode_vs_llamacpp', 'prefill_vs_llamacpp', 'decode_vs_ceiling', 'peak_rss_vs_weights']) {
    assert.ok(k in m.ratios, k);
  }
  for (const k of ['vision_time_vs_torch', 'encoder_time_vs_torch', 'object_features_speedup_vs_materialised', 'decode_vs_llamacpp', 'prefill_vs_llamacpp', 'ttft_vs_llamacpp', 'load_vs_llamacpp', 'llamacpp_decode_vs_ceiling'] as const) {
    assert.equal(m.ratios[k], null, k);
  }
  assert.ok('skipped' in m.torch && 'skipped' in m.llamacpp.flash_off && 'skipped' in m.llamacpp.flash_on);
  assert.ok(!('skipped' in m.ours.vision) && !('skipped' in m.ours.llm), JSON.stringify(m.ours));
  assert.ok(typeof m.ratios.decode_vs_ceiling === 'number' && m.ratios.decode_vs_ceiling > 0);
  assert.ok(typeof m.ratios.peak_rss_vs_weights === 'number' && m.ratios.peak_rss_vs_weights > 0);
  // answer quality without peers: our format against the float model, no Q4_0 to compare with
  const q = m.quality as { format: string; stack: string; drift: { meanKl: number; top1Agreement: number } }[];
  assert.deepEqual(q.map((x) => [x.format, x.stack]), [['q4-b128-zp-h8', 'ours']]);
  assert.ok(q[0]!.drift.meanKl > 0 && q[0]!.drift.top1Agreement > 0, JSON.stringify(q));
  assert.equal(m.ratios.kl_vs_q4_0, null);
  // a new image's first token: our vision side plus our LLM's time to the first token
  const v = m.ours.vision as { encode_s: number; objects_s: number };
  assert.equal(m.ratios.ttft_new_image_s, v.encode_s + v.objects_s + (m.ours.llm as LlmTimes).ttft_s);
  assert.equal(m.ours.llm.decode_tokens, PRESETS.tiny.workload.decodeTokens);
  // Two rounds: both runs kept, and the reported one is their best per measure.
  const runs = m.ours.llm_runs!.filter((r): r is LlmTimes => !('skipped' in r));
  assert.equal(runs.length, PRESETS.tiny.workload.llmRounds);
  assert.equal(m.ours.llm.decode_tps, Math.max(...runs.map((r) => r.decode_tps)));
  assert.equal(m.ours.llm.prefill_s, Math.min(...runs.map((r) => r.prefill_s)));
  assert.equal(m.ours.llm.peak_rss_bytes, Math.max(...runs.map((r) => r.peak_rss_bytes)));
  assert.ok(JSON.parse(JSON.stringify(rep)).models.tiny.ratios.decode_vs_llamacpp === null);

  // bestOf: per measure across runs; failed runs left out; all failed gives the first failure.
  const run = (decode_tps: number, load_s: number) => ({ ...runs[0]!, decode_tps, load_s });
  const b = bestOf([run(5, 9), { skipped: 'crashed' }, run(7, 11)]) as LlmTimes;
  assert.deepEqual([b.decode_tps, b.load_s], [7, 9]);
  assert.deepEqual(bestOf([{ skipped: 'a' }, { skipped: 'b' }]), { skipped: 'a' });

  // A peer skipped in one model is null there, whatever the other measurements say.
  const { ratios: _, ...rest } = m;
  assert.equal(ratios({ ...rest, torch: { skipped: 'x' } }).object_features_speedup_vs_materialised, null);

  const docs = join(tmp, 'BENCHMARKS.md');
  writeFileSync(docs, '# Benchmarks\n\nintro\n\n<!-- bench:full -->\nfull numbers\n<!-- /bench:full -->\n');
  writeDocs(docs, rep);
  writeDocs(docs, rep);
  const text = readFileSync(docs, 'utf8');
  assert.ok(text.includes('intro') && text.includes('full numbers'));
  assert.equal(text.split('<!-- bench:tiny -->').length, 2);
  assert.ok(text.includes('| decode_vs_llamacpp | - |'));
});
