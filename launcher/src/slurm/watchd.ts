// symrun watchd: one node watcher for the whole cluster, fanning node changes out to the jobs.
//
// Why (bench/results/events.md): every symrun job polls its own nodes with one `scontrol show node -o
// A,B,..` per second, ~1 ms of slurmctld CPU each, so J jobs cost slurmctld J ms per second. watchd makes
// one `scontrol show node -o` (every node) per interval, whatever the number of jobs, and sends each
// subscriber the changes of the nodes it asked for.
// (Over 500 lines: the protocol below and the one server that implements it, kept on one page; the
// poller (watch.ts), codecs (scontrol.ts) and MUNGE (munge.ts) live in their own files.)
//
// Protocol, over the authenticated channel of agent/channel.ts (JSON lines over TCP; mutual HMAC
// handshake with the shared secret of the key file, then sealed frames: docs/channels.md):
//   call  watch.subscribe {nodes: [names], job?: ID}  -> {nodes: [NodeSnapshot], unknown: [names],
//                                                intervalMs, lastGoodPollAgeMs, allocation?: [names]}
//                                                (answered after watchd's first poll)
//         a second subscribe replaces the node list (and answers with the current state again)
//   event watch.changes {changes: [NodeChange]}  only for the subscriber's nodes, only after the answer
//                                                to its subscribe; NodeChange as NodeWatcher's onChange
//   event watch.allocation {job, nodes}        the node list of the subscriber's Slurm job, when it
//                                                differs from the last one sent (grown, or a node left);
//                                                one `squeue` for every running job per allocation interval,
//                                                only while some subscriber gave a job
//   call  watch.stats {subscribers?: true}  -> WatchdStats
// Authentication (startWatchd `auth`): `key` (the default): every subscriber proves the one shared key,
// and may subscribe to anything. `munge`: each subscriber introduces itself with a MUNGE credential
// that only watchd's user may decode (slurm/munge.ts), carrying the secret of this connection; watchd
// takes the UID from it, and a subscriber that is not root or SlurmUser must name a job Slurm says is
// its own (`squeue -h -j JOB -o %U`), and may not ask for watch.stats (ESYM_WATCHD_DENIED).
// A subscriber that does not read (more than maxBufferedBytes queued for it) is dropped: nothing waits
// for one subscriber. A connection that has not subscribed after subscribeTimeoutMs is closed.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { SymError, EXIT } from '../errors.js';
import { SLURM_DEFAULTS } from '../defaults.js';
import { serveChannel, type RpcPeer, type ChannelServer } from '../agent/channel.js';
import { execFile } from 'node:child_process';
import { nodeCondition, type NodeCondition, type SlurmNode } from './scontrol.js';
import { expandHostlist } from './hostlist.js';
import { NodeWatcher, type NodeChange } from './watch.js';
import { mungeDecode, type MungeIdentity } from './munge.js';

/** The current state of one node, as watch.subscribe answers it. */
export interface NodeSnapshot {
  node: string;
  condition: NodeCondition;
  /** State as printed, e.g. "MIXED+DRAIN" */
  state: string;
  reason?: string;
  /** Date.now() (watchd's clock) when the poll that last saw it returned */
  seenAt: number;
}

export interface SubscribeResult {
  nodes: NodeSnapshot[];
  /** the node list of the subscriber's job (subscribe with `job`), once watchd has seen it */
  allocation?: string[];
  /** asked for, but not in Slurm's node list */
  unknown: string[];
  intervalMs: number;
  /** ms since watchd's last successful poll */
  lastGoodPollAgeMs: number;
}

export interface WatchdStats {
  pid: number;
  startedAt: string;
  intervalMs: number;
  polls: number;
  errors: number;
  lastMs: number;
  maxMs: number;
  meanMs: number;
  lastError?: string;
  /** ms since the last successful poll (absent before the first) */
  lastGoodPollAgeMs?: number;
  /** nodes in the last poll */
  nodes: number;
  subscribers: number;
  /** watch.changes notifications sent */
  notifications: number;
  /** subscribers dropped because they did not read */
  dropped: number;
  /** `squeue` calls for the subscribers' job node lists, failed ones, and watch.allocation sent */
  jobPolls: number;
  jobPollErrors: number;
  allocationNotices: number;
  subscriberList?: Array<{ name: string; nodes: number; job?: string; connectedAt: string; bufferedBytes: number; notifications: number }>;
}

