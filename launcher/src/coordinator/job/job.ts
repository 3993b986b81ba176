// The coordinator of one job (`symrun run`, `symrun restart`, `symrun recover`): the flows, composed of
// the job's rooms. A run: image -> hosts -> host agents (agents.ts) -> VMs (vms.ts) -> network ->
// staging (staging.ts) -> mpirun in vm1 (mpi-session.ts) -> output -> stage-out -> teardown. Around it:
// the control socket (control.ts), migrations and checkpoints (../migrate.ts, ../checkpoint.ts), node
// and allocation changes (allocation.ts), lost hosts and reactive restarts (restarts.ts). Every
// resource is registered on the teardown stack (teardown.ts) the moment it exists, so Ctrl-C, SIGTERM
// or a failure in any phase removes all of it.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { SymrunConfig } from '../../config/types.js';
import { SymError, EXIT } from '../../errors.js';
import { DEFAULTS, PROTOCOL_DEFAULTS } from '../../defaults.js';
import { resolveImage, imageFiles, type ImageInfo } from '../../image/index.js';
import { detectQemu, probeAccel } from '../../vm/index.js';
import { cleanupJob, findStaleJobs, requireRoot } from '../../local/index.js';
import { procStartTime, readState, writeState } from '../../local/state.js';
import { resolveProgram, programClosure, snapshotDir, lddLibs } from '../../stage/index.js';
import { planMpi, checkMpiOptions, checkMpiTransport } from '../../mpi/launch.js';
import { checkTransportMca, rdmaKindOf, RXE_DEVICE } from '../../mpi/transport.js';
import { chooseMpi, detectMpi, launcherMissingError, missingLauncher, MPI_NAMES, type MpiImpl } from '../../mpi/detect.js';
import type { OpEvent } from '../../protocol/events.js';
import { createLocalHosts, createSlurmHosts, hostMode, type HostSet } from '../hosts.js';
import { planPlacement } from '../placement.js';
import { Migrations, type JobAccess } from '../migrate.js';
import { Checkpoints } from '../checkpoint.js';
import { pickCheckpoint, restartsInFlight, type PickedCheckpoint } from '../restart.js';
import type { JobContext, JobOptions, JobState, VmState } from './context.js';
import { Teardown } from './teardown.js';
import { EventSink } from './events.js';
import { HostAgents } from './agents.js';
import { Vms } from './vms.js';
import { deviceKind } from './interconnect.js';
import { MpiSession } from './mpi-session.js';
import { checkpointExclude, eventsExclude, stageIn, stageOut } from './staging.js';
import { serveControl } from './control.js';
import { Restarts } from './restarts.js';
import { Allocation } from './allocation.js';
import { cleanStaleRunDirs, newJobId, recoverable, removeRunDir, runDirFor, writeOwner, writeRecovery, type RecoveryState } from './rundir.js';
import { awaitedHosts, carryOn, checkCarried, firstTickMs, type Carried, type CarryOn } from './carry.js';
import { checkpointImage } from './image.js';
import { siteImageDirs } from '../../node/config.js';
import { opEvent } from '../../protocol/events.js';
import type { JobStatus } from '../../wire/control.js';

export interface JobResult { exitCode: number; jobId: string; phases: Record<string, number>; firstOutputMs?: number }

export class Job implements JobContext {
  readonly id: string;
  readonly runDir: string;
  readonly phases: Record<string, number> = {};
  readonly vms = new Map<string, VmState>();
  readonly lostHosts = new Set<string>();
  cluster?: HostSet;
  image?: ImageInfo;
  accel: 'kvm' | 'tcg' = 'tcg';
  state: JobState = 'starting';
  vmHostCount = 0;
  macSeed: string;
  prefixLenOverride?: number;
  readonly out: NodeJS.WritableStream;
  readonly err: NodeJS.WritableStream;
  private t0 = performance.now();
  private teardown: Teardown;
  /** the periodic checkpoint clock (recorded for a successor: carry.ts) */
  private ckptClock?: { intervalMs: number; since: string };
  readonly events: EventSink;
  readonly agents: HostAgents;
  readonly vmSet: Vms;
  readonly mpi: MpiSession;
  readonly migrations: Migrations;
  readonly checkpoints: Checkpoints;
  readonly restarts: Restarts;
  readonly allocation: Allocation;

