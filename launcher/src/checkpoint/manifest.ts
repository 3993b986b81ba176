// Checkpoint directory layout, manifest, verification, listing and pruning.
//
//   ROOT/                              --checkpoint-dir (shared by every host in Slurm mode, e.g. /shared/ckpt)
//     JOB-20261122T041800123Z/         one complete checkpoint
//       manifest.json                  written last; the checkpoint is complete only with it (and renamed)
//       vm1.state vm2.state ...        one QEMU state file per VM (migrate "exec:cat > FILE"; restore with
//                                      -incoming "exec:cat FILE", then `cont`)
//     JOB-20261122T042800456Z.tmp-Ab12Cd   being written (or abandoned: incomplete); renamed when complete
//
// A checkpoint is written into NAME.tmp-XXXXXX; the state files, then manifest.json are fsync'ed, the
// directory is renamed to NAME and the parent fsync'ed. Older checkpoints are pruned (--keep N) only
// after that. The manifest alone (plus the guest image it names by hash) is enough to restart:
// each VM's spec (command line without the interconnect device), the device to plug back, the
// guest network configuration, the job's command line and hosts.
import fs from 'node:fs';
import { writeFileAtomic } from '../util/fsatomic.js';
import { fmtBytes } from '../util/format.js';
import { CACHEDIR_TAG_FILE, CACHEDIR_TAG_SIGNATURE } from '../stage/snapshot.js';

export { fmtBytes };
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { SymError, EXIT } from '../errors.js';
import { repoRoot } from '../defaults.js';
import type { VmSpec } from '../vm/index.js';
import type { InterconnectDevice } from '../wire/device.js';

export const CKPT_FORMAT = 'symrun-checkpoint';
export const CKPT_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
export const TMP_MARK = '.tmp-';
const MIB = 1024 * 1024;

export interface CheckpointVm {
  name: string;
  /** host the VM ran on when it was saved */
  host: string;
  /** state file, relative to the checkpoint directory */
  file: string;
  size: number;
  sha256: string;
  /** the VM's spec WITHOUT the interconnect device (the state was saved unplugged: restore the same set) */
  spec: VmSpec;
  /** the QEMU arguments the VM ran with (without the device); restore = these + -incoming "exec:cat FILE" */
  qemuArgs?: string[];
  /** the interconnect device to plug back after the restore (same id and MAC) */
  device: InterconnectDevice | { id: string; netdevId: string; model: string; mac: string; bus: string; tap: string };
  /** the guest agent's net-config arguments (interface name, MAC, address) */
  network: Record<string, unknown>;
  /** QEMU's figures of the save */
  saveMs?: number;
  /** the VM's number in the job (vmN), its guest address and the last guest-agent frame the coordinator had received at the save */
  index?: number;
  ip?: string;
  guestSeq?: number;
}

/** What ran in the guests when the checkpoint was taken: a restarted coordinator adopts these sessions. */
export interface CheckpointSessions {
  /** mpirun: VM, guest-agent session id, VM of each rank (output tags) */
  mpirun?: { vm: string; sid: string; rankVm: string[] };
  /** remote commands (orted) mpirun started through symrun-rsh: relay id, from/to VM, session id */
  rsh: Array<{ rid: string; from: string; to: string; sid: string }>;
}

export interface CheckpointManifest {
  format: typeof CKPT_FORMAT;
  formatVersion: number;
  symrunVersion: string;
  name: string;
  jobId: string;
  createdAt: string;
  /** wall time of the whole checkpoint operation up to the manifest (ms) */
  durationMs?: number;
  /** frozen time of the ranks (quiesce -> resume, ms) */
  frozenMs?: number;
  /** the application, its directory, and symrun's own arguments */
  command: { app: string[]; cwd: string; argv?: string[] };
  hosts: Array<{ name: string; ip: string; role: string }>;
  image: { hash: string; kernel: string; initrd: string; rootfs: string };
  qemu?: { version?: string };
  /** the job's resolved configuration (symrun.yaml + options) */
  config?: unknown;
  /** sessions to adopt on restart (absent in checkpoints of symrun before restart existed: not restartable) */
  sessions?: CheckpointSessions;
  /** how the ranks were quiesced for the save (restart resumes them the same way) */
  quiesce?: 'freeze' | 'hooks';
  vms: CheckpointVm[];
}

export type CheckpointStatus = 'complete' | 'incomplete' | 'corrupt';

export interface CheckpointEntry {
  name: string;
  dir: string;
  status: CheckpointStatus;
  /** why it is incomplete / corrupt */
  reason?: string;
  jobId?: string;
  time?: string;
  vms?: string[];
  /** bytes on disk (all files) */
  sizeBytes: number;
  manifest?: CheckpointManifest;
}

