// Pure QMP codec: the only place that builds or parses raw QMP JSON (docs/architecture.md, Wires).
// No I/O, no timers. The client (client.ts) feeds socket chunks in and gets typed messages out.
import { SymError } from '../errors.js';

export interface QmpVersion { major: number; minor: number; micro: number }

export type QmpMessage =
  | { kind: 'greeting'; version: QmpVersion; package: string; capabilities: string[] }
  | { kind: 'return'; id: string | undefined; value: unknown }
  | { kind: 'error'; id: string | undefined; errorClass: string; desc: string }
  | { kind: 'event'; event: string; data: Record<string, unknown>; timestamp: { seconds: number; microseconds: number } };

/** Largest QMP line accepted by default (query-qmp-schema on QEMU 10 is ~250 KiB). */
export const DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024;

/** A line from QEMU that is not valid QMP (garbage, oversize, unknown shape). */
export class QmpProtocolError extends SymError {
  /** well-formed messages decoded from the same chunk before the bad line (feed() throws instead of returning them) */
  messages: QmpMessage[] = [];
  constructor(message: string, details?: Record<string, unknown>) {
    super('ESYM_QMP_PROTOCOL', {
      message,
      fix: 'the QMP socket is not talking QMP (or QEMU misbehaved); check that the socket path belongs to a QEMU monitor started with mode=control',
      details,
    });
    this.name = 'QmpProtocolError';
  }
}

/** One QMP command as a single JSON line, newline-terminated. */
export function encodeCommand(id: string, command: string, args?: object): string {
  if (typeof command !== 'string' || command.length === 0) throw new TypeError('QMP command name must be a non-empty string');
  const msg: Record<string, unknown> = { execute: command };
  if (args !== undefined && Object.keys(args).length > 0) msg.arguments = args;
  msg.id = id;
  return JSON.stringify(msg) + '\n';
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : NaN;
}

function idOf(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** Classify one parsed JSON value; throws QmpProtocolError if it is not a QMP message. */
export function decodeMessage(obj: unknown): QmpMessage {
  if (!isObj(obj)) throw new QmpProtocolError('QMP message is not a JSON object', { got: typeof obj });
  if (isObj(obj.QMP)) {
    const q = obj.QMP;
    const v = isObj(q.version) && isObj(q.version.qemu) ? q.version.qemu : undefined;
    const version = { major: num(v?.major), minor: num(v?.minor), micro: num(v?.micro) };
    if (Number.isNaN(version.major) || Number.isNaN(version.minor) || Number.isNaN(version.micro)) {
      throw new QmpProtocolError('QMP greeting without a valid version', { greeting: obj });
    }
    const pkg = isObj(q.version) && typeof q.version.package === 'string' ? q.version.package : '';
    const caps = Array.isArray(q.capabilities) ? q.capabilities.filter((c): c is string => typeof c === 'string') : [];
    return { kind: 'greeting', version, package: pkg, capabilities: caps };
  }
  if ('return' in obj) return { kind: 'return', id: idOf(obj.id), value: obj.return };
  if (isObj(obj.error)) {
    const e = obj.error;
    return {
      kind: 'error',
      id: idOf(obj.id),
      errorClass: typeof e.class === 'string' ? e.class : 'GenericError',
      desc: typeof e.desc === 'string' ? e.desc : JSON.stringify(e),
    };
  }
  if (typeof obj.event === 'string') {
    const ts = isObj(obj.timestamp) ? obj.timestamp : {};
    return {
      kind: 'event',
      event: obj.event,
      data: isObj(obj.data) ? obj.data : {},
      timestamp: { seconds: num(ts.seconds) || 0, microseconds: num(ts.microseconds) || 0 },
    };
  }
  throw new QmpProtocolError('unrecognized QMP message', { keys: Object.keys(obj).slice(0, 10) });
}

/**
 * Incremental decoder: feed() socket chunks, get complete messages back.
 * Lines are split on "\n" (QEMU sends "\r\n"); blank lines are ignored.
 * A line longer than maxLineBytes, or one that is not JSON / not QMP, throws QmpProtocolError;
 * the offending line is discarded, so the decoder can keep going if the caller chooses to.
 */
export class QmpDecoder {
  readonly maxLineBytes: number;
  private parts: Buffer[] = [];
  private pending = 0;

  constructor(opts: { maxLineBytes?: number } = {}) {
    this.maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  }

  /** bytes buffered waiting for a newline */
  get buffered(): number { return this.pending; }

  feed(chunk: Buffer | string): QmpMessage[] {
    let buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    const out: QmpMessage[] = [];
    let errorToThrow: QmpProtocolError | undefined;
    for (;;) {
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        if (this.pending + buf.length > this.maxLineBytes) {
          const size = this.pending + buf.length;
          this.parts = [];
          this.pending = 0;
          // Drop the rest of this oversize line: mark so bytes up to the next newline are skipped.
          this.skipping = true;
          // thrown below with the messages decoded before it (they are not lost)
          errorToThrow ??= new QmpProtocolError(`QMP line longer than ${this.maxLineBytes} bytes`, { bytes: size, limit: this.maxLineBytes });
          break;
        }
        if (buf.length > 0) {
          if (!this.skipping) { this.parts.push(buf); this.pending += buf.length; }
        }
        break;
      }
      const head = buf.subarray(0, nl);
      buf = buf.subarray(nl + 1);
      if (this.skipping) { this.skipping = false; continue; }
      if (this.pending + head.length > this.maxLineBytes) {
        const size = this.pending + head.length;
        this.parts = [];
        this.pending = 0;
        errorToThrow ??= new QmpProtocolError(`QMP line longer than ${this.maxLineBytes} bytes`, { bytes: size, limit: this.maxLineBytes });
        continue;
      }
      const line = this.parts.length ? Buffer.concat([...this.parts, head]) : head;
      this.parts = [];
      this.pending = 0;
      const text = line.toString('utf8').trim();
      if (text === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        errorToThrow ??= new QmpProtocolError('QMP line is not valid JSON', { line: text.slice(0, 200) });
        continue;
      }
      try {
        out.push(decodeMessage(parsed));
      } catch (e) {
        errorToThrow ??= e as QmpProtocolError;
      }
    }
    if (errorToThrow) {
      errorToThrow.messages = out;
      throw errorToThrow;
    }
    return out;
  }

  private skipping = false;
}
