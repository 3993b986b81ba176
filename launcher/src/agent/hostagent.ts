// Host agent: one per node of the allocation (local mode: one per emulated host, started inside its
// network namespace; Slurm: started with srun). Owns the QEMU processes of its node: spawn, QMP,
// hotplug, migration endpoints, and the guest-agent sockets, whose frames it checks (size, schema)
// before forwarding them to the coordinator. Talks to the coordinator over the authenticated channel.
import net from 'node:net';
import fs from 'node:fs';
import { connectChannel, type RpcPeer } from './channel.js';
import { onEvents, serve } from './typed.js';
import { LineDecoder, parseGuestFrame, encodeFrame, ProtocolError } from '../../../guest/protocol/index.js';
import { startVm, type VmProcess, type VmSpec } from '../vm/index.js';
import { plugNic, plugVfio, unplugDevice, listDevices } from '../hotplug/index.js';
import type { TapRequest } from '../wire/device.js';
import type { MigrationMode } from '../wire/migration.js';
import { COORDINATOR_EVENTS, HOST_AGENT_PARAMS, type HostAgentEvents, type HostAgentMethods, type CoordinatorEvents } from '../wire/hostagent.js';
import { JobVfs, offersFromClaims } from '../device/job-vfs.js';
import { FsDeviceIO, type DeviceIO } from '../device/sysfs.js';
import { askHelper } from '../node/client.js';
import { readNodeConfig } from '../node/config.js';
import { helperSocket, readRecord } from '../node/record.js';
import { configureMigration, startIncoming, startOutgoing, waitMigration, cancelMigration, completeIncoming, startPostcopy, throttleGuest, setMaxBandwidth, type MigrationTuning, type MigrationProgress } from '../migration/qemu.js';
import { saveStateToFile, shellQuote } from '../migration/statefile.js';
import { derivePsk, pskIdentity, tlsDir, writePskFile, removePskDir, type MigrationTlsRequest } from '../migration/psk.js';
import { tlsCredsId, tlsObjectArgs, addTlsCreds, dropTlsCreds, tlsFailure } from '../migration/tls.js';
import { ensureTap, deleteTap } from '../local/index.js';
import { DEFAULTS, PROTOCOL_DEFAULTS } from '../defaults.js';
import { SymError } from '../errors.js';


interface VmEntry {
  spec: VmSpec;
  proc: VmProcess;
  guest?: net.Socket;
  stopping: boolean;
  taps: string[];
  /** taps the node helper made for this VM (node layer): given back to it when the VM leaves */
  helper?: { job: string; vm: number };
  badFrames: number;
  released: boolean;
  /** per-migration TLS key directories of this VM on this host and QEMU's credentials object for each
   *  (removed when the migration is over on this side) */
  tls: Array<{ dir: string; credsId: string }>;
}

async function releaseTaps(taps: string[]): Promise<void> {
  await Promise.allSettled(taps.map((t) => deleteTap(t)));
}

/** The node helper of this node (node layer): its socket from the site's node config and Slurm's node name. */
function nodeHelperSocket(): string {
  const node = process.env.SLURMD_NODENAME ?? '';
  return helperSocket(readNodeConfig().stateDir, node);
}

export class HostAgent {
  private vms = new Map<string, VmEntry>();
  /** the job's VFs on this node: which VM holds which (device/job-vfs.ts) */
  readonly vfs: JobVfs;
  peer!: RpcPeer;

  /**
   * reconnect: how to reach the coordinator again. When given, a lost coordinator is waited for
   * (graceMs) instead of stopping every VM at once: a restarted coordinator (`symrun recover`)
   * re-attaches to the running VMs. Without it, or after the grace, nothing is left behind.
   */
  /**
   * secret: the per-job secret (migration stream keys are derived from it, migration/psk.ts).
   * spawnVm: starts QEMU (default vm/index.ts startVm; unit tests pass a fake backed by a fake QMP server).
   * deviceIO: where sysfs and /dev/vfio are read (default the node's own; unit tests pass a fake tree).
   */
  constructor(readonly host: string, peer: RpcPeer, private opts: { reconnect?: () => Promise<RpcPeer>; graceMs?: number; secret?: string; spawnVm?: (spec: VmSpec) => Promise<VmProcess>; deviceIO?: DeviceIO; nodeClaims?: (job: string) => unknown } = {}) {
    this.vfs = new JobVfs(opts.deviceIO ?? new FsDeviceIO('/'), host);
    this.attach(peer);
  }

