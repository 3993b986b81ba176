// The coordinator of one job (`symrun run`): hosts -> host agents -> VMs -> guest agents -> network ->
// staging -> mpirun in vm1 -> output -> stage-out -> teardown. Every resource is registered on a
// teardown stack the moment it exists, so Ctrl-C, SIGTERM or a failure in any step removes all of it.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { Readable } from 'node:stream';
import type { SymrunConfig } from '../config/types.js';
import { SymError, EXIT } from '../errors.js';
import { DEFAULTS, SLURM_DEFAULTS, PROTOCOL_DEFAULTS, runtimeRoot, repoRoot } from '../defaults.js';
import { serveChannel, serveUnix, type RpcPeer, type ChannelServer } from '../agent/channel.js';
import { GuestClient } from '../agent/guest.js';
import type { GuestFrame } from '../../../guest/protocol/index.js';
import { resolveImage, imageFiles, type ImageInfo } from '../image/index.js';
import { detectQemu, probeAccel, type VmSpec } from '../vm/index.js';
import { cleanupJob, findStaleJobs, requireRoot, pidsInNetns } from '../local/index.js';
import { createLocalHosts, createSlurmHosts, currentAllocationNodes, hostMode, type HostSet } from './hosts.js';
import { DrainPolicy } from './policy.js';
import { planPlacement } from './placement.js';
import { NodeFeed } from '../slurm/feed.js';
import { writeFileAtomic } from '../util/fsatomic.js';
import { ownerAlive, procStartTime, readState, writeState } from '../local/state.js';
import { resolveProgram, programClosure, snapshotDir, tarCreate, tarExtractSafe } from '../stage/index.js';
import { planMpi, retagLine, LineSplitter } from '../mpi/launch.js';
import { Migrations, type JobAccess, type MigrateRequest } from './migrate.js';
import { checkpointsFor, type CheckpointRequest } from './checkpoint.js';
import { pickCheckpoint, planRestart, restoreVms, restartsInFlight, type PickedCheckpoint } from './restart.js';
import type { CheckpointSessions } from '../checkpoint/manifest.js';
import type { OpEvent } from '../protocol/executor.js';

export interface JobOptions {
  config: SymrunConfig;
  /** the application and its arguments */
  app: string[];
  cwd: string;
  quiet?: boolean;
  signal?: AbortSignal;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** called with each phase name and its duration (ms) */
  onPhase?: (phase: string, ms: number) => void;
  jobId?: string;
  /** append every protocol event (JSON lines) to this file */
  eventsFile?: string;
  /** `symrun restart`: resume this checkpoint (verified) instead of booting and launching */
  restore?: PickedCheckpoint;
}

export interface JobResult { exitCode: number; jobId: string; phases: Record<string, number>; firstOutputMs?: number }

export interface VmState {
  name: string;
  index: number;
  host: string;
  mac: string;
  ip: string;
  tap: string;
  client: GuestClient;
  state: 'booting' | 'ready' | 'running' | 'stopped' | 'checkpointing';
}

const nowMs = () => performance.now();

/** runDir/recover.json: everything `symrun recover` needs to take over a job whose coordinator died. */
export interface RecoveryState {
  v: 1;
  jobId: string;
  secret: string;
  channel: { host: string; port: number };
  accel: 'kvm' | 'tcg';
  image: ImageInfo;
  config: SymrunConfig;
  app: string[];
  cwd: string;
  hosts: Array<{ name: string; ip: string; bridge: string }>;
  prefixLen: number;
  vmHostCount: number;
  vms: Array<{ name: string; index: number; host: string; mac: string; ip: string; tap: string }>;
  mpirun?: { vm: string; sid: string; rankVm: string[] };
  rsh: Array<{ rid: string; from: string; to: string; sid: string }>;
}

/** A local job whose coordinator died, with a recovery record and host agents still waiting for a new coordinator. */
function recoverable(jobId: string): boolean {
  if (!fs.existsSync(path.join(runtimeRoot(), jobId, 'recover.json'))) return false;
  const ns = readState(jobId)?.namespaces ?? [];
  return pidsInNetns(ns).some((pid) => {
    try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('hostagent.js'); } catch { return false; }
  });
}

/** Jobs on this machine whose coordinator is gone but whose recovery record is there. */
export function listRecoverable(): Array<{ id: string; state: RecoveryState }> {
  return runDirs()
    .filter((r) => !r.alive && !r.foreign)
    .flatMap((r) => {
      try {
        return [{ id: r.id, state: JSON.parse(fs.readFileSync(path.join(r.dir, 'recover.json'), 'utf8')) as RecoveryState }];
      } catch {
        return [];
      }
    });
}

export function newJobId(): string {
  return crypto.randomBytes(4).toString('hex').slice(0, 6).replace(/^\d/, 'j');
}

/** Deterministic locally administered MAC for a job's VM (the same on every host it moves to). */
export function vmMac(jobId: string, index: number, role: 'device' | 'standby' = 'device'): string {
  const h = crypto.createHash('sha256').update(jobId).digest();
  const b2 = role === 'standby' ? h[2]! ^ 0x80 : h[2]!;
  return ['52', '54', h[0]!.toString(16).padStart(2, '0'), h[1]!.toString(16).padStart(2, '0'), b2.toString(16).padStart(2, '0'), index.toString(16).padStart(2, '0')].join(':');
}

/** failover adapter: the virtio standby NIC that migrates with the VM (tap and QEMU ids). */
export const STANDBY = { netdevId: 'symsb0nd', deviceId: 'symsb0', bus: 'rp2', tap: (index: number) => `symsb${index}` } as const;

export class Job {
  readonly id: string;
  readonly runDir: string;
  readonly phases: Record<string, number> = {};
  private teardown: Array<{ what: string; fn: () => Promise<unknown> | unknown }> = [];
  private peers = new Map<string, RpcPeer>();
  /** the host agents' channel (closed, every connection with it, before the hosts are removed) */
  private channel?: ChannelServer;
  private channelClosed?: Promise<void>;
  private peerWaiters = new Map<string, (p: RpcPeer) => void>();
  /** host agent processes (srun steps under Slurm), stopped at teardown */
  private agentChildren: ChildProcess[] = [];
  private allocCheck?: Promise<void>;
  readonly vms = new Map<string, VmState>();
  private cluster?: HostSet;
  /** hosts that run VMs at start (the rest of cluster.hosts are spares) */
  private vmHostCount = 0;
  /** what a restarted coordinator (`symrun recover`) needs; written to recover.json as it changes */
  private secret = '';
  private channelPort = 0;
  private mpirunSession?: { vm: string; sid: string; rankVm: string[] };
  private rshRelays = new Map<string, { from: string; to: string; sid: string }>();
  private policy?: DrainPolicy;
  /** Slurm mode: node (and allocation) changes from symrun watchd (slurm.watcher) or the job's own polling */
  private nodeFeed?: NodeFeed;
  private image?: ImageInfo;
  state = 'starting';
  private out: NodeJS.WritableStream;
  private err: NodeJS.WritableStream;
  private t0 = nowMs();
  private firstOutputMs?: number;
  private accel: 'kvm' | 'tcg' = 'tcg';
  readonly migrations: Migrations;
  private eventSubscribers = new Set<RpcPeer>();
  private eventsFd?: number;
  private controlExecs = new Map<string, { peer: RpcPeer; handle: import('../agent/guest.js').ExecHandle }>();
  // ---- reactive restart (restart.ts) ----
  /** hosts whose agent was lost (node died): no VM goes there again */
  private lostHosts = new Set<string>();
  /** a loss the run loop has not handled yet */
  private pendingLoss?: { hosts: string[]; why: string };
  /** wakes the run loop (supervise) when a host is lost */
  private runBreak?: () => void;
  private restarts = 0;
  private restartLog: Array<{ at: string; hosts: string[]; why: string; from?: string; ms?: number; moved?: Array<{ vm: string; from: string; to: string }> }> = [];
  /** what mpirun was started with (a restart from the beginning launches it again) */
  private launch?: { vm: string; argv: string[]; env: Record<string, string>; rankVm: string[]; stage: { abs: string[]; cwd: string[] } };
  /** MACs and checkpoint names derive from this (a restarted job keeps its checkpoint's) */
  private macSeed: string;
  /** guests' prefix length when restored from a checkpoint (their addresses are in the saved state) */
  private prefixLenOverride?: number;

  constructor(readonly opts: JobOptions) {
    this.id = opts.jobId ?? newJobId();
    this.macSeed = opts.restore?.manifest.jobId ?? this.id;
    this.runDir = path.join(runtimeRoot(), this.id);
    this.out = opts.stdout ?? process.stdout;
    this.err = opts.stderr ?? process.stderr;
    this.migrations = new Migrations(this.access(), (e) => this.event(e));
  }

