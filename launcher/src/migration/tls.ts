// QEMU's side of an encrypted, authenticated migration stream (TLS with a pre-shared key, psk.ts).
//
// QEMU 7.2 (qapi/migration.json, crypto/tlscredspsk.c; measured: test/system/migration-tls.test.ts):
//  - credentials are a `tls-creds-psk` object: `dir` holds keys.psk; endpoint=server on the listening side
//    (the destination; `username` is refused there: "username should not be set when endpoint=server"),
//    endpoint=client on the source with `username` = the PSK identity. The client reads its key when the
//    object is created; the server reads keys.psk at each handshake, so the destination's file must stay
//    until the stream is accepted.
//  - `migrate-set-parameters tls-creds ID` on BOTH sides before migrate-incoming / migrate; "" turns TLS off
//    again (the parameter outlives a migration: configureMigration always sets it, so a later state save
//    to a file, which must be plain, is not affected). tls-hostname is only used to check x509
//    certificates: with a PSK it is not needed.
//  - a key mismatch fails the handshake: the source's query-migrate says `failed` with error-desc
//    "TLS handshake failed: The TLS connection was non-properly terminated.", the source keeps running;
//    the destination logs "TLS handshake failed: An illegal parameter has been received." and keeps
//    listening (measured; a reset connection is handled the same). tlsFailure makes it ESYM_MIGRATION_TLS.
import { SymError } from '../errors.js';
import type { QmpClient } from '../qmp/client.js';
import type { MigrationProgress } from './qemu.js';

export type TlsEndpoint = 'server' | 'client';

export interface TlsCreds {
  /** QOM object id */
  id: string;
  endpoint: TlsEndpoint;
  /** directory holding keys.psk */
  dir: string;
  /** PSK identity; client only */
  username?: string;
}

/** The QOM id of a migration's credentials object. */
export function tlsCredsId(op: string): string {
  return `symrun-tls-${op}`;
}

function credsProps(c: TlsCreds): Record<string, string> {
  if (!/^[A-Za-z][A-Za-z0-9_.-]*$/.test(c.id)) throw new SymError('ESYM_MIGRATION_TLS', { message: `TLS credentials id must be a QOM id, got ${JSON.stringify(c.id)}`, field: 'id', value: c.id, fix: 'use tlsCredsId(op)' });
  if (/[,\0\n]/.test(c.dir)) throw new SymError('ESYM_MIGRATION_TLS', { message: `TLS key directory must not contain commas or newlines: ${JSON.stringify(c.dir)}`, field: 'dir', value: c.dir, fix: 'use a run directory without commas' });
  if (c.endpoint === 'server' && c.username !== undefined) throw new SymError('ESYM_MIGRATION_TLS', { message: 'a server-side tls-creds-psk takes no username (QEMU refuses it)', field: 'username', value: c.username, fix: 'only the client (the source) names its identity' });
  if (c.endpoint === 'client' && !c.username) throw new SymError('ESYM_MIGRATION_TLS', { message: 'a client-side tls-creds-psk needs the PSK identity as username', field: 'username', value: c.username, fix: 'use pskIdentity(op)' });
  return { id: c.id, endpoint: c.endpoint, dir: c.dir, ...(c.username ? { username: c.username } : {}) };
}

/** `-object tls-creds-psk,...` for a QEMU command line (the destination, started with -incoming defer). */
export function tlsObjectArgs(c: TlsCreds): string[] {
  const p = credsProps(c);
  return ['-object', ['tls-creds-psk', ...Object.entries(p).map(([k, v]) => `${k}=${v}`)].join(',')];
}

/** object-add of the credentials over QMP (the source, which already runs). */
export async function addTlsCreds(qmp: QmpClient, c: TlsCreds, o: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
  const p = credsProps(c);
  try {
    await qmp.execute('object-add', { 'qom-type': 'tls-creds-psk', ...p }, o);
  } catch (e) {
    throw new SymError('ESYM_MIGRATION_TLS', { message: `QEMU refused the migration TLS credentials ${c.id} (${c.endpoint}, ${c.dir}): ${(e as Error).message}`, field: 'tls-creds-psk', value: c.id, fix: `QEMU must be built with GnuTLS and ${c.dir}/keys.psk must be readable by it; or set migration.tls: off`, cause: e });
  }
}

/** Best effort after a migration: tls-creds back to "" and the object deleted. */
export async function dropTlsCreds(qmp: QmpClient, id: string, o: { timeoutMs?: number } = {}): Promise<void> {
  await qmp.execute('migrate-set-parameters', { 'tls-creds': '' }, o).catch(() => undefined);
  await qmp.execute('object-del', { id }, o).catch(() => undefined);
}

const TLS_DESC = /TLS|handshake|GnuTLS|decrypt|bad record mac|alert/i;

/**
 * The error for a migration that failed with TLS on: ESYM_MIGRATION_TLS when QEMU's reason is the
 * handshake, or when nothing got through before the stream broke (a server that refuses the key resets
 * the connection before any RAM is sent). Undefined when the failure is something else.
 */
export function tlsFailure(p: MigrationProgress | undefined, where: { src: string; dst: string }): SymError | undefined {
  if (!p || p.status !== 'failed') return undefined;
  const desc = p.errorDesc ?? '';
  if (!TLS_DESC.test(desc) && p.transferredBytes > 0) return undefined;
  return new SymError('ESYM_MIGRATION_TLS', {
    message: `TLS handshake failed between ${where.src} and ${where.dst}: the destination refused the migration stream (${desc || 'QEMU gave no reason'})`,
    field: 'migration.tls', value: 'on',
    fix: 'both host agents derive the stream key from the job secret, the op id and the salt: a mismatch means one of them has another job secret (a stale agent?) or another salt; the source VM keeps running. See both QEMU stderr logs',
    details: { progress: { ...p } },
  });
}
