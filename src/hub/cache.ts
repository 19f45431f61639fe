// The Hugging Face cache layout, shared with Python's huggingface_hub so that a model fetched by
// either is found by the other:
//
//   $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
//     models--ORG--NAME/
//       blobs/<etag>                  file contents, named by the Hub's etag (sha256 for LFS files,
//                                     the git blob id for small ones); <etag>.incomplete while downloading
//       snapshots/<commit>/<path>     a relative symlink to ../../blobs/<etag> (a copy where symlinks fail)
//       refs/<revision>               the commit a branch or tag pointed to when last fetched
//
// Environment (as huggingface_hub reads it): HF_HUB_CACHE (legacy HUGGINGFACE_HUB_CACHE), HF_HOME
// (default $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface), HF_TOKEN_PATH (default
// $HF_HOME/token), HF_TOKEN (legacy HUGGING_FACE_HUB_TOKEN), HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE)
// in 1/ON/YES/TRUE, HF_ENDPOINT (default https://huggingface.co).

import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { InputError } from '../core/errors.js';

export type Env = Record<string, string | undefined>;

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_REVISION = 'main';
const COMMIT_RE = /^[0-9a-f]{40}$/;
const TRUE_VALUES = new Set(['1', 'ON', 'YES', 'TRUE']);

function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? join(homedir(), p.slice(2)) : p;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v !== undefined && v !== '' ? v : undefined;
}

/** $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: Env = process.env): string {
  const home = nonEmpty(env.HF_HOME);
  if (home) return expandHome(home);
  return join(expandHome(nonEmpty(env.XDG_CACHE_HOME) ?? join(homedir(), '.cache')), 'huggingface');
}

/** The hub cache folder: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub. */
export function hubCacheDir(env: Env = process.env): string {
  const dir = nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE);
  return dir ? expandHome(dir) : join(hfHome(env), 'hub');
}

