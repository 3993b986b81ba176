// Migrations of a running job's VMs: picks the destination, builds the phase ports of the migration
// protocol (protocol/migration.ts, run by protocol/executor.ts) out of host-agent and guest-agent calls, applies the deadline policy to
// progress samples, caps concurrent migrations, and reports every phase as an event.
import crypto from 'node:crypto';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { DEFAULTS, PROTOCOL_DEFAULTS } from '../defaults.js';
import { MIGRATION, type MigrationForward, type MigrationRollback, type MigrationMark, type MigrationState } from '../protocol/migration.js';
import { Executor, CancelledError, type OpResult, type Ports } from '../protocol/executor.js';
import { opEvent, type OpEvent } from '../protocol/events.js';
import { FileJournal, readJournal } from '../protocol/journal.js';
import type { MigrationProgress, MigrationTuning } from '../migration/qemu.js';
import { deadlineDecision } from '../migration/deadline.js';
import { newTlsRequest } from '../migration/psk.js';
import type { HostAgentCaller } from '../wire/hostagent.js';
import type { MigrateRequest } from '../wire/control.js';
import type { GuestClient } from '../agent/guest.js';
import type { MigrationConfig } from '../config/types.js';
import type { VmSpec } from '../vm/index.js';
import { parseFaults, type Faults } from './faults.js';
import { checkTransportAdapter, type Transport, type RdmaKind } from '../mpi/transport.js';
import { isPlugged, plugParams, unplugParams, type InterconnectDevice } from './job/interconnect.js';

export type MigrationMode = MigrationConfig['mode'];
export type QuiesceAdapter = MigrationConfig['quiesce'];

export type { MigrateRequest } from '../wire/control.js';

/** What the migration code needs from the job (narrow on purpose: tests can supply a fake). */
export interface JobAccess {
  readonly id: string;
  readonly runDir: string;
  readonly migration: MigrationConfig;
  /**
   * the VM's interconnect device on `host` (job/interconnect.ts), claimed there if the VM holds none
   * (a VF from that host's agent); idempotent: asked again, the same device
   */
  device(vm: string, host: string): Promise<InterconnectDevice>;
  /** the VM gives its device on `host` back (a VF returns to the job's free VFs there); idempotent */
  releaseDevice(vm: string, host: string): Promise<{ released?: string }>;
  /** the kind of device every VM of the job has (interconnect.type) */
  deviceKind(): InterconnectDevice['kind'];
  vm(name: string): { name: string; index?: number; host: string; mac: string; ip: string; tap: string; client: GuestClient; state: string } | undefined;
  vmNames(): string[];
  hosts(): Array<{ name: string; ip: string; bridge: string; spare: boolean; usable: boolean }>;
  /** the host agent of `host` (its methods: wire/hostagent.ts) */
  peer(host: string): HostAgentCaller;
  spec(vm: string, host: string, withDevice: boolean): VmSpec;
  /** host taps the VM needs on a destination before the transfer (failover standby) */
  taps(vm: string, bridge: string): Array<{ tap: string; bridge: string }>;
  /** VMs were booted with a standby NIC (migration.quiesce: failover) */
  failoverReady(): boolean;
  /** move the VM's bookkeeping (events, guest link) to another host */
  setVmHost(vm: string, host: string): void;
  netConfigArgs(vm: string): Record<string, unknown>;
  /** the job's MPI transport (interconnect.transport); unset = tcp */
  readonly transport?: { transport: Transport; kind: RdmaKind };
}

export interface OpInfo {
  op: string;
  vm: string;
  from: string;
  to: string;
  mode: MigrationMode;
  quiesce: QuiesceAdapter;
  /** the stream is TLS-encrypted with a per-migration key (migration.tls) */
  tls: boolean;
  /** the kind of interconnect device unplugged on the source and plugged on the destination */
  device: InterconnectDevice['kind'];
  /** the destination's device, claimed in prepare (a VF: its address there and identity) */
  dstDevice?: InterconnectDevice;
  phase: string;
  startedAt: string;
  reason?: string;
  progress?: MigrationProgress;
  actions: string[];
  result?: OpResult & { returnTrip?: OpResult };
}

