// Reactive restart: a host of the job is lost (its agent silent or gone, Slurm says DOWN, or it left
// the allocation). Its VMs are lost with it; the run loop (supervise) wakes up and restarts the job
// from its last complete checkpoint (protocol/restart.ts: every VM restored, the lost ones on spares),
// or from the beginning (--restart-from-start), at most --max-restarts times.
import crypto from 'node:crypto';
import { SymError, EXIT } from '../../errors.js';
import { DEFAULTS } from '../../defaults.js';
import { opEvent } from '../../protocol/events.js';
import { pickCheckpoint, planRestart, restoreVms, type PickedCheckpoint } from '../restart.js';
import type { Migrations } from '../migrate.js';
import type { Checkpoints } from '../checkpoint.js';
import type { JobAccess } from '../migrate.js';
import type { HostAgents } from './agents.js';
import type { Vms } from './vms.js';
import type { MpiSession } from './mpi-session.js';
import { stageIn } from './staging.js';
import { ending, type JobContext } from './context.js';

/** What mpirun was started with (a restart from the beginning launches it again). */
export interface LaunchRecord { vm: string; argv: string[]; env: Record<string, string>; rankVm: string[]; stage: { abs: string[]; cwd: string[] } }

export interface RestartLogEntry { at: string; hosts: string[]; why: string; from?: string; ms?: number; moved?: Array<{ vm: string; from: string; to: string }> }

export interface RestartDeps {
  agents: HostAgents;
  vms: Vms;
  mpi: MpiSession;
  migrations: Migrations;
  checkpoints: Checkpoints;
  access: JobAccess;
  /** a node left / joined: the allocation is read again after a restart (Slurm) */
  checkAllocation(): Promise<void>;
  /** the drain policy re-evaluates the nodes (Slurm) */
  evaluatePolicy(): void;
}

export class Restarts {
  /** restarts used so far (a recovered job goes on counting from what its dead coordinator had used) */
  count = 0;
  /** how many restarts the job may use in all (--max-restarts) */
  max: number;
  readonly log: RestartLogEntry[] = [];
  /** a loss the run loop has not handled yet */
  private pending?: { hosts: string[]; why: string };
  /** wakes the run loop (supervise) when a host is lost */
  private wake?: () => void;
  launch?: LaunchRecord;

  constructor(private job: JobContext, private d: RestartDeps) {
    this.max = job.config.checkpoint.maxRestarts;
  }

  /** Go on with a budget partly used already (job.ts: a run starts at 0, a recovered job where it was). */
  resume(r: { used: number; max: number; log: RestartLogEntry[] }): void {
    this.count = r.used;
    this.max = r.max;
    this.log.splice(0, this.log.length, ...r.log);
  }

  /** A host is gone (agent silent or disconnected, or Slurm says DOWN): its VMs are lost with it. */
  hostLost(host: string, why: string): void {
    const job = this.job;
    if (job.lostHosts.has(host) || ending(job.state)) return;
    job.lostHosts.add(host);
    this.d.agents.drop(host);
    const vms = [...job.vms.values()].filter((v) => v.host === host);
    for (const v of vms) { v.client.detach(`host ${host} lost`); v.state = 'stopped'; }
    job.say(`host ${host} lost (${why})${vms.length ? `: ${vms.map((v) => v.name).join(', ')} went with it` : ': it was a spare, no longer a target'}`);
    job.event(opEvent('restart', '-', 'new', 'action', { action: 'host-lost', host, why, vms: vms.map((v) => v.name) }));
    if (!vms.length) return;
    if (this.pending) this.pending.hosts.push(host);
    else this.pending = { hosts: [host], why };
    this.wake?.();
  }

  private possible(): boolean {
    const c = this.job.config.checkpoint;
    return this.max > 0 && (!!c.dir || c.restartFromStart);
  }

