// The Slurm epilog's work for a symrun job (root, on every node of the allocation): undo exactly what
// the record (record.ts) lists, after the job's processes are gone. The job's processes are found by
// facts the kernel and Slurm give, never by names or environment a user controls:
//   - Slurm's own tracking of the job on this node (`scontrol listpids JOB`);
//   - processes of the job's uid that hold one of the job's taps open (/proc/PID/fdinfo "iff:") or
//     whose working directory or an open file lies in the job's run directory (/proc/PID/cwd, fd links).
// Another job's resources are never touched: every name is the job's (names.ts), every process is
// checked against the job's uid. The run directory is removed as the user (root never walks a
// directory its user can change under it).
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { NodeConfig } from './config.js';
import { isJobInterface } from './names.js';
import { readRecord, removeRecord, type JobRecord } from './record.js';
import { destroyJobNetwork } from './network.js';
import { sys } from './sys.js';
import { releaseJobVfs, realDeviceManager, type DeviceManagerFactory } from './vfs.js';

export interface EpilogReport { job: string; killed: number[]; survivors: number[]; removed: string[]; runDir?: string; problems: string[] }

function uidOf(pid: number): number | undefined {
  try { return fs.statSync(`/proc/${pid}`).uid; } catch { return undefined; }
}

function pids(): number[] {
  return fs.readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d)).map(Number);
}

/** pids of this job on this node (see the header). */
export async function jobProcesses(cfg: NodeConfig, rec: JobRecord, self = process.pid): Promise<number[]> {
  const found = new Set<number>();
  const lp = await sys(cfg.scontrol, ['listpids', rec.job], { timeoutMs: 10_000 });
  if (lp.ok) for (const m of lp.stdout.matchAll(/^\s*(\d+)\s/gm)) found.add(Number(m[1]));
  const taps = new Set([...rec.attached.flatMap((a) => [a.tap, a.standby?.tap]).filter((t): t is string => !!t)]);
  const inRunDir = (p: string) => p === rec.runDir || p.startsWith(`${rec.runDir}/`);
  for (const pid of pids()) {
    if (pid === self || uidOf(pid) !== rec.uid) continue;
    let mine = false;
    try { mine = inRunDir(fs.readlinkSync(`/proc/${pid}/cwd`)); } catch { /* gone */ }
    if (!mine) {
      let fds: string[] = [];
      try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch { /* gone */ }
      for (const fd of fds) {
        let target = '';
        try { target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
        if (inRunDir(target)) { mine = true; break; }
        if (target === '/dev/net/tun') {
          let info = '';
          try { info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'); } catch { continue; }
          const iff = /^iff:\s*(\S+)/m.exec(info)?.[1];
          if (iff && (taps.has(iff) || isJobInterface(iff, rec.job))) { mine = true; break; }
        }
      }
    }
    if (mine) found.add(pid);
  }
  // Slurm's list may include root's own step daemons: only the job's user's processes are ours to kill
  return [...found].filter((p) => p !== self && uidOf(p) === rec.uid).sort((a, b) => a - b);
}

async function killAll(ps: number[], graceMs: number): Promise<number[]> {
  const alive = (p: number) => { try { const s = fs.readFileSync(`/proc/${p}/stat`, 'utf8'); return !/\) Z /.test(s); } catch { return false; } };
  for (const p of ps) { try { process.kill(p, 'SIGTERM'); } catch { /* gone */ } }
  const until = Date.now() + graceMs;
  while (ps.some(alive) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  for (const p of ps.filter(alive)) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
  const until2 = Date.now() + 3000;
  while (ps.some(alive) && Date.now() < until2) await new Promise((r) => setTimeout(r, 50));
  return ps.filter(alive);
}

/** Remove the user's run directory as the user (uid/gid dropped), then its (now empty) name as root. */
function removeAsUser(dir: string, uid: number, gid: number): Promise<void> {
  return new Promise((resolve) => {
    const c = spawn('/bin/rm', ['-rf', '--one-file-system', '--', dir], { uid, gid, env: { PATH: '/usr/bin:/bin' }, stdio: 'ignore' });
    c.on('error', () => resolve());
    c.on('close', () => { try { fs.rmdirSync(dir); } catch { /* gone or not empty: reported */ } resolve(); });
  });
}

export async function epilog(cfg: NodeConfig, job: string, node: string, o: { graceMs?: number; devices?: DeviceManagerFactory } = {}): Promise<EpilogReport | undefined> {
  const rec = readRecord(cfg.stateDir, node, job);
  if (!rec) return undefined;
  const report: EpilogReport = { job, killed: [], survivors: [], removed: [], problems: [] };
  report.killed = await jobProcesses(cfg, rec);
  report.survivors = await killAll(report.killed, o.graceMs ?? 2000);
  for (const p of report.survivors) report.problems.push(`pid ${p} of job ${job} survives SIGKILL`);
  // the job's VFs, once no process of the job holds /dev/vfio/N (by job id: also what a prolog that
  // died half-way claimed; node/vfs.ts)
  if (cfg.vfSlots > 0 || rec.vfs?.length) {
    const v = await releaseJobVfs(o.devices ?? realDeviceManager, job);
    report.removed.push(...v.released.map((p) => `VF ${p}`));
    report.problems.push(...v.problems);
  }
  report.removed.push(...(await destroyJobNetwork(cfg, rec)));
  if (fs.existsSync(rec.runDir) && path.dirname(rec.runDir) === cfg.runtimeDir) {
    await removeAsUser(rec.runDir, rec.uid, rec.gid);
    if (fs.existsSync(rec.runDir)) report.problems.push(`${rec.runDir} could not be removed`);
    else report.runDir = rec.runDir;
  }
  if (!report.problems.length) removeRecord(cfg.stateDir, node, job);
  return report;
}
