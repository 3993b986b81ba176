// A real multi-node Slurm 22.05 cluster on one machine, for system tests and demos.
//
//   controller: unshare --net --uts --mount --pid  (hostname "ctl")
//               br0 = CTL_IP/24 ── port n1 ─┐ veth
//               munged (AuthInfo=socket=STATE/munge/munge.socket), slurmctld
//   node nI:    unshare --net --uts --mount --pid --mount-proc  (hostname nI)
//               up0 ─ enslaved to symbr0 = NODE_IP/24 (VMs booted later attach their taps to symbr0)
//               private /tmp and /dev/shm, /etc/hosts and /etc/slurm bind-mounted from STATE/etc
//               slurmd
// Everything lives under one state directory (/run/symrun-slurmlab/NAME). Namespaces are held only by
// processes (no `ip netns add`, no link in the root namespace), so killing a namespace's init removes
// its namespaces, bridges, veths and mounts. Each init's argv carries a marker
// "symrun-slurmlab-init:NAME:ROLE", so cleanupStale() finds a lab whose creator was killed even
// without its state file. The machine's hostname, /etc and network are not touched.
//
// Addresses: SUBNET .1 controller, .11.. nodes (like --local: .1 coordinator, .11 hosts, .101 guests).
// The default subnet 198.19.200.0/24 lies inside --local's 198.18.0.0/15, but never collides with it:
// the lab puts no address or route into the root namespace (--local only avoids routes it sees there,
// and inside a lab node it would see and skip symbr0's /24).
// MACs are fixed: interfaces with an IP get 02:53:<IP bytes> (--local's rule), ports without one
// 02:55:<subnet octets 2,3>:<role>:<node index>, so a restarted node meets no stale ARP entry.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { SymError, EXIT, type ErrorCode } from '../../launcher/src/errors.js';
import { repoRoot } from '../../launcher/src/defaults.js';
import {
  parseNodes, parseJobs, nodeCondition, compressHostlist, type SlurmNode, type SlurmJob,
} from '../../launcher/src/slurm/index.js';

export const LAB_ROOT = '/run/symrun-slurmlab';
export const LAB_DEFAULTS = {
  name: 'lab',
  subnet: '198.19.200.0/24',
  cpusPerNode: 2,
  realMemoryMiB: 1024,
  controllerHost: 'ctl',
  controllerBridge: 'br0',
  nodeBridge: 'symbr0',
  nodeUplink: 'up0',
  healthCheckInterval: 5,
  maxNodes: 89,
  startTimeoutMs: 30_000,
  restartTimeoutMs: 30_000,
  pollMs: 100,
  stopTimeoutMs: 10_000,
} as const;

const MARKER = 'symrun-slurmlab-init';
const NAME_RE = /^[a-z][a-z0-9]{0,15}$/;
const SYS_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const REQUIRED_TOOLS = ['unshare', 'nsenter', 'ip', 'bash', 'munged', 'slurmctld', 'slurmd', 'scontrol', 'sbatch', 'srun'];

/** The init of every namespace: reaps adopted orphans (slurmd daemons, slurmstepd), exits on TERM. */
const INIT_SCRIPT = "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

export interface SlurmLabOptions {
  nodes: number;
  /** lab name (state dir /run/symrun-slurmlab/NAME, ClusterName): [a-z][a-z0-9]{0,15}; default "lab" */
  name?: string;
  /** absolute path of a Prolog program (adds PrologFlags=Alloc: runs on every allocated node) */
  prolog?: string;
  /**
   * the root node layer as a site installs it (docs/site-install.md): each node gets /etc/symrun/node.conf
   * (the lab's, bind-mounted) and runs the node helper (`symrun node helper`, as root, like slurmd);
   * use with the symrun prolog/epilog for jobs of ordinary users
   */
  nodeLayer?: boolean;
  epilog?: string;
  healthCheckProgram?: string;
  /** seconds; default 5 when a health check program is given */
  healthCheckInterval?: number;
  /** more slurm.conf lines, appended last */
  extraConf?: string[];
  /** CPUs each node advertises (overcommit is fine); default 2 */
  cpusPerNode?: number;
  /** a /24; default 198.19.200.0/24 */
  subnet?: string;
  startTimeoutMs?: number;
  /** progress lines ("started n1 (198.19.200.11, pid 1234)") */
  log?: (line: string) => void;
  /**
   * a lab that belongs to the creating process (tests): once that process is gone, the next
   * startSlurmLab removes it. Labs started by scripts/slurm-lab are not temporary (their creator exits).
   */
  temporary?: boolean;
}

export interface LabNode {
  name: string;
  ip: string;
  /** host pid of the node's namespace init (nsenter -t PID); 0 while crashed */
  pid: number;
  mac: string;
  index: number;
}

export interface ExecOpts {
  /** run as this user (setpriv with the user's uid, gid and groups; HOME, USER and LOGNAME set) */
  user?: string;
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string;
  timeoutMs?: number;
  /** throw when the command exits non-zero (default false) */
  reject?: boolean;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  ok: boolean;
  ms: number;
}

export interface SbatchOpts {
  /** submit directory = the job's working directory; must be visible on the nodes (not under /tmp) */
  cwd?: string;
  /** sbatch options, e.g. ["-N", "3", "--no-kill", "-o", "out.%j"] */
  args?: string[];
  env?: Record<string, string | undefined>;
}

export interface StopReport {
  killedPids: number[];
  removed: string[];
  ms: number;
}

