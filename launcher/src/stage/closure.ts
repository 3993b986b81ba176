// What a program needs on the guest: itself, its interpreter (scripts), its shared libraries (ldd), every
// symlink on the way to each of those (alternatives included), and the data files of its Debian package.
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { SymError, EXIT } from '../errors.js';
import { DEFAULT_PATH } from './resolve.js';
import { accessSync, statSync, constants as FSC } from 'node:fs';

export interface Closure {
  /** absolute host paths: regular files plus every symlink of each chain (intermediate directory symlinks
   *  only when the image has nothing at that path); directory-symlinks first, then sorted */
  files: string[];
  /** total size of the regular files in `files` */
  bytes: number;
  /** Debian packages whose data files were included (owners of the programs) */
  packages: string[];
  /** human-readable remarks: what was skipped and anything odd */
  notes: string[];
}

// ---------------------------------------------------------------- ldd parsing (pure)

export interface LddResult {
  /** absolute paths of the libraries (and the ELF interpreter) */
  paths: string[];
  /** sonames ldd reported as "not found" */
  missing: string[];
  /** static executable (no dynamic section) */
  isStatic: boolean;
  /** other lines worth reporting (e.g. version mismatches) */
  warnings: string[];
}

const ADDR = /\s*\(0x[0-9a-fA-F]+\)\s*$/;

export function parseLdd(out: string): LddResult {
  const r: LddResult = { paths: [], missing: [], isStatic: false, warnings: [] };
  const seen = new Set<string>();
  const add = (p: string) => { if (!seen.has(p)) { seen.add(p); r.paths.push(p); } };
  for (const raw of out.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (/statically linked|not a dynamic executable/.test(line)) { r.isStatic = true; continue; }
    const arrow = line.indexOf(' => ');
    if (arrow >= 0) {
      const name = line.slice(0, arrow).trim();
      let rest = line.slice(arrow + 4).trim();
      if (/^not found\b/.test(rest)) { r.missing.push(name); continue; }
      rest = rest.replace(ADDR, '').trim();
      if (rest.startsWith('/')) add(rest);
      // "linux-vdso.so.1 =>  (0x...)" style: no file
      continue;
    }
    if (raw.startsWith('\t') || raw.startsWith(' ')) {
      const p = line.replace(ADDR, '').trim();
      if (p.startsWith('/')) add(p); // the ELF interpreter
      // else: vdso (linux-vdso.so.1, linux-gate.so.1)
      continue;
    }
    if (/^\S.*:$/.test(line)) continue; // "file:" header when several files are given
    r.warnings.push(line); // e.g. "./x: /lib/.../libc.so.6: version `GLIBC_2.99' not found (required by ./x)"
  }
  return r;
}

/** `dpkg -S` output → path → packages. Ignores diversion lines. */
export function parseDpkgS(out: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of out.split('\n')) {
    if (line === '' || line.startsWith('diversion by ')) continue;
    const mm = /^(.+?): (\/.*)$/.exec(line);
    if (!mm) continue;
    const pkgs = mm[1]!.split(',').map((s) => s.trim()).filter(Boolean);
    const prev = m.get(mm[2]!) ?? [];
    m.set(mm[2]!, [...prev, ...pkgs]);
  }
  return m;
}

// ---------------------------------------------------------------- symlink chains

interface Walk {
  /** physical path of the final object */
  final: string;
  /** symlinks met as the last component (a file's chain), parent directories physical */
  fileLinks: string[];
  /** symlinks met as an intermediate component (e.g. /lib -> usr/lib) */
  dirLinks: string[];
}

class Fs {
  private lst = new Map<string, Promise<import('node:fs').Stats | null>>();
  private rl = new Map<string, Promise<string>>();
  lstat(p: string) {
    let v = this.lst.get(p);
    if (!v) { v = fs.lstat(p).catch(() => null); this.lst.set(p, v); }
    return v;
  }
  readlink(p: string) {
    let v = this.rl.get(p);
    if (!v) { v = fs.readlink(p); this.rl.set(p, v); }
    return v;
  }
  /** namei-style walk: records every symlink met, returns null when something is missing */
  async walk(p: string): Promise<Walk | null> {
    const w: Walk = { final: '/', fileLinks: [], dirLinks: [] };
    let comps = p.split('/').filter((c) => c !== '' && c !== '.');
    let cur = '/';
    let hops = 0;
    while (comps.length > 0) {
      const c = comps.shift()!;
      if (c === '..') { cur = path.dirname(cur); continue; }
      const cand = cur === '/' ? '/' + c : cur + '/' + c;
      const st = await this.lstat(cand);
      if (!st) return null;
      if (st.isSymbolicLink()) {
        if (++hops > 40) return null;
        (comps.length === 0 ? w.fileLinks : w.dirLinks).push(cand);
        const t = await this.readlink(cand);
        if (t.startsWith('/')) cur = '/';
        comps = [...t.split('/').filter((x) => x !== '' && x !== '.'), ...comps];
      } else {
        if (comps.length > 0 && !st.isDirectory()) return null;
        cur = cand;
      }
    }
    w.final = cur;
    return w;
  }
  /** physical parent + basename (how an image file list entry maps onto the host) */
  async canonParent(p: string): Promise<string> {
    const dir = path.dirname(p);
    const w = await this.walk(dir);
    return w ? path.join(w.final, path.basename(p)) : p;
  }
}

