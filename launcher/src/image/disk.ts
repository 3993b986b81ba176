// Disk images a user brings (`image: { disk: FILE }`, docs/images.md): a whole distribution's root
// filesystem as one ext4 filesystem without a partition table, raw or qcow2.
//
// - makeDisk: a directory tree -> ext4 (`mke2fs -d`, no mounts, no root-only nbd) -> qcow2 or raw
//   (`qemu-img convert`), plus the side file DISK.symrun.json listing every file of the root, so staging
//   copies only what the image lacks (the same shape as a built image's manifest.json).
// - extractDisk: the reverse (qcow2 -> raw with qemu-img, then `debugfs rdump`), for
//   `symrun image install-agent DISK`.
// - diskFormat: raw or qcow2, from the first bytes (QEMU must be told: format probing of raw images is
//   unsafe and QEMU warns about it).
// The VM attaches the disk read-only (the initrd puts a RAM overlay over it), so one file serves every
// VM of a job and both ends of a migration: docs/images.md, "Migration".
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { IMAGE_DEFAULTS } from '../defaults.js';
import { run } from './exec.js';
import { walk } from './inputs.js';

export type DiskFormat = 'raw' | 'qcow2';

/** Side file of a disk image: what the root holds (for staging) and whether it has symrun's agent. */
export interface DiskManifest {
  format: 1;
  /** absolute guest paths of every regular file and symlink of the root */
  files: string[];
  /** top-level symlinks of the root (merged /usr), e.g. { "/bin": "/usr/bin" } */
  aliases: Record<string, string>;
  /** symrun's guest agent is installed (`symrun image install-agent`) */
  agent: boolean;
  createdAt: string;
  /** how the root was made, e.g. { debootstrap: { mirror, suite, packages } } */
  origin?: Record<string, unknown>;
}

/** Path of a disk's side file. */
export function diskManifestPath(disk: string): string {
  return `${disk}.symrun.json`;
}

/** The guest path of the agent's entry point: an image without it cannot run jobs. */
export const AGENT_ENTRY = '/opt/symrun/dist/guest/src/agent.js';

export async function readDiskManifest(disk: string): Promise<DiskManifest | undefined> {
  try {
    const m = JSON.parse(await fsp.readFile(diskManifestPath(disk), 'utf8')) as DiskManifest;
    return m && m.format === 1 && Array.isArray(m.files) ? m : undefined;
  } catch { return undefined; }
}

/** Is this file a disk image: qcow2, or raw with an ext2/3/4 superblock at its start (magic 0xEF53 at 1080)? */
export async function isDiskImage(file: string): Promise<boolean> {
  const fh = await fsp.open(file, 'r');
  try {
    const b = Buffer.alloc(1082);
    const { bytesRead } = await fh.read(b, 0, b.length, 0);
    if (bytesRead >= 4 && b.subarray(0, 4).equals(Buffer.from([0x51, 0x46, 0x49, 0xfb]))) return true;
    return bytesRead === b.length && b.readUInt16LE(1080) === 0xef53;
  } finally { await fh.close(); }
}

/** raw or qcow2 from the file's first bytes ("QFI\xfb" is qcow2). */
export async function diskFormat(disk: string): Promise<DiskFormat> {
  const fh = await fsp.open(disk, 'r');
  try {
    const b = Buffer.alloc(4);
    await fh.read(b, 0, 4, 0);
    return b.equals(Buffer.from([0x51, 0x46, 0x49, 0xfb])) ? 'qcow2' : 'raw';
  } finally { await fh.close(); }
}

/** Files and top-level aliases of a root directory (for the side file). */
export async function rootListing(dir: string): Promise<{ files: string[]; aliases: Record<string, string> }> {
  const aliases: Record<string, string> = {};
  for (const n of await fsp.readdir(dir)) {
    const p = path.join(dir, n);
    const st = await fsp.lstat(p);
    if (!st.isSymbolicLink()) continue;
    const t = path.resolve('/', await fsp.readlink(p));
    try { if ((await fsp.stat(path.join(dir, t))).isDirectory()) aliases['/' + n] = t; } catch { /* dangling */ }
  }
  const files = (await walk(dir)).map((r) => '/' + r);
  return { files, aliases };
}

async function usageBytes(dir: string): Promise<{ bytes: number; entries: number }> {
  const r = await run('du', ['-s', '-B1', '--apparent-size', dir]);
  const n = await run('sh', ['-c', 'find "$1" -xdev | wc -l', 'sh', dir]);
  return { bytes: Number(r.stdout.split(/\s/)[0]) || 0, entries: Number(n.stdout.trim()) || 0 };
}

export interface MakeDiskOpts {
  format: DiskFormat;
  /** the agent must be there (true) or must not (false); undefined: record what the tree has */
  agent?: boolean;
  origin?: Record<string, unknown>;
  signal?: AbortSignal;
  onProgress?: (s: string) => void;
}

