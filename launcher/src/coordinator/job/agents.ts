// The job's host agents: one per host (local: a process in the host's namespace; Slurm: an srun step),
// connected over the authenticated channel. Starts them and waits for each to connect, keeps the
// current connection of each host (an agent that connects again replaces its older connection, which
// is closed), asks each for a heartbeat, says when one is lost, and stops them all at teardown: the
// channel and every connection on it closed BEFORE the hosts are removed (a peer whose namespace or
// node is gone never closes its end), then the agent processes (SIGTERM through srun, then SIGKILL).
import path from 'node:path';
import fs from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { SymError } from '../../errors.js';
import { DEFAULTS, SLURM_DEFAULTS, PROTOCOL_DEFAULTS } from '../../defaults.js';
import { serveChannel, type RpcPeer, type ChannelServer } from '../../agent/channel.js';
import { HOST_AGENT_EVENTS, type HostAgentEvents, type HostAgentPeer } from '../../wire/hostagent.js';
import type { EventOf } from '../../wire/rpc.js';
import { onEvents } from '../../agent/typed.js';
import { signalGroup, stopChild } from '../../util/children.js';
import type { HostSet } from '../hosts.js';
import { ending, type JobContext } from './context.js';

export interface AgentHooks {
  /** an event from a host agent (guest frames, QMP events, migration progress, VM exits) */
  onEvent(peer: RpcPeer, ev: EventOf<HostAgentEvents>): void;
  /** a host is gone (agent silent or disconnected) */
  onLost(host: string, why: string): void;
}

export class HostAgents {
  private peers = new Map<string, RpcPeer>();
  private waiters = new Map<string, (p: RpcPeer) => void>();
  private children: ChildProcess[] = [];
  private server?: ChannelServer;
  private closed?: Promise<void>;
  secret = '';

  constructor(private job: JobContext, private hooks: AgentHooks) {}

  get port(): number { return this.server?.port ?? 0; }

  /** The connected agent of `host`, its methods and events typed by wire/hostagent.ts (ESYM_NO_AGENT if none). */
  peer(host: string): HostAgentPeer {
    const p = this.peers.get(host);
    if (!p) throw new SymError('ESYM_NO_AGENT', { message: `no host agent connected on ${host}` });
    return p;
  }

  has(host: string): boolean { return this.peers.has(host); }
  connected(): Array<[string, RpcPeer]> { return [...this.peers]; }

  /** Serve the channel on `host` (port: a recovered job's old port) with the job's secret. */
  async listen(host: string, secret: string, port?: number): Promise<void> {
    this.secret = secret;
    this.server = await serveChannel({
      host, port, secret, onPeer: (p) => this.add(p),
      onRefused: (e) => this.job.err.write(`symrun: warning: refused a connection to the job channel: ${e.message}\n`),
    });
  }

  private add(p: RpcPeer): void {
    if (this.job.lostHosts.has(p.name)) { p.close(); return; } // a lost node's agent is not taken back
    const old = this.peers.get(p.name);
    this.peers.set(p.name, p);
    // an agent that connected again: the older connection is closed here, never left open (its peer
    // may never close it, and it would keep symrun alive after the job)
    if (old && old !== p) old.close();
    this.waiters.get(p.name)?.(p);
    // what breaks the contract is dropped; said once per connection (the same installation on both sides: a bug)
    let warned = false;
    onEvents<HostAgentEvents>(p, HOST_AGENT_EVENTS, (ev) => this.hooks.onEvent(p, ev), (why) => {
      if (!warned) this.job.say(`host agent ${p.name}: dropped an event that breaks the contract (${why}); further ones are dropped silently`);
      warned = true;
    });
    p.on('close', (reason?: SymError) => { if (this.peers.get(p.name) === p) this.hooks.onLost(p.name, reason ? `its host agent's connection was closed: ${reason.message}` : 'its host agent\'s connection closed'); });
    p.start();
  }

  /** Forget a lost host's agent; its pending calls fail now instead of at their timeouts. */
  drop(host: string): void {
    const p = this.peers.get(host);
    this.peers.delete(host);
    p?.close();
  }

  /** Start the agents of every host of `cluster` and wait for each to connect. */
  async startAll(cluster: HostSet): Promise<void> {
    this.job.onCleanup('host agents', () => this.stopAll());
    await Promise.all(cluster.hosts.map((h) => this.start(cluster, h.name)));
  }

