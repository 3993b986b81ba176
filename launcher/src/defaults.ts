// Every default symrun uses lives here (docs/architecture.md, Conventions: "defaults in one place").
import os from 'node:os';
import path from 'node:path';

export const DEFAULTS = {
  accel: 'auto' as 'auto' | 'kvm' | 'tcg',
  vm: {
    memoryMiB: 512,
    cpus: 1,
    machine: 'q35',
  },
  interconnect: {
    /** stand-in for the passthrough NIC when no vfio device is configured */
    model: 'virtio-net-pci' as 'virtio-net-pci' | 'e1000e',
    /** interface name inside the guest (renamed by MAC) */
    guestIfName: 'symfab0',
    /** QEMU device id of the interconnect device; the same id is used on every host */
    deviceId: 'symfab0',
    netdevId: 'symfab0nd',
    /** number of pcie-root-ports for hot-pluggable devices */
    rootPorts: 4,
  },
  network: {
    /** private benchmark range; each job gets one /24 inside it */
    range: '198.18.0.0/15',
  },
  agent: {
    /** virtio-serial port name of the guest agent */
    portName: 'org.symrun.agent.0',
    /** guest agent must answer the sync handshake within this after boot */
    bootTimeoutMs: 180_000,
    heartbeatMs: 2_000,
    /** a guest that misses this many heartbeats is considered unresponsive */
    heartbeatMisses: 5,
    /** largest single frame a host accepts from a guest (untrusted input) */
    maxFrameBytes: 4 * 1024 * 1024,
    /** output kept per exec session while the host is disconnected (migration) */
    maxBufferedOutputBytes: 16 * 1024 * 1024,
  },
  share: {
    /** largest total size of the current directory staged into the guests */
    maxBytes: 256 * 1024 * 1024,
  },
  qmp: {
    connectTimeoutMs: 30_000,
    commandTimeoutMs: 30_000,
  },
  hotplug: {
    unplugTimeoutMs: 15_000,
    plugTimeoutMs: 15_000,
  },
  teardown: {
    /** polite stop (QMP quit / SIGTERM), then SIGKILL after this */
    stopGraceMs: 3_000,
    /** whole teardown must be done within this (issue: < 10 s) */
    totalMs: 8_000,
    /** host agent connections still open this long after the agents were told to stop are cut */
    channelGraceMs: 1_000,
    /** after its work is done, symrun exits within this even if a handle (socket, child) is left: it
     * names what it cut instead of hanging (a peer whose namespace vanished never closes its socket) */
    exitGraceMs: 3_000,
  },
  mpi: {
    btl: 'self,vader,tcp',
  },
  /** QEMU migration (launcher/src/migration/qemu.ts) */
  migration: {
    /** migrate max-bandwidth in bytes/s; QEMU's default (128 MiB/s) makes a 512 MiB guest take 4 s+ */
    maxBandwidthBytes: 10 * 1024 * 1024 * 1024,
    /** downtime-limit in ms (QEMU's own default is 300) */
    downtimeLimitMs: 300,
    /** query-migrate poll interval of waitMigration (MIGRATION events also wake it up) */
    pollIntervalMs: 200,
    /** waitMigration gives up (ESYM_MIGRATION_TIMEOUT) after this unless the caller passes its own */
    timeoutMs: 600_000,
    /** migrate_cancel must reach cancelled/failed/completed within this */
    cancelTimeoutMs: 30_000,
    /** throttleGuest: step QEMU adds per auto-converge trigger once throttling is active */
    throttleIncrementPercent: 10,
    /** throttleGuest: throttle-trigger-threshold while symrun drives the throttle (1 = trigger at the next dirty syncs) */
    throttleTriggerThreshold: 1,
    /** saveStateToFile: max-bandwidth while writing a state file (the guest is stopped: no reason to limit) */
    saveMaxBandwidthBytes: 10 * 1024 * 1024 * 1024,
    /** deadlineDecision: throughput is measured over samples from the last this many ms */
    deadlineWindowMs: 3_000,
    /** deadlineDecision: no action on less precopy history than this, unless the deadline has passed */
    deadlineMinEvidenceMs: 1_000,
  },
} as const;

export function cacheDir(): string {
  return process.env.SYMRUN_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'symrun');
}

/** Root of per-job runtime state (sockets, journals, console logs). Readable only by the job's user. */
export function runtimeRoot(): string {
  if (process.env.SYMRUN_RUNTIME_DIR) return process.env.SYMRUN_RUNTIME_DIR;
  if (process.getuid?.() === 0) return '/run/symrun';
  return path.join(process.env.XDG_RUNTIME_DIR || os.tmpdir(), `symrun-${process.getuid?.() ?? 'u'}`);
}