export interface SlurmLab {
  name: string;
  stateDir: string;
  /** directory bind-mounted as /etc/slurm on the nodes (slurm.conf, hosts) */
  confDir: string;
  /** SLURM_CONF for clients outside the nodes */
  confFile: string;
  /** a directory every node sees (default cwd of sbatch/exec) */
  workDir: string;
  subnet: string;
  controllerIp: string;
  controllerPid: number;
  nodes: LabNode[];
  /** milliseconds the start took, until every node was IDLE */
  startMs: number;
  node(name: string): LabNode;
  /** run a command inside a node's namespaces (nsenter -t PID -n -u -m -p); "ctl" runs a client on the controller */
  exec(node: string, argv: string[], opts?: ExecOpts): Promise<ExecResult>;
  /** run a Slurm client (sbatch, scontrol, sinfo, squeue, scancel, …) on the controller, SLURM_CONF set */
  client(argv: string[], opts?: ExecOpts): Promise<ExecResult>;
  /** submit a batch script (its text, or a path) → job id */
  sbatch(script: string, opts?: SbatchOpts): Promise<string>;
  /** scontrol ARGS → stdout (throws on a non-zero exit) */
  scontrol(args: string[]): Promise<string>;
  showNodes(): Promise<SlurmNode[]>;
  showNode(name: string): Promise<SlurmNode>;
  showJob(jobId: string): Promise<SlurmJob>;
  /** wait until the job's JobState is one of `states` (or matches the RegExp) */
  waitJob(jobId: string, states: readonly string[] | RegExp, timeoutMs: number): Promise<SlurmJob>;
  /** wait until the node's State (e.g. "MIXED+DRAIN") matches */
  waitNodeState(node: string, re: RegExp, timeoutMs: number): Promise<SlurmNode>;
  drain(node: string, reason: string): Promise<void>;
  /**
   * Give the running job `jobId` the node `node` too, as a user or admin does it in Slurm 22.05: an
   * allocation on that node with `--dependency=expand:JOB`, its nodes released to JOB (NumNodes=0 on
   * it, NumNodes=ALL on JOB). Returns the job as slurmctld has it afterwards.
   */
  expandJob(jobId: string, node: string, timeoutMs?: number): Promise<SlurmJob>;
  undrain(node: string): Promise<void>;
  /** cut the node's link, kill its slurmd and everything in its namespaces (a power cut) */
  crash(node: string): Promise<void>;
  /** crash it if it runs, boot it again (same IP/MAC), wait until its slurmd has registered; returns its state then */
  restart(node: string, opts?: { timeoutMs?: number }): Promise<SlurmNode>;
  /** remove every process, namespace, link, mount and file of the lab */
  stop(): Promise<StopReport>;
}

// ---- pure helpers ------------------------------------------------------------------------------

function ipToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  return (((p[0]! << 24) >>> 0) + (p[1]! << 16) + (p[2]! << 8) + p[3]!) >>> 0;
}
function intToIp(v: number): string {
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}
const hex2 = (n: number) => (n & 255).toString(16).padStart(2, '0');
export function labMacForIp(ip: string): string {
  const v = ipToInt(ip);
  return ['02', '53', hex2(v >>> 24), hex2(v >>> 16), hex2(v >>> 8), hex2(v)].join(':');
}
const PORT_ROLE = { controllerPort: 2, nodeUplink: 3 } as const;
export function labMacForPort(subnetBase: number, role: keyof typeof PORT_ROLE, index: number): string {
  return ['02', '55', hex2(subnetBase >>> 16), hex2(subnetBase >>> 8), hex2(PORT_ROLE[role]), hex2(index)].join(':');
}

function labError(code: ErrorCode, message: string, fix: string, details?: Record<string, unknown>): SymError {
  return new SymError(code, { message, fix, exitCode: EXIT.environment, details });
}

function parseSubnet24(s: string): number {
  const m = /^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.0\/24$/.exec(s);
  if (!m || [m[1], m[2], m[3]].some((x) => Number(x) > 255)) {
    throw new SymError('ESYM_LAB_SUBNET', { message: `lab subnet must be a /24 like 198.19.200.0/24`, field: 'subnet', value: s, fix: 'pass subnet: "198.19.200.0/24"', exitCode: EXIT.usage });
  }
  return ipToInt(`${m[1]}.${m[2]}.${m[3]}.0`);
}

export interface LabLayout {
  name: string;
  stateDir: string;
  confDir: string;
  subnet: string;
  controllerIp: string;
  nodes: Array<{ name: string; index: number; ip: string; mac: string; uplinkMac: string; portMac: string }>;
}

export function labLayout(name: string, nodes: number, subnet: string = LAB_DEFAULTS.subnet): LabLayout {
  if (!NAME_RE.test(name)) {
    throw new SymError('ESYM_LAB_NAME', { message: 'lab name must be 1-16 lowercase letters or digits, starting with a letter', field: 'name', value: name, fix: 'use a name like "lab" or "t42"', exitCode: EXIT.usage });
  }
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > LAB_DEFAULTS.maxNodes) {
    throw new SymError('ESYM_LAB_NODES', { message: `a lab has 1 to ${LAB_DEFAULTS.maxNodes} nodes`, field: 'nodes', value: nodes, fix: 'start it with e.g. 4 nodes', exitCode: EXIT.usage });
  }
  const base = parseSubnet24(subnet);
  const stateDir = path.join(LAB_ROOT, name);
  return {
    name,
    stateDir,
    confDir: path.join(stateDir, 'etc'),
    subnet,
    controllerIp: intToIp(base + 1),
    nodes: Array.from({ length: nodes }, (_, k) => {
      const index = k + 1;
      const ip = intToIp(base + 10 + index);
      return {
        name: `n${index}`, index, ip, mac: labMacForIp(ip),
        uplinkMac: labMacForPort(base, 'nodeUplink', index), portMac: labMacForPort(base, 'controllerPort', index),
      };
    }),
  };
}

