// Host-side client of one guest agent. Explicit states: detached -> syncing -> ready (-> detached on
// link loss, e.g. while the VM migrates). Sessions outlive the link: sequenced frames are replayed by
// the guest after the next sync, and duplicates are dropped here by sequence number.
import crypto from 'node:crypto';
import os from 'node:os';
import { EventEmitter } from 'node:events';
import type { HostFrame, GuestFrame, ExecArgs, AgentInfo } from '../../../guest/protocol/index.js';
import { PROTOCOL_VERSION, exitStatus } from '../../../guest/protocol/index.js';
import { SymError } from '../errors.js';
import { DEFAULTS } from '../defaults.js';

export type GuestState = 'detached' | 'syncing' | 'ready' | 'closed';

export interface ExecResult { code: number | null; signal: string | null; status: number }
export interface ExecHandle {
  sid: string;
  done: Promise<ExecResult>;
  write(data: Buffer): void;
  end(): void;
  signal(sig: string): void;
  resize(cols: number, rows: number): void;
}
export interface ExecOptions {
  onStdout?: (d: Buffer) => void;
  onStderr?: (d: Buffer) => void;
}

let sidCounter = 0;

export class GuestClient extends EventEmitter {
  state: GuestState = 'detached';
  info?: AgentInfo;
  private link?: (f: HostFrame) => void;
  private lastSeq = 0;
  private ackTimer?: NodeJS.Timeout;
  private syncId?: string;
  private syncWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; op: string }>();
  private sessions = new Map<string, { opts: ExecOptions; resolve: (r: ExecResult) => void }>();
  private reqId = 0;
  private hb?: NodeJS.Timeout;
  private lastPong = Date.now();

  constructor(readonly vm: string) {
    super();
  }

  /** A new link to the guest (after boot or after the VM moved): handshake with a random id. */
  attach(send: (f: HostFrame) => void): void {
    this.link = send;
    this.state = 'syncing';
    this.syncId = crypto.randomBytes(8).toString('hex');
    send({ t: 'sync', id: this.syncId, lastSeq: this.lastSeq });
    // fallback if no port-open event arrives (resync() is the fast path): repeat until it answers
    const again = setInterval(() => {
      if (this.state !== 'syncing' || this.link !== send) return clearInterval(again);
      send({ t: 'sync', id: this.syncId!, lastSeq: this.lastSeq });
    }, 1000);
  }

  /** Sequence number of the last frame received from the guest (recorded in checkpoints). */
  get receivedSeq(): number {
    return this.lastSeq;
  }

  /**
   * The guest was restored from a checkpoint (or booted afresh: 0): its sequence numbers start again after
   * `seq`, what this side had received when the state was saved. Call while detached, before the next attach:
   * the sync then acknowledges up to `seq` and the guest replays only what came after.
   */
  rewind(seq: number): void {
    this.lastSeq = seq;
  }

  /** Re-send the pending sync now (the host saw the guest open its port: VSERPORT_CHANGE). */
  resync(): void {
    if (this.state === 'syncing' && this.link && this.syncId) this.link({ t: 'sync', id: this.syncId, lastSeq: this.lastSeq });
  }

  /** The link is gone; sessions stay, pending requests fail. */
  detach(reason: string): void {
    if (this.state === 'closed') return;
    this.link = undefined;
    this.state = 'detached';
    this.stopHeartbeat();
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new SymError('ESYM_GUEST_DISCONNECTED', { message: `guest agent of ${this.vm} disconnected during ${p.op} (${reason})` }));
      this.pending.delete(id);
    }
    this.emit('detached', reason);
  }

  close(): void {
    this.detach('closed');
    this.state = 'closed';
    for (const w of this.syncWaiters) w.reject(new SymError('ESYM_GUEST_CLOSED', { message: `guest ${this.vm} closed` }));
    this.syncWaiters = [];
  }

  /** Resolves when the guest has answered a sync on the current link. */
  ready(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.state === 'ready') return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const w = {
        resolve: () => { clearTimeout(t); resolve(); },
        reject: (e: Error) => { clearTimeout(t); reject(e); },
      };
      const t = setTimeout(() => {
        this.syncWaiters = this.syncWaiters.filter((x) => x !== w);
        reject(new SymError('ESYM_GUEST_TIMEOUT', { message: `the guest agent of ${this.vm} did not answer within ${Math.round(timeoutMs / 1000)} s`, fix: `look at the VM console log for boot errors (symrun keeps it in the job's run directory)` }));
      }, timeoutMs);
      signal?.addEventListener('abort', () => w.reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')), { once: true });
      this.syncWaiters.push(w);
    });
  }

  /** Frames from the guest (already size- and schema-checked by parseGuestFrame). */
  receive(f: GuestFrame): void {
    if (f.t === 'sync') {
      if (f.id !== this.syncId || this.state !== 'syncing') return;
      if (f.v !== PROTOCOL_VERSION) {
        this.emit('error', new SymError('ESYM_GUEST_PROTOCOL', { message: `guest ${this.vm} speaks protocol ${f.v}, expected ${PROTOCOL_VERSION}`, fix: 'rebuild the guest image (`symrun image build --force`)' }));
        return;
      }
      this.info = f.agent;
      this.state = 'ready';
      this.startHeartbeat();
      for (const w of this.syncWaiters) w.resolve();
      this.syncWaiters = [];
      this.emit('ready', f.agent);
      return;
    }
    if (this.state !== 'ready') return; // leftovers of a previous link before the handshake
    if ('seq' in f) {
      if (f.seq <= this.lastSeq) return; // replayed duplicate
      this.lastSeq = f.seq;
      this.scheduleAck();
    }
    switch (f.t) {
      case 'pong':
        this.lastPong = Date.now();
        return;
      case 'res': {
        const p = this.pending.get(f.id);
        if (!p) return;
        this.pending.delete(f.id);
        clearTimeout(p.timer);
        if (f.ok) p.resolve(f.value);
        else p.reject(new SymError('ESYM_GUEST_OP', { message: `${this.vm}: ${p.op} failed: ${f.error.message}`, details: { guestCode: f.error.code } }));
        return;
      }
      case 'out': {
        const s = this.sessions.get(f.sid);
        const d = Buffer.from(f.data, 'base64');
        if (f.fd === 1) s?.opts.onStdout?.(d);
        else s?.opts.onStderr?.(d);
        return;
      }
      case 'exit': {
        const s = this.sessions.get(f.sid);
        if (!s) return;
        this.sessions.delete(f.sid);
        s.resolve({ code: f.code, signal: f.signal, status: exitStatus(f.code, f.signal, os.constants.signals as Record<string, number>) });
        return;
      }
      case 'rsh':
        this.emit('rsh', f);
        return;
      case 'notice':
        this.emit('notice', f);
        return;
    }
  }

  private scheduleAck(): void {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      this.link?.({ t: 'ack', seq: this.lastSeq });
    }, 100);
  }

  private startHeartbeat(): void {
    this.stopHeartbeat();
    this.lastPong = Date.now();
    const every = DEFAULTS.agent.heartbeatMs;
    this.hb = setInterval(() => {
      if (!this.link || this.state !== 'ready') return;
      if (Date.now() - this.lastPong > every * DEFAULTS.agent.heartbeatMisses) this.emit('unresponsive', Date.now() - this.lastPong);
      this.link({ t: 'ping', id: `p${Date.now()}` });
    }, every);
    this.hb.unref();
  }

  private stopHeartbeat(): void {
    if (this.hb) clearInterval(this.hb);
    this.hb = undefined;
  }

  sinceLastPongMs(): number {
    return Date.now() - this.lastPong;
  }

  send(f: HostFrame): void {
    if (!this.link || this.state !== 'ready') throw new SymError('ESYM_GUEST_DISCONNECTED', { message: `guest agent of ${this.vm} is not connected` });
    this.link(f);
  }

  request<T = unknown>(op: string, args: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (!this.link || this.state !== 'ready') return Promise.reject(new SymError('ESYM_GUEST_DISCONNECTED', { message: `guest agent of ${this.vm} is not connected (${op})` }));
    const id = `q${++this.reqId}`;
    const timeoutMs = opts.timeoutMs ?? 60_000;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SymError('ESYM_GUEST_TIMEOUT', { message: `${this.vm}: ${op} got no answer within ${timeoutMs} ms` }));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, op });
      this.link!({ t: 'req', id, op, args });
    });
  }

  async exec(args: Omit<ExecArgs, 'sid'>, opts: ExecOptions = {}): Promise<ExecHandle> {
    const sid = `s${process.pid}x${++sidCounter}`;
    let resolve!: (r: ExecResult) => void;
    const done = new Promise<ExecResult>((r) => (resolve = r));
    this.sessions.set(sid, { opts, resolve });
    try {
      await this.request('exec', { ...args, sid } as unknown as Record<string, unknown>);
    } catch (e) {
      this.sessions.delete(sid);
      throw e;
    }
    const link = () => this.link;
    return {
      sid,
      done,
      write: (d: Buffer) => {
        for (let off = 0; off < d.length; off += 48 * 1024) link()?.({ t: 'in', sid, data: d.subarray(off, off + 48 * 1024).toString('base64') });
      },
      end: () => link()?.({ t: 'in', sid, eof: true }),
      signal: (sig: string) => link()?.({ t: 'signal', sid, sig }),
      resize: (cols: number, rows: number) => link()?.({ t: 'resize', sid, cols, rows }),
    };
  }

  /**
   * Take over a session a previous coordinator started (`symrun recover`): output and the exit the
   * guest still holds (unacknowledged, replayed after sync) go to these handlers. Call before attach().
   */
  adopt(sid: string, opts: ExecOptions = {}): ExecHandle {
    let resolve!: (r: ExecResult) => void;
    const done = new Promise<ExecResult>((r) => (resolve = r));
    this.sessions.set(sid, { opts, resolve });
    const link = () => this.link;
    return {
      sid,
      done,
      write: (d: Buffer) => link()?.({ t: 'in', sid, data: d.toString('base64') }),
      end: () => link()?.({ t: 'in', sid, eof: true }),
      signal: (sig: string) => link()?.({ t: 'signal', sid, sig }),
      resize: (cols: number, rows: number) => link()?.({ t: 'resize', sid, cols, rows }),
    };
  }

  /** Run to completion, collecting output (for short commands). */
  async run(argv: string[], opts: { cwd?: string; env?: Record<string, string>; input?: Buffer; timeoutMs?: number } = {}): Promise<ExecResult & { stdout: string; stderr: string }> {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const h = await this.exec({ argv, cwd: opts.cwd, env: opts.env, stdin: !!opts.input }, { onStdout: (d) => out.push(d), onStderr: (d) => err.push(d) });
    if (opts.input) {
      h.write(opts.input);
      h.end();
    }
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      h.done,
      new Promise<never>((_, reject) => {
        if (opts.timeoutMs) timer = setTimeout(() => { h.signal('SIGKILL'); reject(new SymError('ESYM_GUEST_TIMEOUT', { message: `${this.vm}: ${argv.join(' ')} did not finish within ${opts.timeoutMs} ms` })); }, opts.timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    return { ...r, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
  }
}