/** Repository root (dist/launcher/src/defaults.js -> ../../..). */
export function repoRoot(): string {
  const here = path.dirname(new URL(import.meta.url).pathname);
  return path.resolve(here, '..', '..', '..');
}

/** `symrun --local N`: emulated hosts as network namespaces (launcher/src/local/). */
export const LOCAL_DEFAULTS = {
  /** per-job state files, global on purpose: namespaces are machine-wide, so is stale-job detection */
  stateDir: '/run/symrun/local',
  /** last-octet layout inside the job's subnet: .1 coordinator, .11.. hosts, .101.. guests */
  coordinatorHostPart: 1,
  firstHostPart: 11,
  firstGuestPart: 101,
  maxHosts: 89,
  maxGuests: 154,
  /** explicit network.subnet prefix lengths accepted in local mode */
  minPrefixLen: 16,
  maxPrefixLen: 24,
  /** cleanup: SIGTERM to processes left in a job's namespaces, SIGKILL after this */
  killGraceMs: 1_000,
} as const;

/** Guest image builder (launcher/src/image). */
export const IMAGE_DEFAULTS = {
  /** images kept in `${cacheDir()}/images` (most recently used first; the one in use is never removed) */
  keep: 3,
  /** filesystem label of root.ext4 */
  rootLabel: 'symroot',
  /** modules the initrd loads, in this order after their dependencies (lab-measured) */
  initrdModules: ['crc32c_generic', 'virtio_pci', 'virtio_blk', 'virtio_net', 'virtio_console', 'e1000e', 'ext4', 'overlay'],
  /** extra modules shipped in the root for later features (modprobe-able, not loaded by default) */
  rootModules: ['virtio_net', 'e1000e', 'bonding', 'failover', 'net_failover', 'rdma_rxe',
    // rdma_rxe asks the crypto API for "crc32" (its ICRC) when a device is added, a soft dependency
    // modules.dep does not list: without it `rdma link add` fails with ENOENT (guest/src/rxe.ts)
    'crc32_generic',
    // with the failover bond rxe sits on an ipvlan over the bond, whose GIDs a bond failover leaves alone
    'ipvlan'],
  /**
   * drivers of passed-through VFs (only in images for interconnect.type vfio; ~7.6 MB with their
   * dependencies on Debian 6.1): Intel VFs (iavf: X710/E810, igbvf: 82576/QEMU igb, ixgbevf: 82599),
   * Mellanox ConnectX (mlx5_core; mlx5_ib for verbs; ib_ipoib for IP over an InfiniBand VF)
   */
  passthroughModules: ['iavf', 'igbvf', 'ixgbevf', 'mlx5_core', 'mlx5_ib', 'ib_ipoib'],
  /** Debian packages whose files (and the ldd closure of their ELFs) go into the root */
  mpiPackages: ['openmpi-bin', 'openmpi-common', 'libopenmpi3', 'libpmix2',
    // interconnect.transport: rdma: UCX with its transport modules (libuct_ib), the verbs providers (rxe)
    'libucx0', 'ibverbs-providers'],
  /** the same for MPICH (Hydra, libmpich, UCX with its transport modules): only in images for MPICH programs */
  mpichPackages: ['mpich', 'libmpich12', 'libucx0'],
  /** root.ext4 size = content * growth + slackMiB */
  rootGrowth: 1.25,
  rootSlackMiB: 64,
  /** temp build dirs of dead builders older than this are removed */
  staleTmpMs: 6 * 3600_000,
  /** kernel command line a VM should use with this image (append symrun.hostname=NAME) */
  kernelCmdline: 'console=ttyS0 root=/dev/vda ro panic=-1',
} as const;

/** Staging of programs and the current directory (launcher/src/stage). */
export const STAGE_DEFAULTS = {
  /** most entries accepted from one stage-out archive (a guest could otherwise exhaust host inodes) */
  maxStageOutEntries: 200_000,
  /** longest entry name accepted from a guest archive */
  maxNameBytes: 4096,
  /** largest pax extended header / GNU long-name record accepted from a guest archive */
  maxMetaBytes: 1024 * 1024,
} as const;

/** QEMU / accelerator defaults (vm/ module). */
export const VM_DEFAULTS = {
  /** deadline of each KVM probe guest (boot sector and kernel run in parallel) */
  accelProbeTimeoutMs: 5_000,
  /** file under runtimeRoot() caching the KVM probe per host boot */
  accelProbeCacheFile: 'accel-probe.json',
} as const;

/** The SymVirt protocol (migration/ and coordinator/): migration, checkpoint, rollback.
 *  QEMU-level migration settings (bandwidth, downtime, polling, transfer timeout) are DEFAULTS.migration. */
