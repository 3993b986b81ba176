// A migration as it crosses the coordinator -> host agent wire (mig.prepare, mig.perform, ckpt.save,
// the mig.progress event): the stream's tuning, QEMU's progress, the TLS request. Types only: no I/O.
// QEMU's side of it: migration/qemu.ts; the key derived from the TLS request: migration/psk.ts.

/** How the source sends the VM: pre-copy while it runs, postcopy after one pass, or stopped first. */
export type MigrationMode = 'live' | 'postcopy' | 'stop-copy';

export interface MigrationTuning {
  /** migrate-set-parameters max-bandwidth (bytes/s) */
  maxBandwidthBytes: number;
  /** downtime-limit (ms) */
  downtimeLimitMs?: number;
  /** > 0: capability multifd on both sides + multifd-channels */
  multifdChannels?: number;
  /** capability postcopy-ram on both sides */
  postcopy?: boolean;
  /** capability auto-converge (source only); needed by throttleGuest */
  autoConverge?: boolean;
}

export interface MigrationProgress {
  status: string;
  totalTimeMs?: number;
  setupTimeMs?: number;
  downtimeMs?: number;
  expectedDowntimeMs?: number;
  transferredBytes: number;
  remainingBytes: number;
  totalBytes: number;
  dirtyRateBytesPerSec?: number;
  throughputMbps?: number;
  dirtySyncCount?: number;
  postcopyRequests?: number;
  errorDesc?: string;
  /** auto-converge throttle in effect (query-migrate cpu-throttle-percentage) */
  cpuThrottlePercent?: number;
  /** bytes sent over multifd channels (included in transferredBytes) */
  multifdBytes?: number;
}

/** What the coordinator sends each side: enough to derive the key with the job secret, nothing more. */
export interface MigrationTlsRequest {
  /** migration operation id (m…) */
  op: string;
  /** random, hex, drawn per migration */
  salt: string;
}
