// Builds one guest image into a directory: vmlinuz, initrd.img, root.ext4, manifest.json.
// No loop mounts: the root is staged in a directory and turned into ext4 by `mke2fs -d`.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { SymError, EXIT } from '../errors.js';
import { IMAGE_DEFAULTS } from '../defaults.js';
import { run, mapLimit, checkAbort } from './exec.js';
import { ComputedInputs, SCRIPT_NAMES, walk, hashTree } from './inputs.js';
import { moduleClosure, parseModulesBuiltin, parseModulesDep, renderModulesDep, moduleName } from './modules.js';
import { FINALIZE_SHIM } from '../mpi/detect.js';
import { buildFinalizeShim } from '../mpi/finalize-shim.js';

export interface BuildOpts {
  onProgress?: (step: string) => void;
  signal?: AbortSignal;
}

export interface BuildResult {
  files: string[];
  aliases: Record<string, string>;
  sizes: Record<string, { bytes: number; allocated: number }>;
  stepsMs: Record<string, number>;
  totalMs: number;
  warnings: string[];
}

const TOP_LEVEL = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];
const SKIP_PKG_FILE = /^\/usr\/share\/(doc|man|lintian|bug)\//;

/** A staging directory mirroring guest paths, remembering where each file came from. */
class Stage {
  /** guest path -> host source of a regular file (for the ELF scan) */
  readonly sources = new Map<string, string>();
  readonly seen = new Set<string>();
  /** guest top-level symlinks, e.g. /bin -> /usr/bin */
  readonly aliases: Record<string, string> = {};

  constructor(readonly root: string) {}

  p(guest: string): string { return path.join(this.root, guest); }

  /** Guest path with the top-level symlinks (merged /usr) resolved. */
  canon(guest: string): string {
    for (const [a, t] of Object.entries(this.aliases)) {
      if (guest === a || guest.startsWith(a + '/')) return t + guest.slice(a.length);
    }
    return guest;
  }

  async mirrorTopLevel(): Promise<void> {
    for (const n of TOP_LEVEL) {
      try {
        const st = await fsp.lstat('/' + n);
        if (st.isSymbolicLink()) {
          const t = await fsp.readlink('/' + n);
          await fsp.mkdir(this.p(path.resolve('/', t)), { recursive: true });
          await fsp.symlink(t, this.p('/' + n));
          this.aliases['/' + n] = path.resolve('/', t);
          this.seen.add('/' + n);
        }
      } catch { /* not on this host */ }
    }
  }

  async mkdir(guest: string, mode = 0o755): Promise<void> {
    const g = this.canon(guest);
    await fsp.mkdir(this.p(g), { recursive: true });
    await fsp.chmod(this.p(g), mode);
  }

  async write(guest: string, content: string | Buffer, mode = 0o644): Promise<void> {
    const g = this.canon(guest);
    await fsp.mkdir(path.dirname(this.p(g)), { recursive: true });
    await fsp.writeFile(this.p(g), content);
    await fsp.chmod(this.p(g), mode);
    this.seen.add(g);
  }

  async symlink(guest: string, target: string): Promise<boolean> {
    const g = this.canon(guest);
    if (this.seen.has(g)) return false;
    try { await fsp.lstat(this.p(g)); return false; } catch { /* free */ }
    await fsp.mkdir(path.dirname(this.p(g)), { recursive: true });
    await fsp.symlink(target, this.p(g));
    this.seen.add(g);
    return true;
  }

  /**
   * Copy a host path to the same guest path (directory part canonicalised with realpath, so
   * /lib/x/libc.so.6 lands in /usr/lib/x/). Symlinks are replicated and their targets copied too.
   */
  async addHost(host: string, required = true): Promise<void> {
    let dir: string;
    try { dir = await fsp.realpath(path.dirname(host)); } catch (e) {
      if (!required) return;
      throw missingHostFile(host, e);
    }
    const g = path.join(dir, path.basename(host));
    if (this.seen.has(g)) return;
    let st: fs.Stats;
    try { st = await fsp.lstat(g); } catch (e) {
      if (!required) return;
      throw missingHostFile(host, e);
    }
    this.seen.add(g);
    if (st.isSymbolicLink()) {
      const t = await fsp.readlink(g);
      await fsp.mkdir(path.dirname(this.p(g)), { recursive: true });
      await fsp.symlink(t, this.p(g));
      await this.addHost(path.resolve(dir, t), false);
    } else if (st.isDirectory()) {
      await fsp.mkdir(this.p(g), { recursive: true });
      await fsp.chmod(this.p(g), st.mode & 0o7777);
    } else if (st.isFile()) {
      await this.copyFile(g, g, st.mode);
    }
  }

