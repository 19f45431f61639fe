// File patterns for `pull --include`, with the meaning huggingface_hub gives its allow_patterns
// (Python's fnmatchcase on the whole repository path), so that `--include "*.json"` selects the
// same files as `hf download --include "*.json"`:
//   `*` any run of characters, `/` included (so `**` means the same), `?` one character,
//   `[abc]` / `[a-z]` one of a set, `[!abc]` one not in it; case-sensitive; a pattern ending in
//   `/` matches everything under that folder. Anything else matches itself.

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(c) ? `\\${c}` : c;
}

/** The regular expression for one pattern (anchored at both ends). */
export function globToRegExp(pattern: string): RegExp {
  const p = pattern.endsWith('/') ? `${pattern}*` : pattern;
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*') {
      while (p[i + 1] === '*') i++;
      re += '[\\s\\S]*';
    } else if (c === '?') {
      re += '[\\s\\S]';
    } else if (c === '[') {
      // fnmatch: `]` right after `[` or `[!` is literal; an unclosed `[` is a literal `[`.
      let j = i + 1;
      if (p[j] === '!') j++;
      if (p[j] === ']') j++;
      while (j < p.length && p[j] !== ']') j++;
      if (j >= p.length) {
        re += '\\[';
        continue;
      }
      let body = p.slice(i + 1, j);
      const negate = body.startsWith('!');
      if (negate) body = body.slice(1);
      const cls = body.replace(/[\\^\]]/g, (m) => `\\${m}`);
      re += negate ? `[^${cls}]` : `[${cls}]`;
      i = j;
    } else {
      re += escapeRe(c);
    }
  }
  return new RegExp(`^${re}$`);
}

/** Whether repository path `path` matches `pattern`. */
export function matchGlob(path: string, pattern: string): boolean {
  return globToRegExp(pattern).test(path.replace(/\\/g, '/'));
}

/** A predicate for "matches any of `patterns`"; no patterns (or none given) select everything. */
export function globFilter(patterns: readonly string[] | undefined): (path: string) => boolean {
  if (!patterns || patterns.length === 0) return () => true;
  const res = patterns.map(globToRegExp);
  return (path) => {
    const p = path.replace(/\\/g, '/');
    return res.some((r) => r.test(p));
  };
}