export const PROTOCOL_DEFAULTS = {
  /** Prepare: destination QEMU started and listening */
  prepareTimeoutMs: 60_000,
  /** Quiesce / Resume: every guest agent must answer within this */
  quiesceTimeoutMs: 15_000,
  /** Finish: the destination runs and its guest agent answers */
  finishTimeoutMs: 90_000,
  /** Reconfigure: the interconnect interface is up with its address in the guest */
  reconfigureTimeoutMs: 30_000,
  /** migrations in flight at once (e.g. two drained hosts) */
  maxConcurrent: 2,
  /** deadline policy: after an action, wait this long for QEMU to show its effect before acting again */
  deadlineSettleMs: 2_000,
  /** the coordinator asks every host agent this often whether it is alive (host.info) */
  agentHeartbeatMs: 1_000,
  /** a host agent silent this long is lost: its node died (reactive restart from the last checkpoint) */
  agentLostMs: Number(process.env.SYMRUN_AGENT_LOST_MS ?? 6_000),
  /** host agents wait this long for a restarted coordinator (`symrun recover`) before stopping their VMs */
  agentGraceMs: 60_000,
  /** a host agent signalled by Slurm (scancel, time limit) keeps its VMs this long for the stage-out
   * (Slurm's KillWait, 30 s by default, is the hard limit: keep this below it) */
  agentTermGraceMs: 20_000,
  /** an interrupted job (SIGTERM/SIGINT) still copies the files its ranks wrote back, within this */
  abortStageOutMs: 15_000,
  /** migration streams are TLS-encrypted with a per-migration PSK (migration.tls) */
  migrationTls: 'on' as 'on' | 'off',
  /** default migration mode and quiesce adapter */
  mode: 'live' as 'live' | 'postcopy' | 'stop-copy',
  quiesce: 'freeze' as 'freeze' | 'failover' | 'hooks',
  /** deadline policy: actions it may take, in order of preference */
  deadlineActions: ['postcopy', 'throttle', 'stop-copy'] as Array<'postcopy' | 'throttle' | 'stop-copy'>,
} as const;

/** Slurm mode (launcher/src/coordinator/hosts.ts, launcher/src/slurm/watch.ts). */
export const SLURM_DEFAULTS = {
  /** bridge on every node that carries the node's address; VM taps attach to it (network.bridge) */
  bridge: 'symbr0',
  /** guests' /24 for network.subnet "auto": picked from the Slurm job id inside this range */
  guestRange: '198.18.0.0/15',
  /** node watcher: one batched `scontrol show node -o A,B,...` per interval (slurm.pollInterval) */
  pollIntervalMs: 1_000,
  /** a single scontrol call that takes longer than this is abandoned (the next poll tries again) */
  scontrolTimeoutMs: 10_000,
  /** the coordinator re-reads its allocation (scontrol show job) this often: nodes lost or given to the job */
  allocationCheckMs: 5_000,
  /** a host agent started through srun must connect within this */
  agentConnectTimeoutMs: 60_000,
  /** symrun watchd (launcher/src/slurm/watchd.ts): TCP port it listens on (--listen; slurm.watcher) */
  watchdPort: 6825,
  /** the shared secret of watchd and its subscribers (watchd --key; slurm.watcherKey) */
  watchdKeyFile: '/etc/symrun/watchd.key',
  /** the user symrun watchd runs as (slurm-plugins/watchd/symrun-watchd.service): with auth munge, only it may decode a subscriber's credential (slurm.watcherUser) */
  watchdUser: 'symrun',
  /** a subscriber that has this much unsent data queued (it does not read) is dropped */
  watchdMaxBufferedBytes: 1024 * 1024,
  /** a connection that has not subscribed within this is closed */
  watchdSubscribeTimeoutMs: 30_000,
  /** a subscribe is answered after watchd's first poll; it waits at most this long for it */
  watchdFirstPollTimeoutMs: 15_000,
  /** coordinator: connect + authenticate + subscribe must succeed within this, else it polls itself */
  watcherConnectTimeoutMs: 3_000,
  /** coordinator: asks watchd for watch.stats this often (liveness; a call unanswered for as long = lost) */
  watcherCheckMs: 5_000,
  /** coordinator: watchd whose last good poll is older than max(this, 5 intervals) is treated as lost */
  watcherStaleMs: 10_000,
  /** coordinator, polling itself after losing watchd: tries watchd again this often */
  watcherRetryMs: 30_000,
} as const;

/** Coordinated checkpoints (launcher/src/checkpoint/, launcher/src/coordinator/checkpoint.ts). */
export const CHECKPOINT_DEFAULTS = {
  /** one VM's save (stop + migrate exec:cat > file, written and fsync'ed) */
  saveTimeoutMs: 600_000,
  /** every VM `cont` again after the save (or in the rollback) */
  contTimeoutMs: 30_000,
  /** at the job's end, an in-flight checkpoint is waited for this long before teardown */
  drainTimeoutMs: 120_000,
} as const;
