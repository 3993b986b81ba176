// QMP client with explicit states: connecting -> negotiating -> ready -> closed.
// All QMP JSON goes through codec.ts. Deadlines and cancellation are passed in by the caller.
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { SymError } from '../errors.js';
import { DEFAULTS } from '../defaults.js';
import { QmpDecoder, QmpProtocolError, encodeCommand, type QmpMessage, type QmpVersion } from './codec.js';

export type QmpState = 'connecting' | 'negotiating' | 'ready' | 'closed';

export interface QmpEvent { event: string; data: Record<string, unknown>; timestamp: { seconds: number; microseconds: number } }

export interface QmpConnectOptions {
  /** deadline for connect + greeting + qmp_capabilities (default DEFAULTS.qmp.connectTimeoutMs) */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Absolute time (Date.now() clock) until which ENOENT / ECONNREFUSED are retried (QEMU may not have
   * created the socket yet). Default: the connect deadline. Set to 0 to fail on the first refusal.
   */
  retryUntilMs?: number;
  /** delay between connection attempts (default 50 ms) */
  retryIntervalMs?: number;
  maxLineBytes?: number;
}

export interface QmpCallOptions { timeoutMs?: number; signal?: AbortSignal }

export class QmpCommandError extends SymError {
  readonly errorClass: string;
  readonly command: string;
  readonly desc: string;
  constructor(command: string, errorClass: string, desc: string, args?: object) {
    super('ESYM_QMP_COMMAND', {
      message: `QEMU rejected ${command}: ${desc} (${errorClass})`,
      fix: 'see the QEMU message; check the device/command arguments against this QEMU version',
      details: { command, errorClass, desc, ...(args ? { arguments: args } : {}) },
    });
    this.name = 'QmpCommandError';
    this.errorClass = errorClass;
    this.command = command;
    this.desc = desc;
  }
}

export class QmpDisconnectedError extends SymError {
  constructor(socketPath: string, reason: string, command?: string, cause?: unknown) {
    super('ESYM_QMP_DISCONNECTED', {
      message: command
        ? `QMP connection to ${socketPath} closed before ${command} completed (${reason})`
        : `QMP connection to ${socketPath} closed (${reason})`,
      fix: 'QEMU probably exited: look at the VM console log and QEMU stderr in the run directory',
      details: { socketPath, reason, ...(command ? { command } : {}) },
      cause,
    });
    this.name = 'QmpDisconnectedError';
  }
}

export class QmpTimeoutError extends SymError {
  constructor(what: string, timeoutMs: number, details?: Record<string, unknown>) {
    super('ESYM_QMP_TIMEOUT', {
      message: `${what} did not complete within ${timeoutMs} ms`,
      fix: 'QEMU is unresponsive or overloaded; check the host load and QEMU stderr, or raise the timeout',
      details: { timeoutMs, ...details },
    });
    this.name = 'QmpTimeoutError';
  }
}

function abortReason(signal: AbortSignal, what: string): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  return new SymError('ESYM_ABORTED', { message: `${what} was cancelled${r !== undefined ? `: ${String(r)}` : ''}` });
}

const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));

interface Pending {
  command: string;
  args?: object;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  cleanup: () => void;
}

interface Waiter { reject: (e: Error) => void }

/**
 * Events (EventEmitter): 'event' (QmpEvent), 'close' (Error | undefined), 'state' (QmpState),
 * 'warning' (SymError: e.g. a reply with an unknown id).
 */
export class QmpClient extends EventEmitter {
  readonly socketPath: string;
  private _state: QmpState = 'connecting';
  private _version: QmpVersion | undefined;
  private _capabilities: string[] = [];
  private sock: net.Socket | undefined;
  private decoder: QmpDecoder;
  private pending = new Map<string, Pending>();
  private waiters = new Set<Waiter>();
  private nextId = 1;
  private closeReason: Error | undefined;
  private closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  private greetingWaiter: { resolve: (m: Extract<QmpMessage, { kind: 'greeting' }>) => void; reject: (e: Error) => void } | undefined;

  private constructor(socketPath: string, maxLineBytes?: number) {
    super();
    this.socketPath = socketPath;
    this.decoder = new QmpDecoder({ maxLineBytes });
    this.closedPromise = new Promise((res) => { this.resolveClosed = res; });
  }

  get state(): QmpState { return this._state; }
  /** QEMU version from the greeting (available once ready) */
  get version(): QmpVersion {
    if (!this._version) throw new Error('QMP greeting not received yet');
    return this._version;
  }
  get capabilities(): readonly string[] { return this._capabilities; }
  /** resolves when the connection is closed (by either side) */
  get closed(): Promise<void> { return this.closedPromise; }

