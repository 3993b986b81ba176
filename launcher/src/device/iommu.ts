// May a VF's IOMMU group be handed to a job? A pure verdict over the group's functions and the claims.
//
// The unit of isolation is the IOMMU group, not the function: whoever may open /dev/vfio/N may take every
// function of group N that is bound to vfio-pci. Two rules, both checked before anything is bound or
// chowned, and again with the claim in place (see manager.ts for the race argument):
//   1. viability (the kernel's rule, drivers/vfio/group.c): QEMU can use the group only if every other
//      function in it is bound to vfio-pci, bound to no driver, or is a bridge (PCIe root / downstream
//      ports are PCI-to-PCI bridges, class 0x0604; host bridges 0x0600). A function bound to any other
//      driver (a NIC driver, nvme …) makes the group unusable: refused, naming that function.
//   2. isolation (symrun's rule for multi-user nodes): another function of the group that is claimed by a
//      different job, or is bound to vfio-pci without being claimed by this job, would be reachable by this
//      job's user through /dev/vfio/N: refused, naming it. An unbound function is harmless (vfio hands out
//      only functions bound to vfio-pci, and binding needs root).
// A group that holds several VFs therefore works only if the other VFs are unbound or belong to the same
// job; VFs behind an ACS-capable port each get a group of their own and never meet these rules.
import { SymError, EXIT } from '../errors.js';
import type { PciFunction } from './discover.js';

export interface GroupProblem {
  device: string;
  reason: string;
  rule: 'no-group' | 'viability' | 'isolation';
}

export interface GroupVerdict {
  group?: number;
  ok: boolean;
  problems: GroupProblem[];
}

/**
 * @param vf       the function to be handed out (it will be bound to vfio-pci)
 * @param members  every function of its group (vf included or not)
 * @param claimOf  the job that claims a function (undefined: no claim)
 * @param job      the job asking
 */
export function groupVerdict(vf: PciFunction, members: readonly PciFunction[], claimOf: (pci: string) => string | undefined, job: string): GroupVerdict {
  if (vf.iommuGroup === undefined) {
    return { ok: false, problems: [{ device: vf.address, rule: 'no-group', reason: 'has no IOMMU group (is the IOMMU enabled? intel_iommu=on / amd_iommu=on on the kernel command line)' }] };
  }
  const problems: GroupProblem[] = [];
  for (const m of members) {
    if (m.address === vf.address || m.kind === 'bridge') continue;
    if (m.driver !== undefined && m.driver !== 'vfio-pci') {
      problems.push({ device: m.address, rule: 'viability', reason: `is bound to ${m.driver}; every function of the group must be bound to vfio-pci or to no driver` });
      continue;
    }
    const owner = claimOf(m.address);
    if (owner !== undefined && owner !== job) {
      problems.push({ device: m.address, rule: 'isolation', reason: `is claimed by Slurm job ${owner}; the group's /dev/vfio node would give it to this job's user too` });
    } else if (m.driver === 'vfio-pci' && owner === undefined) {
      problems.push({ device: m.address, rule: 'isolation', reason: 'is bound to vfio-pci but claimed by no job; the group\'s /dev/vfio node would give it to this job\'s user too' });
    }
  }
  return { group: vf.iommuGroup, ok: problems.length === 0, problems };
}

/** The refusal, naming the VF, the group and each function in the way. */
export function groupError(vf: string, v: GroupVerdict): SymError {
  const first = v.problems[0]!;
  const where = v.group !== undefined ? `IOMMU group ${v.group}` : 'no IOMMU group';
  return new SymError('ESYM_DEVICE_IOMMU_GROUP', {
    message: first.rule === 'no-group'
      ? `VF ${vf} ${first.reason}`
      : `VF ${vf} cannot be passed through: ${where} also holds ${first.device}, which ${first.reason}${v.problems.length > 1 ? ` (and ${v.problems.length - 1} more)` : ''}`,
    field: 'pci',
    value: vf,
    fix: first.rule === 'no-group'
      ? 'enable the IOMMU (kernel command line intel_iommu=on or amd_iommu=on, IOMMU/VT-d on in the firmware), reboot, and check /sys/kernel/iommu_groups'
      : first.rule === 'viability'
        ? `unbind ${first.device} (echo ${first.device} > /sys/bus/pci/devices/${first.device}/driver/unbind) or take ${vf} out of the pool; ls /sys/kernel/iommu_groups/${v.group}/devices shows the group`
        : `wait until the other job releases it, unbind ${first.device}, or take ${vf} out of the pool (a VF behind an ACS-capable port gets a group of its own)`,
    exitCode: EXIT.runtime,
    details: { group: v.group, problems: v.problems },
  });
}
