// `symrun image debian`: a real Debian root (debootstrap --variant=minbase from the mirror the
// machine's apt uses, with Open MPI and the few tools the guest agent runs), symrun's guest agent
// installed into it (image/agent.ts), made into a qcow2 disk (image/disk.ts). docs/images.md.
//
// Cached by its inputs under ${cacheDir()}/debian/:
//   tree-<h>/   the debootstrap tree; h = sha256 of (builder, mirror, suite, variant, packages)
//   <d>/debian.qcow2 (+ .symrun.json)   the disk; d = sha256 of (h, agent inputs or "no agent", format)
// The agent inputs are the guest agent's compiled files, node-pty, the node binary and init.sh, so a
// rebuilt agent gives a new disk from the same tree (seconds), and a new package list a new tree.
// Entries appear by rename only; a directory named by its hash is always complete.
// Needs root (debootstrap chroots and keeps file owners).
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { cacheDir } from '../defaults.js';
import { run } from './exec.js';
import { hostPaths, walk, hashTree, hashFile, nodePtyFilter, SCRIPT_NAMES, canonicalJson } from './inputs.js';
import { debianMirror, osCodename, type AptFile } from './apt-sources.js';
import { installAgent } from './agent.js';
import { makeDisk, diskManifestPath, type DiskFormat } from './disk.js';

export const DEBIAN_BUILDER = 'symrun-debian-1';

/** What the guest needs from the distribution: Open MPI, `ip`, `arping`, `modprobe`. */
export const DEBIAN_PACKAGES = ['openmpi-bin', 'iproute2', 'iputils-arping', 'kmod'] as const;

export interface DebianOpts {
  /** install symrun's guest agent (default true; false makes the "broken image" of the tests) */
  agent?: boolean;
  mirror?: string;
  suite?: string;
  packages?: readonly string[];
  format?: DiskFormat;
  /** copy the disk (and its side file) here as well */
  out?: string;
  signal?: AbortSignal;
  onProgress?: (s: string) => void;
}

export interface DebianImage {
  disk: string;
  manifest: string;
  mirror: string;
  suite: string;
  packages: string[];
  builtNow: { tree: boolean; disk: boolean };
  ms: { debootstrap?: number; agent?: number; disk?: number; total: number };
}

const sha = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

/** The apt source files of this machine (sources.list, then sources.list.d/ in name order). */
export function readAptFiles(root = '/etc/apt'): AptFile[] {
  const out: AptFile[] = [];
  const one = (file: string) => { try { out.push({ file, text: fs.readFileSync(file, 'utf8') }); } catch { /* none */ } };
  one(path.join(root, 'sources.list'));
  let names: string[] = [];
  try { names = fs.readdirSync(path.join(root, 'sources.list.d')).sort(); } catch { /* none */ }
  for (const n of names) if (n.endsWith('.list') || n.endsWith('.sources')) one(path.join(root, 'sources.list.d', n));
  return out;
}

/** Mirror and suite to debootstrap from: given, or the host's (os-release codename, apt's source for it). */
export function debianSource(opts: { mirror?: string; suite?: string }): { mirror: string; suite: string } {
  let suite = opts.suite;
  if (!suite) {
    let osr = '';
    try { osr = fs.readFileSync('/etc/os-release', 'utf8'); } catch { /* none */ }
    suite = osCodename(osr);
    if (!suite) {
      throw new SymError('ESYM_IMAGE_DEBOOTSTRAP', {
        message: 'cannot tell the Debian release of this machine: /etc/os-release has no VERSION_CODENAME',
        fix: 'name it: `symrun image debian --suite bookworm`',
        exitCode: EXIT.usage,
      });
    }
  }
  if (opts.mirror) return { mirror: opts.mirror, suite };
  const src = debianMirror(readAptFiles(), suite);
  if (!src) {
    throw new SymError('ESYM_IMAGE_DEBOOTSTRAP', {
      message: `no apt source for suite ${suite} with the main component in /etc/apt/sources.list or /etc/apt/sources.list.d/`,
      value: suite,
      fix: 'name the mirror: `symrun image debian --mirror URL` (a Debian mirror such as the one apt uses)',
      exitCode: EXIT.usage,
    });
  }
  return { mirror: src.uri, suite };
}

async function agentInputsHash(): Promise<string> {
  const p = hostPaths();
  const dist = fs.existsSync(p.guestDist) ? await walk(p.guestDist) : [];
  const pty = fs.existsSync(p.nodePty) ? await walk(p.nodePty, nodePtyFilter) : [];
  const code = ['agent.js', 'disk.js', 'debian.js'].map((f) => { try { return fs.readFileSync(new URL(`./${f}`, import.meta.url), 'utf8'); } catch { return ''; } }).join('\0');
  return sha(canonicalJson({
    dist: await hashTree(p.guestDist, dist),
    pty: await hashTree(p.nodePty, pty),
    node: await hashFile(p.node),
    init: sha(await fsp.readFile(path.join(p.scriptsDir, SCRIPT_NAMES.init), 'utf8')),
    code: sha(code),
  }));
}