  private attach(peer: RpcPeer): void {
    this.peer = peer;
    serve<HostAgentMethods>(peer, HOST_AGENT_PARAMS, `host agent ${this.host}`)
      .handle('host.info', () => ({ host: this.host, pid: process.pid, vms: [...this.vms.keys()] }))
      .handle('vm.start', (p) => this.startVm(p.spec, p.taps ?? []))
      .handle('vm.stop', (p) => this.stopVm(p.name))
      .handle('vm.qmp', (p) =>
        this.vm(p.name).proc.qmp.execute(p.command, p.args, { timeoutMs: p.timeoutMs ?? DEFAULTS.qmp.commandTimeoutMs }))
      .handle('vm.unplug', (p) =>
        unplugDevice(this.vm(p.name).proc.qmp, p.id, { timeoutMs: p.timeoutMs ?? DEFAULTS.hotplug.unplugTimeoutMs, netdevId: p.netdevId }))
      .handle('vm.plug', async (p) => {
        const e = this.vm(p.name);
        const d = p.device;
        const opts = { timeoutMs: p.timeoutMs ?? DEFAULTS.hotplug.plugTimeoutMs };
        if (d.kind === 'vfio') {
          // only the VF this VM holds on this node (dev.claim): never another VM's, never an unclaimed one
          const held = this.vfs.list().find((h) => h.vm === p.name);
          if (held?.pci !== d.host) {
            throw new SymError('ESYM_NO_DEVICE', { message: `${p.name} does not hold VF ${d.host} on ${this.host}${held ? ` (it holds ${held.pci})` : ''}`, field: 'device.host', value: d.host, fix: 'claim the VF first (dev.claim) and plug the one claimed' });
          }
          return plugVfio(e.proc.qmp, { id: d.id, host: d.host, bus: d.bus }, opts);
        }
        // the node helper made this VM's taps already (node layer); else the tap is ours to make
        if (!e.helper) {
          if (p.bridge) await ensureTap(d.tap, p.bridge);
          if (!e.taps.includes(d.tap)) e.taps.push(d.tap);
        }
        return plugNic(e.proc.qmp, { id: d.id, netdevId: d.netdevId, tap: d.tap, mac: d.mac, model: d.model, bus: d.bus }, opts);
      })
      // ---- the job's VFs on this node (device/job-vfs.ts): claimed for a VM, released when it left ----
      // with the node layer (nodeLayerJob), the VFs root claimed for the job here come first: they carry
      // the MAC / GUID the guest finds them by
      .handle('dev.claim', (p) =>
        this.vfs.claim(p.vm, [...(p.nodeLayerJob ? offersFromClaims(this.nodeClaims(p.nodeLayerJob)) : []), ...(Array.isArray(p.offers) ? p.offers : [])]))
      .handle('dev.release', (p) => ({ released: this.vfs.release(p.vm) ?? null }))
      .handle('dev.list', () => this.vfs.list())
      // ---- migration endpoints (the coordinator drives the protocol; see migration/machine.ts) ----
      .handle('mig.prepare', (p) => this.prepareIncoming(p.spec, p.taps ?? [], p.tuning, p.listenIp, p.tls))
      .handle('mig.perform', (p) => this.perform(p))
      .handle('mig.action', async (p) => {
        const q = this.vm(p.name).proc.qmp;
        if (p.action === 'postcopy') await startPostcopy(q);
        else if (p.action === 'throttle') await throttleGuest(q, p.percent ?? 50);
        else if (p.action === 'bandwidth') await setMaxBandwidth(q, p.bytesPerSec ?? 0);
        else await q.execute('stop');
        return {};
      })
      .handle('mig.cancel', (p) => this.cancel(p.name))
      .handle('vm.cont', (p) => this.cont(p.name))
      .handle('mig.finish', (p) => this.finishIncoming(p.name, p.timeoutMs ?? 60_000))
      // ---- checkpoint (checkpoint/machine.ts): state file on this host's view of the (shared) checkpoint dir ----
      .handle('ckpt.save', async (p) => {
        const t0 = performance.now();
        const pr = await saveStateToFile(this.vm(p.name).proc.qmp, p.file, { timeoutMs: p.timeoutMs });
        return { ...pr, saveMs: Math.round(performance.now() - t0) };
      })
      // after a save (or an aborted one): cancel a save still running, then `cont` if the VM is not running
      .handle('ckpt.resume', async (p) => {
        const q = this.vm(p.name).proc.qmp;
        const migration = (await cancelMigration(q).catch(() => undefined))?.status ?? 'unknown';
        const st = await q.execute<{ status: string; running: boolean }>('query-status');
        if (!st.running) await q.execute('cont');
        return { status: st.status, migration, resumed: !st.running };
      })
      // restart: QEMU with the saved VM's device set, loading FILE (-incoming defer + migrate-incoming exec:cat);
      // the VM stays paused (it was saved paused) until vm.cont. A failed load leaves no QEMU behind.
      .handle('ckpt.restore', (p) => this.restore(p.spec, p.taps ?? [], p.file, p.timeoutMs ?? 600_000))
      .handle('vm.devices', async (p) => listDevices(this.vm(p.name).proc.qmp))
      .handle('vm.kill', (p) => { const e = this.vm(p.name); process.kill(e.proc.pid, 'SIGKILL'); return {}; })
      .handle('guest.reconnect', (p) => { this.connectGuest(this.vm(p.name)); return {}; })
      .handle('shutdown', async () => {
        await this.stopAll();
        setTimeout(() => process.exit(0), 50);
        return {};
      });
    onEvents<CoordinatorEvents>(peer, COORDINATOR_EVENTS, (ev) => {
      if (ev.name === 'guest.send') {
        const e = this.vms.get(ev.data.vm);
        if (e?.guest && !e.guest.destroyed) e.guest.write(encodeFrame(ev.data.frame));
      }
    });
    peer.on('close', () => void this.coordinatorLost());
    peer.start();
  }

