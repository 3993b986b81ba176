// Coordinator <-> host agent channel: JSON lines over TCP. A mutual handshake first: each side sends a
// nonce and proves the per-job secret with an HMAC over both nonces, its role and the client's name
// (the secret never crosses the wire; a peer that cannot prove it is refused: ESYM_CHANNEL_AUTH). Then
// every message is sealed (AES-256-GCM with per-direction session keys and a frame counter:
// channel-crypto.ts) and carries a small RPC:
//   {t:'call', id, method, params}  -> {t:'result', id, ok, value | error}
//   {t:'event', name, data}            (either direction, no reply)
// symrun watchd uses the same channel; the job's control socket (unix) the same handshake and sealing
// with the job's control key. Wire tables and the threat each step answers: docs/channels.md.
import net from 'node:net';
import fs from 'node:fs';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { LineDecoder } from '../../../guest/protocol/index.js';
import { SymError, isErrorCode } from '../errors.js';
import { CHANNEL_VERSION, FrameOpener, FrameSealer, isNonce, newNonce, proof, proofMatches, sessionKeys, type SessionKeys } from './channel-crypto.js';

export { CHANNEL_VERSION, proof } from './channel-crypto.js';
/** The largest message (its JSON text); a sealed line is its base64, a third longer. */
const MAX_LINE = 64 * 1024 * 1024;
const MAX_SEALED_LINE = Math.ceil(MAX_LINE / 3) * 4 + 256;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const MAX_NAME = 256;

/** Session keys for one end of an authenticated connection: what it sends with, what it receives with. */
export interface PeerSession { send: Buffer; recv: Buffer }

type Msg = Record<string, unknown> & { t: string };
export type Handler = (params: any, peer: RpcPeer) => Promise<unknown> | unknown;

export interface RpcError { code: string; message: string; fix?: string; details?: unknown; field?: string; value?: unknown; exitCode?: number }

export class RpcCallError extends SymError {
  constructor(method: string, e: RpcError) {
    // a peer's code is taken over only if it is one of ours (error-codes.ts), never made up by the peer
    super(isErrorCode(e.code) ? e.code : 'ESYM_REMOTE', {
      message: e.message, fix: e.fix, field: e.field, value: e.value, details: { method, remoteCode: e.code },
      ...(typeof e.exitCode === 'number' && e.exitCode > 0 && e.exitCode < 256 ? { exitCode: e.exitCode } : {}),
    });
  }
}

