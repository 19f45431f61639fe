// A Hugging Face Hub stand-in on 127.0.0.1 for tests: serves a folder as one model repository at
// one commit, with the Hub's endpoints and headers (src/hub/client.ts lists them). Files larger
// than `lfsThreshold` behave as LFS files: their /resolve/ answers 302 to a second server (another
// host:port, like the CDN) with X-Linked-Etag = sha256 and X-Linked-Size; small files answer 200
// with ETag = the git blob id. Switches inject failures; every request is logged.

import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { join, relative, sep } from 'node:path';

export interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
}

interface RepoFile {
  path: string;
  data: Buffer;
  sha256: string;
  gitOid: string;
  lfs: boolean;
}

export interface StandInOptions {
  /** Repository id served (default "org/tiny-llm"). */
  repoId?: string;
  /** Files above this many bytes are LFS files (default 64 KiB). */
  lfsThreshold?: number;
}

export class HubStandIn {
  readonly repoId: string;
  readonly commit: string;
  readonly files = new Map<string, RepoFile>();
  readonly log: LoggedRequest[] = [];
  /** Files whose next GET body stops after half the bytes (the connection is destroyed); once each. */
  readonly cutOnce = new Set<string>();
  /** Files whose bytes are served with one byte flipped (every time). */
  readonly corrupt = new Set<string>();
  /** Files (or "api") answered 503 this many more times. */
  readonly fail503 = new Map<string, number>();
  /** When set, the repository is gated: requests without `Authorization: Bearer <token>` get 401. */
  token: string | undefined;
  /** Whether 206 answers honour Range (false: a 200 with the whole file, as some CDNs do). */
  honourRange = true;
  private hub!: Server;
  private cdn!: Server;
  endpoint = '';
  cdnBase = '';

  constructor(dir: string, o: StandInOptions = {}) {
    this.repoId = o.repoId ?? 'org/tiny-llm';
    const threshold = o.lfsThreshold ?? 64 * 1024;
    const walk = (d: string) => {
      for (const name of readdirSync(d).sort()) {
        const p = join(d, name);
        if (statSync(p).isDirectory()) walk(p);
        else {
          const data = readFileSync(p);
          const rel = relative(dir, p).split(sep).join('/');
          const gitOid = createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
          this.files.set(rel, { path: rel, data, sha256: createHash('sha256').update(data).digest('hex'), gitOid, lfs: data.length > threshold });
        }
      }
    };
    walk(dir);
    this.commit = createHash('sha1').update([...this.files.values()].map((f) => f.gitOid).join()).digest('hex');
  }

  async start(): Promise<this> {
    this.hub = createServer((req, res) => this.serveHub(req, res));
    this.cdn = createServer((req, res) => this.serveCdn(req, res));
    const listen = (s: Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
    this.endpoint = `http://127.0.0.1:${await listen(this.hub)}`;
    this.cdnBase = `http://127.0.0.1:${await listen(this.cdn)}`;
    return this;
  }

  async close(): Promise<void> {
    for (const s of [this.hub, this.cdn]) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }

  /** Requests matching `pred` so far. */
  count(pred: (r: LoggedRequest) => boolean = () => true): number {
    return this.log.filter(pred).length;
  }

  private failing(key: string, res: ServerResponse): boolean {
    const n = this.fail503.get(key) ?? 0;
    if (n <= 0) return false;
    this.fail503.set(key, n - 1);
    res.writeHead(503).end('busy');
    return true;
  }

  private serveHub(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url!, this.endpoint);
    const path = decodeURIComponent(url.pathname);
    this.log.push({ server: 'hub', method: req.method!, path: url.pathname + url.search, headers: req.headers });
    const api = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(path);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const repo = api?.[1] ?? resolve?.[1];
    if (!repo) return void res.writeHead(404).end('no such route');
    if (repo !== this.repoId) return void res.writeHead(404, { 'X-Error-Code': 'RepoNotFound', 'X-Error-Message': 'Repository not found' }).end();
    if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) {
      return void res.writeHead(401, { 'X-Error-Code': 'GatedRepo', 'X-Error-Message': 'Access to this model is restricted' }).end();
    }
    const revision = (api?.[2] ?? resolve?.[2])!;
    if (revision !== 'main' && revision !== this.commit) {
      return void res.writeHead(404, { 'X-Error-Code': 'RevisionNotFound', 'X-Error-Message': 'Invalid rev id' }).end();
    }
    if (api) {
      if (this.failing('api', res)) return;
      const blobs = url.searchParams.get('blobs') === 'true';
      const siblings = [...this.files.values()].map((f) =>
        blobs ? { rfilename: f.path, size: f.data.length, blobId: f.gitOid, ...(f.lfs ? { lfs: { sha256: f.sha256, size: f.data.length, pointerSize: 134 } } : {}) } : { rfilename: f.path },
      );
      const body = JSON.stringify({ id: this.repoId, modelId: this.repoId, sha: this.commit, siblings });
      return void res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
    }
    const file = this.files.get(resolve![3]!);
    if (!file) return void res.writeHead(404, { 'X-Error-Code': 'EntryNotFound', 'X-Error-Message': 'Entry not found', 'X-Repo-Commit': this.commit }).end();
    if (this.failing(file.path, res)) return;
    if (file.lfs) {
      return void res.writeHead(302, {
        Location: `${this.cdnBase}/blob/${file.sha256}?repo=${encodeURIComponent(this.repoId)}`,
        'X-Repo-Commit': this.commit,
        'X-Linked-Etag': `"${file.sha256}"`,
        'X-Linked-Size': String(file.data.length),
        ETag: '"pointer-file-etag"',
        'Content-Length': '0',
      }).end();
    }
    this.sendFile(file, req, res, { 'X-Repo-Commit': this.commit, ETag: `W/"${file.gitOid}"` });
  }

  private serveCdn(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url!, this.cdnBase);
    this.log.push({ server: 'cdn', method: req.method!, path: url.pathname + url.search, headers: req.headers });
    const m = /^\/blob\/([0-9a-f]{64})$/.exec(url.pathname);
    const file = m ? [...this.files.values()].find((f) => f.sha256 === m[1]) : undefined;
    if (!file) return void res.writeHead(404).end();
    this.sendFile(file, req, res, { ETag: `"${file.sha256}"` });
  }

  private sendFile(file: RepoFile, req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
    let data = file.data;
    if (this.corrupt.has(file.path)) {
      data = Buffer.from(data);
      data[data.length >> 1]! ^= 0xff;
    }
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range && this.honourRange) {
      start = Number(range[1]);
      if (start >= data.length) return void res.writeHead(416, { 'Content-Range': `bytes */${data.length}` }).end();
      res.writeHead(206, { ...headers, 'Content-Length': String(data.length - start), 'Content-Range': `bytes ${start}-${data.length - 1}/${data.length}`, 'Accept-Ranges': 'bytes' });
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': String(data.length), 'Accept-Ranges': 'bytes' });
    }
    if (req.method === 'HEAD') return void res.end();
    const body = data.subarray(start);
    if (this.cutOnce.has(file.path) && body.length > 1) {
      this.cutOnce.delete(file.path);
      res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  }
}
