// PCI hot-plug through QMP (all QMP I/O goes through QmpClient).
// Order (docs/architecture.md, Conventions): plug = backend then device; unplug = subscribe to DEVICE_DELETED,
// device_del, wait by id with a deadline, then remove the backend. Measured on QEMU 7.2 q35 (docs/lab-notes.md):
// ACPI hotplug answers device_del with DEVICE_DELETED in 0.08-0.17 s; native pciehp takes 6.1-6.4 s.
import { SymError } from '../errors.js';
import { DEFAULTS } from '../defaults.js';
import { QmpCommandError, type QmpClient } from '../qmp/client.js';
import type { PlugResult, UnplugResult, PciDeviceInfo } from '../wire/device.js';

export interface HotplugOptions { timeoutMs?: number; signal?: AbortSignal }

export interface NicSpec {
  id: string;
  netdevId: string;
  /** host tap interface (must exist) */
  tap: string;
  mac: string;
  model: 'virtio-net-pci' | 'e1000e';
  /** root port id (e.g. rp1) */
  bus: string;
}

export interface VfioSpec {
  id: string;
  /** host PCI address, e.g. 0000:3b:00.2 */
  host: string;
  bus: string;
}

export type { PlugResult, UnplugResult, PciDeviceInfo } from '../wire/device.js';

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const PCI_RE = /^([0-9a-f]{4}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i;
const ID_RE = /^[A-Za-z][A-Za-z0-9_.-]*$/; // QEMU id syntax

function deadlineLeft(deadline: number): number {
  return Math.max(1, deadline - Date.now());
}

function checkId(what: string, v: string) {
  if (!ID_RE.test(v)) {
    throw new SymError('ESYM_HOTPLUG_ARGS', { message: `invalid QEMU ${what} ${JSON.stringify(v)}`, field: what, value: v, fix: 'ids start with a letter and contain only letters, digits, _ . -' });
  }
}

function plugFailed(what: string, id: string, e: unknown, details: Record<string, unknown> = {}, fix?: string): SymError {
  if (e instanceof SymError && e.code !== 'ESYM_QMP_COMMAND') return e; // timeouts, disconnects, aborts keep their code
  const qe = e instanceof QmpCommandError ? e : undefined;
  return new SymError('ESYM_HOTPLUG_FAILED', {
    message: `hot-plug of ${what} ${id} failed: ${qe ? `${qe.desc} (${qe.errorClass})` : (e as Error).message}`,
    fix: fix ?? 'check that the backend exists on this host (tap / VF), that the root port is free (query-pci), and that the id is not already in use',
    details: { id, ...(qe ? { errorClass: qe.errorClass, command: qe.command } : {}), ...details },
    cause: e,
  });
}

/** netdev_add (tap) then device_add into a root port; rolls the netdev back if device_add fails. */
export async function plugNic(qmp: QmpClient, nic: NicSpec, opts: HotplugOptions = {}): Promise<PlugResult> {
  checkId('id', nic.id);
  checkId('netdevId', nic.netdevId);
  checkId('bus', nic.bus);
  if (!MAC_RE.test(nic.mac)) throw new SymError('ESYM_HOTPLUG_ARGS', { message: `invalid MAC address ${JSON.stringify(nic.mac)}`, field: 'mac', value: nic.mac, fix: 'use six hex bytes like 52:54:00:12:34:56' });
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(nic.tap)) throw new SymError('ESYM_HOTPLUG_ARGS', { message: `invalid tap name ${JSON.stringify(nic.tap)}`, field: 'tap', value: nic.tap, fix: 'interface names are at most 15 characters' });
  const t0 = Date.now();
  const deadline = t0 + (opts.timeoutMs ?? DEFAULTS.hotplug.plugTimeoutMs);
  // QEMU 7.2 and 10.x: netdev_add takes the boxed Netdev union; script/downscript "no" keeps QEMU from running ifup scripts.
  try {
    await qmp.execute('netdev_add', { type: 'tap', id: nic.netdevId, ifname: nic.tap, script: 'no', downscript: 'no' },
      { timeoutMs: deadlineLeft(deadline), signal: opts.signal });
  } catch (e) {
    throw plugFailed('netdev', nic.netdevId, e, { tap: nic.tap });
  }
  try {
    await qmp.execute('device_add', { driver: nic.model, id: nic.id, netdev: nic.netdevId, mac: nic.mac, bus: nic.bus },
      { timeoutMs: deadlineLeft(deadline), signal: opts.signal });
  } catch (e) {
    let rollback = 'netdev removed';
    try {
      await qmp.execute('netdev_del', { id: nic.netdevId }, { timeoutMs: 5000 });
    } catch (re) {
      rollback = `netdev ${nic.netdevId} could NOT be removed: ${(re as Error).message}`;
    }
    throw plugFailed('NIC', nic.id, e, { rollback, bus: nic.bus });
  }
  return { id: nic.id, bus: nic.bus, ms: Date.now() - t0 };
}

/** device_add of a vfio-pci host device into a root port. */
export async function plugVfio(qmp: QmpClient, dev: VfioSpec, opts: HotplugOptions = {}): Promise<PlugResult> {
  checkId('id', dev.id);
  checkId('bus', dev.bus);
  if (!PCI_RE.test(dev.host)) throw new SymError('ESYM_HOTPLUG_ARGS', { message: `invalid PCI address ${JSON.stringify(dev.host)}`, field: 'host', value: dev.host, fix: 'use a PCI address like 0000:3b:00.2 (see lspci -D)' });
  const t0 = Date.now();
  try {
    await qmp.execute('device_add', { driver: 'vfio-pci', id: dev.id, host: dev.host, bus: dev.bus },
      { timeoutMs: opts.timeoutMs ?? DEFAULTS.hotplug.plugTimeoutMs, signal: opts.signal });
  } catch (e) {
    throw plugFailed('VFIO device', dev.id, e, { host: dev.host, bus: dev.bus },
      `check that ${dev.host} is bound to vfio-pci (readlink /sys/bus/pci/devices/${dev.host}/driver), that its IOMMU group is viable, and that the root port ${dev.bus} is free`);
  }
  return { id: dev.id, bus: dev.bus, ms: Date.now() - t0 };
}

