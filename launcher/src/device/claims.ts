// Exclusive claims of VFs: files in a root-owned state directory, created atomically, readable by the
// epilog after any crash.
//
// Layout (the directory and its subdirectories: owner root, mode 0700):
//   vf/<pci>              the claim of one VF: JSON (Claim below). Exists <=> the VF is claimed.
//   slot/<job>.<slot>     the job's VF slot on this node (the MAC/GUID of the VF is derived from it)
//   tmp/<job>.<pid>.<n>   a record being written
// Protocol: a record is written complete into tmp/, fsynced, then link(2)ed to its name. link fails with
// EEXIST if the name exists, atomically, on every local file system: of any number of concurrent claimers
// exactly one gets a VF (or a slot), and nobody ever sees half a record. A crash leaves either no record
// (nothing was claimed), or a complete one (the epilog can read it and undo what it names), plus at most a
// temp file named by the job (removed with the job's claims). Nothing here locks, so a claimer killed at any
// point blocks nobody: the kernel needs no unlock.
// Updates of one's own record (its stage) rename a new temp file over it.
// Records are read back with the same suspicion as any input: size bound, schema, the file name must match
// the address inside; a record that fails is reported and never acted upon.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { isPciAddress } from './pci.js';

export const CLAIM_STAGES = ['claimed', 'configured', 'bound', 'ready'] as const;
export type ClaimStage = (typeof CLAIM_STAGES)[number];

export interface Claim {
  version: 1;
  /** the VF */
  pci: string;
  pf: string;
  vfIndex: number;
  type: 'ethernet' | 'infiniband';
  /** the node config pool it came from */
  pool: string;
  /** Slurm job id (digits) */
  job: string;
  /** the job's user, who gets /dev/vfio/<group> */
  uid: number;
  gid: number;
  /** the job's VF slot on this node */
  slot: number;
  node: string;
  nodeIndex: number;
  claimedAt: string;
  /** driver the VF was bound to before the claim (null: none) */
  boundFrom: string | null;
  /** its driver_override before the claim (null: unset) */
  overrideFrom: string | null;
  group: number | null;
  mac: string | null;
  nodeGuid: string | null;
  portGuid: string | null;
  /** how far the claimer got: claimed -> configured (ip link) -> bound (vfio-pci) -> ready (/dev/vfio chowned) */
  stage: ClaimStage;
  /** pid of the process that made the claim */
  claimerPid: number;
  /** random id of this claim (an update replaces only the claim it made) */
  nonce: string;
}

export interface BadRecord { file: string; reason: string }

export const JOB_RE = /^[1-9][0-9]{0,9}$/;
const MAX_RECORD_BYTES = 64 * 1024;

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}
const strOrNull = (v: unknown, re: RegExp) => v === null || (typeof v === 'string' && re.test(v));

/** Check a claim record read from disk; returns the reason it is not one, or undefined. */
export function claimProblem(c: unknown, fileName: string): string | undefined {
  if (c === null || typeof c !== 'object' || Array.isArray(c)) return 'not a JSON object';
  const o = c as Record<string, unknown>;
  if (o.version !== 1) return `unknown version ${JSON.stringify(o.version)}`;
  if (!isPciAddress(o.pci)) return 'pci is not a PCI address';
  if (o.pci !== fileName) return `names ${String(o.pci)}, but the file is ${fileName}`;
  if (!isPciAddress(o.pf)) return 'pf is not a PCI address';
  if (!isInt(o.vfIndex, 0, 65535)) return 'bad vfIndex';
  if (o.type !== 'ethernet' && o.type !== 'infiniband') return 'bad type';
  if (typeof o.pool !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(o.pool)) return 'bad pool';
  if (typeof o.job !== 'string' || !JOB_RE.test(o.job)) return 'job is not a Slurm job id';
  if (!isInt(o.uid, 0, 2 ** 32 - 2) || !isInt(o.gid, 0, 2 ** 32 - 2)) return 'bad uid/gid';
  if (!isInt(o.slot, 0, 1023)) return 'bad slot';
  if (typeof o.node !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(o.node)) return 'bad node';
  if (!isInt(o.nodeIndex, 0, 65535)) return 'bad nodeIndex';
  if (typeof o.claimedAt !== 'string' || Number.isNaN(Date.parse(o.claimedAt))) return 'bad claimedAt';
  if (!strOrNull(o.boundFrom, /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/) || !strOrNull(o.overrideFrom, /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/)) return 'bad boundFrom/overrideFrom';
  if (!(o.group === null || isInt(o.group, 0, 1e9))) return 'bad group';
  if (!strOrNull(o.mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/) || !strOrNull(o.nodeGuid, /^[0-9a-f]{2}(:[0-9a-f]{2}){7}$/) || !strOrNull(o.portGuid, /^[0-9a-f]{2}(:[0-9a-f]{2}){7}$/)) return 'bad mac/guid';
  if (!(CLAIM_STAGES as readonly unknown[]).includes(o.stage)) return 'bad stage';
  if (!isInt(o.claimerPid, 1, 2 ** 22)) return 'bad claimerPid';
  if (typeof o.nonce !== 'string' || !/^[0-9a-f]{16,64}$/.test(o.nonce)) return 'bad nonce';
  return undefined;
}