export function slurmConf(layout: LabLayout, opts: SlurmLabOptions): string {
  const S = layout.stateDir;
  const cpus = opts.cpusPerNode ?? LAB_DEFAULTS.cpusPerNode;
  const lines = [
    `# written by test/cluster/slurm.ts for lab "${layout.name}"; removed with the lab`,
    `ClusterName=${layout.name}`,
    `SlurmctldHost=${LAB_DEFAULTS.controllerHost}(${layout.controllerIp})`,
    'SlurmUser=root',
    'SlurmdUser=root',
    'AuthType=auth/munge',
    `AuthInfo=socket=${S}/munge/munge.socket`,
    'CredType=cred/munge',
    `StateSaveLocation=${S}/ctl/state`,
    `SlurmctldPidFile=${S}/ctl/slurmctld.pid`,
    `SlurmctldLogFile=${S}/ctl/slurmctld.log`,
    `SlurmdSpoolDir=${S}/nodes/%n/spool`,
    `SlurmdPidFile=${S}/nodes/%n/slurmd.pid`,
    `SlurmdLogFile=${S}/nodes/%n/slurmd.log`,
    'ProctrackType=proctrack/linuxproc',
    'TaskPlugin=task/none',
    'SelectType=select/cons_tres',
    'SelectTypeParameters=CR_CPU',
    'JobAcctGatherType=jobacct_gather/none',
    'AccountingStorageType=accounting_storage/none',
    'JobCompType=jobcomp/none',
    'MpiDefault=none',
    'ReturnToService=1',
    'SlurmdTimeout=10',
    'MessageTimeout=5',
    // permit_job_expansion: a running job can be given more nodes (expandJob)
    'SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,permit_job_expansion',
    // nodes advertise more CPUs than the machine has; do not mark them INVAL for it
    'SlurmdParameters=config_overrides',
  ];
  if (opts.prolog) lines.push(`Prolog=${opts.prolog}`, 'PrologFlags=Alloc');
  if (opts.epilog) lines.push(`Epilog=${opts.epilog}`);
  if (opts.healthCheckProgram) {
    lines.push(`HealthCheckProgram=${opts.healthCheckProgram}`, `HealthCheckInterval=${opts.healthCheckInterval ?? LAB_DEFAULTS.healthCheckInterval}`, 'HealthCheckNodeState=ANY');
  }
  for (const n of layout.nodes) {
    lines.push(`NodeName=${n.name} NodeAddr=${n.ip} CPUs=${cpus} Sockets=1 CoresPerSocket=${cpus} ThreadsPerCore=1 RealMemory=${LAB_DEFAULTS.realMemoryMiB} State=UNKNOWN`);
  }
  lines.push(`PartitionName=lab Nodes=${compressHostlist(layout.nodes.map((n) => n.name))} Default=YES MaxTime=INFINITE State=UP`);
  lines.push(...(opts.extraConf ?? []));
  return lines.join('\n') + '\n';
}

/** /etc/symrun/node.conf of the lab's nodes (the root node layer's site settings: docs/site-install.md). */
export function labNodeConf(stateDir: string): string {
  return [
    '# written by test/cluster/slurm.ts: the lab\'s site settings for symrun\'s root node layer',
    // inside the lab's state directory: two labs (each with an n1, each with a job 1) never meet
    `SYMRUN_NODE_STATE=${stateDir}/node-state`,
    `SYMRUN_RUNTIME_DIR=${stateDir}/run`,
    // the lab's node network: symbr0 carries the node's address (a real site: the node's NIC)
    `SYMRUN_OVERLAY_DEV=${LAB_DEFAULTS.nodeBridge}`,
    'SYMRUN_PREPARE=comment',
    '',
  ].join('\n');
}

export function hostsFile(layout: LabLayout): string {
  return ['127.0.0.1 localhost', '::1 localhost', `${layout.controllerIp} ${LAB_DEFAULTS.controllerHost}`, ...layout.nodes.map((n) => `${n.ip} ${n.name}`)].join('\n') + '\n';
}

// ---- processes ---------------------------------------------------------------------------------

interface ProcRec { pid: number; start: string; unsharePid: number }
interface LabState {
  version: 1;
  name: string;
  created: string;
  creatorPid: number;
  creatorStart: string;
  nodeCount: number;
  subnet: string;
  opts: Omit<SlurmLabOptions, 'log'>;
  ctl?: ProcRec;
  nodes: Record<string, ProcRec | undefined>;
}

function procStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
function alive(rec: { pid: number; start: string } | undefined): boolean {
  return !!rec && rec.pid > 0 && procStart(rec.pid) === rec.start;
}
function nsOf(pid: number, kind: 'net' | 'mnt' | 'pid' | 'uts'): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return undefined;
  }
}
function allPids(): number[] {
  return fs.readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d)).map(Number);
}
function cmdline(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}
/** Processes whose argv carries this lab's marker (inits and their unshare parents). */
function markedPids(name?: string): Array<{ pid: number; lab: string; role: string; isInit: boolean }> {
  const out: Array<{ pid: number; lab: string; role: string; isInit: boolean }> = [];
  for (const pid of allPids()) {
    const argv = cmdline(pid);
    const mark = argv.find((a) => a.startsWith(`${MARKER}:`));
    if (!mark) continue;
    const [, lab = '', role = ''] = mark.split(':');
    if (name !== undefined && lab !== name) continue;
    out.push({ pid, lab, role, isInit: argv[0] !== 'unshare' });
  }
  return out;
}
/** Every process in one of the given namespaces (inode strings like "net:[4026532001]"). */
function pidsInNamespaces(ns: ReadonlySet<string>): number[] {
  if (ns.size === 0) return [];
  const out: number[] = [];
  for (const pid of allPids()) {
    // a zombie holds no namespace but its pid one (its parent reaps it); it cannot be killed anyway
    if (pid === process.pid || isZombie(pid)) continue;
    for (const k of ['pid', 'net', 'mnt'] as const) {
      const v = nsOf(pid, k);
      if (v && ns.has(v)) {
        out.push(pid);
        break;
      }
    }
  }
  return out;
}
function kill(pid: number, sig: NodeJS.Signals = 'SIGKILL'): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

function cleanEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith('SLURM_') || k.startsWith('SLURMD_') || k.startsWith('SBATCH_') || k.startsWith('SALLOC_') || k.startsWith('SRUN_')) continue;
    env[k] = v;
  }
  env.PATH = env.PATH ? `${env.PATH}:${SYS_PATH}` : SYS_PATH;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

async function run(file: string, args: string[], opts: ExecOpts & { extendEnv?: boolean } = {}): Promise<ExecResult> {
  const t0 = performance.now();
  const r = await execa(file, args, {
    reject: false,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : undefined,
    env: opts.env as Record<string, string> | undefined,
    extendEnv: opts.extendEnv ?? false,
    timeout: opts.timeoutMs,
    stripFinalNewline: false,
    cwd: opts.cwd,
  });
  const res: ExecResult = {
    exitCode: r.exitCode ?? -1,
    stdout: String(r.stdout ?? ''),
    stderr: String(r.stderr ?? '') + (r.exitCode === undefined ? `\n${r.message ?? ''}` : ''),
    ok: r.exitCode === 0,
    ms: performance.now() - t0,
  };
  if (opts.reject && !res.ok) {
    throw labError('ESYM_LAB_COMMAND', `\`${[file, ...args].join(' ')}\` failed (exit ${res.exitCode}): ${res.stderr.trim() || res.stdout.trim()}`, 'see the output above and the logs in the lab state directory');
  }
  return res;
}