  /** Start the agent of `host` (under Slurm: an srun step there) and wait for it to connect. */
  start(cluster: HostSet, host: string): Promise<RpcPeer> {
    const connectMs = cluster.mode === 'slurm' ? SLURM_DEFAULTS.agentConnectTimeoutMs : 30_000;
    const log = path.join(this.job.runDir, `${host}.agent.log`);
    const c = cluster.startAgent(host, { SYMRUN_COORD: `${cluster.coordinatorIp}:${this.port}`, SYMRUN_JOB_SECRET: this.secret, SYMRUN_HOST: host, SYMRUN_JOB_ID: this.job.id }, log);
    this.children.push(c);
    return new Promise<RpcPeer>((resolve, reject) => {
      const t = setTimeout(() => {
        // given up on: stop it (srun forwards SIGTERM to its step; SIGKILL if srun lingers)
        this.waiters.delete(host);
        void stopChild(c, { graceMs: 1500 });
        reject(new SymError('ESYM_AGENT_START', { message: `host agent on ${host} did not connect within ${connectMs / 1000} s`, fix: `see ${log}` }));
      }, connectMs);
      c.once('exit', (code) => { clearTimeout(t); reject(new SymError('ESYM_AGENT_START', { message: `host agent on ${host} exited (${code}) before connecting: ${tail(log)}` })); });
      const have = this.peers.get(host);
      if (have) { clearTimeout(t); resolve(have); return; }
      this.waiters.set(host, (p) => { clearTimeout(t); resolve(p); });
    });
  }

  /** A recovered job: wait (bounded) for the agents of `hosts` to reconnect to the new coordinator. */
  awaitReconnect(hosts: string[], timeoutMs: number): Promise<void> {
    return Promise.all(hosts.map((h) => new Promise<void>((resolve, reject) => {
      if (this.peers.has(h)) return resolve();
      const t = setTimeout(() => reject(new SymError('ESYM_RECOVER', { message: `the host agent on ${h} did not come back within ${timeoutMs / 1000} s`, fix: `host agents wait ${PROTOCOL_DEFAULTS.agentGraceMs / 1000} s for a new coordinator; see ${path.join(this.job.runDir, `${h}.agent.log`)}` })), timeoutMs);
      this.waiters.set(h, () => { clearTimeout(t); resolve(); });
    }))).then(() => undefined);
  }

  /** Every agent answers host.info once per heartbeat; one silent for agentLostMs is lost (its node died). */
  startHeartbeat(): void {
    const lastOk = new Map<string, number>();
    const lostMs = PROTOCOL_DEFAULTS.agentLostMs;
    let lastTick = Date.now();
    const timer = setInterval(() => {
      if (ending(this.job.state)) return;
      const now = Date.now();
      // this process was stalled (not the agents): their answers may be waiting unread; start counting afresh
      if (now - lastTick > 3 * PROTOCOL_DEFAULTS.agentHeartbeatMs) for (const name of lastOk.keys()) lastOk.set(name, now);
      lastTick = now;
      for (const [name, p] of this.peers) {
        if (!lastOk.has(name)) lastOk.set(name, Date.now());
        typed(p).call('host.info', {}, { timeoutMs: lostMs }).then(() => lastOk.set(name, Date.now()), () => undefined);
        const silent = Date.now() - lastOk.get(name)!;
        if (silent > lostMs) this.hooks.onLost(name, `its host agent has not answered for ${(silent / 1000).toFixed(1)} s`);
      }
    }, PROTOCOL_DEFAULTS.agentHeartbeatMs);
    timer.unref();
    this.job.onCleanup('host agent heartbeat', () => clearInterval(timer));
  }

  /** Ask every agent once (after mpirun failed: did a node die before its agent was missed?). */
  async probe(): Promise<void> {
    await Promise.all([...this.peers].map(async ([name, p]) => {
      try { await typed(p).call('host.info', {}, { timeoutMs: PROTOCOL_DEFAULTS.agentLostMs }); } catch (e) { this.hooks.onLost(name, `its host agent did not answer: ${(e as Error).message}`); }
    }));
  }

  /** Teardown (run and recover alike): agents stop their VMs and exit; channel closed; processes stopped. */
  async stopAll(): Promise<void> {
    const { totalMs, channelGraceMs } = DEFAULTS.teardown;
    await Promise.allSettled([...this.peers.values()].map((p) => typed(p).call('shutdown', {}, { timeoutMs: totalMs - channelGraceMs - 1000 }).catch(() => undefined)));
    await this.closeChannel();
    // srun forwards SIGTERM to its step; give it a moment before SIGKILL (local agents have exited)
    const grace = this.job.cluster?.mode === 'slurm' ? 1500 : 0;
    const alive = this.children.filter((c) => c.exitCode === null && c.signalCode === null); // (a pid of an exited child may be reused)
    await Promise.all(alive.map((c) => (grace ? stopChild(c, { graceMs: grace }) : Promise.resolve(signalGroup(c.pid, 'SIGKILL')))));
  }

  /** Close the channel and every connection on it; says which had to be cut. Idempotent. */
  closeChannel(): Promise<void> {
    this.closed ??= (async () => {
      const r = await this.server?.close({ graceMs: DEFAULTS.teardown.channelGraceMs });
      for (const p of this.peers.values()) p.close();
      if (r?.cut.length) this.job.err.write(`symrun: warning: cut ${r.cut.length} host agent connection${r.cut.length === 1 ? '' : 's'} that did not close: ${r.cut.join(', ')}\n`);
    })();
    return this.closed;
  }
}

/** A connected agent seen through its contract (wire/hostagent.ts). */
const typed = (p: RpcPeer): HostAgentPeer => p;

export function tail(file: string, n = 600): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-n).trim();
  } catch {
    return '(no log)';
  }
}
