// Pure naming and addressing rules of `symrun --local N` (no I/O; unit-tested).
//
// One job = one switch namespace + N host namespaces, one L2 segment, one subnet:
//   root ns (coordinator)  sym-<job>  ──veth──  coord ┐
//                                                    brsw   (ns symrun-<job>-sw)
//   ns symrun-<job>-h<i>:  brfab (host IP) ── up0 ──veth── h<i> ┘
// Interface names inside a namespace are fixed (the namespace makes them unique); the only link in the
// root namespace is `sym-<job>` (≤ 12 chars, Linux allows 15), so two jobs can run at once.
import { SymError, EXIT } from '../errors.js';
import { DEFAULTS, LOCAL_DEFAULTS } from '../defaults.js';

export const JOB_ID_RE = /^[a-z0-9]{1,8}$/;
export const NETNS_PREFIX = 'symrun-';
/** bridge inside the switch namespace */
export const SWITCH_BRIDGE = 'brsw';
/** bridge inside every host namespace; VM taps attach to it; carries the host IP */
export const HOST_BRIDGE = 'brfab';
/** host end of the veth from a host namespace to the switch */
export const HOST_UPLINK = 'up0';
/** switch end of the coordinator's veth */
export const SWITCH_COORD_PORT = 'coord';
/** Linux IFNAMSIZ - 1 */
export const MAX_IFNAME = 15;

export function validateJobId(jobId: string): string {
  if (typeof jobId !== 'string' || !JOB_ID_RE.test(jobId)) {
    throw new SymError('ESYM_BAD_JOB_ID', {
      message: `local job id must be 1-8 lowercase letters or digits`,
      field: 'jobId',
      value: jobId,
      fix: 'this is a bug in the caller of createLocalCluster; make the job id with [a-z0-9]{1,8}',
      exitCode: EXIT.runtime,
    });
  }
  return jobId;
}

export function validateHostCount(n: number): number {
  const max = LOCAL_DEFAULTS.maxHosts;
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new SymError('ESYM_BAD_HOST_COUNT', {
      message: `--local needs a whole number of emulated hosts between 1 and ${max}`,
      field: '--local',
      value: n,
      fix: `use --local 2 (or any number from 1 to ${max})`,
      exitCode: EXIT.usage,
    });
  }
  return n;
}

export function switchNetns(jobId: string): string {
  return `${NETNS_PREFIX}${jobId}-sw`;
}
export function hostNetns(jobId: string, hostIndex: number): string {
  return `${NETNS_PREFIX}${jobId}-h${hostIndex}`;
}
export function hostName(hostIndex: number): string {
  return `host${hostIndex}`;
}
/** the coordinator's veth in the root namespace */
export function coordLinkName(jobId: string): string {
  return `sym-${jobId}`;
}
/** switch end of the veth to host i (inside the switch namespace) */
export function switchHostPort(hostIndex: number): string {
  return `h${hostIndex}`;
}

const NETNS_NAME_RE = /^symrun-([a-z0-9]{1,8})-(sw|h([1-9][0-9]*))$/;
const COORD_LINK_RE = /^sym-([a-z0-9]{1,8})$/;

/** Which job (and role) a namespace name belongs to, or undefined if it is not one of ours. */
export function parseNetnsName(name: string): { jobId: string; role: 'switch' | 'host'; hostIndex?: number } | undefined {
  const m = NETNS_NAME_RE.exec(name);
  if (!m) return undefined;
  if (m[2] === 'sw') return { jobId: m[1]!, role: 'switch' };
  return { jobId: m[1]!, role: 'host', hostIndex: Number(m[3]) };
}
export function parseCoordLinkName(name: string): string | undefined {
  return COORD_LINK_RE.exec(name)?.[1];
}

// ---- IPv4 arithmetic --------------------------------------------------------------------------

export function ipToInt(ip: string): number | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = v * 256 + n;
  }
  return v;
}

