// Discovery: what sysfs says about SR-IOV physical functions (PFs), their virtual functions (VFs) and
// IOMMU groups, as typed records. Reads only (through DeviceIO); what it reads is checked (addresses,
// names, numbers) and anything malformed is left out rather than used.
//
// Where it looks (Linux 6.x; Documentation/PCI/pci-iov-howto.rst, Documentation/ABI/testing/sysfs-bus-pci):
//   sys/bus/pci/devices/A/            symlink to the device directory below sys/devices/pci…/
//     vendor device class numa_node local_cpulist driver_override
//     driver -> …/bus/pci/drivers/NAME                    (absent: unbound)
//     iommu_group -> …/kernel/iommu_groups/N               (absent: no IOMMU)
//     net/IFNAME/  infiniband/IBDEV/                       (while a network / RDMA driver is bound)
//     PF only: sriov_totalvfs sriov_numvfs sriov_drivers_autoprobe, virtfnK -> ../VF-ADDRESS
//     VF only: physfn -> ../PF-ADDRESS
//   sys/kernel/iommu_groups/N/devices/A   every function of group N
import { classKind, isPciAddress, parseCpuList, parseDriverOverride, parseHex, parseIntValue, parseNumaNode, SYSFS_NAME_RE, type PciKind } from './pci.js';
import { linkName, type DeviceIO } from './sysfs.js';

export const PCI_DEVICES = 'sys/bus/pci/devices';
export const PCI_DRIVERS = 'sys/bus/pci/drivers';
export const IOMMU_GROUPS = 'sys/kernel/iommu_groups';

export const devPath = (addr: string, attr?: string) => (attr ? `${PCI_DEVICES}/${addr}/${attr}` : `${PCI_DEVICES}/${addr}`);

export interface PciFunction {
  address: string;
  vendor?: number;
  device?: number;
  class?: number;
  kind: PciKind;
  /** driver bound now (undefined: none) */
  driver?: string;
  /** driver_override (undefined: unset) */
  driverOverride?: string;
  /** IOMMU group number (undefined: no IOMMU, or the kernel put it in none) */
  iommuGroup?: number;
  /** NUMA node of the device (undefined: the kernel knows none) */
  numaNode?: number;
  /** CPUs local to the device (local_cpulist) */
  localCpus?: number[];
  /** network interfaces of the function (net/*): present while a network driver is bound */
  netdevs: string[];
  /** RDMA devices of the function (infiniband/*) */
  ibdevs: string[];
}

export interface VfRecord extends PciFunction {
  /** the PF's address */
  pf: string;
  /** N of the PF's virtfnN link (the index `ip link … vf N` takes) */
  vfIndex: number;
}

export interface PfRecord extends PciFunction {
  totalVfs: number;
  numVfs: number;
  /** sriov_drivers_autoprobe: new VFs bind to their driver by themselves */
  driversAutoprobe?: boolean;
  vfs: VfRecord[];
}

const name = (s: string | undefined) => (s !== undefined && SYSFS_NAME_RE.test(s) ? s : undefined);

export function readDriver(io: DeviceIO, addr: string): string | undefined {
  return name(linkName(io.readlink(devPath(addr, 'driver'))));
}

export function readIommuGroup(io: DeviceIO, addr: string): number | undefined {
  const g = linkName(io.readlink(devPath(addr, 'iommu_group')));
  return g !== undefined && /^[0-9]{1,9}$/.test(g) ? Number(g) : undefined;
}

/** One PCI function, or undefined if there is no such device. */
export function readFunction(io: DeviceIO, addr: string): PciFunction | undefined {
  if (!isPciAddress(addr) || !io.exists(devPath(addr))) return undefined;
  const cls = parseHex(io.read(devPath(addr, 'class')));
  const f: PciFunction = {
    address: addr,
    kind: classKind(cls),
    netdevs: io.list(devPath(addr, 'net')).filter((n) => name(n) !== undefined && n.length <= 15),
    ibdevs: io.list(devPath(addr, 'infiniband')).filter((n) => name(n) !== undefined),
  };
  const set = <K extends keyof PciFunction>(k: K, v: PciFunction[K] | undefined) => { if (v !== undefined) f[k] = v; };
  set('vendor', parseHex(io.read(devPath(addr, 'vendor'))));
  set('device', parseHex(io.read(devPath(addr, 'device'))));
  set('class', cls);
  set('driver', readDriver(io, addr));
  set('driverOverride', name(parseDriverOverride(io.read(devPath(addr, 'driver_override')))));
  set('iommuGroup', readIommuGroup(io, addr));
  set('numaNode', parseNumaNode(io.read(devPath(addr, 'numa_node'))));
  set('localCpus', parseCpuList(io.read(devPath(addr, 'local_cpulist'))));
  return f;
}

