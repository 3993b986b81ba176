// The one wire contract between the host and the symrun guest agent (virtio-serial, JSON lines).
// Imported by the guest agent (guest/src) and by the launcher. Pure: no I/O.
//
// Reliability across migration: every guest->host frame that carries job data (out, exit, rsh,
// notice) has a sequence number `seq`. The guest keeps those frames until the host acknowledges them
// (`ack` frames, and the `lastSeq` in each `sync`), and replays the unacknowledged ones after a
// reconnect. The host drops frames whose seq it has already seen. So output is neither lost nor
// duplicated when the channel drops (e.g. the VM moved to another host).

export const PROTOCOL_VERSION = 1;
export const MAX_LINE_BYTES_DEFAULT = 4 * 1024 * 1024;

// ---------- host -> guest ----------
export type HostFrame =
  | { t: 'sync'; id: string; lastSeq: number }
  | { t: 'ack'; seq: number }
  | { t: 'ping'; id: string }
  | { t: 'req'; id: string; op: string; args: Record<string, unknown> }
  | { t: 'in'; sid: string; data?: string; eof?: boolean }
  | { t: 'resize'; sid: string; cols: number; rows: number }
  | { t: 'signal'; sid: string; sig: string }
  | { t: 'rsh-out'; rid: string; fd: 1 | 2; data: string }
  | { t: 'rsh-exit'; rid: string; code: number };

// ---------- guest -> host ----------
export interface AgentInfo { version: string; hostname: string; pid: number; bootId: string; uptime: number }
export type GuestFrame =
  | { t: 'sync'; id: string; v: number; agent: AgentInfo }
  | { t: 'pong'; id: string }
  | { t: 'res'; id: string; ok: true; value: unknown }
  | { t: 'res'; id: string; ok: false; error: { code: string; message: string } }
  | { t: 'out'; seq: number; sid: string; fd: 1 | 2; data: string }
  | { t: 'exit'; seq: number; sid: string; code: number | null; signal: string | null }
  | { t: 'rsh'; seq: number; rid: string; host: string; argv: string[] }
  | { t: 'notice'; seq: number; level: 'info' | 'warn'; text: string };

// ---------- request ops (host -> guest req.op) and their args ----------
export interface ExecArgs {
  sid: string;
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** allocate a pseudo-terminal (interactive `symrun exec -it`) */
  pty?: { cols: number; rows: number };
  /** keep stdin open for `in` frames (otherwise stdin is /dev/null) */
  stdin?: boolean;
  /** job processes: included in quiesce/resume */
  job?: boolean;
  uid?: number;
  gid?: number;
}
export interface NetConfigArgs {
  mac: string;
  /**
   * how the interface is found: by `mac` (the default: the emulated NIC, an Ethernet VF whose MAC the
   * node set), by `guid` (an IPoIB interface: its port GUID, the last 8 bytes of its 20-byte address),
   * or `passthrough` (the guest's one network interface that is not virtio: a VF whose identity nobody set)
   */
  find?: 'mac' | 'guid' | 'passthrough';
  /** find: guid — the port GUID, 8 bytes aa:bb:… */
  guid?: string;
  name: string;
  /** CIDR like 198.18.3.101/24 */
  address: string;
  /** send gratuitous ARP after bringing the link up */
  announce?: boolean;
  /** wait for the interface with that MAC to appear (hotplug) */
  waitMs?: number;
  /** the job network's MTU (an overlay: the underlay's minus the encapsulation); default: the NIC's own */
  mtu?: number;
  /**
   * failover adapter: `name` becomes an active-backup bond of the passthrough NIC (mac, primary) and a
   * virtio standby NIC (standbyMac) that migrates with the VM; the address lives on the bond.
   */
  standbyMac?: string;
  /** interconnect.transport: rdma: a Soft-RoCE device of this name (rxe0) on the interface (the bond, with standbyMac) */
  rxe?: string;
}
export interface HostsArgs { entries: Array<[string, string]> }
export interface QuiesceArgs {
  adapter: 'freeze' | 'failover' | 'hooks';
  command?: string;
  /** failover: the bond whose standby takes over */
  bond?: string;
  /** fault injection (tests): answer a quiesce only after this long */
  stallMs?: number;
}
export interface InterfaceReport {
  name: string; mac: string; up: boolean; addresses: string[];
  /**
   * where net-config spent its time, in ms (a migration's reconfigure phase, ranks frozen): waiting for
   * the hot-plugged device to appear in /sys/class/net, the `ip` batch, waiting for carrier (operstate up)
   */
  timing?: { appearMs: number; ipMs: number; upMs: number };
}