export class RpcPeer extends EventEmitter {
  private pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout; method: string }>();
  private nextId = 0;
  private handlers = new Map<string, Handler>();
  private decoder: LineDecoder;
  private sealer?: FrameSealer;
  private opener?: FrameOpener;
  closed = false;
  /** who the client is, when the server authenticates each user (ServeOptions.introduce) */
  identity?: PeerIdentity;
  /** why this side closed the connection (a frame that failed its checks), when it was not a plain close */
  closeReason?: SymError;
  name = '';
  private started = false;
  private queued: Msg[] = [];
  /** relay mode (symrun control-proxy): every message goes here instead of being dispatched */
  private relay?: (m: Msg) => void;

  /**
   * Messages are held until start(): register handlers first, so no early call finds none. Any duplex
   * stream carries the channel (a socket, or a child's stdio: `symrun status --job` through srun).
   */
  constructor(readonly sock: net.Socket | Duplex, initial?: Buffer, opts: { session?: PeerSession; name?: string } = {}) {
    super();
    if (opts.name) this.name = opts.name;
    if (opts.session) {
      this.sealer = new FrameSealer(opts.session.send);
      this.opener = new FrameOpener(opts.session.recv, opts.name || 'peer');
    }
    this.decoder = new LineDecoder(opts.session ? MAX_SEALED_LINE : MAX_LINE);
    (sock as net.Socket).setNoDelay?.(true);
    if (initial?.length) this.onData(initial);
    sock.on('data', (d) => this.onData(d));
    sock.on('close', () => this.onClose());
    sock.on('error', () => {});
    sock.resume();
  }

  start(): this {
    if (this.started) return this;
    this.started = true;
    const q = this.queued;
    this.queued = [];
    for (const m of q) this.dispatch(m);
    return this;
  }

  /** Forward every message from the peer to `out` (a proxy); the proxy sends the other way with send(). */
  relayTo(out: (m: Msg) => void): this {
    this.relay = out;
    return this.start();
  }

  handle(method: string, fn: Handler): this {
    this.handlers.set(method, fn);
    return this;
  }

  /** Whether messages are sealed (an authenticated connection) or plain (a child's stdio). */
  get sealed(): boolean {
    return !!this.sealer;
  }

  send(m: Msg): void {
    if (this.closed) return;
    const text = JSON.stringify(m);
    this.sock.write((this.sealer ? this.sealer.seal(text) : text) + '\n');
  }

  notify(name: string, data: unknown): void {
    this.send({ t: 'event', name, data });
  }

  call<T = unknown>(method: string, params: unknown = {}, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<T> {
    if (this.closed) return Promise.reject(new SymError('ESYM_CHANNEL_CLOSED', { message: `channel to ${this.name || 'peer'} is closed (calling ${method})` }));
    const id = String(++this.nextId);
    return new Promise<T>((resolve, reject) => {
      const p = { resolve: resolve as (v: unknown) => void, reject, method, timer: undefined as NodeJS.Timeout | undefined };
      if (opts.timeoutMs) {
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new SymError('ESYM_CHANNEL_TIMEOUT', { message: `${this.name || 'peer'} did not answer ${method} within ${opts.timeoutMs} ms` }));
        }, opts.timeoutMs);
      }
      opts.signal?.addEventListener('abort', () => {
        if (this.pending.delete(id)) {
          clearTimeout(p.timer);
          reject(opts.signal!.reason instanceof Error ? opts.signal!.reason : new SymError('ESYM_CANCELLED', { message: `${method} cancelled` }));
        }
      }, { once: true });
      this.pending.set(id, p);
      this.send({ t: 'call', id, method, params });
    });
  }

  close(): void {
    this.sock.end();
    this.sock.destroy();
    this.onClose();
  }

  private onData(d: Buffer): void {
    let lines: string[];
    try {
      lines = this.decoder.push(d);
    } catch {
      this.close();
      return;
    }
    for (const line of lines) {
      if (this.closed) return;
      if (!line) continue;
      let text = line;
      if (this.opener) {
        try {
          text = this.opener.open(line);
        } catch (e) {
          this.closeReason = e as SymError;
          this.close();
          return;
        }
      }
      let m: Msg;
      try {
        m = JSON.parse(text) as Msg;
      } catch {
        continue;
      }
      if (this.started) this.dispatch(m);
      else this.queued.push(m);
    }
  }

  private dispatch(m: Msg): void {
    if (this.relay) { this.relay(m); return; }
    if (m.t === 'result') {
      const p = this.pending.get(String(m.id));
      if (!p) return;
      this.pending.delete(String(m.id));
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.value);
      else p.reject(new RpcCallError(p.method, (m.error as RpcError) ?? { code: 'ESYM_REMOTE', message: 'remote error' }));
    } else if (m.t === 'call') {
      const h = this.handlers.get(String(m.method));
      const id = m.id;
      if (!h) {
        this.send({ t: 'result', id, ok: false, error: { code: 'ESYM_NO_METHOD', message: `no method ${String(m.method)} (answered by pid ${process.pid} ${process.argv[1] ?? ''}, peer ${this.name})` } });
        return;
      }
      Promise.resolve()
        .then(() => h(m.params, this))
        .then(
          (value) => this.send({ t: 'result', id, ok: true, value: value ?? null }),
          (e: unknown) => this.send({ t: 'result', id, ok: false, error: errorToWire(e) }),
        );
    } else if (m.t === 'event') {
      this.emit('event', String(m.name), m.data);
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new SymError('ESYM_CHANNEL_CLOSED', { message: `channel to ${this.name || 'peer'} closed while waiting for ${p.method}${this.closeReason ? ` (${this.closeReason.message})` : ''}` }));
    }
    this.pending.clear();
    this.emit('close', this.closeReason);
  }
}

export function errorToWire(e: unknown): RpcError {
  if (e instanceof SymError) return { code: e.code, message: e.message, fix: e.fix, details: e.details, field: e.field, value: e.value, exitCode: e.exitCode };
  return { code: 'ESYM_REMOTE', message: e instanceof Error ? e.message : String(e) };
}

/** Read one line from a fresh socket (handshake), returning the rest of the buffer. */
function readLine(sock: net.Socket, timeoutMs: number): Promise<{ msg: Msg; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => done(new Error('handshake timeout')), timeoutMs);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf(10);
      if (nl < 0) {
        if (buf.length > 4096) done(new Error('handshake line too long'));
        return;
      }
      try {
        const msg = JSON.parse(buf.subarray(0, nl).toString('utf8')) as Msg;
        if (!msg || typeof msg !== 'object') throw new Error('not an object');
        done(undefined, { msg, rest: buf.subarray(nl + 1) });
      } catch {
        done(new Error('bad handshake'));
      }
    };
    const onEnd = () => done(new Error('closed during handshake'));
    const done = (err?: Error, v?: { msg: Msg; rest: Buffer }) => {
      clearTimeout(t);
      sock.pause(); // hold further bytes until the next reader attaches
      sock.off('data', onData);
      sock.off('close', onEnd);
      sock.off('error', onEnd);
      if (err) reject(err);
      else resolve(v!);
    };
    sock.on('data', onData);
    sock.on('close', onEnd);
    sock.on('error', onEnd);
    sock.resume();
  });
}