/** The PF of a VF (its physfn link), or undefined if addr is no VF. */
export function physfnOf(io: DeviceIO, addr: string): string | undefined {
  const pf = linkName(io.readlink(devPath(addr, 'physfn')));
  return isPciAddress(pf) ? pf : undefined;
}

/** virtfnK links of a PF: index -> VF address, sorted by index. */
export function virtfns(io: DeviceIO, pf: string): Array<{ index: number; address: string }> {
  const out: Array<{ index: number; address: string }> = [];
  for (const e of io.list(devPath(pf))) {
    const m = /^virtfn([0-9]{1,5})$/.exec(e);
    if (!m) continue;
    const a = linkName(io.readlink(devPath(pf, e)));
    if (isPciAddress(a)) out.push({ index: Number(m[1]), address: a });
  }
  return out.sort((x, y) => x.index - y.index);
}

/** A PF with its VFs; undefined if addr is no SR-IOV capable function. */
export function readPf(io: DeviceIO, addr: string): PfRecord | undefined {
  const f = readFunction(io, addr);
  if (!f) return undefined;
  const total = parseIntValue(io.read(devPath(addr, 'sriov_totalvfs')));
  if (total === undefined) return undefined;
  const auto = parseIntValue(io.read(devPath(addr, 'sriov_drivers_autoprobe')));
  const vfs: VfRecord[] = [];
  for (const { index, address } of virtfns(io, addr)) {
    const vf = readFunction(io, address);
    if (vf) vfs.push({ ...vf, pf: addr, vfIndex: index });
  }
  return {
    ...f,
    totalVfs: total,
    numVfs: parseIntValue(io.read(devPath(addr, 'sriov_numvfs'))) ?? 0,
    ...(auto !== undefined ? { driversAutoprobe: auto === 1 } : {}),
    vfs,
  };
}

/** A VF with its PF and index; undefined if addr is no VF. */
export function readVf(io: DeviceIO, addr: string): VfRecord | undefined {
  const pf = physfnOf(io, addr);
  if (!pf) return undefined;
  const f = readFunction(io, addr);
  const idx = virtfns(io, pf).find((v) => v.address === addr)?.index;
  if (!f || idx === undefined) return undefined;
  return { ...f, pf, vfIndex: idx };
}

/** Every SR-IOV capable PF of the machine (functions with sriov_totalvfs), by address. */
export function discoverPfs(io: DeviceIO): PfRecord[] {
  const out: PfRecord[] = [];
  for (const a of io.list(PCI_DEVICES)) {
    if (!isPciAddress(a) || !io.exists(devPath(a, 'sriov_totalvfs'))) continue;
    const pf = readPf(io, a);
    if (pf) out.push(pf);
  }
  return out;
}

/** Addresses of every function in IOMMU group g. */
export function groupMembers(io: DeviceIO, group: number): string[] {
  return io.list(`${IOMMU_GROUPS}/${group}/devices`).filter(isPciAddress);
}

/** Does the machine have IOMMU groups at all (an IOMMU enabled by the kernel)? */
export function hasIommu(io: DeviceIO): boolean {
  return io.list(IOMMU_GROUPS).some((g) => /^[0-9]+$/.test(g));
}

/** Is a PCI driver registered (its directory below sys/bus/pci/drivers exists)? */
export function driverLoaded(io: DeviceIO, driver: string): boolean {
  return SYSFS_NAME_RE.test(driver) && io.exists(`${PCI_DRIVERS}/${driver}`);
}
