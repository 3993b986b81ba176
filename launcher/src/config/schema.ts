// The JSON schema of symrun.yaml. It is the single description of every key: load.ts validates
// with it (ajv), docs.ts renders docs/config.md from its descriptions, and editors can use it
// (yaml-language-server) if it is written out as JSON.
// Over 500 lines on purpose: one table of every key, read top to bottom like docs/config.md; split by
// section it would scatter the single description the three readers share.
//
// Annotations beyond standard JSON schema (registered with ajv as no-op keywords):
//   x-expect   the expected form in a few words; used in error fixes ("a size like 512M")
//   x-type     a short type name for the docs ("PCI address")
//   x-default  the default as users should read it in the docs, when `default` alone is not clear
import { DEFAULTS, PROTOCOL_DEFAULTS, SLURM_DEFAULTS } from '../defaults.js';

/** Defaults that have no entry in DEFAULTS (defaults.ts) because only the config layer uses them. */
export const CONFIG_DEFAULTS = {
  image: 'auto',
  interconnectType: 'emulated' as 'emulated' | 'vfio',
  transport: 'tcp' as 'tcp' | 'rdma',
  subnet: 'auto',
  shareCwd: true,
  shareExclude: [] as string[],
  tagOutput: false,
  mpiImplementation: 'auto' as 'auto' | 'openmpi' | 'mpich',
  local: 0,
  spares: 0,
  checkpointKeep: 2,
  maxRestarts: 3,
  restartFromStart: false,
} as const;

/** Smallest VM memory symrun accepts (the guest image does not boot in less). */
export const MIN_MEMORY_MIB = 64;
export const MAX_CPUS = 256;
export const MAX_LOCAL = 64;

export const PCI_ADDRESS_RE = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i;

const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
/** 'auto', or an IPv4 CIDR whose prefix is /16 to /28 */
export const SUBNET_PATTERN = `^(?:auto|${OCTET}(?:\\.${OCTET}){3}/(?:1[6-9]|2[0-8]))$`;
/** Linux interface name: 1-15 characters, no '/', ':', whitespace; not '.' or '..' */
export const IFNAME_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$';
export const HOSTNAME_PATTERN =
  '^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$';
/** a size: an integer (unit given by the key) or a number with a binary suffix: 512M, 2G, 1.5GiB, 524288K */
export const SIZE_PATTERN = '^\\s*[0-9]+(?:\\.[0-9]+)?\\s*(?:[KMGT](?:i?B)?|B)?\\s*$';
/** a duration: 30s, 2m, 1500ms, 1h; a bare integer is seconds */
export const DURATION_PATTERN = '^\\s*[0-9]+(?:\\.[0-9]+)?\\s*(?:ms|s|m|h)?\\s*$';
export const MCA_NAME_PATTERN = '^[A-Za-z0-9_]+$';
/** symrun watchd address: a host name or IPv4 address, optionally :PORT (1-65535) */
export const WATCHER_PATTERN =
  '^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?$';

const sizeOf = (what: string, bareUnit: string, min?: string) => ({
  type: ['string', 'integer'],
  pattern: SIZE_PATTERN,
  minimum: 0,
  'x-expect': `a size like 512M, 2G or 524288K, or a bare integer in ${bareUnit}${min ? ` (at least ${min})` : ''}`,
  description: what,
});

const pciAddress = {
  type: 'string',
  'x-type': 'PCI address',
  pattern: '^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]$',
  'x-expect': 'a PCI address domain:bus:device.function like 0000:3b:00.1 (see lspci -D)',
};