type MigrationExecutor = Executor<MigrationForward, MigrationRollback, MigrationMark>;
interface OpEntry { info: OpInfo; exec: MigrationExecutor; onSample?: (p: MigrationProgress) => void }

/** Freeze is shared: the first migration (or checkpoint) that needs guests quiesced freezes them, the last one resumes. */
export class QuiesceGate {
  private holders = new Set<string>();
  constructor(private job: JobAccess) {}

  private targets(adapter: QuiesceAdapter, vm: string): string[] {
    // failover: only the moving VM switches to its standby path; freeze/hooks: every rank everywhere
    return adapter === 'failover' ? [vm] : this.job.vmNames();
  }

  private args(adapter: QuiesceAdapter, which: 'quiesce' | 'resume'): Record<string, unknown> {
    const a: Record<string, unknown> = { adapter };
    if (adapter === 'failover') a.bond = (this.job.netConfigArgs(this.job.vmNames()[0]!) as { name: string }).name;
    if (adapter === 'hooks') {
      const cmd = which === 'quiesce' ? this.job.migration.hooks.quiesce : this.job.migration.hooks.resume;
      if (cmd) a.command = cmd;
    }
    return a;
  }

  async acquire(op: string, adapter: QuiesceAdapter, vm: string, signal: AbortSignal, faults: Faults): Promise<Record<string, unknown>> {
    const first = adapter === 'failover' || this.holders.size === 0;
    this.holders.add(op);
    if (!first) return { shared: true };
    const names = this.targets(adapter, vm);
    const stall = faults.has('guest-stall', 'quiesce') ? 60_000 : undefined;
    const results = await abortable(
      Promise.all(
        names.map((n) => {
          const g = this.job.vm(n)!;
          const a = { ...this.args(adapter, 'quiesce'), ...(stall && n === vm ? { stallMs: stall } : {}) };
          return g.client.request<{ frozen: number }>('quiesce', a, { timeoutMs: PROTOCOL_DEFAULTS.quiesceTimeoutMs });
        }),
      ),
      signal,
    );
    return { vms: names.length, frozen: results.reduce((s, r) => s + (r?.frozen ?? 0), 0) };
  }

  async release(op: string, adapter: QuiesceAdapter, vm: string): Promise<Record<string, unknown>> {
    this.holders.delete(op);
    if (adapter !== 'failover' && this.holders.size > 0) return { shared: true, waitingFor: [...this.holders] };
    const names = this.targets(adapter, vm);
    const errs: string[] = [];
    await Promise.all(
      names.map(async (n) => {
        try {
          this.job.peer(this.job.vm(n)!.host); // a VM whose host is lost cannot be resumed (the job restarts it)
          await this.job.vm(n)!.client.ready(PROTOCOL_DEFAULTS.finishTimeoutMs); // e.g. reconnecting after a move or a coordinator restart
          await this.job.vm(n)!.client.request('resume', this.args(adapter, 'resume'), { timeoutMs: PROTOCOL_DEFAULTS.quiesceTimeoutMs });
        } catch (e) {
          errs.push(`${n}: ${(e as Error).message}`);
        }
      }),
    );
    if (errs.length) throw new SymError('ESYM_RESUME', { message: `could not resume the job in ${errs.join('; ')}`, fix: 'the ranks there stay frozen: `symrun exec VM -- sh -c "echo 0 > /sys/fs/cgroup/symrun.job/cgroup.freeze"`' });
    return { vms: names.length };
  }
}

export class Migrations {
  private ops = new Map<string, OpEntry>();
  private queue: Array<() => void> = [];
  private running = 0;
  /** shared with checkpoints (coordinator/checkpoint.ts) */
  readonly gate: QuiesceGate;
  /** faults switched on for every operation of this job (SYMRUN_FAULTS) */
  readonly faults: Faults;
  readonly journal: FileJournal;

  constructor(private job: JobAccess, private emit: (e: OpEvent) => void, faults = parseFaults(process.env.SYMRUN_FAULTS)) {
    this.faults = faults;
    this.gate = new QuiesceGate(job);
    this.journal = new FileJournal(path.join(job.runDir, 'journal.jsonl'));
  }