  /** An event for the coordinator (wire/hostagent.ts HostAgentEvents), on the current connection. */
  private notify<K extends keyof HostAgentEvents>(name: K, data: HostAgentEvents[K]): void {
    this.peer.notify(name, data);
  }

  private async coordinatorLost(): Promise<void> {
    const graceMs = this.opts.graceMs ?? 0;
    if (this.opts.reconnect && graceMs > 0) {
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline) {
        try {
          const p = await this.opts.reconnect();
          this.attach(p);
          // tell the new coordinator which guest channels are up (it syncs each one)
          for (const [name, e] of this.vms) if (e.guest && !e.guest.destroyed && !e.guest.connecting) this.notify('guest.link', { vm: name, up: true });
          return;
        } catch {
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    }
    // the coordinator is gone for good: leave nothing behind on this node
    await this.stopAll();
    process.exit(0);
  }

  /** The VFs the node layer claimed for Slurm job `job` on this node (its job record's `vfs`; unit tests pass their own). */
  private nodeClaims(job: string): unknown {
    if (this.opts.nodeClaims) return this.opts.nodeClaims(job);
    return readRecord(readNodeConfig().stateDir, process.env.SLURMD_NODENAME ?? '', job)?.vfs;
  }

  private vm(name: string): VmEntry {
    const e = this.vms.get(name);
    if (!e) throw new SymError('ESYM_NO_VM', { message: `no VM ${name} on host ${this.host}` });
    return e;
  }

  async startVm(spec: VmSpec, taps: TapRequest[], tls: Array<{ dir: string; credsId: string }> = []): Promise<{ pid: number }> {
    if (this.vms.has(spec.name)) throw new SymError('ESYM_VM_EXISTS', { message: `VM ${spec.name} already runs on ${this.host}` });
    fs.mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    const made: string[] = [];
    // with the node layer the job's user has no CAP_NET_ADMIN: the node's root helper makes the VM's taps
    const viaHelper = taps.find((t) => t.helper)?.helper;
    let proc: VmProcess;
    try {
      if (viaHelper) await askHelper(nodeHelperSocket(), 'attach', { job: viaHelper.job, vm: viaHelper.vm, ip: viaHelper.ip, standby: viaHelper.standby });
      else for (const t of taps) {
        await ensureTap(t.tap, t.bridge);
        made.push(t.tap);
      }
      proc = await (this.opts.spawnVm ?? ((s: VmSpec) => startVm(s, {})))(spec);
    } catch (err) {
      // nothing of a failed start stays on the node
      if (viaHelper) await askHelper(nodeHelperSocket(), 'detach', { job: viaHelper.job, vm: viaHelper.vm }).catch(() => undefined);
      await releaseTaps(made);
      throw err;
    }
    const e: VmEntry = { spec, proc, stopping: false, taps: made, ...(viaHelper ? { helper: { job: viaHelper.job, vm: viaHelper.vm } } : {}), badFrames: 0, released: false, tls: [...tls] };
    this.vms.set(spec.name, e);
    proc.qmp.on('event', (ev: { event: string; data: unknown }) => this.notify('qmp.event', { vm: spec.name, event: ev.event, data: ev.data }));
    void proc.exited.then((r) => {
      const cur = this.vms.get(spec.name);
      if (cur === e) this.vms.delete(spec.name);
      void this.release(e);
      this.notify('vm.exit', { vm: spec.name, code: r.code, signal: r.signal, expected: e.stopping });
    });
    this.connectGuest(e);
    return { pid: proc.pid };
  }

  private connectGuest(e: VmEntry): void {
    if (e.guest && !e.guest.destroyed) e.guest.destroy();
    const sock = net.createConnection(e.spec.agentSocket);
    e.guest = sock;
    const dec = new LineDecoder(DEFAULTS.agent.maxFrameBytes);
    sock.on('connect', () => this.notify('guest.link', { vm: e.spec.name, up: true }));
    sock.on('data', (d: Buffer) => {
      let lines: string[];
      try {
        lines = dec.push(d);
      } catch (err) {
        e.badFrames++;
        this.notify('guest.bad', { vm: e.spec.name, reason: (err as Error).message });
        return;
      }
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          this.notify('guest.frame', { vm: e.spec.name, frame: parseGuestFrame(line, DEFAULTS.agent.maxFrameBytes) });
        } catch (err) {
          // untrusted input: drop it, count it, tell the coordinator (partial frames after a reconnect land here too)
          e.badFrames++;
          if (err instanceof ProtocolError) this.notify('guest.bad', { vm: e.spec.name, reason: err.message });
        }
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      if (e.guest !== sock) return;
      this.notify('guest.link', { vm: e.spec.name, up: false });
      if (!e.stopping && this.vms.get(e.spec.name) === e) setTimeout(() => { if (e.guest === sock && !e.stopping) this.connectGuest(e); }, 300);
    });
  }