  /** Every protocol event: --events file, control-socket subscribers, and a line on stderr per phase. */
  private event(e: OpEvent): void {
    const line = JSON.stringify(e) + '\n';
    if (this.eventsFd !== undefined) { try { fs.writeSync(this.eventsFd, line); } catch { /* disk full: keep going */ } }
    for (const p of this.eventSubscribers) p.notify('op.event', e);
    // (the drain policy says its own lines: policy.ts)
    if (e.kind !== 'policy' && !(e.kind === 'restart' && e.event === 'action') && (e.event === 'end' || e.event === 'fail' || e.event === 'result' || e.event === 'action' || e.event === 'cancel')) {
      const d = e.data ?? {};
      const what = e.event === 'result' ? `${d.outcome}${d.error ? ` (${(d.error as { message: string }).message})` : ''}` : e.event === 'action' ? `action ${d.action ?? d.fault}${d.reason ? `: ${d.reason}` : ''}` : e.event === 'fail' ? `failed: ${d.error}` : e.event;
      this.say(`${e.kind} ${d.vm} ${d.from}->${d.to}: ${e.event === 'result' ? 'finished:' : e.phase} ${what}${e.ms !== undefined ? ` (${e.ms} ms)` : ''}`);
    }
  }

  /** The narrow view of this job the migration code works through. */
  private access(): JobAccess {
    const cfg = () => this.opts.config;
    return {
      id: this.id,
      runDir: this.runDir,
      get migration() { return cfg().migration; },
      get deviceModel() { const ic = cfg().interconnect; return ic.type === 'emulated' ? ic.model : 'virtio-net-pci'; },
      vm: (n) => this.vms.get(n),
      vmNames: () => [...this.vms.keys()],
      hosts: () => (this.cluster?.hosts ?? []).map((h, i) => ({ name: h.name, ip: h.ip, bridge: h.bridge, spare: i >= this.vmHostCount, usable: this.peers.has(h.name) && !this.lostHosts.has(h.name) && !this.policy?.unusable(h.name) })),
      peer: (h) => {
        const p = this.peers.get(h);
        if (!p) throw new SymError('ESYM_NO_AGENT', { message: `no host agent connected on ${h}` });
        return p;
      },
      spec: (n, host, withDevice) => this.vmSpec(this.vms.get(n)!, this.accel, withDevice, host),
      taps: (n, bridge) => this.vmTaps(this.vms.get(n)!, bridge, false),
      failoverReady: () => cfg().migration.quiesce === 'failover',
      setVmHost: (n, host) => {
        const v = this.vms.get(n)!;
        v.client.detach(`moved to ${host}`);
        v.host = host;
        this.saveRecovery();
      },
      netConfigArgs: (n) => this.netConfigArgs(this.vms.get(n)!),
    };
  }

  private say(msg: string): void {
    if (!this.opts.quiet) this.err.write(`symrun: ${msg}\n`);
  }

