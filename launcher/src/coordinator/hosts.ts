// The hosts a job runs on, whatever provides them: `--local N` (emulated hosts = network namespaces
// on this machine) or a Slurm allocation (real nodes; host agents started with srun). The job
// (coordinator/job.ts) only sees this interface.
import fs from 'node:fs';
import path from 'node:path';
import dns from 'node:dns/promises';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { SymError, EXIT } from '../errors.js';
import { repoRoot, SLURM_DEFAULTS } from '../defaults.js';
import type { SymrunConfig } from '../config/types.js';
import { createLocalCluster, netnsExecPrefix } from '../local/index.js';
import { guestAddress, ipToInt, intToIp, parseCidr } from '../local/names.js';
import { parseJobs, parseNodes, parseSlurmEnv, type Env } from '../slurm/index.js';
import { nodeLayer } from '../node/layer.js';

export interface HostInfo { name: string; ip: string; bridge: string }

export interface HostSet {
  mode: 'local' | 'slurm';
  /** address host agents connect to */
  coordinatorIp: string;
  /** guests' prefix */
  prefixLen: number;
  /** address of VM i (1-based) on the interconnect L2 */
  guestIp(vmIndex: number): string;
  /** slurm: the allocation's job id */
  slurmJobId?: string;
  /**
   * slurm, jobs of ordinary users: the root node layer prepared every node (node/prolog.ts). Taps come
   * from the node helper, names and MACs from node/names.ts, the run directory is root's record's.
   */
  nodeLayer?: { job: string; runDir: string; mtu: number };
  /** order: the first N run VMs, the rest are spares */
  hosts: HostInfo[];
  /** start the host agent of `host` (its own process group) */
  startAgent(host: string, env: Record<string, string>, logFile: string): ChildProcess;
  /**
   * slurm: take these nodes of the allocation (`scontrol show job`, or symrun watchd) as hosts too:
   * the ones not in `hosts` yet are appended (after every other host: spares), their addresses
   * resolved, and returned. Hosts are never removed or reordered (the job marks a node that left lost).
   */
  adopt?(nodes: string[]): Promise<HostInfo[]>;
  destroy(): Promise<void>;
}

export function agentScript(): string {
  return path.join(repoRoot(), 'dist', 'launcher', 'src', 'agent', 'hostagent.js');
}

function spawnAgent(argv: string[], env: Record<string, string>, logFile: string): ChildProcess {
  const log = fs.openSync(logFile, 'a');
  try {
    return spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, detached: true, stdio: ['ignore', log, log] });
  } finally {
    fs.closeSync(log);
  }
}

// ---- local ------------------------------------------------------------------------------------

export async function createLocalHosts(opts: { jobId: string; hosts: number; subnet?: string; signal?: AbortSignal }): Promise<HostSet> {
  const cluster = await createLocalCluster({ jobId: opts.jobId, hosts: opts.hosts, subnet: opts.subnet, signal: opts.signal });
  const netns = new Map(cluster.hosts.map((h) => [h.name, h.netns]));
  return {
    mode: 'local',
    coordinatorIp: cluster.coordinatorIp,
    prefixLen: cluster.prefixLen,
    guestIp: (i) => cluster.guestIp(i),
    hosts: cluster.hosts.map((h) => ({ name: h.name, ip: h.ip, bridge: h.bridge })),
    startAgent: (host, env, logFile) => {
      const ns = netns.get(host);
      if (!ns) throw new SymError('ESYM_NO_HOST', { message: `no emulated host ${host}` });
      return spawnAgent([...netnsExecPrefix(ns), process.execPath, agentScript()], env, logFile);
    },
    destroy: async () => { await cluster.destroy(); },
  };
}

// ---- slurm ------------------------------------------------------------------------------------

/** Run a Slurm client command; resolves with stdout, throws ESYM_SLURM_COMMAND. */
export function slurmCommand(argv: string[], timeoutMs: number = SLURM_DEFAULTS.scontrolTimeoutMs, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs, signal, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        reject(new SymError('ESYM_SLURM_COMMAND', {
          message: `${argv.join(' ')} failed: ${code === 'ENOENT' ? `${argv[0]} not found` : String(stderr).trim() || err.message}`,
          fix: code === 'ENOENT' ? 'install the Slurm client commands on every node (scontrol, srun)' : 'check that slurmctld is reachable (scontrol ping)',
          exitCode: EXIT.environment,
        }));
        return;
      }
      resolve(String(stdout));
    });
  });
}

