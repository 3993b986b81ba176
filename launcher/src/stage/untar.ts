// Stage-out: extract an UNTRUSTED tar stream from a guest into destDir. Only regular files and directories
// under destDir are accepted; anything else fails the whole extraction before a single file lands in
// destDir (entries are first written to a flat staging directory, then renamed into place).
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SymError, EXIT } from '../errors.js';
import { STAGE_DEFAULTS } from '../defaults.js';

export interface ExtractOptions {
  /** total size of file contents accepted */
  maxBytes: number;
  /** owner given to every file and directory created */
  uid?: number;
  gid?: number;
  /** most entries accepted (default STAGE_DEFAULTS.maxStageOutEntries) */
  maxEntries?: number;
}

const BLOCK = 512;
/** bytes read and ignored after the end-of-archive marker */
const TRAILER_MAX = 1024 * 1024;
const STAGING_PREFIX = '.symrun-stage-out.';

function reject(entry: string | undefined, why: string, details?: Record<string, unknown>): SymError {
  return new SymError('ESYM_STAGE_OUT_REJECTED', {
    message: entry !== undefined
      ? `refused the files sent back by the guest: entry ${JSON.stringify(entry)} ${why}; nothing was copied back`
      : `refused the files sent back by the guest: ${why}; nothing was copied back`,
    field: 'stage-out',
    value: entry,
    fix: 'only regular files and directories inside the working directory are copied back; have the job write plain files there (no links, no devices) and keep the total under the limit',
    exitCode: EXIT.runtime,
    details,
  });
}