export interface SlotRecord { job: string; slot: number; pid: number; at: string }

export interface StoreListing {
  claims: Claim[];
  bad: BadRecord[];
  slots: SlotRecord[];
  /** temp files left by claimers (named by job and pid) */
  temps: Array<{ file: string; job?: string; pid?: number }>;
}

export type StepHook = (step: string, detail: Record<string, unknown>) => void;

export class ClaimStore {
  readonly dir: string;
  private seq = 0;
  private readonly onStep: StepHook;

  constructor(dir: string, opts: { onStep?: StepHook } = {}) {
    this.dir = path.resolve(dir);
    this.onStep = opts.onStep ?? (() => {});
  }

  private sub(name: 'vf' | 'slot' | 'tmp'): string {
    return path.join(this.dir, name);
  }

  /**
   * Create the directory and its subdirectories (mode 0700) if missing, and refuse one that others could
   * write into or that is a symlink. When running as root the directory must belong to root.
   */
  init(): void {
    try {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      for (const s of ['vf', 'slot', 'tmp'] as const) fs.mkdirSync(this.sub(s), { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new SymError('ESYM_DEVICE_STATE', { message: `cannot create the claim directory ${this.dir}: ${(e as Error).message}`, field: 'devices.stateDir', value: this.dir, fix: 'run as root, or point devices.stateDir at a directory root owns', exitCode: EXIT.environment, cause: e });
    }
    for (const d of [this.dir, this.sub('vf'), this.sub('slot'), this.sub('tmp')]) {
      const st = fs.lstatSync(d);
      const euid = process.geteuid?.() ?? 0;
      const why = st.isSymbolicLink() ? 'is a symbolic link'
        : !st.isDirectory() ? 'is not a directory'
          : (st.mode & 0o022) ? `is writable by group or others (mode ${(st.mode & 0o777).toString(8)})`
            : euid === 0 && st.uid !== 0 ? `belongs to uid ${st.uid}, not root` : undefined;
      if (why) throw new SymError('ESYM_DEVICE_STATE', { message: `claim directory ${d} ${why}`, field: 'devices.stateDir', value: this.dir, fix: `remove it (claims are only valid while the node runs) or chown root:root ${d} && chmod 0700 ${d}`, exitCode: EXIT.environment });
    }
  }

  private tempFile(job: string): string {
    return path.join(this.sub('tmp'), `${job}.${process.pid}.${++this.seq}.${crypto.randomBytes(4).toString('hex')}`);
  }

  private writeTemp(job: string, data: string): string {
    const tmp = this.tempFile(job);
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    try {
      fs.writeSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    this.onStep('temp-written', { job, file: tmp });
    return tmp;
  }

  /** link(tmp, name): true if this call created name, false if it existed. The temp file is removed. */
  private publish(tmp: string, name: string): boolean {
    try {
      fs.linkSync(tmp, name);
      syncDir(path.dirname(name));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  /** Reserve the lowest free slot of job on this node (0..maxSlot); undefined if all are taken. */
  reserveSlot(job: string, maxSlot: number): number | undefined {
    checkJob(job);
    for (let s = 0; s <= maxSlot; s++) {
      const name = path.join(this.sub('slot'), `${job}.${s}`);
      if (fs.existsSync(name)) continue;
      const rec: SlotRecord = { job, slot: s, pid: process.pid, at: new Date().toISOString() };
      if (this.publish(this.writeTemp(job, JSON.stringify(rec) + '\n'), name)) {
        this.onStep('slot-reserved', { job, slot: s });
        return s;
      }
    }
    return undefined;
  }

  releaseSlot(job: string, slot: number): void {
    checkJob(job);
    fs.rmSync(path.join(this.sub('slot'), `${job}.${slot}`), { force: true });
  }

  /** Create the claim record of c.pci; false if the VF is claimed already (by anyone). */
  tryClaim(c: Claim): boolean {
    const why = claimProblem(c, c.pci);
    if (why) throw new Error(`device layer: refusing to write a bad claim (${why})`);
    const ok = this.publish(this.writeTemp(c.job, JSON.stringify(c, null, 1) + '\n'), path.join(this.sub('vf'), c.pci));
    this.onStep(ok ? 'claimed' : 'claim-lost', { job: c.job, pci: c.pci });
    return ok;
  }

  /** Replace one's own claim (same pci, job and nonce) with c: the new stage, settings. */
  update(c: Claim): void {
    const cur = this.get(c.pci);
    if (!cur || cur.job !== c.job || cur.nonce !== c.nonce) {
      throw new SymError('ESYM_DEVICE_STATE', { message: `the claim of ${c.pci} by job ${c.job} is gone or was replaced (released while it was being set up?)`, field: 'pci', value: c.pci, fix: 'claim again', exitCode: EXIT.runtime });
    }
    const tmp = this.writeTemp(c.job, JSON.stringify(c, null, 1) + '\n');
    fs.renameSync(tmp, path.join(this.sub('vf'), c.pci));
    syncDir(this.sub('vf'));
    this.onStep(`stage-${c.stage}`, { job: c.job, pci: c.pci });
  }

  /** The claim of pci, if there is a valid one. */
  get(pci: string): Claim | undefined {
    if (!isPciAddress(pci)) return undefined;
    const r = readRecord(path.join(this.sub('vf'), pci), pci);
    return 'claim' in r ? r.claim : undefined;
  }

  /** Remove the claim of pci, only if it belongs to job (re-read just before). */
  remove(pci: string, job: string): boolean {
    checkJob(job);
    const cur = this.get(pci);
    if (!cur || cur.job !== job) return false;
    fs.rmSync(path.join(this.sub('vf'), pci), { force: true });
    syncDir(this.sub('vf'));
    this.onStep('unclaimed', { job, pci });
    return true;
  }

  /** Remove the job's slot reservations and temp files (after its claims are gone). */
  removeJobLeftovers(job: string): string[] {
    checkJob(job);
    const gone: string[] = [];
    for (const s of ['slot', 'tmp'] as const) {
      for (const f of safeList(this.sub(s))) {
        if (f.split('.')[0] === job) {
          fs.rmSync(path.join(this.sub(s), f), { force: true });
          gone.push(`${s}/${f}`);
        }
      }
    }
    return gone;
  }

  list(): StoreListing {
    const out: StoreListing = { claims: [], bad: [], slots: [], temps: [] };
    for (const f of safeList(this.sub('vf'))) {
      const r = readRecord(path.join(this.sub('vf'), f), f);
      if ('claim' in r) out.claims.push(r.claim);
      else out.bad.push({ file: `vf/${f}`, reason: r.reason });
    }
    for (const f of safeList(this.sub('slot'))) {
      const m = /^([1-9][0-9]{0,9})\.([0-9]{1,4})$/.exec(f);
      if (m) out.slots.push(readSlot(path.join(this.sub('slot'), f)) ?? { job: m[1]!, slot: Number(m[2]), pid: 0, at: '' });
      else out.bad.push({ file: `slot/${f}`, reason: 'not a slot file name' });
    }
    for (const f of safeList(this.sub('tmp'))) {
      const m = /^([1-9][0-9]{0,9})\.([0-9]+)\./.exec(f);
      out.temps.push({ file: `tmp/${f}`, ...(m ? { job: m[1]!, pid: Number(m[2]) } : {}) });
    }
    out.claims.sort((a, b) => a.pci.localeCompare(b.pci));
    return out;
  }
}

export function checkJob(job: string): void {
  if (typeof job !== 'string' || !JOB_RE.test(job) || Number(job) > 2 ** 32 - 1) throw new Error(`device layer: bad job id ${JSON.stringify(job)}`);
}

function safeList(d: string): string[] {
  try {
    return fs.readdirSync(d).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

function syncDir(d: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(d, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    fs.fsyncSync(fd);
  } catch {
    // a directory fsync is durability only (tmpfs /run has none to give): never a reason to fail
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function readBounded(file: string): string | { reason: string } {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    return { reason: `cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return { reason: 'not a regular file' };
    if (st.size > MAX_RECORD_BYTES) return { reason: `too large (${st.size} bytes)` };
    const buf = Buffer.alloc(st.size);
    const n = fs.readSync(fd, buf, 0, st.size, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

function readRecord(file: string, name: string): { claim: Claim } | { reason: string } {
  if (!isPciAddress(name)) return { reason: 'the file name is no PCI address' };
  const text = readBounded(file);
  if (typeof text !== 'string') return text;
  let c: unknown;
  try {
    c = JSON.parse(text);
  } catch {
    return { reason: 'not JSON' };
  }
  const why = claimProblem(c, name);
  return why ? { reason: why } : { claim: c as Claim };
}

function readSlot(file: string): SlotRecord | undefined {
  const text = readBounded(file);
  if (typeof text !== 'string') return undefined;
  try {
    const o = JSON.parse(text) as SlotRecord;
    return typeof o.job === 'string' && JOB_RE.test(o.job) && Number.isInteger(o.slot) && Number.isInteger(o.pid) ? o : undefined;
  } catch {
    return undefined;
  }
}

export function newNonce(): string {
  return crypto.randomBytes(12).toString('hex');
}