export type WatchdLog = (level: 'info' | 'warn', msg: string, data?: Record<string, unknown>) => void;

export interface WatchDaemonOptions {
  intervalMs?: number;
  /** `scontrol show node -o` → stdout (tests pass a fake); called with [] = all nodes */
  run?: (names: string[]) => Promise<string>;
  /** how often the running jobs' node lists are read (default SLURM_DEFAULTS.allocationCheckMs) */
  jobIntervalMs?: number;
  /** `squeue -h -t RUNNING -o "%A %N"` → stdout (tests pass a fake) */
  runJobs?: () => Promise<string>;
  log?: WatchdLog;
  maxBufferedBytes?: number;
  subscribeTimeoutMs?: number;
  firstPollTimeoutMs?: number;
  /** per-user authentication (auth munge): UIDs that may see every job (root is always one) */
  privilegedUids?: number[];
  /** the UID that owns a Slurm job (`squeue -h -j JOB -o %U`; tests pass a fake) */
  jobOwner?: (job: string) => Promise<number>;
}

interface Subscriber {
  peer: RpcPeer;
  name: string;
  /** the subscriber's UID, when watchd authenticates each user (auth munge) */
  uid?: number;
  nodes?: Set<string>;
  /** its Slurm job (watch.allocation), and the node list last sent for it (comma-joined) */
  job?: string;
  sentAllocation?: string;
  connectedAt: number;
  notifications: number;
  idleTimer?: NodeJS.Timeout;
}

const NODE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const JOB_ID_RE = /^[0-9]{1,12}$/;

