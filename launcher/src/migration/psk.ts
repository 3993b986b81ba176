// The pre-shared key of one migration stream (QEMU tls-creds-psk), and its key file.
//
// Key: HKDF-SHA256 (RFC 5869) with the per-job secret as input keying material, a random salt the
// coordinator draws for each migration, and info = "symrun migration tls <op id>"; 32 bytes. The two host
// agents of a migration derive it themselves from the job secret they already hold (the secret that
// authenticates them on the job channel): the key never crosses a wire, only the op id and the salt do,
// and those are no secret. A fresh salt per migration means no key is ever used twice, even if an op id
// came back (op ids are 24 random bits).
//
// File: QEMU reads `DIR/keys.psk`, one `identity:hexkey` line (crypto/tlscredspsk.c). DIR is a per-migration
// directory in the VM's run directory on each host (mode 0700, the file 0600, both created exclusively so a
// planted file or link is refused), removed when the migration is over on that side.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SymError } from '../errors.js';
import type { MigrationTlsRequest } from '../wire/migration.js';

export const PSK_BYTES = 32;
export const PSK_FILE = 'keys.psk';

export type { MigrationTlsRequest } from '../wire/migration.js';

const OP_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

function checkRequest(r: MigrationTlsRequest): void {
  if (typeof r?.op !== 'string' || !OP_RE.test(r.op)) {
    throw new SymError('ESYM_MIGRATION_TLS', { message: `migration TLS: operation id must match ${OP_RE}, got ${JSON.stringify(r?.op)}`, field: 'tls.op', value: r?.op, fix: 'the coordinator sends its op id (m + 6 hex digits)' });
  }
  if (typeof r.salt !== 'string' || !/^[0-9a-f]{32,128}$/.test(r.salt)) {
    throw new SymError('ESYM_MIGRATION_TLS', { message: `migration TLS: salt must be 32-128 lowercase hex digits, got ${JSON.stringify(r.salt)}`, field: 'tls.salt', value: r.salt, fix: 'the coordinator draws 16 random bytes per migration (newTlsRequest)' });
  }
}

/** A new request for migration `op` (coordinator side): a fresh random salt. */
export function newTlsRequest(op: string): MigrationTlsRequest {
  const r = { op, salt: crypto.randomBytes(16).toString('hex') };
  checkRequest(r);
  return r;
}

/** HKDF-SHA256(job secret, salt, "symrun migration tls OP") → 32 bytes. Pure. */
export function derivePsk(secret: string, r: MigrationTlsRequest): Buffer {
  if (typeof secret !== 'string' || secret.length < 16) {
    throw new SymError('ESYM_MIGRATION_TLS', { message: 'migration TLS: no job secret to derive the stream key from', field: 'SYMRUN_JOB_SECRET', value: secret ? `${secret.length} characters` : 'unset', fix: 'the host agent must be started by the coordinator (it passes the job secret), or set migration.tls: off' });
  }
  checkRequest(r);
  return Buffer.from(crypto.hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from(r.salt, 'hex'), Buffer.from(`symrun migration tls ${r.op}`, 'utf8'), PSK_BYTES));
}

/** The PSK identity (QEMU `username` on the client side) of a migration. */
export function pskIdentity(op: string): string {
  return `symrun-${op}`;
}

/** The per-migration directory under a VM's run directory on one host. */
export function tlsDir(vmRunDir: string, op: string): string {
  return path.join(vmRunDir, `tls-${op}`);
}

/**
 * Create DIR (0700, must not exist) and DIR/keys.psk (0600, exclusive) with `identity:hexkey`.
 * Returns the file's path.
 */
export function writePskFile(dir: string, identity: string, key: Buffer): string {
  if (!/^[A-Za-z0-9_-]+$/.test(identity)) throw new SymError('ESYM_MIGRATION_TLS', { message: `PSK identity must be [A-Za-z0-9_-], got ${JSON.stringify(identity)}`, field: 'identity', value: identity, fix: 'use pskIdentity(op)' });
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.chmodSync(dir, 0o700); // mkdir's mode is masked by the umask
    const file = path.join(dir, PSK_FILE);
    const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    try {
      fs.fchmodSync(fd, 0o600);
      fs.writeSync(fd, `${identity}:${key.toString('hex')}\n`);
    } finally {
      fs.closeSync(fd);
    }
    return file;
  } catch (e) {
    throw new SymError('ESYM_MIGRATION_TLS', { message: `cannot write the migration key file in ${dir}: ${(e as Error).message}`, field: 'tls dir', value: dir, fix: 'the VM\'s run directory must be writable by the host agent, and the directory must not exist yet (a leftover of an earlier attempt: remove it)', cause: e });
  }
}

/** Remove a per-migration key directory (idempotent). */
export function removePskDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
