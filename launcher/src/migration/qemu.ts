// QEMU side of live migration, over QMP only (state files, the checkpoint primitive: statefile.ts).
// Pure parts (capabilitiesFor, parametersFor, parseQueryMigrate, deadlineDecision) have no I/O; the rest
// runs one QMP command at a time through QmpClient. Deadlines and cancellation are passed in.
//
// QEMU 7.2 behaviour measured on this lab's machines (TCG; see test/system/migration-qemu.test.ts):
//  - MIGRATION events are only sent with the `events` capability: configureMigration turns it on for both
//    sides; waitMigration polls query-migrate anyway and uses events only to wake up early.
//  - Capabilities cannot change while a migration runs ("There's a migration process in progress");
//    parameters can (max-bandwidth, downtime-limit, cpu-throttle-*).
//  - The destination's final run state comes from the source's "global state" at switch-over: a source
//    that was running ends up running on the destination (autostart), a source that was STOPPED (stop-copy,
//    or a state file saved from a stopped VM) ends up PAUSED on the destination: the caller must send
//    `cont` to the destination (completeIncoming does). The source is left in `postmigrate` either way.
//  - The source reports `completed` once everything is SENT; the destination can still be `inmigrate`
//    (loading) afterwards: wait for the destination's own completion (completeIncoming) before acting on it.
//  - query-migrate right after `completed` can report total-time 0 and downtime 0 (QEMU sets the status
//    before it computes them): waitMigration re-reads for up to 0.5 s to return the real numbers.
//  - After a cancelled (or failed) incoming migration the destination QEMU exits by itself (status 1,
//    "load of migration failed"): start a new one for the next attempt.
//  - postcopy: postcopy-ram on BOTH sides before migrate / migrate-incoming, migrate-start-postcopy while
//    precopy is active (userfaultfd, root here). The return path is opened automatically.
//  - migrate_cancel during precopy: cancelling -> cancelled, the source keeps running.
//    During postcopy it would lose the guest (the destination holds the newest pages): refused here.
//  - exec: URIs run through /bin/sh -c. QEMU sets `completed` in the migration thread and reaps the
//    command later in its cleanup bottom half (migration.c, 7.2), so `completed` does not prove the file is
//    written: saveStateToFile writes FILE.part, syncs it and renames it; FILE appears only once complete.
//    An unwritable target fails the save ("Unable to write to command: Broken pipe"); the VM stays paused.
//  - The `file:` URI and mapped-ram do not exist before QEMU 9/10: state files use exec:cat.
import fs from 'node:fs';
import path from 'node:path';
import { SymError, type ErrorCode } from '../errors.js';
import { DEFAULTS } from '../defaults.js';
import type { QmpClient, QmpEvent } from '../qmp/client.js';
import type { MigrationTuning, MigrationProgress } from '../wire/migration.js';

export { deadlineDecision, projectPrecopy, measureBandwidth, type DeadlineAction, type DeadlineActionKind, type DeadlineOptions, type DeadlineProgress, type DeadlineResult } from './deadline.js';

export type MigrationSide = 'src' | 'dst';

export type { MigrationTuning, MigrationProgress } from '../wire/migration.js';

export interface MigrationCallOptions { timeoutMs?: number; signal?: AbortSignal }

/** Statuses after which query-migrate will not change by itself. */
export const TERMINAL_STATUSES: readonly string[] = ['completed', 'failed', 'cancelled'];

function tuningError(field: string, value: unknown, message: string, fix: string): SymError {
  return new SymError('ESYM_MIGRATION_TUNING', { message, field, value, fix, exitCode: 2 });
}

