// Pure deadline projector for a precopy migration: no I/O, no timers, no clock (times come in samples).
//
// Model (fluid approximation of precopy): the source sends at B bytes/s while the guest dirties D bytes/s,
// so the remaining amount R shrinks at (B - D). QEMU switches over once R fits into the downtime limit,
// i.e. R <= T = B * downtimeLimit. Projected finish = now + (R - T) / (B - D) + T / B; never if D >= B.
//   - B is measured from `transferredBytes` across the samples of the last `windowMs` (falls back to
//     QEMU's own `mbps`).
//   - D is QEMU's `dirty-pages-rate` (measured at each dirty-bitmap sync; 0 during the first pass, which
//     makes the projection optimistic early on: no action is taken before evidence of non-convergence).
// Actions, when the projection misses the deadline:
//   - postcopy:  switch now; the rest (R) is pulled by the destination: done in about R / B.
//   - stop-copy: pause the source guest: nothing is dirtied any more, done in about R / B (guest frozen).
//   - throttle:  slow the source vCPUs so D drops enough for (B - D') to finish in time; percent is the
//                TOTAL throttle (QEMU's cpu-throttle-percentage), accounting for an existing throttle
//                (the measured D already reflects it).
// Choice: the first action in `allowed` (user preference) whose projection meets the deadline; if none
// does (e.g. already late), the one with the earliest projected finish (ties: preference order).
// No action on less than minEvidenceMs of precopy samples unless the deadline has passed (measured on
// QEMU 7.2: the first samples after setup gave 12.8 MiB/s for a link that then ran at 300 MiB/s).
import { DEFAULTS } from '../defaults.js';

/** The subset of MigrationProgress the projector reads (MigrationProgress from qemu.ts satisfies it). */
export interface DeadlineProgress {
  status: string;
  transferredBytes: number;
  remainingBytes: number;
  totalBytes: number;
  dirtyRateBytesPerSec?: number;
  throughputMbps?: number;
  cpuThrottlePercent?: number;
}

export type DeadlineAction =
  | { kind: 'none' }
  | { kind: 'postcopy'; reason: string }
  | { kind: 'throttle'; percent: number; reason: string }
  | { kind: 'stop-copy'; reason: string };

export type DeadlineActionKind = 'postcopy' | 'throttle' | 'stop-copy';

export interface DeadlineOptions {
  /** deadline, in ms from the start of the migration (same clock as the samples' atMs) */
  deadlineMs: number;
  /**
   * actions the user permits, in preference order. 'postcopy' needs MigrationTuning.postcopy and
   * 'throttle' needs MigrationTuning.autoConverge on the source (capabilities cannot change mid-migration):
   * the caller lists only what the migration was configured for.
   */
  allowed: DeadlineActionKind[];
  /**
   * actions already taken: 'postcopy', 'stop-copy', 'throttle' or 'throttle:NN' (NN = total percent set).
   * postcopy and stop-copy are never proposed twice; throttle only with a higher percent than before.
   */
  alreadyTaken: string[];
  /** downtime-limit the migration runs with (default DEFAULTS.migration.downtimeLimitMs) */
  downtimeLimitMs?: number;
  /** throughput measurement window (default DEFAULTS.migration.deadlineWindowMs) */
  windowMs?: number;
  /**
   * no action before precopy has been observed this long (first to last 'active' sample), unless the
   * deadline has passed: early rates are noise (default DEFAULTS.migration.deadlineMinEvidenceMs)
   */
  minEvidenceMs?: number;
}

export type DeadlineResult = DeadlineAction & {
  /** projected finish of precopy as it runs now (ms from start; Infinity = never converges) */
  projectedFinishMs?: number;
  /** projected finish if the proposed action is taken */
  projectedWithActionMs?: number;
};

const MIB = 1024 * 1024;
const fmtS = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : 'never');
const fmtRate = (b: number) => `${(b / MIB).toFixed(1)} MiB/s`;

/** Bytes/s sent, from the samples inside the window ending at the last sample. */
export function measureBandwidth(samples: Array<{ atMs: number; p: DeadlineProgress }>, windowMs: number): number | undefined {
  if (!samples.length) return undefined;
  const last = samples[samples.length - 1]!;
  let first: typeof last | undefined;
  for (const s of samples) {
    // only precopy samples: setup (nothing sent yet) would make the rate look tiny
    if (s.p.status === 'active' && s.atMs >= last.atMs - windowMs && s.atMs < last.atMs) { first = s; break; }
  }
  if (first) {
    const dt = (last.atMs - first.atMs) / 1000;
    const db = last.p.transferredBytes - first.p.transferredBytes;
    if (dt > 0 && db > 0) return db / dt;
  }
  const mbps = last.p.throughputMbps;
  if (mbps !== undefined && Number.isFinite(mbps) && mbps > 0) return (mbps * 1e6) / 8;
  return undefined;
}

