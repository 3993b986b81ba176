// State files, the checkpoint primitive: a VM's state migrated into a file (exec:cat, QEMU < 9 has no
// `file:` URI) and the `-incoming` arguments that restore it. Built on the migration calls of qemu.ts;
// the QEMU behaviour it relies on (`completed` before the command's file is written; the restored VM
// paused) is measured and described in qemu.ts's header.
import fs from 'node:fs';
import path from 'node:path';
import { SymError } from '../errors.js';
import { DEFAULTS } from '../defaults.js';
import type { QmpClient } from '../qmp/client.js';
import { abortReason, configureMigration, startOutgoing, waitMigration, type MigrationProgress } from './qemu.js';

/** POSIX shell single-quoting (exec: URIs run through /bin/sh -c). */
export function shellQuote(s: string): string {
  if (s.includes('\0')) throw new RangeError('NUL byte in a shell argument');
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function checkStateFile(file: string): void {
  if (!path.isAbsolute(file) || /[\0\n]/.test(file)) {
    throw new SymError('ESYM_MIGRATION_FILE', {
      message: `state file path must be absolute (QEMU's working directory is not ours): ${JSON.stringify(file)}`,
      field: 'file', value: file, fix: 'pass an absolute path without newlines',
    });
  }
}

/** The `-incoming` arguments that restore a VM from a file written by saveStateToFile (QEMU < 9: exec:cat). */
export function incomingFromFileArgs(file: string): string[] {
  checkStateFile(file);
  return ['-incoming', `exec:cat ${shellQuote(file)}`];
}

/**
 * Checkpoint primitive: stop the VM (if running), then migrate its state into `file` with
 * `exec:cat > FILE.part && sync FILE.part && mv FILE.part FILE` and wait for completion. The file exists only
 * once it is complete (and fsync'ed: the checkpoint must survive this node). The VM stays stopped
 * (status postmigrate): `cont` resumes it here, `quit` ends it. Restore: start QEMU with
 * incomingFromFileArgs(file) (no `-incoming defer`), wait for completion with waitMigration on it, then
 * `cont` (the restored VM is paused because it was saved paused).
 * Resets capabilities (multifd / postcopy cannot write to a pipe) and raises max-bandwidth.
 */
export async function saveStateToFile(qmp: QmpClient, file: string, o: { signal?: AbortSignal; onProgress?: (p: MigrationProgress) => void; timeoutMs?: number; intervalMs?: number } = {}): Promise<MigrationProgress> {
  checkStateFile(file);
  const timeoutMs = o.timeoutMs ?? DEFAULTS.migration.timeoutMs;
  const deadline = Date.now() + timeoutMs;
  const call = () => ({ signal: o.signal, timeoutMs: Math.max(1, Math.min(DEFAULTS.qmp.commandTimeoutMs, deadline - Date.now())) });
  const status = await qmp.execute<{ status?: string; running?: boolean }>('query-status', undefined, call());
  if (status?.running) await qmp.execute('stop', undefined, call());
  await configureMigration(qmp, { maxBandwidthBytes: DEFAULTS.migration.saveMaxBandwidthBytes }, 'src', call());
  const part = `${file}.part`;
  const q = shellQuote(file), qp = shellQuote(part);
  const inodeOf = (f: string) => { try { return fs.statSync(f).ino; } catch { return undefined; } };
  const oldIno = inodeOf(file); // an older checkpoint stays in place until the new one is complete
  await startOutgoing(qmp, `exec:cat > ${qp} && sync ${qp} && mv -f ${qp} ${q}`, call());
  const p = await waitMigration(qmp, { signal: o.signal, onProgress: o.onProgress, intervalMs: o.intervalMs, timeoutMs: Math.max(1, deadline - Date.now()) });
  // QEMU reports completed before `cat` has exited (it reaps the child while cleaning up): wait for the rename
  for (;;) {
    const ino = inodeOf(file);
    if (ino !== undefined && ino !== oldIno) return p;
    if (Date.now() >= deadline) {
      throw new SymError('ESYM_MIGRATION_TIMEOUT', { message: `state file ${file} did not appear within ${timeoutMs} ms although QEMU reported completion`, fix: `check the directory and ${part}`, details: { file } });
    }
    if (o.signal?.aborted) throw abortReason(o.signal, 'saving the VM state');
    await new Promise((r) => setTimeout(r, 20));
  }
}