function checkTuning(t: MigrationTuning): void {
  if (!Number.isSafeInteger(t.maxBandwidthBytes) || t.maxBandwidthBytes <= 0) {
    throw tuningError('maxBandwidthBytes', t.maxBandwidthBytes, `migration max bandwidth must be a positive integer (bytes/s), got ${t.maxBandwidthBytes}`, `e.g. ${DEFAULTS.migration.maxBandwidthBytes} (10 GiB/s)`);
  }
  if (t.downtimeLimitMs !== undefined && (!Number.isSafeInteger(t.downtimeLimitMs) || t.downtimeLimitMs < 0 || t.downtimeLimitMs > 2_000_000)) {
    throw tuningError('downtimeLimitMs', t.downtimeLimitMs, `migration downtime limit must be an integer 0..2000000 ms, got ${t.downtimeLimitMs}`, `QEMU's default is ${DEFAULTS.migration.downtimeLimitMs} ms`);
  }
  const ch = t.multifdChannels ?? 0;
  if (!Number.isInteger(ch) || ch < 0 || ch > 255) {
    throw tuningError('multifdChannels', ch, `multifd channels must be an integer 0..255, got ${ch}`, 'use 0 (off) or a small number such as 2-8');
  }
  if (ch > 0 && t.postcopy) {
    throw tuningError('multifdChannels', ch, 'postcopy and multifd cannot be combined', 'QEMU before 10.x does not support postcopy over multifd channels: choose one');
  }
}

/** Capabilities to set on one side (explicit false resets what an earlier configuration turned on). Pure. */
export function capabilitiesFor(t: MigrationTuning, side: MigrationSide): Array<{ capability: string; state: boolean }> {
  checkTuning(t);
  const caps = [
    { capability: 'events', state: true },
    { capability: 'multifd', state: (t.multifdChannels ?? 0) > 0 },
    { capability: 'postcopy-ram', state: !!t.postcopy },
  ];
  if (side === 'src') caps.push({ capability: 'auto-converge', state: !!t.autoConverge });
  return caps;
}

/**
 * migrate-set-parameters arguments for one side. Pure. `tls-creds` is always set: the id of this side's
 * tls-creds-psk object (migration/tls.ts) for an encrypted stream, "" for a plain one — the parameter
 * outlives a migration in QEMU, and a state file (exec:) must never be written through TLS.
 */
export function parametersFor(t: MigrationTuning, side: MigrationSide, tlsCreds = ''): Record<string, unknown> {
  checkTuning(t);
  const p: Record<string, unknown> = { 'tls-creds': tlsCreds };
  if (side === 'src') {
    p['max-bandwidth'] = t.maxBandwidthBytes;
    if (t.downtimeLimitMs !== undefined) p['downtime-limit'] = t.downtimeLimitMs;
  }
  // the destination must expect as many channels as the source opens
  if ((t.multifdChannels ?? 0) > 0) p['multifd-channels'] = t.multifdChannels;
  return p;
}

function migrationError(code: ErrorCode, message: string, fix: string, e: unknown, details?: Record<string, unknown>): SymError {
  if (e instanceof SymError && e.code !== 'ESYM_QMP_COMMAND') return e; // timeouts, disconnects, aborts keep their code
  return new SymError(code, { message: `${message}: ${(e as Error).message}`, fix, details, cause: e });
}

/**
 * Set capabilities, then parameters, on one side. Must run before migrate / migrate-incoming.
 * tlsCreds: the id of this side's tls-creds-psk object (created before), or none for a plain stream.
 */
export async function configureMigration(qmp: QmpClient, t: MigrationTuning, side: MigrationSide, o: MigrationCallOptions & { tlsCreds?: string } = {}): Promise<void> {
  const caps = capabilitiesFor(t, side);
  const params = parametersFor(t, side, o.tlsCreds);
  const call = { timeoutMs: o.timeoutMs, signal: o.signal };
  try {
    await qmp.execute('migrate-set-capabilities', { capabilities: caps }, call);
    await qmp.execute('migrate-set-parameters', params, call);
  } catch (e) {
    throw migrationError('ESYM_MIGRATION_CONFIG', `cannot configure migration on the ${side === 'src' ? 'source' : 'destination'}`,
      'capabilities can only change while no migration runs; check that this QEMU supports them (query-migrate-capabilities)', e, { side, capabilities: caps, parameters: params });
  }
}