  constructor(readonly opts: JobOptions) {
    this.id = opts.jobId ?? newJobId();
    this.macSeed = opts.restore?.manifest.jobId ?? this.id;
    this.runDir = runDirFor(opts, this.id);
    this.out = opts.stdout ?? process.stdout;
    this.err = opts.stderr ?? process.stderr;
    this.teardown = new Teardown((l) => this.err.write(`symrun: warning: ${l}\n`));
    this.events = new EventSink((m) => this.say(m));
    this.agents = new HostAgents(this, { onEvent: (p, ev) => this.vmSet.onHostEvent(p, ev), onLost: (h, why) => this.restarts.hostLost(h, why) });
    this.mpi = new MpiSession(this, this.t0);
    this.vmSet = new Vms(this, this.agents, (from, f) => void this.mpi.relay(from, f), (op, p) => this.migrations.onProgress(op, p as never));
    const access = this.access();
    this.migrations = new Migrations(access, (e) => this.event(e));
    this.checkpoints = new Checkpoints({
      access,
      config: () => this.config,
      app: () => ({ app: this.opts.app, cwd: this.opts.cwd }),
      state: () => this.state,
      gate: () => this.migrations.gate,
      migrating: () => this.migrations.list().some((o) => !o.result),
      journal: () => this.migrations.journal,
      sessions: () => this.mpi.sessions(),
      emit: (e) => this.event(e),
    });
    this.allocation = new Allocation(this, { agents: this.agents, migrations: this.migrations, hostLost: (h, why) => this.restarts.hostLost(h, why) });
    this.restarts = new Restarts(this, {
      agents: this.agents, vms: this.vmSet, mpi: this.mpi, migrations: this.migrations, checkpoints: this.checkpoints, access,
      checkAllocation: () => this.allocation.recheck(),
      evaluatePolicy: () => this.allocation.policy?.evaluate(),
    });
  }

  get config(): SymrunConfig { return this.opts.config; }

  event(e: OpEvent): void { this.events.emit(e); }

  say(msg: string): void {
    if (!this.opts.quiet) this.err.write(`symrun: ${msg}\n`);
  }