  /** This migration's key file on this host (derived from the job secret: the key never crosses a wire). */
  private writeKey(vmRunDir: string, tls: MigrationTlsRequest): string {
    const key = derivePsk(this.opts.secret ?? '', tls);
    fs.mkdirSync(vmRunDir, { recursive: true, mode: 0o700 });
    const dir = tlsDir(vmRunDir, tls.op);
    writePskFile(dir, pskIdentity(tls.op), key);
    return dir;
  }

  /**
   * Destination side: QEMU with the same device set as the source now has, waiting for the stream.
   * With tls: the server's credentials on its command line, tls-creds set before migrate-incoming.
   */
  async prepareIncoming(spec: VmSpec, taps: TapRequest[], tuning: MigrationTuning, listenIp: string, tls?: MigrationTlsRequest): Promise<{ uri: string; pid: number; tls: boolean }> {
    let extraArgs = spec.extraArgs;
    let dir: string | undefined;
    if (tls) {
      dir = this.writeKey(spec.runDir, tls);
      extraArgs = [...spec.extraArgs, ...tlsObjectArgs({ id: tlsCredsId(tls.op), endpoint: 'server', dir })];
    }
    let pid: number;
    try {
      ({ pid } = await this.startVm({ ...spec, extraArgs, incoming: 'defer' }, taps, dir ? [{ dir, credsId: tlsCredsId(tls!.op) }] : []));
    } catch (e) {
      if (dir) removePskDir(dir);
      throw e;
    }
    const q = this.vm(spec.name).proc.qmp;
    await configureMigration(q, tuning, 'dst', tls ? { tlsCreds: tlsCredsId(tls.op) } : {});
    // port 0: QEMU binds a free port and reports it (no race between picking and binding)
    const uri = await startIncoming(q, `tcp:${listenIp}:0`);
    return { uri, pid, tls: !!tls };
  }