/**
 * migrate-incoming on a destination started with `-incoming defer`. Returns the URI actually listened on
 * (with port 0, QEMU picks a free port: the returned URI has the real one), or `uri` if QEMU does not say.
 */
export async function startIncoming(qmp: QmpClient, uri: string, o: MigrationCallOptions = {}): Promise<string> {
  try {
    await qmp.execute('migrate-incoming', { uri }, o);
  } catch (e) {
    throw migrationError('ESYM_MIGRATION_START', `destination cannot listen on ${uri}`,
      'the destination must be started with -incoming defer, and the address must be free and local to it', e, { uri });
  }
  const m = /^tcp:(.*):(\d+)$/.exec(uri);
  if (!m) return uri;
  try {
    const info = await qmp.execute<Record<string, unknown>>('query-migrate', undefined, o);
    const addrs = Array.isArray(info?.['socket-address']) ? info['socket-address'] as Array<Record<string, unknown>> : [];
    const inet = addrs.find((a) => a?.type === 'inet' && a.port !== undefined);
    if (inet) {
      const host = String(inet.host);
      return `tcp:${host.includes(':') ? `[${host}]` : host}:${String(inet.port)}`;
    }
  } catch { /* fall through: the listener is up, only the address is unknown */ }
  return uri;
}

/** migrate (source). Returns as soon as QEMU accepted it; follow with waitMigration. */
export async function startOutgoing(qmp: QmpClient, uri: string, o: MigrationCallOptions = {}): Promise<void> {
  try {
    await qmp.execute('migrate', { uri }, o);
  } catch (e) {
    throw migrationError('ESYM_MIGRATION_START', `cannot start the migration to ${uri}`,
      'a migration may already run on this VM, or a device blocks migration (query-migrate shows "blocked-reasons" on newer QEMU)', e, { uri });
  }
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** query-migrate → MigrationProgress. Pure; tolerates any missing field (early states report almost nothing). */
export function parseQueryMigrate(raw: unknown): MigrationProgress {
  const o = isObj(raw) ? raw : {};
  const ram = isObj(o.ram) ? o.ram : {};
  const p: MigrationProgress = {
    status: typeof o.status === 'string' && o.status ? o.status : 'none',
    transferredBytes: num(ram.transferred) ?? 0,
    remainingBytes: num(ram.remaining) ?? 0,
    totalBytes: num(ram.total) ?? 0,
  };
  const set = <K extends keyof MigrationProgress>(k: K, v: MigrationProgress[K] | undefined) => { if (v !== undefined) p[k] = v; };
  set('totalTimeMs', num(o['total-time']));
  set('setupTimeMs', num(o['setup-time']));
  set('downtimeMs', num(o.downtime));
  set('expectedDowntimeMs', num(o['expected-downtime']));
  const pageSize = num(ram['page-size']) || 4096;
  const dirtyPages = num(ram['dirty-pages-rate']);
  set('dirtyRateBytesPerSec', dirtyPages !== undefined ? dirtyPages * pageSize : undefined);
  set('throughputMbps', num(ram.mbps));
  set('dirtySyncCount', num(ram['dirty-sync-count']));
  set('postcopyRequests', num(ram['postcopy-requests']));
  set('multifdBytes', num(ram['multifd-bytes']));
  set('cpuThrottlePercent', num(o['cpu-throttle-percentage']));
  if (typeof o['error-desc'] === 'string') p.errorDesc = o['error-desc'];
  return p;
}

export async function queryMigration(qmp: QmpClient, o: MigrationCallOptions = {}): Promise<MigrationProgress> {
  return parseQueryMigrate(await qmp.execute('query-migrate', undefined, o));
}

export function abortReason(signal: AbortSignal, what: string): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  return new SymError('ESYM_ABORTED', { message: `${what} was cancelled${r !== undefined ? `: ${String(r)}` : ''}` });
}

