// Coordinator <-> host agent channel: JSON lines over TCP, authenticated with a per-job secret
// (HMAC-SHA256 challenge/response; the secret never crosses the wire), then a small RPC:
//   {t:'call', id, method, params}  -> {t:'result', id, ok, value | error}
//   {t:'event', name, data}            (either direction, no reply)
// Also used, without TCP auth, over the job's control socket (unix, mode 0600).
import net from 'node:net';
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { LineDecoder } from '../../../guest/protocol/index.js';
import { SymError, isErrorCode } from '../errors.js';

export const CHANNEL_VERSION = 1;
const MAX_LINE = 64 * 1024 * 1024;

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
  private decoder = new LineDecoder(MAX_LINE);
  closed = false;
  name = '';
  private started = false;
  private queued: Msg[] = [];
  /** relay mode (symrun control-proxy): every message goes here instead of being dispatched */
  private relay?: (m: Msg) => void;

  /**
   * Messages are held until start(): register handlers first, so no early call finds none. Any duplex
   * stream carries the channel (a socket, or a child's stdio: `symrun status --job` through srun).
   */
  constructor(readonly sock: net.Socket | Duplex, initial?: Buffer) {
    super();
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

  send(m: Msg): void {
    if (!this.closed) this.sock.write(JSON.stringify(m) + '\n');
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
      if (!line) continue;
      let m: Msg;
      try {
        m = JSON.parse(line) as Msg;
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
      p.reject(new SymError('ESYM_CHANNEL_CLOSED', { message: `channel to ${this.name || 'peer'} closed while waiting for ${p.method}` }));
    }
    this.pending.clear();
    this.emit('close');
  }
}

export function errorToWire(e: unknown): RpcError {
  if (e instanceof SymError) return { code: e.code, message: e.message, fix: e.fix, details: e.details, field: e.field, value: e.value, exitCode: e.exitCode };
  return { code: 'ESYM_REMOTE', message: e instanceof Error ? e.message : String(e) };
}

/** The handshake's proof of the job secret (exported for tests that speak the handshake by hand). */
export function mac(secret: string, nonce: string, name: string): string {
  return crypto.createHmac('sha256', secret).update(`${CHANNEL_VERSION}\n${nonce}\n${name}`).digest('hex');
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

/** Coordinator side: accept authenticated host agents. */
export async function serveChannel(opts: { host: string; port?: number; secret: string; onPeer: (peer: RpcPeer) => void }): Promise<ChannelServer> {
  const conns = new Connections();
  const server = net.createServer(async (sock) => {
    sock.on('error', () => {});
    conns.add(sock, 'unauthenticated peer');
    const nonce = crypto.randomBytes(16).toString('hex');
    sock.write(JSON.stringify({ t: 'challenge', nonce, v: CHANNEL_VERSION }) + '\n');
    try {
      const { msg, rest } = await readLine(sock, 10_000);
      const name = String(msg.name ?? '');
      const given = Buffer.from(String(msg.mac ?? ''), 'hex');
      const want = Buffer.from(mac(opts.secret, nonce, name), 'hex');
      if (msg.t !== 'hello' || given.length !== want.length || !crypto.timingSafeEqual(given, want)) {
        sock.end(JSON.stringify({ t: 'denied' }) + '\n');
        sock.destroy();
        return;
      }
      sock.write(JSON.stringify({ t: 'welcome' }) + '\n');
      const peer = new RpcPeer(sock, rest);
      peer.name = name;
      conns.name(sock, name);
      opts.onPeer(peer);
    } catch {
      sock.destroy();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host, () => resolve());
  });
  const addr = server.address() as net.AddressInfo;
  return { port: addr.port, address: addr.address, close: (o) => conns.close(server, o?.graceMs ?? 1000) };
}

/** Host agent side: connect and authenticate. */
export async function connectChannel(opts: { host: string; port: number; secret: string; name: string; timeoutMs?: number }): Promise<RpcPeer> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    let sock: net.Socket | undefined;
    try {
      sock = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.createConnection({ host: opts.host, port: opts.port });
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
      const { msg } = await readLine(sock, 10_000);
      if (msg.t !== 'challenge') throw new Error('no challenge');
      sock.write(JSON.stringify({ t: 'hello', name: opts.name, mac: mac(opts.secret, String(msg.nonce), opts.name) }) + '\n');
      const { msg: w, rest } = await readLine(sock, 10_000);
      if (w.t !== 'welcome') { sock.destroy(); throw new SymError('ESYM_CHANNEL_AUTH', { message: `coordinator at ${opts.host}:${opts.port} refused this agent (wrong job secret)` }); }
      const peer = new RpcPeer(sock, rest);
      peer.name = 'coordinator';
      return peer;
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

/** Unix control socket (no HMAC: protected by file mode 0600 in a 0700 directory). */
export async function serveUnix(path: string, onPeer: (peer: RpcPeer) => void): Promise<ChannelServer> {
  const conns = new Connections();
  const server = net.createServer((sock) => { conns.add(sock, 'control client'); onPeer(new RpcPeer(sock)); });  // onPeer must call start()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  const fs = await import('node:fs');
  fs.chmodSync(path, 0o600);
  return { port: 0, address: path, close: (o) => conns.close(server, o?.graceMs ?? 1000) };
}

export function connectUnix(path: string): Promise<RpcPeer> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(path);
    s.once('connect', () => resolve(new RpcPeer(s).start()));
    s.once('error', (e) => reject(new SymError('ESYM_JOB_UNREACHABLE', { message: `cannot reach the job's control socket ${path}: ${e.message}`, fix: 'check the job is still running (`symrun status`), or pass --job ID' })));
  });
}