/**
 * Guests' /24 in Slurm mode: network.subnet if explicit, else one /24 of 198.18.0.0/15 picked from the
 * Slurm job id (two jobs share a /24 only when their ids are 512 apart; the guests of different jobs
 * are on different L2 taps of the same bridges, so that only matters for jobs sharing nodes).
 */
export function slurmGuestSubnet(subnet: string, slurmJobId: string): { base: number; prefixLen: number; cidr: string } {
  if (subnet && subnet !== 'auto') {
    const c = parseCidr(subnet);
    if (!c || !/\//.test(subnet) || c.prefixLen < 16 || c.prefixLen > 24) {
      throw new SymError('ESYM_BAD_SUBNET', { message: `network.subnet ${subnet} is not a /16../24 network`, field: 'network.subnet', value: subnet, fix: 'use "auto" or a CIDR like 198.18.7.0/24', exitCode: EXIT.usage });
    }
    return { ...c, cidr: `${intToIp(c.base)}/${c.prefixLen}` };
  }
  const range = parseCidr(SLURM_DEFAULTS.guestRange)!;
  const count = 2 ** (24 - range.prefixLen);
  const idNum = Number(/^([0-9]+)/.exec(slurmJobId)?.[1] ?? '0');
  const base = (range.base + (idNum % count) * 256) >>> 0;
  return { base, prefixLen: 24, cidr: `${intToIp(base)}/24` };
}

/** The IPv4 address of `dev` on this node (`ip -j -4 addr show dev DEV`). */
export async function bridgeAddress(dev: string): Promise<string> {
  let out: string;
  try {
    out = await slurmCommand(['ip', '-j', '-4', 'addr', 'show', 'dev', dev], 5_000);
  } catch {
    out = '[]';
  }
  let addr: string | undefined;
  try {
    const links = JSON.parse(out || '[]') as Array<{ addr_info?: Array<{ family?: string; local?: string }> }>;
    addr = links.flatMap((l) => l.addr_info ?? []).find((a) => a.family === 'inet' && a.local)?.local;
  } catch { /* not JSON */ }
  if (!addr) {
    throw new SymError('ESYM_NO_BRIDGE', {
      message: `bridge ${dev} has no IPv4 address on this node`,
      field: 'network.bridge',
      value: dev,
      fix: `create a bridge carrying the node's address on every node (its VMs' taps attach to it), or name yours in symrun.yaml: network: { bridge: NAME }`,
      exitCode: EXIT.environment,
    });
  }
  return addr;
}

async function resolveAddr(addr: string): Promise<string> {
  if (ipToInt(addr) !== undefined) return addr;
  return (await dns.lookup(addr, { family: 4 })).address;
}

/** The allocation's node list as slurmctld has it now (`scontrol show job -o ID`); throws if it cannot say. */
export async function currentAllocationNodes(env: Env, signal?: AbortSignal): Promise<string[]> {
  const alloc = parseSlurmEnv(env);
  const job = parseJobs(await slurmCommand(['scontrol', 'show', 'job', '-o', alloc.jobId], undefined, signal))[0];
  if (!job || job.nodeList.length === 0) throw new Error(`scontrol show job ${alloc.jobId}: no node list`);
  return job.nodeList;
}

/** The allocation's node list: `scontrol show job -o ID` (current), SLURM_JOB_NODELIST if that fails. */
export async function allocationNodes(env: Env, signal?: AbortSignal): Promise<string[]> {
  try {
    return await currentAllocationNodes(env, signal);
  } catch {
    return parseSlurmEnv(env).nodeList;
  }
}

export interface SlurmHostsOpts {
  config: SymrunConfig;
  env?: Env;
  signal?: AbortSignal;
  /** nodes that run no VM: --spares plus the nodes -N leaves over (coordinator/placement.ts); the first nodes - spares run VMs */
  spares: number;
}

