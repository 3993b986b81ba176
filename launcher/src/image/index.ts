// Content-addressed, cached guest image: ${cacheDir()}/images/<hash>/{vmlinuz,initrd.img,root.ext4,manifest.json}.
// The hash covers every input (builder version, init scripts, kernel, package versions, node, the
// guest agent's compiled files, node-pty). Builds happen in a temp dir and are renamed into place, so
// a directory named <hash> is always complete; concurrent builders race benignly (the loser discards).
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { cacheDir, IMAGE_DEFAULTS } from '../defaults.js';
import { computeInputs, saveHashMemo, setHashMemoFile, ImageInputs } from './inputs.js';
import { buildInto, randomSuffix, BuildResult } from './build.js';
import { checkAbort } from './exec.js';
import { diskFormat, isDiskImage, readDiskManifest, diskManifestPath, AGENT_ENTRY } from './disk.js';

export { moduleClosure, parseModulesDep, moduleName } from './modules.js';
export { diskFormat, makeDisk, extractDisk, readDiskManifest, diskManifestPath, AGENT_ENTRY, type DiskFormat, type DiskManifest } from './disk.js';
export { installAgent } from './agent.js';
export { buildDebian, debianSource, DEBIAN_PACKAGES, type DebianImage } from './debian.js';

export interface ImageInfo {
  hash: string;
  dir: string;
  kernel: string;
  initrd: string;
  rootfs: string;
  kernelVersion: string;
  manifestPath: string;
  builtNow: boolean;
  /** root disk format for QEMU (raw unless a qcow2 disk image was brought: image.disk) */
  rootFormat?: 'raw' | 'qcow2';
  /** set when the root is a disk image a user brought (image: { disk: FILE }) */
  disk?: string;
  /** the image came from the site's read-only cache (siteDirs) */
  site?: boolean;
}

/** `image: { disk: FILE }` (docs/images.md): a root disk a user brings, with an optional kernel and initrd. */
export interface DiskImageSpec { disk: string; kernel?: string; initrd?: string }

export interface ImageOpts {
  /** rebuild even if an image with this hash exists */
  force?: boolean;
  onProgress?: (step: string) => void;
  signal?: AbortSignal;
  /** an image for MPICH programs (MPICH's packages too; a different hash): docs/mpi.md */
  mpich?: boolean;
  /**
   * read-only image directories of the site (node config SYMRUN_SITE_IMAGES, docs/site-install.md),
   * looked up before the user's own cache; never written, pruned or touched
   */
  siteDirs?: readonly string[];
  /** an image for vfio jobs: the VF drivers too (docs/passthrough.md) */
  passthrough?: boolean;
}

export interface ImageManifest {
  format: 1;
  hash: string;
  createdAt: string;
  kernelVersion: string;
  inputs: ImageInputs | Record<string, unknown>;
  /** absolute guest paths of every regular file and symlink in root.ext4 */
  files: string[];
  /** top-level symlinks of the root (merged /usr), e.g. { "/bin": "/usr/bin" } */
  aliases?: Record<string, string>;
  build?: { totalMs: number; stepsMs: Record<string, number>; sizes: BuildResult['sizes']; warnings: string[]; host: string };
}

export const IMAGE_FILES = { kernel: 'vmlinuz', initrd: 'initrd.img', rootfs: 'root.ext4', manifest: 'manifest.json' } as const;

export function imagesDir(): string {
  return path.join(cacheDir(), 'images');
}

function infoFor(dir: string, hash: string, kernelVersion: string, builtNow: boolean): ImageInfo {
  return {
    hash,
    dir,
    kernel: path.join(dir, IMAGE_FILES.kernel),
    initrd: path.join(dir, IMAGE_FILES.initrd),
    rootfs: path.join(dir, IMAGE_FILES.rootfs),
    kernelVersion,
    manifestPath: path.join(dir, IMAGE_FILES.manifest),
    builtNow,
  };
}

async function readManifest(file: string): Promise<ImageManifest | undefined> {
  try {
    const m = JSON.parse(await fsp.readFile(file, 'utf8')) as ImageManifest;
    return m && m.format === 1 && Array.isArray(m.files) ? m : undefined;
  } catch { return undefined; }
}

function isComplete(dir: string): boolean {
  return Object.values(IMAGE_FILES).every((f) => fs.existsSync(path.join(dir, f)));
}

const inflight = new Map<string, Promise<ImageInfo>>();

/** Reuse the image for the current inputs if it exists, else build it. */
export async function buildImage(opts: ImageOpts = {}): Promise<ImageInfo> {
  try {
    return await buildImageOnce(opts);
  } catch (e) {
    // dist/guest was rewritten under us (a tsc run): hash again and build once more
    if (e instanceof SymError && e.code === 'ESYM_IMAGE_INPUT_CHANGED') {
      opts.onProgress?.('inputs changed during the build; starting over');
      await new Promise((r) => setTimeout(r, 1000));
      return buildImageOnce(opts);
    }
    throw e;
  }
}

