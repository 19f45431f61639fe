// `pull` against a Hub stand-in on 127.0.0.1 (test/hub/stand-in.ts): the cache layout shared
// with huggingface_hub, no second transfer, resumed transfers, checksums, errors, offline mode.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { InputError } from '../../src/core/errors.js';
import { HubClient, pull, PullOptions, PullProgress } from '../../src/hub/client.js';
import { RepoCache, hubCacheDir, isOffline, readToken, repoFolderName, tokenPath } from '../../src/hub/cache.js';
import { globFilter, matchGlob } from '../../src/hub/glob.js';
import { TINY } from '../helpers/fixtures.js';
import { CLI, CliResult, assertOneLineError } from '../helpers/cli.js';
import { HubStandIn } from './stand-in.js';

const work = mkdtempSync(join(tmpdir(), 'mgllava-hub-test-'));
const repoDir = join(work, 'repo');
cpSync(join(TINY, 'llm'), repoDir, { recursive: true });
mkdirSync(join(repoDir, 'docs'));
writeFileSync(join(repoDir, 'docs', 'notes.txt'), 'a small file in a folder\n');
writeFileSync(join(repoDir, 'README.md'), '# tiny llm\n');

let hub: HubStandIn;
let caseNo = 0;
let cacheDir = '';
let home = '';

/** A fresh cache and HF_HOME for each test; the library reads no variable of the real environment. */
function opts(extra: Partial<PullOptions> = {}): PullOptions {
  return { repoId: hub.repoId, cacheDir, endpoint: hub.endpoint, env: { HF_HOME: home }, backoffMs: 1, ...extra };
}

async function rejectsInput(p: Promise<unknown>, re: RegExp): Promise<InputError> {
  let err: unknown;
  await assert.rejects(p, (e: unknown) => {
    err = e;
    assert.ok(e instanceof InputError, `expected InputError, got ${(e as Error)?.stack ?? String(e)}`);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, re);
    return true;
  });
  return err as InputError;
}

function repoCache(): RepoCache {
  return new RepoCache(cacheDir, hub.repoId);
}

function assertSnapshotMatches(path: string, files: string[]): void {
  for (const f of files) assert.deepEqual(readFileSync(join(path, f)), hub.files.get(f)!.data, f);
}

before(async () => {
  hub = await new HubStandIn(repoDir).start();
});

after(async () => {
  await hub.close();
  rmSync(work, { recursive: true, force: true });
});

beforeEach(() => {
  caseNo++;
  cacheDir = join(work, `cache${caseNo}`);
  home = join(work, `home${caseNo}`);
  mkdirSync(home, { recursive: true });
  hub.log.length = 0;
  hub.token = undefined;
  hub.honourRange = true;
  hub.cutOnce.clear();
  hub.corrupt.clear();
  hub.fail503.clear();
});

describe('file patterns', () => {
  test('as huggingface_hub allow_patterns (fnmatch on the whole path)', () => {
    assert.ok(matchGlob('config.json', '*.json'));
    assert.ok(matchGlob('sub/config.json', '*.json')); // `*` crosses `/`, as in fnmatch
    assert.ok(matchGlob('sub/deep/config.json', '**/*.json'));
    assert.ok(!matchGlob('config.json', '**/*.json'));
    assert.ok(matchGlob('model-00001-of-00002.safetensors', 'model-?????-of-?????.safetensors'));
    assert.ok(!matchGlob('model-0001-of-00002.safetensors', 'model-?????-of-?????.safetensors'));
    assert.ok(matchGlob('docs/a/b.txt', 'docs/'));
    assert.ok(matchGlob('a1', 'a[0-9]') && !matchGlob('ax', 'a[0-9]') && matchGlob('ax', 'a[!0-9]'));
    assert.ok(matchGlob('a.b+c(d)', 'a.b+c(d)') && !matchGlob('aXb', 'a.b'));
    assert.ok(!matchGlob('Config.json', 'config.json'));
    assert.ok(matchGlob('[x', '[x'));
    const f = globFilter(['*.json', 'tokenizer*']);
    assert.deepEqual(['a.json', 'tokenizer.model', 'model.bin'].filter(f), ['a.json', 'tokenizer.model']);
    assert.ok(globFilter(undefined)('anything') && globFilter([])('x'));
  });
});