  /** One phase of the job's own life (image, hosts, boot, run, ...): timed, and an event (symrun report draws it). */
  async phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t = performance.now();
    this.event(opEvent('job', this.id, name, 'begin'));
    let failed: unknown;
    try {
      return await fn();
    } catch (e) {
      failed = e;
      throw e;
    } finally {
      const ms = Math.round(performance.now() - t);
      this.phases[name] = ms;
      this.opts.onPhase?.(name, ms);
      this.event(failed === undefined ? opEvent('job', this.id, name, 'end', undefined, ms) : opEvent('job', this.id, name, 'fail', { error: (failed as Error)?.message ?? String(failed) }, ms));
    }
  }

  onCleanup(what: string, fn: () => Promise<unknown> | unknown): void {
    this.teardown.add(what, fn);
  }

  private checkAbort(): void {
    const s = this.opts.signal;
    if (s?.aborted) throw s.reason instanceof Error ? s.reason : new SymError('ESYM_CANCELLED', { message: 'cancelled' });
  }

  /** The narrow view of this job the migration, checkpoint and restart code works through. */
  private access(): JobAccess {
    const job = this;
    return {
      id: this.id,
      runDir: this.runDir,
      get migration() { return job.config.migration; },
      device: (n, host) => this.vmSet.claim(this.vms.get(n)!, host),
      releaseDevice: (n, host) => this.vmSet.release(this.vms.get(n)!, host),
      deviceKind: () => deviceKind(this.config),
      vm: (n) => this.vms.get(n),
      vmNames: () => [...this.vms.keys()],
      hosts: () => (this.cluster?.hosts ?? []).map((h, i) => ({ name: h.name, ip: h.ip, bridge: h.bridge, spare: i >= this.vmHostCount, usable: this.agents.has(h.name) && !this.lostHosts.has(h.name) && !this.allocation.policy?.unusable(h.name) })),
      peer: (h) => this.agents.peer(h),
      spec: (n, host, withDevice) => this.vmSet.spec(this.vms.get(n)!, withDevice ? this.vmSet.device(this.vms.get(n)!, host) : undefined, host),
      taps: (n, bridge) => this.vmSet.taps(this.vms.get(n)!, bridge, false),
      failoverReady: () => this.config.migration.quiesce === 'failover',
      get transport() { return { transport: job.config.interconnect.transport ?? 'tcp', kind: rdmaKindOf(job.config.interconnect.type) }; },
      setVmHost: (n, host) => {
        const v = this.vms.get(n)!;
        v.client.detach(`moved to ${host}`);
        v.host = host;
        this.saveRecovery();
      },
      netConfigArgs: (n) => this.vmSet.netConfigArgs(this.vms.get(n)!),
    };
  }

  async run(): Promise<JobResult> {
    let exitCode: number = EXIT.runtime;
    try {
      exitCode = await this.runInner();
    } finally {
      await this.phase('teardown', () => this.tearDown());
    }
    return { exitCode, jobId: this.id, phases: this.phases, firstOutputMs: this.mpi.firstOutputMs };
  }

  private async runInner(): Promise<number> {
    const cfg = this.config;
    const mode = hostMode(cfg);
    if (mode === 'local') requireRoot('--local creates network namespaces, bridges and tap devices');
    const [prog, ...args] = this.opts.app;
    if (!prog) throw new SymError('ESYM_NO_APP', { message: 'no application given', fix: 'symrun [options] -- ./app args', exitCode: EXIT.usage });
    const restore = this.opts.restore;
    // restart: the program is in the guests' saved memory already (only its path is used, for messages)
    const program = restore ? { hostPath: prog } as ReturnType<typeof resolveProgram> : resolveProgram(prog, { cwd: this.opts.cwd, PATH: process.env.PATH });
    // which MPI launches it (docs/mpi.md): from its libraries, before anything is built or booted
    const mpiImpl: MpiImpl = restore ? 'openmpi' : chooseMpi(cfg.mpi.implementation, detectMpi(await lddLibs(program.hostPath)), program.hostPath, 'mpi.implementation (--mpi)');
    checkMpiOptions(mpiImpl, cfg.mpi.mca, program.hostPath, 'mpi.mca (--mca)');
    checkMpiTransport(mpiImpl, cfg.interconnect.transport ?? 'tcp', program.hostPath);
    if (mpiImpl === 'openmpi') checkTransportMca(cfg.interconnect.transport ?? 'tcp', cfg.mpi.mca);
    if (mpiImpl !== 'openmpi') this.say(`${program.hostPath} is an ${MPI_NAMES[mpiImpl]} program: launching it with ${MPI_NAMES[mpiImpl]}'s mpiexec.hydra`);

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
    writeOwner(this.runDir, { app: this.opts.app, cwd: this.opts.cwd });
    this.onCleanup('run directory', () => removeRunDir(this.runDir));
    this.openEventsFile();

    const [image, , accel] = await this.phase('image', () =>
      Promise.all([
        restore ? checkpointImage(restore, cfg.image, (s: string) => this.say(`image: ${s}`), this.opts.signal) : resolveImage(cfg.imageDisk ?? cfg.image, { onProgress: (s: string) => this.say(`image: ${s}`), signal: this.opts.signal, mpich: mpiImpl === 'mpich', passthrough: cfg.interconnect.type === 'vfio', siteDirs: siteImageDirs() }),
        detectQemu(),
        probeAccel(cfg.accel),
      ]),
    );
    this.image = image;
    this.accel = accel.accel;
    if (accel.notice) this.say(accel.notice);
    this.checkAbort();

    const files = await imageFiles(image);
    const lacking = restore ? [] : missingLauncher(mpiImpl, files);
    // (an image without a manifest lists no files: nothing to check)
    if (files.size && lacking.length) throw launcherMissingError(mpiImpl, lacking, cfg.image, program.hostPath);
    const [closure, snap] = await this.phase('closure', () =>
      Promise.all([
        restore ? Promise.resolve({ files: [] as string[] } as Awaited<ReturnType<typeof programClosure>>) : programClosure([program.hostPath], { imageFiles: files }),
        cfg.share.cwd && !restore ? snapshotDir(this.opts.cwd, { maxBytes: cfg.share.maxBytes, exclude: [...cfg.share.exclude, ...checkpointExclude(this.opts.cwd, cfg.checkpoint.dir), ...eventsExclude(this.opts.cwd, this.opts.eventsFile)] }) : Promise.resolve(undefined),
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

    await this.agents.listen(cluster.coordinatorIp, crypto.randomBytes(32).toString('hex'));
    this.onCleanup('channel', () => this.agents.closeChannel());
    await serveControl(this, { status: () => this.statusReport(), migrations: this.migrations, checkpoints: this.checkpoints, events: this.events });

    await this.phase('agents', () => this.agents.startAll(cluster));
    this.checkAbort();
    if (mode === 'slurm') this.allocation.watch(cluster);
    this.agents.startHeartbeat();
    if (restore) return this.runRestored(cluster, restore);

    // VMs on the first hosts; the rest (--spares) are spares
    const names: string[] = [];
    for (let i = 1; i <= this.vmHostCount; i++) names.push(this.vmSet.add(`vm${i}`, i, cluster.hosts[i - 1]!.name).name);
    this.say(`job ${this.id}: booting ${names.length} VMs (${accel.accel}, ${cfg.vm.memoryMiB} MiB, ${cfg.vm.cpus} vCPU) on ${names.length} hosts${cfg.spares ? ` + ${cfg.spares} spare` : ''}`);
    this.event(opEvent('job', this.id, 'boot', 'action', { action: 'placed', vms: Object.fromEntries(names.map((n) => [n, this.vms.get(n)!.host])), spares: cluster.hosts.slice(names.length).map((h) => h.name) }));
    await this.phase('boot', () => Promise.all(names.map((n) => this.vmSet.boot(n))));
    this.checkAbort();

    await this.phase('network', () => this.vmSet.configureNetwork());
    await this.phase('stage', () => stageIn(this, closure.files, snap?.files ?? []));
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
      implementation: mpiImpl,
      mcaOrigin: 'mpi.mca (--mca)',
      transport: cfg.interconnect.transport ?? 'tcp',
      ...(cfg.interconnect.transport === 'rdma' && cfg.interconnect.type === 'emulated' ? { ucxDevice: `${RXE_DEVICE}:1` } : {}),
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
    this.allocation.policy?.evaluate(); // nodes that went bad while the VMs booted
    this.restarts.launch = { vm: vm1.name, argv: plan.argv, env: plan.env, rankVm: plan.rankVm, stage: { abs: closure.files, cwd: snap?.files ?? [] } };
    const carry = this.carryFrom(undefined);
    return this.runToEnd(this.mpi.run(vm1, plan.argv, plan.env, plan.rankVm), carry);
  }

  /** --events FILE: every event appended from now on (a run, and a recovered job: the same file). */
  private openEventsFile(): void {
    if (this.opts.eventsFile) this.onCleanup('events file', this.events.toFile(this.opts.eventsFile));
  }

  /**
   * Run, restart and recover alike: what the job goes on with (carry.ts), set up by this one function.
   * `carried` undefined: a fresh start (no restart used, the checkpoint clock starts now); else what a
   * dead coordinator recorded (restarts used and their budget, its checkpoint clock, how mpirun was
   * launched, the MAC seed, the guests' prefix length).
   */
  carryFrom(carried: Carried | undefined): CarryOn {
    const plan = carryOn(this.config.checkpoint, carried, Date.now());
    this.restarts.resume(plan.restarts);
    this.ckptClock = plan.timer ? { ...plan.timer } : undefined;
    if (carried) {
      this.macSeed = carried.macSeed;
      this.prefixLenOverride = carried.prefixLenOverride;
      this.restarts.launch = carried.launch;
    }
    return plan;
  }

  /**
   * The job runs (periodic checkpoints, restarts after losses) until mpirun ends; then its files come
   * back. A run, a restart and a recovered job all end here, with what carryFrom set up: the periodic
   * checkpoints go on with the job's clock (the first one when the interval since the last is over).
   * `relays`: adopted orted relays (recover), waited for before stage-out.
   */
  private async runToEnd(mpi: Promise<number>, carry: CarryOn, relays: Array<Promise<void>> = []): Promise<number> {
    const ckptTimer = this.checkpoints.startTimer(carry.timer?.intervalMs ?? 0, {
      firstMs: carry.timer ? firstTickMs(carry.timer.intervalMs, this.ckptClock?.since, Date.now()) : undefined,
      onTaken: (at) => { if (this.ckptClock) { this.ckptClock.since = at.toISOString(); this.saveRecovery(); } },
    });
    this.onCleanup('checkpoint timer', () => ckptTimer.stop());
    this.saveRecovery();
    let status: number;
    try {
      status = await this.phase('run', () => this.restarts.supervise(mpi));
      await Promise.allSettled(relays);
    } catch (e) {
      // interrupted (scancel, a time limit, Ctrl-C): the ranks were stopped, but what they wrote is in
      // the guests' memory: copy it back before the VMs go (bounded: Slurm SIGKILLs after KillWait)
      if (this.opts.signal?.aborted) await this.salvage(ckptTimer);
      throw e;
    }
    await ckptTimer.stop(); // a checkpoint in flight completes (or rolls back) before the VMs go
    this.state = 'finishing';
    await this.phase('stage-out', () => stageOut(this));
    return status;
  }

  /** Stage-out of an interrupted job within PROTOCOL_DEFAULTS.abortStageOutMs; says exactly what was not copied. */
  private async salvage(ckptTimer: { stop(): Promise<void> }): Promise<void> {
    this.state = 'finishing';
    void ckptTimer.stop();
    const ms = PROTOCOL_DEFAULTS.abortStageOutMs;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      this.phase('stage-out', () => stageOut(this)).then(() => true, (e: Error) => { this.say(`copying the job's files back failed: ${e.message}`); return false; }),
      new Promise<boolean>((r) => { timer = setTimeout(() => r(false), ms); }),
    ]).finally(() => clearTimeout(timer));
    if (!done) {
      const vms = [...this.vms.values()].map((v) => v.name).join(', ');
      this.say(`NOT copied back: files the ranks wrote in ${this.opts.cwd} since the job started, in ${vms} (in the guests' memory, gone with the VMs) — stage-out did not finish within ${ms / 1000} s; for long stage-outs submit with \`sbatch --signal=B:TERM@120\` so symrun gets its signal 120 s before the time limit`);
    }
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
      this.vmSet.add(v.name, v.index!, host, { mac: v.device.mac, ip: v.ip!, tap: 'tap' in v.device ? v.device.tap : `symtap${v.index}` });
      placement.set(v.name, host);
    }
    const len = Number(/\/(\d+)$/.exec(String(m.vms[0]!.network.address ?? ''))?.[1]);
    if (len) this.prefixLenOverride = len;
    this.say(`job ${this.id}: restarting job ${m.jobId} from checkpoint ${m.name} (${m.createdAt}): ${m.vms.length} VMs on ${[...placement.values()].join(', ')}${cluster.hosts.length > m.vms.length ? ` + ${cluster.hosts.length - m.vms.length} spare` : ''}`);
    this.event(opEvent('job', this.id, 'restore', 'action', { action: 'placed', vms: Object.fromEntries(placement), spares: cluster.hosts.slice(m.vms.length).map((h) => h.name) }));
    const { mpi } = await this.phase('restore', () => this.restarts.restoreFrom(ck, placement));
    this.checkAbort();
    return this.runToEnd(mpi, this.carryFrom(undefined));
  }

  // ---------- recovery after a coordinator restart (symrun recover) ----------
  saveRecovery(): void {
    const c = this.cluster;
    if (!this.agents.secret || c?.mode !== 'local' || !this.image) return;
    const s = this.mpi.sessions();
    writeRecovery(this.runDir, {
      v: 1, jobId: this.id, secret: this.agents.secret, channel: { host: c.coordinatorIp, port: this.agents.port },
      accel: this.accel, image: this.image, config: this.config, app: this.opts.app, cwd: this.opts.cwd,
      hosts: c.hosts, prefixLen: c.prefixLen, vmHostCount: this.vmHostCount,
      vms: [...this.vms.values()].map((v) => ({ name: v.name, index: v.index, host: v.host, mac: v.mac, ip: v.ip, tap: v.tap })),
      mpirun: s.mpirun, rsh: s.rsh, lostHosts: [...this.lostHosts], carry: this.carried(),
    });
  }

  /** What a successor must go on with (carry.ts); recover() hands it back to runToEnd and the rooms. */
  carried(): Carried {
    const launch = this.config.checkpoint.restartFromStart ? this.restarts.launch : undefined; // only a restart from the beginning uses it
    return {
      restarts: { used: this.restarts.count, max: this.restarts.max, log: this.restarts.log },
      ...(this.ckptClock ? { checkpointTimer: { ...this.ckptClock } } : {}),
      ...(launch ? { launch } : {}),
      macSeed: this.macSeed,
      ...(this.prefixLenOverride !== undefined ? { prefixLenOverride: this.prefixLenOverride } : {}),
      ...(this.opts.eventsFile ? { eventsFile: this.opts.eventsFile } : {}),
    };
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
    writeOwner(this.runDir, { app: this.opts.app, cwd: this.opts.cwd, recovered: true });
    const ls = readState(this.id);
    if (ls) writeState({ ...ls, ownerPid: process.pid, ownerStartTime: procStartTime(process.pid) });
    this.openEventsFile();
    this.image = st.image;
    this.accel = st.accel;
    // before anything records the job again (saveRecovery): what the dead coordinator had
    const checked = checkCarried(st.carry);
    for (const d of checked.dropped) this.say(`warning: recover.json: ${d} is damaged; the job goes on with that part started afresh`);
    const carry = this.carryFrom(checked.carried);
    const ips = new Map(st.vms.map((v) => [v.index, v.ip]));
    this.cluster = {
      mode: 'local', coordinatorIp: st.channel.host, prefixLen: st.prefixLen, hosts: st.hosts,
      guestIp: (i) => ips.get(i) ?? '',
      startAgent: () => { throw new SymError('ESYM_RECOVER', { message: 'a recovered job cannot start new host agents' }); },
      destroy: async () => { await cleanupJob(this.id); },
    };
    this.vmHostCount = st.vmHostCount;
    for (const v of st.vms) this.vmSet.add(v.name, v.index, v.host, { mac: v.mac, ip: v.ip, tap: v.tap, state: 'running' });
    // a restart the dead coordinator had begun is begun again (protocol/restart.ts: from-start): the
    // checkpoint's sessions are adopted then, not the ones recorded before the restart
    const restart = restartsInFlight(this.migrations.journal.file).pop();
    // sessions first: the guests replay what the dead coordinator had not acknowledged right after sync
    const adopted = restart ? { relays: [] as Array<Promise<void>>, mpi: undefined } : this.mpi.adopt({ mpirun: st.mpirun, rsh: st.rsh });
    let mpi = adopted.mpi;
    await this.agents.listen(st.channel.host, st.secret, st.channel.port);
    this.onCleanup('channel', () => this.agents.closeChannel());
    await serveControl(this, { status: () => this.statusReport(), migrations: this.migrations, checkpoints: this.checkpoints, events: this.events });
    // a host lost before the coordinator died stays lost: its agent is gone with it (its VMs run on spares)
    for (const h of st.lostHosts ?? []) this.lostHosts.add(h);
    await this.phase('agents', () => this.agents.awaitReconnect(awaitedHosts(st.hosts, this.lostHosts), 30_000));
    // from here on the job is ours: a failure removes it like any run (until now it stays recoverable)
    this.onCleanup('run directory', () => removeRunDir(this.runDir));
    this.onCleanup('emulated hosts', () => this.cluster!.destroy());
    this.onCleanup('host agents', () => this.agents.stopAll());
    // as in a run: an agent silent for agentLostMs is lost (not only one whose connection closes)
    this.agents.startHeartbeat();
    if (restart) {
      this.say(`recovering restart ${restart.op} (was in ${restart.phase}): restoring every VM from ${restart.checkpoint} again`);
      const ck = await pickCheckpoint(path.dirname(restart.checkpoint), { from: restart.checkpoint });
      mpi = (await this.phase('restore', () => this.restarts.restoreFrom(ck, restart.placement))).mpi;
    }
    // in-flight operations first: a VM whose transfer completed while nobody watched is paused on its
    // source and cannot answer until the rollback resumes it (the ports wait for the guests they need)
    const ops = this.migrations.recoverFromJournal();
    // a checkpoint in flight: committed again if it was committing, else rolled back (every VM `cont`, devices back, temp dir gone)
    const cks = this.checkpoints.recoverFromJournal();
    await this.phase('guests', () => this.vmSet.allReady());
    this.state = 'running';
    this.saveRecovery();
    for (const o of ops) this.say(`recovering migration ${o.op} of ${o.vm} (was in ${o.phase})`);
    for (const c of cks) this.say(`recovering checkpoint ${c.op} (was in ${c.phase})`);
    const [results, ckResults] = await Promise.all([Promise.all(ops.map((o) => o.done)), Promise.all(cks.map((c) => c.done))]);
    for (const [i, r] of results.entries()) this.say(`migration ${ops[i]!.op} of ${ops[i]!.vm}: ${r.outcome}${r.leftovers.length ? `; left: ${r.leftovers.map((l) => l.message).join('; ')}` : ''}`);
    for (const r of ckResults) this.say(`checkpoint ${r.name}: ${r.outcome}${r.path ? ` (${r.path})` : ''}${r.leftovers.length ? `; left: ${r.leftovers.map((l) => l.message).join('; ')}` : ''}`);
    // as in a run (the same code): mpirun supervised (a host lost from here on restarts the job from its
    // last checkpoint, with the restarts the dead coordinator left), periodic checkpoints on its clock
    return this.runToEnd(mpi ?? Promise.resolve(EXIT.runtime), carry, adopted.relays);
  }

  // ---------- control socket (symrun status) ----------
  statusReport(): JobStatus {
    const policy = this.allocation.policy;
    return {
      jobId: this.id,
      pid: process.pid,
      state: this.state,
      app: this.opts.app,
      cwd: this.opts.cwd,
      mode: this.cluster?.mode,
      hosts: this.cluster?.hosts.map((h) => ({ name: h.name, ip: h.ip, role: this.lostHosts.has(h.name) ? 'lost' : [...this.vms.values()].some((v) => v.host === h.name) ? 'vm' : 'spare', agent: this.agents.has(h.name), ...(policy ? { condition: policy.nodes.get(h.name)?.condition ?? 'ok', usable: this.agents.has(h.name) && !policy.unusable(h.name) } : {}) })) ?? [],
      ...(policy ? { notices: policy.notices, nodes: policy.status().nodes } : {}),
      ...(this.allocation.feed ? { watch: this.allocation.feed.status() } : {}),
      vms: [...this.vms.values()].map((v) => ({ name: v.name, host: v.host, ip: v.ip, mac: v.mac, state: v.state, agent: v.client.state, migrating: this.migrations.active(v.name)?.exec.state.phase })),
      migrations: this.migrations.list(),
      restarts: { count: this.restarts.count, max: this.restarts.max, lostHosts: [...this.lostHosts], log: this.restarts.log },
      phases: this.phases,
    };
  }

  private async tearDown(): Promise<void> {
    this.state = 'tearing-down';
    for (const v of this.vms.values()) v.client.close();
    await this.teardown.run(DEFAULTS.teardown.totalMs);
    // last resort: anything of this job still there (e.g. a step above timed out)
    if (this.cluster?.mode !== 'slurm') await cleanupJob(this.id).catch(() => undefined);
    this.state = 'done';
  }
}

/**
 * Remove the run directory, or (one the root node layer made: its parent is root's and the epilog
 * removes the directory itself) everything in it.
 */