const line = (m: Msg) => JSON.stringify(m) + '\n';
const versionOf = (v: unknown) => (typeof v === 'number' ? String(v) : '1 (or none)');

function versionError(where: string, theirs: unknown, side: string): SymError {
  return new SymError('ESYM_CHANNEL_VERSION', {
    message: `${where} speaks channel version ${versionOf(theirs)}, this ${side} speaks version ${CHANNEL_VERSION}`,
    field: 'channel version', value: theirs ?? null,
    fix: 'run the same symrun installation everywhere the job runs (coordinator, host agents, watchd, the CLI): update the older one',
  });
}

/**
 * Server side of the handshake on a fresh connection: challenge, check the client's proof, prove the
 * secret back. Returns the client's name and the session; a refusal is answered on the wire (`denied`,
 * with a reason) and thrown as a SymError for the server's log.
 */
async function acceptHandshake(sock: net.Socket, opts: ServeOptions, where: string): Promise<{ name: string; rest: Buffer; session: PeerSession; identity?: PeerIdentity }> {
  const deny = (reason: 'version' | 'auth', e: SymError) => {
    sock.end(line({ t: 'denied', reason, v: CHANNEL_VERSION }));
    return e;
  };
  let secret = opts.secret ?? '';
  let identity: PeerIdentity | undefined;
  if (opts.introduce) {
    // the client says who it is first (e.g. a MUNGE credential); what it carries is the secret
    sock.write(line({ t: 'introduce', v: CHANNEL_VERSION }));
    const { msg: intro } = await readLine(sock, HANDSHAKE_TIMEOUT_MS);
    if (intro.t !== 'intro') throw deny('auth', new SymError('ESYM_CHANNEL_AUTH', { message: `a client of ${where} sent ${JSON.stringify(String(intro.t)).slice(0, 40)} instead of its introduction (this server authenticates each user)`, fix: 'the client must use the same auth mode as the server (slurm.watcherAuth)' }));
    if (intro.v !== CHANNEL_VERSION) throw deny('version', versionError(`a client of ${where}`, intro.v, 'server'));
    try {
      ({ secret, identity } = await opts.introduce(intro));
    } catch (e) {
      throw deny('auth', e instanceof SymError ? e : new SymError('ESYM_CHANNEL_AUTH', { message: `a client of ${where} was not accepted: ${(e as Error).message}` }));
    }
  }
  const serverNonce = newNonce();
  sock.write(line({ t: 'challenge', v: CHANNEL_VERSION, nonce: serverNonce }));
  const { msg, rest } = await readLine(sock, HANDSHAKE_TIMEOUT_MS);
  if (msg.t !== 'hello') throw deny('auth', new SymError('ESYM_CHANNEL_AUTH', { message: `a client of ${where} sent ${JSON.stringify(String(msg.t)).slice(0, 40)} instead of the handshake's hello: refused`, fix: 'clients must prove the key first (symrun does; see docs/channels.md)' }));
  if (msg.v !== CHANNEL_VERSION) throw deny('version', versionError(`a client of ${where}`, msg.v, 'server'));
  const name = typeof msg.name === 'string' && msg.name.length <= MAX_NAME ? msg.name : '';
  const clientNonce = msg.nonce;
  if (!name || !isNonce(clientNonce) || !proofMatches(msg.mac, proof(secret, 'client', name, serverNonce, clientNonce))) {
    throw deny('auth', new SymError('ESYM_CHANNEL_AUTH', { message: `a client of ${where} (calling itself ${JSON.stringify(name.slice(0, 80))}) did not prove the key: refused`, fix: 'it has another job\'s secret or key, or none' }));
  }
  sock.write(line({ t: 'welcome', v: CHANNEL_VERSION, mac: proof(secret, 'server', name, serverNonce, clientNonce) }));
  const k: SessionKeys = sessionKeys(secret, name, serverNonce, clientNonce);
  return { name, rest, session: { send: k.s2c, recv: k.c2s }, identity };
}

