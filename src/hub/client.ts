// A Hugging Face Hub client for model repositories: the revision's file list, per-file metadata
// (a HEAD on /resolve/, as huggingface_hub does) and downloads into the shared cache layout
// (src/hub/cache.ts), checked against the etag (sha256 for LFS files, the git blob id for small
// ones) and the size before a file enters the snapshot. Node's built-in fetch; no dependency.
//
// Hub protocol facts used here (from huggingface_hub):
// - GET {endpoint}/api/models/{repo}/revision/{rev}[?blobs=true] -> { sha, siblings: [{ rfilename,
//   size?, blobId?, lfs?: { sha256, size } }] }.
// - HEAD {endpoint}/{repo}/resolve/{rev}/{file} with Accept-Encoding: identity: X-Repo-Commit,
//   X-Linked-Etag or ETag (quotes and W/ stripped), X-Linked-Size or Content-Length (not of a
//   redirect). Relative redirects (renamed repos) are followed; an absolute one (the LFS CDN) is
//   where the file is downloaded from, without the Authorization header when the host differs.
// - Errors carry X-Error-Code: RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo.
// - Transient: 408, 429, 500, 502, 503, 504 and connection errors, retried with backoff.

import { createHash, Hash } from 'node:crypto';
import { createReadStream, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InputError } from '../core/errors.js';
import { DEFAULT_REVISION, Env, RepoCache, hubCacheDir, hubEndpoint, isCommitHash, isOffline, readToken, validateRepoPath, validateRevision } from './cache.js';
import { globFilter } from './glob.js';

export interface HubOptions {
  /** Hub address (default: $HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** Bearer token (default: $HF_TOKEN, else the token file); `null`: send none. */
  token?: string | null;
  /** Environment to read the defaults from (default: process.env). */
  env?: Env;
  /** Retries of a transient failure (5xx, 429, connection reset) per request (default 4). */
  retries?: number;
  /** First backoff delay in ms, doubled each retry up to 8 s (default 500). */
  backoffMs?: number;
  /** Time to wait for response headers, in ms (default 30 s). */
  timeoutMs?: number;
  /** Time without a byte of body before the transfer counts as broken and is resumed, in ms (default 60 s). */
  stallMs?: number;
}

export interface RepoSibling {
  /** Path in the repository, `/`-separated. */
  path: string;
  size?: number;
  /** The git blob id. */
  blobId?: string;
  lfs?: { sha256: string; size: number };
}

export interface RevisionInfo {
  /** The commit the revision points to. */
  sha: string;
  files: RepoSibling[];
}

export interface FileMetadata {
  commit: string;
  /** The blob name: sha256 of the content for LFS files, the git blob id otherwise. */
  etag: string;
  size: number;
  /** Where to GET the bytes (the CDN for LFS files). */
  url: string;
}

export interface PullProgress {
  /** The file being downloaded. */
  file: string;
  fileDone: number;
  fileTotal: number;
  /** Bytes downloaded (or resumed from a partial file) of all files that needed downloading. */
  done: number;
  total: number;
  /** Files finished (cached ones included) of the selected files. */
  filesDone: number;
  files: number;
}

export type FileStatus = 'cached' | 'linked' | 'downloaded';

export interface PullOptions extends HubOptions {
  repoId: string;
  /** Branch, tag or commit hash (default "main"). */
  revision?: string;
  /** Patterns (src/hub/glob.ts) selecting the files; none: all. */
  include?: readonly string[];
  /** Cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Use the cache only (default: $HF_HUB_OFFLINE). */
  offline?: boolean;
  onProgress?: (p: PullProgress) => void;
  /** A file is in the snapshot: already there, linked to a blob already there, or downloaded. */
  onFile?: (file: string, status: FileStatus, size: number) => void;
  /** One-line notes (e.g. the Hub could not be reached and the cache was used). */
  onNote?: (message: string) => void;
}

export interface PullResult {
  repo: string;
  revision: string;
  commit: string;
  /** The snapshot folder. */
  path: string;
  /** The selected files, repository paths. */
  files: string[];
  /** Files transferred by this pull, and their bytes. */
  downloaded: number;
  bytes: number;
  /** Resolved from the cache alone. */
  offline: boolean;
}

const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const MAX_REDIRECTS = 10;