  /** Wait for mpirun; when a host with VMs is lost meanwhile, restart (from the last checkpoint) and wait again. */
  async supervise(first: Promise<number>): Promise<number> {
    let mpi = first;
    for (;;) {
      let wake!: () => void;
      const woken = new Promise<void>((r) => { wake = r; });
      this.wake = wake;
      if (this.pending) wake();
      const r = await Promise.race([mpi.then((s) => ({ s })), woken.then(() => undefined)]);
      this.wake = undefined;
      if (r && !this.pending) {
        if (r.s === 0 || !this.possible() || this.job.opts.signal?.aborted) return r.s;
        await this.d.agents.probe();
        if (!this.pending) return r.s;
        this.job.say(`mpirun ended with ${r.s} after a host was lost: restarting instead of ending the job`);
      }
      mpi.catch(() => undefined); // the old session is not waited for any more
      try {
        mpi = (await this.restart()).mpi;
      } catch (e) {
        // another host died while restoring (e.g. the spare): try again with what is left
        if (!this.pending || (e as SymError).code !== 'ESYM_RESTART') throw e;
        this.job.say(`restart failed (${(e as Error).message}); another host was lost meanwhile: restarting again`);
        mpi = new Promise<number>(() => undefined);
      }
    }
  }

  /** Cancel migrations and wait (bounded) for them and a checkpoint in flight to end: the restart replaces every VM anyway. */
  private async settleOps(ms: number): Promise<void> {
    const { migrations, checkpoints } = this.d;
    for (const o of migrations.list().filter((x) => !x.result)) { try { migrations.cancel(o.vm); } catch { /* finishing */ } }
    const busy = checkpoints.active();
    busy?.exec.cancel('a host of the job was lost: the job restarts from its last complete checkpoint');
    const until = Date.now() + ms;
    while (Date.now() < until && (migrations.list().some((o) => !o.result) || (busy && !busy.info.result))) await new Promise((r) => setTimeout(r, 100));
  }

  /** Checkpoint ids this job may restart from: its own, and the one it was restarted from. */
  private checkpointJobIds(): string[] {
    return [...new Set([this.job.id, this.job.macSeed])];
  }

  /** The restart itself: returns the new wait for mpirun; throws (ending the job) when it cannot restart. */
  private async restart(): Promise<{ mpi: Promise<number> }> {
    const job = this.job;
    const loss = this.pending!;
    this.pending = undefined;
    const cfg = job.config;
    const root = cfg.checkpoint.dir;
    const lostVms = [...job.vms.values()].filter((v) => job.lostHosts.has(v.host)).map((v) => v.name);
    const what = `${lostVms.join(', ')} lost with ${loss.hosts.join(', ')} (${loss.why})`;
    job.state = 'restarting';
    await this.settleOps(15_000);
    let picked: PickedCheckpoint | undefined;
    let none = '';
    if (root) {
      try {
        picked = await pickCheckpoint(root, { jobIds: this.checkpointJobIds() });
      } catch (e) {
        if ((e as SymError).code !== 'ESYM_NO_CHECKPOINT') throw e;
        none = (e as SymError).message;
      }
      for (const r of picked?.refused ?? []) job.say(`checkpoint ${r.name} not used: ${r.reason}`);
    }
    const again = picked ? `symrun restart ${root} --from ${picked.manifest.name} -- (in a new allocation)` : undefined;
    if (this.count >= this.max) {
      throw new SymError('ESYM_RESTART_LIMIT', {
        message: `${what}; ${this.max === 0 ? 'restarts are off (--max-restarts 0)' : `all ${this.max} restarts (--max-restarts) are used up`}`,
        fix: again ?? 'take checkpoints (--checkpoint-dir DIR --checkpoint-interval 10m) so the job can be restarted',
      });
    }
    const plan = planRestart([...job.vms.values()].map((v) => ({ vm: v.name, host: v.host })), this.d.access.hosts().map((h) => ({ name: h.name, usable: h.usable })));
    if (plan.homeless.length) {
      throw new SymError('ESYM_NO_SPARE', {
        message: `${what}; no spare host is left to restart ${plan.homeless.join(', ')} on`,
        fix: again ? `restart the job from its last checkpoint in a new allocation: ${again}` : 'resubmit the job with spare nodes (--spares N)',
      });
    }
    this.count++;
    const entry: RestartLogEntry = { at: new Date().toISOString(), hosts: loss.hosts, why: loss.why, moved: plan.moved };
    this.log.push(entry);
    // where every VM runs from now on (symrun report moves them there)
    job.event(opEvent('job', job.id, `restart-${this.count}`, 'action', { action: 'placed', vms: Object.fromEntries(plan.placement) }));
    const t0 = performance.now();
    if (!picked) {
      if (!cfg.checkpoint.restartFromStart) {
        throw new SymError('ESYM_NO_CHECKPOINT', {
          message: `${what}, and the job has no complete checkpoint to restart from${none ? ` (${none})` : root ? '' : ' (no --checkpoint-dir)'}`,
          fix: 'take checkpoints (--checkpoint-dir DIR --checkpoint-interval 10m), or let symrun run the job again from the beginning (--restart-from-start)',
        });
      }
      job.say(`restart ${this.count}/${this.max}: ${what}; no checkpoint: running the job again from the beginning${plan.moved.length ? ` (${plan.moved.map((m) => `${m.vm} on ${m.to}`).join(', ')})` : ''}`);
      const mpi = await job.phase(`restart-${this.count}`, () => this.relaunch(plan.placement));
      entry.ms = Math.round(performance.now() - t0);
      return mpi;
    }
    const m = picked.manifest;
    entry.from = m.name;
    job.say(`restart ${this.count}/${this.max}: ${what}; restoring every VM from checkpoint ${m.name} (taken ${Math.round((Date.now() - Date.parse(m.createdAt)) / 1000)} s ago)${plan.moved.length ? `: ${plan.moved.map((x) => `${x.vm} ${x.from} -> ${x.to}`).join(', ')}` : ''}`);
    const mpi = await job.phase(`restart-${this.count}`, () => this.restoreFrom(picked!, plan.placement));
    entry.ms = Math.round(performance.now() - t0);
    if (job.cluster?.mode === 'slurm') void this.d.checkAllocation();
    job.say(`restarted from ${m.name} in ${entry.ms} ms; the job goes on from there (its output since that checkpoint comes again)`);
    return mpi;
  }

