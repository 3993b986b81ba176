// The current directory as the guests will see it: walk, exclude, size check.
import fs from 'node:fs/promises';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';

export interface CwdSnapshot {
  /** absolute directory (same path in the guest) */
  root: string;
  /** relative paths, parents before children: directories, regular files, and symlinks that point inside root */
  files: string[];
  /** total size of the regular files */
  bytes: number;
  /** entries left out (not counting excludes): tagged cache directories, outside-pointing symlinks, sockets, fifos, devices, unreadable dirs */
  skipped: { path: string; reason: string; cache?: boolean }[];
}

export interface Glob { pattern: string; re: RegExp; dirOnly: boolean; anchored: boolean }

/** gitignore-like simple globs: `*.o`, `.git`, `build/`, `data/*.bin`, `**\/tmp`. */
export function compileGlob(pattern: string): Glob {
  let p = pattern.trim();
  const dirOnly = p.endsWith('/');
  p = p.replace(/\/+$/, '').replace(/^\.\//, '');
  const anchored = p.includes('/');
  p = p.replace(/^\/+/, '');
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*') {
      if (p[i + 1] === '*') {
        i++;
        if (p[i + 1] === '/') { i++; re += '(?:.*/)?'; } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const j = p.indexOf(']', i + 1);
      if (j > i + 1) { re += '[' + p.slice(i + 1, j).replace(/^!/, '^').replace(/\\/g, '\\\\') + ']'; i = j; } else re += '\\[';
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return { pattern, re: new RegExp('^' + re + '$'), dirOnly, anchored };
}

export function matchesAny(globs: Glob[], rel: string, isDir: boolean): Glob | undefined {
  const base = path.posix.basename(rel);
  return globs.find((g) => (!g.dirOnly || isDir) && (g.re.test(rel) || (!g.anchored && g.re.test(base))));
}

function inside(root: string, p: string): boolean {
  const r = path.relative(root, p);
  return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
}

/** The Cache Directory Tagging standard (https://bford.info/cachedir/), as `tar --exclude-caches` reads it. */
export const CACHEDIR_TAG_FILE = 'CACHEDIR.TAG';
export const CACHEDIR_TAG_SIGNATURE = 'Signature: 8a477f597d28d172789f06886806bc55';

/** DIR holds a valid CACHEDIR.TAG (symrun writes one into every checkpoint directory). */
async function isCacheDir(dir: string): Promise<boolean> {
  let fh;
  try {
    fh = await fs.open(path.join(dir, CACHEDIR_TAG_FILE), 'r');
    const buf = Buffer.alloc(CACHEDIR_TAG_SIGNATURE.length);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return bytesRead === buf.length && buf.toString('latin1') === CACHEDIR_TAG_SIGNATURE;
  } catch {
    return false;
  } finally {
    await fh?.close();
  }
}

export interface SnapshotOptions {
  maxBytes: number;
  exclude: string[];
}

export async function snapshotDir(dir: string, opts: SnapshotOptions): Promise<CwdSnapshot> {
  const root = path.resolve(dir);
  const realRoot = await fs.realpath(root);
  const globs = opts.exclude.filter((e) => e.trim() !== '').map(compileGlob);
  const files: string[] = [];
  const skipped: CwdSnapshot['skipped'] = [];
  let bytes = 0;
  let over = false;
  let overDeadline = 0;
  let partial = false;
  const topSizes = new Map<string, number>();

  const walk = async (relDir: string): Promise<void> => {
    let ents;
    try {
      ents = await fs.readdir(relDir === '' ? root : path.join(root, relDir), { withFileTypes: true });
    } catch (e) {
      skipped.push({ path: relDir || '.', reason: `cannot read: ${(e as NodeJS.ErrnoException).code ?? e}` });
      return;
    }
    ents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const ent of ents) {
      if (over && Date.now() > overDeadline) { partial = true; return; }
      const rel = relDir === '' ? ent.name : relDir + '/' + ent.name;
      const abs = path.join(root, rel);
      const isDir = ent.isDirectory();
      if (matchesAny(globs, rel, isDir)) continue;
      const top = rel.split('/')[0]!;
      if (isDir) {
        if (await isCacheDir(abs)) {
          skipped.push({ path: rel, reason: `holds ${CACHEDIR_TAG_FILE} (a cache or symrun checkpoint directory)`, cache: true });
          continue;
        }
        files.push(rel);
        await walk(rel);
      } else if (ent.isFile()) {
        let size = 0;
        try { size = (await fs.lstat(abs)).size; } catch { continue; }
        files.push(rel);
        bytes += size;
        topSizes.set(top, (topSizes.get(top) ?? 0) + size);
        if (!over && bytes > opts.maxBytes) { over = true; overDeadline = Date.now() + 2000; }
      } else if (ent.isSymbolicLink()) {
        let target: string;
        try { target = await fs.readlink(abs); } catch { continue; }
        const lexical = path.resolve(path.dirname(abs), target);
        let ok = inside(root, lexical) || inside(realRoot, lexical);
        if (ok) {
          try {
            const real = await fs.realpath(abs);
            ok = inside(realRoot, real);
          } catch { /* dangling but pointing inside: keep */ }
        }
        if (ok) files.push(rel);
        else skipped.push({ path: rel, reason: `symlink to ${target} points outside ${root}` });
      } else {
        skipped.push({ path: rel, reason: 'not a regular file, directory or symlink' });
      }
    }
  };
  await walk('');

  if (over) {
    const largest = [...topSizes.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5)
      .map(([p, s]) => `${p} (${fmtBytes(s)})`);
    throw new SymError('ESYM_SHARE_TOO_LARGE', {
      message: `the current directory ${root} holds ${partial ? 'more than ' : ''}${fmtBytes(bytes)} (${bytes} bytes), more than share.maxBytes = ${fmtBytes(opts.maxBytes)} (${opts.maxBytes} bytes)` +
        (largest.length ? `; largest: ${largest.join(', ')}` : ''),
      field: 'share.maxBytes',
      value: opts.maxBytes,
      fix: 'raise share.maxBytes, add share.exclude patterns (e.g. "*.o", "build/", ".git") for what the job does not read, or run from a smaller directory',
      exitCode: EXIT.usage,
      details: { root, bytes, atLeast: partial, maxBytes: opts.maxBytes, largest },
    });
  }
  return { root, files, bytes, skipped };
}

export function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${u[i]}`;
}