/**
 * device_del and wait for DEVICE_DELETED of that id (subscribed BEFORE device_del), then netdev_del.
 * `missingOk`: a device that does not exist counts as unplugged (for idempotent rollback).
 */
export async function unplugDevice(qmp: QmpClient, id: string,
  opts: HotplugOptions & { netdevId?: string; missingOk?: boolean } = {}): Promise<UnplugResult> {
  checkId('id', id);
  const timeoutMs = opts.timeoutMs ?? DEFAULTS.hotplug.unplugTimeoutMs;
  const t0 = Date.now();
  const deadline = t0 + timeoutMs;
  const wait = qmp.waitEvent('DEVICE_DELETED', (d) => d.device === id, { timeoutMs, signal: opts.signal });
  let missing = false;
  try {
    await qmp.execute('device_del', { id }, { timeoutMs: deadlineLeft(deadline), signal: opts.signal });
  } catch (e) {
    wait.cancel();
    if (e instanceof QmpCommandError && e.errorClass === 'DeviceNotFound' && opts.missingOk) {
      missing = true;
    } else if (e instanceof QmpCommandError) {
      throw new SymError(e.errorClass === 'DeviceNotFound' ? 'ESYM_DEVICE_NOT_FOUND' : 'ESYM_HOTPLUG_FAILED', {
        message: `unplug of ${id} failed: ${e.desc} (${e.errorClass})`,
        fix: e.errorClass === 'DeviceNotFound' ? 'the device is not plugged in this VM; check the id with query-pci' : 'see the QEMU message',
        details: { id, errorClass: e.errorClass },
        cause: e,
      });
    } else {
      throw e;
    }
  }
  if (!missing) {
    try {
      await wait.promise;
    } catch (e) {
      if (e instanceof SymError && e.code === 'ESYM_QMP_TIMEOUT') {
        throw new SymError('ESYM_UNPLUG_TIMEOUT', {
          message: `device ${id} was not released by the guest within ${timeoutMs} ms (no DEVICE_DELETED after device_del)`,
          fix: 'the guest must handle PCI hot-unplug: check that it has finished booting and that its kernel has ACPI PCI hotplug (acpiphp) or pciehp; '
            + 'native pciehp alone takes ~6 s (attention-button delay); the device is still plugged (unplug is still pending in QEMU)',
          details: { id, timeoutMs },
          cause: e,
        });
      }
      throw e;
    }
  }
  const ms = Date.now() - t0;
  let netdevRemoved = false;
  if (opts.netdevId) {
    try {
      await qmp.execute('netdev_del', { id: opts.netdevId }, { timeoutMs: deadlineLeft(deadline) + 5000, signal: opts.signal });
      netdevRemoved = true;
    } catch (e) {
      if (!(missing && e instanceof QmpCommandError)) {
        throw new SymError('ESYM_HOTPLUG_FAILED', {
          message: `device ${id} was unplugged but its backend ${opts.netdevId} could not be removed: ${(e as Error).message}`,
          fix: 'remove it with netdev_del before plugging a NIC with the same netdev id',
          details: { id, netdevId: opts.netdevId },
          cause: e,
        });
      }
    }
  }
  return { id, ms, netdevRemoved };
}

// ---- device listing (query-pci) ----

interface QueryPciDevice {
  bus: number; slot: number; function: number;
  class_info: { class: number; desc?: string };
  id: { device: number; vendor: number };
  qdev_id: string;
  pci_bridge?: { bus: { number: number }; devices?: QueryPciDevice[] };
}
interface QueryPciBus { bus: number; devices: QueryPciDevice[] }

export async function listDevices(qmp: QmpClient, opts: HotplugOptions = {}): Promise<PciDeviceInfo[]> {
  const buses = await qmp.execute<QueryPciBus[]>('query-pci', undefined, { timeoutMs: opts.timeoutMs, signal: opts.signal });
  const out: PciDeviceInfo[] = [];
  const walk = (devs: QueryPciDevice[], parent: string) => {
    for (const d of devs) {
      out.push({
        qdevId: d.qdev_id ?? '',
        parent,
        bus: d.bus, slot: d.slot, function: d.function,
        vendor: d.id?.vendor, device: d.id?.device, classCode: d.class_info?.class,
        desc: d.class_info?.desc,
        isBridge: !!d.pci_bridge,
        children: d.pci_bridge?.devices?.length ?? 0,
      });
      if (d.pci_bridge?.devices) walk(d.pci_bridge.devices, d.qdev_id || `bus${d.pci_bridge.bus.number}`);
    }
  };
  for (const b of buses) walk(b.devices, b.bus === 0 ? 'pcie.0' : `bus${b.bus}`);
  return out;
}

/** First root port (id rpN, in numeric order) with nothing plugged behind it; undefined if all are busy. */
export async function findFreeRootPort(qmp: QmpClient, opts: HotplugOptions = {}): Promise<string | undefined> {
  const devs = await listDevices(qmp, opts);
  const ports = devs.filter((d) => d.isBridge && /^rp\d+$/.test(d.qdevId))
    .sort((a, b) => Number(a.qdevId.slice(2)) - Number(b.qdevId.slice(2)));
  return ports.find((p) => p.children === 0)?.qdevId;
}
