// The interconnect device of a VM, described once: what QEMU gets at boot, what the host agent plugs
// back after a move / checkpoint / restart, what "is it plugged" means, what a checkpoint records, and
// how the guest finds it.
//   nic:   the local stand-in for a passthrough NIC: a virtio-net (or e1000e) on a tap, fixed MAC
//   vfio:  a passed-through PCI function (SR-IOV VF or a whole device), by host PCI address. Which VF a
//          VM gets on a host is the host agent's answer to `dev.claim` (device/job-vfs.ts) from the
//          offers made here (interconnect.addresses[host], else interconnect.pool): a VF per VM, held
//          until the coordinator releases it (migration confirm / rollback).
// The same QEMU id on every host, in root port rp1 (hot-pluggable: pcie-root-port).
import crypto from 'node:crypto';
import { SymError } from '../../errors.js';
import { DEFAULTS } from '../../defaults.js';
import type { SymrunConfig } from '../../config/types.js';
import type { HeldVf, InterconnectDevice, VfOffer, VfioDevice } from '../../wire/device.js';

export type { InterconnectDevice, VfioDevice, HeldVf, VfOffer } from '../../wire/device.js';

export const INTERCONNECT_BUS = 'rp1';

/** failover adapter: the virtio standby NIC that migrates with the VM (tap and QEMU ids). */
export const STANDBY = { netdevId: 'symsb0nd', deviceId: 'symsb0', bus: 'rp2', tap: (index: number) => `symsb${index}` } as const;

/** Deterministic locally administered MAC for a job's VM (the same on every host it moves to). */
export function vmMac(seed: string, index: number, role: 'device' | 'standby' = 'device'): string {
  const h = crypto.createHash('sha256').update(seed).digest();
  const b2 = role === 'standby' ? h[2]! ^ 0x80 : h[2]!;
  return ['52', '54', h[0]!.toString(16).padStart(2, '0'), h[1]!.toString(16).padStart(2, '0'), b2.toString(16).padStart(2, '0'), index.toString(16).padStart(2, '0')].join(':');
}

/** The kind of interconnect device the configuration gives every VM. */
export function deviceKind(cfg: SymrunConfig): InterconnectDevice['kind'] {
  return cfg.interconnect.type === 'emulated' ? 'nic' : 'vfio';
}

/** The emulated stand-in of a VM (the same on every host: its tap and MAC are the VM's). */
export function nicFor(cfg: SymrunConfig, vm: { tap: string; mac: string }): InterconnectDevice {
  const ic = cfg.interconnect;
  if (ic.type !== 'emulated') throw new SymError('ESYM_NO_DEVICE', { message: 'interconnect.type is vfio: a VM gets a VF claimed on its host, not an emulated NIC', field: 'interconnect.type', value: ic.type });
  return { kind: 'nic', id: DEFAULTS.interconnect.deviceId, netdevId: DEFAULTS.interconnect.netdevId, tap: vm.tap, mac: vm.mac, model: ic.model, bus: INTERCONNECT_BUS };
}

/** The VFs a host may hand out, in order: the host's own address (interconnect.addresses), else the pool. */
export function vfOffers(cfg: SymrunConfig, host: string): VfOffer[] {
  const ic = cfg.interconnect;
  if (ic.type !== 'vfio') return [];
  const own = ic.addresses?.[host];
  const list = own ? [own] : ic.pool ?? [];
  if (!list.length) throw new SymError('ESYM_NO_DEVICE', { message: `no passthrough device configured for host ${host}`, field: 'interconnect.addresses', fix: `add ${host}: "0000:xx:yy.z" under interconnect.addresses, or an interconnect.pool` });
  return list.map((pci) => ({ pci }));
}

/** The device record of the VF a host agent handed to a VM (dev.claim). */
export function vfioFor(held: HeldVf, vm: { mac: string }): VfioDevice {
  return {
    kind: 'vfio', id: DEFAULTS.interconnect.deviceId, host: held.pci, bus: INTERCONNECT_BUS, mac: vm.mac, link: held.link,
    ...(held.vfMac ? { vfMac: held.vfMac } : {}), ...(held.guid ? { guid: held.guid } : {}),
  };
}

/**
 * How the guest finds the device (net-config `mac` / `find` / `guid`): a NIC and an Ethernet VF with a
 * known MAC by that MAC, an InfiniBand VF by its port GUID, a VF whose identity nobody set as the guest's
 * one network interface that is not virtio.
 */
export function findArgs(d: InterconnectDevice | undefined, vmMacAddr: string): { mac: string; find?: 'mac' | 'guid' | 'passthrough'; guid?: string } {
  if (!d || d.kind === 'nic') return { mac: vmMacAddr };
  if (d.link === 'infiniband' && d.guid) return { mac: vmMacAddr, find: 'guid', guid: d.guid };
  if (d.vfMac) return { mac: d.vfMac, find: 'mac' };
  return { mac: vmMacAddr, find: 'passthrough' };
}

/** QEMU arguments that put the device in the VM at boot. */
export function bootArgs(d: InterconnectDevice): string[] {
  if (d.kind === 'nic') {
    return ['-netdev', `tap,id=${d.netdevId},ifname=${d.tap},script=no,downscript=no`, '-device', `${d.model},netdev=${d.netdevId},id=${d.id},mac=${d.mac},bus=${d.bus}`];
  }
  return ['-device', `vfio-pci,host=${d.host},id=${d.id},bus=${d.bus}`];
}

/** Whether the interconnect device is in a VM's device list (host agent vm.devices). */
export function isPlugged(devs: ReadonlyArray<{ qdevId?: string }>): boolean {
  return devs.some((x) => x.qdevId === DEFAULTS.interconnect.deviceId);
}

/** The unplug request for the host agent (a NIC's backend goes too; a vfio device has none). */
export function unplugParams(vm: string, d: InterconnectDevice): { name: string; id: string; netdevId?: string } {
  return { name: vm, id: d.id, ...(d.kind === 'nic' ? { netdevId: d.netdevId } : {}) };
}

/** The plug request for the host agent: the device, on `bridge` (a NIC's tap is attached there first). */
export function plugParams(vm: string, d: InterconnectDevice, bridge: string, bus = d.bus): { name: string; device: InterconnectDevice; bridge: string } {
  return { name: vm, device: { ...d, bus }, bridge };
}
