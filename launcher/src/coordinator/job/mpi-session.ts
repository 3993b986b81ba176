// The MPI launcher session in the guests: mpirun in the first VM, its output streamed (tagged lines
// re-tagged with the VM), and the rsh relay: a guest's symrun-rsh asks to start a command (orted) in
// another guest; the coordinator starts it there and streams its output and exit status back. The
// sessions (mpirun's and each relayed command's) are recorded for a successor coordinator and for
// checkpoints, and adopted again after a coordinator restart or a restore.
import { SymError } from '../../errors.js';
import type { GuestFrame, HostFrame } from '../../../../guest/protocol/index.js';
import { retagLine, LineSplitter } from '../../mpi/launch.js';
import type { CheckpointSessions } from '../../checkpoint/manifest.js';
import type { JobContext, VmState } from './context.js';

type RshFrame = Extract<GuestFrame, { t: 'rsh' }>;

export class MpiSession {
  private mpirun?: { vm: string; sid: string; rankVm: string[] };
  private relays = new Map<string, { from: string; to: string; sid: string }>();
  firstOutputMs?: number;

  constructor(private job: JobContext, private t0: number) {}

  /** What runs in the guests (recover.json, checkpoints). */
  sessions(): CheckpointSessions {
    return { ...(this.mpirun ? { mpirun: this.mpirun } : {}), rsh: [...this.relays].map(([rid, r]) => ({ rid, ...r })) };
  }

  /** Forget relays (a restart replaces every guest). */
  clear(): void {
    this.relays.clear();
  }

  /** mpirun in `vm1` with its output streamed; `adopt`: the session id of an mpirun a previous coordinator started. */
  async run(vm1: VmState, argv: string[], env: Record<string, string>, rankVm: string[], adopt?: string): Promise<number> {
    const job = this.job;
    const tag = job.config.mpi.tagOutput;
    const so = new LineSplitter();
    const se = new LineSplitter();
    const write = (s: NodeJS.WritableStream, split: LineSplitter, stream: 'stdout' | 'stderr') => (d: Buffer) => {
      if (this.firstOutputMs === undefined) this.firstOutputMs = Math.round(performance.now() - this.t0);
      if (!tag) { s.write(d); return; }
      for (const l of split.push(d.toString('utf8'))) s.write(retagLine(l, rankVm, stream));
    };
    const out = { onStdout: write(job.out, so, 'stdout'), onStderr: write(job.err, se, 'stderr') };
    const h = adopt
      ? vm1.client.adopt(adopt, out)
      : await vm1.client.exec({ argv, env, cwd: job.opts.cwd, job: true }, out);
    this.mpirun = { vm: vm1.name, sid: h.sid, rankVm };
    job.saveRecovery();
    const onAbort = () => h.signal('SIGTERM');
    job.opts.signal?.addEventListener('abort', onAbort, { once: true });
    const r = await h.done;
    job.opts.signal?.removeEventListener('abort', onAbort);
    const restO = so.flush(); if (restO) job.out.write(restO);
    const restE = se.flush(); if (restE) job.err.write(restE);
    const s = job.opts.signal;
    if (s?.aborted) throw s.reason instanceof Error ? s.reason : new SymError('ESYM_CANCELLED', { message: 'cancelled' });
    return r.status;
  }

  private handlers(from: string, rid: string): { onStdout: (d: Buffer) => void; onStderr: (d: Buffer) => void } {
    const reply = (fr: HostFrame) => { try { this.job.vms.get(from)!.client.send(fr); } catch { /* source moving: rsh client sees EOF */ } };
    return {
      onStdout: (d) => reply({ t: 'rsh-out', rid, fd: 1, data: d.toString('base64') }),
      onStderr: (d) => reply({ t: 'rsh-out', rid, fd: 2, data: d.toString('base64') }),
    };
  }

  /** Wait for a relayed remote command (orted) and report its exit to the rsh client in `from`. */
  private async finish(from: string, to: string, rid: string, h: { sid: string; done: Promise<{ status: number }> }): Promise<void> {
    this.relays.set(rid, { from, to, sid: h.sid });
    this.job.saveRecovery();
    const r = await h.done;
    this.relays.delete(rid);
    this.job.saveRecovery();
    try { this.job.vms.get(from)!.client.send({ t: 'rsh-exit', rid, code: Math.min(255, r.status) }); } catch { /* rsh client gone */ }
  }

  /** Take over the sessions a previous coordinator (or a checkpoint) recorded; returns mpirun's exit status, if any. */
  adopt(s: CheckpointSessions): { mpi?: Promise<number>; relays: Array<Promise<void>> } {
    this.relays.clear();
    const relays = s.rsh.map((r) => this.finish(r.from, r.to, r.rid, this.job.vms.get(r.to)!.client.adopt(r.sid, this.handlers(r.from, r.rid))));
    const mpi = s.mpirun ? this.run(this.job.vms.get(s.mpirun.vm)!, [], {}, s.mpirun.rankVm, s.mpirun.sid) : undefined;
    return { mpi, relays };
  }

  /** mpirun in one VM asked (through symrun-rsh) to start a command in another VM. */
  async relay(from: string, f: RshFrame): Promise<void> {
    const src = this.job.vms.get(from)!;
    if (this.relays.has(f.rid)) return; // replayed by a guest restored from a checkpoint: relayed already
    const target = [...this.job.vms.values()].find((v) => v.name === f.host || v.ip === f.host || f.host.startsWith(`${v.name}.`));
    const reply = (fr: HostFrame) => { try { src.client.send(fr); } catch { /* source moving: rsh client sees EOF */ } };
    const refuse = (msg: string) => {
      reply({ t: 'rsh-out', rid: f.rid, fd: 2, data: Buffer.from(`symrun-rsh: ${msg}\n`).toString('base64') });
      reply({ t: 'rsh-exit', rid: f.rid, code: 255 });
    };
    if (!target) { refuse(`unknown host ${f.host}`); return; }
    try {
      const h = await target.client.exec(
        { argv: ['/bin/sh', '-c', f.argv.join(' ')], job: true, env: { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', HOME: '/root' } },
        this.handlers(from, f.rid),
      );
      await this.finish(from, target.name, f.rid, h);
    } catch (e) {
      refuse((e as Error).message);
    }
  }
}