/** argv run as `user` (setpriv: the user's uid, gid and supplementary groups; no capabilities). */
function asUser(argv: string[], user?: string): string[] {
  if (!user) return argv;
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) throw labError('ESYM_LAB_NAME', `bad user name ${JSON.stringify(user)}`, 'a POSIX user name');
  return ['setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', ...argv];
}

function userEnv(env: Record<string, string | undefined> | undefined, user: string): Record<string, string | undefined> {
  const home = (() => { try { return execFileSync('getent', ['passwd', user]).toString().split(':')[5]; } catch { return undefined; } })();
  return { ...(env ?? {}), USER: user, LOGNAME: user, ...(home ? { HOME: home } : {}) };
}

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return `(no ${file})`;
  }
}

async function checkPrerequisites(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw labError('ESYM_NEEDS_ROOT', 'the Slurm lab needs root (namespaces, bridges, mounts, slurmd)', 'run it as root');
  }
  const missing: string[] = [];
  for (const tool of REQUIRED_TOOLS) {
    const found = SYS_PATH.split(':').concat((process.env.PATH ?? '').split(':')).some((d) => d && fs.existsSync(path.join(d, tool)));
    if (!found) missing.push(tool);
  }
  if (missing.length > 0) {
    throw labError('ESYM_MISSING_TOOL', `the Slurm lab needs ${missing.join(', ')}, not installed`, 'run `bash scripts/setup` (installs slurm-wlm, munge, iproute2, util-linux)', { missing });
  }
  if (!fs.existsSync('/etc/slurm') || !fs.statSync('/etc/slurm').isDirectory()) {
    throw labError('ESYM_MISSING_TOOL', '/etc/slurm does not exist (the lab bind-mounts its own configuration over it inside the nodes)', 'install slurm-wlm (bash scripts/setup), which creates /etc/slurm');
  }
}

// ---- the lab -----------------------------------------------------------------------------------

class Lab implements SlurmLab {
  readonly name: string;
  readonly stateDir: string;
  readonly confDir: string;
  readonly confFile: string;
  readonly workDir: string;
  readonly subnet: string;
  readonly controllerIp: string;
  controllerPid = 0;
  readonly nodes: LabNode[];
  startMs = 0;
  private readonly layout: LabLayout;
  private readonly state: LabState;
  private readonly log: (line: string) => void;

  constructor(layout: LabLayout, state: LabState, log: (line: string) => void) {
    this.layout = layout;
    this.state = state;
    this.log = log;
    this.name = layout.name;
    this.stateDir = layout.stateDir;
    this.confDir = layout.confDir;
    this.confFile = path.join(layout.confDir, 'slurm.conf');
    this.workDir = path.join(layout.stateDir, 'work');
    this.subnet = layout.subnet;
    this.controllerIp = layout.controllerIp;
    this.controllerPid = state.ctl?.pid ?? 0;
    this.nodes = layout.nodes.map((n) => ({ name: n.name, ip: n.ip, mac: n.mac, index: n.index, pid: alive(state.nodes[n.name]) ? state.nodes[n.name]!.pid : 0 }));
  }

  saveState(): void {
    const tmp = path.join(this.stateDir, `.state.json.${process.pid}`);
    fs.writeFileSync(tmp, JSON.stringify(this.state, null, 2) + '\n');
    fs.renameSync(tmp, path.join(this.stateDir, 'state.json'));
  }