let versionMemo: string | undefined;
/** symrun's version (package.json). */
export function symrunVersion(): string {
  if (versionMemo) return versionMemo;
  try {
    versionMemo = String((JSON.parse(fs.readFileSync(path.join(repoRoot(), 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown');
  } catch {
    versionMemo = 'unknown';
  }
  return versionMemo;
}

export function stateFileName(vm: string): string {
  return `${vm}.state`;
}

/** JOB-YYYYMMDDTHHMMSSmmmZ (sorts by time). */
export function checkpointName(jobId: string, at: Date = new Date()): string {
  return `${jobId}-${at.toISOString().replace(/[-:.]/g, '')}`;
}

export function isTempName(name: string): boolean {
  return name.includes(TMP_MARK);
}

/** Bytes a checkpoint of these VMs is expected to take: guest RAM per VM (zero pages make it less) plus device state. */
export function estimateBytes(vms: number, memoryMiB: number): number {
  return vms * (memoryMiB * MIB + 4 * MIB);
}

export function freeBytes(dir: string): number {
  const st = fs.statfsSync(dir);
  return Number(st.bavail) * Number(st.bsize);
}


/** Throws ESYM_CKPT_NO_SPACE when the filesystem of `dir` has less than `needBytes` available. */
export function checkSpace(dir: string, needBytes: number, what = 'the checkpoint'): { freeBytes: number; needBytes: number } {
  const free = freeBytes(dir);
  if (free < needBytes) throw noSpaceError(dir, needBytes, free, what);
  return { freeBytes: free, needBytes };
}

export function noSpaceError(dir: string, needBytes: number, free: number, what = 'the checkpoint', cause?: unknown): SymError {
  return new SymError('ESYM_CKPT_NO_SPACE', {
    message: `not enough disk space for ${what} in ${dir}: about ${fmtBytes(needBytes)} needed (guest RAM per VM), ${fmtBytes(free)} free`,
    fix: 'free space there, use a larger --checkpoint-dir, or lower --keep; the job keeps running and earlier checkpoints are intact',
    details: { dir, needBytes, freeBytes: free },
    cause,
  });
}

/**
 * Marks ROOT as a cache directory (https://bford.info/cachedir/): the current-directory snapshot
 * (stage/snapshot.ts), `tar --exclude-caches` and backup tools leave it out, so checkpoints kept under
 * the job's directory are not copied into the guests of later jobs. Best effort.
 */
function tagCheckpointRoot(root: string): void {
  const tag = path.join(root, CACHEDIR_TAG_FILE);
  if (fs.existsSync(tag)) return;
  try {
    fs.writeFileSync(tag, `${CACHEDIR_TAG_SIGNATURE}\n# This directory holds symrun checkpoints (VM state files); it is not copied into job VMs.\n`, { flag: 'wx', mode: 0o644 });
  } catch { /* read-only or raced: the checkpoint itself does not need it */ }
}

/** Create ROOT (if needed, tagged as a cache directory) and ROOT/NAME.tmp-XXXXXX. */
export function createTempDir(root: string, name: string): string {
  try {
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    tagCheckpointRoot(root);
    return fs.mkdtempSync(path.join(root, `${name}${TMP_MARK}`));
  } catch (e) {
    throw new SymError('ESYM_CKPT_DIR', { message: `cannot create a checkpoint directory in ${root}: ${(e as Error).message}`, fix: 'choose a writable --checkpoint-dir (in Slurm mode a path every node shares)', details: { root }, cause: e });
  }
}

/** sha256 and size of a file, streamed. */
export async function hashFile(file: string, signal?: AbortSignal): Promise<{ sha256: string; size: number }> {
  const h = crypto.createHash('sha256');
  let size = 0;
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 * MIB);
    for (;;) {
      if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return { sha256: h.digest('hex'), size };
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

/** Write manifest.json into the temp dir (via manifest.json.part), fsync every file and the directory. */
export function writeManifest(tmpDir: string, m: CheckpointManifest): void {
  writeFileAtomic(path.join(tmpDir, MANIFEST_FILE), JSON.stringify(m, null, 2) + '\n');
  for (const v of m.vms) fsyncPath(path.join(tmpDir, v.file));
  fsyncPath(tmpDir);
}

/** Rename NAME.tmp-XXXX -> NAME (atomic on one filesystem) and fsync the parent. Returns the final path. */
export function publish(tmpDir: string, finalDir: string): string {
  if (fs.existsSync(finalDir)) throw new SymError('ESYM_CKPT_EXISTS', { message: `checkpoint ${finalDir} exists already`, fix: 'remove it, or wait a moment (names carry the time in ms)' });
  fs.renameSync(tmpDir, finalDir);
  try { fsyncPath(path.dirname(finalDir)); } catch { /* some filesystems cannot fsync a directory */ }
  return finalDir;
}

function dirSize(dir: string): number {
  let n = 0;
  let names: string[] = [];
  try { names = fs.readdirSync(dir); } catch { return 0; }
  for (const f of names) {
    try {
      const st = fs.lstatSync(path.join(dir, f));
      if (st.isFile()) n += st.size;
    } catch { /* vanished */ }
  }
  return n;
}

function readManifest(dir: string): { manifest?: CheckpointManifest; reason?: string } {
  let text: string;
  try { text = fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8'); } catch (e) {
    return { reason: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no manifest.json' : `manifest.json unreadable: ${(e as Error).message}` };
  }
  let m: unknown;
  try { m = JSON.parse(text); } catch (e) { return { reason: `manifest.json is not valid JSON: ${(e as Error).message}` }; }
  const o = m as Partial<CheckpointManifest>;
  if (!o || typeof o !== 'object' || o.format !== CKPT_FORMAT) return { reason: `manifest.json is not a symrun checkpoint (format ${JSON.stringify(o?.format)})` };
  if (o.formatVersion !== CKPT_FORMAT_VERSION) return { reason: `unsupported checkpoint format version ${JSON.stringify(o.formatVersion)} (this symrun reads ${CKPT_FORMAT_VERSION})` };
  if (!Array.isArray(o.vms) || o.vms.length === 0) return { reason: 'manifest.json lists no VMs' };
  for (const v of o.vms) {
    if (!v || typeof v.file !== 'string' || typeof v.sha256 !== 'string' || typeof v.size !== 'number' || typeof v.name !== 'string') return { reason: 'manifest.json has a VM entry without name/file/size/sha256' };
    if (path.isAbsolute(v.file) || v.file.split(/[\\/]/).includes('..')) return { reason: `manifest.json names a file outside the checkpoint: ${v.file}` };
  }
  if (typeof o.jobId !== 'string' || typeof o.createdAt !== 'string') return { reason: 'manifest.json has no jobId / createdAt' };
  return { manifest: o as CheckpointManifest };
}

export interface VerifyResult {
  ok: boolean;
  status: CheckpointStatus;
  reason?: string;
  /** every problem found (the first one is `reason`) */
  problems: string[];
  manifest?: CheckpointManifest;
  /** files checked: name -> size / sha256 as found */
  files: Array<{ file: string; size?: number; sha256?: string; ok: boolean }>;
}

/**
 * Check one checkpoint directory: a final name (not NAME.tmp-XXXX), a readable manifest of a known
 * format version, and every VM's state file with the recorded size and sha256 (`hashes: false`
 * compares sizes only). incomplete = still being written or abandoned; corrupt = it claims to be
 * complete but is not.
 */
export async function verifyCheckpoint(dir: string, o: { hashes?: boolean; signal?: AbortSignal } = {}): Promise<VerifyResult> {
  const name = path.basename(dir);
  const files: VerifyResult['files'] = [];
  if (isTempName(name)) {
    const { manifest } = readManifest(dir);
    const reason = manifest ? 'temporary directory (the rename to the final name did not happen)' : 'temporary directory: being written, or abandoned before it was complete';
    return { ok: false, status: 'incomplete', reason, problems: [reason], manifest, files };
  }
  const { manifest, reason } = readManifest(dir);
  if (!manifest) {
    let st: fs.Stats | undefined;
    try { st = fs.statSync(dir); } catch { /* missing */ }
    const r = st?.isDirectory() ? reason! : `no such checkpoint directory: ${dir}`;
    return { ok: false, status: 'corrupt', reason: r, problems: [r], files };
  }
  const problems: string[] = [];
  for (const v of manifest.vms) {
    const f = path.join(dir, v.file);
    let size: number;
    let st: fs.Stats;
    try { st = fs.lstatSync(f); } catch {
      problems.push(`${v.file} (${v.name}) is missing`);
      files.push({ file: v.file, ok: false });
      continue;
    }
    // never follow a link or read a device: a state file pointing at /dev/zero would be hashed forever
    if (!st.isFile()) {
      problems.push(`${v.file} (${v.name}) is not a regular file (${st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? 'a directory' : 'a device, FIFO or socket'})`);
      files.push({ file: v.file, ok: false });
      continue;
    }
    size = st.size;
    if (size !== v.size) {
      problems.push(`${v.file} (${v.name}) has ${size} bytes, the manifest says ${v.size}`);
      files.push({ file: v.file, size, ok: false });
      continue;
    }
    if (o.hashes === false) { files.push({ file: v.file, size, ok: true }); continue; }
    const h = await hashFile(f, o.signal);
    if (h.sha256 !== v.sha256) {
      problems.push(`${v.file} (${v.name}) sha256 ${h.sha256.slice(0, 12)}… does not match the manifest's ${v.sha256.slice(0, 12)}…`);
      files.push({ file: v.file, size, sha256: h.sha256, ok: false });
      continue;
    }
    files.push({ file: v.file, size, sha256: h.sha256, ok: true });
  }
  if (problems.length) return { ok: false, status: 'corrupt', reason: problems[0], problems, manifest, files };
  return { ok: true, status: 'complete', problems, manifest, files };
}

/** Every checkpoint directory under ROOT (newest first), with its status; hashes verified unless `hashes: false`. */
export async function listCheckpoints(root: string, o: { hashes?: boolean; signal?: AbortSignal } = {}): Promise<CheckpointEntry[]> {
  let names: string[];
  try { names = fs.readdirSync(root); } catch (e) {
    throw new SymError('ESYM_CKPT_DIR', { message: `cannot read the checkpoint directory ${root}: ${(e as Error).message}`, fix: 'pass the directory given to --checkpoint-dir', field: 'DIR', value: root, exitCode: EXIT.usage, cause: e });
  }
  const out: CheckpointEntry[] = [];
  for (const name of names.sort()) {
    const dir = path.join(root, name);
    try { if (!fs.statSync(dir).isDirectory()) continue; } catch { continue; }
    // only symrun's: a final dir with a manifest.json, or a NAME.tmp-XXXX dir
    if (!isTempName(name) && !fs.existsSync(path.join(dir, MANIFEST_FILE)) && !fs.existsSync(path.join(dir, `${MANIFEST_FILE}.part`))) {
      // a directory that looks like a checkpoint (state files) but has no manifest is reported as corrupt
      let files: string[] = [];
      try { files = fs.readdirSync(dir); } catch { /* unreadable */ }
      if (!files.some((f) => f.endsWith('.state'))) continue;
    }
    const r = await verifyCheckpoint(dir, o);
    const m = r.manifest;
    let time = m?.createdAt;
    if (!time) { try { time = fs.statSync(dir).mtime.toISOString(); } catch { /* gone */ } }
    out.push({
      name, dir, status: r.status, ...(r.reason ? { reason: r.reason } : {}),
      jobId: m?.jobId ?? /^([^-]+)-/.exec(name)?.[1],
      time,
      vms: m?.vms.map((v) => v.name),
      sizeBytes: dirSize(dir),
      manifest: m,
    });
  }
  return out.sort((a, b) => (b.time ?? '').localeCompare(a.time ?? ''));
}

/**
 * --keep N: remove this job's complete checkpoints beyond the N newest, and its abandoned temp dirs
 * (none of this job's is being written when this runs: one checkpoint at a time). Checkpoints of other
 * jobs and corrupt ones are left alone. Completeness is judged by the manifest (no hashing here).
 */
export function pruneCheckpoints(root: string, jobId: string, keep: number, o: { except?: string } = {}): { removed: string[]; kept: string[] } {
  const removed: string[] = [];
  const complete: Array<{ name: string; time: string }> = [];
  let names: string[] = [];
  try { names = fs.readdirSync(root); } catch { return { removed, kept: [] }; }
  for (const name of names) {
    if (!name.startsWith(`${jobId}-`)) continue;
    const dir = path.join(root, name);
    if (isTempName(name)) {
      if (name.startsWith(`${o.except ?? '\0'}${TMP_MARK}`)) continue;
      fs.rmSync(dir, { recursive: true, force: true });
      removed.push(name);
      continue;
    }
    const { manifest } = readManifest(dir);
    if (manifest && manifest.jobId === jobId) complete.push({ name, time: manifest.createdAt });
  }
  complete.sort((a, b) => b.time.localeCompare(a.time) || b.name.localeCompare(a.name));
  const kept: string[] = [];
  for (const [i, c] of complete.entries()) {
    if (keep > 0 && i >= keep && c.name !== o.except) {
      fs.rmSync(path.join(root, c.name), { recursive: true, force: true });
      removed.push(c.name);
    } else kept.push(c.name);
  }
  return { removed, kept };
}