async function buildImageOnce(opts: ImageOpts): Promise<ImageInfo> {
  const progress = opts.onProgress ?? (() => {});
  checkAbort(opts.signal);
  const root = imagesDir();
  let cacheError: SymError | undefined;
  try { await fsp.mkdir(root, { recursive: true }); } catch (e) {
    cacheError = new SymError('ESYM_IMAGE_CACHE', {
      message: `cannot create the image cache ${root}: ${(e as Error).message}`,
      fix: 'set SYMRUN_CACHE_DIR to a writable directory',
      value: root,
      exitCode: EXIT.environment,
      cause: e,
    });
  }
  setHashMemoFile(path.join(root, '.hash-memo.json'));
  const t0 = Date.now();
  const ci = await computeInputs(opts.signal, { mpich: opts.mpich, passthrough: opts.passthrough });
  await saveHashMemo();
  progress(`inputs hashed in ${Date.now() - t0} ms: ${ci.hash}`);
  // the site's read-only cache first (an image every user of the site shares), then the user's own
  if (!opts.force) {
    for (const site of opts.siteDirs ?? []) {
      const dir = path.join(site, ci.hash);
      if (isComplete(dir)) {
        progress(`site image ${dir}`);
        return { ...infoFor(dir, ci.hash, ci.kernel.version, false), site: true };
      }
    }
  }
  if (cacheError) throw cacheError;
  if (!ci.inputs.guestDist.present) progress(`warning: ${ci.paths.guestDist} is missing; the image will have no guest agent (build with \`npx tsc -p tsconfig.json\`)`);
  const final = path.join(root, ci.hash);

  if (!opts.force && isComplete(final)) {
    await touch(final);
    await prune(root, ci.hash);
    progress(`cached image ${final}`);
    return infoFor(final, ci.hash, ci.kernel.version, false);
  }

  const key = `${ci.hash}${opts.force ? ':force' : ''}`;
  const running = inflight.get(key);
  if (running) return running;
  const p = (async () => {
    const tmp = path.join(root, `.tmp-${os.hostname()}-${process.pid}-${randomSuffix()}`);
    await fsp.mkdir(tmp);
    let renamed = false;
    try {
      progress(`building image ${ci.hash.slice(0, 16)} (kernel ${ci.kernel.version}) in ${tmp}`);
      const res = await buildInto(tmp, ci, { onProgress: progress, signal: opts.signal });
      const manifest: ImageManifest = {
        format: 1,
        hash: ci.hash,
        createdAt: new Date().toISOString(),
        kernelVersion: ci.kernel.version,
        inputs: ci.inputs,
        files: res.files,
        aliases: res.aliases,
        build: { totalMs: res.totalMs, stepsMs: res.stepsMs, sizes: res.sizes, warnings: res.warnings, host: os.hostname() },
      };
      await fsp.writeFile(path.join(tmp, IMAGE_FILES.manifest), JSON.stringify(manifest, null, 1) + '\n');
      checkAbort(opts.signal);
      if (opts.force && fs.existsSync(final)) await removeDir(root, final);
      try {
        await fsp.rename(tmp, final);
        renamed = true;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code === 'ENOTEMPTY' || code === 'EEXIST') && isComplete(final)) {
          progress('another process finished the same image first; using theirs');
          return infoFor(final, ci.hash, ci.kernel.version, false);
        }
        throw e;
      }
      const mb = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
      progress(`built ${final} in ${(res.totalMs / 1000).toFixed(1)} s: vmlinuz ${mb(res.sizes.vmlinuz!.bytes)}, initrd ${mb(res.sizes['initrd.img']!.bytes)}, root.ext4 ${mb(res.sizes['root.ext4']!.bytes)} (${mb(res.sizes['root.ext4']!.allocated)} allocated)`);
      await prune(root, ci.hash);
      return infoFor(final, ci.hash, ci.kernel.version, true);
    } catch (e) {
      if (e instanceof SymError) throw e;
      throw new SymError('ESYM_IMAGE_BUILD', {
        message: `building the guest image failed: ${(e as Error).message}`,
        fix: 'check free space in the cache directory (SYMRUN_CACHE_DIR) and rerun `symrun image build`; `bash scripts/setup` installs the host packages it needs',
        exitCode: EXIT.runtime,
        cause: e,
      });
    } finally {
      if (!renamed) await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
    }
  })();
  inflight.set(key, p);
  try { return await p; } finally { inflight.delete(key); }
}

/**
 * 'auto' builds (or reuses) the image; a disk image (an object, or a string naming a regular file) boots
 * that disk as the root; anything else must be a directory holding a prebuilt image.
 */