  /** Restore every VM of `ck` on `placement`, adopt the sessions it recorded; returns the wait for mpirun. */
  async restoreFrom(ck: PickedCheckpoint, placement: Map<string, string>): Promise<{ mpi: Promise<number> }> {
    const job = this.job;
    const running = [...job.vms.values()].filter((v) => !job.lostHosts.has(v.host) && v.state !== 'booting').map((v) => ({ vm: v.name, host: v.host }));
    // sessions first: what the guests replay after their sync goes to the adopted handlers
    const adopted = this.d.mpi.adopt(ck.manifest.sessions!);
    await restoreVms({ access: this.d.access, checkpoint: ck, placement, running, op: `r${crypto.randomBytes(3).toString('hex')}`, emit: (e) => job.event(e), journal: this.d.migrations.journal });
    for (const v of job.vms.values()) v.state = 'running';
    job.state = 'running';
    job.saveRecovery();
    this.d.evaluatePolicy();
    return { mpi: adopted.mpi ?? Promise.resolve(EXIT.runtime) };
  }

  /** No checkpoint (--restart-from-start): fresh VMs on `placement`, staged again, mpirun again. */
  private async relaunch(placement: Map<string, string>): Promise<{ mpi: Promise<number> }> {
    const job = this.job;
    const l = this.launch!;
    await Promise.all([...job.vms.values()].filter((v) => !job.lostHosts.has(v.host)).map((v) => {
      try { return this.d.agents.peer(v.host).call('vm.stop', { name: v.name }, { timeoutMs: DEFAULTS.teardown.totalMs }).catch(() => undefined); } catch { return undefined; }
    }));
    this.d.mpi.clear();
    for (const v of job.vms.values()) {
      v.client.close();
      v.client = this.d.vms.client(v.name);
      v.host = placement.get(v.name)!;
      v.state = 'booting';
    }
    await Promise.all([...job.vms.keys()].map((n) => this.d.vms.boot(n)));
    await this.d.vms.configureNetwork();
    await stageIn(job, l.stage.abs, l.stage.cwd);
    for (const v of job.vms.values()) v.state = 'running';
    job.state = 'running';
    job.saveRecovery();
    return { mpi: this.d.mpi.run(job.vms.get(l.vm)!, l.argv, l.env, l.rankVm) };
  }
}