export function intToIp(v: number): string {
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

export interface Cidr {
  /** network address as an unsigned 32-bit number */
  base: number;
  prefixLen: number;
}

export interface Subnet extends Cidr {
  /** "198.18.3.0/24" */
  cidr: string;
  /** "198.18.3.0" */
  network: string;
}

function maskOf(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Parse "a.b.c.d/len" (or a bare address = /32) without validating policy. */
export function parseCidr(s: string): Cidr | undefined {
  const m = /^([0-9.]+)(?:\/([0-9]{1,2}))?$/.exec(s.trim());
  if (!m) return undefined;
  const ip = ipToInt(m[1]!);
  const len = m[2] === undefined ? 32 : Number(m[2]);
  if (ip === undefined || len > 32) return undefined;
  return { base: (ip & maskOf(len)) >>> 0, prefixLen: len };
}

export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return inner.prefixLen >= outer.prefixLen && ((inner.base & maskOf(outer.prefixLen)) >>> 0) === outer.base;
}

export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

function subnetOf(base: number, prefixLen: number): Subnet {
  const network = intToIp(base);
  return { base, prefixLen, network, cidr: `${network}/${prefixLen}` };
}

const SUBNET_FIX = `use "auto", or a free /24 inside ${DEFAULTS.network.range} such as 198.18.7.0/24`;

/**
 * Validate an explicit `network.subnet` for local mode: a network address with a prefix of
 * /16 to /24 inside the private benchmark range (all local-mode traffic stays in it).
 */
export function parseSubnet(value: string): Subnet {
  const bad = (why: string, fix = SUBNET_FIX): SymError =>
    new SymError('ESYM_BAD_SUBNET', { message: `network.subnet ${why}`, field: 'network.subnet', value, fix, exitCode: EXIT.usage });
  if (typeof value !== 'string') throw bad('must be "auto" or a CIDR like 198.18.7.0/24');
  const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(value.trim());
  if (!m) throw bad('must be "auto" or a CIDR like 198.18.7.0/24 (address/prefix length)');
  const ip = ipToInt(m[1]!);
  if (ip === undefined) throw bad(`has an invalid IPv4 address "${m[1]}"`);
  const len = Number(m[2]);
  if (len < LOCAL_DEFAULTS.minPrefixLen || len > LOCAL_DEFAULTS.maxPrefixLen) {
    throw bad(`prefix length must be between /${LOCAL_DEFAULTS.minPrefixLen} and /${LOCAL_DEFAULTS.maxPrefixLen} (local mode uses .1, .11-.99 and .101-.254)`);
  }
  const base = (ip & maskOf(len)) >>> 0;
  if (base !== ip) throw bad(`has host bits set`, `did you mean ${intToIp(base)}/${len}?`);
  const range = parseCidr(DEFAULTS.network.range)!;
  const s = subnetOf(base, len);
  if (!cidrContains(range, s)) throw bad(`must lie inside ${DEFAULTS.network.range} (the private benchmark range local mode keeps its traffic in)`);
  return s;
}

/** Every /24 of the range, in the order `auto` tries them (198.18.1.0/24 first; .0.0/24 last). */
export function candidateSubnets(range: string = DEFAULTS.network.range): Subnet[] {
  const r = parseCidr(range)!;
  const count = 2 ** (24 - r.prefixLen);
  const out: Subnet[] = [];
  for (let i = 1; i <= count; i++) out.push(subnetOf((r.base + (i % count) * 256) >>> 0, 24));
  return out;
}

/**
 * First candidate /24 that overlaps none of `used` (routes/addresses of the root namespace, other
 * than the default route) and is not in `claimed` (cidr strings of other symrun jobs).
 */
export function pickSubnet(used: readonly Cidr[], claimed: ReadonlySet<string>, range?: string): Subnet | undefined {
  const relevant = used.filter((u) => u.prefixLen > 0);
  for (const c of candidateSubnets(range)) {
    if (claimed.has(c.cidr)) continue;
    if (relevant.some((u) => cidrOverlaps(u, c))) continue;
    return c;
  }
  return undefined;
}

// ---- addresses inside a job's subnet ----------------------------------------------------------

export function coordinatorAddress(s: Cidr): string {
  return intToIp(s.base + LOCAL_DEFAULTS.coordinatorHostPart);
}

/** host1 = .11, host2 = .12, ... */
export function hostAddress(s: Cidr, hostIndex: number): string {
  const max = LOCAL_DEFAULTS.maxHosts;
  if (!Number.isInteger(hostIndex) || hostIndex < 1 || hostIndex > max) throw new RangeError(`host index ${hostIndex} outside 1..${max}`);
  return intToIp(s.base + LOCAL_DEFAULTS.firstHostPart + hostIndex - 1);
}

/** vm1 = .101, vm2 = .102, ... up to .254 */
export function guestAddress(s: Cidr, vmIndex: number): string {
  const max = LOCAL_DEFAULTS.maxGuests;
  if (!Number.isInteger(vmIndex) || vmIndex < 1 || vmIndex > max) {
    throw new SymError('ESYM_TOO_MANY_VMS', {
      message: `local mode has guest addresses for vm1..vm${max} only (asked for vm${vmIndex})`,
      field: 'vms',
      value: vmIndex,
      fix: `run at most ${max} VMs in local mode`,
      exitCode: EXIT.usage,
    });
  }
  return intToIp(s.base + LOCAL_DEFAULTS.firstGuestPart + vmIndex - 1);
}

// ---- fixed MAC addresses ----------------------------------------------------------------------
// Deterministic, locally administered unicast MACs: a re-created namespace gets the same MAC for the
// same IP, so nobody holds a stale ARP entry (docs/lab-notes.md). Interfaces with an IP: 02:53:<the 4 IP bytes>.
// Ports without an IP: 02:54:<subnet octets 2,3>:<role>:<index>.

function hex2(n: number): string {
  return (n & 255).toString(16).padStart(2, '0');
}

export function macForIp(ip: string): string {
  const v = ipToInt(ip);
  if (v === undefined) throw new RangeError(`bad IPv4 address ${ip}`);
  return ['02', '53', hex2(v >>> 24), hex2(v >>> 16), hex2(v >>> 8), hex2(v)].join(':');
}

export const PORT_ROLE = { switchBridge: 1, switchHostPort: 2, hostUplink: 3, switchCoordPort: 4 } as const;

export function macForPort(s: Cidr, role: keyof typeof PORT_ROLE, index = 0): string {
  return ['02', '54', hex2(s.base >>> 16), hex2(s.base >>> 8), hex2(PORT_ROLE[role]), hex2(index)].join(':');
}

export function validateIfName(name: string, field = 'tap'): string {
  if (typeof name !== 'string' || name.length < 1 || name.length > MAX_IFNAME || !/^[A-Za-z0-9_.-]+$/.test(name) || name === '.' || name === '..') {
    throw new SymError('ESYM_BAD_IFNAME', {
      message: `network interface name must be 1-${MAX_IFNAME} characters of letters, digits, '_', '.', '-'`,
      field,
      value: name,
      fix: 'use a short name such as tap-vm1',
      exitCode: EXIT.runtime,
    });
  }
  return name;
}
