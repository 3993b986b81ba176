// A validated raw configuration + defaults -> the resolved SymrunConfig (paths absolute, sizes in
// MiB/bytes, durations in ms).
import os from 'node:os';
import path from 'node:path';
import { DEFAULTS, PROTOCOL_DEFAULTS, SLURM_DEFAULTS } from '../defaults.js';
import { type SymrunConfig, type InterconnectConfig, type MigrationConfig, type MpiConfig } from './types.js';
import { CONFIG_DEFAULTS } from './schema.js';
import { isPlainObject } from './problems.js';
import { parseSize, parseSizeBytes, parseDurationMs } from './units.js';

export function expandHome(p: string, env: NodeJS.ProcessEnv): string {
  if (p === '~' || p.startsWith('~/')) return path.join(env.HOME || os.homedir(), p.slice(1));
  return p;
}

export function resolveConfig(raw: Record<string, unknown>, source: string, imageBase: string, env: NodeJS.ProcessEnv, ckptBase: string = imageBase, fileBase: string = imageBase): SymrunConfig {
  const obj = (k: string): Record<string, unknown> => (isPlainObject(raw[k]) ? (raw[k] as Record<string, unknown>) : {});
  const vm = obj('vm'), ic = obj('interconnect'), net = obj('network'), mpi = obj('mpi'), share = obj('share'), mig = obj('migration'), ckpt = obj('checkpoint');

  const imageRaw = (raw.image as string | Record<string, unknown> | undefined) ?? CONFIG_DEFAULTS.image;
  const imagePath = (p: string) => path.resolve(imageBase, expandHome(p, env));
  let imageDisk: SymrunConfig['imageDisk'];
  if (isPlainObject(imageRaw)) {
    imageDisk = { disk: imagePath(String(imageRaw.disk)) };
    if (imageRaw.kernel !== undefined) imageDisk.kernel = imagePath(String(imageRaw.kernel));
    if (imageRaw.initrd !== undefined) imageDisk.initrd = imagePath(String(imageRaw.initrd));
  }
  const image = imageDisk ? imageDisk.disk : imageRaw === 'auto' ? 'auto' : imagePath(imageRaw as string);

  let interconnect: InterconnectConfig;
  if ((ic.type ?? CONFIG_DEFAULTS.interconnectType) === 'vfio') {
    const v: InterconnectConfig & { type: 'vfio' } = { type: 'vfio' };
    if (isPlainObject(ic.addresses)) {
      v.addresses = Object.fromEntries(Object.entries(ic.addresses).map(([h, a]) => [h, String(a).toLowerCase()]));
    }
    if (Array.isArray(ic.pool)) v.pool = ic.pool.map((a) => String(a).toLowerCase());
    interconnect = v;
  } else {
    interconnect = { type: 'emulated', model: (ic.model as 'virtio-net-pci' | 'e1000e' | undefined) ?? DEFAULTS.interconnect.model };
  }
  interconnect.transport = (ic.transport as 'tcp' | 'rdma' | undefined) ?? CONFIG_DEFAULTS.transport;

  const mca = Object.fromEntries(Object.entries(isPlainObject(mpi.mca) ? mpi.mca : {}).map(([k, v]) => [k, String(v)]));

  const cfg: SymrunConfig = {
    source,
    accel: (raw.accel as SymrunConfig['accel'] | undefined) ?? DEFAULTS.accel,
    image,
    ...(imageDisk ? { imageDisk } : {}),
    vm: {
      memoryMiB: vm.memory !== undefined ? parseSize(vm.memory as string | number, 'vm.memory') : DEFAULTS.vm.memoryMiB,
      cpus: (vm.cpus as number | undefined) ?? DEFAULTS.vm.cpus,
      machine: (vm.machine as string | undefined) ?? DEFAULTS.vm.machine,
      extraArgs: [...((vm.extraArgs as string[] | undefined) ?? [])],
    },
    interconnect,
    network: {
      subnet: (net.subnet as string | undefined) ?? CONFIG_DEFAULTS.subnet,
      guestIfName: (net.guestIfName as string | undefined) ?? DEFAULTS.interconnect.guestIfName,
      ...(net.bridge !== undefined ? { bridge: net.bridge as string } : {}),
    },
    mpi: {
      implementation: (mpi.implementation as MpiConfig['implementation'] | undefined) ?? CONFIG_DEFAULTS.mpiImplementation,
      ...(mpi.np !== undefined ? { np: mpi.np as number } : {}),
      ...(mpi.slotsPerVm !== undefined ? { slotsPerVm: mpi.slotsPerVm as number } : {}),
      ...(mpi.ntasksPerNode !== undefined ? { ntasksPerNode: mpi.ntasksPerNode as number } : {}),
      ...(mpi.cpusPerTask !== undefined ? { cpusPerTask: mpi.cpusPerTask as number } : {}),
      tagOutput: (mpi.tagOutput as boolean | undefined) ?? CONFIG_DEFAULTS.tagOutput,
      mca,
      extraArgs: [...((mpi.extraArgs as string[] | undefined) ?? [])],
    },
    share: {
      cwd: (share.cwd as boolean | undefined) ?? CONFIG_DEFAULTS.shareCwd,
      maxBytes: share.maxBytes !== undefined ? parseSizeBytes(share.maxBytes as string | number, 'share.maxBytes') : DEFAULTS.share.maxBytes,
      exclude: [...((share.exclude as string[] | undefined) ?? CONFIG_DEFAULTS.shareExclude)],
    },
    migration: {
      mode: (mig.mode as MigrationConfig['mode'] | undefined) ?? PROTOCOL_DEFAULTS.mode,
      quiesce: (mig.quiesce as MigrationConfig['quiesce'] | undefined) ?? PROTOCOL_DEFAULTS.quiesce,
      maxBandwidthBytes: mig.maxBandwidth !== undefined ? parseSizeBytes(mig.maxBandwidth as string | number, 'migration.maxBandwidth') : DEFAULTS.migration.maxBandwidthBytes,
      multifdChannels: (mig.multifdChannels as number | undefined) ?? 0,
      downtimeLimitMs: (mig.downtimeLimitMs as number | undefined) ?? DEFAULTS.migration.downtimeLimitMs,
      ...(mig.deadline !== undefined ? { deadlineMs: parseDurationMs(mig.deadline as string | number) } : {}),
      deadlineActions: [...((mig.deadlineActions as MigrationConfig['deadlineActions'] | undefined) ?? PROTOCOL_DEFAULTS.deadlineActions)],
      maxConcurrent: (mig.maxConcurrent as number | undefined) ?? PROTOCOL_DEFAULTS.maxConcurrent,
      tls: (mig.tls as MigrationConfig['tls'] | undefined) ?? PROTOCOL_DEFAULTS.migrationTls,
      hooks: { ...(isPlainObject(mig.hooks) ? (mig.hooks as { quiesce?: string; resume?: string }) : {}) },
    },
    checkpoint: {
      ...(ckpt.dir !== undefined ? { dir: path.resolve(ckptBase, expandHome(ckpt.dir as string, env)) } : {}),
      ...(ckpt.interval !== undefined ? { intervalMs: parseDurationMs(ckpt.interval as string | number) } : {}),
      keep: (ckpt.keep as number | undefined) ?? CONFIG_DEFAULTS.checkpointKeep,
      maxRestarts: (ckpt.maxRestarts as number | undefined) ?? CONFIG_DEFAULTS.maxRestarts,
      restartFromStart: (ckpt.restartFromStart as boolean | undefined) ?? CONFIG_DEFAULTS.restartFromStart,
    },
    slurm: {
      pollIntervalMs: obj('slurm').pollInterval !== undefined ? parseDurationMs(obj('slurm').pollInterval as string | number) : SLURM_DEFAULTS.pollIntervalMs,
      ...(obj('slurm').watcher !== undefined ? { watcher: obj('slurm').watcher as string } : {}),
      watcherKey: obj('slurm').watcherKey !== undefined ? path.resolve(fileBase, expandHome(obj('slurm').watcherKey as string, env)) : SLURM_DEFAULTS.watchdKeyFile,
      watcherAuth: (obj('slurm').watcherAuth as 'key' | 'munge' | undefined) ?? 'key',
      watcherUser: (obj('slurm').watcherUser as string | undefined) ?? SLURM_DEFAULTS.watchdUser,
    },
    local: (raw.local as number | undefined) ?? CONFIG_DEFAULTS.local,
    ...(raw.nodes !== undefined ? { nodes: raw.nodes as number } : {}),
    spares: (raw.spares as number | undefined) ?? CONFIG_DEFAULTS.spares,
    hosts: [...((raw.hosts as string[] | undefined) ?? [])],
  };
  return cfg;
}
