// The job's VFs on one node, as its host agent holds them: which VM of the job uses which VF here.
// Runs as the job's user inside the host agent (no root): it binds nothing and sets nothing. The VFs
// were made usable by root beforehand — by the node layer's claim (`symrun node devices claim`, which
// binds them to vfio-pci, gives /dev/vfio/N to the job's user and sets their MAC or GUIDs), or by the
// site (VFs bound to vfio-pci at boot, listed in interconnect.addresses / interconnect.pool).
//
// Rules:
//   - claim(vm, offers) hands the VM the first offer, in order, that no other VM of the job holds here
//     and that is usable now: the function exists, is bound to vfio-pci, has an IOMMU group, and its
//     /dev/vfio/N exists. A VM that already holds a VF here gets the same one again (idempotent: a
//     coordinator that restarted asks again and must not get a second VF).
//   - release(vm) gives the VM's VF back (idempotent); stopping QEMU does not: a restart stops a VM and
//     restores it on the same host, with the same VF.
//   - Nothing is persisted: the host agent's memory is the record. A host agent that dies takes the
//     job's VMs on its node with it (the job restarts them elsewhere, and claims there).
// The link type comes from the PCI class (0x0200 Ethernet, 0x0207 InfiniBand); the identity (MAC, port
// GUID) from the offer, since a VF bound to vfio-pci has no network interface to read it from.
import { SymError } from '../errors.js';
import type { HeldVf, VfOffer } from '../wire/device.js';
import { isPciAddress } from './pci.js';
import { readFunction } from './discover.js';
import { vfioNode } from './holders.js';
import { VFIO_DRIVER } from './bind.js';
import type { DeviceIO } from './sysfs.js';

const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
const GUID_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){7}$/;

/**
 * Offers from the VFs root claimed for the job on this node (the node layer's job record, `vfs`: the
 * `claimed` entries of `symrun node devices claim --json`), read with suspicion: an entry whose address,
 * MAC or GUID is malformed is left out. The MAC (Ethernet) or port GUID (InfiniBand) root set is how the
 * guest finds the VF.
 */
export function offersFromClaims(list: unknown): VfOffer[] {
  if (!Array.isArray(list)) return [];
  const out: VfOffer[] = [];
  for (const c of list.slice(0, 64)) {
    if (!c || typeof c !== 'object') continue;
    const { pci, mac, portGuid } = c as Record<string, unknown>;
    if (typeof pci !== 'string' || !isPciAddress(pci)) continue;
    if (mac !== undefined && (typeof mac !== 'string' || !MAC_RE.test(mac))) continue;
    if (portGuid !== undefined && (typeof portGuid !== 'string' || !GUID_RE.test(portGuid))) continue;
    out.push({ pci, ...(mac ? { vfMac: mac as string } : {}), ...(portGuid ? { guid: portGuid as string } : {}) });
  }
  return out;
}

export class JobVfs {
  private held = new Map<string, HeldVf>();

  constructor(private io: DeviceIO, readonly host: string) {}

  /** Why `pci` cannot be handed out now (undefined: it can), with what sysfs says. */
  unusable(pci: string): string | undefined {
    const f = readFunction(this.io, pci);
    if (!f) return 'no such PCI function on this node';
    if (f.kind !== 'ethernet' && f.kind !== 'infiniband') return `not a network function (class ${f.class === undefined ? 'unknown' : `0x${f.class.toString(16).padStart(6, '0')}`})`;
    if (f.driver !== VFIO_DRIVER) return `bound to ${f.driver ?? 'no driver'}, not ${VFIO_DRIVER}`;
    if (f.iommuGroup === undefined) return 'in no IOMMU group';
    if (!this.io.exists(vfioNode(f.iommuGroup))) return `/${vfioNode(f.iommuGroup)} does not exist`;
    return undefined;
  }

  claim(vm: string, offers: VfOffer[]): HeldVf {
    const have = this.held.get(vm);
    if (have) return have;
    const takenBy = new Map([...this.held.values()].map((h) => [h.pci, h.vm]));
    const why: string[] = [];
    for (const o of offers) {
      const other = takenBy.get(o.pci);
      if (other) { why.push(`${o.pci}: held by ${other}`); continue; }
      const bad = this.unusable(o.pci);
      if (bad) { why.push(`${o.pci}: ${bad}`); continue; }
      const f = readFunction(this.io, o.pci)!;
      const h: HeldVf = {
        vm, pci: o.pci, link: f.kind as HeldVf['link'],
        ...(o.vfMac ? { vfMac: o.vfMac } : {}), ...(o.guid ? { guid: o.guid } : {}),
        group: f.iommuGroup!, vfioDevice: `/${vfioNode(f.iommuGroup!)}`,
      };
      this.held.set(vm, h);
      return h;
    }
    throw new SymError('ESYM_NO_DEVICE', {
      message: offers.length
        ? `no VF on ${this.host} for ${vm}: ${why.join('; ')}`
        : `no VF is offered on ${this.host} for ${vm}`,
      field: 'interconnect.pool',
      value: offers.map((o) => o.pci),
      fix: offers.length
        ? `give the job one usable VF per VM on ${this.host} (bound to vfio-pci, /dev/vfio/GROUP the job user's: docs/passthrough.md), or start fewer VMs there`
        : `set interconnect.addresses or interconnect.pool, or (a site) let the Slurm prolog claim VFs for symrun jobs: SYMRUN_VF_SLOTS in node.conf (docs/passthrough.md)`,
      details: { host: this.host, vm, refused: why },
    });
  }

  release(vm: string): HeldVf | undefined {
    const h = this.held.get(vm);
    this.held.delete(vm);
    return h;
  }

  list(): HeldVf[] {
    return [...this.held.values()];
  }
}