class Reader {
  private chunks: Buffer[] = [];
  private have = 0;
  private done = false;
  private it: AsyncIterator<unknown>;
  private pending: Promise<IteratorResult<unknown>> | undefined;
  constructor(stream: NodeJS.ReadableStream) {
    this.it = (stream as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    // start reading now: Node discards a child's unread stdout when the child exits with no reader attached
    this.pending = this.it.next();
    this.pending.catch(() => { /* surfaced by fill() */ });
  }
  private async fill(n: number): Promise<void> {
    while (this.have < n && !this.done) {
      const p = this.pending ?? this.it.next();
      this.pending = undefined;
      let r: IteratorResult<unknown>;
      try {
        r = await p;
      } catch (e) {
        throw reject(undefined, `the archive stream failed (${e instanceof Error ? e.message : String(e)})`);
      }
      if (r.done) { this.done = true; break; }
      const b = typeof r.value === 'string' ? Buffer.from(r.value) : Buffer.from(r.value as Uint8Array);
      if (b.length) { this.chunks.push(b); this.have += b.length; }
    }
  }
  /** exactly n bytes, fewer only at end of stream */
  async read(n: number): Promise<Buffer> {
    await this.fill(n);
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const take = Math.min(n, all.length);
    const out = all.subarray(0, take);
    const rest = all.subarray(take);
    this.chunks = rest.length ? [rest] : [];
    this.have = rest.length;
    return out;
  }
  /** up to max bytes of what is buffered (reading more if nothing is) */
  async some(max: number): Promise<Buffer> {
    if (this.have === 0) await this.fill(1);
    return this.read(Math.min(max, this.have));
  }
  async close(): Promise<void> {
    try { await this.it.return?.(); } catch { /* ignore */ }
  }
}

function cstr(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return (z >= 0 ? s.subarray(0, z) : s).toString('utf8');
}

/** octal (NUL/space terminated) or GNU base-256; returns NaN if malformed */
function num(b: Buffer, off: number, len: number): number {
  const f = b.subarray(off, off + len);
  if (f[0]! & 0x80) {
    if (f[0] === 0xff) return NaN; // negative
    let v = BigInt(f[0]! & 0x7f);
    for (let i = 1; i < f.length; i++) v = (v << 8n) | BigInt(f[i]!);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  }
  const s = f.toString('latin1').replace(/[\0 ]+$/, '').replace(/^[ \0]+/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return NaN;
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  const want = num(h, 148, 8);
  let u = 0, sgn = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 32 : h[i]!;
    u += c;
    sgn += c > 127 ? c - 256 : c;
  }
  return want === u || want === sgn;
}

function parsePax(buf: Buffer, name: string | undefined): Map<string, string> {
  const m = new Map<string, string>();
  let i = 0;
  while (i < buf.length) {
    const sp = buf.indexOf(0x20, i);
    if (sp < 0) break;
    const len = parseInt(buf.subarray(i, sp).toString('latin1'), 10);
    if (!Number.isFinite(len) || len <= 0 || i + len > buf.length) throw reject(name, 'has a malformed pax header');
    const rec = buf.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) m.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return m;
}

/** normalize an archive name; throws for absolute paths and '..' */
function cleanName(raw: string): string {
  if (raw.startsWith('/')) throw reject(raw, 'is an absolute path');
  const parts = raw.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw reject(raw, "contains '..'");
  if (parts.some((c) => Buffer.byteLength(c) > 255)) throw reject(raw, 'has a name component longer than 255 bytes');
  if (parts.length > 0 && parts[0]!.startsWith(STAGING_PREFIX)) throw reject(raw, 'uses a name reserved by symrun');
  return parts.join('/');
}

interface Staged { rel: string; tmp: string; mode: number; mtime: number; size: number }

export async function tarExtractSafe(
  stream: NodeJS.ReadableStream,
  destDir: string,
  opts: ExtractOptions,
): Promise<{ files: string[] }> {
  // attach to the stream before the first await, so no chunk can be emitted unobserved
  const reader = new Reader(stream);
  const dest = path.resolve(destDir);
  const maxEntries = opts.maxEntries ?? STAGE_DEFAULTS.maxStageOutEntries;
  const destSt = await fs.lstat(dest).catch(() => null);
  if (!destSt || !destSt.isDirectory()) {
    await reader.close();
    throw new SymError('ESYM_STAGE_OUT_REJECTED', {
      message: `cannot copy files back: ${dest} is not a directory`,
      fix: 'run symrun from a directory that still exists when the job ends',
      exitCode: EXIT.runtime,
    });
  }
  const stagingName = STAGING_PREFIX + randomBytes(6).toString('hex');
  const staging = path.join(dest, stagingName);
  await fs.mkdir(staging, { mode: 0o700 });
  const files = new Map<string, Staged>();
  const dirs = new Map<string, { mode: number }>();
  let total = 0;
  let count = 0;
  try {
    let paxNext: Map<string, string> | undefined;
    let longName: string | undefined;
    let sawEnd = false;
    for (;;) {
      const h = await reader.read(BLOCK);
      if (h.length === 0) break;
      if (h.length < BLOCK) throw reject(undefined, 'the archive is truncated (partial header)');
      if (h.every((x) => x === 0)) { sawEnd = true; break; }
      if (!checksumOk(h)) throw reject(undefined, `the archive is corrupt (bad header checksum after ${count} entries)`);
      if (++count > maxEntries) throw reject(undefined, `it has more than ${maxEntries} entries`);

      const type = String.fromCharCode(h[156]!);
      const magic = h.subarray(257, 263).toString('latin1');
      let name = cstr(h, 0, 100);
      if (magic === 'ustar\0') {
        const prefix = cstr(h, 345, 155);
        if (prefix) name = prefix + '/' + name;
      }
      if (longName !== undefined) { name = longName; longName = undefined; }
      let size = num(h, 124, 12);
      let mtime = num(h, 136, 12);
      const pax = paxNext; paxNext = undefined;
      if (pax?.has('path')) name = pax.get('path')!;
      if (pax?.has('size')) size = Number(pax.get('size'));
      if (pax?.has('mtime')) mtime = Math.floor(Number(pax.get('mtime')));
      if (!Number.isSafeInteger(size) || size < 0) throw reject(name, 'has an invalid size');
      if (Buffer.byteLength(name) > STAGE_DEFAULTS.maxNameBytes) throw reject(name.slice(0, 200) + '...', 'has a name that is too long');
      const padded = Math.ceil(size / BLOCK) * BLOCK;

      // meta records
      if (type === 'L' || type === 'K' || type === 'x' || type === 'g') {
        if (size > STAGE_DEFAULTS.maxMetaBytes) throw reject(name, `has a ${size}-byte metadata record`);
        const data = await reader.read(padded);
        if (data.length < padded) throw reject(name, 'is truncated');
        const body = data.subarray(0, size);
        if (type === 'L') longName = cstr(body, 0, body.length);
        else if (type === 'x') paxNext = parsePax(body, name);
        // 'K' (long link name) only precedes a link entry, which is rejected below; 'g' is ignored
        continue;
      }

      let kind: 'file' | 'dir';
      if (type === '0' || type === '\0' || type === '7') kind = name.endsWith('/') && size === 0 ? 'dir' : 'file';
      else if (type === '5') kind = 'dir';
      else if (type === '2') throw reject(name, `is a symbolic link (to ${JSON.stringify(pax?.get('linkpath') ?? cstr(h, 157, 100))})`);
      else if (type === '1') throw reject(name, `is a hard link (to ${JSON.stringify(pax?.get('linkpath') ?? cstr(h, 157, 100))})`);
      else if (type === '3' || type === '4') throw reject(name, 'is a device node');
      else if (type === '6') throw reject(name, 'is a FIFO');
      else throw reject(name, `has an unsupported entry type '${type.replace(/[^\x20-\x7e]/g, '?')}'`);

      const rel = cleanName(name);
      const rawMode = num(h, 100, 8);
      const mode = Number.isFinite(rawMode) ? rawMode & 0o777 : 0o644; // setuid/setgid/sticky dropped
      if (kind === 'dir') {
        if (size !== 0) throw reject(name, 'is a directory with data');
        if (rel !== '') dirs.set(rel, { mode });
        continue;
      }
      if (rel === '') throw reject(name, 'is a file without a name');
      if (total + size > opts.maxBytes) {
        throw reject(name, `would bring the total to ${total + size} bytes, over the limit of ${opts.maxBytes} bytes`,
          { size, total, maxBytes: opts.maxBytes });
      }
      total += size;
      const tmp = path.join(staging, String(count));
      const fh = await fs.open(tmp, 'wx', 0o600);
      try {
        let left = size;
        while (left > 0) {
          const b = await reader.some(Math.min(left, 1 << 20));
          if (b.length === 0) throw reject(name, 'is truncated');
          await fh.write(b);
          left -= b.length;
        }
        if (opts.uid !== undefined || opts.gid !== undefined) await fh.chown(opts.uid ?? -1, opts.gid ?? -1);
        await fh.chmod(mode);
      } finally {
        await fh.close();
      }
      if (Number.isFinite(mtime) && mtime >= 0) await fs.utimes(tmp, mtime, mtime).catch(() => {});
      const pad = padded - size;
      if (pad > 0 && (await reader.read(pad)).length < pad) throw reject(name, 'is truncated');
      const prev = files.get(rel);
      if (prev) await fs.rm(prev.tmp, { force: true });
      files.set(rel, { rel, tmp, mode, mtime, size });
    }
    if (!sawEnd) throw reject(undefined, 'the archive is truncated (no end-of-archive marker)');
    // let the writer finish cleanly (tar pads to its record size); stop listening after a bounded amount
    for (let extra = 0; extra < TRAILER_MAX; ) {
      const b = await reader.some(64 * 1024);
      if (b.length === 0) break;
      extra += b.length;
    }

    // the archive's own shape: every ancestor of a file is a directory, no path is both
    const needDirs = new Map<string, number>();
    for (const [d, v] of dirs) needDirs.set(d, v.mode);
    for (const rel of files.keys()) {
      for (let a = path.posix.dirname(rel); a !== '.'; a = path.posix.dirname(a)) if (!needDirs.has(a)) needDirs.set(a, 0o755);
    }
    for (const rel of files.keys()) if (needDirs.has(rel)) throw reject(rel, 'is both a file and a directory in the archive');

    // what is already in destDir: directories must be real directories (never follow a symlink out),
    // files may only replace regular files
    const sortedDirs = [...needDirs.keys()].sort((a, b) => a.split('/').length - b.split('/').length || (a < b ? -1 : 1));
    const missingDirs: string[] = [];
    for (const d of sortedDirs) {
      const st = await fs.lstat(path.join(dest, d)).catch(() => null);
      if (!st) { missingDirs.push(d); continue; }
      if (st.isSymbolicLink()) throw reject(d, `would be written through the symbolic link ${path.join(dest, d)}`);
      if (!st.isDirectory()) throw reject(d, `is a directory in the archive but ${path.join(dest, d)} is not a directory`);
    }
    for (const rel of files.keys()) {
      const st = await fs.lstat(path.join(dest, rel)).catch(() => null);
      if (!st) continue;
      if (st.isSymbolicLink()) throw reject(rel, `would replace the symbolic link ${path.join(dest, rel)}`);
      if (!st.isFile()) throw reject(rel, `would replace ${path.join(dest, rel)}, which is not a regular file`);
    }

    // commit
    for (const d of missingDirs) {
      const abs = path.join(dest, d);
      await fs.mkdir(abs, { mode: needDirs.get(d)! | 0o700 });
      await fs.chmod(abs, needDirs.get(d)! | 0o700);
      if (opts.uid !== undefined || opts.gid !== undefined) await fs.chown(abs, opts.uid ?? -1, opts.gid ?? -1);
    }
    const out: string[] = [];
    for (const f of files.values()) {
      const abs = path.join(dest, f.rel);
      try {
        await fs.rename(f.tmp, abs);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
        const tmp2 = path.join(path.dirname(abs), `${STAGING_PREFIX}${randomBytes(6).toString('hex')}`);
        await fs.copyFile(f.tmp, tmp2);
        if (opts.uid !== undefined || opts.gid !== undefined) await fs.chown(tmp2, opts.uid ?? -1, opts.gid ?? -1);
        await fs.chmod(tmp2, f.mode);
        if (f.mtime >= 0) await fs.utimes(tmp2, f.mtime, f.mtime).catch(() => {});
        await fs.rename(tmp2, abs);
      }
      out.push(f.rel);
    }
    return { files: out };
  } catch (e) {
    const s = stream as unknown as { destroy?: () => void };
    s.destroy?.();
    throw e;
  } finally {
    await reader.close();
    await fs.rm(staging, { recursive: true, force: true });
  }
}
