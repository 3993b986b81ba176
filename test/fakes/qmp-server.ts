// Scriptable fake QMP server over a unix socket, for unit tests of the QMP client and hotplug.
// It speaks raw JSON on purpose: it plays QEMU, so it must not reuse the codec under test.
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type FakeReply =
  | { return: unknown }
  | { error: { class: string; desc: string } }
  /** do not answer (to test timeouts) */
  | { noReply: true };

export interface FakeCall { command: string; arguments: Record<string, unknown> | undefined; id: unknown }

export type FakeHandler = (args: Record<string, unknown> | undefined, call: FakeCall, conn: FakeConn) =>
  FakeReply | Promise<FakeReply> | void | Promise<void>;

export interface FakeConn {
  /** write a raw line (a newline is appended) */
  sendRaw(line: string): void;
  sendEvent(event: string, data?: Record<string, unknown>): void;
  reply(call: FakeCall, r: FakeReply): void;
  drop(): void;
}

export interface FakeQmpServerOptions {
  version?: { major: number; minor: number; micro: number };
  /** send a greeting on connect (default true) */
  greeting?: boolean;
  /** delay before the greeting */
  greetingDelayMs?: number;
  /** reject commands other than qmp_capabilities before negotiation, like QEMU does (default true) */
  strictNegotiation?: boolean;
  /** do not listen yet (test connect retries); call listen() later */
  deferListen?: boolean;
  socketPath?: string;
}

export class FakeQmpServer {
  readonly socketPath: string;
  readonly calls: FakeCall[] = [];
  private server: net.Server;
  private conns = new Set<FakeConnImpl>();
  private handlers = new Map<string, FakeHandler>();
  private dir: string | undefined;
  /** re-checked on every call and every connection (waitForCall, waitForConnection) */
  private waiters = new Set<() => void>();
  readonly opts: FakeQmpServerOptions;

  private constructor(opts: FakeQmpServerOptions) {
    this.opts = opts;
    if (opts.socketPath) {
      this.socketPath = opts.socketPath;
    } else {
      this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-qmp-'));
      this.socketPath = path.join(this.dir, 'qmp.sock');
    }
    this.server = net.createServer((s) => this.onConnection(s));
    // sensible QEMU-like defaults
    this.on('query-version', () => ({ return: { qemu: this.version, package: 'fake' } }));
    this.on('quit', (_a, call, conn) => { conn.reply(call, { return: {} }); setTimeout(() => conn.drop(), 5); });
  }

  get version() { return this.opts.version ?? { major: 7, minor: 2, micro: 22 }; }

  static async start(opts: FakeQmpServerOptions = {}): Promise<FakeQmpServer> {
    const s = new FakeQmpServer(opts);
    if (!opts.deferListen) await s.listen();
    return s;
  }

  listen(): Promise<void> {
    return new Promise((res, rej) => {
      this.server.once('error', rej);
      this.server.listen(this.socketPath, () => { this.server.off('error', rej); res(); });
    });
  }

  /** Set the handler for a command (replaces any previous one). Unknown commands get CommandNotFound. */
  on(command: string, h: FakeHandler): this {
    this.handlers.set(command, h);
    return this;
  }

  /** Emit an event to every negotiated connection. */
  emitEvent(event: string, data?: Record<string, unknown>) {
    for (const c of this.conns) c.sendEvent(event, data);
  }

  sendRaw(line: string) { for (const c of this.conns) c.sendRaw(line); }

  /** Close all client connections (like QEMU dying). */
  dropConnections() { for (const c of this.conns) c.drop(); }

  get connectionCount() { return this.conns.size; }

  /** Resolves once a call for `command` has been received (or immediately if it already was). */
  waitForCall(command: string, timeoutMs = 5000): Promise<FakeCall> {
    return this.when(() => this.calls.find((x) => x.command === command), timeoutMs, `no ${command} call`);
  }

  /** Resolves once a client is connected (or immediately if one is). */
  waitForConnection(timeoutMs = 5000): Promise<void> {
    return this.when(() => (this.conns.size > 0 ? true : undefined), timeoutMs, 'no connection').then(() => undefined);
  }

  /** `get()`'s first defined value, checked now and after every call and connection; no polling. */
  private when<T>(get: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const now = get();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = get();
        if (v === undefined) return;
        done();
        resolve(v);
      };
      const timer = setTimeout(() => { done(); reject(new Error(`fake QMP: ${what} within ${timeoutMs} ms`)); }, timeoutMs);
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
    });
  }

  private changed(): void {
    for (const w of [...this.waiters]) w();
  }

  async close() {
    this.dropConnections();
    await new Promise<void>((res) => this.server.close(() => res()));
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private onConnection(sock: net.Socket) {
    const conn = new FakeConnImpl(sock);
    this.conns.add(conn);
    this.changed();
    sock.on('close', () => this.conns.delete(conn));
    sock.on('error', () => {});
    if (this.opts.greeting !== false) {
      setTimeout(() => {
        conn.sendRaw(JSON.stringify({ QMP: { version: { qemu: this.version, package: 'fake' }, capabilities: ['oob'] } }));
      }, this.opts.greetingDelayMs ?? 0);
    }
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) void this.onLine(conn, line);
      }
    });
  }

  private async onLine(conn: FakeConnImpl, line: string) {
    let msg: { execute?: string; arguments?: Record<string, unknown>; id?: unknown };
    try { msg = JSON.parse(line); } catch {
      conn.sendRaw(JSON.stringify({ error: { class: 'GenericError', desc: 'JSON parse error' } }));
      return;
    }
    const call: FakeCall = { command: msg.execute ?? '', arguments: msg.arguments, id: msg.id };
    this.calls.push(call);
    this.changed();
    if (call.command === 'qmp_capabilities') {
      conn.negotiated = true;
      conn.reply(call, { return: {} });
      return;
    }
    if (!conn.negotiated && this.opts.strictNegotiation !== false) {
      conn.reply(call, { error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" } });
      return;
    }
    const h = this.handlers.get(call.command);
    if (!h) {
      conn.reply(call, { error: { class: 'CommandNotFound', desc: `The command ${call.command} has not been found` } });
      return;
    }
    const r = await h(call.arguments, call, conn);
    if (r && !('noReply' in r)) conn.reply(call, r);
  }
}

class FakeConnImpl implements FakeConn {
  negotiated = false;
  constructor(private sock: net.Socket) {}
  sendRaw(line: string) { if (!this.sock.destroyed) this.sock.write(line + '\r\n'); }
  sendEvent(event: string, data?: Record<string, unknown>) {
    const now = Date.now();
    const o: Record<string, unknown> = { event, timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 } };
    if (data) o.data = data;
    this.sendRaw(JSON.stringify(o));
  }
  reply(call: FakeCall, r: FakeReply) {
    if ('noReply' in r) return;
    const o: Record<string, unknown> = { ...r };
    if (call.id !== undefined) o.id = call.id;
    this.sendRaw(JSON.stringify(o));
  }
  drop() { this.sock.destroy(); }
}
