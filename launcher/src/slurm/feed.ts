// Where a job's coordinator learns of its nodes' state changes (Slurm mode): from a cluster-wide
// `symrun watchd` (slurm.watcher) when one is configured and answers, else by polling slurmctld itself
// (NodeWatcher, slurm.pollInterval). One stream of NodeChange for the drain policy either way:
//
//   start ──(no slurm.watcher)──────────────────────────────► poll
//     └──► connecting ──ok──► watcher ──(connection lost, watch.stats unanswered, or watchd's own
//               │                 ▲       polls stale)──► poll (said once) ──(every retryMs)──┐
//               └──failed──► poll  └──────────────────────────── ok ◄── connecting ◄──────────┘
//
// The feed keeps the last condition it reported per node and reports only what differs from it, so a
// switch of source neither repeats nor loses a change (the poller is resynced to it before it starts).
// Notifications that arrive while a subscribe is unanswered are held and applied after its snapshot.
//
// The job's own node list (allocation: grown by an expand, or a node gone) comes the same way: from
// watchd's watch.allocation (subscribe with the job id), or, while polling, from the job's own
// `scontrol show job` every allocation.intervalMs. onChange gets the whole list each time (idempotent).
import { SLURM_DEFAULTS } from '../defaults.js';
import crypto from 'node:crypto';
import { connectChannel, type ConnectOptions, type RpcPeer } from '../agent/channel.js';
import { mungeEncode } from './munge.js';
import type { NodeCondition } from './scontrol.js';
import { NodeWatcher, type NodeChange, type NodeWatcherOptions, type PollStats } from './watch.js';
import { parseWatchdAddress, readKeyFile, type NodeSnapshot, type SubscribeResult, type WatchdStats } from './watchd.js';

export type FeedSource = 'connecting' | 'watcher' | 'poll';

export interface NodeFeedOptions {
  /** the job's nodes (asked again each interval: the list may change) */
  nodes: () => string[];
  /** own polling interval (slurm.pollInterval) */
  intervalMs: number;
  /**
   * slurm.watcher ("HOST:PORT"), slurm.watcherKey; unset = poll only. auth (slurm.watcherAuth): `key`
   * (the default) proves the key file's secret; `munge` introduces this job's user with a MUNGE
   * credential only `user` (slurm.watcherUser: the user watchd runs as) can decode (slurm/munge.ts).
   */
  watcher?: { address: string; keyFile: string; auth?: 'key' | 'munge'; user?: string };
  /** this subscriber's name in watchd's log */
  name?: string;
  onChange: (changes: NodeChange[]) => void;
  /** follow the job's node list too (Slurm job id; `run` = the job's own `scontrol show job` while polling) */
  allocation?: { job: string; intervalMs: number; run: () => Promise<string[]>; onChange: (nodes: string[]) => void };
  /** own polling failed (scontrol) */
  onError?: (e: Error) => void;
  /** one line for the user (stderr) */
  say: (msg: string) => void;
  // ---- seams for tests
  run?: NodeWatcherOptions['run'];
  connect?: (o: ConnectOptions & { timeoutMs: number }) => Promise<RpcPeer>;
  readKey?: (file: string) => string;
  munge?: (payload: string, restrictUser: string) => Promise<string>;
  connectTimeoutMs?: number;
  checkMs?: number;
  staleMs?: number;
  retryMs?: number;
}

export interface FeedStatus extends PollStats {
  source: FeedSource;
  intervalMs: number;
  /** the job's node list: own `scontrol show job` calls (while polling), and lists received (either way) */
  allocation?: { intervalMs: number; checks: number; errors: number; updates: number; nodes?: string[] };
  watcher?: {
    address: string;
    state: 'connecting' | 'connected' | 'unreachable';
    since: string;
    lastError?: string;
    connects: number;
    fallbacks: number;
    notifications: number;
    daemon?: DaemonSummary;
  };
}

/** What the coordinator last heard from watchd's watch.stats. */
export type DaemonSummary = Pick<WatchdStats, 'intervalMs' | 'polls' | 'errors' | 'meanMs' | 'maxMs' | 'subscribers' | 'nodes' | 'lastGoodPollAgeMs'>;

function fmtSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string, onLate: (v: T) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  return Promise.race([
    p.then((v) => { if (timedOut) onLate(v); return v; }),
    new Promise<T>((_, reject) => { timer = setTimeout(() => { timedOut = true; reject(new Error(`${what}: no answer within ${ms} ms`)); }, ms); }),
  ]).finally(() => clearTimeout(timer));
}

export class NodeFeed {
  readonly intervalMs: number;
  /** the job's own polling (used when there is no watcher, or it is unreachable) */
  readonly poller: NodeWatcher;
  private known = new Map<string, NodeCondition>();
  private _source: FeedSource = 'connecting';
  private stopped = false;
  private polling = false;
  private pollerStopping?: Promise<void>;
  private peer?: RpcPeer;
  private subscribedKey = '';
  private held?: NodeChange[][];
  private tick?: NodeJS.Timeout;
  private retry?: NodeJS.Timeout;
  private lastCheck = 0;
  private checking = false;
  private attempt?: Promise<void>;
  private readonly addr?: { host: string; port: number; text: string };
  private allocTimer?: NodeJS.Timeout;
  private allocChecking = false;
  private readonly alloc = { checks: 0, errors: 0, updates: 0, nodes: undefined as string[] | undefined };
  private readonly w = { state: 'connecting' as 'connecting' | 'connected' | 'unreachable', since: Date.now(), lastError: undefined as string | undefined, connects: 0, fallbacks: 0, notifications: 0, daemon: undefined as DaemonSummary | undefined };

  constructor(private opts: NodeFeedOptions) {
    this.intervalMs = opts.intervalMs;
    if (opts.watcher) {
      const a = parseWatchdAddress(opts.watcher.address, '127.0.0.1');
      this.addr = { ...a, text: `${a.host}:${a.port}` };
    }
    this.poller = new NodeWatcher({
      nodes: () => this.opts.nodes(),
      intervalMs: opts.intervalMs,
      run: opts.run,
      onChange: (changes) => { if (this._source === 'poll') this.apply(changes); },
      onError: (e) => this.opts.onError?.(e),
    });
  }

  get source(): FeedSource {
    return this._source;
  }