export async function resolveImage(spec: string | DiskImageSpec, opts: ImageOpts = {}): Promise<ImageInfo> {
  if (typeof spec === 'object') return resolveDisk(spec, opts);
  if (spec === 'auto') return buildImage(opts);
  try { if (spec && (await fsp.stat(spec)).isFile() && await isDiskImage(spec)) return resolveDisk({ disk: spec }, opts); } catch { /* the directory checks below say what is wrong */ }
  const need = [IMAGE_FILES.kernel, IMAGE_FILES.initrd, IMAGE_FILES.rootfs];
  const fix = `run \`symrun image build\` or point image: at a directory holding ${need.join(', ')} (manifest.json optional), or at a disk image (qcow2, or raw ext4: docs/images.md)`;
  const dir = path.resolve(spec || '.');
  let st: fs.Stats | undefined;
  try { st = await fsp.stat(dir); } catch { /* missing */ }
  if (!spec || !st || !st.isDirectory()) {
    throw new SymError('ESYM_IMAGE_MISSING', {
      message: !spec ? 'no guest image given' : st ? `guest image ${dir} is not a directory` : `guest image directory ${dir} does not exist`,
      field: 'image',
      value: spec,
      fix,
      exitCode: EXIT.usage,
    });
  }
  const missing: string[] = [];
  for (const f of need) {
    try { if (!(await fsp.stat(path.join(dir, f))).isFile()) missing.push(f); } catch { missing.push(f); }
  }
  if (missing.length) {
    throw new SymError('ESYM_IMAGE_MISSING', {
      message: `guest image directory ${dir} lacks ${missing.join(', ')}`,
      field: 'image',
      value: spec,
      fix,
      exitCode: EXIT.usage,
      details: { missing },
    });
  }
  const manifest = await readManifest(path.join(dir, IMAGE_FILES.manifest));
  let hash = manifest?.hash;
  if (!hash) {
    const h = crypto.createHash('sha256').update(`dir:${await fsp.realpath(dir)}\n`);
    for (const f of need) { const s = await fsp.stat(path.join(dir, f)); h.update(`${f} ${s.size} ${s.mtimeMs}\n`); }
    hash = h.digest('hex');
  }
  const kernelVersion = manifest?.kernelVersion ?? (await kernelVersionOf(path.join(dir, IMAGE_FILES.kernel))) ?? 'unknown';
  if (path.dirname(dir) === imagesDir()) await touch(dir);
  return infoFor(dir, hash, kernelVersion, false);
}

/**
 * A disk image a user brought. Its side file (DISK.symrun.json, written by `symrun image disk|debian|
 * install-agent`) lists the root's files, so staging copies only what the image lacks; without it
 * everything the program needs is staged. A side file saying the agent is missing fails here, before any
 * VM boots; an image without a side file and without an agent is caught by the initrd at boot
 * (ESYM_IMAGE_NO_AGENT, coordinator/job/vms.ts). Kernel and initrd: the given ones, else the default
 * image's (the host's kernel and symrun's initrd, which mounts the disk read-only under a RAM overlay).
 */
async function resolveDisk(spec: DiskImageSpec, opts: ImageOpts): Promise<ImageInfo> {
  const disk = path.resolve(spec.disk);
  let st: fs.Stats | undefined;
  try { st = await fsp.stat(disk); } catch { /* missing */ }
  if (!st?.isFile()) {
    throw new SymError('ESYM_IMAGE_DISK', {
      message: st ? `disk image ${disk} is not a regular file` : `disk image ${disk} does not exist`,
      field: 'image.disk',
      value: spec.disk,
      fix: 'build one with `symrun image debian --out FILE` or `symrun image disk DIR FILE` (docs/images.md)',
      exitCode: EXIT.usage,
    });
  }
  if (!(await isDiskImage(disk))) {
    throw new SymError('ESYM_IMAGE_DISK', {
      message: `${disk} is neither a qcow2 image nor a raw disk holding an ext2/3/4 filesystem at its start`,
      field: 'image.disk',
      value: spec.disk,
      fix: 'make the disk from a root directory with `symrun image disk DIR FILE` (a disk with a partition table is not supported; docs/images.md)',
      exitCode: EXIT.usage,
    });
  }
  const manifest = await readDiskManifest(disk);
  if (manifest && !manifest.agent) throw noAgentError(disk, `its side file ${diskManifestPath(disk)} lists no ${AGENT_ENTRY}`);
  for (const [field, f] of [['image.kernel', spec.kernel], ['image.initrd', spec.initrd]] as const) {
    if (f !== undefined && !fs.existsSync(f)) {
      throw new SymError('ESYM_IMAGE_DISK', { message: `${field} ${f} does not exist`, field, value: f, fix: `give an existing file, or leave ${field} out to boot the host's kernel with symrun's initrd`, exitCode: EXIT.usage });
    }
  }
  let kernel = spec.kernel, initrd = spec.initrd, base = '';
  if (!kernel || !initrd) {
    const def = await buildImage(opts);
    kernel ??= def.kernel;
    initrd ??= def.initrd;
    base = def.hash;
  }
  const format = await diskFormat(disk);
  const h = crypto.createHash('sha256').update(`disk:${await fsp.realpath(disk)} ${st.size} ${st.mtimeMs} ${format}\nbase:${base}\n`);
  for (const f of [kernel, initrd]) { const s = await fsp.stat(f); h.update(`${f} ${s.size} ${s.mtimeMs}\n`); }
  const kernelVersion = (await kernelVersionOf(kernel)) ?? 'unknown';
  return {
    hash: h.digest('hex'),
    dir: path.dirname(disk),
    kernel,
    initrd,
    rootfs: disk,
    kernelVersion,
    manifestPath: diskManifestPath(disk),
    builtNow: false,
    rootFormat: format,
    disk,
  };
}