describe('cache layout and environment', () => {
  test('folders, token and offline switch as huggingface_hub reads them', () => {
    assert.equal(repoFolderName('org/name'), 'models--org--name');
    assert.equal(hubCacheDir({ HF_HUB_CACHE: '/c' }), '/c');
    assert.equal(hubCacheDir({ HF_HOME: '/h' }), join('/h', 'hub'));
    assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/x' }), join('/x', 'huggingface', 'hub'));
    assert.match(hubCacheDir({}), /\.cache[/\\]huggingface[/\\]hub$/);
    assert.equal(tokenPath({ HF_HOME: '/h' }), join('/h', 'token'));
    assert.ok(isOffline({ HF_HUB_OFFLINE: '1' }) && isOffline({ HF_HUB_OFFLINE: 'true' }) && isOffline({ TRANSFORMERS_OFFLINE: 'YES' }));
    assert.ok(!isOffline({ HF_HUB_OFFLINE: '0' }) && !isOffline({}));
    writeFileSync(join(home, 'token'), 'hf_file_token\n');
    assert.equal(readToken({ HF_HOME: home }), 'hf_file_token');
    assert.equal(readToken({ HF_HOME: home, HF_TOKEN: 'hf_env' }), 'hf_env');
    assert.equal(readToken({ HF_HOME: join(home, 'none') }), undefined);
    assert.throws(() => new RepoCache(cacheDir, '../evil'), InputError);
    assert.throws(() => repoCache().pointerPath('0'.repeat(40), '../x'), InputError);
  });
});

