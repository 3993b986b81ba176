// The interconnect device as it crosses the coordinator <-> host agent wire (vm.plug, checkpoint
// manifests). Types only: no I/O, imported by both sides.

/** A VM's interconnect device: a NIC on a tap (the local stand-in) or a passed-through PCI function. */
export type InterconnectDevice =
  | { kind: 'nic'; id: string; netdevId: string; tap: string; mac: string; model: 'virtio-net-pci' | 'e1000e'; bus: string }
  | { kind: 'vfio'; id: string; host: string; bus: string; mac: string };

/**
 * A tap a VM needs on a host (vm.start, mig.prepare, ckpt.restore). With `helper` the host agent asks
 * the node's root helper (node/helper.ts) for the VM's taps instead of creating them itself.
 */
export interface TapRequest {
  tap: string;
  bridge: string;
  helper?: { job: string; vm: number; ip: string; standby: boolean };
}