export async function createSlurmHosts(opts: SlurmHostsOpts): Promise<HostSet & { slurmJobId: string; nodeName: string }> {
  const env = opts.env ?? process.env;
  const alloc = parseSlurmEnv(env);
  const nodeName = alloc.nodeName ?? (await slurmCommand(['hostname'], 5_000)).trim();
  // with the node layer the job has its own bridge (no address: the coordinator talks to the host
  // agents on the node network); without it (jobs run as root), the site's VM bridge carries the node's
  const layer = nodeLayer(alloc.jobId, nodeName);
  if (!layer && process.getuid?.() !== 0) throw noNodeLayer(alloc.jobId, nodeName);
  if (layer) checkExtraArgs(opts.config, layer.cfg.allowExtraArgs);
  const bridge = layer ? layer.record.network!.bridge : opts.config.network.bridge ?? SLURM_DEFAULTS.bridge;
  const subnet = slurmGuestSubnet(opts.config.network.subnet, alloc.jobId);
  const [nodes, coordinatorIp] = await Promise.all([allocationNodes(env, opts.signal), layer ? Promise.resolve(layer.record.network!.local) : bridgeAddress(bridge)]);
  if (nodes.length <= opts.spares) {
    throw new SymError('ESYM_NO_HOSTS', {
      message: `the allocation has ${nodes.length} node${nodes.length === 1 ? '' : 's'}; with --spares ${opts.spares} none is left to run a VM`,
      field: '--spares', value: opts.spares, fix: `allocate more nodes (sbatch -N ${opts.spares + 1} or more) or pass fewer --spares`, exitCode: EXIT.usage,
    });
  }
  const addrs = async (names: string[]): Promise<HostInfo[]> => {
    const recs = parseNodes(await slurmCommand(['scontrol', 'show', 'node', '-o', names.join(',')], undefined, opts.signal));
    const byName = new Map(recs.map((r) => [r.name, r]));
    return Promise.all(names.map(async (n) => ({ name: n, ip: await resolveAddr(byName.get(n)?.addr ?? byName.get(n)?.hostname ?? n), bridge })));
  };
  const set = {
    mode: 'slurm' as const,
    slurmJobId: alloc.jobId,
    nodeName,
    ...(layer ? { nodeLayer: { job: alloc.jobId, runDir: layer.record.runDir, mtu: layer.record.network!.mtu } } : {}),
    coordinatorIp,
    prefixLen: subnet.prefixLen,
    guestIp: (i: number) => guestAddress(subnet, i),
    hosts: await addrs(nodes),
    startAgent: (host: string, agentEnv: Record<string, string>, logFile: string): ChildProcess =>
      spawnAgent(['srun', '--overlap', '--ntasks-per-node=1', '-N1', '-n1', '-w', host, '--kill-on-bad-exit=0', '--job-name=symrun-hostagent', process.execPath, agentScript()], agentEnv, logFile),
    adopt: async (nodes: string[]): Promise<HostInfo[]> => {
      const fresh = nodes.filter((n) => !set.hosts.some((h) => h.name === n));
      const added = fresh.length ? await addrs(fresh) : [];
      // appended, never removed or reordered: the job's VM hosts are the first ones, by index
      const out = added.filter((h) => !set.hosts.some((x) => x.name === h.name));
      set.hosts.push(...out);
      return out;
    },
    destroy: async (): Promise<void> => { /* the host agents (srun steps) are stopped by the job; Slurm cleans the rest */ },
  };
  return set;
}

/**
 * vm.extraArgs on a site's nodes: QEMU runs as the user either way, so this is the site's policy, not a
 * privilege boundary: what the site set for every VM (-sandbox, the network, the devices) holds unless
 * the site allows more (SYMRUN_ALLOW_EXTRA_ARGS=yes in node.conf).
 */
export function checkExtraArgs(config: SymrunConfig, allowed: boolean): void {
  if (allowed || config.vm.extraArgs.length === 0) return;
  throw new SymError('ESYM_EXTRA_ARGS', {
    message: `this site does not allow vm.extraArgs (QEMU options of your own) for jobs on its nodes`,
    field: 'vm.extraArgs', value: config.vm.extraArgs.join(' '),
    fix: 'remove vm.extraArgs from your symrun.yaml, or ask the site to set SYMRUN_ALLOW_EXTRA_ARGS=yes in /etc/symrun/node.conf (docs/site-install.md)',
    exitCode: EXIT.usage,
  });
}

/** A job of an ordinary user on a node the prolog did not prepare: what to do about it. */
export function noNodeLayer(job: string, node: string): SymError {
  return new SymError('ESYM_NODE_LAYER', {
    message: `Slurm job ${job} has no symrun node layer on ${node}: as an ordinary user symrun needs the site's prolog to prepare the job's network and run directory`,
    fix: 'submit with `#SBATCH --comment=symrun` (or ask the site to prepare every job: SYMRUN_PREPARE=all); a site installs the node layer as docs/site-install.md says',
    exitCode: EXIT.environment,
  });
}

/** `--local N` → local; inside an allocation → slurm; else ESYM_NO_HOSTS. */
export function hostMode(config: SymrunConfig, env: Env = process.env): 'local' | 'slurm' {
  if (config.local >= 1) return 'local';
  if (env.SLURM_JOB_ID || env.SLURM_JOBID) return 'slurm';
  throw new SymError('ESYM_NO_HOSTS', { message: 'no hosts to run on: not inside a Slurm allocation and --local not given', field: '--local', fix: 'run inside sbatch/salloc, or pass --local N to emulate N hosts on this machine' });
}