// ---------------------------------------------------------------- the closure

const PKG_SKIP = ['/usr/share/doc/', '/usr/share/man/', '/usr/share/locale/', '/usr/share/lintian/'];

async function readHead(p: string, n: number): Promise<Buffer> {
  const fh = await fs.open(p, 'r');
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** `#!/usr/bin/env -S python3 -u` → ['/usr/bin/env', '-S', 'python3', '-u'] */
export function parseShebang(head: Buffer): string[] | null {
  if (head.length < 2 || head[0] !== 0x23 || head[1] !== 0x21) return null;
  let end = head.indexOf(0x0a);
  if (end < 0) end = head.length;
  const line = head.subarray(2, end).toString('utf8').replace(/\r$/, '').trim();
  if (line === '') return null;
  return line.split(/[ \t]+/);
}

/** the program `env` will run: skip env's options and NAME=VALUE assignments */
export function envTarget(args: string[]): string | undefined {
  const a = args.flatMap((x) => x.split(/[ \t]+/)).filter(Boolean);
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    if (x === '-S' || x === '--split-string' || x === '-i' || x === '--ignore-environment' || x === '-0' || x === '--') continue;
    if (x === '-u' || x === '--unset' || x === '-C' || x === '--chdir') { i++; continue; }
    if (x.startsWith('-S')) return envTarget([x.slice(2), ...a.slice(i + 1)]);
    if (x.startsWith('-')) continue;
    if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(x)) continue;
    return x;
  }
  return undefined;
}

function findInPath(name: string, PATH: string): string | undefined {
  for (const d of PATH.split(':')) {
    if (!d.startsWith('/')) continue;
    const p = path.join(d, name);
    try {
      if (!statSync(p).isFile()) continue;
      accessSync(p, FSC.X_OK);
      return p;
    } catch { /* next */ }
  }
  return undefined;
}

async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  const worker = async () => { while (i < items.length) { const x = items[i++]!; await fn(x); } };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}

/**
 * The libraries ldd lists for one file: found ones as paths, missing ones as sonames (none for a script
 * or a static program). Which MPI a program needs is read from these (mpi/detect.ts).
 */
export async function lddLibs(file: string): Promise<string[]> {
  let out;
  try {
    out = await execa('ldd', [file], { reject: false, env: { LC_ALL: 'C' }, stripFinalNewline: false });
  } catch (e) {
    throw new SymError('ESYM_STAGE_TOOL_MISSING', {
      message: `cannot run ldd to find the shared libraries of ${file}`,
      fix: 'install the libc-bin package (it provides ldd) on this host',
      exitCode: EXIT.environment,
      cause: e,
    });
  }
  const r = parseLdd(`${out.stdout}\n${out.stderr}`);
  return [...r.paths, ...r.missing];
}

export interface ClosureOptions {
  /** absolute paths present in the guest's root image */
  imageFiles: Set<string>;
  /** more host files to ship with their chains (and ldd closure when ELF) */
  extraFiles?: string[];
  /** PATH used for `#!/usr/bin/env NAME` (default: process.env.PATH) */
  PATH?: string;
}