  list(): OpInfo[] {
    return [...this.ops.values()].map((o) => ({ ...o.info, phase: o.exec.state.phase }));
  }

  active(vm: string): OpEntry | undefined {
    return [...this.ops.values()].find((o) => o.info.vm === vm && !MIGRATION.isTerminal(o.exec.state.phase));
  }

  /** Hosts a migration may go to: spares that run no VM, are reachable and not draining / failing. */
  pickDestination(vm: string, to?: string): string {
    const hosts = this.job.hosts();
    const busy = new Set([...this.job.vmNames().map((n) => this.job.vm(n)!.host), ...[...this.ops.values()].filter((o) => !o.info.result).map((o) => o.info.to)]);
    if (to) {
      const h = hosts.find((x) => x.name === to);
      if (!h) throw new SymError('ESYM_NO_HOST', { message: `no host named ${to} in this job`, field: '--to', value: to, exitCode: EXIT.usage, fix: `hosts: ${hosts.map((x) => x.name).join(', ')}` });
      if (busy.has(to)) throw new SymError('ESYM_HOST_BUSY', { message: `host ${to} already runs a VM (or is the target of another migration)`, field: '--to', value: to, exitCode: EXIT.usage, fix: `free hosts: ${hosts.filter((x) => !busy.has(x.name)).map((x) => x.name).join(', ') || 'none'}` });
      if (!h.usable) throw new SymError('ESYM_HOST_UNUSABLE', { message: `host ${to} is drained or failing and cannot take a VM`, field: '--to', value: to, exitCode: EXIT.usage });
      return to;
    }
    const free = hosts.filter((h) => !busy.has(h.name) && h.usable && h.name !== this.job.vm(vm)?.host);
    const pick = free.find((h) => h.spare) ?? free[0];
    if (!pick) throw new SymError('ESYM_NO_SPARE', { message: `no free host to move ${vm} to`, fix: 'start the job with --spares N (hosts held back as targets), or free a host' });
    return pick.name;
  }

  /** Start a migration; resolves with its result (after queueing behind maxConcurrent). */
  migrate(req: MigrateRequest): { op: string; done: Promise<OpResult> } {
    const v = this.job.vm(req.vm);
    if (!v) throw new SymError('ESYM_NO_VM', { message: `no VM named ${req.vm} in job ${this.job.id}`, field: 'vm', value: req.vm, fix: `VMs: ${this.job.vmNames().join(', ')}`, exitCode: EXIT.usage });
    if (this.active(req.vm)) throw new SymError('ESYM_BUSY', { message: `${req.vm} is already being migrated`, fix: `wait for it, or \`symrun cancel ${req.vm}\`` });
    if (v.state !== 'ready' && v.state !== 'running') throw new SymError('ESYM_VM_STATE', { message: `${req.vm} is ${v.state}; only a running VM can be migrated` });
    if (req.quiesce === 'failover' && !this.job.failoverReady()) {
      throw new SymError('ESYM_NO_STANDBY', { message: `${req.vm} has no standby NIC to fail over to`, field: '--quiesce', value: 'failover', fix: 'start the job with `--quiesce failover` (or migration.quiesce: failover): VMs then boot with a virtio standby bonded to the interconnect NIC', exitCode: EXIT.usage });
    }
    // an adapter that would kill the job's RDMA connections: refused before anything is touched
    if (this.job.transport) checkTransportAdapter({ ...this.job.transport, adapter: req.quiesce ?? this.job.migration.quiesce, op: 'migrate', vm: req.vm, field: req.quiesce ? '--quiesce' : 'migration.quiesce' });
    const to = this.pickDestination(req.vm, req.to);
    const op = `m${crypto.randomBytes(3).toString('hex')}`;
    const cfg = this.job.migration;
    const info: OpInfo = {
      op, vm: req.vm, from: v.host, to, mode: req.mode ?? cfg.mode, quiesce: req.quiesce ?? cfg.quiesce, tls: cfg.tls === 'on', device: this.job.deviceKind(),
      phase: 'queued', startedAt: new Date().toISOString(), reason: req.reason, actions: [],
    };
    const deadlineMs = req.deadlineMs ?? cfg.deadlineMs;
    const faults = parseFaults([...this.faults.list(), ...(req.faults ?? [])].join(','));
    const exec = new Executor({ op, machine: MIGRATION, ports: this.ports(info, { deadlineMs, faults, maxBandwidthBytes: req.maxBandwidthBytes }), journal: this.journal, onEvent: (e) => this.emit({ ...e, data: { vm: info.vm, from: info.from, to: info.to, ...(e.data ?? {}) } }) });
    this.ops.set(op, { info, exec });
    const done = new Promise<OpResult>((resolve) => {
      const go = () => {
        this.running++;
        void this.journal.write({ op, kind: 'migrate', phase: 'new', state: exec.state, params: { ...info, deadlineMs } });
        exec.start().then(async (r) => {
          this.running--;
          this.queue.shift()?.();
          info.result = await this.afterOp(info, r);
          resolve(info.result);
        });
      };
      if (this.running < cfg.maxConcurrent) go();
      else {
        this.emit(opEvent('migrate', op, 'new', 'progress', { vm: info.vm, queued: true, running: this.running, max: cfg.maxConcurrent }));
        this.queue.push(go);
      }
    });
    return { op, done };
  }