  node(name: string): LabNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) {
      throw new SymError('ESYM_LAB_NODE', { message: `lab ${this.name} has no node ${name}`, field: 'node', value: name, fix: `use one of ${this.nodes.map((x) => x.name).join(', ')}`, exitCode: EXIT.usage });
    }
    return n;
  }

  /** Start one namespace init (detached: it outlives this process, e.g. for scripts/slurm-lab start). */
  private async spawnInit(role: string): Promise<ProcRec> {
    const args = ['--net', '--uts', '--mount', '--propagation', 'private', '--pid', '--fork', '--mount-proc'];
    const child = spawn('unshare', [...args, 'bash', '-c', INIT_SCRIPT, `${MARKER}:${this.name}:${role}`], {
      detached: true,
      stdio: 'ignore',
      env: { PATH: SYS_PATH, LANG: 'C', HOME: '/root' },
    });
    child.unref();
    const unsharePid = child.pid;
    if (!unsharePid) throw labError('ESYM_LAB_START', `could not start unshare for ${role}`, 'check that util-linux is installed');
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      let kids = '';
      try {
        kids = fs.readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim();
      } catch { /* not yet / gone */ }
      const pid = Number(kids.split(/\s+/)[0]);
      if (pid > 0) {
        const start = procStart(pid);
        // wait until the child has exec'd bash inside the new namespaces
        if (start && cmdline(pid).some((a) => a.startsWith(`${MARKER}:`)) && nsOf(pid, 'net') !== nsOf(process.pid, 'net')) {
          return { pid, start, unsharePid };
        }
      }
      if (child.exitCode !== null) break;
      await sleep(5);
    }
    throw labError('ESYM_LAB_START', `the namespace init of ${role} did not start (unshare exit ${child.exitCode})`, 'run `unshare --net --uts --mount --pid --fork --mount-proc true` as root to see why');
  }

  private nsenter(pid: number, kinds: string[], argv: string[], opts: ExecOpts = {}): Promise<ExecResult> {
    const wd = opts.cwd ?? this.workDir;
    const pre = ['-t', String(pid), ...kinds];
    if (kinds.includes('-m')) pre.push(`--wd=${wd}`);
    return run('nsenter', [...pre, '--', ...asUser(argv, opts.user)], { ...opts, env: opts.user ? userEnv(opts.env, opts.user) : opts.env, cwd: kinds.includes('-m') ? undefined : wd });
  }

  private async startController(): Promise<void> {
    const S = this.stateDir;
    const rec = await this.spawnInit('ctl');
    this.state.ctl = rec;
    this.controllerPid = rec.pid;
    this.saveState();
    const bridgeMac = labMacForIp(this.controllerIp);
    const script = [
      'set -e',
      `exec >>${S}/ctl/start.log 2>&1`,
      `hostname ${LAB_DEFAULTS.controllerHost}`,
      `mount --bind ${S}/etc/hosts /etc/hosts`,
      `mount --bind ${S}/etc /etc/slurm`,
      'ip link set lo up',
      `ip link add ${LAB_DEFAULTS.controllerBridge} address ${bridgeMac} type bridge stp_state 0 forward_delay 0`,
      `ip addr add ${this.controllerIp}/24 dev ${LAB_DEFAULTS.controllerBridge}`,
      `ip link set ${LAB_DEFAULTS.controllerBridge} up`,
      `munged --force --socket=${S}/munge/munge.socket --key-file=${S}/munge/munge.key --pid-file=${S}/munge/munged.pid --log-file=${S}/munge/munged.log --seed-file=${S}/munge/munged.seed`,
      `slurmctld -f ${this.confFile}`,
    ].join('\n');
    const r = await this.nsenter(rec.pid, ['-n', '-u', '-m', '-p'], ['bash', '-c', script], { env: { PATH: SYS_PATH, LANG: 'C', HOME: '/root' }, cwd: '/' });
    if (!r.ok) {
      throw labError('ESYM_LAB_START', `controller of lab ${this.name} did not start (exit ${r.exitCode})`, `see ${S}/ctl/start.log and ${S}/ctl/slurmctld.log`, { log: tail(`${S}/ctl/start.log`) + '\n' + tail(`${S}/ctl/slurmctld.log`) });
    }
    this.log(`controller ${LAB_DEFAULTS.controllerHost} ${this.controllerIp} (munged + slurmctld, pid ${rec.pid})`);
  }

  private async startNode(name: string): Promise<void> {
    const S = this.stateDir;
    const l = this.layout.nodes.find((n) => n.name === name)!;
    const node = this.node(name);
    fs.mkdirSync(path.join(S, 'nodes', name, 'spool'), { recursive: true });
    const rec = await this.spawnInit(name);
    this.state.nodes[name] = rec;
    node.pid = rec.pid;
    this.saveState();
    // controller side: a veth whose far end (up0) is created directly inside the node
    const port = name;
    await this.nsenter(this.controllerPid, ['-n'], ['ip', 'link', 'del', port], { cwd: '/' }); // left over by a crash: ignore errors
    const ctlLines = [
      `link add ${port} address ${l.portMac} type veth peer name ${LAB_DEFAULTS.nodeUplink} address ${l.uplinkMac} netns ${rec.pid}`,
      `link set ${port} master ${LAB_DEFAULTS.controllerBridge}`,
      `link set ${port} up`,
    ];
    const c = await this.nsenter(this.controllerPid, ['-n'], ['ip', '-batch', '-'], { input: ctlLines.join('\n') + '\n', cwd: '/' });
    if (!c.ok) throw labError('ESYM_LAB_START', `cannot wire node ${name} to the controller bridge: ${c.stderr.trim()}`, 'see `ip link` inside the controller namespace');
    const br = LAB_DEFAULTS.nodeBridge;
    const repo = repoRoot();
    const repoUnderTmp = repo === '/tmp' || repo.startsWith('/tmp/');
    const script = [
      'set -e',
      `exec >>${S}/nodes/${name}/start.log 2>&1`,
      `hostname ${name}`,
      // the repository (bin/symrun, dist/) must stay visible on the node even when it lives under
      // /tmp (a CI checkout): hold it on a bind mount across the private /tmp
      ...(repoUnderTmp ? [`mkdir -p ${S}/nodes/${name}/repo`, `mount --bind ${repo} ${S}/nodes/${name}/repo`] : []),
      'mount -t tmpfs -o mode=1777 tmpfs /tmp',
      ...(repoUnderTmp ? [`mkdir -p ${repo}`, `mount --bind ${S}/nodes/${name}/repo ${repo}`] : []),
      'mount -t tmpfs -o mode=1777 tmpfs /dev/shm',
      `mount --bind ${S}/etc/hosts /etc/hosts`,
      `mount --bind ${S}/etc /etc/slurm`,
      ...(this.state.opts.nodeLayer ? [`mount --bind ${S}/symrun-etc /etc/symrun`] : []),
      'ip link set lo up',
      `ip link add ${br} address ${l.mac} type bridge stp_state 0 forward_delay 0`,
      `ip link set ${LAB_DEFAULTS.nodeUplink} master ${br}`,
      `ip addr add ${l.ip}/24 dev ${br}`,
      `ip link set ${LAB_DEFAULTS.nodeUplink} up`,
      `ip link set ${br} up`,
      'slurmd',
      // the node helper, as root like slurmd (a site: the symrun-noded systemd unit)
      ...(this.state.opts.nodeLayer ? [`setsid ${process.execPath} ${path.join(repo, 'dist', 'launcher', 'src', 'cli.js')} node helper --node ${name} >>${S}/nodes/${name}/noded.log 2>&1 </dev/null &`] : []),
    ].join('\n');
    const r = await this.nsenter(rec.pid, ['-n', '-u', '-m', '-p'], ['bash', '-c', script], { env: { PATH: SYS_PATH, LANG: 'C', HOME: '/root' }, cwd: '/' });
    if (!r.ok) {
      throw labError('ESYM_LAB_START', `node ${name} did not start (exit ${r.exitCode})`, `see ${S}/nodes/${name}/start.log and slurmd.log`, { log: tail(`${S}/nodes/${name}/start.log`) + '\n' + tail(`${S}/nodes/${name}/slurmd.log`) });
    }
    this.log(`node ${name} ${l.ip} (slurmd, pid ${rec.pid})`);
  }

  async start(timeoutMs: number): Promise<void> {
    const t0 = performance.now();
    const S = this.stateDir;
    for (const d of ['etc', 'munge', 'ctl/state', 'nodes', 'work']) fs.mkdirSync(path.join(S, d), { recursive: true });
    // the munge socket's directory chain must be world-executable (docs/lab-notes.md)
    for (const d of [LAB_ROOT, S, path.join(S, 'munge')]) fs.chmodSync(d, 0o755);
    fs.writeFileSync(path.join(S, 'munge', 'munge.key'), (await import('node:crypto')).randomBytes(128), { mode: 0o400 });
    fs.writeFileSync(this.confFile, slurmConf(this.layout, this.state.opts));
    if (this.state.opts.nodeLayer) {
      // root-owned, writable only by root: the node layer trusts nothing else (node/config.ts)
      fs.mkdirSync(path.join(S, 'symrun-etc'), { recursive: true, mode: 0o755 });
      fs.writeFileSync(path.join(S, 'symrun-etc', 'node.conf'), labNodeConf(S), { mode: 0o644 });
      fs.mkdirSync('/etc/symrun', { recursive: true, mode: 0o755 }); // the mount point on the nodes
    }
    fs.writeFileSync(path.join(this.confDir, 'hosts'), hostsFile(this.layout));
    await this.startController();
    const started = await Promise.allSettled(this.nodes.map((n) => this.startNode(n.name)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    await this.waitAll((nodes) => nodes.length === this.nodes.length && nodes.every((n) => n.state === 'IDLE'), timeoutMs, 'every node IDLE');
    this.startMs = performance.now() - t0;
    this.log(`lab ${this.name}: ${this.nodes.length} nodes idle in ${this.startMs.toFixed(0)} ms`);
  }

  private async waitAll(pred: (nodes: SlurmNode[]) => boolean, timeoutMs: number, what: string): Promise<SlurmNode[]> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const r = await this.client(['scontrol', 'show', 'node', '-o']);
      if (r.ok) {
        const nodes = parseNodes(r.stdout);
        if (pred(nodes)) return nodes;
        last = nodes.map((n) => `${n.name}=${n.state}`).join(' ');
      } else {
        last = r.stderr.trim();
      }
      if (Date.now() > deadline) {
        throw labError('ESYM_LAB_TIMEOUT', `lab ${this.name}: not ${what} after ${timeoutMs} ms (last: ${last})`, `see the logs under ${this.stateDir}`, {
          slurmctld: tail(path.join(this.stateDir, 'ctl', 'slurmctld.log')),
        });
      }
      await sleep(LAB_DEFAULTS.pollMs);
    }
  }

  async client(argv: string[], opts: ExecOpts = {}): Promise<ExecResult> {
    if (!alive(this.state.ctl)) {
      throw labError('ESYM_LAB_DOWN', `the controller of lab ${this.name} is not running`, 'start the lab again (scripts/slurm-lab start N)');
    }
    const cwd = opts.cwd ?? this.workDir;
    const env = cleanEnv({ SLURM_CONF: this.confFile, ...(opts.env ?? {}) });
    return this.nsenter(this.controllerPid, ['-n', '-u'], argv, { ...opts, env, cwd });
  }

  async exec(node: string, argv: string[], opts: ExecOpts = {}): Promise<ExecResult> {
    if (node === LAB_DEFAULTS.controllerHost) return this.client(argv, opts);
    const n = this.node(node);
    if (!n.pid || !alive(this.state.nodes[node])) {
      throw labError('ESYM_LAB_DOWN', `node ${node} of lab ${this.name} is not running (crashed?)`, `restart it: scripts/slurm-lab restart ${node} --name ${this.name}`);
    }
    return this.nsenter(n.pid, ['-n', '-u', '-m', '-p'], argv, { ...opts, env: cleanEnv(opts.env) });
  }

  async sbatch(script: string, opts: SbatchOpts = {}): Promise<string> {
    const cwd = path.resolve(opts.cwd ?? this.workDir);
    if (cwd === '/tmp' || cwd.startsWith('/tmp/')) {
      throw new SymError('ESYM_LAB_CWD', { message: `sbatch cwd ${cwd} is under /tmp, which every lab node has privately`, field: 'cwd', value: cwd, fix: `submit from a directory the nodes see, e.g. ${this.workDir} or one under /work`, exitCode: EXIT.usage });
    }
    const isText = script.includes('\n');
    const args = ['sbatch', '--parsable', ...(opts.args ?? [])];
    if (!isText) args.push(script);
    const r = await this.client(args, { cwd, env: opts.env, input: isText ? script : undefined });
    const m = /^([0-9]+)/.exec(r.stdout.trim());
    if (!r.ok || !m) throw labError('ESYM_LAB_SBATCH', `sbatch failed (exit ${r.exitCode}): ${r.stderr.trim() || r.stdout.trim()}`, 'check the script and options');
    return m[1]!;
  }

  async scontrol(args: string[]): Promise<string> {
    const r = await this.client(['scontrol', ...args]);
    if (!r.ok) throw labError('ESYM_LAB_COMMAND', `scontrol ${args.join(' ')} failed (exit ${r.exitCode}): ${r.stderr.trim()}`, 'see slurmctld.log in the lab state directory');
    return r.stdout;
  }

  async showNodes(): Promise<SlurmNode[]> {
    return parseNodes(await this.scontrol(['show', 'node', '-o']));
  }

  async showNode(name: string): Promise<SlurmNode> {
    const n = parseNodes(await this.scontrol(['show', 'node', '-o', name]))[0];
    if (!n) throw labError('ESYM_LAB_NODE', `scontrol shows no node ${name}`, 'check the node name');
    return n;
  }

  async showJob(jobId: string): Promise<SlurmJob> {
    const j = parseJobs(await this.scontrol(['show', 'job', '-o', jobId]))[0];
    if (!j) throw labError('ESYM_LAB_JOB', `scontrol shows no job ${jobId}`, 'check the job id (finished jobs are forgotten after MinJobAge)');
    return j;
  }

  async waitJob(jobId: string, states: readonly string[] | RegExp, timeoutMs: number): Promise<SlurmJob> {
    const match = (s: string) => (states instanceof RegExp ? states.test(s) : states.includes(s));
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const r = await this.client(['scontrol', 'show', 'job', '-o', jobId]);
      if (r.ok) {
        const j = parseJobs(r.stdout)[0];
        if (j && match(j.state)) return j;
        last = j ? `${j.state} (${j.reason ?? ''})` : '(no such job)';
      } else last = r.stderr.trim();
      if (Date.now() > deadline) throw labError('ESYM_LAB_TIMEOUT', `job ${jobId} not ${String(states)} after ${timeoutMs} ms (last: ${last})`, `see ${path.join(this.stateDir, 'ctl', 'slurmctld.log')}`);
      await sleep(LAB_DEFAULTS.pollMs * 2);
    }
  }

  async waitNodeState(node: string, re: RegExp, timeoutMs: number): Promise<SlurmNode> {
    this.node(node);
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const r = await this.client(['scontrol', 'show', 'node', '-o', node]);
      if (r.ok) {
        const n = parseNodes(r.stdout)[0];
        if (n && re.test(n.state)) return n;
        last = n?.state ?? '(no such node)';
      } else last = r.stderr.trim();
      if (Date.now() > deadline) throw labError('ESYM_LAB_TIMEOUT', `node ${node} not ${re} after ${timeoutMs} ms (last: ${last})`, `see ${path.join(this.stateDir, 'ctl', 'slurmctld.log')}`);
      await sleep(LAB_DEFAULTS.pollMs * 2);
    }
  }

  async drain(node: string, reason: string): Promise<void> {
    this.node(node);
    await this.scontrol(['update', `NodeName=${node}`, 'State=DRAIN', `Reason=${reason}`]);
    this.log(`drained ${node}: ${reason}`);
  }

  async expandJob(jobId: string, node: string, timeoutMs = 30_000): Promise<SlurmJob> {
    this.node(node);
    // salloc --no-shell: no batch step on the new allocation (a job with a step cannot give its nodes away)
    const a = await this.client(['salloc', '--no-shell', '-N1', '-w', node, `--dependency=expand:${jobId}`, '--job-name=expand', `--immediate=${Math.ceil(timeoutMs / 1000)}`]);
    const m = /allocation ([0-9]+)/.exec(a.stderr + a.stdout);
    if (!a.ok || !m) throw labError('ESYM_LAB_COMMAND', `salloc --dependency=expand:${jobId} -w ${node} failed (exit ${a.exitCode}): ${a.stderr.trim()}`, 'is the job running, and the node idle?');
    await this.scontrol(['update', `JobId=${m[1]}`, 'NumNodes=0']);
    // Slurm 22.05 prints "Unexpected message received for job N" here although the update is applied
    await this.client(['scontrol', 'update', `JobId=${jobId}`, 'NumNodes=ALL']);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const j = await this.showJob(jobId);
      if (j.nodeList.includes(node)) {
        this.log(`job ${jobId} expanded by ${node}: ${j.nodeList.join(',')}`);
        return j;
      }
      if (Date.now() > deadline) throw labError('ESYM_LAB_TIMEOUT', `job ${jobId} does not hold ${node} after expanding (nodes ${j.nodeList.join(',')})`, `see ${path.join(this.stateDir, 'ctl', 'slurmctld.log')}`);
      await sleep(LAB_DEFAULTS.pollMs * 2);
    }
  }

  async undrain(node: string): Promise<void> {
    this.node(node);
    await this.scontrol(['update', `NodeName=${node}`, 'State=RESUME']);
    this.log(`resumed ${node}`);
  }

  async crash(node: string): Promise<void> {
    const n = this.node(node);
    const rec = this.state.nodes[node];
    if (!alive(rec)) {
      this.log(`${node} is not running`);
      return;
    }
    // 1. cut the link (a dead node sends no RST/FIN), 2. kill everything in its namespaces
    await this.nsenter(this.controllerPid, ['-n'], ['ip', 'link', 'set', node, 'down'], { cwd: '/' });
    const ns = new Set([nsOf(rec!.pid, 'pid'), nsOf(rec!.pid, 'net'), nsOf(rec!.pid, 'mnt')].filter((x): x is string => !!x));
    kill(rec!.pid, 'SIGKILL');
    const left = await this.reap(ns, [rec!.pid, rec!.unsharePid], LAB_DEFAULTS.stopTimeoutMs);
    n.pid = 0;
    this.state.nodes[node] = undefined;
    this.saveState();
    this.log(`crashed ${node}: link cut, namespace init ${rec!.pid} and everything in its namespaces killed${left.length ? ` (still there: ${left.join(' ')})` : ''}`);
  }

  /** Kill what is left in these namespaces until nothing is; returns pids that would not die. */
  private async reap(ns: ReadonlySet<string>, extra: number[], timeoutMs: number): Promise<number[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = [...new Set([...pidsInNamespaces(ns), ...extra.filter((p) => p > 0 && fs.existsSync(`/proc/${p}`) && !isZombie(p))])];
      if (left.length === 0) return [];
      if (Date.now() > deadline) return left;
      for (const p of left) kill(p, 'SIGKILL');
      await sleep(10);
    }
  }

  async restart(node: string, opts: { timeoutMs?: number } = {}): Promise<SlurmNode> {
    const t0 = performance.now();
    if (alive(this.state.nodes[node])) await this.crash(node);
    const bootedAt = Math.floor(Date.now() / 1000) * 1000;
    // a reboot empties /run (tmpfs): the node layer's records of this node go with it
    if (this.state.opts.nodeLayer) fs.rmSync(path.join(this.stateDir, 'node-state', node), { recursive: true, force: true });
    await this.startNode(node);
    // registered = slurmctld has the new slurmd's start time and no longer flags it NOT_RESPONDING
    // (the state may still be DOWN or DRAIN: an admin's DOWN/DRAIN survives a restart)
    const timeoutMs = opts.timeoutMs ?? LAB_DEFAULTS.restartTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = await this.showNode(node);
      const started = Date.parse(n.fields.SlurmdStartTime ?? '');
      if (started >= bootedAt && !n.flags.includes('NOT_RESPONDING')) {
        this.log(`restarted ${node} in ${(performance.now() - t0).toFixed(0)} ms: ${n.state}`);
        return n;
      }
      if (Date.now() > deadline) {
        throw labError('ESYM_LAB_TIMEOUT', `node ${node} did not register within ${timeoutMs} ms of its restart (state ${n.state}, SlurmdStartTime ${n.fields.SlurmdStartTime})`, `see ${path.join(this.stateDir, 'nodes', node, 'slurmd.log')}`);
      }
      await sleep(LAB_DEFAULTS.pollMs);
    }
  }

  async stop(): Promise<StopReport> {
    const r = await stopLab(this.name, this.state);
    for (const n of this.nodes) n.pid = 0;
    this.controllerPid = 0;
    this.log(`stopped lab ${this.name} in ${r.ms.toFixed(0)} ms: killed ${r.killedPids.length} processes, removed ${r.removed.join(', ') || 'nothing'}`);
    return r;
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

function readState(name: string): LabState | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(LAB_ROOT, name, 'state.json'), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

/** Kill every process of a lab (by state file and by marker), wait until its namespaces are empty, remove its directory. */
async function stopLab(name: string, state?: LabState): Promise<StopReport> {
  const t0 = performance.now();
  const inits: number[] = [];
  const others: number[] = [];
  const recs = state ? [state.ctl, ...Object.values(state.nodes)] : [];
  for (const rec of recs) {
    if (alive(rec)) inits.push(rec!.pid);
    if (rec && rec.unsharePid > 0) others.push(rec.unsharePid);
  }
  for (const m of markedPids(name)) (m.isInit ? inits : others).push(m.pid);
  const ns = new Set<string>();
  for (const pid of inits) for (const k of ['pid', 'net', 'mnt'] as const) {
    const v = nsOf(pid, k);
    if (v && v !== nsOf(process.pid, k)) ns.add(v);
  }
  const victims = [...new Set([...inits, ...pidsInNamespaces(ns)])];
  for (const pid of new Set(inits)) kill(pid, 'SIGKILL');
  const killed = new Set<number>(victims);
  const deadline = Date.now() + LAB_DEFAULTS.stopTimeoutMs;
  for (;;) {
    const left = [...new Set([...pidsInNamespaces(ns), ...inits.filter((p) => fs.existsSync(`/proc/${p}`) && !isZombie(p)), ...others.filter((p) => fs.existsSync(`/proc/${p}`) && !isZombie(p) && cmdline(p)[0] === 'unshare')])];
    if (left.length === 0) break;
    if (Date.now() > deadline) {
      throw labError('ESYM_LAB_STOP', `lab ${name}: processes ${left.join(' ')} would not die`, `kill them by hand (kill -9 ${left.join(' ')}) and remove ${path.join(LAB_ROOT, name)}`);
    }
    for (const p of left) {
      killed.add(p);
      kill(p, 'SIGKILL');
    }
    await sleep(10);
  }
  const removed: string[] = [];
  const dir = path.join(LAB_ROOT, name);
  if (fs.existsSync(dir)) {
    fs.rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  try {
    if (fs.readdirSync(LAB_ROOT).length === 0) {
      fs.rmdirSync(LAB_ROOT);
      removed.push(LAB_ROOT);
    }
  } catch { /* gone or not empty */ }
  return { killedPids: [...killed].sort((a, b) => a - b), removed, ms: performance.now() - t0 };
}

/** Names of labs that exist (a state directory, or live processes carrying the marker). */
export function listLabs(): string[] {
  const names = new Set<string>();
  try {
    for (const d of fs.readdirSync(LAB_ROOT)) if (NAME_RE.test(d)) names.add(d);
  } catch { /* no root */ }
  for (const m of markedPids()) names.add(m.lab);
  return [...names].sort();
}

/** True when the lab has a live controller or node. */
export function labRunning(name: string): boolean {
  const st = readState(name);
  if (st && [st.ctl, ...Object.values(st.nodes)].some(alive)) return true;
  return markedPids(name).length > 0;
}

/**
 * Remove a lab left behind by a killed process (or every lab when no name is given): every process,
 * namespace, bridge, veth, mount and file. Safe to call for a lab that does not exist.
 */
export async function cleanupStale(name?: string): Promise<StopReport[]> {
  const out: StopReport[] = [];
  for (const n of name === undefined ? listLabs() : [name]) out.push(await stopLab(n, readState(n)));
  return out;
}

/** Remove temporary labs (tests) whose creating process is gone, e.g. a test run that was killed. */
export async function cleanupOrphanedTemporaryLabs(): Promise<StopReport[]> {
  const out: StopReport[] = [];
  for (const n of listLabs()) {
    const st = readState(n);
    if (st?.opts.temporary && !alive({ pid: st.creatorPid, start: st.creatorStart })) out.push(await stopLab(n, st));
  }
  return out;
}

/** Attach to a running lab (e.g. from scripts/slurm-lab) by its name. */
export function openSlurmLab(name: string = LAB_DEFAULTS.name, log: (line: string) => void = () => undefined): SlurmLab {
  const state = readState(name);
  if (!state || !alive(state.ctl)) {
    throw labError('ESYM_LAB_DOWN', `no running Slurm lab named ${name}`, `start one: scripts/slurm-lab start 4 --name ${name}`);
  }
  return new Lab(labLayout(name, state.nodeCount, state.subnet), state, log);
}

/** Start a lab and wait until every node is IDLE. */
export async function startSlurmLab(opts: SlurmLabOptions): Promise<SlurmLab> {
  const name = opts.name ?? LAB_DEFAULTS.name;
  const layout = labLayout(name, opts.nodes, opts.subnet);
  await checkPrerequisites();
  await cleanupOrphanedTemporaryLabs();
  if (labRunning(name)) {
    throw labError('ESYM_LAB_RUNNING', `a Slurm lab named ${name} is already running`, `stop it (scripts/slurm-lab stop --name ${name}) or pick another name`);
  }
  await stopLab(name, readState(name)); // leftovers of a dead lab of that name
  fs.mkdirSync(LAB_ROOT, { recursive: true, mode: 0o755 });
  fs.mkdirSync(layout.stateDir, { mode: 0o755 });
  const { log, ...stored } = opts;
  const state: LabState = {
    version: 1, name, created: new Date().toISOString(), creatorPid: process.pid, creatorStart: procStart(process.pid) ?? '', nodeCount: opts.nodes, subnet: layout.subnet,
    opts: stored, nodes: {},
  };
  const lab = new Lab(layout, state, log ?? (() => undefined));
  lab.saveState();
  try {
    await lab.start(opts.startTimeoutMs ?? LAB_DEFAULTS.startTimeoutMs);
  } catch (e) {
    await stopLab(name, state).catch(() => undefined);
    throw e;
  }
  return lab;
}

export { nodeCondition };