/** A failure worth retrying (connection trouble, a 5xx), with what to say if retries run out. */
class TransientError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Quotes and a weak `W/` prefix removed, as huggingface_hub normalises etags. */
export function normalizeEtag(etag: string | null | undefined): string | undefined {
  if (!etag) return undefined;
  return etag.trim().replace(/^W\//, '').replace(/^"+|"+$/g, '') || undefined;
}

function networkCause(e: unknown): string {
  const err = e as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return 'timed out';
  return err.cause?.code ?? err.code ?? err.cause?.message ?? err.message ?? String(e);
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === 'localhost' || host === '[::1]' || host.startsWith('127.');
}

/** The git blob id of content of `size` bytes starts from this prefix. */
function gitBlobHash(size: number): Hash {
  return createHash('sha1').update(`blob ${size}\0`);
}

function hashFor(etag: string, size: number): { hash: Hash; kind: string } | undefined {
  if (/^[0-9a-f]{64}$/.test(etag)) return { hash: createHash('sha256'), kind: 'sha256' };
  if (/^[0-9a-f]{40}$/.test(etag)) return { hash: gitBlobHash(size), kind: 'git blob id' };
  return undefined; // another kind of etag: the size is the check
}

function diskError(e: unknown, where: string, size: number): InputError | undefined {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new InputError(`no space left on the device for ${where} (${size} bytes): free some space and pull again (the part downloaded is kept and resumed)`, where);
  }
  if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM') {
    return new InputError(`cannot write to the cache at ${where} (${code}): choose another with --cache-dir or HF_HUB_CACHE`, where);
  }
  return undefined;
}

interface RequestContext {
  repoId: string;
  revision: string;
  file?: string;
}

export class HubClient {
  readonly endpoint: string;
  private readonly token: string | undefined;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly timeoutMs: number;
  private readonly stallMs: number;
  private readonly endpointHost: string;