/** $HF_ENDPOINT without a trailing slash, else https://huggingface.co. */
export function hubEndpoint(env: Env = process.env): string {
  return (nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

/** HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is 1, ON, YES or TRUE. */
export function isOffline(env: Env = process.env): boolean {
  const v = nonEmpty(env.HF_HUB_OFFLINE) ?? nonEmpty(env.TRANSFORMERS_OFFLINE);
  return v !== undefined && TRUE_VALUES.has(v.toUpperCase());
}

/** The token file: $HF_TOKEN_PATH, else $HF_HOME/token. */
export function tokenPath(env: Env = process.env): string {
  const p = nonEmpty(env.HF_TOKEN_PATH);
  return p ? expandHome(p) : join(hfHome(env), 'token');
}

/** $HF_TOKEN (or legacy $HUGGING_FACE_HUB_TOKEN), else the token file's first line, else undefined. */
export function readToken(env: Env = process.env): string | undefined {
  const t = nonEmpty(env.HF_TOKEN?.trim()) ?? nonEmpty(env.HUGGING_FACE_HUB_TOKEN?.trim());
  if (t) return t;
  try {
    return nonEmpty(readFileSync(tokenPath(env), 'utf8').split(/\r?\n/)[0]?.trim());
  } catch {
    return undefined;
  }
}

export function isCommitHash(revision: string): boolean {
  return COMMIT_RE.test(revision);
}

/** `ORG/NAME` (or a bare `NAME`), with the Hub's allowed characters; else an InputError. */
export function validateRepoId(repoId: string): void {
  const part = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
  const parts = repoId.split('/');
  const ok = parts.length >= 1 && parts.length <= 2 && parts.every((p) => part.test(p) && !p.includes('--') && !p.includes('..') && !p.endsWith('.') && p.length <= 96);
  if (!ok) throw new InputError(`not a Hugging Face repository id: "${repoId}" (expected ORG/NAME, e.g. openai/clip-vit-large-patch14-336)`, repoId);
}

/** A revision name that is safe as a file name under refs/ (branches may contain `/`). */
export function validateRevision(revision: string): void {
  const bad = revision === '' || revision.startsWith('/') || revision.endsWith('/') || revision.split('/').some((s) => s === '' || s === '.' || s === '..') || /[\\\0]/.test(revision);
  if (bad) throw new InputError(`not a valid revision: "${revision}"`, revision);
}

/** A repository file path: relative, `/`-separated, without `..` (it becomes a path in the snapshot). */
export function validateRepoPath(file: string): void {
  const bad = file === '' || file.startsWith('/') || /[\\\0]/.test(file) || file.split('/').some((s) => s === '' || s === '.' || s === '..');
  if (bad) throw new InputError(`the Hub listed a file with an unsafe path: "${file}"`, file);
}

/** `models--ORG--NAME`, as huggingface_hub names a model repository's folder. */
export function repoFolderName(repoId: string, repoType: 'model' | 'dataset' | 'space' = 'model'): string {
  return [`${repoType}s`, ...repoId.split('/')].join('--');
}

/** One repository's folder in the cache. Paths only; nothing is created until asked. */
export class RepoCache {
  readonly root: string;

  constructor(readonly cacheDir: string, readonly repoId: string) {
    validateRepoId(repoId);
    this.root = join(cacheDir, repoFolderName(repoId));
  }

  blobPath(etag: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(etag) || etag.startsWith('.')) throw new InputError(`the Hub sent an unusable etag "${etag}"`);
    return join(this.root, 'blobs', etag);
  }

  incompletePath(etag: string): string {
    return `${this.blobPath(etag)}.incomplete`;
  }

  snapshotDir(commit: string): string {
    if (!isCommitHash(commit)) throw new InputError(`the Hub sent an unusable commit hash "${commit}"`);
    return join(this.root, 'snapshots', commit);
  }

  /** Where `file` of `commit` lies in the snapshot (a symlink to its blob, or a copy). */
  pointerPath(commit: string, file: string): string {
    validateRepoPath(file);
    return join(this.snapshotDir(commit), ...file.split('/'));
  }

  /** The commit refs/<revision> names, if the cache has it. */
  readRef(revision: string): string | undefined {
    validateRevision(revision);
    try {
      const c = readFileSync(join(this.root, 'refs', ...revision.split('/')), 'utf8').trim();
      return isCommitHash(c) ? c : undefined;
    } catch {
      return undefined;
    }
  }

  /** Record that `revision` (a branch or tag) is `commit`; nothing for a commit hash itself. */
  writeRef(revision: string, commit: string): void {
    validateRevision(revision);
    if (revision === commit) return;
    const p = join(this.root, 'refs', ...revision.split('/'));
    if (this.readRef(revision) === commit) return;
    mkdirSync(dirname(p), { recursive: true });
    const tmp = `${p}.${process.pid}.tmp`;
    writeFileSync(tmp, commit); // no newline, as huggingface_hub writes it
    renameSync(tmp, p);
  }

  /** The commit `revision` resolves to from the cache alone: itself when a commit hash, else refs/. */
  resolveCommit(revision: string): string | undefined {
    if (isCommitHash(revision)) return revision;
    return this.readRef(revision);
  }

  /** The snapshot path of `file` at `revision` if it is there and readable (a live link or a copy). */
  cachedFile(revision: string, file: string): string | undefined {
    const commit = this.resolveCommit(revision);
    if (!commit) return undefined;
    const p = this.pointerPath(commit, file);
    try {
      return statSync(p).isFile() ? p : undefined; // follows the link: a dangling one is not cached
    } catch {
      return undefined;
    }
  }

  /** The files (repository paths, `/`-separated, sorted) present in `commit`'s snapshot. */
  snapshotFiles(commit: string): string[] {
    const root = this.snapshotDir(commit);
    const out: string[] = [];
    const walk = (dir: string) => {
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        return;
      }
      for (const name of names) {
        const p = join(dir, name);
        let st;
        try {
          st = statSync(p);
        } catch {
          continue; // dangling link
        }
        if (st.isDirectory()) walk(p);
        else if (st.isFile()) out.push(relative(root, p).split(sep).join('/'));
      }
    };
    walk(root);
    return out.sort();
  }

  /** Whether the blob is complete in the cache. */
  hasBlob(etag: string): boolean {
    try {
      return statSync(this.blobPath(etag)).isFile();
    } catch {
      return false;
    }
  }

  /**
   * Put `file` of `commit` into the snapshot as a relative symlink to blobs/<etag> (a copy where
   * the file system refuses symlinks). The blob must be complete. An existing pointer is replaced.
   */
  link(commit: string, file: string, etag: string): string {
    const blob = this.blobPath(etag);
    const pointer = this.pointerPath(commit, file);
    mkdirSync(dirname(pointer), { recursive: true });
    try {
      lstatSync(pointer);
      unlinkSync(pointer);
    } catch {
      // not there
    }
    try {
      symlinkSync(relative(dirname(pointer), blob), pointer);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EINVAL' && code !== 'EACCES') throw e;
      const tmp = `${pointer}.${process.pid}.tmp`;
      copyFileSync(blob, tmp);
      renameSync(tmp, pointer);
    }
    return pointer;
  }

  /** Remove a leftover partial download. */
  removeIncomplete(etag: string): void {
    rmSync(this.incompletePath(etag), { force: true });
  }

  exists(): boolean {
    return existsSync(this.root);
  }
}
