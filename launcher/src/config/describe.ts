// The short human summary of a resolved configuration (`symrun config`).
import { type SymrunConfig } from './types.js';
import { MIB } from './units.js';

export function size(mib: number): string {
  return mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

/** A short human summary, for `symrun config show`. */
export function describeConfig(cfg: SymrunConfig): string {
  const ic = cfg.interconnect;
  const icText =
    ic.type === 'emulated'
      ? `emulated ${ic.model} (stand-in for a passthrough NIC)`
      : [
          'vfio passthrough',
          ic.addresses && Object.keys(ic.addresses).length
            ? `by host: ${Object.entries(ic.addresses).map(([h, a]) => `${h}=${a}`).join(', ')}`
            : undefined,
          ic.pool?.length ? `VF pool: ${ic.pool.join(', ')}` : undefined,
        ]
          .filter(Boolean)
          .join('; ');
  const hostsText =
    cfg.local > 0
      ? `local: ${cfg.local} emulated host${cfg.local === 1 ? '' : 's'}`
      : cfg.hosts.length
        ? `hosts: ${cfg.hosts.join(', ')}`
        : cfg.nodes !== undefined
          ? `${cfg.nodes} node${cfg.nodes === 1 ? '' : 's'} of the Slurm allocation`
          : 'from the Slurm allocation';
  const mca = Object.entries(cfg.mpi.mca);
  const slots = cfg.mpi.slotsPerVm ?? cfg.mpi.ntasksPerNode ?? cfg.vm.cpus;
  const lines: Array<[string, string]> = [
    ['config', cfg.source],
    ['accel', cfg.accel === 'auto' ? 'auto (KVM if usable, else TCG)' : cfg.accel],
    ['image', cfg.image === 'auto' ? 'auto (built or reused from the cache)' : cfg.image],
    ['hosts', `${hostsText}; ${cfg.spares} spare${cfg.spares === 1 ? '' : 's'}`],
    [
      'vm',
      `${cfg.vm.cpus} cpu${cfg.vm.cpus === 1 ? '' : 's'}, ${size(cfg.vm.memoryMiB)}, machine ${cfg.vm.machine}` +
        (cfg.vm.extraArgs.length ? `, extra: ${cfg.vm.extraArgs.join(' ')}` : ''),
    ],
    ['interconnect', icText],
    [
      'network',
      `subnet ${cfg.network.subnet}, guest interface ${cfg.network.guestIfName}` +
        (cfg.network.bridge ? `, bridge ${cfg.network.bridge}` : ''),
    ],
    [
      'mpi',
      `np ${cfg.mpi.np ?? 'auto (slots per VM x VMs)'}, ` +
        `${slots} slot${slots === 1 ? '' : 's'} per VM${cfg.mpi.slotsPerVm === undefined && cfg.mpi.ntasksPerNode === undefined ? ' (= vm.cpus)' : ''}` +
        (cfg.mpi.ntasksPerNode !== undefined ? `, ${cfg.mpi.ntasksPerNode} per node (--ntasks-per-node)` : '') +
        (cfg.mpi.cpusPerTask !== undefined ? `, ${cfg.mpi.cpusPerTask} cpu${cfg.mpi.cpusPerTask === 1 ? '' : 's'} per rank` : '') +
        (cfg.mpi.tagOutput ? ', tagged output' : '') +
        (mca.length ? `, mca ${mca.map(([k, v]) => `${k}=${v}`).join(' ')}` : '') +
        (cfg.mpi.extraArgs.length ? `, extra: ${cfg.mpi.extraArgs.join(' ')}` : ''),
    ],
    [
      'share',
      cfg.share.cwd
        ? `current directory, up to ${size(Math.ceil(cfg.share.maxBytes / MIB))}` +
          (cfg.share.exclude.length ? `, excluding ${cfg.share.exclude.join(' ')}` : '')
        : 'off',
    ],
  ];
  const w = Math.max(...lines.map(([k]) => k.length)) + 1;
  return lines.map(([k, v]) => `${(k + ':').padEnd(w + 1)}${v}`).join('\n');
}