  constructor(o: HubOptions = {}) {
    const env = o.env ?? process.env;
    this.endpoint = (o.endpoint ?? hubEndpoint(env)).replace(/\/+$/, '');
    let url: URL;
    try {
      url = new URL(this.endpoint);
    } catch {
      throw new InputError(`HF_ENDPOINT is not a URL: "${this.endpoint}"`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new InputError(`HF_ENDPOINT must be an http(s) URL: "${this.endpoint}"`);
    this.endpointHost = url.host;
    this.token = o.token === null ? undefined : (o.token ?? readToken(env));
    this.retries = o.retries ?? 4;
    this.backoffMs = o.backoffMs ?? 500;
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.stallMs = o.stallMs ?? 60_000;
  }

  private headers(url: string, extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': 'mgllava; hf_hub-compatible', 'accept-encoding': 'identity', ...extra };
    if (this.token && new URL(url).host === this.endpointHost) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  private async backoff(attempt: number): Promise<void> {
    await sleep(Math.min(this.backoffMs * 2 ** attempt, 8000));
  }

  /**
   * One request, redirects followed by hand (all of them, or only same-host ones when
   * `sameHostOnly`, as huggingface_hub's HEAD does), transient failures retried. The response's
   * body is the caller's to read or cancel.
   */
  private async request(method: 'GET' | 'HEAD', url: string, ctx: RequestContext, o: { sameHostOnly?: boolean; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<{ res: Response; url: string }> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.requestOnce(method, url, ctx, o);
      } catch (e) {
        if (!(e instanceof TransientError) || attempt >= this.retries) {
          if (e instanceof TransientError) throw this.unreachable(e, attempt + 1);
          throw e;
        }
        await this.backoff(attempt);
      }
    }
  }

  private unreachable(e: TransientError, tries: number): InputError {
    const what = e.status ? `answered HTTP ${e.status}` : `could not be reached (${e.message})`;
    return new InputError(`the Hub at ${this.endpoint} ${what}, ${tries} ${tries === 1 ? 'try' : 'tries'}: try again later, or set HF_HUB_OFFLINE=1 to use the cache only`);
  }

  private async requestOnce(method: 'GET' | 'HEAD', start: string, ctx: RequestContext, o: { sameHostOnly?: boolean; headers?: Record<string, string> }): Promise<{ res: Response; url: string }> {
    let url = start;
    for (let hop = 0; ; hop++) {
      let res: Response;
      try {
        res = await fetch(url, { method, headers: this.headers(url, o.headers), redirect: 'manual', signal: AbortSignal.timeout(this.timeoutMs) });
      } catch (e) {
        throw new TransientError(networkCause(e));
      }
      if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
        const next = new URL(res.headers.get('location')!, url);
        const from = new URL(url);
        if (o.sameHostOnly && next.host !== from.host) return { res, url };
        await res.body?.cancel().catch(() => undefined);
        if (hop >= MAX_REDIRECTS) throw new InputError(`too many redirects from ${start}`);
        if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new InputError(`the Hub redirected ${start} to an unsupported address ${next.href}`);
        if (from.protocol === 'https:' && next.protocol === 'http:' && !isLoopback(next.hostname)) throw new InputError(`the Hub redirected ${start} from https to plain http (${next.host}); refused`);
        url = next.href;
        continue;
      }
      if (TRANSIENT_STATUS.has(res.status)) {
        await res.body?.cancel().catch(() => undefined);
        throw new TransientError(`HTTP ${res.status}`, res.status);
      }
      if (res.status >= 400) {
        await res.body?.cancel().catch(() => undefined);
        throw this.httpError(res, ctx);
      }
      return { res, url };
    }
  }

  /** One InputError line for a 4xx: which of repository, revision and file is missing, or the gate. */
  private httpError(res: Response, ctx: RequestContext): InputError {
    const code = res.headers.get('x-error-code');
    const repo = `"${ctx.repoId}"`;
    const page = `${this.endpoint}/${ctx.repoId}`;
    const tokenHint = this.token ? 'the token sent (HF_TOKEN or the token file) was not accepted for it' : 'no token was sent: set HF_TOKEN (or log in with `hf auth login`)';
    if (code === 'GatedRepo' || ((res.status === 401 || res.status === 403) && code !== 'RepoNotFound')) {
      return new InputError(`repository ${repo} is gated or private (HTTP ${res.status}): accept its license on ${page} while logged in, then set HF_TOKEN to a token that can read it; ${tokenHint}`, ctx.repoId);
    }
    if (code === 'RevisionNotFound') return new InputError(`revision "${ctx.revision}" not found in repository ${repo} on ${this.endpoint}`, ctx.revision);
    if (code === 'EntryNotFound') return new InputError(`file "${ctx.file}" not found in repository ${repo} at revision "${ctx.revision}"`, ctx.file);
    if (code === 'RepoNotFound' || (res.status === 404 && !ctx.file)) {
      const priv = this.token ? '' : ' (if it is private or gated, set HF_TOKEN)';
      return new InputError(`repository ${repo} not found on ${this.endpoint}${priv}`, ctx.repoId);
    }
    if (res.status === 404) return new InputError(`file "${ctx.file}" not found in repository ${repo} at revision "${ctx.revision}"`, ctx.file);
    const msg = res.headers.get('x-error-message');
    return new InputError(`the Hub answered HTTP ${res.status} for ${ctx.file ? `"${ctx.file}" in ` : ''}${repo}${msg ? `: ${msg.replace(/\s+/g, ' ')}` : ''}`, ctx.repoId);
  }

  private repoUrl(repoId: string): string {
    return repoId.split('/').map(encodeURIComponent).join('/');
  }

  /** The commit and file list of `revision` (`blobs`: with sizes, blob ids and LFS sha256). */
  async revisionInfo(repoId: string, revision: string = DEFAULT_REVISION, o: { blobs?: boolean } = {}): Promise<RevisionInfo> {
    validateRevision(revision);
    const url = `${this.endpoint}/api/models/${this.repoUrl(repoId)}/revision/${encodeURIComponent(revision)}${o.blobs ? '?blobs=true' : ''}`;
    const ctx = { repoId, revision };
    const { res } = await this.request('GET', url, ctx, { headers: { accept: 'application/json' } });
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw new InputError(`the Hub at ${this.endpoint} sent an unreadable answer for ${url} (is HF_ENDPOINT right?)`);
    }
    const b = body as { sha?: unknown; siblings?: unknown };
    if (typeof b.sha !== 'string' || !isCommitHash(b.sha) || !Array.isArray(b.siblings)) {
      throw new InputError(`the Hub at ${this.endpoint} sent no commit or file list for "${repoId}" (is HF_ENDPOINT right?)`);
    }
    const files: RepoSibling[] = [];
    for (const s of b.siblings as Array<Record<string, unknown>>) {
      if (typeof s?.rfilename !== 'string') continue;
      validateRepoPath(s.rfilename);
      const lfs = s.lfs as { sha256?: unknown; size?: unknown } | undefined;
      files.push({
        path: s.rfilename,
        size: typeof s.size === 'number' ? s.size : undefined,
        blobId: typeof s.blobId === 'string' ? s.blobId : undefined,
        lfs: lfs && typeof lfs.sha256 === 'string' && typeof lfs.size === 'number' ? { sha256: lfs.sha256, size: lfs.size } : undefined,
      });
    }
    return { sha: b.sha, files };
  }