export const OPS = ['exec', 'net-config', 'net-report', 'hosts', 'quiesce', 'resume', 'info', 'kill'] as const;
export type Op = (typeof OPS)[number];

// ---------- codec ----------
export function encodeFrame(f: HostFrame | GuestFrame): string {
  return JSON.stringify(f) + '\n';
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** Splits a byte stream into lines; refuses lines longer than maxBytes (fail closed). */
export class LineDecoder {
  private buf: Buffer[] = [];
  private len = 0;
  constructor(private readonly maxBytes = MAX_LINE_BYTES_DEFAULT) {}

  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      const part = chunk.subarray(start, nl);
      if (this.len + part.length > this.maxBytes) {
        this.reset();
        throw new ProtocolError(`frame longer than ${this.maxBytes} bytes`);
      }
      this.buf.push(part);
      lines.push(Buffer.concat(this.buf).toString('utf8'));
      this.buf = [];
      this.len = 0;
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (rest.length) {
      if (this.len + rest.length > this.maxBytes) {
        this.reset();
        throw new ProtocolError(`frame longer than ${this.maxBytes} bytes`);
      }
      this.buf.push(Buffer.from(rest));
      this.len += rest.length;
    }
    return lines;
  }

  reset(): void {
    this.buf = [];
    this.len = 0;
  }
}

// ---------- validation (both directions treat the peer as untrusted) ----------
type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length <= max;
const isId = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z0-9_.:-]{1,64}$/.test(v);
const isInt = (v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const isB64 = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max && /^[A-Za-z0-9+/]*={0,2}$/.test(v);

function need(cond: boolean, what: string): void {
  if (!cond) throw new ProtocolError(what);
}

function onlyKeys(o: Obj, keys: string[]): void {
  for (const k of Object.keys(o)) need(keys.includes(k), `unexpected field '${k}' in '${String(o.t)}' frame`);
}

/** Parse and check a line from the guest. Throws ProtocolError on anything unexpected. */
export function parseGuestFrame(line: string, maxBytes = MAX_LINE_BYTES_DEFAULT): GuestFrame {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    throw new ProtocolError('frame is not JSON');
  }
  need(isObj(o), 'frame is not an object');
  const f = o as Obj;
  switch (f.t) {
    case 'sync': {
      onlyKeys(f, ['t', 'id', 'v', 'agent']);
      need(isId(f.id) && isInt(f.v, 0, 1000) && isObj(f.agent), 'bad sync frame');
      const a = f.agent as Obj;
      need(isStr(a.version, 64) && isStr(a.hostname, 255) && isInt(a.pid) && isStr(a.bootId, 64) && typeof a.uptime === 'number', 'bad agent info');
      return { t: 'sync', id: f.id as string, v: f.v as number, agent: { version: a.version as string, hostname: a.hostname as string, pid: a.pid as number, bootId: a.bootId as string, uptime: a.uptime as number } };
    }
    case 'pong':
      onlyKeys(f, ['t', 'id']);
      need(isId(f.id), 'bad pong frame');
      return { t: 'pong', id: f.id as string };
    case 'res':
      onlyKeys(f, ['t', 'id', 'ok', 'value', 'error']);
      need(isId(f.id) && typeof f.ok === 'boolean', 'bad res frame');
      if (f.ok) return { t: 'res', id: f.id as string, ok: true, value: f.value };
      need(isObj(f.error) && isStr((f.error as Obj).code, 64) && isStr((f.error as Obj).message, 8192), 'bad res error');
      return { t: 'res', id: f.id as string, ok: false, error: { code: (f.error as Obj).code as string, message: (f.error as Obj).message as string } };
    case 'out':
      onlyKeys(f, ['t', 'seq', 'sid', 'fd', 'data']);
      need(isInt(f.seq, 1) && isId(f.sid) && (f.fd === 1 || f.fd === 2) && isB64(f.data, maxBytes), 'bad out frame');
      return f as unknown as GuestFrame;
    case 'exit':
      onlyKeys(f, ['t', 'seq', 'sid', 'code', 'signal']);
      need(isInt(f.seq, 1) && isId(f.sid) && (f.code === null || isInt(f.code, 0, 255)) && (f.signal === null || isStr(f.signal, 16)), 'bad exit frame');
      return f as unknown as GuestFrame;
    case 'rsh':
      onlyKeys(f, ['t', 'seq', 'rid', 'host', 'argv']);
      need(isInt(f.seq, 1) && isId(f.rid) && isStr(f.host, 255) && Array.isArray(f.argv) && f.argv.length <= 4096 && f.argv.every((a) => isStr(a, 65536)), 'bad rsh frame');
      return f as unknown as GuestFrame;
    case 'notice':
      onlyKeys(f, ['t', 'seq', 'level', 'text']);
      need(isInt(f.seq, 1) && (f.level === 'info' || f.level === 'warn') && isStr(f.text, 8192), 'bad notice frame');
      return f as unknown as GuestFrame;
    default:
      throw new ProtocolError(`unknown frame type ${JSON.stringify(String(f.t)).slice(0, 40)}`);
  }
}