function fmtProgress(p: MigrationProgress): Record<string, unknown> {
  return { ...p };
}

/** Turn a terminal/stuck status into the error waitMigration throws; undefined if the status is fine. */
function statusError(p: MigrationProgress): SymError | undefined {
  switch (p.status) {
    case 'failed':
      return new SymError('ESYM_MIGRATION_FAILED', {
        message: `migration failed: ${p.errorDesc ?? 'QEMU gave no reason'}`,
        fix: 'see the QEMU stderr of both sides; before switch-over the source VM keeps (or resumes) running, so a rollback can resume it there',
        details: { progress: fmtProgress(p) },
      });
    case 'cancelled':
      return new SymError('ESYM_MIGRATION_CANCELLED', {
        message: 'migration was cancelled',
        fix: 'the source VM keeps running; start a new migration if it is still wanted',
        details: { progress: fmtProgress(p) },
      });
    case 'postcopy-paused':
      return new SymError('ESYM_MIGRATION_POSTCOPY_PAUSED', {
        message: `postcopy migration paused (connection lost)${p.errorDesc ? `: ${p.errorDesc}` : ''}`,
        fix: 'the guest state is split between source and destination: it cannot be rolled back; recover with migrate-recover on the destination and migrate resume=true on the source, or lose the guest',
        details: { progress: fmtProgress(p) },
      });
    default:
      return undefined;
  }
}

async function settleCompleted(qmp: QmpClient, p: MigrationProgress, signal: AbortSignal | undefined): Promise<MigrationProgress> {
  // only the source computes these (the destination's query-migrate has no timing at all)
  if (p.totalBytes === 0 && p.transferredBytes === 0) return p;
  for (let i = 0; i < 25; i++) {
    await new Promise((r) => setTimeout(r, 20));
    if (signal?.aborted) return p;
    const q = await queryMigration(qmp, { signal, timeoutMs: DEFAULTS.qmp.commandTimeoutMs }).catch(() => undefined);
    if (!q || q.status !== 'completed') return p;
    if (q.totalTimeMs) return q;
  }
  return p;
}

/**
 * Poll query-migrate every intervalMs (MIGRATION / MIGRATION_PASS events wake it up early) until
 * completed; onProgress gets every sample. Throws ESYM_MIGRATION_FAILED (QEMU's error-desc in the message),
 * ESYM_MIGRATION_CANCELLED, ESYM_MIGRATION_POSTCOPY_PAUSED, ESYM_MIGRATION_TIMEOUT; rejects with
 * signal.reason on abort WITHOUT cancelling the migration (the caller decides). Works on both sides
 * (the destination's query-migrate reports the incoming migration).
 */