describe('pull', () => {
  test('downloads every file into blobs/ and links it from snapshots/<commit>', async () => {
    const seen: PullProgress[] = [];
    const r = await pull(opts({ onProgress: (p) => seen.push({ ...p }) }));
    assert.equal(r.commit, hub.commit);
    assert.equal(r.path, join(cacheDir, 'models--org--tiny-llm', 'snapshots', hub.commit));
    assert.deepEqual(r.files, [...hub.files.keys()].sort());
    assert.equal(r.downloaded, hub.files.size);
    assertSnapshotMatches(r.path, r.files);
    const root = join(cacheDir, 'models--org--tiny-llm');
    assert.equal(readFileSync(join(root, 'refs', 'main'), 'utf8'), hub.commit);
    for (const f of hub.files.values()) {
      const etag = f.lfs ? f.sha256 : f.gitOid;
      assert.ok(lstatSync(join(r.path, f.path)).isSymbolicLink());
      const depth = f.path.split('/').length + 1;
      assert.equal(readlinkSync(join(r.path, f.path)), join(...Array<string>(depth).fill('..'), 'blobs', etag));
    }
    assert.ok(hub.files.get('model.safetensors')!.lfs && !hub.files.get('config.json')!.lfs);
    assert.ok(!readdirSync(join(root, 'blobs')).some((n) => n.endsWith('.incomplete')));
    // LFS bytes came from the CDN stand-in, after a HEAD on the Hub.
    assert.equal(hub.count((q) => q.server === 'cdn' && q.method === 'GET'), [...hub.files.values()].filter((f) => f.lfs).length);
    assert.equal(hub.count((q) => q.method === 'HEAD'), hub.files.size);
    const last = seen.at(-1)!;
    assert.equal(last.done, last.total);
    assert.equal(last.total, [...hub.files.values()].reduce((s, f) => s + f.data.length, 0));
  });

  test('a second pull transfers nothing (one file-list request only)', async () => {
    await pull(opts());
    hub.log.length = 0;
    const statuses: string[] = [];
    const r = await pull(opts({ onFile: (_f, s) => statuses.push(s) }));
    assert.equal(r.downloaded, 0);
    assert.deepEqual(hub.log.map((q) => `${q.method} ${q.path.replace(/\?.*/, '')}`), [`GET /api/models/${hub.repoId}/revision/main`]);
    assert.ok(statuses.every((s) => s === 'cached') && statuses.length === hub.files.size);
  });

  test('--include selects files by pattern', async () => {
    const r = await pull(opts({ include: ['*.json'] }));
    assert.deepEqual(r.files, ['config.json', 'tokenizer.json', 'tokenizer_config.json']);
    assert.deepEqual(repoCache().snapshotFiles(hub.commit), r.files);
    await rejectsInput(pull(opts({ include: ['*.gguf'] })), /no file matching "\*\.gguf"/);
  });

  test('a transfer cut in the middle is resumed with a Range request', async () => {
    hub.cutOnce.add('model.safetensors');
    const r = await pull(opts({ include: ['model.safetensors'] }));
    assertSnapshotMatches(r.path, ['model.safetensors']);
    const gets = hub.log.filter((q) => q.server === 'cdn' && q.method === 'GET');
    assert.equal(gets.length, 2);
    assert.equal(gets[0]!.headers.range, undefined);
    const size = hub.files.get('model.safetensors')!.data.length;
    assert.match(String(gets[1]!.headers.range), /^bytes=(\d+)-$/);
    const from = Number(/^bytes=(\d+)-$/.exec(String(gets[1]!.headers.range))![1]);
    assert.ok(from > 0 && from < size, `resumed from ${from}`);
  });

  test('a broken pull leaves blobs/<etag>.incomplete and nothing in the snapshot; the next resumes it', async () => {
    hub.cutOnce.add('tokenizer.json');
    await rejectsInput(pull(opts({ include: ['tokenizer.json'], retries: 0 })), /download of "tokenizer\.json".*pull again to resume/);
    const f = hub.files.get('tokenizer.json')!;
    const c = repoCache();
    assert.ok(existsSync(c.incompletePath(f.sha256)));
    assert.ok(!existsSync(c.pointerPath(hub.commit, 'tokenizer.json')));
    hub.log.length = 0;
    const r = await pull(opts({ include: ['tokenizer.json'] }));
    assertSnapshotMatches(r.path, ['tokenizer.json']);
    const get = hub.log.find((q) => q.server === 'cdn' && q.method === 'GET')!;
    assert.match(String(get.headers.range), /^bytes=[1-9]\d*-$/);
    assert.ok(!existsSync(c.incompletePath(f.sha256)));
  });

  test('a server that ignores Range: the file starts over and is still right', async () => {
    hub.cutOnce.add('model.safetensors');
    hub.honourRange = false;
    const r = await pull(opts({ include: ['model.safetensors'] }));
    assertSnapshotMatches(r.path, ['model.safetensors']);
  });

  test('corrupted bytes: a checksum error, nothing in the snapshot or blobs', async () => {
    for (const file of ['model.safetensors', 'config.json']) {
      hub.corrupt.add(file);
      const e = await rejectsInput(pull(opts({ include: [file] })), new RegExp(`"${file.replace('.', '\\.')}" .*arrived corrupted \\((sha256|git blob id) `));
      assert.equal(e.subject, file);
      const c = repoCache();
      assert.ok(!existsSync(c.pointerPath(hub.commit, file)));
      const blobs = existsSync(join(c.root, 'blobs')) ? readdirSync(join(c.root, 'blobs')) : [];
      assert.deepEqual(blobs, []);
      hub.corrupt.clear();
    }
  });

  test('5xx answers are retried', async () => {
    hub.fail503.set('api', 2);
    hub.fail503.set('config.json', 1);
    const r = await pull(opts({ include: ['config.json'] }));
    assertSnapshotMatches(r.path, ['config.json']);
    hub.fail503.set('api', 10);
    await rejectsInput(pull(opts({ retries: 2, cacheDir: join(work, `empty${caseNo}`) })), /answered HTTP 503, 3 tries/);
  });

  test('a gated repository: 401 says to accept the license and set HF_TOKEN; the token opens it', async () => {
    hub.token = 'hf_secret';
    await rejectsInput(pull(opts()), /gated or private \(HTTP 401\): accept its license on http:\/\/127\.0\.0\.1:\d+\/org\/tiny-llm .*HF_TOKEN/);
    await rejectsInput(pull(opts({ token: 'hf_wrong' })), /gated.*token sent .* was not accepted/);
    writeFileSync(join(home, 'token'), 'hf_secret\n'); // the token file, as `hf auth login` writes it
    hub.log.length = 0;
    const r = await pull(opts({ include: ['model.safetensors', 'config.json'] }));
    assertSnapshotMatches(r.path, r.files);
    for (const q of hub.log.filter((x) => x.server === 'hub')) assert.equal(q.headers.authorization, 'Bearer hf_secret');
    // The CDN host gets no token (its address is signed), as huggingface_hub does.
    const cdn = hub.log.filter((x) => x.server === 'cdn');
    assert.ok(cdn.length > 0 && cdn.every((q) => q.headers.authorization === undefined));
  });

  test('404s say which of repository, revision and file is missing', async () => {
    await rejectsInput(pull(opts({ repoId: 'org/missing' })), /repository "org\/missing" not found on http:\/\/127\.0\.0\.1:\d+ \(if it is private or gated, set HF_TOKEN\)/);
    await rejectsInput(pull(opts({ revision: 'v9' })), /revision "v9" not found in repository "org\/tiny-llm"/);
    const client = new HubClient({ endpoint: hub.endpoint, env: {} });
    await rejectsInput(client.fileMetadata(hub.repoId, 'main', 'nope.bin'), /file "nope\.bin" not found in repository "org\/tiny-llm" at revision "main"/);
    const meta = await client.fileMetadata(hub.repoId, 'main', 'config.json');
    assert.equal(meta.etag, hub.files.get('config.json')!.gitOid); // W/"..." normalised
    assert.equal(meta.commit, hub.commit);
  });

  test('the Hub unreachable: a cached snapshot is used, else one clear line', async () => {
    const dead = 'http://127.0.0.1:9'; // discard port: nothing listens
    await rejectsInput(pull(opts({ endpoint: dead, retries: 1 })), /the Hub at http:\/\/127\.0\.0\.1:9 could not be reached .*2 tries.*HF_HUB_OFFLINE=1/);
    await pull(opts({ include: ['config.json'] }));
    const notes: string[] = [];
    const r = await pull(opts({ endpoint: dead, retries: 0, onNote: (m) => notes.push(m) }));
    assert.ok(r.offline && r.commit === hub.commit);
    assert.deepEqual(r.files, ['config.json']);
    assert.match(notes[0]!, /could not be reached; using the cached snapshot/);
  });

  test('HF_HUB_OFFLINE=1 resolves from the cache alone, and fails clearly when missing', async () => {
    const env = { HF_HOME: home, HF_HUB_OFFLINE: '1' };
    await rejectsInput(pull(opts({ env })), /"org\/tiny-llm" \(revision "main"\) is not in the cache at .*, and HF_HUB_OFFLINE=1 forbids fetching it/);
    assert.equal(hub.log.length, 0);
    await pull(opts());
    hub.log.length = 0;
    const r = await pull(opts({ env }));
    assert.equal(hub.log.length, 0);
    assert.ok(r.offline);
    assert.equal(r.commit, hub.commit);
    assert.deepEqual(r.files, [...hub.files.keys()].sort());
    assert.deepEqual((await pull(opts({ env, revision: hub.commit, include: ['docs/*'] }))).files, ['docs/notes.txt']);
    await rejectsInput(pull(opts({ env, include: ['*.gguf'] })), /has no file matching "\*\.gguf"/);
    await rejectsInput(pull(opts({ env, revision: 'dev' })), /revision "dev"\) is not in the cache/);
  });

  test('a snapshot that Python\'s huggingface_hub already fetched is used without fetching', async () => {
    // The layout huggingface_hub writes: blobs named by etag, relative links, refs/main.
    const root = join(cacheDir, 'models--org--tiny-llm');
    mkdirSync(join(root, 'blobs'), { recursive: true });
    mkdirSync(join(root, 'refs'), { recursive: true });
    writeFileSync(join(root, 'refs', 'main'), hub.commit);
    for (const f of hub.files.values()) {
      const etag = f.lfs ? f.sha256 : f.gitOid;
      writeFileSync(join(root, 'blobs', etag), f.data);
      const p = join(root, 'snapshots', hub.commit, ...f.path.split('/'));
      mkdirSync(join(p, '..'), { recursive: true });
      symlinkSync(join(...Array<string>(f.path.split('/').length + 1).fill('..'), 'blobs', etag), p);
    }
    const r = await pull(opts());
    assert.equal(r.downloaded, 0);
    assert.equal(hub.count((q) => q.method === 'HEAD' || q.server === 'cdn'), 0);
    assertSnapshotMatches(r.path, r.files);
    // Blobs there but this commit's links not (another commit shared them): HEADs, no transfer.
    rmSync(join(root, 'snapshots'), { recursive: true });
    hub.log.length = 0;
    const statuses: string[] = [];
    const r2 = await pull(opts({ onFile: (_f, s) => statuses.push(s) }));
    assert.equal(r2.downloaded, 0);
    assert.equal(hub.count((q) => q.method === 'GET' && q.path.includes('/resolve/')), 0);
    assert.equal(hub.count((q) => q.server === 'cdn'), 0);
    assert.ok(statuses.every((s) => s === 'linked'));
    assertSnapshotMatches(r2.path, r2.files);
  });
});