/** Directory tree -> OUT (ext4 inside raw or qcow2) + OUT.symrun.json. Written next to OUT, then renamed. */
export async function makeDisk(dir: string, out: string, opts: MakeDiskOpts): Promise<{ ms: number; bytes: number }> {
  const t0 = Date.now();
  const { bytes, entries } = await usageBytes(dir);
  // ext4 metadata and 4 KiB blocks for small files: the same growth rule as the default image
  const sizeMiB = Math.ceil((bytes * IMAGE_DEFAULTS.rootGrowth + IMAGE_DEFAULTS.rootSlackMiB * 1048576) / 1048576);
  const inodes = Math.max(16384, entries * 2 + 4096);
  await fsp.mkdir(path.dirname(out), { recursive: true });
  const tmpRaw = `${out}.tmp-${process.pid}.raw`;
  const tmpOut = `${out}.tmp-${process.pid}`;
  try {
    opts.onProgress?.(`mke2fs -d ${dir} (${(bytes / 1048576).toFixed(0)} MiB content, ${sizeMiB} MiB filesystem)`);
    await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', dir, '-L', IMAGE_DEFAULTS.rootLabel, '-m', '0', '-N', String(inodes),
      '-E', 'root_owner=0:0', tmpRaw, `${sizeMiB}M`], { signal: opts.signal });
    if (opts.format === 'qcow2') {
      opts.onProgress?.(`qemu-img convert -O qcow2 ${path.basename(out)}`);
      await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', tmpRaw, tmpOut], { signal: opts.signal });
      await fsp.rm(tmpRaw, { force: true });
    } else {
      await fsp.rename(tmpRaw, tmpOut);
    }
    const listing = await rootListing(dir);
    const manifest: DiskManifest = { format: 1, ...listing, agent: listing.files.includes(AGENT_ENTRY), createdAt: new Date().toISOString(), ...(opts.origin ? { origin: opts.origin } : {}) };
    if (opts.agent !== undefined && manifest.agent !== opts.agent) {
      throw new SymError('ESYM_IMAGE_BUILD', {
        message: opts.agent ? `the root ${dir} has no ${AGENT_ENTRY} after installing the agent` : `the root ${dir} has symrun's agent, but an image without it was asked for`,
        exitCode: EXIT.runtime,
      });
    }
    await fsp.writeFile(`${diskManifestPath(out)}.tmp`, JSON.stringify(manifest) + '\n');
    await fsp.rename(tmpOut, out);
    await fsp.rename(`${diskManifestPath(out)}.tmp`, diskManifestPath(out));
    return { ms: Date.now() - t0, bytes: (await fsp.stat(out)).size };
  } finally {
    await fsp.rm(tmpRaw, { force: true });
    await fsp.rm(tmpOut, { force: true });
  }
}

/** DISK (raw or qcow2 holding a bare ext4) -> a directory tree (owners kept: run as root). */
export async function extractDisk(disk: string, dir: string, signal?: AbortSignal): Promise<void> {
  const fmt = await diskFormat(disk);
  let raw = disk;
  const tmpRaw = path.join(dir, '..', `.${path.basename(dir)}.raw`);
  try {
    if (fmt === 'qcow2') {
      await run('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', disk, tmpRaw], { signal });
      raw = tmpRaw;
    }
    const probe = await run('debugfs', ['-R', 'stats', raw], { signal, allowFail: true });
    if (probe.code !== 0 || !/Filesystem magic number/.test(probe.stdout)) {
      throw new SymError('ESYM_IMAGE_DISK', {
        message: `${disk} does not hold an ext2/3/4 filesystem at its start (a disk with a partition table is not supported)`,
        field: 'image.disk',
        value: disk,
        fix: 'make the disk from a directory with `symrun image disk DIR OUT.qcow2` (docs/images.md)',
        exitCode: EXIT.usage,
      });
    }
    await fsp.mkdir(dir, { recursive: true });
    // rdump writes DIR/<basename of the source>: dump / into dir's parent as dir's name is not possible,
    // so dump every top-level entry
    const ls = await run('debugfs', ['-R', 'ls -p /', raw], { signal });
    const names = ls.stdout.split('\n').map((l) => l.split('/')[5]).filter((n): n is string => !!n && n !== '.' && n !== '..' && n !== 'lost+found');
    const cmds = names.map((n) => `rdump "/${n}" "${dir}"`).join('\n') + '\n';
    await run('debugfs', ['-f', '-', raw], { signal, input: cmds });
    if (!fs.existsSync(path.join(dir, 'etc'))) {
      throw new SymError('ESYM_IMAGE_DISK', { message: `${disk}: nothing usable was extracted (no /etc)`, field: 'image.disk', value: disk, exitCode: EXIT.usage, fix: 'check that the disk holds a root filesystem' });
    }
  } finally {
    if (raw !== disk) await fsp.rm(tmpRaw, { force: true });
  }
}
