// VF settings made through the PF's network interface: the `ip link` command lines, as pure functions.
// They run through the one Runner (runner.ts), which tests replace with a recorder.
//
// Commands (iproute2 ip-link(8), "vf NUM" clause; drivers: ixgbe/i40e/ice/igb/mlx5 implement them as
// ndo_set_vf_mac, ndo_set_vf_spoofchk, ndo_set_vf_trust, ndo_set_vf_guid):
//   Ethernet VF     ip link set dev PF vf N mac M
//                   ip link set dev PF vf N spoofchk on|off
//                   ip link set dev PF vf N trust on|off
//   InfiniBand VF   ip link set dev PF vf N node_guid G port_guid G      (PF = the PF's IPoIB netdev)
// One setting per command: iproute2 sends every attribute of one `vf N` clause in one netlink message and
// the kernel applies them in turn, so a driver that lacks one operation (EOPNOTSUPP) fails the command
// after the others were applied, and the caller cannot tell which took effect. One command each, each
// result reported on its own.
// Which failures are fatal: the MAC and the GUIDs (the guest finds its interconnect by them) and
// spoofchk on (the anti-spoofing a site asked for). `trust off` on a driver without a trust operation
// is the state such a VF is in anyway, so "not supported" is only noted.
// Release puts an Ethernet VF back to neutral: MAC 00:00:00:00:00:00 (drivers read it as "none set":
// the VF driver picks a random one), trust off, spoofchk on; failures there are noted, not fatal (the
// next claim sets its own values). InfiniBand GUIDs are left as they are: they name a job that has
// ended, and the next claim replaces them.
import { SymError, EXIT } from '../errors.js';

export interface PlannedCommand {
  argv: string[];
  /** what the command sets, for reports */
  what: 'mac' | 'spoofchk' | 'trust' | 'guids';
  /** a failure of this command fails the claim */
  required: boolean;
  /** "Operation not supported" from the driver is acceptable (the requested state is the default) */
  unsupportedOk: boolean;
}

export type VfSettings =
  | { type: 'ethernet'; mac: string; spoofCheck: boolean; trust: boolean }
  | { type: 'infiniband'; nodeGuid: string; portGuid: string };

const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
const GUID_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){7}$/;
const IFNAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,14}$/;

function bad(field: string, value: unknown, fix: string): never {
  throw new SymError('ESYM_DEVICE_ARGS', { message: `invalid ${field} for ip link: ${JSON.stringify(value)}`, field, value, fix, exitCode: EXIT.runtime });
}

function vfClause(ip: string, pfIf: string, vfIndex: number): string[] {
  if (!ip.startsWith('/')) bad('binaries.ip', ip, 'give the absolute path of ip, e.g. /sbin/ip');
  if (!IFNAME_RE.test(pfIf)) bad('PF interface', pfIf, 'interface names are 1-15 characters of letters, digits, _ . : -');
  if (!Number.isInteger(vfIndex) || vfIndex < 0 || vfIndex > 65535) bad('VF index', vfIndex, 'a VF index is a whole number (the N of the PF\'s virtfnN link)');
  return [ip, 'link', 'set', 'dev', pfIf, 'vf', String(vfIndex)];
}

const onOff = (b: boolean) => (b ? 'on' : 'off');

/** The commands that give a claimed VF its identity and policy. */
export function vfSetCommands(ip: string, pfIf: string, vfIndex: number, s: VfSettings): PlannedCommand[] {
  const vf = vfClause(ip, pfIf, vfIndex);
  if (s.type === 'ethernet') {
    if (!MAC_RE.test(s.mac)) bad('MAC', s.mac, 'six lower-case hex bytes, e.g. c2:00:00:0c:00:40');
    const b = Number.parseInt(s.mac.slice(0, 2), 16);
    if (b & 1) bad('MAC', s.mac, 'a VF MAC must be unicast (lowest bit of the first byte 0)');
    if (s.mac === '00:00:00:00:00:00') bad('MAC', s.mac, 'the all-zero MAC means "none": give the claim\'s MAC');
    return [
      { argv: [...vf, 'mac', s.mac], what: 'mac', required: true, unsupportedOk: false },
      { argv: [...vf, 'spoofchk', onOff(s.spoofCheck)], what: 'spoofchk', required: s.spoofCheck, unsupportedOk: !s.spoofCheck },
      { argv: [...vf, 'trust', onOff(s.trust)], what: 'trust', required: s.trust, unsupportedOk: !s.trust },
    ];
  }
  for (const [k, g] of [['node GUID', s.nodeGuid], ['port GUID', s.portGuid]] as const) {
    if (!GUID_RE.test(g)) bad(k, g, 'eight lower-case hex bytes separated by colons');
  }
  return [{ argv: [...vf, 'node_guid', s.nodeGuid, 'port_guid', s.portGuid], what: 'guids', required: true, unsupportedOk: false }];
}

/** The commands that put a released VF back to neutral (none is required). */
export function vfResetCommands(ip: string, pfIf: string, vfIndex: number, type: 'ethernet' | 'infiniband'): PlannedCommand[] {
  const vf = vfClause(ip, pfIf, vfIndex);
  if (type === 'infiniband') return [];
  return [
    { argv: [...vf, 'mac', '00:00:00:00:00:00'], what: 'mac', required: false, unsupportedOk: true },
    { argv: [...vf, 'trust', 'off'], what: 'trust', required: false, unsupportedOk: true },
    { argv: [...vf, 'spoofchk', 'on'], what: 'spoofchk', required: false, unsupportedOk: true },
  ];
}

/** Does ip's stderr say the driver lacks the operation? ("RTNETLINK answers: Operation not supported") */
export function isUnsupported(stderr: string): boolean {
  return /Operation not supported|not supported/i.test(stderr);
}

/** A command line as a person would type it (for reports and errors). */
export function showCommand(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