/**
 * Client side of the handshake: answer the challenge, then accept the server only if it proves the
 * secret over both nonces. Plain Errors (the connection broke) may be retried; SymErrors may not.
 */
async function offerHandshake(sock: net.Socket, secret: string, name: string, where: string, intro?: Record<string, unknown>): Promise<{ rest: Buffer; session: PeerSession }> {
  if (intro) sock.write(line({ ...intro, t: 'intro', v: CHANNEL_VERSION }));
  let { msg } = await readLine(sock, HANDSHAKE_TIMEOUT_MS);
  if (msg.t === 'introduce') {
    if (!intro) throw new SymError('ESYM_CHANNEL_AUTH', { message: `${where} authenticates each user (MUNGE) and this side has only a key`, fix: 'set slurm.watcherAuth: munge (or run watchd with --auth key)' });
    ({ msg } = await readLine(sock, HANDSHAKE_TIMEOUT_MS));
  }
  if (msg.t !== 'challenge') throw new SymError('ESYM_CHANNEL_AUTH', { message: `${where} did not start the symrun handshake (its first message: ${JSON.stringify(String(msg.t)).slice(0, 40)}): refused`, fix: 'something else listens at that address' });
  if (msg.v !== CHANNEL_VERSION) throw versionError(where, msg.v, 'client');
  const serverNonce = msg.nonce;
  if (!isNonce(serverNonce)) throw new SymError('ESYM_CHANNEL_AUTH', { message: `${where} sent a malformed challenge (nonce ${JSON.stringify(String(serverNonce)).slice(0, 80)}): refused`, fix: 'something else listens at that address' });
  const clientNonce = newNonce();
  sock.write(line({ t: 'hello', v: CHANNEL_VERSION, name, nonce: clientNonce, mac: proof(secret, 'client', name, serverNonce, clientNonce) }));
  const { msg: w, rest } = await readLine(sock, HANDSHAKE_TIMEOUT_MS);
  if (w.t === 'denied') {
    if (w.reason === 'version') throw versionError(where, w.v, 'client');
    throw new SymError('ESYM_CHANNEL_AUTH', { message: `${where} refused ${name}: wrong key (another job's secret, or an old one)`, fix: 'connect with the key of the job (or watchd) at that address' });
  }
  if (w.t !== 'welcome' || !proofMatches(w.mac, proof(secret, 'server', name, serverNonce, clientNonce))) {
    throw new SymError('ESYM_CHANNEL_AUTH', { message: `${where} did not prove the key (an impostor listening at that address, or another job's coordinator): refused`, fix: 'nothing was sent to it but this side\'s proof; if the real peer moved, give its new address' });
  }
  const k = sessionKeys(secret, name, serverNonce, clientNonce);
  return { rest, session: { send: k.c2s, recv: k.s2c } };
}

export interface ChannelServer {
  port: number;
  address: string;
  /**
   * Stop accepting, end every connection and wait up to `graceMs` (default 1 s) for the peers to
   * close theirs; connections still open then are destroyed (a peer whose host or namespace is gone
   * never sends its FIN, and its socket would keep this process alive forever). Returns what had to
   * be cut, for a warning. Idempotent.
   */
  close(opts?: { graceMs?: number }): Promise<{ cut: string[] }>;
}

/** Every connection a server accepted, so that closing the server closes them too (net.Server does not). */
class Connections {
  private open = new Map<net.Socket, string>();
  private closing?: Promise<{ cut: string[] }>;

  add(sock: net.Socket, label: string): void {
    this.open.set(sock, label);
    sock.once('close', () => this.open.delete(sock));
  }

  name(sock: net.Socket, label: string): void {
    if (this.open.has(sock)) this.open.set(sock, label);
  }

