// The resolved configuration every other module consumes. Produced by config/load.ts from
// symrun.yaml + CLI overrides + DEFAULTS; validated with a JSON schema (config/schema.ts).

export type Accel = 'auto' | 'kvm' | 'tcg';

export interface VmConfig {
  memoryMiB: number;
  cpus: number;
  machine: string;
  /** extra QEMU arguments appended to every VM's command line */
  extraArgs: string[];
}

export type InterconnectConfig = (
  | { type: 'emulated'; model: 'virtio-net-pci' | 'e1000e' }
  /** vfio passthrough: one PCI address per host (map host -> address), or a pool of VFs shared by all hosts */
  | { type: 'vfio'; addresses?: Record<string, string>; pool?: string[] }
) & {
  /** the MPI transport (--transport; mpi/transport.ts): tcp over the interconnect, or rdma (UCX over verbs; Soft-RoCE when emulated); unset = tcp */
  transport?: 'tcp' | 'rdma';
};

export interface NetworkConfig {
  /** "auto" = one free /24 in 198.18.0.0/15, or an explicit CIDR like 198.18.7.0/24 */
  subnet: string;
  /** interface name inside the guest */
  guestIfName: string;
  /** production: an existing host bridge to attach VM taps to; local mode creates its own */
  bridge?: string;
}

export interface MpiConfig {
  /** --mpi: the MPI the program is launched with; auto = detected from its libraries (docs/mpi.md) */
  implementation: 'auto' | 'openmpi' | 'mpich';
  /** total ranks (-n); default = VMs x ntasksPerNode, else every slot (coordinator/placement.ts) */
  np?: number;
  /** ranks per VM (mpirun slots); default = ntasksPerNode, else ceil(np / VMs), else vm.cpus / cpusPerTask */
  slotsPerVm?: number;
  /** --ntasks-per-node: ranks per VM, as srun and sbatch spell it (the same as slotsPerVm) */
  ntasksPerNode?: number;
  /** -c / --cpus-per-task: vCPUs per rank; VMs get slots x this (unless vm.cpus is given), mpirun --map-by slot:PE=N */
  cpusPerTask?: number;
  tagOutput: boolean;
  /** extra MCA parameters (name -> value), passed as --mca name value */
  mca: Record<string, string>;
  /** extra mpirun arguments */
  extraArgs: string[];
}

export interface ShareConfig {
  /** stage the current directory into the guests and bring written files back */
  cwd: boolean;
  maxBytes: number;
  /** glob-like patterns (relative to cwd) not staged */
  exclude: string[];
}

export interface MigrationConfig {
  mode: 'live' | 'postcopy' | 'stop-copy';
  quiesce: 'freeze' | 'failover' | 'hooks';
  maxBandwidthBytes: number;
  multifdChannels: number;
  downtimeLimitMs: number;
  /** time-bounded migration (ms); undefined = none */
  deadlineMs?: number;
  deadlineActions: Array<'postcopy' | 'throttle' | 'stop-copy'>;
  maxConcurrent: number;
  /** migration streams TLS-encrypted and authenticated with a per-migration PSK */
  tls: 'on' | 'off';
  hooks: { quiesce?: string; resume?: string };
}

export interface CheckpointConfig {
  /** where checkpoints are written (absolute; in Slurm mode a path every node shares); unset = none configured */
  dir?: string;
  /** take a checkpoint every intervalMs while the job runs (ms); unset = only on request (symrun checkpoint) */
  intervalMs?: number;
  /** complete checkpoints of this job kept in dir (older ones removed once a new one is complete); 0 = all */
  keep: number;
  /** reactive restarts after a node died (0 = never) */
  maxRestarts: number;
  /** no checkpoint yet when a node dies: run the job again from the beginning */
  restartFromStart: boolean;
}

export interface SlurmConfig {
  /** interval of the node watcher's `scontrol show node` poll (ms) */
  pollIntervalMs: number;
  /** "HOST:PORT" (or "HOST") of a cluster-wide `symrun watchd` to subscribe to; unset = poll Slurm directly */
  watcher?: string;
  /** key file of that watchd (the shared secret; absolute) */
  watcherKey: string;
  /** how to authenticate to it: the key file, or a MUNGE credential (per user) */
  watcherAuth: 'key' | 'munge';
  /** with munge: the user watchd runs as (only it can decode the credential) */
  watcherUser: string;
}

export interface SymrunConfig {
  /** where this config came from (file path or "defaults") */
  source: string;
  accel: Accel;
  /** "auto" = build or reuse the content-addressed image; otherwise a directory holding vmlinuz, initrd.img, root.ext4, or a disk image file */
  image: string;
  /** `image: { disk, kernel, initrd }` (paths absolute); `image` is then the disk's path (docs/images.md) */
  imageDisk?: { disk: string; kernel?: string; initrd?: string };
  vm: VmConfig;
  interconnect: InterconnectConfig;
  network: NetworkConfig;
  mpi: MpiConfig;
  share: ShareConfig;
  migration: MigrationConfig;
  checkpoint: CheckpointConfig;
  slurm: SlurmConfig;
  /** --local N: number of emulated hosts running VMs (0 = not local) */
  local: number;
  /** -N: hosts that run VMs (Slurm: at most the allocation minus spares; the rest become spares; local: = local) */
  nodes?: number;
  /** hosts held back as migration / restart targets */
  spares: number;
  /** explicit host list (production without Slurm); empty = local or Slurm */
  hosts: string[];
}