export async function waitMigration(qmp: QmpClient, o: { intervalMs?: number; timeoutMs?: number; signal?: AbortSignal; onProgress?: (p: MigrationProgress) => void } = {}): Promise<MigrationProgress> {
  const intervalMs = Math.max(1, o.intervalMs ?? DEFAULTS.migration.pollIntervalMs);
  const timeoutMs = o.timeoutMs ?? DEFAULTS.migration.timeoutMs;
  const signal = o.signal;
  if (signal?.aborted) throw abortReason(signal, 'waiting for the migration');
  const deadline = Date.now() + timeoutMs;
  let wake: (() => void) | undefined;
  let woken = false;
  const onEvent = (ev: QmpEvent) => {
    if (ev.event === 'MIGRATION' || ev.event === 'MIGRATION_PASS') { woken = true; wake?.(); }
  };
  qmp.on('event', onEvent);
  let last: MigrationProgress | undefined;
  try {
    for (;;) {
      woken = false;
      const left = deadline - Date.now();
      if (left <= 0) break;
      const p = await queryMigration(qmp, { signal, timeoutMs: Math.min(left, DEFAULTS.qmp.commandTimeoutMs) }).catch((e) => {
        // a query that ran out of our own deadline is a migration timeout, not a QMP one
        if ((e as SymError).code === 'ESYM_QMP_TIMEOUT' && Date.now() >= deadline) return undefined;
        throw e;
      });
      if (!p) break;
      if (p.status === 'completed' && !p.totalTimeMs) {
        // QEMU 7.2 sets `completed` before it computes total-time / downtime (migration_calculate_complete
        // runs later in the migration thread): a query in that window reports 0 for both. Re-read briefly.
        const settled = await settleCompleted(qmp, p, signal);
        last = settled;
        o.onProgress?.(settled);
        return settled;
      }
      last = p;
      o.onProgress?.(p);
      if (p.status === 'completed') return p;
      const err = statusError(p);
      if (err) throw err;
      if (woken) continue; // an event arrived while querying: look again at once
      const wait = Math.min(intervalMs, deadline - Date.now());
      if (wait <= 0) break;
      await new Promise<void>((resolve, reject) => {
        const done = () => { clearTimeout(timer); signal?.removeEventListener('abort', onAbort); wake = undefined; };
        const timer = setTimeout(() => { done(); resolve(); }, wait);
        const onAbort = () => { done(); reject(abortReason(signal!, 'waiting for the migration')); };
        wake = () => { done(); resolve(); };
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
    throw new SymError('ESYM_MIGRATION_TIMEOUT', {
      message: `migration did not complete within ${timeoutMs} ms (status ${last?.status ?? 'unknown'})`,
      fix: 'the guest may dirty memory faster than it can be sent: raise max-bandwidth, allow postcopy / throttle / stop-copy, or raise the timeout; the migration is still running (cancel it to roll back)',
      details: { timeoutMs, ...(last ? { progress: fmtProgress(last) } : {}) },
    });
  } finally {
    qmp.off('event', onEvent);
  }
}

export interface IncomingResult {
  progress: MigrationProgress;
  /** run state after the load (query-status): running, paused, ... */
  runState: string;
  /** true if this call sent `cont` */
  resumed: boolean;
}

/**
 * Destination side of the switch-over. The source reports `completed` as soon as it has SENT everything:
 * the destination may still be loading (run state `inmigrate`) for a while. This waits for the
 * destination's own completion, then reads its run state. QEMU 7.2 gives the destination the run state the
 * source had at switch-over: running if the source was running (autostart), paused if the source had been
 * stopped (stop-copy, or a state file saved from a stopped VM). With resume (default true) a paused
 * destination is resumed with `cont`. Also for VMs restored with -incoming "exec:cat FILE".
 */
export async function completeIncoming(qmp: QmpClient, o: { resume?: boolean; timeoutMs?: number; intervalMs?: number; signal?: AbortSignal; onProgress?: (p: MigrationProgress) => void } = {}): Promise<IncomingResult> {
  const timeoutMs = o.timeoutMs ?? DEFAULTS.migration.timeoutMs;
  const deadline = Date.now() + timeoutMs;
  const progress = await waitMigration(qmp, { intervalMs: o.intervalMs, timeoutMs, signal: o.signal, onProgress: o.onProgress });
  const call = () => ({ signal: o.signal, timeoutMs: Math.max(1000, Math.min(DEFAULTS.qmp.commandTimeoutMs, deadline - Date.now())) });
  let st = await qmp.execute<{ status: string }>('query-status', undefined, call());
  let resumed = false;
  if (st.status === 'paused' && (o.resume ?? true)) {
    await qmp.execute('cont', undefined, call());
    resumed = true;
    st = await qmp.execute<{ status: string }>('query-status', undefined, call());
  }
  return { progress, runState: st.status, resumed };
}

const POSTCOPY_STATES = new Set(['postcopy-active', 'postcopy-paused', 'postcopy-recover']);

/**
 * migrate_cancel, then wait until the status is cancelled / failed / completed (or none: nothing ran).
 * Returns the final progress even if the migration had completed meanwhile — the caller must check
 * `status` (completed = the guest now lives on the destination). Refuses during postcopy (the guest
 * cannot be rolled back to the source then): ESYM_MIGRATION_POSTCOPY_CANCEL.
 */
export async function cancelMigration(qmp: QmpClient, o: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } = {}): Promise<MigrationProgress> {
  const timeoutMs = o.timeoutMs ?? DEFAULTS.migration.cancelTimeoutMs;
  const deadline = Date.now() + timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const before = await queryMigration(qmp, { signal: o.signal, timeoutMs: left() });
  if (POSTCOPY_STATES.has(before.status)) {
    throw new SymError('ESYM_MIGRATION_POSTCOPY_CANCEL', {
      message: `cannot cancel a migration in ${before.status}: the destination already runs the guest and holds pages the source does not have`,
      fix: 'let postcopy finish (or recover it); a rollback to the source is impossible after migrate-start-postcopy',
      details: { progress: fmtProgress(before) },
    });
  }
  if (before.status === 'none' || TERMINAL_STATUSES.includes(before.status)) return before;
  try {
    await qmp.execute('migrate_cancel', undefined, { signal: o.signal, timeoutMs: left() });
  } catch (e) {
    throw migrationError('ESYM_MIGRATION_CANCEL', 'migrate_cancel failed', 'query-migrate shows the current state; the source may still be migrating', e);
  }
  const interval = Math.max(1, o.intervalMs ?? 50);
  const timeoutError = (p: MigrationProgress | undefined) => new SymError('ESYM_MIGRATION_TIMEOUT', {
    message: `migration still ${p?.status ?? 'not answering'} ${timeoutMs} ms after migrate_cancel`,
    fix: 'QEMU may be stuck on a blocked socket: kill the destination QEMU (the source then fails the migration and keeps running)',
    details: { timeoutMs, ...(p ? { progress: fmtProgress(p) } : {}) },
  });
  for (;;) {
    // each query gets at least 1 s even near the deadline (a too-short QMP timeout would hide the real state)
    const p = await queryMigration(qmp, { signal: o.signal, timeoutMs: Math.max(1000, left()) }).catch((e) => {
      if ((e as SymError).code === 'ESYM_QMP_TIMEOUT' && Date.now() >= deadline) throw timeoutError(undefined);
      throw e;
    });
    if (p.status === 'none' || TERMINAL_STATUSES.includes(p.status)) return p;
    if (POSTCOPY_STATES.has(p.status)) {
      // postcopy was started concurrently; QEMU cancels it anyway, report what happened
      throw new SymError('ESYM_MIGRATION_POSTCOPY_CANCEL', { message: `migration entered ${p.status} while being cancelled`, fix: 'the guest may be lost: check both sides', details: { progress: fmtProgress(p) } });
    }
    if (Date.now() >= deadline) throw timeoutError(p);
    await new Promise<void>((resolve, reject) => {
      if (o.signal?.aborted) return reject(abortReason(o.signal, 'cancelling the migration'));
      const timer = setTimeout(() => { o.signal?.removeEventListener('abort', onAbort); resolve(); }, Math.min(interval, left()));
      const onAbort = () => { clearTimeout(timer); reject(abortReason(o.signal!, 'cancelling the migration')); };
      o.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** migrate-start-postcopy (source; postcopy-ram must be on for both sides, precopy must be active). */
export async function startPostcopy(qmp: QmpClient, o: MigrationCallOptions = {}): Promise<void> {
  try {
    await qmp.execute('migrate-start-postcopy', undefined, o);
  } catch (e) {
    throw migrationError('ESYM_MIGRATION_POSTCOPY', 'cannot switch to postcopy',
      'postcopy needs the postcopy-ram capability on BOTH sides before the migration starts, and a precopy in progress', e);
  }
}

export async function setMaxBandwidth(qmp: QmpClient, bytesPerSec: number, o: MigrationCallOptions = {}): Promise<void> {
  if (!Number.isSafeInteger(bytesPerSec) || bytesPerSec <= 0) {
    throw tuningError('maxBandwidthBytes', bytesPerSec, `migration max bandwidth must be a positive integer (bytes/s), got ${bytesPerSec}`, `e.g. ${DEFAULTS.migration.maxBandwidthBytes}`);
  }
  try {
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': bytesPerSec }, o);
  } catch (e) {
    throw migrationError('ESYM_MIGRATION_CONFIG', 'cannot set max-bandwidth', 'see the QEMU message', e, { bytesPerSec });
  }
}

/**
 * Throttle the source vCPUs to `percent` (1..99) through auto-converge. QEMU 7.2 has no direct command
 * (set-vcpu-dirty-limit needs KVM's dirty ring): the throttle is applied by the migration thread when it
 * sees, at two consecutive dirty-bitmap syncs, more dirtied bytes than throttle-trigger-threshold % of the
 * bytes sent. So this sets cpu-throttle-initial = percent when no throttle is active, otherwise
 * cpu-throttle-increment = the difference, max-cpu-throttle = percent (cap) and the trigger threshold to
 * DEFAULTS.migration.throttleTriggerThreshold (1 %): the throttle takes effect within about two sync
 * periods. Requires the auto-converge capability (MigrationTuning.autoConverge at configureMigration:
 * capabilities cannot change during a migration) — otherwise ESYM_MIGRATION_THROTTLE_UNAVAILABLE.
 * query-migrate's cpu-throttle-percentage (MigrationProgress.cpuThrottlePercent) shows the effect.
 */
export async function throttleGuest(qmp: QmpClient, percent: number, o: MigrationCallOptions = {}): Promise<void> {
  if (!Number.isInteger(percent) || percent < 1 || percent > 99) {
    throw tuningError('percent', percent, `guest throttle must be an integer 1..99 (percent), got ${percent}`, 'QEMU accepts cpu-throttle values from 1 to 99');
  }
  let caps: Array<{ capability: string; state: boolean }>;
  let current: MigrationProgress;
  try {
    caps = await qmp.execute<Array<{ capability: string; state: boolean }>>('query-migrate-capabilities', undefined, o);
    current = await queryMigration(qmp, o);
  } catch (e) {
    throw migrationError('ESYM_MIGRATION_CONFIG', 'cannot read the migration state', 'see the QEMU message', e);
  }
  if (!caps.some((c) => c.capability === 'auto-converge' && c.state)) {
    throw new SymError('ESYM_MIGRATION_THROTTLE_UNAVAILABLE', {
      message: 'cannot throttle the guest: the auto-converge capability is off on the source',
      fix: 'configure the source with autoConverge: true before starting the migration (capabilities cannot change while it runs)',
      details: { percent },
    });
  }
  const now = current.cpuThrottlePercent ?? 0;
  const params: Record<string, unknown> = {
    'max-cpu-throttle': percent,
    'throttle-trigger-threshold': DEFAULTS.migration.throttleTriggerThreshold,
    'cpu-throttle-tailslow': false,
  };
  if (now <= 0) {
    params['cpu-throttle-initial'] = percent;
    params['cpu-throttle-increment'] = DEFAULTS.migration.throttleIncrementPercent;
  } else {
    // QEMU checks max-cpu-throttle >= cpu-throttle-initial: keep initial at or below the cap
    params['cpu-throttle-initial'] = Math.min(percent, Math.max(1, now));
    params['cpu-throttle-increment'] = Math.max(1, Math.min(99, percent - now));
  }
  try {
    await qmp.execute('migrate-set-parameters', params, o);
  } catch (e) {
    throw migrationError('ESYM_MIGRATION_CONFIG', `cannot set the guest throttle to ${percent}%`, 'see the QEMU message', e, { parameters: params });
  }
}