export async function programClosure(programs: string[], opts: ClosureOptions): Promise<Closure> {
  const fsx = new Fs();
  const image = opts.imageFiles;
  const PATH = opts.PATH ?? process.env.PATH ?? DEFAULT_PATH;
  const notes: string[] = [];
  const note = (s: string) => { if (!notes.includes(s)) notes.push(s); };

  // image paths as the host sees them (e.g. /lib/x/libc.so.6 and /usr/lib/x/libc.so.6 are the same file)
  const imageCanon = new Set<string>();
  const imageDirs = new Set<string>();
  {
    const dirCanon = new Map<string, Promise<string>>();
    await pool([...image], 16, async (p) => {
      const d = path.dirname(p);
      let c = dirCanon.get(d);
      if (!c) { c = fsx.walk(d).then((w) => (w ? w.final : d)); dirCanon.set(d, c); }
      imageCanon.add(path.join(await c, path.basename(p)));
      for (let a = d; a !== '/' && !imageDirs.has(a); a = path.dirname(a)) imageDirs.add(a);
    });
  }
  const inImage = (p: string) => image.has(p) || imageCanon.has(p);

  const ship = new Set<string>();
  const shipDirLinks = new Set<string>();
  const regular = new Map<string, number>(); // shipped regular file -> size
  let skippedImage = 0;

  /** add a path with its whole symlink chain; returns the physical final path (null if missing) */
  const addPath = async (p: string, why: string): Promise<string | null> => {
    const w = await fsx.walk(p);
    if (!w) { note(`${p} (${why}) does not exist or is a dangling symlink: not shipped`); return null; }
    const finalInImage = inImage(w.final);
    for (const d of w.dirLinks) {
      if (image.has(d) || imageDirs.has(d)) {
        continue;
      }
      if (!shipDirLinks.has(d)) {
        shipDirLinks.add(d);
        note(`directory symlink ${d} -> ${await fsx.readlink(d)} is shipped: the image has nothing at that path`);
      }
    }
    for (const l of w.fileLinks) {
      if (inImage(l) && finalInImage) { skippedImage++; break; } // the image has this link and its target
      if (inImage(l)) note(`${l} is in the image but its host target ${w.final} is not: the host's link overrides it`);
      ship.add(l);
    }
    const st = await fsx.lstat(w.final);
    if (!st || !st.isFile()) { note(`${p} resolves to ${w.final}, which is not a regular file: not shipped`); return null; }
    if (finalInImage) skippedImage++;
    else if (!regular.has(w.final)) { regular.set(w.final, st.size); ship.add(w.final); }
    return w.final;
  };

  const lddDone = new Set<string>();
  const ldd = async (literal: string, physical: string, owner: string, strict: boolean) => {
    if (lddDone.has(physical)) return;
    lddDone.add(physical);
    let out;
    try {
      out = await execa('ldd', [literal], { reject: false, env: { LC_ALL: 'C' }, stripFinalNewline: false });
    } catch (e) {
      throw new SymError('ESYM_STAGE_TOOL_MISSING', {
        message: `cannot run ldd to find the shared libraries of ${literal}`,
        fix: 'install the libc-bin package (it provides ldd) on this host',
        exitCode: EXIT.environment,
        cause: e,
      });
    }
    const r = parseLdd(`${out.stdout}\n${out.stderr}`);
    if (r.isStatic) { note(`${literal} is statically linked: no libraries needed`); return; }
    if (r.missing.length > 0) {
      if (strict) {
        throw new SymError('ESYM_APP_LIB_MISSING', {
          message: `${owner} needs ${r.missing.join(', ')}, which ldd cannot find on this host`,
          field: 'program',
          value: owner,
          fix: `install the package that provides ${r.missing[0]}, or set LD_LIBRARY_PATH / link with -Wl,-rpath so that \`ldd ${literal}\` finds it`,
          exitCode: EXIT.notFound,
          details: { program: owner, missing: r.missing },
        });
      }
      note(`${literal} (from ${owner}) needs ${r.missing.join(', ')}, not found on this host: it will fail if used`);
    }
    for (const w of r.warnings) note(`ldd ${literal}: ${w}`);
    for (const lib of r.paths) {
      await addPath(lib, `library of ${literal}`);
      const dir = path.dirname(lib);
      if (process.env.LD_LIBRARY_PATH?.split(':').includes(dir)) {
        note(`${lib} was found through LD_LIBRARY_PATH: the ranks need LD_LIBRARY_PATH=${dir} in the guest too`);
      }
    }
  };

  const isElf = (b: Buffer) => b.length >= 4 && b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46;

  const addExecutable = async (p: string, owner: string, depth: number, strict: boolean): Promise<string | null> => {
    const physical = await addPath(p, owner === p ? 'program' : `needed by ${owner}`);
    if (!physical) {
      if (strict) {
        throw new SymError('ESYM_APP_NOT_FOUND', {
          message: `${p} (${owner === p ? 'the program' : `interpreter of ${owner}`}) does not exist on this host`,
          field: 'program', value: owner, exitCode: EXIT.notFound,
          fix: owner === p ? 'check the program path' : `install ${p} or fix the #! line of ${owner}`,
        });
      }
      return null;
    }
    const head = await readHead(physical, 512);
    const sb = parseShebang(head);
    if (sb) {
      if (depth >= 4) { note(`${p}: interpreter chain too deep, stopped`); return physical; }
      const interp = sb[0]!;
      if (!interp.startsWith('/')) { note(`${p}: #! interpreter "${interp}" is not an absolute path`); return physical; }
      await addExecutable(interp, p, depth + 1, strict);
      if (path.basename(interp) === 'env') {
        const name = envTarget(sb.slice(1));
        if (name) {
          const found = name.includes('/') ? path.resolve(name) : findInPath(name, PATH);
          if (found) await addExecutable(found, p, depth + 1, strict);
          else if (strict) {
            throw new SymError('ESYM_APP_NOT_FOUND', {
              message: `${p} runs "${name}" through ${interp}, but "${name}" is not in PATH on this host`,
              field: 'program', value: p, exitCode: EXIT.notFound,
              fix: `install ${name} or fix the #! line of ${p}`,
            });
          }
        }
      }
    } else if (isElf(head)) {
      await ldd(p, physical, owner, strict);
    }
    return physical;
  };

  // which package owns each program
  const aliases = await mergedUsrAliases();
  const progPhysical: { prog: string; physical: string }[] = [];
  for (const prog0 of programs) {
    const prog = path.resolve(prog0);
    const physical = await addExecutable(prog, prog, 0, true);
    if (physical) progPhysical.push({ prog, physical });
  }
  const packages = new Set<string>();
  const dpkgOk = await hasDpkg();
  if (!dpkgOk && progPhysical.length > 0) note('dpkg is not available: package data files of the programs are not included');
  if (dpkgOk) {
    for (const { prog, physical } of progPhysical) {
      const queries = [...new Set([prog, physical].flatMap((q) => [q, ...aliases(q)]))];
      const out = await execa('dpkg', ['-S', ...queries], { reject: false, env: { LC_ALL: 'C' } });
      const owners = new Set<string>();
      for (const pk of parseDpkgS(out.stdout).values()) for (const x of pk) owners.add(x);
      if (owners.size === 0) continue;
      for (const pkg of owners) {
        if (packages.has(pkg)) continue;
        packages.add(pkg);
        const lst = await execa('dpkg', ['-L', pkg], { reject: false, env: { LC_ALL: 'C' } });
        let docs = 0;
        const elfs: { p: string; physical: string }[] = [];
        for (const f of lst.stdout.split('\n')) {
          if (!f.startsWith('/') || f === '/.') continue;
          if (PKG_SKIP.some((s) => f.startsWith(s))) { docs++; continue; }
          const st = await fsx.lstat(f);
          if (!st || st.isDirectory()) continue;
          if (!st.isFile() && !st.isSymbolicLink()) continue;
          if (st.isSymbolicLink()) {
            const w = await fsx.walk(f);
            const fst = w ? await fsx.lstat(w.final) : null;
            if (!fst || !fst.isFile()) continue; // links to directories / dangling: not data
          }
          const ph = await addPath(f, `file of package ${pkg}`);
          if (ph && ph !== physical) {
            const head = await readHead(ph, 4).catch(() => Buffer.alloc(0));
            if (isElf(head)) elfs.push({ p: f, physical: ph });
          }
        }
        if (docs > 0) note(`package ${pkg}: ${docs} documentation/man/locale files not shipped`);
        await pool(elfs, 2, (e) => ldd(e.p, e.physical, `${prog} (package ${pkg})`, false));
      }
    }
  }

  for (const x of opts.extraFiles ?? []) {
    const p = path.resolve(x);
    const ph = await addPath(p, 'extra file');
    if (ph) {
      const head = await readHead(ph, 4).catch(() => Buffer.alloc(0));
      if (isElf(head)) await ldd(p, ph, p, false);
    }
  }

  if (skippedImage > 0) note(`${skippedImage} needed files are already in the guest image: not shipped`);
  note('libraries loaded with dlopen() at run time are not detected; add them with extraFiles');
  const files = [...[...shipDirLinks].sort(), ...[...ship].sort()];
  let bytes = 0;
  for (const s of regular.values()) bytes += s;
  return { files, bytes, packages: [...packages].sort(), notes };
}

let dpkgCache: Promise<boolean> | undefined;
function hasDpkg(): Promise<boolean> {
  dpkgCache ??= execa('dpkg', ['--version'], { reject: false }).then((r) => r.exitCode === 0, () => false);
  return dpkgCache;
}

/** merged-/usr: /bin -> usr/bin etc.; dpkg's database may know a file under either name */
async function mergedUsrAliases(): Promise<(p: string) => string[]> {
  const pairs: [string, string][] = [];
  for (const d of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    try {
      const t = await fs.readlink('/' + d);
      if (t === 'usr/' + d || t === '/usr/' + d) pairs.push(['/' + d + '/', '/usr/' + d + '/']);
    } catch { /* not a symlink */ }
  }
  return (p) => {
    const r: string[] = [];
    for (const [a, b] of pairs) {
      if (p.startsWith(a)) r.push(b + p.slice(a.length));
      if (p.startsWith(b)) r.push(a + p.slice(b.length));
    }
    return r;
  };
}