  private setState(s: QmpState) {
    if (this._state === s) return;
    this._state = s;
    this.emit('state', s);
  }

  static async connect(socketPath: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULTS.qmp.connectTimeoutMs;
    const start = Date.now();
    const deadline = start + timeoutMs;
    const retryUntil = Math.min(opts.retryUntilMs ?? deadline, deadline);
    const interval = opts.retryIntervalMs ?? 50;
    const signal = opts.signal;
    const client = new QmpClient(socketPath, opts.maxLineBytes);

    const onAbort = () => client.destroy(abortReason(signal!, `QMP connect to ${socketPath}`));
    if (signal?.aborted) throw abortReason(signal, `QMP connect to ${socketPath}`);
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => client.destroy(new QmpTimeoutError(`QMP connect to ${socketPath}`, timeoutMs, { socketPath, state: client.state })), Math.max(0, deadline - Date.now()));
    try {
      // connecting: retry while the socket does not exist / nobody listens yet
      for (;;) {
        try {
          await client.openSocket();
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (client.closeReason) throw client.closeReason;
          if ((code === 'ENOENT' || code === 'ECONNREFUSED') && Date.now() + interval < retryUntil) {
            await sleep(interval);
            if (client.closeReason) throw client.closeReason;
            continue;
          }
          if (code === 'ENOENT' || code === 'ECONNREFUSED') {
            throw new SymError('ESYM_QMP_CONNECT', {
              message: `cannot connect to QMP socket ${socketPath}: ${code} (gave up after ${Date.now() - start} ms)`,
              fix: 'QEMU is not running or did not create its QMP socket; check QEMU stderr in the run directory',
              details: { socketPath, code },
              cause: e,
            });
          }
          throw new SymError('ESYM_QMP_CONNECT', {
            message: `cannot connect to QMP socket ${socketPath}: ${(e as Error).message}`,
            fix: 'check the socket path and its permissions',
            details: { socketPath, code },
            cause: e,
          });
        }
      }
      // negotiating: greeting, then qmp_capabilities
      client.setState('negotiating');
      const greeting = await client.greeting();
      client._version = greeting.version;
      client._capabilities = greeting.capabilities;
      await client.send('qmp_capabilities', undefined, {});
      client.setState('ready');
      return client;
    } catch (e) {
      client.destroy(e as Error);
      throw client.closeReason ?? e;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private openSocket(): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ path: this.socketPath });
      const onErr = (e: Error) => { sock.destroy(); reject(e); };
      sock.once('error', onErr);
      sock.once('connect', () => {
        sock.off('error', onErr);
        if (this.closeReason) { sock.destroy(); reject(this.closeReason); return; }
        this.attach(sock);
        resolve();
      });
    });
  }

  private attach(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', (e) => this.destroy(new QmpDisconnectedError(this.socketPath, e.message, undefined, e)));
    sock.on('close', () => this.destroy(new QmpDisconnectedError(this.socketPath, 'connection closed by QEMU')));
  }

  private greeting(): Promise<Extract<QmpMessage, { kind: 'greeting' }>> {
    return new Promise((resolve, reject) => {
      if (this.closeReason) return reject(this.closeReason);
      this.greetingWaiter = { resolve, reject };
    });
  }

  private onData(chunk: Buffer) {
    let msgs: QmpMessage[];
    try {
      msgs = this.decoder.feed(chunk);
    } catch (e) {
      const err = e as QmpProtocolError;
      for (const m of err.messages ?? []) this.dispatch(m);
      this.destroy(err);
      return;
    }
    for (const m of msgs) this.dispatch(m);
  }

  private dispatch(m: QmpMessage) {
    switch (m.kind) {
      case 'greeting': {
        const w = this.greetingWaiter;
        this.greetingWaiter = undefined;
        if (w) w.resolve(m);
        else this.emit('warning', new QmpProtocolError('unexpected QMP greeting'));
        return;
      }
      case 'event':
        this.emit('event', { event: m.event, data: m.data, timestamp: m.timestamp } satisfies QmpEvent);
        return;
      case 'return':
      case 'error': {
        const p = m.id !== undefined ? this.pending.get(m.id) : undefined;
        if (!p) {
          // a late reply to a call that timed out, or an error QEMU could not attribute
          this.emit('warning', new QmpProtocolError(`QMP reply with unknown id ${JSON.stringify(m.id)}`, { message: m }));
          return;
        }
        this.pending.delete(m.id!);
        p.cleanup();
        if (m.kind === 'return') p.resolve(m.value);
        else p.reject(new QmpCommandError(p.command, m.errorClass, m.desc, p.args));
        return;
      }
    }
  }

  private send(command: string, args: object | undefined, opts: QmpCallOptions): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.closeReason || !this.sock) {
        return reject(new QmpDisconnectedError(this.socketPath, this.closeReason?.message ?? 'not connected', command));
      }
      if (opts.signal?.aborted) return reject(abortReason(opts.signal, `QMP ${command}`));
      const id = `sym-${this.nextId++}`;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        this.pending.delete(id);
        cleanup();
        reject(abortReason(opts.signal!, `QMP ${command}`));
      };
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      if (opts.timeoutMs !== undefined && opts.timeoutMs !== Infinity) {
        timer = setTimeout(() => {
          this.pending.delete(id);
          cleanup();
          reject(new QmpTimeoutError(`QMP ${command}`, opts.timeoutMs!, { command, socketPath: this.socketPath }));
        }, opts.timeoutMs);
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, { command, args, resolve, reject, cleanup });
      this.sock.write(encodeCommand(id, command, args));
    });
  }

  /** Run one QMP command; resolves with its "return" value. */
  execute<T = unknown>(command: string, args?: object, opts: QmpCallOptions = {}): Promise<T> {
    if (this._state !== 'ready') {
      return Promise.reject(new QmpDisconnectedError(this.socketPath, this.closeReason?.message ?? `client is ${this._state}`, command));
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULTS.qmp.commandTimeoutMs;
    return this.send(command, args, { ...opts, timeoutMs }) as Promise<T>;
  }

  /**
   * Wait for an event. Subscribes IMMEDIATELY (call this before the command that causes the event).
   * The promise rejects with QmpTimeoutError, QmpDisconnectedError, the abort reason, or (after cancel())
   * ESYM_QMP_CANCELLED. A handler is pre-attached so an ignored handle never causes an unhandled rejection.
   */
  waitEvent(name: string, predicate?: (data: Record<string, unknown>, ev: QmpEvent) => boolean,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {}): { promise: Promise<QmpEvent>; cancel: () => void } {
    let settle!: { resolve: (e: QmpEvent) => void; reject: (e: Error) => void };
    const promise = new Promise<QmpEvent>((resolve, reject) => { settle = { resolve, reject }; });
    promise.catch(() => {});
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      done = true;
      if (timer) clearTimeout(timer);
      this.off('event', onEvent);
      this.waiters.delete(waiter);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const fail = (e: Error) => { if (!done) { finish(); settle.reject(e); } };
    const onEvent = (ev: QmpEvent) => {
      if (done || ev.event !== name) return;
      let ok = true;
      try { ok = predicate ? predicate(ev.data, ev) : true; } catch (e) { fail(e as Error); return; }
      if (ok) { finish(); settle.resolve(ev); }
    };
    const onAbort = () => fail(abortReason(opts.signal!, `waiting for QMP event ${name}`));
    const waiter: Waiter = { reject: fail };
    if (this.closeReason) {
      fail(new QmpDisconnectedError(this.socketPath, this.closeReason.message, `event ${name}`));
    } else if (opts.signal?.aborted) {
      onAbort();
    } else {
      this.on('event', onEvent);
      this.waiters.add(waiter);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.timeoutMs !== undefined && opts.timeoutMs !== Infinity) {
        timer = setTimeout(() => fail(new QmpTimeoutError(`waiting for QMP event ${name}`, opts.timeoutMs!, { event: name })), opts.timeoutMs);
      }
    }
    const cancel = () => fail(new SymError('ESYM_QMP_CANCELLED', { message: `wait for QMP event ${name} was cancelled` }));
    return { promise, cancel };
  }

  private destroy(reason: Error) {
    if (this._state === 'closed') return;
    this.closeReason = reason;
    this.setState('closed');
    this.sock?.destroy();
    const disc = (command?: string) => reason instanceof QmpDisconnectedError && !command
      ? reason
      : new QmpDisconnectedError(this.socketPath, reason.message, command, reason);
    const g = this.greetingWaiter;
    this.greetingWaiter = undefined;
    g?.reject(reason);
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.cleanup();
      p.reject(disc(p.command));
    }
    for (const w of [...this.waiters]) w.reject(disc());
    this.emit('close', reason);
    this.resolveClosed();
  }

  /** Close the connection; pending calls and event waits reject with QmpDisconnectedError. */
  async close(): Promise<void> {
    this.destroy(new QmpDisconnectedError(this.socketPath, 'closed by symrun'));
    await this.closedPromise;
  }
}