  /** HEAD on /resolve/: the commit, etag, size and download address of one file. */
  async fileMetadata(repoId: string, revision: string, file: string): Promise<FileMetadata> {
    validateRepoPath(file);
    const url = `${this.endpoint}/${this.repoUrl(repoId)}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
    const { res, url: at } = await this.request('HEAD', url, { repoId, revision, file }, { sameHostOnly: true });
    const h = res.headers;
    const redirect = res.status >= 300 && res.status < 400;
    const commit = h.get('x-repo-commit') ?? undefined;
    const etag = normalizeEtag(h.get('x-linked-etag') ?? h.get('etag'));
    const sizeText = h.get('x-linked-size') ?? (redirect ? null : h.get('content-length'));
    const size = sizeText !== null && /^\d+$/.test(sizeText) ? Number(sizeText) : undefined;
    if (!commit || !isCommitHash(commit)) throw new InputError(`${this.endpoint} sent no X-Repo-Commit for "${file}": it does not look like a Hugging Face Hub (check HF_ENDPOINT, proxies, firewalls)`);
    if (!etag) throw new InputError(`${this.endpoint} sent no ETag for "${file}" in "${repoId}": the download could not be checked`);
    if (size === undefined) throw new InputError(`${this.endpoint} sent no size for "${file}" in "${repoId}"`);
    const location = redirect ? new URL(h.get('location')!, at).href : at;
    return { commit, etag, size, url: location };
  }

  /**
   * Download `meta` into blobs/<etag>: through blobs/<etag>.incomplete (resumed with a Range
   * request when a part is there), checked against the etag's hash and the size, then renamed.
   * A wrong checksum removes the partial file. Returns the bytes transferred.
   */
  async downloadBlob(cache: RepoCache, meta: FileMetadata, ctx: RequestContext & { file: string }, onBytes?: (fileDone: number) => void): Promise<number> {
    const blob = cache.blobPath(meta.etag);
    const part = cache.incompletePath(meta.etag);
    try {
      mkdirSync(dirname(blob), { recursive: true });
    } catch (e) {
      throw diskError(e, cache.root, meta.size) ?? e;
    }
    let transferred = 0;
    for (let attempt = 0; ; attempt++) {
      let have = 0;
      try {
        have = statSync(part).size;
      } catch {
        have = 0;
      }
      if (have > meta.size) {
        rmSync(part, { force: true });
        have = 0;
      }
      const check = hashFor(meta.etag, meta.size);
      if (check && have > 0) await hashFile(part, check.hash);
      try {
        if (have < meta.size) {
          const got = await this.transfer(meta, ctx, part, have, check?.hash, (n) => {
            transferred += n;
            have += n;
            onBytes?.(have);
          });
          if (got.restarted) continue;
        } else {
          onBytes?.(have);
        }
      } catch (e) {
        if (e instanceof TransientError && attempt < this.retries) {
          await this.backoff(attempt);
          continue;
        }
        if (e instanceof TransientError) {
          const tries = attempt + 1;
          throw new InputError(`the download of "${ctx.file}" from ${new URL(meta.url).host} failed (${e.message}), ${tries} ${tries === 1 ? 'try' : 'tries'}: pull again to resume it`, ctx.file);
        }
        throw diskError(e, part, meta.size) ?? e;
      }
      const size = statSync(part).size;
      const digest = check?.hash.digest('hex');
      if (size !== meta.size || (digest !== undefined && digest !== meta.etag)) {
        rmSync(part, { force: true });
        const what = size !== meta.size ? `${size} bytes instead of ${meta.size}` : `${check!.kind} ${digest} instead of ${meta.etag}`;
        throw new InputError(`"${ctx.file}" from "${ctx.repoId}" arrived corrupted (${what}); nothing was added to the cache: pull again`, ctx.file);
      }
      try {
        renameSync(part, blob);
      } catch (e) {
        throw diskError(e, blob, meta.size) ?? e;
      }
      return transferred;
    }
  }

  /** One GET of the rest of the file, appended to `part`. */
  private async transfer(meta: FileMetadata, ctx: RequestContext, part: string, have: number, hash: Hash | undefined, onChunk: (n: number) => void): Promise<{ restarted: boolean }> {
    const headers: Record<string, string> = have > 0 ? { range: `bytes=${have}-` } : {};
    let res: Response;
    try {
      ({ res } = await this.requestOnce('GET', meta.url, ctx, { headers }));
    } catch (e) {
      if (e instanceof InputError && have > 0 && /HTTP 416/.test(e.message)) {
        rmSync(part, { force: true });
        return { restarted: true };
      }
      throw e;
    }
    if (have > 0) {
      const range = res.headers.get('content-range');
      const start = res.status === 206 && range ? /^bytes (\d+)-/.exec(range)?.[1] : undefined;
      if (start === undefined || Number(start) !== have) {
        // The server ignored the range (200) or answered another one: start over from byte 0.
        await res.body?.cancel().catch(() => undefined);
        rmSync(part, { force: true });
        return { restarted: true };
      }
    }
    if (!res.body) throw new TransientError('empty response');
    const fh = await open(part, have > 0 ? 'a' : 'w');
    const ac = new AbortController();
    let timer = setTimeout(() => ac.abort(), this.stallMs);
    const onAbort = () => void res.body?.cancel().catch(() => undefined);
    ac.signal.addEventListener('abort', onAbort);
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        clearTimeout(timer);
        timer = setTimeout(() => ac.abort(), this.stallMs);
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
          off += bytesWritten;
        }
        hash?.update(chunk);
        onChunk(chunk.length);
      }
      if (ac.signal.aborted) throw new TransientError('the transfer stalled');
    } catch (e) {
      if (e instanceof TransientError || diskError(e, part, 0)) throw e;
      throw new TransientError(ac.signal.aborted ? 'the transfer stalled' : networkCause(e));
    } finally {
      clearTimeout(timer);
      ac.signal.removeEventListener('abort', onAbort);
      await fh.close();
    }
    const size = statSync(part).size;
    if (size < meta.size) throw new TransientError(`connection closed after ${size} of ${meta.size} bytes`);
    return { restarted: false };
  }
}

function hashFile(path: string, hash: Hash): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = createReadStream(path);
    s.on('data', (c) => hash.update(c as Buffer));
    s.on('end', () => resolve());
    s.on('error', reject);
  });
}

/** Is the error one where the Hub could not be reached at all (so the cache may stand in)? */
function unreachableError(e: unknown): boolean {
  return e instanceof InputError && /^the Hub at .* (could not be reached|answered HTTP 5)/.test(e.message);
}

/** The snapshot of `revision` from the cache alone (HF_HUB_OFFLINE=1, or the Hub unreachable). */
export function pullFromCache(o: { repoId: string; revision?: string; include?: readonly string[]; cacheDir?: string; env?: Env; reason?: string }): PullResult {
  const revision = o.revision ?? DEFAULT_REVISION;
  validateRevision(revision);
  const cacheDir = o.cacheDir ?? hubCacheDir(o.env);
  const cache = new RepoCache(cacheDir, o.repoId);
  const reason = o.reason ?? 'HF_HUB_OFFLINE=1 forbids fetching it';
  const commit = cache.resolveCommit(revision);
  const snapshot = commit ? cache.snapshotDir(commit) : undefined;
  const all = commit ? cache.snapshotFiles(commit) : [];
  if (!commit || all.length === 0) {
    throw new InputError(`"${o.repoId}" (revision "${revision}") is not in the cache at ${cacheDir}, and ${reason}`, o.repoId);
  }
  const files = all.filter(globFilter(o.include));
  if (files.length === 0) {
    throw new InputError(`the cached snapshot of "${o.repoId}" (revision "${revision}") has no file matching ${o.include!.map((p) => `"${p}"`).join(', ')}, and ${reason}`, o.repoId);
  }
  return { repo: o.repoId, revision, commit, path: snapshot!, files, downloaded: 0, bytes: 0, offline: true };
}

/**
 * Bring `revision` of `repoId` (the files matching `include`) into the cache and return its
 * snapshot folder. Files already there (downloaded by this tool or by Python's huggingface_hub)
 * are not fetched again; with `offline` (HF_HUB_OFFLINE=1) only the cache is read.
 */
export async function pull(o: PullOptions): Promise<PullResult> {
  const env = o.env ?? process.env;
  const revision = o.revision ?? DEFAULT_REVISION;
  validateRevision(revision);
  const cacheDir = o.cacheDir ?? hubCacheDir(env);
  const cache = new RepoCache(cacheDir, o.repoId);
  if (o.offline ?? isOffline(env)) return pullFromCache({ ...o, revision, cacheDir, env });

  const client = new HubClient({ ...o, env });
  let info: RevisionInfo;
  try {
    info = await client.revisionInfo(o.repoId, revision, { blobs: true });
  } catch (e) {
    if (!unreachableError(e)) throw e;
    // As huggingface_hub does: with the Hub unreachable, a snapshot already in the cache will do.
    try {
      const r = pullFromCache({ ...o, revision, cacheDir, env, reason: (e as Error).message });
      o.onNote?.(`the Hub could not be reached; using the cached snapshot ${r.commit}`);
      return r;
    } catch {
      throw e;
    }
  }
  const commit = info.sha;
  const selected = info.files.filter((f) => globFilter(o.include)(f.path)).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (selected.length === 0) {
    const what = o.include && o.include.length > 0 ? `no file matching ${o.include.map((p) => `"${p}"`).join(', ')}` : 'no files';
    throw new InputError(`repository "${o.repoId}" at revision "${revision}" has ${what}`, o.repoId);
  }

  // Files already in this commit's snapshot need no request at all (the commit is immutable).
  let filesDone = 0;
  const todo: Array<{ file: string; meta: FileMetadata }> = [];
  for (const f of selected) {
    if (cache.cachedFile(commit, f.path)) {
      filesDone++;
      o.onFile?.(f.path, 'cached', statSync(cache.pointerPath(commit, f.path)).size);
      continue;
    }
    // Ask by commit, so every file comes from the same commit even if the branch moves meanwhile.
    const meta = await client.fileMetadata(o.repoId, commit, f.path);
    if (meta.commit !== commit) throw new InputError(`the Hub answered for commit ${meta.commit} when asked for ${commit} ("${f.path}")`);
    todo.push({ file: f.path, meta });
  }
  const needs = todo.filter((t) => !cache.hasBlob(t.meta.etag));
  const total = needs.reduce((s, t) => s + t.meta.size, 0);
  let done = 0;
  let downloaded = 0;
  let bytes = 0;
  for (const { file, meta } of todo) {
    if (!cache.hasBlob(meta.etag)) {
      const base = done;
      o.onProgress?.({ file, fileDone: 0, fileTotal: meta.size, done, total, filesDone, files: selected.length });
      bytes += await client.downloadBlob(cache, meta, { repoId: o.repoId, revision, file }, (fileDone) => {
        done = base + fileDone;
        o.onProgress?.({ file, fileDone, fileTotal: meta.size, done, total, filesDone, files: selected.length });
      });
      done = base + meta.size;
      downloaded++;
      linkOrFail(cache, commit, file, meta);
      filesDone++;
      o.onFile?.(file, 'downloaded', meta.size);
    } else {
      linkOrFail(cache, commit, file, meta);
      filesDone++;
      o.onFile?.(file, 'linked', meta.size);
    }
  }
  try {
    cache.writeRef(revision, commit);
  } catch (e) {
    throw diskError(e, cache.root, 0) ?? e;
  }
  return { repo: o.repoId, revision, commit, path: cache.snapshotDir(commit), files: selected.map((f) => f.path), downloaded, bytes, offline: false };
}

function linkOrFail(cache: RepoCache, commit: string, file: string, meta: FileMetadata): void {
  try {
    cache.link(commit, file, meta.etag);
  } catch (e) {
    throw diskError(e, cache.pointerPath(commit, file), meta.size) ?? e;
  }
}
