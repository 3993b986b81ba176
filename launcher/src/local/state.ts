// Per-job state of local mode: /run/symrun/local/<jobId>.json, written BEFORE anything is created
// and updated as things are created, so cleanup works even if the owner was SIGKILLed mid-creation.
// Subnet claims (/run/symrun/local/net-<a.b.c.d>-<len>) are created with O_EXCL so two jobs starting
// at the same moment never pick the same subnet.
import fs from 'node:fs';
import { writeFileAtomic } from '../util/fsatomic.js';
import path from 'node:path';
import { LOCAL_DEFAULTS } from '../defaults.js';

export interface LocalJobState {
  version: 1;
  jobId: string;
  ownerPid: number;
  /** /proc/<pid>/stat start time of the owner, so a recycled pid is not taken for the owner */
  ownerStartTime?: string;
  /** the owner's pid namespace (/proc/self/ns/pid): pids of other namespaces cannot be judged from here */
  ownerPidns?: string;
  createdAt: string;
  phase: 'creating' | 'ready' | 'destroying';
  hosts: number;
  subnet?: string;
  /** every namespace this job may have created (planned names, written before creation) */
  namespaces: string[];
  /** links in the root namespace this job may have created */
  links: string[];
  /** files (besides this state file) to delete at cleanup */
  files: string[];
}

export function stateDir(): string {
  return process.env.SYMRUN_LOCAL_STATE_DIR || LOCAL_DEFAULTS.stateDir;
}

export function statePath(jobId: string): string {
  return path.join(stateDir(), `${jobId}.json`);
}

export function claimPath(cidr: string): string {
  return path.join(stateDir(), `net-${cidr.replace('/', '-')}`);
}

export function ensureStateDir(): void {
  fs.mkdirSync(stateDir(), { recursive: true, mode: 0o755 });
}

export function writeState(s: LocalJobState): void {
  ensureStateDir();
  const p = statePath(s.jobId);
  writeFileAtomic(p, JSON.stringify(s, null, 2) + '\n', 0o644);
}

export function readState(jobId: string): LocalJobState | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(statePath(jobId), 'utf8')) as LocalJobState;
    if (!s || typeof s !== 'object' || s.jobId !== jobId) return undefined;
    s.namespaces = Array.isArray(s.namespaces) ? s.namespaces.filter((x) => typeof x === 'string') : [];
    s.links = Array.isArray(s.links) ? s.links.filter((x) => typeof x === 'string') : [];
    s.files = Array.isArray(s.files) ? s.files.filter((x) => typeof x === 'string') : [];
    return s;
  } catch {
    return undefined;
  }
}

/** Job ids that have a state file. */
export function listStateJobIds(): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(stateDir());
  } catch {
    return [];
  }
  return names.filter((n) => /^[a-z0-9]{1,8}\.json$/.test(n)).map((n) => n.slice(0, -5));
}

/** Subnet claims: cidr -> jobId. */
export function listClaims(): Map<string, string> {
  const out = new Map<string, string>();
  let names: string[];
  try {
    names = fs.readdirSync(stateDir());
  } catch {
    return out;
  }
  for (const n of names) {
    const m = /^net-([0-9.]+)-([0-9]{1,2})$/.exec(n);
    if (!m) continue;
    try {
      out.set(`${m[1]}/${m[2]}`, fs.readFileSync(path.join(stateDir(), n), 'utf8').trim());
    } catch {
      /* removed meanwhile */
    }
  }
  return out;
}

/** Atomically claim a subnet for a job; false if another job holds it. */
export function tryClaim(cidr: string, jobId: string): boolean {
  ensureStateDir();
  try {
    fs.writeFileSync(claimPath(cidr), jobId + '\n', { flag: 'wx', mode: 0o644 });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

export function removeFile(p: string): boolean {
  try {
    fs.unlinkSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Start time (field 22 of /proc/<pid>/stat) or undefined if the process is gone or a zombie. */
export function procStartTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] = state (field 3), start time = field 22 -> rest[19]
  if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
  return rest[19];
}

/** Is the job's owner still running (same pid AND same start time)? */
export function ownerAlive(s: Pick<LocalJobState, 'ownerPid' | 'ownerStartTime'>): boolean {
  if (!Number.isInteger(s.ownerPid) || s.ownerPid <= 0) return false;
  const st = procStartTime(s.ownerPid);
  if (st === undefined) return false;
  return s.ownerStartTime === undefined || s.ownerStartTime === st;
}

/** This process's pid namespace, e.g. "pid:[4026531836]". */
export function pidNamespace(): string | undefined {
  try { return fs.readlinkSync('/proc/self/ns/pid'); } catch { return undefined; }
}

/** The machine's initial pid namespace (PROC_PID_INIT_INO): only from there is every process visible. */
export function inInitialPidNamespace(): boolean {
  return pidNamespace() === 'pid:[4026531836]';
}