  /** Restart: load a checkpoint's state file into a new QEMU (paused afterwards). */
  async restore(spec: VmSpec, taps: TapRequest[], file: string, timeoutMs: number): Promise<{ pid: number; status: string; loadMs: number; bytes?: number }> {
    const t0 = performance.now();
    if (!fs.existsSync(file)) throw new SymError('ESYM_RESTORE', { message: `state file ${file} is not visible on ${this.host}`, fix: 'the checkpoint directory must be shared by every node (e.g. on a parallel file system)' });
    const { pid } = await this.startVm({ ...spec, incoming: 'defer' }, taps);
    try {
      const q = this.vm(spec.name).proc.qmp;
      await startIncoming(q, `exec:cat ${shellQuote(file)}`);
      const r = await completeIncoming(q, { resume: false, timeoutMs });
      return { pid, status: r.runState, loadMs: Math.round(performance.now() - t0), bytes: r.progress.transferredBytes };
    } catch (e) {
      const log = this.vms.get(spec.name)?.proc.stderrLog;
      await this.stopVm(spec.name).catch(() => undefined);
      throw new SymError('ESYM_RESTORE', { message: `${spec.name} could not be restored on ${this.host} from ${file}: ${(e as Error).message}`, fix: log ? `see ${log}` : 'see the QEMU log in the job run directory', cause: e });
    }
  }

  /** Source side: start the transfer and report progress until it completes (or fails / is cancelled). */
  async perform(p: { name: string; uri: string; tuning: MigrationTuning; mode: MigrationMode; op: string; tls?: MigrationTlsRequest }): Promise<MigrationProgress> {
    const e = this.vm(p.name);
    const q = e.proc.qmp;
    const credsId = p.tls ? tlsCredsId(p.tls.op) : undefined;
    let dir: string | undefined;
    let started = false;
    let settled = false;
    try {
      if (p.tls) {
        dir = this.writeKey(e.spec.runDir, p.tls);
        e.tls.push({ dir, credsId: credsId! });
        await addTlsCreds(q, { id: credsId!, endpoint: 'client', dir, username: pskIdentity(p.tls.op) });
      }
      await configureMigration(q, { ...p.tuning, postcopy: p.tuning.postcopy || p.mode === 'postcopy' }, 'src', credsId ? { tlsCreds: credsId } : {});
      if (p.mode === 'stop-copy') await q.execute('stop');
      await startOutgoing(q, p.uri);
      started = true;
      const r = await this.watchOutgoing(q, p);
      settled = true;
      return r;
    } catch (err) {
      const code = (err as SymError).code;
      settled = !started || code === 'ESYM_MIGRATION_FAILED' || code === 'ESYM_MIGRATION_CANCELLED';
      const tlsErr = p.tls && code === 'ESYM_MIGRATION_FAILED'
        ? tlsFailure((err as SymError).details?.progress as MigrationProgress | undefined, { src: this.host, dst: p.uri })
        : undefined;
      throw tlsErr ?? err;
    } finally {
      if (dir) {
        removePskDir(dir);
        e.tls = e.tls.filter((x) => x.dir !== dir);
      }
      // a migration still running (timeout, postcopy paused) keeps its credentials
      if (credsId && settled) await dropTlsCreds(q, credsId);
    }
  }

  private watchOutgoing(q: VmProcess['qmp'], p: { name: string; mode: MigrationMode; op: string }): Promise<MigrationProgress> {
    let switched = false;
    return waitMigration(q, {
      intervalMs: DEFAULTS.migration.pollIntervalMs,
      onProgress: (pr) => {
        this.notify('mig.progress', { vm: p.name, op: p.op, progress: pr });
        // postcopy mode: one precopy pass first (the guest's clean pages), then switch
        if (p.mode === 'postcopy' && !switched && pr.status === 'active' && (pr.dirtySyncCount ?? 0) >= 1) {
          switched = true;
          void startPostcopy(q).catch((e) => this.notify('mig.progress', { vm: p.name, op: p.op, note: `postcopy switch failed: ${(e as Error).message}` }));
        }
      },
    });
  }

  /**
   * Abort an outgoing migration (rollback). Does NOT resume the source: if the transfer had completed,
   * or is in postcopy, the destination runs the guest and must be stopped first (the coordinator
   * does that, then `vm.cont` here), so two copies never run at once.
   */
  async cancel(name: string): Promise<{ status: string; migration: string }> {
    const q = this.vm(name).proc.qmp;
    let migration: string;
    try {
      migration = (await cancelMigration(q)).status;
    } catch (e) {
      if ((e as SymError).code !== 'ESYM_MIGRATION_POSTCOPY_CANCEL') throw e;
      migration = 'postcopy-active';
    }
    const st = await q.execute<{ status: string }>('query-status');
    return { status: st.status, migration };
  }

