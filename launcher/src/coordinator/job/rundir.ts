// A job's run directory (runtimeRoot()/<job id>, mode 0700): who owns it (owner.json: pid AND its start
// time, pid namespace), what a successor coordinator needs (recover.json), the control socket, the
// journal and per-host logs. Also: which run directories on this machine are live, stale or recoverable.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { runtimeRoot } from '../../defaults.js';
import { ownerAlive, procStartTime, readState } from '../../local/state.js';
import { pidsInNetns } from '../../local/index.js';
import { writeFileAtomic } from '../../util/fsatomic.js';
import { readNodeConfig } from '../../node/config.js';
import { nodeLayer } from '../../node/layer.js';
import type { JobOptions } from './context.js';
import { SymError } from '../../errors.js';
import { checkRecoveryState, type RecoveryState } from './recovery-check.js';

export type { RecoveryState } from './recovery-check.js';

export function newJobId(): string {
  return crypto.randomBytes(4).toString('hex').slice(0, 6).replace(/^\d/, 'j');
}

/** This process's pid namespace ("pid:[4026531836]"); run dirs of other pid namespaces are not ours to judge. */
export function pidNamespace(): string | undefined {
  try { return fs.readlinkSync('/proc/self/ns/pid'); } catch { return undefined; }
}

/** owner.json: this process owns the job now (a run, or a recover taking it over). */
export function writeOwner(runDir: string, o: { app: string[]; cwd: string; recovered?: boolean }): void {
  fs.writeFileSync(path.join(runDir, 'owner.json'), JSON.stringify({
    pid: process.pid, pidStartTime: procStartTime(process.pid), pidns: pidNamespace(), startedAt: new Date().toISOString(),
    app: o.app, cwd: o.cwd,
    ...(o.recovered ? { recovered: true } : {}),
    ...(process.env.SLURM_JOB_ID ? { slurmJobId: process.env.SLURM_JOB_ID } : {}),
  }));
}

export function writeRecovery(runDir: string, st: RecoveryState): void {
  writeFileAtomic(path.join(runDir, 'recover.json'), JSON.stringify(st));
}

/**
 * Every job run directory with an owner record, and whether its owner still runs (pid AND start time).
 * `foreign`: the owner runs in another pid namespace (e.g. a Slurm node of a namespace lab sharing
 * /run): its pid means nothing here, so it is neither listed nor cleaned up.
 */
export function runDirs(): Array<{ id: string; dir: string; pid: number; alive: boolean; foreign: boolean }> {
  const out: Array<{ id: string; dir: string; pid: number; alive: boolean; foreign: boolean }> = [];
  const myNs = pidNamespace();
  for (const { id, dir } of jobDirs()) {
    try {
      const o = JSON.parse(fs.readFileSync(path.join(dir, 'owner.json'), 'utf8')) as { pid: number; pidStartTime?: string; pidns?: string };
      const foreign = o.pidns !== undefined && myNs !== undefined && o.pidns !== myNs;
      out.push({ id, dir, pid: o.pid, foreign, alive: foreign || ownerAlive({ ownerPid: o.pid, ownerStartTime: o.pidStartTime }) });
    } catch { /* no or unreadable owner record: not a job dir we manage */ }
  }
  return out;
}

/**
 * Candidate job directories: runtimeRoot()/<id> (local jobs, jobs run as root), and the run directories
 * the root node layer made for Slurm jobs (<runtimeDir>/slurm-<J>: only the owner can read them).
 */
function jobDirs(): Array<{ id: string; dir: string }> {
  const roots = [runtimeRoot()];
  try { const r = readNodeConfig().runtimeDir; if (!roots.includes(r)) roots.push(r); } catch { /* no trusted node config */ }
  const out: Array<{ id: string; dir: string }> = [];
  for (const root of roots) {
    let entries: string[] = [];
    try { entries = fs.readdirSync(root); } catch { continue; }
    for (const id of entries) if (root === roots[0] || /^slurm-[0-9]+$/.test(id)) out.push({ id, dir: path.join(root, id) });
  }
  return out;
}

/** Run directories whose owner process is gone (symrun was SIGKILLed), except those `keep` names. */
export function cleanStaleRunDirs(keep: (id: string) => boolean = () => false): void {
  // only this process's own runtime root: a node layer's run directory is the epilog's to remove
  const mine = runtimeRoot();
  for (const r of runDirs()) if (path.dirname(r.dir) === mine && !r.alive && !r.foreign && !keep(r.id)) fs.rmSync(r.dir, { recursive: true, force: true });
}

/** Live jobs on this machine (for `symrun status` / `exec` without --job). */
export function listJobs(): Array<{ id: string; pid: number; control: string }> {
  return runDirs()
    .filter((r) => r.alive && !r.foreign && fs.existsSync(path.join(r.dir, 'control.sock')))
    .map((r) => ({ id: r.id, pid: r.pid, control: path.join(r.dir, 'control.sock') }));
}

/** A local job whose coordinator died, with a recovery record and host agents still waiting for a new coordinator. */
export function recoverable(jobId: string): boolean {
  if (!fs.existsSync(path.join(runtimeRoot(), jobId, 'recover.json'))) return false;
  const ns = readState(jobId)?.namespaces ?? [];
  return pidsInNetns(ns).some((pid) => {
    try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('hostagent.js'); } catch { return false; }
  });
}

/**
 * Jobs on this machine whose coordinator is gone but whose recovery record is there: its state, checked
 * (recovery-check.ts), or the problem that makes it unusable (a damaged record is listed, so that
 * `symrun recover` names the damage instead of saying there is nothing to recover).
 */
export type Recoverable = { id: string; state: RecoveryState; problem?: undefined } | { id: string; state?: undefined; problem: SymError };

export function listRecoverable(): Recoverable[] {
  return runDirs()
    .filter((r) => !r.alive && !r.foreign)
    .flatMap((r): Recoverable[] => {
      const file = path.join(r.dir, 'recover.json');
      let text: string;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch {
        return [];
      }
      try {
        return [{ id: r.id, state: checkRecoveryState(JSON.parse(text), r.id, file) }];
      } catch (e) {
        const problem = e instanceof SymError ? e : new SymError('ESYM_RECOVER', {
          message: `${file} is not JSON (${(e as Error).message})`,
          fix: `the recovery record of job ${r.id} is damaged, so the job cannot be taken over; run the job again, or resume it from its last checkpoint (symrun restart DIR --local N)`,
        });
        return [{ id: r.id, problem }];
      }
    });
}

/** Remove the run directory (one the node layer made is the user's but not its parent: empty it then). */
export function removeRunDir(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EACCES' && (e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
  }
}

/**
 * The job's run directory: in a Slurm job prepared by the root node layer, the directory root made for
 * it (owned by the user, on every node); otherwise runtimeRoot()/<symrun job id>.
 */
export function runDirFor(opts: JobOptions, id: string): string {
  const env = process.env;
  const job = env.SLURM_JOB_ID ?? env.SLURM_JOBID;
  if (opts.config.local < 1 && job && env.SLURMD_NODENAME) {
    const layer = nodeLayer(job, env.SLURMD_NODENAME);
    if (layer) return layer.record.runDir;
  }
  return path.join(runtimeRoot(), id);
}