  close(server: net.Server, graceMs: number): Promise<{ cut: string[] }> {
    this.closing ??= (async () => {
      const stopped = new Promise<void>((r) => server.close(() => r()));
      for (const s of this.open.keys()) s.end();
      const until = Date.now() + graceMs;
      while (this.open.size && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      const cut = [...this.open].map(([s, label]) => `${label}${s.remoteAddress ? ` (${s.remoteAddress}:${s.remotePort})` : ''}`);
      for (const s of this.open.keys()) s.destroy();
      await stopped;
      return { cut };
    })();
    return this.closing;
  }
}

/** Who a client is, as the server's `introduce` established it (e.g. the UID in a MUNGE credential). */
export interface PeerIdentity { uid: number; gid: number }

export interface ServeOptions {
  /** the shared secret every client proves (the job secret, the control key, watchd's key) */
  secret?: string;
  /**
   * Instead of one secret: the client first sends {t:'intro', v, ...} saying who it is; this checks it
   * and returns the secret of this connection and the client's identity (watchd --auth munge).
   */
  introduce?: (intro: Record<string, unknown>) => Promise<{ secret: string; identity: PeerIdentity }>;
  /** called with the sealed, authenticated peer; it must call start() */
  onPeer: (peer: RpcPeer) => void;
  /** a connection refused in the handshake (wrong key, wrong version), for the server's log */
  onRefused?: (e: SymError) => void;
}

function accept(conns: Connections, opts: ServeOptions, where: () => string, unauthenticated: string) {
  return async (sock: net.Socket): Promise<void> => {
    sock.on('error', () => {});
    conns.add(sock, unauthenticated);
    try {
      const { name, rest, session, identity } = await acceptHandshake(sock, opts, where());
      conns.name(sock, name);
      const peer = new RpcPeer(sock, rest, { session, name });
      peer.identity = identity;
      opts.onPeer(peer);
    } catch (e) {
      if (e instanceof SymError) opts.onRefused?.(e);
      sock.destroy();
    }
  };
}

/** Coordinator (and watchd) side: accept host agents that prove the secret, proving it back. */
export async function serveChannel(opts: ServeOptions & { host: string; port?: number }): Promise<ChannelServer> {
  const conns = new Connections();
  const server = net.createServer(accept(conns, opts, () => {
    const a = server.address() as net.AddressInfo | null;
    return a ? `${a.address}:${a.port}` : opts.host;
  }, 'unauthenticated peer'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host, () => resolve());
  });
  const addr = server.address() as net.AddressInfo;
  return { port: addr.port, address: addr.address, close: (o) => conns.close(server, o?.graceMs ?? 1000) };
}

/** Host agent side: connect, authenticate both ways; the connection is sealed from then on. */
export interface ConnectOptions {
  host: string;
  port: number;
  secret: string;
  name: string;
  timeoutMs?: number;
  /** sent first, for a server that authenticates each user (its fields; `t` and `v` are added) */
  intro?: Record<string, unknown>;
}

export async function connectChannel(opts: ConnectOptions): Promise<RpcPeer> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const where = `the peer at ${opts.host}:${opts.port}`;
  for (;;) {
    let sock: net.Socket | undefined;
    try {
      sock = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.createConnection({ host: opts.host, port: opts.port });
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
      const { rest, session } = await offerHandshake(sock, opts.secret, opts.name, where, opts.intro);
      return new RpcPeer(sock, rest, { session, name: 'coordinator' });
    } catch (e) {
      sock?.destroy();
      if (e instanceof SymError || Date.now() > deadline) {
        if (e instanceof SymError) throw e;
        throw new SymError('ESYM_CHANNEL_CONNECT', { message: `cannot reach the coordinator at ${opts.host}:${opts.port}: ${(e as Error).message}`, cause: e });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/**
 * The job's control socket: a unix socket (mode 0600 in a 0700 run directory) with the same handshake
 * and sealing as the TCP channel, keyed by the job's control key (`secret`, a file next to the socket).
 */
export async function serveUnix(path: string, opts: ServeOptions): Promise<ChannelServer> {
  const conns = new Connections();
  const server = net.createServer(accept(conns, opts, () => `the control socket ${path}`, 'control client'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  fs.chmodSync(path, 0o600);
  return { port: 0, address: path, close: (o) => conns.close(server, o?.graceMs ?? 1000) };
}

/** Connect to a job's control socket and prove its control key (`secret`); the job proves it back. */
export async function connectUnix(path: string, opts: { secret: string; name?: string }): Promise<RpcPeer> {
  const sock = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.createConnection(path);
    s.once('connect', () => resolve(s));
    s.once('error', (e) => reject(new SymError('ESYM_JOB_UNREACHABLE', { message: `cannot reach the job's control socket ${path}: ${e.message}`, fix: 'check the job is still running (`symrun status`), or pass --job ID' })));
  });
  sock.on('error', () => {});
  try {
    const { rest, session } = await offerHandshake(sock, opts.secret, opts.name ?? `control client (pid ${process.pid})`, `the job's control socket ${path}`);
    return new RpcPeer(sock, rest, { session, name: 'job' }).start();
  } catch (e) {
    sock.destroy();
    if (e instanceof SymError) throw e;
    throw new SymError('ESYM_JOB_UNREACHABLE', { message: `the job's control socket ${path} closed during the handshake: ${(e as Error).message}`, fix: 'check the job is still running (`symrun status`)', cause: e });
  }
}