  /** Copy a whole host tree (following nothing), to the same guest path. */
  async addHostTree(hostDir: string): Promise<void> {
    if (!fs.existsSync(hostDir)) return;
    await this.addHost(hostDir);
    const real = await fsp.realpath(hostDir);
    for (const rel of await walk(real)) await this.addHost(path.join(real, rel));
  }

  /** Copy a host file to an explicit guest path. */
  async copyFile(host: string, guest: string, mode?: number): Promise<void> {
    const g = this.canon(guest);
    await fsp.mkdir(path.dirname(this.p(g)), { recursive: true });
    await fsp.copyFile(host, this.p(g));
    const m = mode ?? (await fsp.stat(host)).mode;
    await fsp.chmod(this.p(g), m & 0o7777);
    this.seen.add(g);
    this.sources.set(g, host);
  }

  /** Copy a host tree to an explicit guest directory (symlinks copied verbatim). */
  async copyTree(hostDir: string, files: readonly string[], guestDir: string): Promise<void> {
    for (const rel of files) {
      const h = path.join(hostDir, rel);
      const st = await fsp.lstat(h);
      const g = path.posix.join(guestDir, rel);
      if (st.isSymbolicLink()) await this.symlink(g, await fsp.readlink(h));
      else if (st.isFile()) await this.copyFile(h, g, st.mode);
    }
  }
}

function missingHostFile(host: string, cause: unknown): SymError {
  return new SymError('ESYM_IMAGE_HOST_FILE', {
    message: `the guest image needs ${host} from this host, and it is missing`,
    fix: 'install the host packages with `bash scripts/setup`',
    value: host,
    exitCode: EXIT.environment,
    cause,
  });
}

async function isElf(file: string): Promise<boolean> {
  const fh = await fsp.open(file, 'r');
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    return bytesRead === 4 && b.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally { await fh.close(); }
}

/** Shared libraries (absolute host paths) the given ELF files need, via ldd. */
export async function lddClosure(files: readonly string[], signal?: AbortSignal): Promise<{ libs: Set<string>; notFound: Map<string, string[]> }> {
  const libs = new Set<string>();
  const notFound = new Map<string, string[]>();
  const batches: string[][] = [];
  for (let i = 0; i < files.length; i += 40) batches.push(files.slice(i, i + 40));
  const outs = await mapLimit(batches, 2, (b) => run('ldd', b.length === 1 ? [b[0]!, '/dev/null'] : b, { signal, allowFail: true }));
  for (const o of outs) {
    let cur = '';
    for (const line of o.stdout.split('\n')) {
      if (!line.startsWith('\t') && line.endsWith(':')) { cur = line.slice(0, -1); continue; }
      const l = line.trim();
      let m = /^(\S+) => (\/\S+) \(0x[0-9a-f]+\)$/.exec(l);
      if (m) { libs.add(m[2]!); continue; }
      m = /^(\S+) => not found$/.exec(l);
      if (m) { const a = notFound.get(cur) ?? []; a.push(m[1]!); notFound.set(cur, a); continue; }
      m = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(l);
      if (m) libs.add(m[1]!);
    }
  }
  return { libs, notFound };
}

async function decompressModule(src: string, dst: string, signal?: AbortSignal): Promise<void> {
  await fsp.mkdir(path.dirname(dst), { recursive: true });
  if (src.endsWith('.ko')) { await fsp.copyFile(src, dst); return; }
  if (src.endsWith('.gz')) { await pipeline(fs.createReadStream(src), zlib.createGunzip(), fs.createWriteStream(dst)); return; }
  if (src.endsWith('.xz')) { await run('xz', ['-dc', src], { signal, stdoutFile: dst }); return; }
  if (src.endsWith('.zst')) { await run('zstd', ['-dc', src], { signal, stdoutFile: dst }); return; }
  throw new SymError('ESYM_IMAGE_BUILD', { message: `unknown kernel module compression: ${src}`, exitCode: EXIT.runtime });
}
const koName = (rel: string) => rel.replace(/\.ko\.(xz|zst|gz)$/, '.ko');

