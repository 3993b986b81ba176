// `symrun --local N`: N emulated hosts = N network namespaces joined through a switch namespace.
// See names.ts for the topology and naming, state.ts for crash-safe bookkeeping.
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SymError, EXIT, isSymError } from '../errors.js';
import { LOCAL_DEFAULTS } from '../defaults.js';
import { ip, ipBatch, listLinks, missingTool, type IpResult } from './ip.js';
import {
  HOST_BRIDGE, HOST_UPLINK, SWITCH_BRIDGE, SWITCH_COORD_PORT,
  coordLinkName, coordinatorAddress, cidrOverlaps, guestAddress, hostAddress, hostName, hostNetns,
  macForIp, macForPort, parseCidr, parseCoordLinkName, parseNetnsName, parseSubnet, pickSubnet,
  switchHostPort, switchNetns, validateHostCount, validateJobId,
  type Cidr, type Subnet,
} from './names.js';
import {
  claimPath, ensureStateDir, listClaims, listStateJobIds, ownerAlive, procStartTime, readState, pidNamespace, inInitialPidNamespace,
  removeFile, stateDir, statePath, tryClaim, writeState, type LocalJobState,
} from './state.js';

export interface LocalHost {
  /** host1, host2, ... */
  name: string;
  netns: string;
  /** host IP on the fabric (host agent <-> coordinator channel, migration traffic) */
  ip: string;
  /** bridge inside the host namespace that VM taps attach to */
  bridge: string;
}

export interface CleanupReport {
  namespaces: string[];
  links: string[];
  files: string[];
  /** processes found in the job's namespaces and stopped (SIGTERM, then SIGKILL) */
  killedPids: number[];
}

export interface LocalCluster {
  jobId: string;
  /** e.g. 198.18.3.0/24 */
  subnet: string;
  prefixLen: number;
  coordinatorIp: string;
  /** the coordinator's veth in the root namespace (carries coordinatorIp) */
  coordinatorLink: string;
  switchNetns: string;
  hosts: LocalHost[];
  /** vm1 -> .101, vm2 -> .102 ... */
  guestIp(vmIndex: number): string;
  destroy(): Promise<CleanupReport>;
}

export interface CreateLocalClusterOpts {
  jobId: string;
  hosts: number;
  subnet?: 'auto' | string;
  signal?: AbortSignal;
}

export function netnsExecPrefix(netns: string): string[] {
  return ['ip', 'netns', 'exec', netns];
}

export function requireRoot(what: string): void {
  if (process.getuid?.() === 0) return;
  throw new SymError('ESYM_NEEDS_ROOT', {
    message: `symrun --local needs root to ${what}`,
    field: '--local',
    fix: 'run it as root (sudo symrun --local ...), or leave out --local and run under Slurm (Slurm mode needs no root)',
    exitCode: EXIT.environment,
  });
}

const WHAT_NEEDS_ROOT = 'create network namespaces, bridges and veth pairs for the emulated hosts';

// ---- helpers ----------------------------------------------------------------------------------

const NETNS_DIR = '/run/netns';