/** The image has no symrun guest agent: name it and the fix. */
export function noAgentError(disk: string, why: string): SymError {
  return new SymError('ESYM_IMAGE_NO_AGENT', {
    message: `the guest image ${disk} has no symrun guest agent (${why})`,
    field: 'image.disk',
    value: disk,
    fix: `install it: \`symrun image install-agent ${disk}\` (as root), or build the image with \`symrun image debian\` (docs/images.md)`,
    exitCode: EXIT.usage,
  });
}

/** Absolute guest paths of every file and symlink in the image's root (both /usr/bin/x and /bin/x). */
export async function imageFiles(info: ImageInfo): Promise<Set<string>> {
  const m = await readManifest(info.manifestPath);
  const out = new Set<string>();
  if (!m) return out;
  const aliases = Object.entries(m.aliases ?? {});
  for (const f of m.files) {
    out.add(f);
    for (const [a, t] of aliases) if (f.startsWith(t + '/')) out.add(a + f.slice(t.length));
  }
  return out;
}

/** The kernel version string inside a bzImage (x86 boot protocol: kernel_version at 0x20e), if any. */
export async function kernelVersionOf(vmlinuz: string): Promise<string | undefined> {
  try {
    const fh = await fsp.open(vmlinuz, 'r');
    try {
      const hdr = Buffer.alloc(0x210);
      await fh.read(hdr, 0, hdr.length, 0);
      if (hdr.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
      const off = hdr.readUInt16LE(0x20e) + 0x200;
      const b = Buffer.alloc(256);
      await fh.read(b, 0, b.length, off);
      const s = b.toString('latin1');
      return s.slice(0, s.indexOf('\0') >= 0 ? s.indexOf('\0') : s.length).split(' ')[0] || undefined;
    } finally { await fh.close(); }
  } catch { return undefined; }
}

async function touch(dir: string): Promise<void> {
  const now = new Date();
  await fsp.utimes(dir, now, now).catch(() => {});
}

async function removeDir(root: string, dir: string): Promise<void> {
  // rename first so no half-deleted image is ever visible under its hash
  const del = path.join(root, `.del-${randomSuffix()}`);
  try { await fsp.rename(dir, del); } catch { return; }
  await fsp.rm(del, { recursive: true, force: true }).catch(() => {});
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** Keep the most recently used images (never `current`); remove leftovers of dead builders. */
export async function prune(root: string, current: string, keep: number = IMAGE_DEFAULTS.keep): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try { names = await fsp.readdir(root); } catch { return removed; }
  const images: { name: string; mtime: number }[] = [];
  const host = os.hostname();
  for (const n of names) {
    const p = path.join(root, n);
    let st: fs.Stats;
    try { st = await fsp.stat(p); } catch { continue; }
    if (/^[0-9a-f]{64}$/.test(n) && st.isDirectory()) { images.push({ name: n, mtime: st.mtimeMs }); continue; }
    const m = /^\.tmp-(.+)-(\d+)-[0-9a-f]+$/.exec(n);
    const stale = Date.now() - st.mtimeMs > IMAGE_DEFAULTS.staleTmpMs;
    if ((m && ((m[1] === host && !pidAlive(Number(m[2]))) || stale)) || n.startsWith('.del-')) {
      await fsp.rm(p, { recursive: true, force: true }).catch(() => {});
      removed.push(n);
    }
  }
  images.sort((a, b) => b.mtime - a.mtime);
  let kept = images.some((i) => i.name === current) ? 1 : 0;
  for (const i of images) {
    if (i.name === current) continue;
    if (kept < keep) { kept++; continue; }
    await removeDir(root, path.join(root, i.name));
    removed.push(i.name);
  }
  return removed;
}
