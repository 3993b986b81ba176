// The inputs of a guest image and their content hash. Must be quick (well under 2 s): big host files
// (node, vmlinuz) are hashed once and remembered by (size, mtime, inode, ctime).
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { IMAGE_DEFAULTS, repoRoot } from '../defaults.js';
import { run } from './exec.js';
import { finalizeShimSha } from '../mpi/finalize-shim.js';

/** Bump when the builder's output changes for the same inputs. */
export const BUILDER_VERSION = 'symrun-image-2';

export const SCRIPT_NAMES = { initrd: 'initrd-init.sh', init: 'init.sh' } as const;

export interface HostPaths {
  repo: string;
  guestDist: string;
  nodePty: string;
  node: string;
  busybox: string;
  scriptsDir: string;
}

export function hostPaths(): HostPaths {
  const repo = repoRoot();
  return {
    repo,
    guestDist: path.join(repo, 'dist', 'guest'),
    nodePty: path.join(repo, 'node_modules', 'node-pty'),
    node: process.env.SYMRUN_GUEST_NODE || '/usr/bin/node',
    busybox: fs.existsSync('/usr/bin/busybox') ? '/usr/bin/busybox' : '/bin/busybox',
    scriptsDir: path.join(repo, 'guest', 'image'),
  };
}

export interface ImageInputs {
  builder: string;
  builderCode?: string;
  scripts: Record<string, string>;
  kernel: { version: string; vmlinuz: string; vmlinuzSha256: string };
  packages: Record<string, string>;
  node: { path: string; sha256: string };
  busybox: { path: string; sha256: string };
  guestDist: { present: boolean; files: number; sha256: string };
  nodePty: { present: boolean; files: number; sha256: string };
  /** passthrough: only in images for vfio jobs (so other images' hashes never depend on it) */
  modules: { initrd: readonly string[]; root: readonly string[]; passthrough?: readonly string[] };
  /** only in images for MPICH programs (so an Open MPI image's hash never depends on MPICH) */
  mpich?: { packages: Record<string, string>; finalizeShimSha256: string };
}

const sha256 = (b: string | Buffer) => crypto.createHash('sha256').update(b).digest('hex');

// ---- file hashing with a stat-keyed memo ---------------------------------------------------

type Memo = Record<string, { key: string; sha: string }>;
const memo: Memo = {};
let memoFile: string | undefined;
let memoLoaded = false;
let memoDirty = false;

export function setHashMemoFile(file: string): void {
  if (memoFile !== file) { memoFile = file; memoLoaded = false; }
}

function loadMemo(): void {
  if (memoLoaded || !memoFile) return;
  memoLoaded = true;
  try {
    const m = JSON.parse(fs.readFileSync(memoFile, 'utf8')) as Memo;
    for (const [k, v] of Object.entries(m)) if (!memo[k]) memo[k] = v;
  } catch { /* none yet */ }
}

export async function saveHashMemo(): Promise<void> {
  if (!memoFile || !memoDirty) return;
  const tmp = `${memoFile}.${process.pid}.${crypto.randomBytes(4).toString('hex')}`;
  try {
    await fsp.writeFile(tmp, JSON.stringify(memo));
    await fsp.rename(tmp, memoFile);
    memoDirty = false;
  } catch { await fsp.rm(tmp, { force: true }); }
}

/** sha256 of a file's content; big files are remembered by stat so a second call is instant. */
export async function hashFile(file: string): Promise<string> {
  const st = await fsp.stat(file);
  if (st.size < 1 << 20) return sha256(await fsp.readFile(file));
  loadMemo();
  const key = `${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.ino}:${st.dev}`;
  const m = memo[file];
  if (m && m.key === key) return m.sha;
  const h = crypto.createHash('sha256');
  await new Promise<void>((resolve, reject) => {
    fs.createReadStream(file).on('data', (b) => h.update(b)).on('end', resolve).on('error', reject);
  });
  const sha = h.digest('hex');
  memo[file] = { key, sha };
  memoDirty = true;
  return sha;
}

/** Every regular file / symlink under dir (relative paths, sorted), following no symlinks. */
export async function walk(dir: string, filter: (rel: string, isDir: boolean) => boolean = () => true): Promise<string[]> {
  const out: string[] = [];
  const rec = async (rel: string): Promise<void> => {
    const ents = await fsp.readdir(path.join(dir, rel), { withFileTypes: true });
    for (const e of ents) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) { if (filter(r, true)) await rec(r); }
      else if (filter(r, false)) out.push(r);
    }
  };
  await rec('');
  return out.sort();
}

/** Hash of a tree: relative path, kind and content of every entry. */
export async function hashTree(dir: string, files: readonly string[]): Promise<string> {
  const h = crypto.createHash('sha256');
  for (const rel of files) {
    const abs = path.join(dir, rel);
    const st = await fsp.lstat(abs);
    if (st.isSymbolicLink()) h.update(`L ${rel} ${await fsp.readlink(abs)}\n`);
    else h.update(`F ${rel} ${st.mode & 0o111 ? 'x' : '-'} ${await hashFile(abs)}\n`);
  }
  return h.digest('hex');
}

