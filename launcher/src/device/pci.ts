// PCI addresses and the values sysfs shows for a PCI function: pure parsers, no I/O.
//
// Formats (Linux 6.x, drivers/pci/pci-sysfs.c; seen on this machine under /sys/bus/pci/devices/*):
//   address          DDDD:BB:SS.F, lower-case hex: domain 4 digits, bus 2, slot 2 (< 0x20), function 0-7
//   vendor, device   "0x8086\n"                (%#06x)
//   class            "0x020000\n"              (%#08x: base class, subclass, prog-if)
//   numa_node        "0\n", "-1\n" (no NUMA information)
//   local_cpulist    "0-3,8-11\n"              (cpulist format, may be empty)
//   driver_override  "(null)\n" when unset, else the driver name
//   sriov_numvfs / sriov_totalvfs   "4\n"
// Classes symrun cares about (PCI Code and ID Assignment spec, 1.x): 0x0200 Ethernet controller,
// 0x0207 InfiniBand controller, 0x0604 PCI-to-PCI bridge (PCIe root and downstream ports are bridges),
// 0x0600 host bridge.
import { SymError, EXIT } from '../errors.js';

/** Canonical form: 0000:3b:02.0 (lower case, domain included). */
export const PCI_ADDRESS_RE = /^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/;

/** A driver, interface or IB device name as sysfs shows it (a single path component, never '..'). */
export const SYSFS_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/;

export function isPciAddress(s: unknown): s is string {
  return typeof s === 'string' && PCI_ADDRESS_RE.test(s);
}

/**
 * Check a PCI address given by a person (CLI, config). Only the canonical form is accepted: upper-case
 * hex and a missing domain are refused with the canonical spelling in the fix, so that one device never
 * has two names (claims are files named by the address).
 */
export function checkPciAddress(value: unknown, field: string, exitCode: number = EXIT.usage): string {
  if (isPciAddress(value)) return value;
  const s = typeof value === 'string' ? value.trim() : '';
  let fix = 'write the full address in lower case, domain included, e.g. 0000:3b:02.0 (lspci -D shows it)';
  const short = /^([0-9a-fA-F]{4}:)?([0-9a-fA-F]{2}):([01][0-9a-fA-F])\.([0-7])$/.exec(s);
  if (short) fix = `write it as ${(short[1] ?? '0000:').toLowerCase()}${short[2]!.toLowerCase()}:${short[3]!.toLowerCase()}.${short[4]}`;
  throw new SymError('ESYM_DEVICE_ARGS', {
    message: `${field} must be a PCI address of the form 0000:3b:02.0, not ${JSON.stringify(value)}`,
    field,
    value,
    fix,
    exitCode,
  });
}

/** "0x8086\n" -> 0x8086; undefined if it is not a hex number. */
export function parseHex(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^\s*0x([0-9a-fA-F]{1,8})\s*$/.exec(text);
  return m ? parseInt(m[1]!, 16) : undefined;
}

/** "4\n" -> 4; "-1\n" -> -1; undefined otherwise. */
export function parseIntValue(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^\s*(-?[0-9]{1,9})\s*$/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** numa_node: a node number, or undefined when the kernel has none (-1) or the file is missing. */
export function parseNumaNode(text: string | undefined): number | undefined {
  const n = parseIntValue(text);
  return n === undefined || n < 0 ? undefined : n;
}

/** driver_override: "(null)" or empty means unset. */
export function parseDriverOverride(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const s = text.trim();
  return s === '' || s === '(null)' ? undefined : s;
}

/** cpulist ("0-3,8-11", "" ) -> [0,1,2,3,8,9,10,11]; undefined if malformed. At most 65536 CPUs. */
export function parseCpuList(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const s = text.trim();
  if (s === '') return [];
  const out: number[] = [];
  for (const part of s.split(',')) {
    const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(part);
    if (!m) return undefined;
    const a = Number(m[1]);
    const b = m[2] !== undefined ? Number(m[2]) : a;
    if (b < a || b > 65535) return undefined;
    if (out.length + (b - a + 1) > 65536) return undefined; // overlapping ranges adding up past the CPU limit: malformed
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

export type PciKind = 'ethernet' | 'infiniband' | 'bridge' | 'other';

/** Kind of a PCI function from its class code (24 bits: base, sub, prog-if). */
export function classKind(cls: number | undefined): PciKind {
  if (cls === undefined) return 'other';
  const baseSub = cls >>> 8;
  if (baseSub === 0x0200) return 'ethernet';
  if (baseSub === 0x0207) return 'infiniband';
  if (baseSub === 0x0604 || baseSub === 0x0600) return 'bridge';
  return 'other';
}

/** Hex with the width sysfs uses ("0x8086", "0x020000"). */
export function hex(n: number, digits: number): string {
  return `0x${n.toString(16).padStart(digits, '0')}`;
}