  /**
   * The destination could not take the device (replug failed after finish): the VM runs there without
   * its interconnect. Move it back to the host it came from, whose device is free again; the outcome
   * is then a rollback (the VM is where it was, with its device), reached by a second migration.
   */
  private async afterOp(info: OpInfo, r: OpResult): Promise<OpResult & { returnTrip?: OpResult }> {
    if (r.outcome !== 'degraded' || !r.leftovers.some((l) => l.phase === 'replug')) return r;
    this.emit(opEvent('migrate', info.op, r.outcome, 'action', { vm: info.vm, from: info.from, to: info.to, action: 'return-trip', reason: `the device could not be plugged on ${info.to}: moving ${info.vm} back to ${info.from}` }));
    let back: OpResult;
    try {
      back = await this.migrate({ vm: info.vm, to: info.from, mode: info.mode, quiesce: info.quiesce, reason: `return trip of ${info.op}` }).done;
    } catch (e) {
      return { ...r, leftovers: [...r.leftovers, { phase: 'degraded', message: `return trip to ${info.from} could not start: ${(e as Error).message}` }] };
    }
    if (back.outcome === 'done') return { ...r, outcome: 'rolled-back', returnTrip: back };
    return { ...r, returnTrip: back, leftovers: [...r.leftovers, ...back.leftovers, { phase: 'degraded', message: `return trip to ${info.from} ended ${back.outcome}: ${info.vm} runs on ${this.job.vm(info.vm)?.host} without its device` }] };
  }

  /**
   * After a coordinator restart (`symrun recover`): operations the journal shows in flight, each taken
   * over as the protocol's recovery table says (protocol/migration.ts): before finish the phase in
   * flight is taken as failed and the rollback runs (a transfer that completed meanwhile is handled by
   * rb-cancel); rollback steps, and every phase from finish on, are run again (ports are idempotent).
   */
  recoverFromJournal(): Array<{ op: string; vm: string; phase: string; done: Promise<OpResult> }> {
    const out: Array<{ op: string; vm: string; phase: string; done: Promise<OpResult> }> = [];
    for (const r of readJournal(this.journal.file).values()) {
      const state = r.state as MigrationState;
      if (r.kind !== 'migrate' || !r.params || state.phase === 'new' || MIGRATION.isTerminal(state.phase)) continue;
      const p = r.params as unknown as OpInfo & { deadlineMs?: number };
      const info: OpInfo = { op: r.op, vm: p.vm, from: p.from, to: p.to, mode: p.mode, quiesce: p.quiesce, tls: p.tls ?? this.job.migration.tls === 'on', device: p.device ?? this.job.deviceKind(), ...(p.dstDevice ? { dstDevice: p.dstDevice } : {}), phase: state.phase, startedAt: p.startedAt, reason: `recovered after a coordinator restart (was in ${state.phase})`, actions: [] };
      const exec = new Executor({ op: r.op, machine: MIGRATION, ports: this.ports(info, { faults: parseFaults('') }), journal: this.journal, from: state, onEvent: (e) => this.emit({ ...e, data: { vm: info.vm, from: info.from, to: info.to, ...(e.data ?? {}) } }) });
      this.ops.set(r.op, { info, exec });
      const done = exec.recover(`the coordinator was restarted during ${state.phase}`).then((res) => { info.result = res; return res; });
      out.push({ op: r.op, vm: info.vm, phase: state.phase, done });
    }
    return out;
  }