  /** Resume a paused VM (rollback after cancel / stop-copy). */
  async cont(name: string): Promise<{ resumed: boolean }> {
    const q = this.vm(name).proc.qmp;
    const st = await q.execute<{ running: boolean }>('query-status');
    if (st.running) return { resumed: false };
    await q.execute('cont');
    return { resumed: true };
  }

  /** Destination side: the stream is loaded and the VM runs (QEMU keeps it paused if the source was stopped: stop-copy). */
  async finishIncoming(name: string, timeoutMs: number): Promise<{ status: string; resumed: boolean }> {
    const e = this.vm(name);
    const r = await completeIncoming(e.proc.qmp, { resume: true, timeoutMs });
    // the stream is in: this side's key and credentials are no longer needed
    for (const x of e.tls.splice(0)) {
      removePskDir(x.dir);
      await dropTlsCreds(e.proc.qmp, x.credsId);
    }
    if (r.runState !== 'running') {
      throw new SymError('ESYM_MIGRATION_FINISH', { message: `${name} on ${this.host} is ${r.runState} after the transfer`, fix: `see ${this.vm(name).proc.stderrLog}` });
    }
    return { status: r.runState, resumed: r.resumed };
  }

  async stopVm(name: string): Promise<{ stopped: boolean }> {
    const e = this.vms.get(name);
    if (!e) return { stopped: false };
    e.stopping = true;
    e.guest?.destroy();
    await e.proc.stop({ graceMs: DEFAULTS.teardown.stopGraceMs });
    await this.release(e);
    this.vms.delete(name);
    return { stopped: true };
  }

  /** Guest socket and taps of a VM whose QEMU is gone; runs once whoever notices first. */
  private async release(e: VmEntry): Promise<void> {
    if (e.released) return;
    e.released = true;
    e.guest?.destroy();
    for (const x of e.tls.splice(0)) removePskDir(x.dir);
    await releaseTaps(e.taps);
    if (e.helper) await askHelper(nodeHelperSocket(), 'detach', e.helper).catch(() => undefined);
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.vms.keys()].map((n) => this.stopVm(n)));
  }
}

async function main(): Promise<void> {
  const coord = process.env.SYMRUN_COORD ?? '';
  const secret = process.env.SYMRUN_JOB_SECRET ?? '';
  const host = process.env.SYMRUN_HOST ?? '';
  const m = /^(.+):(\d+)$/.exec(coord);
  if (!m || !secret || !host) {
    process.stderr.write('symrun host agent: SYMRUN_COORD=ip:port, SYMRUN_JOB_SECRET and SYMRUN_HOST must be set (the coordinator starts this program)\n');
    process.exit(2);
  }
  delete process.env.SYMRUN_JOB_SECRET;
  const connect = (timeoutMs: number) => connectChannel({ host: m[1]!, port: Number(m[2]), secret, name: host, timeoutMs });
  const peer = await connect(30_000);
  const graceMs = Number(process.env.SYMRUN_AGENT_GRACE_MS ?? PROTOCOL_DEFAULTS.agentGraceMs);
  const agent = new HostAgent(host, peer, { reconnect: () => connect(2_000), graceMs, secret });
  const bye = () => void agent.stopAll().finally(() => process.exit(0));
  // scancel, a time limit or a preemption signal every step of the job at once (SIGTERM, SIGKILL after
  // Slurm's KillWait): the VMs hold what the ranks wrote, so they stay until the coordinator has copied
  // it back and tells this agent to shut down (bounded by termGraceMs); a second signal stops them now
  const termGraceMs = Number(process.env.SYMRUN_AGENT_TERM_GRACE_MS ?? PROTOCOL_DEFAULTS.agentTermGraceMs);
  let signalled = false;
  const onTerm = (sig: NodeJS.Signals) => {
    if (signalled || agent.peer.closed || termGraceMs <= 0) { bye(); return; }
    signalled = true;
    process.stderr.write(`symrun host agent ${host}: ${sig}: keeping the VMs up to ${termGraceMs / 1000} s for the coordinator to copy the job's files back\n`);
    setTimeout(bye, termGraceMs);
  };
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onTerm);
  process.on('SIGHUP', onTerm);
}

if (process.argv[1] && import.meta.url === new URL(`file://${fs.realpathSync(process.argv[1])}`).href) {
  main().catch((e) => {
    process.stderr.write(`symrun host agent: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