  private async phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t = nowMs();
    try {
      return await fn();
    } finally {
      const ms = Math.round(nowMs() - t);
      this.phases[name] = ms;
      this.opts.onPhase?.(name, ms);
    }
  }

  private onCleanup(what: string, fn: () => Promise<unknown> | unknown): void {
    this.teardown.push({ what, fn });
  }

  private checkAbort(): void {
    const s = this.opts.signal;
    if (s?.aborted) throw s.reason instanceof Error ? s.reason : new SymError('ESYM_CANCELLED', { message: 'cancelled' });
  }

  async run(): Promise<JobResult> {
    let exitCode: number = EXIT.runtime;
    try {
      exitCode = await this.runInner();
    } finally {
      await this.phase('teardown', () => this.tearDown());
    }
    return { exitCode, jobId: this.id, phases: this.phases, firstOutputMs: this.firstOutputMs };
  }

  private async runInner(): Promise<number> {
    const cfg = this.opts.config;
    const mode = hostMode(cfg);
    if (mode === 'local') requireRoot('--local creates network namespaces, bridges and tap devices');
    const [prog, ...args] = this.opts.app;
    if (!prog) throw new SymError('ESYM_NO_APP', { message: 'no application given', fix: 'symrun [options] -- ./app args', exitCode: EXIT.usage });
    const restore = this.opts.restore;
    // restart: the program is in the guests' saved memory already (only its path is used, for messages)
    const program = restore ? { hostPath: prog } as ReturnType<typeof resolveProgram> : resolveProgram(prog, { cwd: this.opts.cwd, PATH: process.env.PATH });

    // a previous run killed with SIGKILL leaves namespaces and run dirs: clean them first
    // (local mode only: in Slurm mode /run/symrun may be shared by nodes whose processes this one cannot see)
    if (mode === 'local') await this.phase('cleanup-stale', async () => {
      for (const j of await findStaleJobs()) {
        if (recoverable(j)) {
          this.say(`job ${j} lost its coordinator but its host agents still wait for one: not removing it (\`symrun recover --job ${j}\` takes it over)`);
          continue;
        }
        await cleanupJob(j);
        this.say(`removed leftovers of an earlier run (job ${j})`);
      }
      cleanStaleRunDirs((id) => recoverable(id));
    });

    fs.mkdirSync(this.runDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(this.runDir, 'owner.json'), JSON.stringify({ pid: process.pid, pidStartTime: procStartTime(process.pid), pidns: pidNamespace(), startedAt: new Date().toISOString(), app: this.opts.app, cwd: this.opts.cwd, ...(process.env.SLURM_JOB_ID ? { slurmJobId: process.env.SLURM_JOB_ID } : {}) }));
    this.onCleanup('run directory', () => fs.rmSync(this.runDir, { recursive: true, force: true }));
    if (this.opts.eventsFile) {
      this.eventsFd = fs.openSync(this.opts.eventsFile, 'a', 0o600);
      const fd = this.eventsFd;
      this.onCleanup('events file', () => { this.eventsFd = undefined; fs.closeSync(fd); });
    }

    const [image, , accel] = await this.phase('image', () =>
      Promise.all([
        restore ? checkpointImage(restore, cfg.image, (s: string) => this.say(`image: ${s}`), this.opts.signal) : resolveImage(cfg.image, { onProgress: (s: string) => this.say(`image: ${s}`), signal: this.opts.signal }),
        detectQemu(),
        probeAccel(cfg.accel),
      ]),
    );
    this.image = image;
    this.accel = accel.accel;
    if (accel.notice) this.say(accel.notice);
    this.checkAbort();

    const files = await imageFiles(image);
    const [closure, snap] = await this.phase('closure', () =>
      Promise.all([
        restore ? Promise.resolve({ files: [] as string[] } as Awaited<ReturnType<typeof programClosure>>) : programClosure([program.hostPath], { imageFiles: files }),
        cfg.share.cwd && !restore ? snapshotDir(this.opts.cwd, { maxBytes: cfg.share.maxBytes, exclude: [...cfg.share.exclude, ...checkpointExclude(this.opts.cwd, cfg.checkpoint.dir)] }) : Promise.resolve(undefined),
      ]),
    );
    const caches = snap?.skipped.filter((e) => e.cache).map((e) => `${e.path}/`) ?? [];
    if (caches.length) this.say(`not copied into the guests: ${caches.join(', ')} (tagged CACHEDIR.TAG: checkpoints or caches)`);

    const cluster: HostSet = await this.phase('hosts', () => mode === 'local'
      ? createLocalHosts({ jobId: this.id, hosts: cfg.local + cfg.spares, subnet: cfg.network.subnet, signal: this.opts.signal })
      : createSlurmHosts({ config: cfg, spares: cfg.spares, signal: this.opts.signal }));
    this.cluster = cluster;
    this.onCleanup(mode === 'local' ? 'emulated hosts' : 'slurm hosts', () => cluster.destroy());
    // placement (-N, -n, --ntasks-per-node, -c; docs/placement.md): main.ts planned cfg before the job
    // (VM sizes), this plans it again with the hosts really got: the first vmHosts run VMs, the rest are
    // spares. A restore keeps the checkpoint's layout (runRestored).
    const placement = restore ? undefined : planPlacement({
      mode, hosts: cluster.hosts.length, local: cfg.local, nodes: cfg.nodes, spares: cfg.spares,
      np: cfg.mpi.np, ntasksPerNode: cfg.mpi.ntasksPerNode, slotsPerVm: cfg.mpi.slotsPerVm, cpusPerTask: cfg.mpi.cpusPerTask, cpus: cfg.vm.cpus,
    });
    this.vmHostCount = placement?.vmHosts ?? (mode === 'local' ? cfg.local : cluster.hosts.length - cfg.spares);

    const secret = crypto.randomBytes(32).toString('hex');
    const server = await serveChannel({ host: cluster.coordinatorIp, secret, onPeer: (p) => this.addPeer(p) });
    this.secret = secret;
    this.channelPort = server.port;
    this.channel = server;
    this.onCleanup('channel', () => this.closeChannel());
    const control = await serveUnix(path.join(this.runDir, 'control.sock'), (p) => this.serveControl(p));
    this.onCleanup('control socket', () => control.close());

    await this.phase('agents', () => this.startHostAgents(cluster));
    this.checkAbort();
    if (mode === 'slurm') this.watchNodes(cluster);
    this.startAgentHeartbeat();
    if (restore) return this.runRestored(cluster, restore);

    // VMs on the first hosts; the rest (--spares) are spares
    const names: string[] = [];
    for (let i = 1; i <= this.vmHostCount; i++) {
      const host = cluster.hosts[i - 1]!;
      const name = `vm${i}`;
      names.push(name);
      const client = new GuestClient(name);
      this.vms.set(name, { name, index: i, host: host.name, mac: vmMac(this.macSeed, i), ip: cluster.guestIp(i), tap: `symtap${i}`, client, state: 'booting' });
      client.on('rsh', (f: Extract<GuestFrame, { t: 'rsh' }>) => void this.relayRsh(name, f));
    }
    this.say(`job ${this.id}: booting ${names.length} VMs (${accel.accel}, ${cfg.vm.memoryMiB} MiB, ${cfg.vm.cpus} vCPU) on ${names.length} hosts${cfg.spares ? ` + ${cfg.spares} spare` : ''}`);
    await this.phase('boot', () => Promise.all(names.map((n) => this.bootVm(n, accel.accel))));
    this.checkAbort();

    await this.phase('network', () => this.configureNetwork());
    await this.phase('stage', () => this.stageIn(closure.files, snap?.files ?? []));
    this.checkAbort();

    const slotsPerVm = placement?.slotsPerVm ?? cfg.mpi.slotsPerVm ?? cfg.vm.cpus;
    const plan = planMpi({
      vms: names.map((n) => ({ name: n, slots: slotsPerVm })),
      np: placement ? placement.np : cfg.mpi.np,
      mapBy: placement?.mapBy,
      program: program.hostPath,
      args,
      cwd: this.opts.cwd,
      ifName: cfg.network.guestIfName,
      tagOutput: cfg.mpi.tagOutput,
      mca: cfg.mpi.mca,
      extraArgs: cfg.mpi.extraArgs,
    });
    const vm1 = this.vms.get(names[0]!)!;
    const check = await vm1.client.run(['test', '-x', program.hostPath], { timeoutMs: 30_000 });
    if (check.status !== 0) {
      this.err.write(`symrun: ${program.hostPath}: not found or not executable inside ${vm1.name}\n`);
      return EXIT.notFound;
    }
    this.say(`launching ${plan.np} ranks on ${names.length} VMs`);
    this.state = 'running';
    for (const v of this.vms.values()) v.state = 'running';
    this.policy?.evaluate(); // nodes that went bad while the VMs booted
    const ckptTimer = checkpointsFor(this, this.access(), (e) => this.event(e)).startTimer(); // checkpoint.interval
    this.onCleanup('checkpoint timer', () => ckptTimer.stop());
    this.launch = { vm: vm1.name, argv: plan.argv, env: plan.env, rankVm: plan.rankVm, stage: { abs: closure.files, cwd: snap?.files ?? [] } };
    const status = await this.phase('run', () => this.supervise(this.runMpi(vm1, plan.argv, plan.env, plan.rankVm)));
    await ckptTimer.stop(); // a checkpoint in flight completes (or rolls back) before the VMs go
    this.state = 'finishing';
    await this.phase('stage-out', () => this.stageOut());
    return status;
  }

  /** `symrun restart`: the checkpoint's VMs on the first hosts (the rest are spares), restored, the job goes on. */
  private async runRestored(cluster: HostSet, ck: PickedCheckpoint): Promise<number> {
    const m = ck.manifest;
    if (cluster.hosts.length < m.vms.length) {
      throw new SymError('ESYM_NO_HOSTS', { message: `checkpoint ${m.name} has ${m.vms.length} VMs; this allocation has ${cluster.hosts.length} host${cluster.hosts.length === 1 ? '' : 's'}`, fix: `allocate ${m.vms.length} nodes or more (one VM per node; more become spares)`, exitCode: EXIT.usage });
    }
    this.vmHostCount = m.vms.length;
    const placement = new Map<string, string>();
    for (const [i, v] of [...m.vms].sort((a, b) => (a.index ?? 0) - (b.index ?? 0)).entries()) {
      const host = cluster.hosts[i]!.name;
      const client = new GuestClient(v.name);
      this.vms.set(v.name, { name: v.name, index: v.index!, host, mac: v.device.mac, ip: v.ip!, tap: v.device.tap, client, state: 'booting' });
      client.on('rsh', (f: Extract<GuestFrame, { t: 'rsh' }>) => void this.relayRsh(v.name, f));
      placement.set(v.name, host);
    }
    const addr = String(m.vms[0]!.network.address ?? '');
    const len = Number(/\/(\d+)$/.exec(addr)?.[1]);
    if (len) this.prefixLenOverride = len;
    this.say(`job ${this.id}: restarting job ${m.jobId} from checkpoint ${m.name} (${m.createdAt}): ${m.vms.length} VMs on ${[...placement.values()].join(', ')}${cluster.hosts.length > m.vms.length ? ` + ${cluster.hosts.length - m.vms.length} spare` : ''}`);
    const { mpi } = await this.phase('restore', () => this.restoreFrom(ck, placement));
    this.checkAbort();
    const ckptTimer = checkpointsFor(this, this.access(), (e) => this.event(e)).startTimer();
    this.onCleanup('checkpoint timer', () => ckptTimer.stop());
    const status = await this.phase('run', () => this.supervise(mpi));
    await ckptTimer.stop();
    this.state = 'finishing';
    await this.phase('stage-out', () => this.stageOut());
    return status;
  }

  private addPeer(p: RpcPeer): void {
    if (this.lostHosts.has(p.name)) { p.close(); return; } // a lost node's agent is not taken back
    const old = this.peers.get(p.name);
    this.peers.set(p.name, p);
    // an agent that connected again (e.g. its first try of a reconnect looked dead to it): the older
    // connection is closed here, never left open (its peer may never close it: issue of a recover hang)
    if (old && old !== p) old.close();
    this.peerWaiters.get(p.name)?.(p);
    p.on('event', (name: string, data: any) => this.onHostEvent(p, name, data));
    p.on('close', () => { if (this.peers.get(p.name) === p) this.hostLost(p.name, 'its host agent\'s connection closed'); });
    p.start();
  }

  // ---------- node death: detection, then restart from the last checkpoint (restart.ts) ----------

  /** Every host agent answers host.info once per heartbeat; one silent for agentLostMs is lost (its node died). */
  private startAgentHeartbeat(): void {
    const lastOk = new Map<string, number>();
    const lostMs = PROTOCOL_DEFAULTS.agentLostMs;
    let lastTick = Date.now();
    const timer = setInterval(() => {
      if (this.state === 'tearing-down' || this.state === 'done') return;
      const now = Date.now();
      // this process was stalled (not the agents): their answers may be waiting unread; start counting afresh
      if (now - lastTick > 3 * PROTOCOL_DEFAULTS.agentHeartbeatMs) for (const name of lastOk.keys()) lastOk.set(name, now);
      lastTick = now;
      for (const [name, p] of this.peers) {
        if (!lastOk.has(name)) lastOk.set(name, Date.now());
        p.call('host.info', {}, { timeoutMs: lostMs }).then(() => lastOk.set(name, Date.now()), () => undefined);
        const silent = Date.now() - lastOk.get(name)!;
        if (silent > lostMs) this.hostLost(name, `its host agent has not answered for ${(silent / 1000).toFixed(1)} s`);
      }
    }, PROTOCOL_DEFAULTS.agentHeartbeatMs);
    timer.unref();
    this.onCleanup('host agent heartbeat', () => clearInterval(timer));
  }

  /** A host is gone (agent silent or disconnected, or Slurm says DOWN): its VMs are lost with it. */
  private hostLost(host: string, why: string): void {
    if (this.lostHosts.has(host) || this.state === 'tearing-down' || this.state === 'done' || this.state === 'finishing') return;
    this.lostHosts.add(host);
    const p = this.peers.get(host);
    this.peers.delete(host);
    p?.close(); // pending calls to it fail now instead of at their timeouts
    const vms = [...this.vms.values()].filter((v) => v.host === host);
    for (const v of vms) { v.client.detach(`host ${host} lost`); v.state = 'stopped'; }
    this.say(`host ${host} lost (${why})${vms.length ? `: ${vms.map((v) => v.name).join(', ')} went with it` : ': it was a spare, no longer a target'}`);
    this.event({ ts: new Date().toISOString(), op: '-', kind: 'restart', phase: 'new', event: 'action', data: { action: 'host-lost', host, why, vms: vms.map((v) => v.name) } } as unknown as OpEvent);
    if (!vms.length) return;
    if (this.pendingLoss) this.pendingLoss.hosts.push(host);
    else this.pendingLoss = { hosts: [host], why };
    this.runBreak?.();
  }

  private restartPossible(): boolean {
    const c = this.opts.config.checkpoint;
    return c.maxRestarts > 0 && (!!c.dir || c.restartFromStart);
  }

  /** Ask every host agent once (after mpirun failed: did a node die before its agent was missed?). */
  private async probeHosts(): Promise<void> {
    await Promise.all([...this.peers].map(async ([name, p]) => {
      try { await p.call('host.info', {}, { timeoutMs: PROTOCOL_DEFAULTS.agentLostMs }); } catch (e) { this.hostLost(name, `its host agent did not answer: ${(e as Error).message}`); }
    }));
  }

  /** Wait for mpirun; when a host with VMs is lost meanwhile, restart (from the last checkpoint) and wait again. */
  private async supervise(first: Promise<number>): Promise<number> {
    let mpi = first;
    for (;;) {
      let wake!: () => void;
      const woken = new Promise<void>((r) => { wake = r; });
      this.runBreak = wake;
      if (this.pendingLoss) wake();
      const r = await Promise.race([mpi.then((s) => ({ s })), woken.then(() => undefined)]);
      this.runBreak = undefined;
      if (r && !this.pendingLoss) {
        if (r.s === 0 || !this.restartPossible() || this.opts.signal?.aborted) return r.s;
        await this.probeHosts();
        if (!this.pendingLoss) return r.s;
        this.say(`mpirun ended with ${r.s} after a host was lost: restarting instead of ending the job`);
      }
      mpi.catch(() => undefined); // the old session is not waited for any more
      try {
        mpi = (await this.restart()).mpi;
      } catch (e) {
        // another host died while restoring (e.g. the spare): try again with what is left
        if (!this.pendingLoss || (e as SymError).code !== 'ESYM_RESTART') throw e;
        this.say(`restart failed (${(e as Error).message}); another host was lost meanwhile: restarting again`);
        mpi = new Promise<number>(() => undefined);
      }
    }
  }

  /** Cancel migrations and wait (bounded) for them and a checkpoint in flight to end: the restart replaces every VM anyway. */
  private async settleOps(ms: number): Promise<void> {
    const migs = this.migrations.list().filter((o) => !o.result);
    for (const o of migs) { try { this.migrations.cancel(o.vm); } catch { /* finishing */ } }
    const ck = checkpointsFor(this, this.access(), (e) => this.event(e));
    const busy = ck.active();
    busy?.exec.cancel('a host of the job was lost: the job restarts from its last complete checkpoint');
    const until = Date.now() + ms;
    while (Date.now() < until && (this.migrations.list().some((o) => !o.result) || (busy && !busy.info.result))) await new Promise((r) => setTimeout(r, 100));
  }

  /** Checkpoint ids this job may restart from: its own, and the one it was restarted from. */
  private checkpointJobIds(): string[] {
    return [...new Set([this.id, this.macSeed])];
  }

  /** The restart itself: returns the new wait for mpirun; throws (ending the job) when it cannot restart. */
  private async restart(): Promise<{ mpi: Promise<number> }> {
    const loss = this.pendingLoss!;
    this.pendingLoss = undefined;
    const cfg = this.opts.config;
    const root = cfg.checkpoint.dir;
    const lostVms = [...this.vms.values()].filter((v) => this.lostHosts.has(v.host)).map((v) => v.name);
    const what = `${lostVms.join(', ')} lost with ${loss.hosts.join(', ')} (${loss.why})`;
    this.state = 'restarting';
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
      for (const r of picked?.refused ?? []) this.say(`checkpoint ${r.name} not used: ${r.reason}`);
    }
    const again = picked ? `symrun restart ${root} --from ${picked.manifest.name} -- (in a new allocation)` : undefined;
    if (this.restarts >= cfg.checkpoint.maxRestarts) {
      throw new SymError('ESYM_RESTART_LIMIT', {
        message: `${what}; ${cfg.checkpoint.maxRestarts === 0 ? 'restarts are off (--max-restarts 0)' : `all ${cfg.checkpoint.maxRestarts} restarts (--max-restarts) are used up`}`,
        fix: again ?? 'take checkpoints (--checkpoint-dir DIR --checkpoint-interval 10m) so the job can be restarted',
      });
    }
    const plan = planRestart([...this.vms.values()].map((v) => ({ vm: v.name, host: v.host })), this.access().hosts().map((h) => ({ name: h.name, usable: h.usable })));
    if (plan.homeless.length) {
      throw new SymError('ESYM_NO_SPARE', {
        message: `${what}; no spare host is left to restart ${plan.homeless.join(', ')} on`,
        fix: again ? `restart the job from its last checkpoint in a new allocation: ${again}` : 'resubmit the job with spare nodes (--spares N)',
      });
    }
    this.restarts++;
    const entry: (typeof this.restartLog)[number] = { at: new Date().toISOString(), hosts: loss.hosts, why: loss.why, moved: plan.moved };
    this.restartLog.push(entry);
    const t0 = nowMs();
    if (!picked) {
      if (!cfg.checkpoint.restartFromStart) {
        throw new SymError('ESYM_NO_CHECKPOINT', {
          message: `${what}, and the job has no complete checkpoint to restart from${none ? ` (${none})` : root ? '' : ' (no --checkpoint-dir)'}`,
          fix: 'take checkpoints (--checkpoint-dir DIR --checkpoint-interval 10m), or let symrun run the job again from the beginning (--restart-from-start)',
        });
      }
      this.say(`restart ${this.restarts}/${cfg.checkpoint.maxRestarts}: ${what}; no checkpoint: running the job again from the beginning${plan.moved.length ? ` (${plan.moved.map((m) => `${m.vm} on ${m.to}`).join(', ')})` : ''}`);
      const mpi = await this.phase(`restart-${this.restarts}`, () => this.relaunch(plan.placement));
      entry.ms = Math.round(nowMs() - t0);
      return mpi;
    }
    const m = picked.manifest;
    entry.from = m.name;
    this.say(`restart ${this.restarts}/${cfg.checkpoint.maxRestarts}: ${what}; restoring every VM from checkpoint ${m.name} (taken ${Math.round((Date.now() - Date.parse(m.createdAt)) / 1000)} s ago)${plan.moved.length ? `: ${plan.moved.map((x) => `${x.vm} ${x.from} -> ${x.to}`).join(', ')}` : ''}`);
    const mpi = await this.phase(`restart-${this.restarts}`, () => this.restoreFrom(picked!, plan.placement));
    entry.ms = Math.round(nowMs() - t0);
    if (this.cluster?.mode === 'slurm') void this.checkAllocation();
    this.say(`restarted from ${m.name} in ${entry.ms} ms; the job goes on from there (its output since that checkpoint comes again)`);
    return mpi;
  }

  /** Slurm: the allocation as slurmctld has it now (after a restart: did more nodes leave?). */
  private async checkAllocation(): Promise<void> {
    let nodes: string[];
    try { nodes = await currentAllocationNodes(process.env); } catch { return; /* slurmctld busy: the node watcher and the heartbeat still see a loss */ }
    await this.applyAllocation(nodes);
  }

  /**
   * Slurm: the allocation's node list now (node feed: symrun watchd or the job's own `scontrol show
   * job`; SLURM_JOB_NODELIST goes stale). A node that left is lost (as if it died); a node given to
   * the job since (an expand allocation merged with `scontrol update jobid=J NumNodes=ALL`) gets a
   * host agent and becomes a spare. One at a time, idempotent.
   */
  private applyAllocation(nodes: string[]): Promise<void> {
    const run = async () => {
      const cluster = this.cluster;
      if (!cluster?.adopt || this.state === 'tearing-down' || this.state === 'done' || this.state === 'finishing') return;
      for (const h of cluster.hosts) if (!nodes.includes(h.name) && !this.lostHosts.has(h.name)) this.hostLost(h.name, 'it is no longer in the allocation (scontrol show job)');
      let added: Awaited<ReturnType<NonNullable<HostSet['adopt']>>>;
      try { added = await cluster.adopt(nodes); } catch (e) { this.say(`the allocation has new nodes (${nodes.join(',')}), but their addresses are unknown: ${(e as Error).message}`); return; }
      await Promise.all(added.map(async (h) => {
        this.say(`node ${h.name} joined the allocation: starting its host agent`);
        this.event({ ts: new Date().toISOString(), op: '-', kind: 'policy', phase: 'new', event: 'action', data: { action: 'host-added', host: h.name } } as unknown as OpEvent);
        try {
          await this.startHostAgent(cluster, h.name);
        } catch (e) {
          // lost: an agent that connects after all is not taken (addPeer), the node is no target
          this.hostLost(h.name, `${(e as Error).message}; it is not used`);
          return;
        }
        this.say(`node ${h.name} is a spare now`);
        this.policy?.hostsChanged();
      }));
    };
    const next = (this.allocCheck ?? Promise.resolve()).then(run);
    this.allocCheck = next.catch(() => undefined);
    return next;
  }

  /** Restore every VM of `ck` on `placement`, adopt the sessions it recorded; returns the wait for mpirun. */
  private async restoreFrom(ck: PickedCheckpoint, placement: Map<string, string>): Promise<{ mpi: Promise<number> }> {
    const s = ck.manifest.sessions!;
    const running = [...this.vms.values()].filter((v) => !this.lostHosts.has(v.host) && v.state !== 'booting').map((v) => ({ vm: v.name, host: v.host }));
    // sessions first: what the guests replay after their sync goes to the adopted handlers
    this.rshRelays.clear();
    for (const r of s.rsh) void this.finishRsh(r.from, r.to, r.rid, this.vms.get(r.to)!.client.adopt(r.sid, this.rshHandlers(r.from, r.rid)));
    const mpi = s.mpirun ? this.runMpi(this.vms.get(s.mpirun.vm)!, [], {}, s.mpirun.rankVm, s.mpirun.sid) : Promise.resolve(EXIT.runtime);
    await restoreVms({ access: this.access(), checkpoint: ck, placement, running, op: `r${crypto.randomBytes(3).toString('hex')}`, emit: (e) => this.event(e), journal: this.migrations.journal });
    for (const v of this.vms.values()) v.state = 'running';
    this.state = 'running';
    this.saveRecovery();
    this.policy?.evaluate();
    return { mpi };
  }

  /** No checkpoint (--restart-from-start): fresh VMs on `placement`, staged again, mpirun again. */
  private async relaunch(placement: Map<string, string>): Promise<{ mpi: Promise<number> }> {
    const l = this.launch!;
    await Promise.all([...this.vms.values()].filter((v) => !this.lostHosts.has(v.host)).map((v) => this.peers.get(v.host)?.call('vm.stop', { name: v.name }, { timeoutMs: DEFAULTS.teardown.totalMs }).catch(() => undefined)));
    this.rshRelays.clear();
    for (const v of this.vms.values()) {
      v.client.close();
      v.client = new GuestClient(v.name);
      v.client.on('rsh', (f: Extract<GuestFrame, { t: 'rsh' }>) => void this.relayRsh(v.name, f));
      v.host = placement.get(v.name)!;
      v.state = 'booting';
    }
    await Promise.all([...this.vms.keys()].map((n) => this.bootVm(n, this.accel)));
    await this.configureNetwork();
    await this.stageIn(l.stage.abs, l.stage.cwd);
    for (const v of this.vms.values()) v.state = 'running';
    this.state = 'running';
    this.saveRecovery();
    return { mpi: this.runMpi(this.vms.get(l.vm)!, l.argv, l.env, l.rankVm) };
  }

  /** What runs in the guests (recorded in every checkpoint). */
  guestSessions(): CheckpointSessions {
    return { ...(this.mpirunSession ? { mpirun: this.mpirunSession } : {}), rsh: [...this.rshRelays].map(([rid, r]) => ({ rid, ...r })) };
  }

  /** Slurm mode: follow the nodes' states (symrun watchd if configured, else polling); the policy moves VMs off nodes that go away. */
  private watchNodes(cluster: HostSet): void {
    const policy = new DrainPolicy({
      vmsOn: (h) => [...this.vms.values()].filter((v) => v.host === h).map((v) => v.name),
      isMigrating: (vm) => this.migrations.active(vm) !== undefined,
      canMigrate: () => this.state === 'running',
      migrate: (req) => {
        const h = this.vms.get(req.vm)?.host;
        if (h && this.lostHosts.has(h)) throw new SymError('ESYM_HOST_LOST', { message: `${req.vm} cannot be migrated: host ${h} is lost (the job restarts it from its last checkpoint)` });
        return this.migrations.migrate(req);
      },
      lost: (node, why) => this.hostLost(node, why),
      event: (e) => this.event(e),
      say: (m) => this.say(m),
    });
    this.policy = policy;
    let lastError = '';
    const sc = this.opts.config.slurm;
    // from the cluster's symrun watchd when one is configured and answers, else by polling slurmctld
    const feed = new NodeFeed({
      nodes: () => cluster.hosts.map((h) => h.name),
      intervalMs: sc.pollIntervalMs,
      ...(sc.watcher ? { watcher: { address: sc.watcher, keyFile: sc.watcherKey } } : {}),
      name: `symrun ${this.id}${cluster.slurmJobId ? ` (Slurm job ${cluster.slurmJobId})` : ''} pid ${process.pid}`,
      onChange: (changes) => policy.onChanges(changes),
      ...(cluster.slurmJobId ? { allocation: { job: cluster.slurmJobId, intervalMs: SLURM_DEFAULTS.allocationCheckMs, run: () => currentAllocationNodes(process.env), onChange: (nodes: string[]) => void this.applyAllocation(nodes) } } : {}),
      onError: (e) => { if (e.message !== lastError) this.say(`watching the nodes: ${e.message}`); lastError = e.message; },
      say: (m) => this.say(m),
    });
    this.nodeFeed = feed;
    feed.start();
    this.onCleanup('node watcher', () => feed.stop());
  }

  private async startHostAgents(cluster: HostSet): Promise<void> {
    this.onCleanup('host agents', () => this.stopHostAgents());
    await Promise.all(cluster.hosts.map((h) => this.startHostAgent(cluster, h.name)));
  }

  /**
   * Teardown of the host agents (run and recover alike): each stops its VMs and exits; then every
   * channel connection is closed (cut after a grace) BEFORE the hosts are removed, since a peer whose
   * namespace or node is gone never closes its end; agent processes we started (srun steps) are stopped.
   */
  private async stopHostAgents(): Promise<void> {
    const { totalMs, channelGraceMs } = DEFAULTS.teardown;
    await Promise.allSettled([...this.peers.values()].map((p) => p.call('shutdown', {}, { timeoutMs: totalMs - channelGraceMs - 1000 }).catch(() => undefined)));
    await this.closeChannel();
    const children = this.agentChildren;
    if (this.cluster?.mode === 'slurm') {
      // srun forwards SIGTERM to its step; give it a moment before SIGKILL
      for (const c of children) killGroup(c, 'SIGTERM');
      const until = Date.now() + 1500;
      while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    }
    for (const c of children) killGroup(c, 'SIGKILL');
  }

  /** Close the host agents' channel and every connection on it; says which had to be cut. */
  private closeChannel(): Promise<void> {
    this.channelClosed ??= (async () => {
      const r = await this.channel?.close({ graceMs: DEFAULTS.teardown.channelGraceMs });
      for (const p of this.peers.values()) p.close();
      if (r?.cut.length) this.err.write(`symrun: warning: cut ${r.cut.length} host agent connection${r.cut.length === 1 ? '' : 's'} that did not close: ${r.cut.join(', ')}\n`);
    })();
    return this.channelClosed;
  }

  /** Start the host agent of `host` (under Slurm: an srun step there) and wait for it to connect. */
  private startHostAgent(cluster: HostSet, host: string): Promise<RpcPeer> {
    const connectMs = cluster.mode === 'slurm' ? SLURM_DEFAULTS.agentConnectTimeoutMs : 30_000;
    const log = path.join(this.runDir, `${host}.agent.log`);
    const c = cluster.startAgent(host, { SYMRUN_COORD: `${cluster.coordinatorIp}:${this.channelPort}`, SYMRUN_JOB_SECRET: this.secret, SYMRUN_HOST: host, SYMRUN_JOB_ID: this.id }, log);
    this.agentChildren.push(c);
    return new Promise<RpcPeer>((resolve, reject) => {
      const t = setTimeout(() => {
        // given up on: stop it (srun forwards SIGTERM to its step; SIGKILL if srun lingers)
        this.peerWaiters.delete(host);
        killGroup(c, 'SIGTERM');
        setTimeout(() => killGroup(c, 'SIGKILL'), 1500).unref();
        reject(new SymError('ESYM_AGENT_START', { message: `host agent on ${host} did not connect within ${connectMs / 1000} s`, fix: `see ${log}` }));
      }, connectMs);
      c.once('exit', (code) => { clearTimeout(t); reject(new SymError('ESYM_AGENT_START', { message: `host agent on ${host} exited (${code}) before connecting: ${tail(log)}` })); });
      const have = this.peers.get(host);
      if (have) { clearTimeout(t); resolve(have); return; }
      this.peerWaiters.set(host, (p) => { clearTimeout(t); resolve(p); });
    });
  }

  private onHostEvent(p: RpcPeer, name: string, data: any): void {
    const named = data?.vm ? this.vms.get(String(data.vm)) : undefined;
    // a VM being migrated exists on two hosts: only the host it currently belongs to speaks for it
    const vm = named && named.host === p.name ? named : undefined;
    switch (name) {
      case 'mig.progress':
        if (data.progress) this.migrations.onProgress(String(data.op), data.progress);
        break;
      case 'guest.frame':
        vm?.client.receive(data.frame as GuestFrame);
        break;
      case 'guest.link':
        if (!vm) break;
        if (data.up) {
          const peer = this.peers.get(vm.host)!;
          vm.client.attach((frame) => peer.notify('guest.send', { vm: vm.name, frame }));
        } else vm.client.detach('link down');
        break;
      case 'qmp.event':
        // the guest opened the agent's port: sync now instead of at the next retry tick
        if (process.env.SYMRUN_DEBUG) this.err.write(`symrun: debug: ${vm?.name} qmp ${data.event} ${JSON.stringify(data.data)} at ${Math.round(nowMs() - this.t0)} ms\n`);
        if (vm && data.event === 'VSERPORT_CHANGE' && data.data?.open === true) vm.client.resync();
        break;
      case 'vm.exit':
        if (named && !vm && !data.expected) this.say(`QEMU of ${named.name} on ${p.name} exited (${data.code ?? data.signal}); the VM runs on ${named.host}`);
        if (vm && !data.expected && this.state !== 'tearing-down') this.say(`${vm.name} stopped unexpectedly (exit ${data.code ?? data.signal})`);
        if (vm) vm.state = 'stopped';
        break;
      default:
        break;
    }
  }

  vmSpec(vm: VmState, accel: 'kvm' | 'tcg', withNic: boolean, host = vm.host): VmSpec {
    const cfg = this.opts.config;
    // per host: source and destination of a migration may share a filesystem (local mode)
    const dir = path.join(this.runDir, host, vm.name);
    const ic = cfg.interconnect;
    const nic: string[] = [];
    if (cfg.migration.quiesce === 'failover') {
      // part of the VM on every host (migrates with it), so source and destination have it alike
      nic.push('-netdev', `tap,id=${STANDBY.netdevId},ifname=${STANDBY.tap(vm.index)},script=no,downscript=no`);
      nic.push('-device', `virtio-net-pci,netdev=${STANDBY.netdevId},id=${STANDBY.deviceId},mac=${vmMac(this.macSeed, vm.index, 'standby')},bus=${STANDBY.bus}`);
    }
    if (withNic) {
      if (ic.type === 'emulated') {
        nic.push('-netdev', `tap,id=${DEFAULTS.interconnect.netdevId},ifname=${vm.tap},script=no,downscript=no`);
        nic.push('-device', `${ic.model},netdev=${DEFAULTS.interconnect.netdevId},id=${DEFAULTS.interconnect.deviceId},mac=${vm.mac},bus=rp1`);
      } else {
        const addr = ic.addresses?.[host] ?? ic.pool?.[0];
        if (!addr) throw new SymError('ESYM_NO_DEVICE', { message: `no passthrough device configured for host ${host}`, field: 'interconnect.addresses', fix: `add ${host}: "0000:xx:yy.z" under interconnect.addresses, or an interconnect.pool` });
        nic.push('-device', `vfio-pci,host=${addr},id=${DEFAULTS.interconnect.deviceId},bus=rp1`);
      }
    }
    return {
      name: vm.name,
      runDir: dir,
      accel,
      memoryMiB: cfg.vm.memoryMiB,
      cpus: cfg.vm.cpus,
      machine: cfg.vm.machine,
      kernel: this.image!.kernel,
      initrd: this.image!.initrd,
      rootfs: this.image!.rootfs,
      append: `console=ttyS0 root=/dev/vda ro quiet panic=-1 symrun.hostname=${vm.name}`,
      agentSocket: path.join(dir, 'agent.sock'),
      agentPortName: DEFAULTS.agent.portName,
      rootPorts: DEFAULTS.interconnect.rootPorts,
      extraArgs: [...cfg.vm.extraArgs, ...nic],
    };
  }

  /** Host taps a VM needs on a host: the interconnect stand-in (emulated) and the failover standby. */
  vmTaps(vm: VmState, bridge: string, withDevice: boolean): Array<{ tap: string; bridge: string }> {
    const cfg = this.opts.config;
    const taps: Array<{ tap: string; bridge: string }> = [];
    if (withDevice && cfg.interconnect.type === 'emulated') taps.push({ tap: vm.tap, bridge });
    if (cfg.migration.quiesce === 'failover') taps.push({ tap: STANDBY.tap(vm.index), bridge });
    return taps;
  }

  private async bootVm(name: string, accel: 'kvm' | 'tcg'): Promise<void> {
    const vm = this.vms.get(name)!;
    const peer = this.peers.get(vm.host)!;
    const host = this.cluster!.hosts.find((h) => h.name === vm.host)!;
    const spec = this.vmSpec(vm, accel, true);
    fs.mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    await peer.call('vm.start', { spec, taps: this.vmTaps(vm, host.bridge, true) }, { timeoutMs: 120_000 });
    try {
      await vm.client.ready(DEFAULTS.agent.bootTimeoutMs, this.opts.signal);
    } catch (e) {
      const con = tail(path.join(spec.runDir, `${vm.name}.console.log`), 1500);
      throw new SymError('ESYM_BOOT', { message: `${vm.name} did not come up: ${(e as Error).message}`, fix: `console of ${vm.name}:\n${con}` });
    }
    vm.state = 'ready';
  }

  /** The guest's interconnect configuration (at boot, and again after every move). */
  private netConfigArgs(v: VmState): Record<string, unknown> {
    const cfg = this.opts.config;
    return {
      mac: v.mac, name: cfg.network.guestIfName, address: `${v.ip}/${this.prefixLenOverride ?? this.cluster!.prefixLen}`, announce: true, waitMs: 15_000,
      ...(cfg.migration.quiesce === 'failover' ? { standbyMac: vmMac(this.macSeed, v.index, 'standby') } : {}),
    };
  }

  private async configureNetwork(): Promise<void> {
    const entries: Array<[string, string]> = [...this.vms.values()].map((v) => [v.ip, v.name]);
    await Promise.all(
      [...this.vms.values()].map(async (v) => {
        await v.client.request('hosts', { entries });
        await v.client.request('net-config', this.netConfigArgs(v));
      }),
    );
  }

  private async stageIn(absFiles: string[], cwdFiles: string[]): Promise<void> {
    const cwd = this.opts.cwd;
    const bufs: Array<{ argv: string[]; data: Buffer }> = [];
    if (absFiles.length) bufs.push({ argv: ['tar', '-x', '-f', '-', '-C', '/'], data: await collect(tarCreate({ absolute: absFiles })) });
    if (cwdFiles.length) bufs.push({ argv: ['sh', '-c', `mkdir -p "$0" && tar -x -f - -C "$0"`, cwd], data: await collect(tarCreate({ root: cwd, paths: cwdFiles })) });
    await Promise.all(
      [...this.vms.values()].map(async (v) => {
        await v.client.run(['mkdir', '-p', cwd, '/run/symrun']);
        for (const b of bufs) {
          const r = await v.client.run(b.argv, { input: b.data, timeoutMs: 300_000 });
          if (r.status !== 0) throw new SymError('ESYM_STAGE_IN', { message: `staging files into ${v.name} failed: ${r.stderr.trim()}` });
        }
        if (absFiles.some((f) => /\.so(\.|$)/.test(f))) await v.client.run(['ldconfig']);
        // files the ranks write after this marker come back to the host
        await v.client.run(['touch', '/run/symrun/stage-marker']);
      }),
    );
  }

  private async stageOut(): Promise<void> {
    if (!this.opts.config.share.cwd) return;
    const cwd = this.opts.cwd;
    const st = fs.statSync(cwd);
    for (const v of this.vms.values()) {
      if (v.client.state !== 'ready') {
        this.say(`cannot fetch results from ${v.name} (agent not connected)`);
        continue;
      }
      // busybox tar has no file list option: xargs hands it the names (NUL-separated, any characters)
      const script = 'cd "$0" && find . -newer /run/symrun/stage-marker -type f -print0 | xargs -0 -r tar -c -f -';
      const chunks: Buffer[] = [];
      const h = await v.client.exec({ argv: ['sh', '-c', script, cwd] }, { onStdout: (d) => chunks.push(d), onStderr: (d) => this.err.write(d) });
      const r = await h.done;
      const data = Buffer.concat(chunks);
      if (r.status !== 0 || data.length === 0) continue;
      const res = await tarExtractSafe(Readable.from([data]), cwd, { maxBytes: this.opts.config.share.maxBytes, uid: st.uid, gid: st.gid });
      if (res.files.length) this.say(`${v.name}: ${res.files.length} file(s) written by the job copied back to ${cwd}`);
    }
  }

  /** mpirun in vm1 with its output streamed; `adopt`: the session id of an mpirun a previous coordinator started. */
  private async runMpi(vm1: VmState, argv: string[], env: Record<string, string>, rankVm: string[], adopt?: string): Promise<number> {
    const tag = this.opts.config.mpi.tagOutput;
    const so = new LineSplitter();
    const se = new LineSplitter();
    const first = () => { if (this.firstOutputMs === undefined) this.firstOutputMs = Math.round(nowMs() - this.t0); };
    const write = (s: NodeJS.WritableStream, split: LineSplitter) => (d: Buffer) => {
      first();
      if (!tag) { s.write(d); return; }
      for (const l of split.push(d.toString('utf8'))) s.write(retagLine(l, rankVm));
    };
    const h = adopt
      ? vm1.client.adopt(adopt, { onStdout: write(this.out, so), onStderr: write(this.err, se) })
      : await vm1.client.exec({ argv, env, cwd: this.opts.cwd, job: true }, { onStdout: write(this.out, so), onStderr: write(this.err, se) });
    this.mpirunSession = { vm: vm1.name, sid: h.sid, rankVm };
    this.saveRecovery();
    const onAbort = () => h.signal('SIGTERM');
    this.opts.signal?.addEventListener('abort', onAbort, { once: true });
    const r = await h.done;
    this.opts.signal?.removeEventListener('abort', onAbort);
    const restO = so.flush(); if (restO) this.out.write(restO);
    const restE = se.flush(); if (restE) this.err.write(restE);
    this.checkAbort();
    return r.status;
  }

  private rshHandlers(from: string, rid: string): { onStdout: (d: Buffer) => void; onStderr: (d: Buffer) => void } {
    const reply = (fr: import('../../../guest/protocol/index.js').HostFrame) => { try { this.vms.get(from)!.client.send(fr); } catch { /* source moving: rsh client sees EOF */ } };
    return {
      onStdout: (d) => reply({ t: 'rsh-out', rid, fd: 1, data: d.toString('base64') }),
      onStderr: (d) => reply({ t: 'rsh-out', rid, fd: 2, data: d.toString('base64') }),
    };
  }

  /** Wait for a relayed remote command (orted) and report its exit to the rsh client in `from`. */
  private async finishRsh(from: string, to: string, rid: string, h: { sid: string; done: Promise<{ status: number }> }): Promise<void> {
    this.rshRelays.set(rid, { from, to, sid: h.sid });
    this.saveRecovery();
    const r = await h.done;
    this.rshRelays.delete(rid);
    this.saveRecovery();
    try { this.vms.get(from)!.client.send({ t: 'rsh-exit', rid, code: Math.min(255, r.status) }); } catch { /* rsh client gone */ }
  }

  // ---------- recovery after a coordinator restart (symrun recover) ----------
  private saveRecovery(): void {
    if (!this.secret || this.cluster?.mode !== 'local' || !this.image) return;
    const st: RecoveryState = {
      v: 1, jobId: this.id, secret: this.secret, channel: { host: this.cluster.coordinatorIp, port: this.channelPort },
      accel: this.accel, image: this.image, config: this.opts.config, app: this.opts.app, cwd: this.opts.cwd,
      hosts: this.cluster.hosts, prefixLen: this.cluster.prefixLen, vmHostCount: this.vmHostCount,
      vms: [...this.vms.values()].map((v) => ({ name: v.name, index: v.index, host: v.host, mac: v.mac, ip: v.ip, tap: v.tap })),
      mpirun: this.mpirunSession, rsh: [...this.rshRelays].map(([rid, r]) => ({ rid, ...r })),
    };
    writeFileAtomic(path.join(this.runDir, 'recover.json'), JSON.stringify(st));
  }

  /** Take over a job whose coordinator died: re-attach to its host agents and VMs, finish what the journal shows in flight, stream mpirun to the end. */
  async recover(st: RecoveryState): Promise<JobResult> {
    let exitCode: number = EXIT.runtime;
    try {
      exitCode = await this.recoverInner(st);
    } finally {
      await this.phase('teardown', () => this.tearDown());
    }
    return { exitCode, jobId: this.id, phases: this.phases };
  }

  private async recoverInner(st: RecoveryState): Promise<number> {
    requireRoot('recovering a --local job needs its network namespaces');
    fs.writeFileSync(path.join(this.runDir, 'owner.json'), JSON.stringify({ pid: process.pid, pidStartTime: procStartTime(process.pid), pidns: pidNamespace(), startedAt: new Date().toISOString(), app: this.opts.app, cwd: this.opts.cwd, recovered: true }));
    const ls = readState(this.id);
    if (ls) writeState({ ...ls, ownerPid: process.pid, ownerStartTime: procStartTime(process.pid) });
    this.image = st.image;
    this.accel = st.accel;
    const ips = new Map(st.vms.map((v) => [v.index, v.ip]));
    this.cluster = {
      mode: 'local', coordinatorIp: st.channel.host, prefixLen: st.prefixLen, hosts: st.hosts,
      guestIp: (i) => ips.get(i) ?? '',
      startAgent: () => { throw new SymError('ESYM_RECOVER', { message: 'a recovered job cannot start new host agents' }); },
      destroy: async () => { await cleanupJob(this.id); },
    };
    this.vmHostCount = st.vmHostCount;
    for (const v of st.vms) {
      const client = new GuestClient(v.name);
      this.vms.set(v.name, { ...v, client, state: 'running' });
      client.on('rsh', (f: Extract<GuestFrame, { t: 'rsh' }>) => void this.relayRsh(v.name, f));
    }
    // a restart the dead coordinator had begun is begun again (protocol/restart.ts: from-start): the
    // checkpoint's sessions are adopted then, not the ones recorded before the restart
    const restart = restartsInFlight(this.migrations.journal.file).pop();
    // sessions first: the guests replay what the dead coordinator had not acknowledged right after sync
    const relays = restart ? [] : st.rsh.map((r) => this.finishRsh(r.from, r.to, r.rid, this.vms.get(r.to)!.client.adopt(r.sid, this.rshHandlers(r.from, r.rid))));
    let mpi = !restart && st.mpirun ? this.runMpi(this.vms.get(st.mpirun.vm)!, [], {}, st.mpirun.rankVm, st.mpirun.sid) : undefined;
    this.secret = st.secret;
    const server = await serveChannel({ host: st.channel.host, port: st.channel.port, secret: st.secret, onPeer: (p) => this.addPeer(p) });
    this.channelPort = server.port;
    this.channel = server;
    this.onCleanup('channel', () => this.closeChannel());
    fs.rmSync(path.join(this.runDir, 'control.sock'), { force: true }); // the dead coordinator's
    const control = await serveUnix(path.join(this.runDir, 'control.sock'), (p) => this.serveControl(p));
    this.onCleanup('control socket', () => control.close());
    await this.phase('agents', () => Promise.all(st.hosts.map((h) => new Promise<void>((resolve, reject) => {
      if (this.peers.has(h.name)) return resolve();
      const t = setTimeout(() => reject(new SymError('ESYM_RECOVER', { message: `the host agent on ${h.name} did not come back within 30 s`, fix: `host agents wait ${PROTOCOL_DEFAULTS.agentGraceMs / 1000} s for a new coordinator; see ${path.join(this.runDir, `${h.name}.agent.log`)}` })), 30_000);
      this.peerWaiters.set(h.name, () => { clearTimeout(t); resolve(); });
    }))));
    // from here on the job is ours: a failure removes it like any run (until now it stays recoverable)
    this.onCleanup('run directory', () => fs.rmSync(this.runDir, { recursive: true, force: true }));
    this.onCleanup('emulated hosts', () => this.cluster!.destroy());
    this.onCleanup('host agents', () => this.stopHostAgents());
    if (restart) {
      this.say(`recovering restart ${restart.op} (was in ${restart.phase}): restoring every VM from ${restart.checkpoint} again`);
      const ck = await pickCheckpoint(path.dirname(restart.checkpoint), { from: restart.checkpoint });
      mpi = (await this.phase('restore', () => this.restoreFrom(ck, restart.placement))).mpi;
    }
    // in-flight operations first: a VM whose transfer completed while nobody watched is paused on its
    // source and cannot answer until the rollback resumes it (the ports wait for the guests they need)
    const ops = this.migrations.recoverFromJournal();
    // a checkpoint in flight: committed again if it was committing, else rolled back (every VM `cont`, devices back, temp dir gone)
    const cks = checkpointsFor(this, this.access(), (e) => this.event(e)).recoverFromJournal();
    await this.phase('guests', () => Promise.all([...this.vms.values()].map((v) => v.client.ready(PROTOCOL_DEFAULTS.finishTimeoutMs))));
    this.state = 'running';
    this.saveRecovery();
    for (const o of ops) this.say(`recovering migration ${o.op} of ${o.vm} (was in ${o.phase})`);
    for (const c of cks) this.say(`recovering checkpoint ${c.op} (was in ${c.phase})`);
    const [results, ckResults] = await Promise.all([Promise.all(ops.map((o) => o.done)), Promise.all(cks.map((c) => c.done))]);
    for (const [i, r] of results.entries()) this.say(`migration ${ops[i]!.op} of ${ops[i]!.vm}: ${r.outcome}${r.leftovers.length ? `; left: ${r.leftovers.map((l) => l.message).join('; ')}` : ''}`);
    for (const r of ckResults) this.say(`checkpoint ${r.name}: ${r.outcome}${r.path ? ` (${r.path})` : ''}${r.leftovers.length ? `; left: ${r.leftovers.map((l) => l.message).join('; ')}` : ''}`);
    const status = mpi ? await this.phase('run', () => mpi) : EXIT.runtime;
    await Promise.allSettled(relays);
    this.state = 'finishing';
    await this.phase('stage-out', () => this.stageOut());
    return status;
  }

  /** mpirun in one VM asked (through symrun-rsh) to start a command in another VM. */
  private async relayRsh(from: string, f: Extract<GuestFrame, { t: 'rsh' }>): Promise<void> {
    const src = this.vms.get(from)!;
    if (this.rshRelays.has(f.rid)) return; // replayed by a guest restored from a checkpoint: relayed already
    const target = [...this.vms.values()].find((v) => v.name === f.host || v.ip === f.host || f.host.startsWith(`${v.name}.`));
    const reply = (fr: import('../../../guest/protocol/index.js').HostFrame) => { try { src.client.send(fr); } catch { /* source moving: rsh client sees EOF */ } };
    if (!target) {
      reply({ t: 'rsh-out', rid: f.rid, fd: 2, data: Buffer.from(`symrun-rsh: unknown host ${f.host}\n`).toString('base64') });
      reply({ t: 'rsh-exit', rid: f.rid, code: 255 });
      return;
    }
    try {
      const h = await target.client.exec(
        { argv: ['/bin/sh', '-c', f.argv.join(' ')], job: true, env: { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', HOME: '/root' } },
        this.rshHandlers(from, f.rid),
      );
      await this.finishRsh(from, target.name, f.rid, h);
    } catch (e) {
      reply({ t: 'rsh-out', rid: f.rid, fd: 2, data: Buffer.from(`symrun-rsh: ${(e as Error).message}\n`).toString('base64') });
      reply({ t: 'rsh-exit', rid: f.rid, code: 255 });
    }
  }

  // ---------- control socket (symrun status / exec) ----------
  statusReport(): Record<string, unknown> {
    return {
      jobId: this.id,
      pid: process.pid,
      state: this.state,
      app: this.opts.app,
      cwd: this.opts.cwd,
      mode: this.cluster?.mode,
      hosts: this.cluster?.hosts.map((h) => ({ name: h.name, ip: h.ip, role: this.lostHosts.has(h.name) ? 'lost' : [...this.vms.values()].some((v) => v.host === h.name) ? 'vm' : 'spare', agent: this.peers.has(h.name), ...(this.policy ? { condition: this.policy.nodes.get(h.name)?.condition ?? 'ok', usable: this.peers.has(h.name) && !this.policy.unusable(h.name) } : {}) })) ?? [],
      ...(this.policy ? { notices: this.policy.notices, nodes: this.policy.status().nodes } : {}),
      ...(this.nodeFeed ? { watch: this.nodeFeed.status() } : {}),
      vms: [...this.vms.values()].map((v) => ({ name: v.name, host: v.host, ip: v.ip, mac: v.mac, state: v.state, agent: v.client.state, migrating: this.migrations.active(v.name)?.exec.state.phase })),
      migrations: this.migrations.list(),
      restarts: { count: this.restarts, max: this.opts.config.checkpoint.maxRestarts, lostHosts: [...this.lostHosts], log: this.restartLog },
      phases: this.phases,
    };
  }

  private serveControl(p: RpcPeer): void {
    p.handle('status', () => this.statusReport());
    p.handle('events.subscribe', () => { this.eventSubscribers.add(p); return {}; });
    p.handle('migrate', async (a: MigrateRequest & { wait?: boolean }) => {
      if (this.state !== 'running') throw new SymError('ESYM_JOB_STATE', { message: `job ${this.id} is ${this.state}; VMs can be migrated while the job runs`, fix: 'wait until `symrun status` shows the job running' });
      this.eventSubscribers.add(p);
      const { op, done } = this.migrations.migrate(a);
      if (!a.wait) return { op };
      return { op, result: await done };
    });
    p.handle('cancel', (a: { vm: string }) => this.migrations.cancel(a.vm));
    p.handle('checkpoint', (a: CheckpointRequest & { wait?: boolean }) => { this.eventSubscribers.add(p); return checkpointsFor(this, this.access(), (e) => this.event(e)).request(a); });
    p.handle('exec.start', async (a: { vm: string; argv: string[]; pty?: { cols: number; rows: number }; cwd?: string }) => {
      const vm = this.vms.get(a.vm);
      if (!vm) throw new SymError('ESYM_NO_VM', { message: `no VM named ${a.vm} in job ${this.id}`, fix: `VMs: ${[...this.vms.keys()].join(', ')}` });
      // output can arrive before exec() returns the session id: hold it until then
      let sidRef = '';
      const early: Array<[1 | 2, Buffer]> = [];
      const out = (fd: 1 | 2) => (d: Buffer) => (sidRef ? p.notify('exec.out', { sid: sidRef, fd, data: d.toString('base64') }) : early.push([fd, d]));
      const h = await vm.client.exec({ argv: a.argv, pty: a.pty, cwd: a.cwd, stdin: true }, { onStdout: out(1), onStderr: out(2) });
      sidRef = h.sid;
      for (const [fd, d] of early) p.notify('exec.out', { sid: sidRef, fd, data: d.toString('base64') });
      this.controlExecs.set(h.sid, { peer: p, handle: h });
      void h.done.then((r) => { this.controlExecs.delete(h.sid); p.notify('exec.exit', { sid: h.sid, status: r.status }); });
      return { sid: h.sid };
    });
    p.on('event', (name: string, d: any) => {
      const e = this.controlExecs.get(String(d?.sid));
      if (!e || e.peer !== p) return;
      if (name === 'exec.in') {
        if (d.data) e.handle.write(Buffer.from(String(d.data), 'base64'));
        if (d.eof) e.handle.end();
      } else if (name === 'exec.resize') e.handle.resize(Number(d.cols), Number(d.rows));
      else if (name === 'exec.signal') e.handle.signal(String(d.sig));
    });
    p.on('close', () => {
      this.eventSubscribers.delete(p);
      for (const [sid, e] of this.controlExecs) if (e.peer === p) { e.handle.signal('SIGHUP'); this.controlExecs.delete(sid); }
    });
    p.start();
  }

  private async tearDown(): Promise<void> {
    this.state = 'tearing-down';
    const deadline = Date.now() + DEFAULTS.teardown.totalMs;
    for (const v of this.vms.values()) v.client.close();
    while (this.teardown.length) {
      const step = this.teardown.pop()!;
      const left = Math.max(500, deadline - Date.now());
      try {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.resolve().then(step.fn), new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out after ${left} ms`)), left); })])
          .finally(() => clearTimeout(timer)); // a pending timer would keep symrun alive after the job
      } catch (e) {
        this.err.write(`symrun: warning: teardown of ${step.what} failed: ${(e as Error).message}\n`);
      }
    }
    // last resort: anything of this job still there (e.g. a step above timed out)
    if (this.cluster?.mode !== 'slurm') await cleanupJob(this.id).catch(() => undefined);
    this.state = 'done';
  }
}

function killGroup(c: ChildProcess, sig: NodeJS.Signals): void {
  if (c.pid === undefined || c.exitCode !== null) return;
  try { process.kill(-c.pid, sig); } catch { /* gone */ }
}

function tail(file: string, n = 600): string {
  try {
    const s = fs.readFileSync(file, 'utf8');
    return s.slice(-n).trim();
  } catch {
    return '(no log)';
  }
}

function collect(t: { stream: NodeJS.ReadableStream; done: Promise<void> }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    t.stream.on('data', (d: Buffer) => chunks.push(d));
    t.stream.on('error', reject);
    t.stream.on('end', () => t.done.then(() => resolve(Buffer.concat(chunks)), reject));
  });
}

/** This process's pid namespace ("pid:[4026531836]"); run dirs of other pid namespaces are not ours to judge. */
function pidNamespace(): string | undefined {
  try { return fs.readlinkSync('/proc/self/ns/pid'); } catch { return undefined; }
}

/**
 * Every job run directory with an owner record, and whether its owner still runs (pid AND start time).
 * `foreign`: the owner runs in another pid namespace (e.g. a Slurm node of a namespace lab sharing
 * /run): its pid means nothing here, so it is neither listed nor cleaned up.
 */
function runDirs(): Array<{ id: string; dir: string; pid: number; alive: boolean; foreign: boolean }> {
  const root = runtimeRoot();
  let entries: string[] = [];
  try { entries = fs.readdirSync(root); } catch { return []; }
  const out: Array<{ id: string; dir: string; pid: number; alive: boolean; foreign: boolean }> = [];
  const myNs = pidNamespace();
  for (const id of entries) {
    const dir = path.join(root, id);
    try {
      const o = JSON.parse(fs.readFileSync(path.join(dir, 'owner.json'), 'utf8')) as { pid: number; pidStartTime?: string; pidns?: string };
      const foreign = o.pidns !== undefined && myNs !== undefined && o.pidns !== myNs;
      out.push({ id, dir, pid: o.pid, foreign, alive: foreign || ownerAlive({ ownerPid: o.pid, ownerStartTime: o.pidStartTime }) });
    } catch { /* no or unreadable owner record: not a job dir we manage */ }
  }
  return out;
}

/** Run directories whose owner process is gone (symrun was SIGKILLed). */
function cleanStaleRunDirs(keep: (id: string) => boolean = () => false): void {
  for (const r of runDirs()) if (!r.alive && !r.foreign && !keep(r.id)) fs.rmSync(r.dir, { recursive: true, force: true });
}

/** Live jobs on this machine (for `symrun status` / `exec` without --job). */
export function listJobs(): Array<{ id: string; pid: number; control: string }> {
  return runDirs()
    .filter((r) => r.alive && !r.foreign && fs.existsSync(path.join(r.dir, 'control.sock')))
    .map((r) => ({ id: r.id, pid: r.pid, control: path.join(r.dir, 'control.sock') }));
}

/**
 * The guest image a checkpoint was taken with: its own files if they are still there, else the configured
 * image if it has the same content hash. Any other image cannot run the saved guests.
 */
async function checkpointImage(ck: PickedCheckpoint, configured: string, onProgress: (s: string) => void, signal?: AbortSignal): Promise<ImageInfo> {
  const im = ck.manifest.image;
  if ([im.kernel, im.initrd, im.rootfs].every((f) => fs.existsSync(f))) {
    return { hash: im.hash, dir: path.dirname(im.rootfs), kernel: im.kernel, initrd: im.initrd, rootfs: im.rootfs, kernelVersion: '', manifestPath: path.join(path.dirname(im.rootfs), 'manifest.json'), builtNow: false };
  }
  const cur = await resolveImage(configured, { onProgress, signal });
  if (cur.hash === im.hash) return cur;
  throw new SymError('ESYM_RESTART_IMAGE', {
    message: `checkpoint ${ck.manifest.name} was taken with guest image ${im.hash.slice(0, 12)} (${im.rootfs}), which is not on this machine; the configured image is ${cur.hash.slice(0, 12)}`,
    fix: 'restart where the checkpoint\'s image is (the image cache must be shared or the same), or rebuild the same image (same symrun version and inputs)',
    exitCode: EXIT.environment,
  });
}

/** A checkpoint directory inside the job's directory is not staged into the guests (it holds their memory). */
export function checkpointExclude(cwd: string, dir: string | undefined): string[] {
  if (!dir) return [];
  const rel = path.relative(path.resolve(cwd), path.resolve(dir));
  if (!rel || rel.startsWith('..') || path.isAbsolute(rel)) return [];
  return [`/${rel.split(path.sep).join('/')}/`];
}