  cancel(vm: string): { op: string; accepted: boolean; phase: string } {
    const o = this.active(vm);
    if (!o) throw new SymError('ESYM_NO_MIGRATION', { message: `no migration of ${vm} in progress`, field: 'vm', value: vm, exitCode: EXIT.usage });
    const accepted = o.exec.cancel();
    return { op: o.info.op, accepted, phase: o.exec.state.phase };
  }

  /** Progress sample from the source host agent. */
  onProgress(opId: string, p: MigrationProgress): void {
    const o = this.ops.get(opId);
    if (!o) return;
    o.info.progress = p;
    o.exec.note('perform', 'progress', { ...p } as unknown as Record<string, unknown>);
    o.onSample?.(p);
  }

  private ports(info: OpInfo, o: { deadlineMs?: number; faults: Faults; maxBandwidthBytes?: number }): Ports<MigrationForward | MigrationRollback> {
    const job = this.job;
    const cfg = job.migration;
    const { deadlineMs, faults } = o;
    const vm = () => job.vm(info.vm)!;
    const src = () => job.peer(info.from);
    const dst = () => job.peer(info.to);
    const hostOf = (n: string) => job.hosts().find((h) => h.name === n)!;
    const tuning: MigrationTuning = {
      maxBandwidthBytes: o.maxBandwidthBytes ?? cfg.maxBandwidthBytes,
      downtimeLimitMs: cfg.downtimeLimitMs,
      ...(cfg.multifdChannels > 0 ? { multifdChannels: cfg.multifdChannels } : {}),
      // the deadline policy can only switch to postcopy / throttle if the migration was set up for it
      ...(info.mode === 'postcopy' || (deadlineMs && cfg.deadlineActions.includes('postcopy') && cfg.multifdChannels === 0) ? { postcopy: true } : {}),
      ...(deadlineMs && cfg.deadlineActions.includes('throttle') ? { autoConverge: true } : {}),
    };
    let uri = '';
    // TLS: both host agents derive the stream key from the job secret, the op id and this salt (psk.ts);
    // the fault wrong-tls-key@dst gives the destination another salt, hence another key
    const tls = info.tls ? newTlsRequest(info.op) : undefined;
    const dstTls = tls && faults.has('wrong-tls-key', 'dst') ? newTlsRequest(info.op) : tls;
    const plug = async (host: string, bus?: string) => plugParams(info.vm, await job.device(info.vm, host), hostOf(host).bridge, bus);
    const self = this;
    /** the device as the events and the journal show it (kind, and a VF's address and identity) */
    const shown = (d: InterconnectDevice) => (d.kind === 'nic' ? { kind: d.kind, model: d.model } : { kind: d.kind, pci: d.host, ...(d.link ? { link: d.link } : {}), ...(d.vfMac ? { vfMac: d.vfMac } : {}), ...(d.guid ? { guid: d.guid } : {}) });

    return {
      async prepare(signal) {
        // the destination's device first: a host without a free VF refuses the move before QEMU starts
        const d = await job.device(info.vm, info.to);
        info.dstDevice = d;
        // journalled with the operation, so a successor coordinator knows what this migration claimed
        const ex = self.ops.get(info.op)?.exec;
        if (ex) await self.journal.write({ op: info.op, kind: 'migrate', phase: ex.state.phase, state: ex.state, params: { ...info, deadlineMs } });
        const r = await dst().call('mig.prepare', { spec: job.spec(info.vm, info.to, false), taps: job.taps(info.vm, hostOf(info.to).bridge), tuning, listenIp: hostOf(info.to).ip, ...(dstTls ? { tls: dstTls } : {}) }, { timeoutMs: PROTOCOL_DEFAULTS.prepareTimeoutMs, signal });
        uri = r.uri;
        return { uri, dstPid: r.pid, tls: info.tls, device: shown(d) };
      },
      quiesce: (signal) => self.gate.acquire(info.op, info.quiesce, info.vm, signal, faults),
      async unplug(signal) {
        const devs = await src().call('vm.devices', { name: info.vm }, { signal });
        if (!isPlugged(devs)) return { skipped: 'no interconnect device plugged' };
        const d = await job.device(info.vm, info.from);
        const r = await src().call('vm.unplug', unplugParams(info.vm, d), { timeoutMs: DEFAULTS.hotplug.unplugTimeoutMs + 2000, signal });
        return { ...r, device: shown(d) };
      },
      async perform(signal) {
        const samples: Array<{ atMs: number; p: MigrationProgress }> = [];
        const t0 = performance.now();
        let killedDst = false;
        let lastActionAt: number | undefined;
        const entry = self.ops.get(info.op)!;
        entry.onSample = (p) => {
          samples.push({ atMs: performance.now() - t0, p });
          if (faults.has('kill-coordinator', 'perform')) process.kill(process.pid, 'SIGKILL');
          if (!killedDst && faults.has('kill-dst-qemu', 'perform')) {
            killedDst = true;
            void dst().call('vm.kill', { name: info.vm }).catch(() => undefined);
            self.emit(opEvent('migrate', info.op, 'perform', 'action', { vm: info.vm, fault: 'kill-dst-qemu' }));
          }
          if (deadlineMs === undefined) return;
          // one action at a time: QEMU needs a few samples to show its effect (a postcopy switch is not
          // yet visible in the next sample, and stop-copy on top of it would be a second, needless act)
          if (p.status !== 'active' || (lastActionAt !== undefined && performance.now() - lastActionAt < PROTOCOL_DEFAULTS.deadlineSettleMs)) return;
          const allowed = cfg.deadlineActions.filter((x) => (x !== 'postcopy' || tuning.postcopy) && (x !== 'throttle' || tuning.autoConverge));
          const d = deadlineDecision(samples, { deadlineMs, allowed, alreadyTaken: info.actions, downtimeLimitMs: cfg.downtimeLimitMs });
          if (d.kind === 'none') return;
          info.actions.push(d.kind === 'throttle' ? `throttle:${d.percent}` : d.kind);
          lastActionAt = performance.now();
          self.emit(opEvent('migrate', info.op, 'perform', 'action', { vm: info.vm, action: d.kind, reason: d.reason, projectedFinishMs: d.projectedFinishMs, deadlineMs }));
          const args = d.kind === 'throttle' ? { percent: d.percent } : {};
          void Promise.resolve().then(() => src().call('mig.action', { name: info.vm, action: d.kind, ...args })).catch((e) =>
            self.emit(opEvent('migrate', info.op, 'perform', 'action', { vm: info.vm, action: d.kind, failed: (e as Error).message })));
        };
        const onAbort = () => { try { void src().call('mig.cancel', { name: info.vm }).catch(() => undefined); } catch { /* source host lost */ } };
        signal.addEventListener('abort', onAbort, { once: true });
        try {
          const fin = await src().call('mig.perform', { name: info.vm, uri, tuning, mode: info.mode, op: info.op, ...(tls ? { tls } : {}) }, { timeoutMs: deadlineMs ? deadlineMs * 3 : DEFAULTS.migration.timeoutMs });
          if (signal.aborted) throw new CancelledError();
          return { ...fin, actions: info.actions } as unknown as Record<string, unknown>;
        } catch (e) {
          if (signal.aborted) throw new CancelledError();
          throw e;
        } finally {
          signal.removeEventListener('abort', onAbort);
          entry.onSample = undefined;
        }
      },
      async finish() {
        const t0 = Date.now();
        const st = await dst().call('mig.finish', { name: info.vm, timeoutMs: PROTOCOL_DEFAULTS.finishTimeoutMs }, { timeoutMs: PROTOCOL_DEFAULTS.finishTimeoutMs + 5000 });
        const t1 = Date.now();
        // the VM runs on the destination from here on: its guest channel is the destination's
        job.setVmHost(info.vm, info.to);
        await dst().call('guest.reconnect', { name: info.vm });
        const t2 = Date.now();
        await vm().client.ready(PROTOCOL_DEFAULTS.finishTimeoutMs);
        // where finish spent its time (bench/migration reads these from the phase's end event)
        return { ...st, incomingMs: t1 - t0, reconnectMs: t2 - t1, readyMs: Date.now() - t2 };
      },
      async replug(signal) {
        const bus = faults.has('refuse-device-add', info.to) || faults.has('refuse-device-add', 'dst') ? 'rp-fault-injected' : undefined;
        const p = await plug(info.to, bus);
        const r = await dst().call('vm.plug', p, { timeoutMs: DEFAULTS.hotplug.plugTimeoutMs + 2000, signal });
        return { ...r, device: shown(p.device) };
      },
      async reconfigure() {
        const t0 = Date.now();
        await vm().client.ready(PROTOCOL_DEFAULTS.finishTimeoutMs);
        const readyMs = Date.now() - t0; // the guest channel (reconnected in finish) answering again
        const r = await vm().client.request<Record<string, unknown>>('net-config', job.netConfigArgs(info.vm), { timeoutMs: PROTOCOL_DEFAULTS.reconfigureTimeoutMs });
        return { ...r, readyMs, requestMs: Date.now() - t0 - readyMs };
      },
      resume: () => self.gate.release(info.op, info.quiesce, info.vm),
      async confirm() {
        const r = await src().call('vm.stop', { name: info.vm }, { timeoutMs: DEFAULTS.teardown.totalMs });
        // the source's device goes back to the job's free ones there (a VF: for the next VM that comes)
        return { ...r, ...(await job.releaseDevice(info.vm, info.from)) };
      },
      // ---- rollback (before finish: the VM belongs to the source) ----
      async 'rb-cancel'() {
        const c = await src().call('mig.cancel', { name: info.vm }, { timeoutMs: 30_000 });
        let dstStopped = false;
        if (c.migration === 'completed' || c.migration.startsWith('postcopy')) {
          // the transfer got through before the cancel: the destination may already run the guest.
          // Stop it before the source runs again, so two copies never run at once; the guest then
          // continues from the switch-over point on the source (its ranks were quiesced).
          await dst().call('vm.stop', { name: info.vm }, { timeoutMs: DEFAULTS.teardown.totalMs });
          dstStopped = true;
        }
        const r = await src().call('vm.cont', { name: info.vm });
        return { migration: c.migration, dstStopped, sourceResumed: r.resumed };
      },
      async 'rb-dst-stop'() {
        const r = await dst().call('vm.stop', { name: info.vm }, { timeoutMs: DEFAULTS.teardown.totalMs });
        // what prepare claimed there is given back (by VM: also when the claim's answer was lost)
        return { ...r, ...(await job.releaseDevice(info.vm, info.to)) };
      },
      async 'rb-replug'() {
        const devs = await src().call('vm.devices', { name: info.vm });
        if (isPlugged(devs)) return { skipped: 'device still plugged' };
        const p = await plug(info.from);
        const r = await src().call('vm.plug', p, { timeoutMs: DEFAULTS.hotplug.plugTimeoutMs + 2000 });
        return { ...r, device: shown(p.device) };
      },
      async 'rb-reconfigure'() {
        await vm().client.ready(PROTOCOL_DEFAULTS.finishTimeoutMs); // the source VM was paused: its agent answers once it runs again
        return vm().client.request('net-config', job.netConfigArgs(info.vm), { timeoutMs: PROTOCOL_DEFAULTS.reconfigureTimeoutMs });
      },
      'rb-resume': () => self.gate.release(info.op, info.quiesce, info.vm),
    };
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v); }, (e) => { signal.removeEventListener('abort', onAbort); reject(e); });
  });
}