/** `squeue -h -t RUNNING -o "%A %N"` of every running job: job id → its nodes. */
export function squeueRunningJobs(timeoutMs: number = SLURM_DEFAULTS.scontrolTimeoutMs): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('squeue', ['-h', '-t', 'RUNNING', '-o', '%A %N'], { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`squeue failed: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

/** `squeue -h -j JOB -o %U`: the UID of the job's owner. */
export function squeueJobOwner(job: string, timeoutMs: number = SLURM_DEFAULTS.scontrolTimeoutMs): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile('squeue', ['-h', '-j', job, '-o', '%U'], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const uid = Number(String(stdout).trim().split('\n')[0]);
      if (err || !String(stdout).trim() || !Number.isInteger(uid)) reject(new Error(`squeue -j ${job}: ${String(stderr).trim() || err?.message || 'no such job'}`));
      else resolve(uid);
    });
  });
}

/** Parse `squeue -h -o "%A %N"` lines (heterogeneous job components share the id: their nodes are merged). */
export function parseJobNodes(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^\s*([0-9]+)\s+(\S+)\s*$/.exec(line);
    if (!m) continue;
    let nodes: string[];
    try { nodes = expandHostlist(m[2]!, { field: 'NodeList' }); } catch { continue; }
    const have = out.get(m[1]!) ?? [];
    for (const n of nodes) if (!have.includes(n)) have.push(n);
    out.set(m[1]!, have);
  }
  return out;
}
const MAX_SUBSCRIBE_NODES = 100_000;

export class WatchDaemon {
  readonly intervalMs: number;
  readonly poller: NodeWatcher;
  private current = new Map<string, NodeSnapshot>();
  private subs = new Map<RpcPeer, Subscriber>();
  private readonly startedAt = Date.now();
  private lastGoodPollAt?: number;
  private lastNodes = 0;
  private notifications = 0;
  private dropped = 0;
  private firstPoll: Promise<void>;
  private firstPollDone!: () => void;
  private lastLoggedError = '';
  private readonly log: WatchdLog;
  private readonly maxBuffered: number;
  private stopped = false;
  /** running jobs' node lists, as the last squeue saw them */
  private jobNodes = new Map<string, string[]>();
  private jobTimer?: NodeJS.Timeout;
  private jobPolling = false;
  private jobStats = { polls: 0, errors: 0, notices: 0 };
  private lastJobError = '';

  constructor(private opts: WatchDaemonOptions = {}) {
    this.intervalMs = opts.intervalMs ?? SLURM_DEFAULTS.pollIntervalMs;
    this.log = opts.log ?? (() => undefined);
    this.maxBuffered = opts.maxBufferedBytes ?? SLURM_DEFAULTS.watchdMaxBufferedBytes;
    this.firstPoll = new Promise((r) => { this.firstPollDone = r; });
    this.poller = new NodeWatcher({
      nodes: () => 'all',
      intervalMs: this.intervalMs,
      run: opts.run,
      onPoll: (nodes, seenAt) => this.onPoll(nodes, seenAt),
      onChange: (changes) => this.fanOut(changes),
      onError: (e) => {
        if (e.message !== this.lastLoggedError) this.log('warn', `polling slurmctld: ${e.message}`, { error: e.message });
        this.lastLoggedError = e.message;
      },
    });
  }

  start(): void {
    this.poller.start();
    this.jobTimer = setInterval(() => void this.pollJobs(), this.opts.jobIntervalMs ?? SLURM_DEFAULTS.allocationCheckMs);
    this.jobTimer.unref?.();
  }

  /** Read the running jobs' node lists (only while some subscriber gave a job) and send what changed. */
  async pollJobs(): Promise<void> {
    if (this.jobPolling || this.stopped || ![...this.subs.values()].some((s) => s.job)) return;
    this.jobPolling = true;
    try {
      const text = await (this.opts.runJobs ?? squeueRunningJobs)();
      this.jobStats.polls++;
      this.jobNodes = parseJobNodes(text);
      if (this.lastJobError) { this.log('info', 'reading the jobs\' node lists works again'); this.lastJobError = ''; }
      for (const s of this.subs.values()) this.sendAllocation(s);
    } catch (e) {
      this.jobStats.errors++;
      const msg = (e as Error).message;
      if (msg !== this.lastJobError) this.log('warn', `reading the jobs' node lists: ${msg}`, { error: msg });
      this.lastJobError = msg;
    } finally {
      this.jobPolling = false;
    }
  }

  private sendAllocation(s: Subscriber): void {
    const nodes = s.job ? this.jobNodes.get(s.job) : undefined;
    if (!nodes || !s.nodes || nodes.join(',') === s.sentAllocation) return;
    s.sentAllocation = nodes.join(',');
    s.peer.notify('watch.allocation', { job: s.job, nodes });
    this.jobStats.notices++;
  }

  /** One poll now (tests; the interval loop does the same). */
  pollOnce(): Promise<NodeChange[]> {
    return this.poller.pollOnce();
  }

  private onPoll(nodes: SlurmNode[], seenAt: number): void {
    for (const n of nodes) {
      this.current.set(n.name, { node: n.name, condition: nodeCondition(n), state: n.state, ...(n.reason ? { reason: n.reason } : {}), seenAt });
    }
    this.lastNodes = nodes.length;
    this.lastGoodPollAt = Date.now();
    if (this.lastLoggedError) {
      this.log('info', `polling slurmctld works again (${nodes.length} nodes)`);
      this.lastLoggedError = '';
    }
    this.firstPollDone();
  }

  private fanOut(changes: NodeChange[]): void {
    for (const c of changes) this.log('info', `node ${c.node} is ${c.state}${c.reason ? ` (${c.reason})` : ''}: ${c.previous} -> ${c.condition}`, { node: c.node, condition: c.condition, previous: c.previous, state: c.state, reason: c.reason });
    for (const s of [...this.subs.values()]) {
      if (!s.nodes) continue;
      const mine = changes.filter((c) => s.nodes!.has(c.node));
      if (!mine.length) continue;
      // the socket queues what it cannot send yet; a subscriber that lets the queue grow is not reading
      const queued = s.peer.sock.writableLength;
      if (queued > this.maxBuffered) {
        this.drop(s, `not reading (${queued} bytes queued)`);
        continue;
      }
      s.peer.notify('watch.changes', { changes: mine });
      s.notifications++;
      this.notifications++;
    }
  }

  private drop(s: Subscriber, why: string): void {
    this.dropped++;
    this.log('warn', `dropped subscriber ${s.name}: ${why}`, { subscriber: s.name, why });
    s.peer.close();
  }

  /** An authenticated connection (serveChannel's onPeer): registers the protocol and starts it. */
  attach(peer: RpcPeer): void {
    if (this.stopped) {
      peer.close();
      return;
    }
    const uid = peer.identity?.uid;
    const s: Subscriber = { peer, name: `${peer.name || 'anonymous'}${uid !== undefined ? ` (uid ${uid})` : ''}`, uid, connectedAt: Date.now(), notifications: 0 };
    this.subs.set(peer, s);
    (peer.sock as { setKeepAlive?: (on: boolean, ms: number) => void }).setKeepAlive?.(true, 15_000);
    s.idleTimer = setTimeout(() => {
      if (!s.nodes) {
        this.log('info', `closed ${s.name}: no subscribe within ${this.opts.subscribeTimeoutMs ?? SLURM_DEFAULTS.watchdSubscribeTimeoutMs} ms`);
        peer.close();
      }
    }, this.opts.subscribeTimeoutMs ?? SLURM_DEFAULTS.watchdSubscribeTimeoutMs);
    s.idleTimer.unref?.();
    peer.on('close', () => {
      clearTimeout(s.idleTimer);
      if (this.subs.delete(peer) && s.nodes) this.log('info', `subscriber ${s.name} left`, { subscriber: s.name, subscribers: this.subs.size });
    });
    peer.handle('watch.subscribe', (params: unknown) => this.subscribe(s, params));
    peer.handle('watch.stats', (params: unknown) => {
      if (!this.privileged(s)) throw new SymError('ESYM_WATCHD_DENIED', { message: `watch.stats lists every subscriber: only root and SlurmUser may ask (this is uid ${s.uid})`, field: 'watch.stats', value: s.uid, fix: 'run `symrun watchd --stats` as root', exitCode: EXIT.usage });
      return this.stats(!!(params as { subscribers?: unknown } | null)?.subscribers);
    });
    peer.start();
  }

  private async subscribe(s: Subscriber, params: unknown): Promise<SubscribeResult> {
    const nodes = (params as { nodes?: unknown } | null)?.nodes;
    const job = (params as { job?: unknown } | null)?.job;
    if (!Array.isArray(nodes) || nodes.length > MAX_SUBSCRIBE_NODES || !nodes.every((n) => typeof n === 'string' && NODE_NAME_RE.test(n))) {
      throw new SymError('ESYM_WATCHD_REQUEST', { message: 'watch.subscribe needs {nodes: [node names]}', value: JSON.stringify(nodes)?.slice(0, 200), exitCode: EXIT.usage });
    }
    if (job !== undefined && (typeof job !== 'string' || !JOB_ID_RE.test(job))) {
      throw new SymError('ESYM_WATCHD_REQUEST', { message: 'watch.subscribe: job must be a Slurm job id', value: JSON.stringify(job)?.slice(0, 40), exitCode: EXIT.usage });
    }
    if (!this.privileged(s)) await this.checkOwner(s, job as string | undefined);
    if (this.lastGoodPollAt === undefined) {
      const ms = this.opts.firstPollTimeoutMs ?? SLURM_DEFAULTS.watchdFirstPollTimeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const ok = await Promise.race([this.firstPoll.then(() => true), new Promise<false>((r) => { timer = setTimeout(() => r(false), ms); })]);
      clearTimeout(timer);
      if (!ok) {
        throw new SymError('ESYM_WATCHD_NO_DATA', { message: `watchd has no node states yet: its scontrol polls fail${this.poller.stats.lastError ? ` (${this.poller.stats.lastError})` : ''}`, fix: 'see the watchd log on its host', exitCode: EXIT.environment });
      }
    }
    if (!this.subs.has(s.peer)) throw new SymError('ESYM_CHANNEL_CLOSED', { message: 'subscriber left' });
    // snapshot and registration in one synchronous step: every later change reaches it as watch.changes,
    // and those are sent after this answer (they come from a later poll, i.e. a later macrotask)
    const first = !s.nodes;
    s.nodes = new Set(nodes as string[]);
    if (job !== s.job) { s.job = job as string | undefined; s.sentAllocation = undefined; }
    const allocation = s.job ? this.jobNodes.get(s.job) : undefined;
    if (allocation) s.sentAllocation = allocation.join(',');
    if (s.job && this.jobStats.polls === 0) setImmediate(() => void this.pollJobs()); // the first job: read them now
    clearTimeout(s.idleTimer);
    const snap: NodeSnapshot[] = [];
    const unknown: string[] = [];
    for (const n of s.nodes) {
      const c = this.current.get(n);
      if (c) snap.push(c);
      else unknown.push(n);
    }
    this.log('info', `${first ? 'subscriber' : 're-subscribed'} ${s.name}: ${s.nodes.size} nodes${unknown.length ? ` (${unknown.length} unknown to Slurm: ${unknown.slice(0, 5).join(',')}${unknown.length > 5 ? ',...' : ''})` : ''}`, { subscriber: s.name, nodes: s.nodes.size, subscribers: this.subscribed() });
    return { nodes: snap, unknown, intervalMs: this.intervalMs, lastGoodPollAgeMs: Date.now() - this.lastGoodPollAt!, ...(allocation ? { allocation } : {}) };
  }

  /** key mode (no identity), root, or one of privilegedUids (SlurmUser). */
  private privileged(s: Subscriber): boolean {
    return s.uid === undefined || s.uid === 0 || (this.opts.privilegedUids ?? []).includes(s.uid);
  }

  private owners = new Map<string, number>();

  /** A user's subscriber names a job of its own (Slurm says whose; a job's owner never changes: cached). */
  private async checkOwner(s: Subscriber, job: string | undefined): Promise<void> {
    if (job === undefined) {
      throw new SymError('ESYM_WATCHD_DENIED', { message: `this watchd authenticates each user: a subscribe must name the subscriber's Slurm job (uid ${s.uid} gave none)`, field: 'job', fix: 'subscribe from inside a symrun job (it gives its job id), or as root', exitCode: EXIT.usage });
    }
    let owner = this.owners.get(job);
    if (owner === undefined) {
      try {
        owner = await (this.opts.jobOwner ?? squeueJobOwner)(job);
      } catch (e) {
        throw new SymError('ESYM_WATCHD_DENIED', { message: `Slurm cannot say whose job ${job} is: ${(e as Error).message}`, field: 'job', value: job, fix: 'subscribe with the id of a running job of yours', exitCode: EXIT.usage });
      }
      this.owners.set(job, owner);
    }
    if (owner !== s.uid) {
      this.log('warn', `refused ${s.name}: job ${job} is uid ${owner}'s`, { subscriber: s.name, job, owner });
      throw new SymError('ESYM_WATCHD_DENIED', { message: `Slurm job ${job} belongs to uid ${owner}, not to this subscriber (uid ${s.uid})`, field: 'job', value: job, fix: 'subscribe to one of your own jobs', exitCode: EXIT.usage });
    }
  }

  private subscribed(): number {
    let n = 0;
    for (const s of this.subs.values()) if (s.nodes) n++;
    return n;
  }

  stats(withSubscribers = false): WatchdStats {
    const p = this.poller.stats;
    return {
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      intervalMs: this.intervalMs,
      polls: p.polls,
      errors: p.errors,
      lastMs: p.lastMs,
      maxMs: p.maxMs,
      meanMs: p.polls ? Math.round((p.totalMs / p.polls) * 10) / 10 : 0,
      ...(p.lastError ? { lastError: p.lastError } : {}),
      ...(this.lastGoodPollAt !== undefined ? { lastGoodPollAgeMs: Date.now() - this.lastGoodPollAt } : {}),
      nodes: this.lastNodes,
      subscribers: this.subscribed(),
      notifications: this.notifications,
      dropped: this.dropped,
      jobPolls: this.jobStats.polls,
      jobPollErrors: this.jobStats.errors,
      allocationNotices: this.jobStats.notices,
      ...(withSubscribers ? {
        subscriberList: [...this.subs.values()].filter((s) => s.nodes).map((s) => ({
          name: s.name, nodes: s.nodes!.size, ...(s.job ? { job: s.job } : {}), connectedAt: new Date(s.connectedAt).toISOString(), bufferedBytes: s.peer.sock.writableLength, notifications: s.notifications,
        })),
      } : {}),
    };
  }

  /** Stop polling and close every connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.jobTimer);
    await this.poller.stop();
    for (const s of [...this.subs.values()]) {
      clearTimeout(s.idleTimer);
      s.peer.close();
    }
    this.subs.clear();
  }
}

export interface Watchd {
  daemon: WatchDaemon;
  server: ChannelServer;
  stop(): Promise<void>;
}

/** A subscriber's introduction (auth munge) → the secret of its connection and its UID. */
export function mungeIntroduction(decode: (cred: string) => Promise<MungeIdentity>) {
  return async (intro: Record<string, unknown>): Promise<{ secret: string; identity: { uid: number; gid: number } }> => {
    const cred = intro.cred;
    if (intro.auth !== 'munge' || typeof cred !== 'string' || !/^MUNGE:[A-Za-z0-9+/=:._-]{1,4000}$/.test(cred)) {
      throw new SymError('ESYM_WATCHD_MUNGE', { message: `a subscriber introduced itself without a MUNGE credential (auth ${JSON.stringify(intro.auth)})`, field: 'auth', value: String(intro.auth ?? ''), fix: 'this watchd runs with --auth munge: set slurm.watcherAuth: munge for the jobs' });
    }
    const id = await decode(cred);
    if (!/^[0-9a-f]{64}$/.test(id.payload)) {
      throw new SymError('ESYM_WATCHD_MUNGE', { message: `the MUNGE credential of uid ${id.uid} carries no session secret (64 hex digits)`, field: 'credential', fix: 'connect with symrun (slurm.watcherAuth: munge)' });
    }
    return { secret: id.payload, identity: { uid: id.uid, gid: id.gid } };
  };
}

