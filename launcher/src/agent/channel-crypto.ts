// The cryptography of the job channel (agent/channel.ts; wire tables in docs/channels.md):
//   - proof(): the handshake's HMAC-SHA256 over the channel version, the prover's role, the client's
//     name and both nonces. Each side proves the shared secret over nonces it did not choose alone, and
//     the role in the input keeps one side's proof from being reflected as the other's.
//   - sessionKeys(): one AES-256 key per direction, HKDF-SHA256 from the secret, salted with both
//     nonces (fresh keys on every connection, so frames of an old connection never open on a new one).
//   - FrameSealer / FrameOpener: every message after the handshake is one JSON line
//     {"t":"sealed","n":SEQ,"c":BASE64(ciphertext || 16-byte GCM tag)}; SEQ counts the frames of one
//     direction from 0 and is the GCM nonce (4 zero bytes + SEQ as 64-bit big-endian). The opener takes
//     only the next SEQ: a replayed, dropped or reordered frame, or one whose bytes were changed, is
//     refused with ESYM_CHANNEL_INTEGRITY and the caller closes the connection.
// No I/O here: node:crypto only.
import crypto from 'node:crypto';
import { SymError } from '../errors.js';

/** Bumped when the wire changes; both ends must speak the same one (ESYM_CHANNEL_VERSION otherwise). */
export const CHANNEL_VERSION = 2;
export const NONCE_BYTES = 32;
const NONCE_RE = new RegExp(`^[0-9a-f]{${NONCE_BYTES * 2}}$`);
const TAG_BYTES = 16;

export type Role = 'client' | 'server';

export function newNonce(): string {
  return crypto.randomBytes(NONCE_BYTES).toString('hex');
}

export function isNonce(v: unknown): v is string {
  return typeof v === 'string' && NONCE_RE.test(v);
}

/** What `role` sends to prove the secret: HMAC-SHA256 (hex) over version, role, name and both nonces. */
export function proof(secret: string, role: Role, name: string, serverNonce: string, clientNonce: string): string {
  return crypto.createHmac('sha256', secret).update(`symrun-channel\n${CHANNEL_VERSION}\n${role}\n${name}\n${serverNonce}\n${clientNonce}`).digest('hex');
}

/** Timing-safe comparison of a received proof with the expected one (any shape of `given` is safe). */
export function proofMatches(given: unknown, want: string): boolean {
  if (typeof given !== 'string' || !/^[0-9a-f]{64}$/.test(given)) return false;
  return crypto.timingSafeEqual(Buffer.from(given, 'hex'), Buffer.from(want, 'hex'));
}

export interface SessionKeys {
  /** client → server */
  c2s: Buffer;
  /** server → client */
  s2c: Buffer;
}

export function sessionKeys(secret: string, name: string, serverNonce: string, clientNonce: string): SessionKeys {
  const salt = Buffer.concat([Buffer.from(serverNonce, 'hex'), Buffer.from(clientNonce, 'hex')]);
  const key = (dir: string) => Buffer.from(crypto.hkdfSync('sha256', secret, salt, `symrun-channel v${CHANNEL_VERSION} ${dir} ${name}`, 32));
  return { c2s: key('c2s'), s2c: key('s2c') };
}

function iv(n: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeBigUInt64BE(BigInt(n), 4);
  return b;
}

export class FrameSealer {
  private n = 0;
  constructor(private readonly key: Buffer) {}

  /** One message (its JSON text) → one sealed line, without the newline. */
  seal(plain: string): string {
    const n = this.n++;
    const c = crypto.createCipheriv('aes-256-gcm', this.key, iv(n));
    const body = Buffer.concat([c.update(plain, 'utf8'), c.final(), c.getAuthTag()]);
    return `{"t":"sealed","n":${n},"c":"${body.toString('base64')}"}`;
  }
}

const SEALED_HEAD = '{"t":"sealed","n":';

/**
 * The fields of a line exactly as FrameSealer writes it, without JSON.parse of the whole (large) line;
 * undefined for any other shape (then parsed as JSON, for the error message).
 */
function sealedFields(line: string): { t: 'sealed'; n: number; c: string } | undefined {
  if (!line.startsWith(SEALED_HEAD) || !line.endsWith('"}')) return undefined;
  const comma = line.indexOf(',"c":"', SEALED_HEAD.length);
  if (comma < 0) return undefined;
  const digits = line.slice(SEALED_HEAD.length, comma);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(digits)) return undefined;
  const c = line.slice(comma + 6, line.length - 2);
  if (c.includes('"')) return undefined;
  // whatever base64 decodes to is then checked by the GCM tag: only the sealed bytes get through
  return { t: 'sealed', n: Number(digits), c };
}

export class FrameOpener {
  private next = 0;
  /** `peer` names the other side in errors. */
  constructor(private readonly key: Buffer, private readonly peer: string) {}

  /** One received line → the message's JSON text; ESYM_CHANNEL_INTEGRITY for anything else. */
  open(line: string): string {
    let m: { t?: unknown; n?: unknown; c?: unknown } | undefined = sealedFields(line);
    if (!m) {
      try {
        m = JSON.parse(line) as typeof m;
      } catch {
        throw this.refuse(`a line that is not JSON (${JSON.stringify(line.slice(0, 40))})`);
      }
    }
    if (m?.t !== 'sealed' || typeof m.c !== 'string' || !Number.isSafeInteger(m.n)) {
      throw this.refuse(`an unsealed message (t=${JSON.stringify(m?.t)}) after the handshake`);
    }
    const n = m.n as number;
    if (n !== this.next) {
      throw this.refuse(n < this.next ? `frame n=${n} again (replayed; expected n=${this.next})` : `frame n=${n} out of order (expected n=${this.next})`);
    }
    const body = Buffer.from(m.c, 'base64');
    if (body.length < TAG_BYTES) throw this.refuse(`frame n=${n} shorter than its tag`);
    try {
      const d = crypto.createDecipheriv('aes-256-gcm', this.key, iv(n));
      d.setAuthTag(body.subarray(body.length - TAG_BYTES));
      const plain = Buffer.concat([d.update(body.subarray(0, body.length - TAG_BYTES)), d.final()]).toString('utf8');
      this.next++;
      return plain;
    } catch {
      throw this.refuse(`frame n=${n} failed authentication (changed in transit, or sealed with another key)`);
    }
  }

  private refuse(what: string): SymError {
    return new SymError('ESYM_CHANNEL_INTEGRITY', {
      message: `the channel to ${this.peer} received ${what}: connection closed`,
      fix: 'something between the two ends changes or injects traffic, or the peer is not the one that did the handshake; check the network path between the nodes',
    });
  }
}