/** node-pty files shipped to the guest (relative to the package dir). */
export function nodePtyFilter(rel: string, isDir: boolean): boolean {
  if (isDir) {
    return rel === 'lib' || rel.startsWith('lib/') || rel === 'build' || rel === 'build/Release' || rel.startsWith('build/Release/');
  }
  if (rel === 'package.json') return true;
  if (rel.startsWith('lib/')) return !/\.test\.js(\.map)?$/.test(rel) && !rel.endsWith('.map');
  if (rel.startsWith('build/Release/')) return !/\.(o|d|a|mk|stamp)$/.test(rel) && !rel.includes('/obj.target/') && !rel.includes('/.deps/');
  return false;
}

// ---- kernel ----------------------------------------------------------------------------------

function cmpVersion(a: string, b: string): number {
  const pa = a.split(/[.-]/), pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '', y = pb[i] ?? '';
    const nx = Number(x), ny = Number(y);
    const c = !Number.isNaN(nx) && !Number.isNaN(ny) && x !== '' && y !== '' ? nx - ny : x.localeCompare(y);
    if (c !== 0) return c;
  }
  return 0;
}

/** Newest /boot/vmlinuz-<ver> that also has /lib/modules/<ver>/modules.dep. */
export function findKernel(): { version: string; vmlinuz: string; modulesDir: string } {
  const forced = process.env.SYMRUN_GUEST_KERNEL_VERSION;
  let names: string[] = [];
  try { names = fs.readdirSync('/boot'); } catch { /* none */ }
  const versions = names
    .filter((n) => n.startsWith('vmlinuz-'))
    .map((n) => n.slice('vmlinuz-'.length))
    .filter((v) => fs.existsSync(`/lib/modules/${v}/modules.dep`))
    .filter((v) => !forced || v === forced)
    .sort(cmpVersion);
  const version = versions.at(-1);
  if (!version) {
    throw new SymError('ESYM_IMAGE_HOST_KERNEL', {
      message: forced
        ? `guest kernel ${forced} (SYMRUN_GUEST_KERNEL_VERSION) not found: need /boot/vmlinuz-${forced} and /lib/modules/${forced}`
        : 'no guest kernel found: need /boot/vmlinuz-<version> and /lib/modules/<version>/modules.dep',
      fix: 'install Debian\'s kernel package with `bash scripts/setup` (apt-get install linux-image-amd64)',
      exitCode: EXIT.environment,
    });
  }
  return { version, vmlinuz: `/boot/vmlinuz-${version}`, modulesDir: `/lib/modules/${version}` };
}

// ---- packages ---------------------------------------------------------------------------------

/** Packages whose versions go into the hash: the MPI packages, their direct dependencies, and the base. */
async function packageVersions(kernelVersion: string, signal?: AbortSignal): Promise<Record<string, string>> {
  const mpi = [...IMAGE_DEFAULTS.mpiPackages];
  return versionsWithDeps(mpi, ['busybox-static', 'iproute2', 'iputils-arping', 'libc6', 'libc-bin',
    'libstdc++6', 'libgcc-s1', `linux-image-${kernelVersion}`], (missing) => new SymError('ESYM_IMAGE_HOST_PACKAGE', {
    message: `the guest image needs the Debian packages ${missing.join(', ')}, which are not installed`,
    fix: 'install the host packages with `bash scripts/setup` (apt-get install openmpi-bin)',
    value: missing,
    exitCode: EXIT.environment,
  }), signal);
}

/** The MPICH packages and their direct dependencies (an image for an MPICH program). */
async function mpichVersions(signal?: AbortSignal): Promise<Record<string, string>> {
  return versionsWithDeps([...IMAGE_DEFAULTS.mpichPackages], [], (missing) => new SymError('ESYM_MPI_MISSING', {
    message: `the program is linked against MPICH, and the guest image needs the Debian packages ${missing.join(', ')} from this host, which are not installed`,
    field: 'mpi.implementation',
    value: 'mpich',
    fix: 'install them with `bash scripts/setup` (apt-get install mpich libmpich-dev), or run an Open MPI program',
    exitCode: EXIT.environment,
  }), signal);
}

