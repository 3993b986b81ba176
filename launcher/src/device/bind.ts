// Binding a PCI function to vfio-pci and giving it back to the driver it had: the kernel's own sequence
// (Documentation/driver-api/vfio.rst, Documentation/ABI/testing/sysfs-bus-pci: driver_override), as a
// plan of sysfs writes (pure) and an executor that checks the result.
//
// bind (function bound to D, or to nothing):
//   1. echo vfio-pci > devices/A/driver_override   only vfio-pci may bind A from now on, so nothing (a
//                                                     udev rule, a concurrent drivers_probe) rebinds D between
//                                                     steps 2 and 3
//   2. echo A > devices/A/driver/unbind              (only if bound)
//   3. echo A > sys/bus/pci/drivers_probe             the kernel binds the one driver the override allows;
//                                                     vfio-pci creates /dev/vfio/GROUP (devtmpfs) as it binds
// restore (boundFrom = the driver before the claim, overrideFrom = driver_override before the claim):
//   boundFrom = vfio-pci: nothing (the site binds its VFs to vfio-pci itself; only /dev/vfio changes owner)
//   else 1. echo A > devices/A/driver/unbind          (only if bound to another driver than boundFrom)
//        2. echo "${overrideFrom}\n" > driver_override   (only if it differs) a lone newline clears it
//        3. echo A > sys/bus/pci/drivers_probe       (only if boundFrom is a driver it is not on) the
//                                                     kernel binds the matching driver: boundFrom again
//        4. if the function is not on boundFrom now: echo A > drivers/boundFrom/bind
// Every step is checked against what sysfs says afterwards; a failure names the file, what was written and
// the kernel's error.
import { SymError, EXIT } from '../errors.js';
import { devPath, driverLoaded, PCI_DRIVERS, readDriver, readIommuGroup } from './discover.js';
import { parseDriverOverride } from './pci.js';
import type { DeviceIO } from './sysfs.js';

export const VFIO_DRIVER = 'vfio-pci';

export interface SysfsWrite { file: string; data: string }

/** The writes that bind addr (now bound to `driver`, or unbound) to vfio-pci. */
export function bindPlan(addr: string, driver: string | undefined): SysfsWrite[] {
  if (driver === VFIO_DRIVER) return [];
  return [
    { file: devPath(addr, 'driver_override'), data: VFIO_DRIVER },
    ...(driver !== undefined ? [{ file: devPath(addr, 'driver/unbind'), data: addr }] : []),
    { file: 'sys/bus/pci/drivers_probe', data: addr },
  ];
}

/** The writes that give addr (now bound to `driver`, with driver_override `override`) back to boundFrom with overrideFrom. */
export function restorePlan(addr: string, driver: string | undefined, override: string | undefined, boundFrom: string | undefined, overrideFrom: string | undefined): SysfsWrite[] {
  if (boundFrom === VFIO_DRIVER) return [];
  const out: SysfsWrite[] = [];
  if (driver !== undefined && driver !== boundFrom) out.push({ file: devPath(addr, 'driver/unbind'), data: addr });
  if (override !== overrideFrom) out.push({ file: devPath(addr, 'driver_override'), data: `${overrideFrom ?? ''}\n` });
  if (boundFrom !== undefined && driver !== boundFrom) out.push({ file: 'sys/bus/pci/drivers_probe', data: addr });
  return out;
}

function writeStep(io: DeviceIO, w: SysfsWrite, what: string, fix: string): void {
  try {
    io.write(w.file, w.data);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new SymError('ESYM_DEVICE_BIND', {
      message: `${what}: writing ${JSON.stringify(w.data.trim())} to /${w.file} failed: ${code}`,
      field: 'pci',
      value: w.data.trim(),
      fix,
      exitCode: EXIT.runtime,
      details: { file: `/${w.file}`, data: w.data, errno: code },
      cause: e,
    });
  }
}

export interface BindResult { from?: string; writes: SysfsWrite[] }

/** Bind addr to vfio-pci (no-op if it is already); throws ESYM_DEVICE_BIND saying why it did not bind. */
export function bindVfio(io: DeviceIO, addr: string): BindResult {
  const from = readDriver(io, addr);
  const plan = bindPlan(addr, from);
  const fix = `check dmesg; modprobe vfio-pci; the device must have an IOMMU group (ls -l /sys/bus/pci/devices/${addr}/iommu_group)`;
  for (const w of plan) writeStep(io, w, `binding ${addr} to vfio-pci`, fix);
  const now = readDriver(io, addr);
  if (now !== VFIO_DRIVER) {
    const why = !driverLoaded(io, VFIO_DRIVER)
      ? 'the vfio-pci driver is not loaded'
      : readIommuGroup(io, addr) === undefined
        ? 'it has no IOMMU group (vfio-pci refuses such devices)'
        : `the kernel left it ${now ? `on ${now}` : 'unbound'}`;
    throw new SymError('ESYM_DEVICE_BIND', {
      message: `${addr} is not bound to vfio-pci after drivers_probe: ${why}`,
      field: 'pci',
      value: addr,
      fix: !driverLoaded(io, VFIO_DRIVER) ? 'modprobe vfio-pci (and add it to /etc/modules-load.d/)' : fix,
      exitCode: EXIT.runtime,
      details: { from, now, writes: plan },
    });
  }
  return { ...(from !== undefined ? { from } : {}), writes: plan };
}

export interface RestoreResult { writes: SysfsWrite[]; driver?: string; override?: string }

/** Give addr back to boundFrom (unbound if undefined) with its old driver_override. */
export function restoreDriver(io: DeviceIO, addr: string, boundFrom: string | undefined, overrideFrom: string | undefined): RestoreResult {
  const plan = restorePlan(addr, readDriver(io, addr), parseDriverOverride(io.read(devPath(addr, 'driver_override'))), boundFrom, overrideFrom);
  const fix = `check dmesg and /sys/bus/pci/devices/${addr}/driver; bind it by hand: echo ${addr} > /sys/bus/pci/drivers/${boundFrom ?? 'DRIVER'}/bind`;
  for (const w of plan) writeStep(io, w, `giving ${addr} back to ${boundFrom ?? 'no driver'}`, fix);
  const writes = [...plan];
  if (boundFrom !== undefined && readDriver(io, addr) !== boundFrom && boundFrom !== VFIO_DRIVER) {
    if (!driverLoaded(io, boundFrom)) {
      throw new SymError('ESYM_DEVICE_BIND', { message: `${addr} cannot go back to ${boundFrom}: that driver is not loaded`, field: 'pci', value: addr, fix: `modprobe ${boundFrom}, then echo ${addr} > /sys/bus/pci/drivers/${boundFrom}/bind`, exitCode: EXIT.runtime, details: { writes } });
    }
    const w = { file: `${PCI_DRIVERS}/${boundFrom}/bind`, data: addr };
    writeStep(io, w, `binding ${addr} to ${boundFrom}`, fix);
    writes.push(w);
  }
  const driver = readDriver(io, addr);
  if (driver !== (boundFrom === VFIO_DRIVER ? driver : boundFrom)) {
    throw new SymError('ESYM_DEVICE_BIND', { message: `${addr} is ${driver ? `on ${driver}` : 'unbound'} after the restore, not ${boundFrom ?? 'unbound'}`, field: 'pci', value: addr, fix, exitCode: EXIT.runtime, details: { writes } });
  }
  const override = parseDriverOverride(io.read(devPath(addr, 'driver_override')));
  return { writes, ...(driver !== undefined ? { driver } : {}), ...(override !== undefined ? { override } : {}) };
}