function listNetns(): string[] {
  try {
    return fs.readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
}

function firstLines(s: string, n = 4): string {
  return s.split('\n').map((l) => l.trim()).filter(Boolean).slice(0, n).join('; ');
}

function setupFailed(stage: string, r: IpResult, jobId: string): SymError {
  if (r.exitCode === 127 && /sysctl.*not found/.test(r.stderr)) return missingTool('sysctl', 'procps');
  const err = firstLines(r.stderr) || `exit status ${r.exitCode}`;
  const perm = /Operation not permitted|Permission denied/.test(r.stderr);
  return new SymError(perm ? 'ESYM_NEEDS_ROOT' : 'ESYM_LOCAL_SETUP_FAILED', {
    message: `could not ${stage} for local job ${jobId}: ${err}`,
    field: '--local',
    fix: perm
      ? 'run as root with CAP_NET_ADMIN and CAP_SYS_ADMIN (not inside a restricted container), or leave out --local and run under Slurm'
      : 'check that the kernel has veth and bridge support (modprobe veth bridge) and that `ip netns add x && ip netns del x` works; everything this job created was removed',
    exitCode: perm ? EXIT.environment : EXIT.runtime,
    details: { stage, stderr: r.stderr },
  });
}

async function must(p: Promise<IpResult>, stage: string, jobId: string): Promise<void> {
  const r = await p;
  if (!r.ok) throw setupFailed(stage, r, jobId);
}

/**
 * Routes of the root namespace (IPv4, every table: the local table holds each address as a /32,
 * the main table its prefix), as CIDRs; default routes excluded.
 */
async function rootUsedCidrs(signal?: AbortSignal): Promise<{ cidr: Cidr; what: string }[]> {
  const routes = await ip(['-j', '-4', 'route', 'show', 'table', 'all'], { signal });
  const out: { cidr: Cidr; what: string }[] = [];
  try {
    for (const r of JSON.parse(routes.stdout || '[]') as { dst?: string; dev?: string; type?: string; table?: string }[]) {
      if (!r.dst || r.dst === 'default') continue;
      const c = parseCidr(r.dst);
      if (c && c.prefixLen > 0) {
        out.push({ cidr: c, what: `route ${r.type && r.type !== 'unicast' ? r.type + ' ' : ''}${r.dst}${r.dev ? ' dev ' + r.dev : ''}${r.table ? ' table ' + r.table : ''}` });
      }
    }
  } catch { /* no routes */ }
  return out;
}

/** Claims held by jobs that have no state file any more are leftovers: drop them. */
function liveClaims(): Map<string, string> {
  const claims = listClaims();
  const withState = new Set(listStateJobIds());
  for (const [cidr, holder] of claims) {
    if (!withState.has(holder)) {
      removeFile(claimPath(cidr));
      claims.delete(cidr);
    }
  }
  return claims;
}

async function chooseSubnet(jobId: string, explicit: Subnet | undefined, signal?: AbortSignal): Promise<Subnet> {
  const used = await rootUsedCidrs(signal);
  if (explicit) {
    const hit = used.find((u) => cidrOverlaps(u.cidr, explicit));
    if (hit) {
      throw new SymError('ESYM_SUBNET_IN_USE', {
        message: `network.subnet ${explicit.cidr} overlaps ${hit.what} on this machine`,
        field: 'network.subnet',
        value: explicit.cidr,
        fix: 'use network.subnet: auto, or another /24 inside 198.18.0.0/15 (see `ip route`)',
        exitCode: EXIT.usage,
      });
    }
    const claims = liveClaims();
    const holder = claims.get(explicit.cidr);
    if (holder === jobId) return explicit;
    if (holder === undefined && tryClaim(explicit.cidr, jobId)) return explicit;
    const other = holder ?? listClaims().get(explicit.cidr) ?? '?';
    throw new SymError('ESYM_SUBNET_IN_USE', {
      message: `network.subnet ${explicit.cidr} is used by another symrun --local job (${other})`,
      field: 'network.subnet',
      value: explicit.cidr,
      fix: `use network.subnet: auto, or wait for job ${other} to end (if it is dead: symrun cleanup)`,
      exitCode: EXIT.usage,
    });
  }
  const usedCidrs = used.map((u) => u.cidr);
  for (let attempt = 0; attempt < 64; attempt++) {
    const claims = liveClaims();
    const mine = [...claims].find(([, j]) => j === jobId);
    if (mine) return parseSubnet(mine[0]);
    const s = pickSubnet(usedCidrs, new Set(claims.keys()));
    if (!s) break;
    if (tryClaim(s.cidr, jobId)) return s;
    // lost a race with another job starting at the same moment: look again
  }
  throw new SymError('ESYM_NO_FREE_SUBNET', {
    message: 'no free /24 left in 198.18.0.0/15 for another symrun --local job',
    field: 'network.subnet',
    value: 'auto',
    fix: 'end other local jobs or remove stale ones (symrun cleanup), or free routes in 198.18.0.0/15',
    exitCode: EXIT.environment,
  });
}

const NS_SYSCTLS = [
  'net.ipv6.conf.all.disable_ipv6=1',
  'net.ipv6.conf.default.disable_ipv6=1',
  // only present when br_netfilter is loaded (-e ignores unknown keys): bridged frames must not be
  // handed to iptables/arptables
  'net.bridge.bridge-nf-call-iptables=0',
  'net.bridge.bridge-nf-call-ip6tables=0',
  'net.bridge.bridge-nf-call-arptables=0',
];

// ---- create -----------------------------------------------------------------------------------

export async function createLocalCluster(opts: CreateLocalClusterOpts): Promise<LocalCluster> {
  requireRoot(WHAT_NEEDS_ROOT);
  const jobId = validateJobId(opts.jobId);
  const n = validateHostCount(opts.hosts);
  const explicit = opts.subnet !== undefined && opts.subnet !== 'auto' ? parseSubnet(opts.subnet) : undefined;
  const { signal } = opts;
  signal?.throwIfAborted();

  ensureStateDir();
  const prev = readState(jobId);
  if (prev && ownerAlive(prev)) {
    throw new SymError('ESYM_LOCAL_JOB_EXISTS', {
      message: `a local cluster for job ${jobId} is already running (owner pid ${prev.ownerPid})`,
      field: 'jobId',
      value: jobId,
      fix: 'use another job id, or destroy the running cluster first',
      exitCode: EXIT.runtime,
    });
  }
  const swNs = switchNetns(jobId);
  const hostIdx = Array.from({ length: n }, (_, i) => i + 1);
  const hostNs = hostIdx.map((i) => hostNetns(jobId, i));
  const coordLink = coordLinkName(jobId);
  if (prev || listNetns().some((x) => parseNetnsName(x)?.jobId === jobId) || fs.existsSync(`/sys/class/net/${coordLink}`)) {
    await cleanupJob(jobId); // leftovers of a dead job with the same id
  }

  const state: LocalJobState = {
    version: 1,
    jobId,
    ownerPid: process.pid,
    ownerStartTime: procStartTime(process.pid),
    ownerPidns: pidNamespace(),
    createdAt: new Date().toISOString(),
    phase: 'creating',
    hosts: n,
    namespaces: [swNs, ...hostNs],
    links: [coordLink],
    files: [],
  };
  writeState(state); // before anything exists: a SIGKILLed owner leaves a record of what to remove
  const t0 = performance.now();
  const trace = process.env.SYMRUN_LOCAL_TRACE ? (what: string) => process.stderr.write(`symrun local ${jobId}: ${what} at ${(performance.now() - t0).toFixed(1)} ms\n`) : () => {};

  try {
    const subnet = await chooseSubnet(jobId, explicit, signal);
    state.subnet = subnet.cidr;
    state.files = [claimPath(subnet.cidr)];
    writeState(state);
    trace(`subnet ${subnet.cidr} chosen`);
    const len = subnet.prefixLen;
    const coordIp = coordinatorAddress(subnet);
    const hostIps = hostIdx.map((i) => hostAddress(subnet, i));

    // 1. namespaces (one process)
    signal?.throwIfAborted();
    await must(ipBatch(state.namespaces.map((ns) => `netns add ${ns}`), { signal }), 'create network namespaces', jobId);
    trace('namespaces created');

    // 2. the switch: bridge, a veth to every host namespace, a veth to the caller's (root) namespace
    signal?.throwIfAborted();
    const sw: string[] = [
      'link set dev lo up',
      `link add ${SWITCH_BRIDGE} address ${macForPort(subnet, 'switchBridge')} type bridge stp_state 0 forward_delay 0`,
      `link add ${SWITCH_COORD_PORT} address ${macForPort(subnet, 'switchCoordPort')} type veth peer name ${coordLink} address ${macForIp(coordIp)} netns ${process.pid}`,
      `link set dev ${SWITCH_COORD_PORT} master ${SWITCH_BRIDGE} up`,
    ];
    for (const i of hostIdx) {
      const port = switchHostPort(i);
      sw.push(
        `link add ${port} address ${macForPort(subnet, 'switchHostPort', i)} type veth peer name ${HOST_UPLINK} address ${macForPort(subnet, 'hostUplink', i)} netns ${hostNetns(jobId, i)}`,
        `link set dev ${port} master ${SWITCH_BRIDGE} up`,
      );
    }
    sw.push(`link set dev ${SWITCH_BRIDGE} up`);
    await must(nsSetup(swNs, sw, signal), 'build the switch namespace', jobId);
    trace('switch built');

    // 3. hosts and the coordinator's end, in parallel (interfaces made by step 2 are still down: no
    //    IPv6 address or DAD happens before the sysctls below disable IPv6 on them)
    signal?.throwIfAborted();
    const hostSetups = hostIdx.map((i, k) => must(nsSetup(hostNs[k]!, [
      'link set dev lo up',
      `link add ${HOST_BRIDGE} address ${macForIp(hostIps[k]!)} type bridge stp_state 0 forward_delay 0`,
      `link set dev ${HOST_UPLINK} master ${HOST_BRIDGE} up`,
      `addr add ${hostIps[k]}/${len} brd + dev ${HOST_BRIDGE}`,
      `link set dev ${HOST_BRIDGE} up`,
    ], signal), `set up emulated host ${hostName(i)} (namespace ${hostNs[k]})`, jobId));
    try {
      fs.writeFileSync(`/proc/sys/net/ipv6/conf/${coordLink}/disable_ipv6`, '1');
    } catch { /* kernel without IPv6 */ }
    const coordSetup = must(ipBatch([
      `addr add ${coordIp}/${len} brd + dev ${coordLink}`,
      `link set dev ${coordLink} up`,
    ], { signal }), `give the coordinator ${coordIp} on ${coordLink}`, jobId);
    const results = await Promise.allSettled([coordSetup, ...hostSetups]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    trace('hosts and coordinator link set up');

    state.phase = 'ready';
    writeState(state);

    let destroying: Promise<CleanupReport> | undefined;
    return {
      jobId,
      subnet: subnet.cidr,
      prefixLen: len,
      coordinatorIp: coordIp,
      coordinatorLink: coordLink,
      switchNetns: swNs,
      hosts: hostIdx.map((i, k) => ({ name: hostName(i), netns: hostNs[k]!, ip: hostIps[k]!, bridge: HOST_BRIDGE })),
      guestIp: (vmIndex: number) => guestAddress(subnet, vmIndex),
      destroy: () => (destroying ??= cleanupJob(jobId)),
    };
  } catch (e) {
    let cleanupError: unknown;
    try {
      await cleanupJob(jobId);
    } catch (ce) {
      cleanupError = ce;
    }
    if (signal?.aborted) throw signal.reason;
    const base = isSymError(e)
      ? e
      : new SymError('ESYM_LOCAL_SETUP_FAILED', {
          message: `could not create the local cluster for job ${jobId}: ${e instanceof Error ? e.message : String(e)}`,
          field: '--local',
          fix: 'everything this job created was removed; rerun with SYMRUN_DEBUG=1 for details',
          cause: e,
        });
    if (cleanupError !== undefined) {
      throw new SymError(base.code, {
        message: `${base.message} (and cleaning up failed: ${cleanupError instanceof Error ? cleanupError.message : String(cleanupError)})`,
        field: base.field,
        value: base.value,
        fix: isSymError(cleanupError) && cleanupError.fix ? cleanupError.fix : base.fix,
        exitCode: base.exitCode,
        details: { ...base.details, cleanupError: isSymError(cleanupError) ? cleanupError.toJSON() : String(cleanupError) },
        cause: e,
      });
    }
    throw base;
  }
}

/**
 * One process per namespace: set the namespace's sysctls (all.disable_ipv6 also covers interfaces
 * that already exist there), then run `ip -batch` with `lines` inside it.
 */
function nsSetup(netns: string, lines: readonly string[], signal?: AbortSignal): Promise<IpResult> {
  const script = `sysctl -e -q -w ${NS_SYSCTLS.join(' ')} || exit 97; exec ip -batch -`;
  return ip(['netns', 'exec', netns, 'sh', '-c', script], { signal, input: lines.join('\n') + '\n' });
}

// ---- processes inside namespaces ---------------------------------------------------------------

/** pids of processes whose network namespace is one of `names` (like `ip netns pids`, in one /proc scan). */
export function pidsInNetns(names: readonly string[]): number[] {
  const inodes = new Set<string>();
  for (const n of names) {
    try {
      inodes.add(`net:[${fs.statSync(`${NETNS_DIR}/${n}`).ino}]`);
    } catch { /* gone */ }
  }
  if (inodes.size === 0) return [];
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    const pid = Number(d);
    if (pid === process.pid) continue;
    try {
      if (inodes.has(fs.readlinkSync(`/proc/${d}/ns/net`))) out.push(pid);
    } catch { /* exited, zombie or not ours to see */ }
  }
  return out;
}

async function stopProcessesIn(names: readonly string[]): Promise<number[]> {
  const first = pidsInNetns(names);
  if (first.length === 0) return [];
  const killed = new Set<number>(first);
  const signalAll = (pids: number[], sig: NodeJS.Signals): void => {
    for (const p of pids) {
      try { process.kill(p, sig); } catch { /* gone */ }
    }
  };
  signalAll(first, 'SIGTERM');
  const deadline = Date.now() + LOCAL_DEFAULTS.killGraceMs;
  let left = first;
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(25);
    left = pidsInNetns(names);
    for (const p of left) killed.add(p);
    signalAll(left.filter((p) => !first.includes(p)), 'SIGTERM'); // started meanwhile
  }
  for (let round = 0; left.length > 0 && round < 40; round++) {
    signalAll(left, 'SIGKILL');
    await sleep(25);
    left = pidsInNetns(names);
    for (const p of left) killed.add(p);
  }
  return [...killed].sort((a, b) => a - b);
}

