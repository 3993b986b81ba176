// The interconnect device as it crosses the coordinator <-> host agent wire (vm.plug, checkpoint
// manifests). Types only: no I/O, imported by both sides.

/** A VM's interconnect device: a NIC on a tap (the local stand-in) or a passed-through PCI function. */
export type InterconnectDevice =
  | { kind: 'nic'; id: string; netdevId: string; tap: string; mac: string; model: 'virtio-net-pci' | 'e1000e'; bus: string }
  | VfioDevice;

/**
 * A passed-through VF on one host (`host` = its PCI address there). `mac` is the VM's own MAC (symrun's,
 * the same on every host); the VF's identity, by which the guest finds it, is the node's: `vfMac` for an
 * Ethernet VF, `guid` (port GUID) for an InfiniBand VF, set by the node layer's claim. A VF whose
 * identity nobody set is found in the guest as its one network interface that is not virtio.
 */
export interface VfioDevice {
  kind: 'vfio';
  id: string;
  host: string;
  bus: string;
  mac: string;
  /** the VF's link type (PCI class 0x0200 / 0x0207); absent in records written before it was kept */
  link?: 'ethernet' | 'infiniband';
  /** Ethernet VF: the MAC the node gave it */
  vfMac?: string;
  /** InfiniBand VF: its port GUID (aa:bb:…, 8 bytes) */
  guid?: string;
}

/**
 * A VF a host may hand to a VM of the job (host agent `dev.claim`): from interconnect.addresses /
 * interconnect.pool (address only), or from the node layer's claim record (with its MAC or GUID).
 */
export interface VfOffer {
  pci: string;
  vfMac?: string;
  guid?: string;
}

/** What the host agent holds for a VM on its node (`dev.claim` answer, `dev.list`). */
export interface HeldVf {
  vm: string;
  pci: string;
  link: 'ethernet' | 'infiniband';
  vfMac?: string;
  guid?: string;
  group: number;
  /** /dev/vfio/N that QEMU opens */
  vfioDevice: string;
}

/**
 * A tap a VM needs on a host (vm.start, mig.prepare, ckpt.restore). With `helper` the host agent asks
 * the node's root helper (node/helper.ts) for the VM's taps instead of creating them itself.
 */
export interface TapRequest {
  tap: string;
  bridge: string;
  helper?: { job: string; vm: number; ip: string; standby: boolean };
}