/**
 * Listen on host:port (0 = any free port) and start polling. Subscribers prove `secret` (auth key), or,
 * with `munge` (auth munge), introduce themselves with a MUNGE credential (`decode`: unmunge; tests
 * pass a fake).
 */
export async function startWatchd(opts: WatchDaemonOptions & { host: string; port: number; secret?: string; munge?: { decode?: (cred: string) => Promise<MungeIdentity> } }): Promise<Watchd> {
  const daemon = new WatchDaemon(opts);
  const server = await serveChannel({
    host: opts.host, port: opts.port,
    ...(opts.munge ? { introduce: mungeIntroduction(opts.munge.decode ?? mungeDecode) } : { secret: opts.secret }),
    onPeer: (p) => daemon.attach(p),
    onRefused: (e) => opts.log?.('warn', e.message, { code: e.code }),
  });
  daemon.start();
  return {
    daemon,
    server,
    stop: async () => {
      const closed = server.close(); // bounded: connections still open after 1 s are cut
      await daemon.stop();
      await closed;
    },
  };
}

// ---- the key file ------------------------------------------------------------------------------

const MIN_KEY_CHARS = 32;

/** The shared secret in a key file (its first line, trimmed). */
export function readKeyFile(file: string, field = 'slurm.watcherKey'): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SymError('ESYM_WATCHD_KEY', {
      message: `cannot read the watchd key ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`,
      field, value: file,
      fix: code === 'ENOENT'
        ? 'create it on the watchd host with `symrun watchd --init-key --key FILE` and make the same file readable where jobs run'
        : 'the key must be readable by the users whose jobs subscribe (e.g. group `symrun`, mode 0640), see slurm-plugins/watchd/README.md',
      exitCode: EXIT.environment,
    });
  }
  const key = text.split('\n')[0]!.trim();
  if (key.length < MIN_KEY_CHARS) {
    throw new SymError('ESYM_WATCHD_KEY', { message: `the watchd key ${file} is too short (${key.length} characters; at least ${MIN_KEY_CHARS})`, field, value: file, fix: 'create a new one with `symrun watchd --init-key --key FILE` (remove the old file first)', exitCode: EXIT.environment });
  }
  return key;
}