// ---- cleanup ----------------------------------------------------------------------------------

export async function cleanupJob(jobId: string): Promise<CleanupReport> {
  validateJobId(jobId);
  const st = readState(jobId);
  const nsOfJob = (x: string): boolean => parseNetnsName(x)?.jobId === jobId;
  const namespaces = listNetns().filter(nsOfJob);
  const rootLinks = (await listLinks()).map((l) => l.ifname).filter((x) => parseCoordLinkName(x) === jobId);

  if (namespaces.length > 0 || rootLinks.length > 0) {
    requireRoot(`remove the network namespaces and links of local job ${jobId}`);
  }
  const killedPids = await stopProcessesIn(namespaces);

  if (namespaces.length > 0 || rootLinks.length > 0) {
    // deleting the root end of the coordinator veth removes its peer too; `netns del` destroys
    // everything inside (asynchronously in the kernel, which is why the root link goes explicitly)
    await ipBatch([...rootLinks.map((l) => `link del dev ${l}`), ...namespaces.map((ns) => `netns del ${ns}`)], { force: true });
  }
  const leftNs = listNetns().filter(nsOfJob);
  const leftLinks = (await listLinks()).map((l) => l.ifname).filter((x) => parseCoordLinkName(x) === jobId);
  if (leftNs.length > 0 || leftLinks.length > 0) {
    throw new SymError('ESYM_LOCAL_CLEANUP_FAILED', {
      message: `could not remove everything of local job ${jobId}: left ${[...leftNs.map((x) => `namespace ${x}`), ...leftLinks.map((x) => `link ${x} (root namespace)`)].join(', ')}`,
      fix: `remove them by hand: ${[...leftLinks.map((x) => `ip link del ${x}`), ...leftNs.map((x) => `ip netns del ${x}`)].join('; ')}; then rm ${statePath(jobId)}`,
      exitCode: EXIT.runtime,
      details: { namespaces: leftNs, links: leftLinks, killedPids },
    });
  }

  const files: string[] = [];
  const dir = stateDir();
  const candidates = new Set<string>((st?.files ?? []).filter((f) => f.startsWith(dir + '/') && /\/net-[0-9.]+-[0-9]{1,2}$/.test(f)));
  for (const [cidr, holder] of listClaims()) if (holder === jobId) candidates.add(claimPath(cidr));
  for (const f of candidates) {
    // a claim listed in the state file may since have been re-taken by another job: check the holder
    let holder: string | undefined;
    try { holder = fs.readFileSync(f, 'utf8').trim(); } catch { continue; }
    if (holder === jobId && removeFile(f)) files.push(f);
  }
  if (removeFile(statePath(jobId))) files.push(statePath(jobId));
  return { namespaces: namespaces.sort(), links: rootLinks, files, killedPids };
}