export function debianDir(): string {
  return path.join(cacheDir(), 'debian');
}

/** Build (or reuse) a Debian disk image. */
export async function buildDebian(opts: DebianOpts = {}): Promise<DebianImage> {
  const t0 = Date.now();
  const progress = opts.onProgress ?? (() => {});
  const agent = opts.agent ?? true;
  const format = opts.format ?? 'qcow2';
  const { mirror, suite } = debianSource(opts);
  const packages = [...(opts.packages ?? DEBIAN_PACKAGES)].sort();
  const root = debianDir();
  await fsp.mkdir(root, { recursive: true });
  const ms: DebianImage['ms'] = { total: 0 };
  const built = { tree: false, disk: false };

  const treeHash = sha(canonicalJson({ builder: DEBIAN_BUILDER, mirror, suite, variant: 'minbase', packages }));
  const tree = path.join(root, `tree-${treeHash.slice(0, 32)}`);
  if (!fs.existsSync(path.join(tree, 'etc', 'debian_version'))) {
    if (process.getuid?.() !== 0) {
      throw new SymError('ESYM_IMAGE_DEBOOTSTRAP', {
        message: 'debootstrap needs root (it chroots into the new tree and keeps file owners)',
        fix: 'run `sudo symrun image debian`, or build once as root and share the disk (docs/images.md)',
        exitCode: EXIT.environment,
      });
    }
    const tmp = `${tree}.tmp-${process.pid}`;
    await fsp.rm(tmp, { recursive: true, force: true });
    progress(`debootstrap --variant=minbase --include=${packages.join(',')} ${suite} ${mirror}`);
    const t = Date.now();
    try {
      const r = await run('debootstrap', ['--variant=minbase', `--include=${packages.join(',')}`, suite, tmp, mirror], { signal: opts.signal, allowFail: true });
      if (r.code !== 0) {
        throw new SymError('ESYM_IMAGE_DEBOOTSTRAP', {
          message: `debootstrap ${suite} from ${mirror} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`,
          value: mirror,
          fix: 'check that the mirror is reachable (apt-get update works) and the packages exist in the suite; `bash scripts/setup` installs debootstrap',
          details: { log: (r.stdout + r.stderr).slice(-4000) },
          exitCode: EXIT.environment,
        });
      }
      // the downloaded .debs are not needed in the guest
      for (const f of await fsp.readdir(path.join(tmp, 'var/cache/apt/archives')).catch(() => [] as string[])) {
        if (f.endsWith('.deb')) await fsp.rm(path.join(tmp, 'var/cache/apt/archives', f), { force: true });
      }
      await fsp.rm(tree, { recursive: true, force: true });
      await fsp.rename(tmp, tree);
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
    ms.debootstrap = Date.now() - t;
    built.tree = true;
    progress(`debootstrap done in ${(ms.debootstrap / 1000).toFixed(1)} s`);
  }

  const diskHash = sha(canonicalJson({ tree: treeHash, agent: agent ? await agentInputsHash() : 'no agent', format }));
  const dir = path.join(root, diskHash.slice(0, 32));
  const disk = path.join(dir, `debian.${format}`);
  if (!fs.existsSync(diskManifestPath(disk)) || !fs.existsSync(disk)) {
    const work = path.join(root, `.work-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    try {
      progress(`copying the tree for the disk (cp -a)`);
      await run('cp', ['-a', tree, work], { signal: opts.signal });
      if (agent) {
        const t = Date.now();
        await installAgent(work, { signal: opts.signal, onProgress: (s) => progress(`install-agent: ${s}`) });
        ms.agent = Date.now() - t;
      }
      const tmpDir = `${dir}.tmp-${process.pid}`;
      await fsp.rm(tmpDir, { recursive: true, force: true });
      const r = await makeDisk(work, path.join(tmpDir, path.basename(disk)), { format, agent, origin: { debootstrap: { mirror, suite, variant: 'minbase', packages } }, signal: opts.signal, onProgress: progress });
      ms.disk = r.ms;
      await fsp.rm(dir, { recursive: true, force: true });
      await fsp.rename(tmpDir, dir);
      built.disk = true;
    } finally {
      await fsp.rm(work, { recursive: true, force: true });
    }
  }
  if (opts.out) {
    const out = path.resolve(opts.out);
    await fsp.mkdir(path.dirname(out), { recursive: true });
    await run('cp', ['--reflink=auto', disk, `${out}.tmp-${process.pid}`], { signal: opts.signal });
    await fsp.rename(`${out}.tmp-${process.pid}`, out);
    await fsp.copyFile(diskManifestPath(disk), diskManifestPath(out));
  }
  ms.total = Date.now() - t0;
  const final = opts.out ? path.resolve(opts.out) : disk;
  return { disk: final, manifest: diskManifestPath(final), mirror, suite, packages, builtNow: built, ms };
}