export const CONFIG_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'symrun.yaml',
  description:
    'Configuration of a symrun job. Every key is optional; command-line options override the file. ' +
    'Keys are camelCase; unknown keys are rejected.',
  type: 'object',
  additionalProperties: false,
  properties: {
    accel: {
      type: 'string',
      enum: ['auto', 'kvm', 'tcg'],
      default: DEFAULTS.accel,
      description:
        'QEMU accelerator. `auto` uses KVM when /dev/kvm is usable and falls back to TCG (software ' +
        'emulation, slow but works everywhere); `kvm` fails if KVM is not usable; `tcg` never uses KVM.',
    },
    image: {
      type: ['string', 'object'],
      minLength: 1,
      default: CONFIG_DEFAULTS.image,
      'x-type': 'string or mapping',
      'x-expect': "'auto', a directory holding vmlinuz, initrd.img and root.ext4, a disk image file, or { disk: FILE }",
      description:
        'Guest image. `auto` builds (once) or reuses the content-addressed image in the cache (the site\'s ' +
        'read-only cache first: docs/site-install.md); a directory holding `vmlinuz`, `initrd.img` and ' +
        '`root.ext4`; or a disk image a user brings (raw or qcow2 holding an ext4 root with symrun\'s guest ' +
        'agent: docs/images.md), as a file name or as `{ disk: FILE, kernel: FILE, initrd: FILE }` (kernel ' +
        'and initrd default to the host\'s kernel and symrun\'s initrd). A relative path is relative to the ' +
        'directory of the config file (or to the current directory when given with --image); `~/` is expanded.',
      required: ['disk'],
      additionalProperties: false,
      properties: {
        disk: { type: 'string', minLength: 1, description: 'The root disk image (raw or qcow2, an ext4 filesystem without a partition table).' },
        kernel: { type: 'string', minLength: 1, description: 'Kernel to boot (default: the host\'s, from the default image).' },
        initrd: { type: 'string', minLength: 1, description: 'Initrd to boot; it must mount root=/dev/vda read-only (default: symrun\'s).' },
      },
    },
    vm: {
      type: 'object',
      additionalProperties: false,
      description: 'Shape of every VM.',
      properties: {
        memory: {
          ...sizeOf('Guest RAM of each VM. Suffixes are binary (M = MiB, G = GiB); a bare integer is MiB. Must be a whole number of MiB, at least 64M.', 'MiB', '64M'),
          default: `${DEFAULTS.vm.memoryMiB}M`,
        },
        cpus: {
          type: 'integer',
          minimum: 1,
          maximum: MAX_CPUS,
          default: DEFAULTS.vm.cpus,
          'x-default': `${DEFAULTS.vm.cpus}, or ranks per VM × mpi.cpusPerTask`,
          'x-expect': `a whole number from 1 to ${MAX_CPUS}`,
          description:
            'Virtual CPUs of each VM. When not given and mpi.cpusPerTask is, each VM gets ranks per VM × cpusPerTask; ' +
            'when given with cpusPerTask it must be at least that. Without np, slotsPerVm and ntasksPerNode it also ' +
            'sets the MPI slots per VM (cpus ÷ cpusPerTask). See docs/placement.md.',
        },
        machine: {
          type: 'string',
          pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
          'x-type': 'machine type',
          default: DEFAULTS.vm.machine,
          'x-expect': 'a QEMU machine type like q35 or pc-q35-8.2 (see qemu-system-x86_64 -machine help)',
          description:
            'QEMU machine type. Must support PCIe hotplug (q35 does); it must be the same on every host for migration.',
        },
        extraArgs: {
          type: 'array',
          items: { type: 'string', 'x-expect': 'a QEMU argument as a string' },
          default: [],
          'x-expect': 'a list of strings, e.g. ["-cpu", "host"]',
          description:
            'Extra QEMU arguments appended to every VM\'s command line, one list item per argument (no shell splitting). ' +
            'Arguments that change the guest hardware must be the same on every host or migration fails.',
        },
      },
    },
    interconnect: {
      type: 'object',
      additionalProperties: false,
      description:
        'The passthrough interconnect device of every VM: the device symrun unplugs before and replugs after each migration.',
      properties: {
        type: {
          type: 'string',
          enum: ['emulated', 'vfio'],
          default: CONFIG_DEFAULTS.interconnectType,
          description:
            '`emulated`: an emulated NIC stands in for the passthrough device (laptops, CI, local mode); it is ' +
            'hot-unplugged and replugged exactly like a real one. `vfio`: a real PCI device (a NIC or an SR-IOV VF) ' +
            'bound to vfio-pci on every host, chosen by `addresses` or `pool`.',
        },
        model: {
          type: 'string',
          enum: ['virtio-net-pci', 'e1000e'],
          default: DEFAULTS.interconnect.model,
          description: 'Only with `type: emulated`: the QEMU NIC model of the stand-in device.',
        },
        addresses: {
          type: 'object',
          propertyNames: { pattern: HOSTNAME_PATTERN, 'x-expect': 'a host name like node01' },
          additionalProperties: pciAddress,
          'x-expect': 'a map of host name to PCI address, e.g. { node01: "0000:3b:00.1" }',
          'x-type': 'map of host name → PCI address',
          'x-default': 'none',
          description:
            'Only with `type: vfio`: the PCI address of the device to pass through, per host (host name as ' +
            'Slurm or `hosts` names it). Quote addresses in YAML: `"0000:3b:00.1"`.',
        },
        pool: {
          type: 'array',
          items: pciAddress,
          minItems: 1,
          uniqueItems: true,
          'x-expect': 'a list of PCI addresses, e.g. ["0000:3b:02.0", "0000:3b:02.1"]',
          'x-default': 'none',
          description:
            'Only with `type: vfio`: SR-IOV virtual functions (PCI addresses, the same on every host) from which ' +
            'each VM claims a free one. Used for hosts that have no entry in `addresses`.',
        },
        transport: {
          type: 'string',
          enum: ['tcp', 'rdma'],
          default: CONFIG_DEFAULTS.transport,
          'x-expect': 'tcp or rdma',
          description:
            'The MPI transport over the interconnect (--transport). `tcp`: Open MPI is pinned to TCP on the interconnect ' +
            'interface (pml ob1, btl tcp; UCX is never loaded). `rdma`: Open MPI\'s pml ucx over verbs; with `type: emulated` ' +
            'the verbs device is Soft-RoCE (rxe0, created in every guest on the interconnect interface). Migrations and ' +
            'checkpoints whose quiesce adapter cannot keep RDMA connections alive are refused (freeze; failover with a real HCA). ' +
            'Open MPI programs only. See docs/passthrough.md.',
        },
      },
    },
    network: {
      type: 'object',
      additionalProperties: false,
      description: 'Addressing of the interconnect inside the guests.',
      properties: {
        subnet: {
          type: 'string',
          pattern: SUBNET_PATTERN,
          'x-type': '`auto` or IPv4 CIDR',
          default: CONFIG_DEFAULTS.subnet,
          'x-expect': "'auto' or an IPv4 network in CIDR form with a prefix from /16 to /28, like 198.18.7.0/24",
          description:
            `IPv4 subnet of the interconnect. \`auto\` picks a free /24 inside ${DEFAULTS.network.range} for the job; ` +
            'otherwise a network address in CIDR form (host bits zero), prefix /16 to /28.',
        },
        guestIfName: {
          type: 'string',
          pattern: IFNAME_PATTERN,
          'x-type': 'interface name',
          default: DEFAULTS.interconnect.guestIfName,
          'x-expect': "a Linux interface name: 1 to 15 letters, digits, '_', '-' or '.', not starting with '.' or '-'",
          description: 'Name the interconnect interface gets inside every guest (it is renamed by MAC address).',
        },
        bridge: {
          type: 'string',
          pattern: IFNAME_PATTERN,
          'x-type': 'interface name',
          'x-expect': "an existing host bridge name (1 to 15 characters), like br-fabric",
          'x-default': 'none (local mode creates its own)',
          description:
            'Production: an existing host bridge the VMs\' tap devices are attached to. ' +
            'Local mode creates its own bridge and ignores this.',
        },
      },
    },
    mpi: {
      type: 'object',
      additionalProperties: false,
      description: 'How mpirun is started inside the VMs.',
      properties: {
        implementation: {
          type: 'string',
          enum: ['auto', 'openmpi', 'mpich'],
          default: CONFIG_DEFAULTS.mpiImplementation,
          'x-expect': 'auto, openmpi or mpich',
          description:
            'The MPI the program is launched with (--mpi). `auto`: the one its shared libraries name (libmpi.so.40: ' +
            'Open MPI\'s mpirun; libmpich.so.12: MPICH\'s mpiexec.hydra); `openmpi` or `mpich` must match the program. ' +
            'See docs/mpi.md.',
        },
        np: {
          type: 'integer',
          minimum: 1,
          'x-expect': 'a whole number, at least 1',
          'x-default': 'VMs × ntasksPerNode, else every slot',
          description:
            'Total number of MPI ranks (-n, -np, --ntasks). Without slotsPerVm or ntasksPerNode each VM gets ' +
            'ceil(np ÷ VMs) slots and mpirun fills vm1 first; with one of them np may not exceed slots × VMs.',
        },
        slotsPerVm: {
          type: 'integer',
          minimum: 1,
          maximum: 4096,
          'x-expect': 'a whole number, at least 1',
          'x-default': 'ntasksPerNode, else ceil(np ÷ VMs), else vm.cpus ÷ cpusPerTask',
          description: 'MPI slots (ranks) per VM. The same as ntasksPerNode; give one of the two.',
        },
        ntasksPerNode: {
          type: 'integer',
          minimum: 1,
          maximum: 4096,
          'x-expect': 'a whole number, at least 1',
          'x-default': 'none (slotsPerVm)',
          description:
            'Ranks per VM (--ntasks-per-node, as srun spells it; mpirun --npernode). Without np, np = VMs × this.',
        },
        cpusPerTask: {
          type: 'integer',
          minimum: 1,
          maximum: MAX_CPUS,
          'x-expect': `a whole number from 1 to ${MAX_CPUS}`,
          'x-default': 'none',
          description:
            'vCPUs per rank (-c / --cpus-per-task, as in srun). Each VM gets ranks per VM × this vCPUs unless vm.cpus ' +
            'is given, and mpirun binds each rank to this many vCPUs (--map-by slot:PE=N).',
        },
        tagOutput: {
          type: 'boolean',
          default: CONFIG_DEFAULTS.tagOutput,
          description: 'Prefix every output line with the rank that wrote it (mpirun --tag-output).',
        },
        mca: {
          type: 'object',
          propertyNames: { pattern: MCA_NAME_PATTERN, 'x-expect': 'an MCA parameter name like btl_tcp_eager_limit' },
          additionalProperties: {
            type: ['string', 'number', 'boolean'],
            'x-expect': 'a string or number value',
          },
          default: {},
          'x-expect': 'a map of MCA parameter name to value, e.g. { btl_tcp_eager_limit: "65536" }',
          'x-type': 'map of name → value',
          description:
            'Extra Open MPI MCA parameters, passed to mpirun as `--mca name value` (numbers and booleans ' +
            'are passed as written). Command-line `--mca name value` pairs override entries here.',
        },
        extraArgs: {
          type: 'array',
          items: { type: 'string' },
          default: [],
          'x-expect': 'a list of strings, e.g. ["--bind-to", "none"]',
          description: 'Extra mpirun arguments, one list item per argument, placed before the program.',
        },
      },
    },
    share: {
      type: 'object',
      additionalProperties: false,
      description: 'Staging of the current directory into the guests.',
      properties: {
        cwd: {
          type: 'boolean',
          default: CONFIG_DEFAULTS.shareCwd,
          description:
            'Copy the current directory into every guest before the run (the program runs there) and copy ' +
            'files the job wrote back afterwards.',
        },
        maxBytes: {
          ...sizeOf(
            'Largest total size of the current directory staged into the guests. Suffixes are binary; a bare integer is bytes.',
            'bytes',
          ),
          default: `${DEFAULTS.share.maxBytes / (1024 * 1024)}M`,
        },
        exclude: {
          type: 'array',
          items: { type: 'string', minLength: 1 },
          default: CONFIG_DEFAULTS.shareExclude,
          'x-expect': 'a list of patterns, e.g. [".git", "*.o"]',
          description:
            'Glob-like patterns (relative to the current directory) of files and directories not staged. ' +
            'Directories tagged with a CACHEDIR.TAG (bford.info/cachedir; symrun tags every checkpoint directory) are never staged.',
        },
      },
    },
    migration: {
      type: 'object',
      additionalProperties: false,
      description: 'Live migration (symrun migrate, drains): how VMs move and how the MPI traffic is quiesced.',
      properties: {
        mode: {
          enum: ['live', 'postcopy', 'stop-copy'],
          default: PROTOCOL_DEFAULTS.mode,
          'x-expect': 'live, postcopy or stop-copy',
          description: 'live = precopy while the guest runs; postcopy = one precopy pass, then the VM runs on the destination and pulls the rest; stop-copy = pause, then transfer.',
        },
        quiesce: {
          enum: ['freeze', 'failover', 'hooks'],
          default: PROTOCOL_DEFAULTS.quiesce,
          'x-expect': 'freeze, failover or hooks',
          description: 'How MPI traffic over the passthrough device stops: freeze every rank in every VM; failover to a virtio standby NIC (ranks keep running); hooks = site commands (migration.hooks).',
        },
        maxBandwidth: {
          ...sizeOf('Bandwidth cap of one migration stream per second (QEMU max-bandwidth; its 128M default is far below real links). A bare integer is bytes per second.', 'bytes per second'),
          default: `${DEFAULTS.migration.maxBandwidthBytes / (1024 * 1024 * 1024)}G`,
        },
        multifdChannels: {
          type: 'integer', minimum: 0, maximum: 64, default: 0,
          'x-expect': 'a whole number from 0 (off) to 64',
          description: 'Parallel migration streams (QEMU multifd); 0 = one stream.',
        },
        downtimeLimitMs: {
          type: 'integer', minimum: 1, maximum: 600000, default: DEFAULTS.migration.downtimeLimitMs,
          'x-expect': 'milliseconds, e.g. 300',
          description: 'Longest pause QEMU aims for when it stops the guest for the last pass (downtime-limit).',
        },
        deadline: {
          type: ['string', 'integer'], pattern: DURATION_PATTERN, minimum: 1,
          'x-expect': 'a duration like 30s, 2m or 1500ms (a bare integer is seconds)',
          description: 'Time-bounded migration: when the projected finish misses this, act (migration.deadlineActions). Unset = no deadline.',
        },
        deadlineActions: {
          type: 'array', items: { enum: ['postcopy', 'throttle', 'stop-copy'] }, uniqueItems: true, minItems: 1,
          default: [...PROTOCOL_DEFAULTS.deadlineActions],
          'x-expect': 'a list of postcopy, throttle, stop-copy',
          description: 'What the deadline policy may do, in order of preference.',
        },
        maxConcurrent: {
          type: 'integer', minimum: 1, maximum: 64, default: PROTOCOL_DEFAULTS.maxConcurrent,
          'x-expect': 'a whole number, 1 or more',
          description: 'Migrations in flight at once (e.g. two drained hosts); more wait their turn.',
        },
        tls: {
          enum: ['on', 'off'],
          default: PROTOCOL_DEFAULTS.migrationTls,
          'x-expect': 'on or off (quoted in YAML 1.1 tools: "off")',
          description: 'Encrypt and authenticate the QEMU migration stream (TLS with a pre-shared key derived per migration from the job secret, never used twice): nobody on the network can read guest memory or inject VM state. off = plain TCP (trusted network only). Checkpoint files are not affected.',
        },
        hooks: {
          type: 'object', additionalProperties: false,
          description: 'Commands run inside every guest by the `hooks` quiesce adapter.',
          properties: {
            quiesce: { type: 'string', minLength: 1, description: 'Shell command run in each guest before the device is unplugged.' },
            resume: { type: 'string', minLength: 1, description: 'Shell command run in each guest after the device is back.' },
          },
        },
      },
    },
    checkpoint: {
      type: 'object',
      additionalProperties: false,
      description: 'Coordinated checkpoints (symrun checkpoint, or every checkpoint.interval): every guest quiesced, every device unplugged, every VM saved in parallel, then all resumed.',
      properties: {
        dir: {
          type: 'string', minLength: 1,
          'x-type': 'path',
          'x-expect': 'a directory, e.g. /shared/ckpt',
          description: 'Directory the checkpoints are written to (one subdirectory per checkpoint). In Slurm mode a path every node of the allocation shares: each host writes its VM\'s state there directly. Relative paths are relative to this file (to the current directory for --checkpoint-dir).',
        },
        interval: {
          type: ['string', 'integer'], pattern: DURATION_PATTERN, minimum: 1,
          'x-expect': 'a duration like 10m, 1h or 90s (a bare integer is seconds)',
          description: 'Take a checkpoint this often while the job runs (the first one interval after the start). Unset = only on request (`symrun checkpoint`). Needs checkpoint.dir.',
        },
        keep: {
          type: 'integer', minimum: 0, maximum: 10000, default: CONFIG_DEFAULTS.checkpointKeep,
          'x-expect': 'a whole number, 0 (keep all) or more',
          description: 'Complete checkpoints of the job kept in checkpoint.dir; older ones are removed only after a new one is complete. 0 = keep all.',
        },
        maxRestarts: {
          type: 'integer', minimum: 0, maximum: 1000, default: CONFIG_DEFAULTS.maxRestarts,
          'x-expect': 'a whole number, 0 (never restart) or more',
          description: 'Reactive restarts of the job after a node died (from the last complete checkpoint, the dead node\'s VM on a spare). When they are used up the job stops with the path of the checkpoint to restart from in a new allocation (symrun restart).',
        },
        restartFromStart: {
          type: 'boolean', default: CONFIG_DEFAULTS.restartFromStart,
          description: 'When a node dies before the first checkpoint is complete, run the job again from the beginning (fresh VMs, the dead node replaced by a spare). Off: the job fails with a message saying so.',
        },
      },
    },
    slurm: {
      type: 'object',
      additionalProperties: false,
      description: 'Slurm mode (inside an sbatch/salloc allocation): how the job watches its nodes.',
      properties: {
        pollInterval: {
          type: ['string', 'integer'], pattern: DURATION_PATTERN, minimum: 1,
          'x-default': `${SLURM_DEFAULTS.pollIntervalMs}ms`,
          'x-expect': 'a duration like 500ms, 1s or 5s (a bare integer is seconds)',
          description:
            'How often the job asks Slurm for the state of all its nodes (one `scontrol show node` call). ' +
            'A node that is drained, set to reboot, failing or not responding has its VM migrated to a spare; ' +
            'this interval bounds how late that starts. With `slurm.watcher` set it is the interval of the job\'s own ' +
            'polling when the watcher cannot be reached.',
        },
        watcher: {
          type: 'string', pattern: WATCHER_PATTERN,
          'x-type': 'HOST:PORT',
          'x-default': 'unset (the job polls Slurm itself)',
          'x-expect': `HOST:PORT of a running \`symrun watchd\`, e.g. "slurmctl01:${SLURM_DEFAULTS.watchdPort}" (the port may be left out: ${SLURM_DEFAULTS.watchdPort})`,
          description:
            'A cluster-wide node watcher (`symrun watchd`, slurm-plugins/watchd/README.md) to subscribe to instead of ' +
            'polling slurmctld from every job: it polls all nodes once per interval and sends each job the changes of its nodes. ' +
            'When it cannot be reached (at start, or later) the job polls Slurm itself every `slurm.pollInterval` and ' +
            'tries the watcher again every 30 s; `symrun status --json` shows which source is in use (`watch.source`). ' +
            'Sites with more than ~100 concurrent symrun jobs should run one.',
        },
        watcherKey: {
          type: 'string', minLength: 1,
          'x-type': 'path',
          default: SLURM_DEFAULTS.watchdKeyFile,
          'x-expect': 'the path of the key file `symrun watchd --init-key` wrote',
          description:
            'The shared secret `slurm.watcher` authenticates with (the watchd\'s --key file; it must be readable by the user ' +
            'the job runs as). Unreadable: the job says so and polls Slurm itself. Relative paths are relative to this file. ' +
            'Used with `slurm.watcherAuth: key` only.',
        },
        watcherAuth: {
          type: 'string', enum: ['key', 'munge'],
          default: 'key',
          'x-expect': 'key or munge (the --auth of the watchd)',
          description:
            'How the job authenticates to `slurm.watcher`: `key`, the shared key file (`slurm.watcherKey`: any holder may subscribe ' +
            'to any job); `munge`, a MUNGE credential of the job\'s user that only `slurm.watcherUser` can decode, carrying this ' +
            'connection\'s secret: watchd learns the user from MUNGE and serves it only its own jobs, and proves itself by completing ' +
            'the handshake with that secret (docs/channels.md). Must match watchd\'s `--auth`.',
        },
        watcherUser: {
          type: 'string', minLength: 1, pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$',
          default: SLURM_DEFAULTS.watchdUser,
          'x-expect': 'the user name (or uid) symrun watchd runs as',
          description:
            'With `slurm.watcherAuth: munge`: the user watchd runs as (its systemd unit\'s `User=`). Only that user can decode the ' +
            'job\'s credential, so only a watchd running as it can answer the handshake.',
        },
      },
    },
    local: {
      type: 'integer',
      minimum: 0,
      maximum: MAX_LOCAL,
      default: CONFIG_DEFAULTS.local,
      'x-expect': `a whole number from 0 to ${MAX_LOCAL}`,
      description:
        'Local mode: emulate this many hosts on this machine, each running one VM (0 = not local: use Slurm or `hosts`).',
    },
    nodes: {
      type: 'integer',
      minimum: 1,
      maximum: 4096,
      'x-expect': 'a whole number, at least 1',
      'x-default': 'Slurm: the allocation minus spares; local: local',
      description:
        'Hosts that run VMs, one VM each (-N, --nodes, as in srun). Slurm: at most the allocation\'s nodes minus ' +
        '`spares`; nodes beyond it become spares too. Local mode: the same as `local` (outside Slurm, -N N alone ' +
        'means local: N). See docs/placement.md.',
    },
    spares: {
      type: 'integer',
      minimum: 0,
      maximum: 1024,
      default: CONFIG_DEFAULTS.spares,
      'x-expect': 'a whole number, 0 or more',
      description: 'Hosts held back (running no ranks) as migration and restart targets.',
    },
    hosts: {
      type: 'array',
      items: { type: 'string', pattern: HOSTNAME_PATTERN, 'x-type': 'host name', 'x-expect': 'a host name like node01' },
      uniqueItems: true,
      default: [],
      'x-expect': 'a list of host names, e.g. [node01, node02]',
      description:
        'Explicit host list for production runs without Slurm (spares included). Empty = use the Slurm allocation, or local mode.',
    },
  },
} as const;

/** Keywords of CONFIG_SCHEMA that are annotations only (ajv must know them in strict mode). */
export const ANNOTATION_KEYWORDS = ['x-expect', 'x-default', 'x-type'] as const;