/** The built CLI with its own environment (the stand-in's address, a test cache, no real token). */
function pullCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'pull', ...args], { env: { ...process.env, HF_TOKEN: '', HF_HUB_OFFLINE: '', ...env }, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('mgllava pull', () => {
  test('prints the snapshot folder last; --json; errors as one line', async () => {
    const env = { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: cacheDir, HF_HOME: home };
    const r = await pullCli([hub.repoId, '--include', '*.json', 'README.md'], env);
    assert.equal(r.code, 0, r.stderr);
    const path = join(cacheDir, 'models--org--tiny-llm', 'snapshots', hub.commit);
    assert.equal(r.stdout.trimEnd().split('\n').at(-1), path);
    assert.match(r.stderr, /tokenizer\.json/);
    assertSnapshotMatches(path, ['README.md', 'config.json', 'tokenizer.json', 'tokenizer_config.json']);

    const other = join(work, `cli-cache${caseNo}`);
    const j = await pullCli([hub.repoId, '--include', 'docs/', '--cache-dir', other, '--json', '--quiet'], env);
    assert.equal(j.code, 0, j.stderr);
    assert.equal(j.stderr, '');
    assert.deepEqual(JSON.parse(j.stdout), { repo: hub.repoId, revision: 'main', commit: hub.commit, path: join(other, 'models--org--tiny-llm', 'snapshots', hub.commit), files: ['docs/notes.txt'] });

    const offline = await pullCli([hub.repoId, '--revision', hub.commit, '--quiet'], { ...env, HF_HUB_OFFLINE: '1' });
    assert.equal(offline.code, 0, offline.stderr);
    assert.equal(offline.stdout.trim(), path);

    assertOneLineError(await pullCli(['org/missing'], env), /repository "org\/missing" not found/);
    assertOneLineError(await pullCli(['not a repo'], env), /not a Hugging Face repository id/);
    hub.token = 'hf_cli';
    assertOneLineError(await pullCli([hub.repoId, '--cache-dir', join(work, 'x')], env), /gated or private.*HF_TOKEN/);
    const ok = await pullCli([hub.repoId, '--include', 'config.json', '--quiet', '--cache-dir', join(work, 'y')], { ...env, HF_TOKEN: 'hf_cli' });
    assert.equal(ok.code, 0, ok.stderr);
  });
});

// A sanity check of the stand-in itself: its LFS etags are the content's sha256.
test('stand-in: LFS etag = sha256 of the content', () => {
  const f = hub.files.get('model.safetensors')!;
  assert.equal(f.sha256, createHash('sha256').update(f.data).digest('hex'));
});