async function versionsWithDeps(mpi: string[], base: string[], onMissing: (missing: string[]) => SymError, signal?: AbortSignal): Promise<Record<string, string>> {
  const dep = await run('dpkg-query', ['-W', '-f', '${Package}\\t${Depends}\\t${Pre-Depends}\\n', ...mpi], { signal, allowFail: true });
  const missing = mpi.filter((p) => !new RegExp(`^${p.replace(/[.+]/g, '\\$&')}\\t`, 'm').test(dep.stdout));
  if (missing.length) throw onMissing(missing);
  const names = new Set<string>([...mpi, ...base]);
  for (const line of dep.stdout.split('\n')) {
    const [, d1 = '', d2 = ''] = line.split('\t');
    for (const alt of `${d1},${d2}`.split(',')) {
      const first = alt.split('|')[0]!.trim().split(/[\s(]/)[0]!.replace(/:.*$/, '');
      if (first) names.add(first);
    }
  }
  const q = await run('dpkg-query', ['-W', '-f', '${Package}\\t${Version}\\t${db:Status-Abbrev}\\n', ...[...names].sort()], { signal, allowFail: true });
  const versions: Record<string, string> = {};
  for (const line of q.stdout.split('\n')) {
    const [p, v, s] = line.split('\t');
    if (p && v && s?.startsWith('ii')) versions[p] = v;
  }
  return Object.fromEntries(Object.entries(versions).sort(([a], [b]) => a.localeCompare(b)));
}

// ---- all inputs --------------------------------------------------------------------------------

export interface ComputedInputs {
  inputs: ImageInputs;
  hash: string;
  kernel: { version: string; vmlinuz: string; modulesDir: string };
  paths: HostPaths;
  guestDistFiles: string[];
  nodePtyFiles: string[];
  scripts: Record<string, string>;
}

export interface InputOpts {
  /** an image for MPICH programs: MPICH's packages too (their versions go into the hash) */
  mpich?: boolean;
  /** an image for vfio jobs: the VF drivers too (IMAGE_DEFAULTS.passthroughModules) */
  passthrough?: boolean;
}

export async function computeInputs(signal?: AbortSignal, opts: InputOpts = {}): Promise<ComputedInputs> {
  const paths = hostPaths();
  const kernel = findKernel();
  for (const [what, p] of [['node', paths.node], ['busybox', paths.busybox]] as const) {
    if (!fs.existsSync(p)) {
      throw new SymError('ESYM_IMAGE_HOST_TOOL', {
        message: `the guest image needs ${what} at ${p}, which does not exist`,
        fix: 'install the host packages with `bash scripts/setup`',
        value: p,
        exitCode: EXIT.environment,
      });
    }
  }
  const scripts: Record<string, string> = {};
  for (const n of Object.values(SCRIPT_NAMES)) {
    const f = path.join(paths.scriptsDir, n);
    try { scripts[n] = await fsp.readFile(f, 'utf8'); } catch (e) {
      throw new SymError('ESYM_IMAGE_SOURCE', {
        message: `guest init script ${f} is missing`,
        fix: 'restore guest/image/ from the symrun repository',
        value: f,
        exitCode: EXIT.environment,
        cause: e,
      });
    }
  }
  let vmlinuzSha: string;
  try { vmlinuzSha = await hashFile(kernel.vmlinuz); } catch (e) {
    throw new SymError('ESYM_IMAGE_HOST_KERNEL', {
      message: `cannot read the guest kernel ${kernel.vmlinuz}: ${(e as Error).message}`,
      fix: 'run the image build as a user that can read /boot (Debian makes vmlinuz root-only), or build once as root',
      value: kernel.vmlinuz,
      exitCode: EXIT.environment,
      cause: e,
    });
  }
  const [packages, mpichPackages, nodeSha, busyboxSha, guestDistFiles, nodePtyFiles] = await Promise.all([
    packageVersions(kernel.version, signal),
    opts.mpich ? mpichVersions(signal) : Promise.resolve(undefined),
    hashFile(paths.node),
    hashFile(paths.busybox),
    fs.existsSync(paths.guestDist) ? walk(paths.guestDist) : Promise.resolve([] as string[]),
    fs.existsSync(paths.nodePty) ? walk(paths.nodePty, nodePtyFilter) : Promise.resolve([] as string[]),
  ]);
  const [distSha, ptySha] = await Promise.all([hashTree(paths.guestDist, guestDistFiles), hashTree(paths.nodePty, nodePtyFiles)]);
  const inputs: ImageInputs = {
    builder: BUILDER_VERSION,
    // any change to the builder's own code gives a new image (what goes into the root is decided there)
    builderCode: sha256(['build.js', 'inputs.js', 'modules.js'].map((f) => { try { return fs.readFileSync(new URL(`./${f}`, import.meta.url), 'utf8'); } catch { return ''; } }).join('\0')),
    scripts: Object.fromEntries(Object.entries(scripts).map(([k, v]) => [k, sha256(v)])),
    kernel: { version: kernel.version, vmlinuz: kernel.vmlinuz, vmlinuzSha256: vmlinuzSha },
    packages,
    node: { path: paths.node, sha256: nodeSha },
    busybox: { path: paths.busybox, sha256: busyboxSha },
    guestDist: { present: guestDistFiles.length > 0, files: guestDistFiles.length, sha256: distSha },
    nodePty: { present: nodePtyFiles.length > 0, files: nodePtyFiles.length, sha256: ptySha },
    modules: { initrd: IMAGE_DEFAULTS.initrdModules, root: IMAGE_DEFAULTS.rootModules, ...(opts.passthrough ? { passthrough: IMAGE_DEFAULTS.passthroughModules } : {}) },
    ...(mpichPackages ? { mpich: { packages: mpichPackages, finalizeShimSha256: await finalizeShimSha() } } : {}),
  };
  return { inputs, hash: sha256(canonicalJson(inputs)), kernel, paths, guestDistFiles, nodePtyFiles, scripts };
}

/** JSON with object keys sorted, so equal inputs always give equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