/** Create a key file (mode 0600, 64 hex characters) if it does not exist; never overwrites one. */
export function initKeyFile(file: string): { created: boolean; mode: number } {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  try {
    fs.writeFileSync(file, crypto.randomBytes(32).toString('hex') + '\n', { flag: 'wx', mode: 0o600 });
    return { created: true, mode: fs.statSync(file).mode & 0o777 };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new SymError('ESYM_WATCHD_KEY', { message: `cannot create the watchd key ${file}: ${(e as Error).message}`, value: file, fix: 'run it as root, or pass --key FILE in a directory you can write', exitCode: EXIT.environment });
    }
    return { created: false, mode: fs.statSync(file).mode & 0o777 };
  }
}

/** "HOST:PORT" or "HOST" → {host, port} (the default port when there is none). */
export function parseWatchdAddress(s: string, defaultHost = '0.0.0.0'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::([0-9]+))?$/.exec(s.trim());
  const host = m ? (m[1] ?? m[2] ?? '') : '';
  const port = m?.[3] !== undefined ? Number(m[3]) : SLURM_DEFAULTS.watchdPort;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new SymError('ESYM_USAGE', { message: `not an address: ${s}`, value: s, fix: `HOST:PORT, e.g. 0.0.0.0:${SLURM_DEFAULTS.watchdPort}`, exitCode: EXIT.usage });
  }
  return { host: host || defaultHost, port };
}