/** Projected finish (ms from start) of precopy from `nowMs` with bandwidth B, dirty rate D, remaining R. */
export function projectPrecopy(nowMs: number, R: number, B: number, D: number, downtimeLimitMs: number): number {
  if (!(B > 0)) return Infinity;
  const T = (B * downtimeLimitMs) / 1000;
  if (R <= T) return nowMs + (R / B) * 1000;
  if (D >= B) return Infinity;
  return nowMs + ((R - T) / (B - D)) * 1000 + (T / B) * 1000;
}

function previousThrottle(alreadyTaken: string[], current: number | undefined): { taken: boolean; percent: number } {
  let taken = false;
  let percent = current !== undefined && Number.isFinite(current) ? current : 0;
  for (const a of alreadyTaken) {
    const m = /^throttle(?::(\d+(?:\.\d+)?))?$/.exec(a);
    if (!m) continue;
    taken = true;
    if (m[1] !== undefined) percent = Math.max(percent, Number(m[1]));
  }
  return { taken, percent };
}

export function deadlineDecision(
  samples: Array<{ atMs: number; p: DeadlineProgress }>,
  o: DeadlineOptions,
): DeadlineResult {
  if (!samples.length) return { kind: 'none' };
  const last = samples[samples.length - 1]!;
  const now = last.atMs;
  const p = last.p;
  // only a running precopy can be helped; setup is too early to judge, postcopy/terminal states are past it
  if (p.status !== 'active') return { kind: 'none' };
  const dl = o.downtimeLimitMs ?? DEFAULTS.migration.downtimeLimitMs;
  const windowMs = o.windowMs ?? DEFAULTS.migration.deadlineWindowMs;
  const B = measureBandwidth(samples, windowMs);
  const D = Math.max(0, p.dirtyRateBytesPerSec ?? 0);
  const R = Math.max(0, p.remainingBytes);
  const late = now >= o.deadlineMs;
  const projected = B !== undefined ? projectPrecopy(now, R, B, D, dl) : (late ? Infinity : undefined);
  if (projected === undefined) return { kind: 'none' }; // no throughput measured yet and not late: no evidence
  if (projected <= o.deadlineMs) return { kind: 'none', projectedFinishMs: projected };
  const firstActive = samples.find((s) => s.p.status === 'active');
  const evidenceMs = firstActive ? now - firstActive.atMs : 0;
  if (!late && evidenceMs < (o.minEvidenceMs ?? DEFAULTS.migration.deadlineMinEvidenceMs)) return { kind: 'none', projectedFinishMs: projected };

  const why = `precopy projected to finish at ${fmtS(projected)} (deadline ${fmtS(o.deadlineMs)}${late ? ', already passed' : ''}): `
    + `${(R / MIB).toFixed(0)} MiB left at ${B !== undefined ? fmtRate(B) : 'unknown rate'}, guest dirtying ${fmtRate(D)}`;
  const taken = new Set(o.alreadyTaken);
  const afterSwitch = B !== undefined ? now + (R / B) * 1000 : Infinity;
  const prevT = previousThrottle(o.alreadyTaken, p.cpuThrottlePercent);

  type Cand = { action: Exclude<DeadlineAction, { kind: 'none' }>; finish: number; order: number };
  const cands: Cand[] = [];
  const seen = new Set<string>();
  o.allowed.forEach((kind, order) => {
    if (seen.has(kind)) return;
    seen.add(kind);
    if (kind === 'postcopy') {
      if (taken.has('postcopy') || taken.has('stop-copy')) return;
      cands.push({ action: { kind, reason: `${why}; postcopy now: about ${fmtS(afterSwitch)}` }, finish: afterSwitch, order });
    } else if (kind === 'stop-copy') {
      if (taken.has('stop-copy')) return;
      cands.push({ action: { kind, reason: `${why}; stop the guest and copy the rest: about ${fmtS(afterSwitch)}` }, finish: afterSwitch, order });
    } else if (kind === 'throttle') {
      if (taken.has('stop-copy') || B === undefined || D <= 0 || prevT.percent >= 99) return;
      const keep = 1 - prevT.percent / 100; // share of CPU the guest has now
      // largest dirty rate that still meets the deadline
      const L = (o.deadlineMs - now) / 1000;
      const T = (B * dl) / 1000;
      const budget = L - T / B;
      let total = 99;
      if (budget > 0) {
        const dMax = B - Math.max(0, R - T) / budget;
        if (dMax > 0) {
          const needShare = keep * Math.min(1, dMax / D); // guest CPU share that yields dMax
          total = Math.ceil(100 * (1 - needShare));
        }
      }
      total = Math.min(99, Math.max(total, Math.floor(prevT.percent) + 1, 1));
      const dNew = D * (1 - total / 100) / keep;
      const finish = projectPrecopy(now, R, B, dNew, dl);
      cands.push({
        action: { kind, percent: total, reason: `${why}; throttle the guest to ${total}%: about ${fmtS(finish)}` },
        finish, order,
      });
    }
  });
  if (!cands.length) return { kind: 'none', projectedFinishMs: projected };
  const meets = cands.find((c) => c.finish <= o.deadlineMs);
  const best = meets ?? [...cands].sort((a, b) => a.finish - b.finish || a.order - b.order)[0]!;
  return { ...best.action, projectedFinishMs: projected, projectedWithActionMs: best.finish };
}