  start(): void {
    if (!this.addr) {
      this._source = 'poll';
      void this.startPolling();
      return;
    }
    this.attempt = this.tryWatcher(true);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.tick);
    clearInterval(this.allocTimer);
    clearTimeout(this.retry);
    this.peer?.close();
    this.peer = undefined;
    await this.attempt?.catch(() => undefined);
    await this.poller.stop();
  }

  status(): FeedStatus {
    return {
      source: this._source,
      intervalMs: this.intervalMs,
      ...this.poller.stats,
      ...(this.opts.allocation ? { allocation: { intervalMs: this.opts.allocation.intervalMs, checks: this.alloc.checks, errors: this.alloc.errors, updates: this.alloc.updates, ...(this.alloc.nodes ? { nodes: this.alloc.nodes } : {}) } } : {}),
      ...(this.addr ? {
        watcher: {
          address: this.addr.text, state: this.w.state, since: new Date(this.w.since).toISOString(),
          ...(this.w.lastError ? { lastError: this.w.lastError } : {}),
          connects: this.w.connects, fallbacks: this.w.fallbacks, notifications: this.w.notifications,
          ...(this.w.daemon ? { daemon: this.w.daemon } : {}),
        },
      } : {}),
    };
  }

  // ---- one stream of changes ----

  /** Report what differs from the last reported condition, for the job's nodes only. */
  private apply(entries: Array<Pick<NodeChange, 'node' | 'condition' | 'state' | 'reason' | 'seenAt'>>): void {
    if (this.stopped) return;
    const mine = new Set(this.opts.nodes());
    const out: NodeChange[] = [];
    for (const e of entries) {
      if (!mine.has(e.node)) continue;
      const prev = this.known.get(e.node) ?? 'ok';
      this.known.set(e.node, e.condition);
      if (prev !== e.condition) out.push({ node: e.node, condition: e.condition, previous: prev, state: e.state, ...(e.reason ? { reason: e.reason } : {}), seenAt: e.seenAt });
    }
    if (out.length) this.opts.onChange(out);
  }

  /** The job's node list, from either source. */
  private allocation(nodes: unknown): void {
    if (this.stopped || !this.opts.allocation || !Array.isArray(nodes) || !nodes.every((n) => typeof n === 'string') || nodes.length === 0) return;
    this.alloc.updates++;
    this.alloc.nodes = nodes as string[];
    this.opts.allocation.onChange(nodes as string[]);
  }

  // ---- own polling ----

  private async startPolling(): Promise<void> {
    await this.pollerStopping;
    if (this.stopped || this.polling) return;
    this.polling = true;
    this.poller.resync(this.known);
    this.poller.start();
    const a = this.opts.allocation;
    if (a) {
      clearInterval(this.allocTimer);
      this.allocTimer = setInterval(() => void this.checkAllocation(), a.intervalMs);
      this.allocTimer.unref?.();
    }
  }

  private async checkAllocation(): Promise<void> {
    if (this.allocChecking || !this.polling || this.stopped) return;
    this.allocChecking = true;
    try {
      const nodes = await this.opts.allocation!.run();
      this.alloc.checks++;
      if (this.polling) this.allocation(nodes);
    } catch {
      this.alloc.errors++; // slurmctld busy: the next check, the node watcher and the heartbeat still see a loss
    } finally {
      this.allocChecking = false;
    }
  }

  private stopPolling(): void {
    if (!this.polling) return;
    this.polling = false;
    clearInterval(this.allocTimer);
    this.pollerStopping = this.poller.stop();
  }

  // ---- the watcher ----

  private async tryWatcher(initial: boolean): Promise<void> {
    const a = this.addr!;
    this.w.state = 'connecting';
    let peer: RpcPeer | undefined;
    try {
      const w = this.opts.watcher!;
      let secret: string;
      let intro: Record<string, unknown> | undefined;
      if (w.auth === 'munge') {
        secret = crypto.randomBytes(32).toString('hex'); // this connection's; watchd learns it from the credential
        intro = { auth: 'munge', cred: await (this.opts.munge ?? mungeEncode)(secret, w.user ?? SLURM_DEFAULTS.watchdUser) };
      } else {
        secret = (this.opts.readKey ?? readKeyFile)(w.keyFile);
      }
      const timeoutMs = this.opts.connectTimeoutMs ?? SLURM_DEFAULTS.watcherConnectTimeoutMs;
      const connect = this.opts.connect ?? ((o) => connectChannel(o));
      peer = await withTimeout(connect({ host: a.host, port: a.port, secret, name: this.opts.name ?? `symrun pid ${process.pid}`, timeoutMs: 1, ...(intro ? { intro } : {}) }), timeoutMs, 'connect', (late) => late.close());
      if (this.stopped) { peer.close(); return; }
      const p = peer;
      this.held = [];
      p.on('event', (name: string, data: { changes?: NodeChange[]; job?: string; nodes?: string[] }) => {
        if (this.peer !== p) return;
        if (name === 'watch.allocation' && data?.job === this.opts.allocation?.job) { this.allocation(data.nodes); return; }
        if (name !== 'watch.changes' || !Array.isArray(data?.changes)) return;
        this.w.notifications++;
        if (this.held) this.held.push(data.changes);
        else this.apply(data.changes);
      });
      p.on('close', () => { if (this.peer === p) this.lost('connection closed'); });
      p.start();
      this.peer = p;
      await this.subscribe(timeoutMs);
      if (this.stopped) return;
      this.w.connects++;
      this.w.state = 'connected';
      this.w.since = Date.now();
      this.w.lastError = undefined;
      const wasPolling = this._source === 'poll';
      this._source = 'watcher';
      this.stopPolling();
      if (initial) this.opts.say(`watching the nodes through the node watcher ${a.text}`);
      else if (wasPolling) this.opts.say(`node watcher ${a.text} reachable again: using it (stopped polling slurmctld)`);
      this.lastCheck = Date.now();
      clearInterval(this.tick);
      this.tick = setInterval(() => void this.onTick(), Math.min(this.intervalMs, this.opts.checkMs ?? SLURM_DEFAULTS.watcherCheckMs));
      this.tick.unref?.();
    } catch (e) {
      if (peer && this.peer === peer) this.peer = undefined;
      peer?.close();
      this.held = undefined;
      if (this.stopped) return;
      this.fallBack(describe(e));
    }
  }

  /** watch.subscribe with the current node list; snapshot applied, held notifications after it. */
  private async subscribe(timeoutMs: number): Promise<void> {
    const p = this.peer!;
    const nodes = this.opts.nodes();
    this.held ??= [];
    try {
      const r = await p.call<SubscribeResult>('watch.subscribe', { nodes, ...(this.opts.allocation ? { job: this.opts.allocation.job } : {}) }, { timeoutMs });
      if (this.peer !== p) return;
      this.subscribedKey = nodes.join(',');
      this.checkStale(r.lastGoodPollAgeMs, r.intervalMs);
      this.apply((r.nodes ?? []).map((n: NodeSnapshot) => n));
      if (r.allocation) this.allocation(r.allocation);
      const held = this.held ?? [];
      this.held = undefined;
      for (const h of held) this.apply(h);
    } finally {
      if (this.peer === p) this.held = undefined;
    }
  }

  private checkStale(ageMs: number | undefined, daemonIntervalMs: number): void {
    const limit = Math.max(this.opts.staleMs ?? SLURM_DEFAULTS.watcherStaleMs, 5 * daemonIntervalMs);
    if (ageMs !== undefined && ageMs > limit) throw new Error(`its last successful poll of slurmctld was ${Math.round(ageMs / 1000)} s ago`);
  }

  private async onTick(): Promise<void> {
    const p = this.peer;
    if (!p || this.stopped || this.checking) return;
    this.checking = true;
    try {
      const timeoutMs = this.opts.checkMs ?? SLURM_DEFAULTS.watcherCheckMs;
      if (this.opts.nodes().join(',') !== this.subscribedKey) await this.subscribe(timeoutMs);
      if (Date.now() - this.lastCheck >= timeoutMs) {
        this.lastCheck = Date.now();
        const s = await p.call<WatchdStats>('watch.stats', {}, { timeoutMs });
        if (this.peer !== p) return;
        this.w.daemon = { intervalMs: s.intervalMs, polls: s.polls, errors: s.errors, meanMs: s.meanMs, maxMs: s.maxMs, subscribers: s.subscribers, nodes: s.nodes, ...(s.lastGoodPollAgeMs !== undefined ? { lastGoodPollAgeMs: s.lastGoodPollAgeMs } : {}) };
        this.checkStale(s.lastGoodPollAgeMs, s.intervalMs);
      }
    } catch (e) {
      if (this.peer === p) this.lost(describe(e));
    } finally {
      this.checking = false;
    }
  }

  private lost(why: string): void {
    const p = this.peer;
    this.peer = undefined;
    clearInterval(this.tick);
    p?.close();
    if (this.stopped) return;
    this.fallBack(`lost: ${why}`);
  }

  /** Poll slurmctld ourselves from now on (said once per switch); try the watcher again later. */
  private fallBack(why: string): void {
    this.w.lastError = why;
    const was = this._source;
    this.w.state = 'unreachable';
    if (was !== 'poll') {
      this.w.fallbacks++;
      this.w.since = Date.now();
      this._source = 'poll';
      this.opts.say(`node watcher ${this.addr!.text} unreachable (${why}): polling slurmctld myself every ${fmtSeconds(this.intervalMs)}`);
      void this.startPolling();
    }
    clearTimeout(this.retry);
    this.retry = setTimeout(() => { this.attempt = this.tryWatcher(false); }, this.opts.retryMs ?? SLURM_DEFAULTS.watcherRetryMs);
    this.retry.unref?.();
  }
}

function describe(e: unknown): string {
  const err = e as { code?: string; message?: string; cause?: { message?: string } };
  if (err.code === 'ESYM_CHANNEL_AUTH') return `it refused us, or did not prove itself (${err.message}): check slurm.watcherAuth and slurm.watcherKey / slurm.watcherUser against watchd's --auth`;
  if (err.code === 'ESYM_CHANNEL_CONNECT' && err.cause?.message) return err.cause.message;
  return err.message ?? String(e);
}
