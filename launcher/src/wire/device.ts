// The interconnect device as it crosses the coordinator <-> host agent wire (vm.plug, checkpoint
// manifests), and what the host agent answers about the VM's PCI devices (vm.plug, vm.unplug,
// vm.devices; hotplug/index.ts does the QMP). Types only: no I/O, imported by both sides.

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

/** vm.plug's answer: the device is in the guest (`ms`: device_add until QEMU said so). */
export interface PlugResult { id: string; bus: string; ms: number }
/** vm.unplug's answer: the guest let the device go (`ms`: device_del until DEVICE_DELETED). */
export interface UnplugResult { id: string; ms: number; netdevRemoved: boolean }

/** One PCI function of a VM (QEMU query-pci, flattened; vm.devices). */
export interface PciDeviceInfo {
  /** QEMU device id ('' for unnamed devices) */
  qdevId: string;
  /** qdev id of the parent bridge/root port, 'pcie.0' (or 'pci.0') for the root bus */
  parent: string;
  bus: number; slot: number; function: number;
  vendor: number; device: number; classCode: number;
  desc?: string;
  isBridge: boolean;
  /** for bridges / root ports: devices behind it */
  children: number;
}