/** Parse and check a line from the host (the guest agent is defensive too). */
export function parseHostFrame(line: string, maxBytes = MAX_LINE_BYTES_DEFAULT): HostFrame {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    throw new ProtocolError('frame is not JSON');
  }
  need(isObj(o), 'frame is not an object');
  const f = o as Obj;
  switch (f.t) {
    case 'sync':
      need(isId(f.id) && isInt(f.lastSeq), 'bad sync frame');
      return { t: 'sync', id: f.id as string, lastSeq: f.lastSeq as number };
    case 'ack':
      need(isInt(f.seq), 'bad ack frame');
      return { t: 'ack', seq: f.seq as number };
    case 'ping':
      need(isId(f.id), 'bad ping frame');
      return { t: 'ping', id: f.id as string };
    case 'req':
      need(isId(f.id) && typeof f.op === 'string' && (OPS as readonly string[]).includes(f.op) && isObj(f.args), 'bad req frame');
      return { t: 'req', id: f.id as string, op: f.op as string, args: f.args as Obj };
    case 'in':
      need(isId(f.sid) && (f.data === undefined || isB64(f.data, maxBytes)) && (f.eof === undefined || typeof f.eof === 'boolean'), 'bad in frame');
      return f as unknown as HostFrame;
    case 'resize':
      need(isId(f.sid) && isInt(f.cols, 1, 10000) && isInt(f.rows, 1, 10000), 'bad resize frame');
      return f as unknown as HostFrame;
    case 'signal':
      need(isId(f.sid) && isStr(f.sig, 16) && /^SIG[A-Z0-9]+$/.test(f.sig as string), 'bad signal frame');
      return f as unknown as HostFrame;
    case 'rsh-out':
      need(isId(f.rid) && (f.fd === 1 || f.fd === 2) && isB64(f.data, maxBytes), 'bad rsh-out frame');
      return f as unknown as HostFrame;
    case 'rsh-exit':
      need(isId(f.rid) && isInt(f.code, 0, 255), 'bad rsh-exit frame');
      return f as unknown as HostFrame;
    default:
      throw new ProtocolError(`unknown frame type ${JSON.stringify(String(f.t)).slice(0, 40)}`);
  }
}

/** Exit status the way shells report it: the code, or 128+N for a signal. */
export function exitStatus(code: number | null, signal: string | null, signals: Record<string, number>): number {
  if (code !== null) return code;
  if (signal && signals[signal] !== undefined) return 128 + signals[signal]!;
  return 255;
}
