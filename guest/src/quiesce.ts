// Quiesce and resume of the job's ranks by adapter: freeze (cgroup v2 freezer, else SIGSTOP of the rank
// trees), failover (traffic to the bond's standby; ranks keep running), hooks (the site's command).
import fs from 'node:fs';
import type { QuiesceArgs } from '../protocol/index.js';
import { AgentError, execFileP, readSys, sleep } from './util.js';
import { ensureJobCgroup, JOB_CGROUP } from './cgroup.js';
import { failoverToStandby } from './bond.js';

export class Quiescer {
  /** roots: the pids of the job's sessions (for the SIGSTOP fallback) */
  constructor(private readonly roots: () => number[]) {}
  private frozenPids: number[] = [];

  private jobPids(): number[] {
    // fallback: every descendant of job sessions
    const children = new Map<number, number[]>();
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      const st = readSys(`/proc/${d}/stat`);
      const m = /\) \S+ (\d+)/.exec(st);
      if (!m) continue;
      const pp = Number(m[1]);
      if (!children.has(pp)) children.set(pp, []);
      children.get(pp)!.push(Number(d));
    }
    const out: number[] = [];
    const stack = this.roots();
    while (stack.length) {
      const p = stack.pop()!;
      out.push(p);
      stack.push(...(children.get(p) ?? []));
    }
    return out;
  }

  // A quiesce that is overtaken by a resume (the host gave up waiting and rolled back) must not
  // freeze anything when it finally runs: every quiesce/resume takes a ticket, later ones win.
  private quiesceTicket = 0;

  async quiesce(a: QuiesceArgs): Promise<{ adapter: string; frozen: number }> {
    const ticket = ++this.quiesceTicket;
    if (a.stallMs) await sleep(Math.min(a.stallMs, 600_000));
    if (ticket !== this.quiesceTicket) throw new AgentError('ECANCELED', 'quiesce overtaken by a resume; nothing frozen');
    if (a.adapter === 'freeze') {
      if (ensureJobCgroup()) {
        fs.writeFileSync(`${JOB_CGROUP}/cgroup.freeze`, '1');
        const deadline = Date.now() + 10_000;
        while (!/frozen 1/.test(readSys(`${JOB_CGROUP}/cgroup.events`)) && Date.now() < deadline) await sleep(10);
        const n = readSys(`${JOB_CGROUP}/cgroup.procs`).split('\n').filter(Boolean).length;
        if (!/frozen 1/.test(readSys(`${JOB_CGROUP}/cgroup.events`))) throw new AgentError('ETIMEDOUT', 'job cgroup did not freeze within 10 s');
        return { adapter: 'freeze', frozen: n };
      }
      this.frozenPids = this.jobPids();
      for (const p of this.frozenPids) try { process.kill(p, 'SIGSTOP'); } catch { /* gone */ }
      return { adapter: 'freeze', frozen: this.frozenPids.length };
    }
    if (a.adapter === 'failover') {
      // ranks keep running over the standby path
      await failoverToStandby(a.bond ?? 'symfab0');
      return { adapter: 'failover', frozen: 0 };
    }
    if (a.adapter === 'hooks') {
      if (a.command) await execFileP('/bin/sh', ['-c', a.command], { timeout: 60_000 });
      return { adapter: 'hooks', frozen: 0 };
    }
    throw new AgentError('EINVAL', `unknown quiesce adapter ${String(a.adapter)}`);
  }

  async resume(a: QuiesceArgs): Promise<{ adapter: string }> {
    this.quiesceTicket++;
    if (a.adapter === 'freeze') {
      if (ensureJobCgroup()) fs.writeFileSync(`${JOB_CGROUP}/cgroup.freeze`, '0');
      for (const p of this.frozenPids) try { process.kill(p, 'SIGCONT'); } catch { /* gone */ }
      this.frozenPids = [];
    } else if (a.adapter === 'hooks') {
      if (a.command) await execFileP('/bin/sh', ['-c', a.command], { timeout: 60_000 });
    }
    return { adapter: a.adapter };
  }
}