/** Sum of the space files take (4 KiB blocks), for sizing root.ext4. */
async function treeUsage(dir: string): Promise<{ bytes: number; entries: number }> {
  let bytes = 0, entries = 0;
  const rec = async (d: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      entries++;
      const p = path.join(d, e.name);
      if (e.isDirectory()) { bytes += 4096; await rec(p); }
      else if (e.isFile()) bytes += Math.ceil((await fsp.stat(p)).size / 4096) * 4096;
      else if (e.isSymbolicLink()) { const t = await fsp.readlink(p); if (t.length >= 60) bytes += 4096; }
    }
  };
  await rec(dir);
  return { bytes, entries };
}

/** Pre-order list of every entry (dirs before their content), relative, for cpio. */
async function cpioList(dir: string): Promise<string[]> {
  const out: string[] = ['.'];
  const rec = async (rel: string): Promise<void> => {
    const ents = (await fsp.readdir(path.join(dir, rel), { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
    for (const e of ents) {
      const r = `${rel}/${e.name}`;
      out.push(r);
      if (e.isDirectory()) await rec(r);
    }
  };
  await rec('.');
  return out;
}

async function sizeOf(f: string): Promise<{ bytes: number; allocated: number }> {
  const st = await fsp.stat(f);
  return { bytes: st.size, allocated: st.blocks * 512 };
}

const ETC_FILES: Record<string, string> = {
  '/etc/passwd': 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
  '/etc/group': 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n',
  '/etc/shadow': 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n',
  '/etc/nsswitch.conf': 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n',
  '/etc/hosts': '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n',
  '/etc/hostname': 'symrun\n',
  '/etc/profile': 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/symrun/bin\n',
  '/etc/os-release': 'NAME="symrun guest"\nID=symrun\n',
};

/**
 * Build the image into `outDir` (which must exist and be empty; the caller renames it into place).
 */
export async function buildInto(outDir: string, ci: ComputedInputs, opts: BuildOpts = {}): Promise<BuildResult> {
  const { signal } = opts;
  const progress = opts.onProgress ?? (() => {});
  const warnings: string[] = [];
  const warn = (w: string) => { warnings.push(w); progress(`warning: ${w}`); };
  const stepsMs: Record<string, number> = {};
  const t0 = Date.now();
  let tStep = t0;
  const step = (name: string) => {
    const now = Date.now();
    stepsMs[name] = now - tStep;
    tStep = now;
    checkAbort(signal);
  };

  const { kernel, paths } = ci;
  const rootDir = path.join(outDir, 'stage-root');
  const initrdDir = path.join(outDir, 'stage-initrd');
  const shimHost = path.join(outDir, 'stage-finalize-shim.so');
  const S = new Stage(rootDir);
  await fsp.mkdir(rootDir);
  await fsp.mkdir(initrdDir);

  // ---- root: skeleton ----
  progress('root: skeleton, init, /etc');
  await S.mirrorTopLevel();
  for (const d of ['/dev', '/proc', '/sys', '/run', '/mnt', '/etc', '/opt/symrun/bin', '/usr/local/bin', '/var/log',
    '/.symrun/lower', '/.symrun/rw', '/usr/bin', '/usr/sbin']) await S.mkdir(d);
  await S.mkdir('/tmp', 0o1777);
  await S.mkdir('/var/tmp', 0o1777);
  await S.mkdir('/root', 0o700);
  await S.symlink('/var/run', '/run');
  await S.symlink('/etc/mtab', '/proc/self/mounts');
  await S.write('/sbin/init', ci.scripts[SCRIPT_NAMES.init]!, 0o755);
  for (const [f, c] of Object.entries(ETC_FILES)) await S.write(f, c, f === '/etc/shadow' ? 0o640 : 0o644);
  step('skeleton');

  // ---- root: host binaries ----
  progress('root: busybox, node, iproute2, ldconfig');
  await S.copyFile(paths.busybox, '/usr/bin/busybox', 0o755);
  await S.copyFile(paths.node, '/usr/bin/node', 0o755);
  await S.addHost('/usr/bin/ip', false);
  await S.addHost('/usr/sbin/ip', false);
  if (!S.seen.has('/usr/bin/ip') && !S.seen.has('/usr/sbin/ip')) warn('iproute2 `ip` not found on the host; the guest uses busybox ip');
  await S.addHost('/usr/bin/arping', false);
  await S.addHost('/usr/bin/rdma', false); // iproute2's rdma: Soft-RoCE devices (interconnect.transport: rdma)
  await S.addHost('/usr/bin/tar', false); // GNU tar: stage-out needs -T (busybox tar has no file lists)
  await S.addHost('/usr/sbin/ldconfig');
  step('binaries');

  // ---- root: Open MPI ----
  progress('root: Open MPI packages');
  const dl = await run('dpkg', ['-L', ...IMAGE_DEFAULTS.mpiPackages], { signal, allowFail: true });
  const pkgPaths = dl.stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('/') && l !== '/.' && !SKIP_PKG_FILE.test(l + '/') && !SKIP_PKG_FILE.test(l));
  for (const p of pkgPaths) await S.addHost(p, false);
  for (const a of ['mpirun', 'mpiexec']) await S.addHost(`/usr/bin/${a}`, false);
  await S.addHostTree('/etc/openmpi');
  await S.addHostTree('/usr/share/openmpi');
  // default rsh agent for mpirun in the guest (a command-line --mca plm_rsh_agent still wins)
  const mca = '/etc/openmpi/openmpi-mca-params.conf';
  let mcaText = '';
  try { mcaText = await fsp.readFile(S.p(mca), 'utf8'); } catch { /* none */ }
  await S.write(mca, `${mcaText}${mcaText && !mcaText.endsWith('\n') ? '\n' : ''}# added by the symrun image builder\nplm_rsh_agent = /opt/symrun/bin/symrun-rsh\n`);
  if (!S.seen.has('/usr/bin/mpirun')) warn('/usr/bin/mpirun was not found on the host (update-alternatives?); the guest has only mpirun.openmpi');
  step('openmpi');

  // ---- root: MPICH (only in images for MPICH programs: ci.inputs.mpich) ----
  if (ci.inputs.mpich) {
    progress('root: MPICH packages');
    const ml = await run('dpkg', ['-L', ...IMAGE_DEFAULTS.mpichPackages], { signal, allowFail: true });
    for (const p of ml.stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('/') && l !== '/.' && !SKIP_PKG_FILE.test(l + '/') && !SKIP_PKG_FILE.test(l))) await S.addHost(p, false);
    for (const f of ['/usr/bin/mpiexec.hydra', '/usr/bin/hydra_pmi_proxy']) {
      if (!S.seen.has(f)) throw new SymError('ESYM_MPI_MISSING', { message: `the guest image for an MPICH program needs ${f} from this host, and it is missing`, field: 'mpi.implementation', value: 'mpich', fix: 'reinstall Debian\'s mpich package on this host (bash scripts/setup)', exitCode: EXIT.environment });
    }
    // preloaded into every rank: UCX progress while MPI_Finalize waits in its PMI barrier (docs/mpi.md)
    // (kept until the stage is removed: the shared-library closure runs ldd on it)
    await buildFinalizeShim(shimHost, signal);
    await S.mkdir(path.dirname(FINALIZE_SHIM));
    await S.copyFile(shimHost, FINALIZE_SHIM, 0o755);
    step('mpich');
  }

  // ---- root: symrun guest agent ----
  progress('root: symrun guest agent');
  if (ci.guestDistFiles.length) await S.copyTree(paths.guestDist, ci.guestDistFiles, '/opt/symrun/dist/guest');
  else warn(`${paths.guestDist} is missing (run \`npx tsc -p tsconfig.json\`); the image boots but has no guest agent`);
  if (ci.nodePtyFiles.length) await S.copyTree(paths.nodePty, ci.nodePtyFiles, '/opt/symrun/node_modules/node-pty');
  else warn(`${paths.nodePty} is missing (run \`npm ci\`); the guest agent cannot open ptys`);
  // the lead rebuilds dist/ often: make sure what we copied is what we hashed
  if (ci.guestDistFiles.length && await hashTree(S.p('/opt/symrun/dist/guest'), ci.guestDistFiles) !== ci.inputs.guestDist.sha256) {
    throw new SymError('ESYM_IMAGE_INPUT_CHANGED', {
      message: `${paths.guestDist} changed while the image was being built`,
      fix: 'wait for the TypeScript build to finish, then rerun `symrun image build`',
      exitCode: EXIT.runtime,
    });
  }
  await S.write('/opt/symrun/package.json', JSON.stringify({ name: 'symrun-guest', private: true, type: 'module' }, null, 2) + '\n');
  await S.write('/opt/symrun/bin/symrun-rsh', '#!/bin/sh\nexec /usr/bin/node /opt/symrun/dist/guest/src/rsh.js "$@"\n', 0o755);
  // bare imports other than node builtins and node-pty will not resolve in the guest: say so
  const bare = new Set<string>();
  for (const rel of ci.guestDistFiles.filter((f) => f.endsWith('.js'))) {
    const txt = await fsp.readFile(path.join(paths.guestDist, rel), 'utf8');
    for (const m of txt.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*)['"]([^'"./][^'"]*)['"]/g)) {
      const spec = m[1]!;
      if (spec.startsWith('node:') || spec === 'node-pty') continue;
      bare.add(spec);
    }
  }
  const builtinMods = new Set((await import('node:module')).builtinModules);
  const foreign = [...bare].filter((s) => !builtinMods.has(s.split('/')[0]!));
  if (foreign.length) warn(`dist/guest imports packages the image does not ship: ${foreign.join(', ')} (only node-pty is copied)`);
  step('agent');

  // ---- root: ELF closure ----
  progress('root: shared-library closure (ldd)');
  const elfs: string[] = [];
  for (const [, host] of S.sources) if (await isElf(host)) elfs.push(host);
  const { libs, notFound } = await lddClosure(elfs, signal);
  for (const l of libs) await S.addHost(l, false);
  const nfNode = notFound.get(paths.node);
  if (nfNode) throw new SymError('ESYM_IMAGE_BUILD', { message: `node's libraries are missing on this host: ${nfNode.join(', ')}`, exitCode: EXIT.environment, fix: 'reinstall nodejs on the host' });
  const nfMpi = [...notFound.entries()].filter(([f]) => /\/(orted|orterun|mpirun\.openmpi|libmpi\.so[.\d]*|libopen-(rte|pal)\.so[.\d]*)$/.test(f));
  if (nfMpi.length) warn(`Open MPI libraries not found on the host: ${nfMpi.map(([f, l]) => `${f}: ${l.join(' ')}`).join('; ')}`);
  step('ldd');

  // ---- kernel modules ----
  progress(`modules: closure from ${kernel.modulesDir}/modules.dep`);
  const depText = await fsp.readFile(path.join(kernel.modulesDir, 'modules.dep'), 'utf8');
  const deps = parseModulesDep(depText);
  let builtinText = '';
  try { builtinText = await fsp.readFile(path.join(kernel.modulesDir, 'modules.builtin'), 'utf8'); } catch { /* none */ }
  const builtin = parseModulesBuiltin(builtinText);
  const initrdMods = moduleClosure(deps, IMAGE_DEFAULTS.initrdModules, builtin);
  const passthrough = ci.inputs.modules.passthrough ?? [];
  const rootMods = moduleClosure(deps, [...IMAGE_DEFAULTS.initrdModules, ...IMAGE_DEFAULTS.rootModules, ...passthrough], builtin);
  // the guest agent loads these before it looks for a passed-through VF (no udev in the guest loads a
  // driver for a hot-plugged function by itself)
  if (passthrough.length) await S.write('/etc/symrun-passthrough-modules', passthrough.join('\n') + '\n');
  const guestModDir = `/lib/modules/${kernel.version}`;
  for (const rel of rootMods.order) {
    await decompressModule(path.join(kernel.modulesDir, rel), S.p(S.canon(`${guestModDir}/${koName(rel)}`)), signal);
  }
  await S.write(`${guestModDir}/modules.dep`, renderModulesDep(deps, rootMods.order, koName));
  if (builtinText) await S.write(`${guestModDir}/modules.builtin`, builtinText);
  const rootNames = new Set(rootMods.order.map(moduleName));
  try {
    const alias = await fsp.readFile(path.join(kernel.modulesDir, 'modules.alias'), 'utf8');
    await S.write(`${guestModDir}/modules.alias`, alias.split('\n').filter((l) => rootNames.has((l.split(/\s+/)[2] ?? '').replace(/-/g, '_'))).join('\n') + '\n');
  } catch { /* optional */ }
  await S.write(`${guestModDir}/modules.order`, rootMods.order.map(koName).join('\n') + '\n');
  for (const rel of initrdMods.order) {
    await decompressModule(path.join(kernel.modulesDir, rel), path.join(initrdDir, 'lib/modules', kernel.version, koName(rel)), signal);
  }
  step('modules');

  // ---- root: ld.so config + cache, busybox applets ----
  progress('root: ld.so.cache (ldconfig -r)');
  await S.addHost('/etc/ld.so.conf', false);
  await S.addHostTree('/etc/ld.so.conf.d');
  if (!S.seen.has('/etc/ld.so.conf')) await S.write('/etc/ld.so.conf', 'include /etc/ld.so.conf.d/*.conf\n');
  await run('ldconfig', ['-r', rootDir], { signal });
  const bbList = await run(paths.busybox, ['--list-full'], { signal });
  for (const a of bbList.stdout.split('\n').map((s) => s.trim()).filter(Boolean)) {
    if (a === 'linuxrc' || a.endsWith('/init')) continue;
    await S.symlink('/' + a, '/usr/bin/busybox');
  }
  if (!fs.existsSync(S.p(S.canon('/bin/sh')))) throw new SymError('ESYM_IMAGE_BUILD', { message: 'busybox did not provide /bin/sh', exitCode: EXIT.runtime });
  step('ldconfig+applets');

  // ---- initrd ----
  progress('initrd: busybox + modules + /init (cpio newc, gzip)');
  await fsp.mkdir(path.join(initrdDir, 'bin'), { recursive: true });
  await fsp.copyFile(paths.busybox, path.join(initrdDir, 'bin/busybox'));
  await fsp.chmod(path.join(initrdDir, 'bin/busybox'), 0o755);
  for (const a of bbList.stdout.split('\n').map((s) => s.trim()).filter(Boolean)) {
    const n = path.basename(a);
    if (n === 'busybox' || n === 'init' || n === 'linuxrc') continue;
    try { await fsp.symlink('busybox', path.join(initrdDir, 'bin', n)); } catch { /* dup name */ }
  }
  await fsp.symlink('bin', path.join(initrdDir, 'sbin'));
  for (const d of ['dev', 'proc', 'sys', 'tmp', 'etc', 'lower', 'rw', 'newroot']) await fsp.mkdir(path.join(initrdDir, d), { recursive: true });
  await fsp.writeFile(path.join(initrdDir, 'init'), ci.scripts[SCRIPT_NAMES.initrd]!, { mode: 0o755 });
  await fsp.chmod(path.join(initrdDir, 'init'), 0o755);
  await fsp.writeFile(path.join(initrdDir, 'etc/symrun-modules'), initrdMods.order.map(koName).join('\n') + '\n');
  const cpioRaw = path.join(outDir, 'initrd.cpio');
  await run('cpio', ['-o', '-H', 'newc', '--quiet', '-R', '0:0'], { cwd: initrdDir, signal, input: (await cpioList(initrdDir)).join('\n') + '\n', stdoutFile: cpioRaw });
  await pipeline(fs.createReadStream(cpioRaw), zlib.createGzip({ level: 6 }), fs.createWriteStream(path.join(outDir, 'initrd.img')));
  await fsp.rm(cpioRaw);
  step('initrd');

  // ---- root.ext4 ----
  const files = (await walk(rootDir)).map((r) => '/' + r);
  const usage = await treeUsage(rootDir);
  const sizeKiB = Math.ceil((usage.bytes * IMAGE_DEFAULTS.rootGrowth + IMAGE_DEFAULTS.rootSlackMiB * 1048576) / 1048576) * 1024;
  const inodes = Math.max(8192, usage.entries * 2 + 2048);
  progress(`root.ext4: mke2fs -d (${files.length} files, ${(usage.bytes / 1048576).toFixed(0)} MiB content, ${sizeKiB / 1024} MiB image)`);
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', rootDir, '-L', IMAGE_DEFAULTS.rootLabel, '-m', '0', '-N', String(inodes),
    '-O', '^has_journal', '-E', 'root_owner=0:0', path.join(outDir, 'root.ext4'), `${sizeKiB}k`], { signal });
  step('mke2fs');

  progress('kernel: copy vmlinuz');
  await fsp.copyFile(kernel.vmlinuz, path.join(outDir, 'vmlinuz'));
  await fsp.chmod(path.join(outDir, 'vmlinuz'), 0o644);
  await fsp.rm(rootDir, { recursive: true, force: true });
  await fsp.rm(initrdDir, { recursive: true, force: true });
  await fsp.rm(shimHost, { force: true });
  step('finish');

  const sizes: BuildResult['sizes'] = {};
  for (const f of ['vmlinuz', 'initrd.img', 'root.ext4']) sizes[f] = await sizeOf(path.join(outDir, f));
  sizes.rootContent = { bytes: usage.bytes, allocated: usage.bytes };
  return { files, aliases: S.aliases, sizes, stepsMs, totalMs: Date.now() - t0, warnings };
}

export const randomSuffix = () => crypto.randomBytes(4).toString('hex');