/**
 * Jobs to clean up: a state file whose owner process is dead (whatever is left of it), or
 * namespaces / root links / subnet claims of symrun local jobs that have no state file at all.
 */
export async function findStaleJobs(): Promise<string[]> {
  // look at what exists BEFORE reading state files: a job writes its state file before creating
  // anything, so whatever we see here already had its state file when we list them below
  const nsJobs = listNetns().map((ns) => parseNetnsName(ns)?.jobId).filter((j): j is string => !!j);
  const linkJobs = (await listLinks()).map((l) => parseCoordLinkName(l.ifname)).filter((j): j is string => !!j);
  const claimJobs = [...listClaims().values()].filter((j) => /^[a-z0-9]{1,8}$/.test(j));
  const stale = new Set<string>();
  const withState = new Set<string>();
  // a job owned from another pid namespace (e.g. a node of a namespace lab sharing /run) is not ours
  // to judge: its owner's pid means nothing here
  const ours = pidNamespace();
  const initial = inInitialPidNamespace();
  for (const id of listStateJobIds()) {
    withState.add(id);
    const st = readState(id);
    if (st?.ownerPidns ? st.ownerPidns !== ours : !initial) continue;
    if (!st || !ownerAlive(st)) stale.add(id);
  }
  if (initial) for (const j of [...nsJobs, ...linkJobs, ...claimJobs]) if (!withState.has(j)) stale.add(j);
  return [...stale].sort();
}
