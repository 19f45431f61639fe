// `mgllava pull --preset`: a released MG-LLaVA assembled from several repositories of a Hub
// stand-in on 127.0.0.1 (one HubStandIn per repository behind a small router), quantized, then
// chatting; a preset whose checkpoint file the release repository lacks is one line.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TINY } from '../helpers/fixtures.js';
import { CLI } from '../helpers/cli.js';
import { HubStandIn } from './stand-in.js';
import { CLIP, CONVNEXT, OWLV2 } from '../../src/hub/presets.js';

let dir: string;
let router: Server;
let endpoint: string;
const hubs: HubStandIn[] = [];

/** Routes /api/models/ORG/NAME/... and /ORG/NAME/resolve/... to that repository's stand-in. */
function startRouter(): Promise<string> {
  router = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    const m = /^\/api\/models\/([^/]+\/[^/]+)\//.exec(path) ?? /^\/([^/]+\/[^/]+)\/resolve\//.exec(path);
    const hub = m && hubs.find((h) => h.repoId === m[1]);
    if (!hub) return void res.writeHead(404, { 'X-Error-Code': 'RepoNotFound' }).end();
    const target = new URL(req.url!, hub.endpoint);
    const fwd = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  return new Promise((r) => router.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(router.address() as AddressInfo).port}`)));
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mgllava-preset-'));
  const repo = (id: string, fill: (d: string) => void) => {
    const d = join(dir, 'repos', id.replace('/', '--'));
    mkdirSync(d, { recursive: true });
    fill(d);
    hubs.push(new HubStandIn(d, { repoId: id }));
  };
  // The release repository: one variant's checkpoint (as a safetensors file in its folder).
  repo('PhoenixZ/MG-LLaVA', (d) => {
    mkdirSync(join(d, 'MG-LLaVA-Vicuna-7B'));
    cpSync(join(TINY, 'mgllava', 'model.safetensors'), join(d, 'MG-LLaVA-Vicuna-7B', 'model.safetensors'));
    cpSync(join(TINY, 'mgllava', 'mgllava_config.json'), join(d, 'README.md'));
  });
  repo('lmsys/vicuna-7b-v1.5', (d) => cpSync(join(TINY, 'llm'), d, { recursive: true }));
  repo(CLIP.repo, (d) => cpSync(join(TINY, 'clip'), d, { recursive: true }));
  repo(CONVNEXT.repo, (d) => cpSync(join(TINY, 'convnext'), d, { recursive: true }));
  repo(OWLV2.repo, (d) => cpSync(join(TINY, 'owlv2'), d, { recursive: true }));
  for (const h of hubs) await h.start();
  endpoint = await startRouter();
});

after(async () => {
  for (const h of hubs) await h.close();
  router.closeAllConnections();
  await new Promise((r) => router.close(r));
  rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, HF_ENDPOINT: endpoint, HF_HUB_CACHE: join(dir, 'cache'), HF_TOKEN: '', ...env }, maxBuffer: 1 << 24 }, (e, stdout, stderr) => {
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('pull --preset: checkpoint, LLM, CLIP, ConvNeXt and OWLv2 into the cache, an 8-bit LLM, a model folder that chats', async () => {
  const out = join(dir, 'mg-llava-vicuna-7b');
  const r = await cli(['pull', '--preset', 'mg-llava-vicuna-7b', '--out', out, '--quantize', '8']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n').pop(), out);
  const cfg = JSON.parse(readFileSync(join(out, 'mgllava_config.json'), 'utf8')) as Record<string, unknown>;
  assert.match(cfg.checkpoint as string, /models--PhoenixZ--MG-LLaVA\/snapshots\/[0-9a-f]{40}\/MG-LLaVA-Vicuna-7B\/model\.safetensors$/);
  assert.match(cfg.visual_encoder as string, /models--openai--clip-vit-large-patch14-336\/snapshots\//);
  assert.equal(cfg.llm, join(out, 'llm-q8'));
  assert.equal(cfg.prompt_template, 'vicuna');
  assert.ok(existsSync(join(out, 'llm-q8', 'config.json')));
  // Only what the preset needs: the release repo's README stays on the Hub.
  assert.equal(existsSync(join(dir, 'cache', 'models--PhoenixZ--MG-LLaVA', 'snapshots', hubs[0]!.commit, 'README.md')), false);
  const c = await cli(['chat', '--model', out, '--image', join(TINY, 'example.jpg'), '--boxes', join(TINY, 'boxes_raw.json'),
    '--max-new-tokens', '4', '--temperature', '0', '--quiet', 'What is shown in this image?']);
  assert.equal(c.code, 0, c.stderr);
  // Again: everything is cached, nothing is transferred.
  const before = hubs.reduce((s, h) => s + h.count((q) => q.method === 'GET' && q.path.includes('/resolve/')), 0);
  const again = await cli(['pull', '--preset', 'mg-llava-vicuna-7b', '--out', join(dir, 'again'), '--quiet']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(hubs.reduce((s, h) => s + h.count((q) => q.method === 'GET' && q.path.includes('/resolve/')), 0), before);
  // Offline, from the cache alone.
  const off = await cli(['pull', '--preset', 'mg-llava-vicuna-7b', '--out', join(dir, 'offline'), '--quiet'], { HF_HUB_OFFLINE: '1' });
  assert.equal(off.code, 0, off.stderr);
});

test('pull --preset: a variant the release repository lacks, an unknown preset, missing --out: one line each', async () => {
  const one = (r: { code: number; stderr: string }, re: RegExp) => {
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('mgllava: '));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, re);
  };
  one(await cli(['pull', '--preset', 'mg-llava-phi3', '--out', join(dir, 'phi3'), '--quiet']), /preset mg-llava-phi3: no files in PhoenixZ\/MG-LLaVA match/);
  assert.equal(existsSync(join(dir, 'phi3')), false);
  one(await cli(['pull', '--preset', 'nope', '--out', join(dir, 'x')]), /unknown preset "nope"/);
  one(await cli(['pull', '--preset', 'mg-llava-vicuna-7b']), /--preset needs --out/);
});
