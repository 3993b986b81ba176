// What a job carries across a coordinator restart (`symrun recover`): the state a running coordinator
// keeps in memory that its successor needs to go on as the job was (the reactive-restart budget already
// used, the periodic checkpoint clock, how mpirun was launched, the MAC seed, the guests' prefix length,
// the events file), recorded in recover.json (RecoveryState.carry); and the decisions the run and the
// recover path share, taken from it (pure: job.ts applies them, test/unit/carry.test.ts checks them).
import type { SymrunConfig } from '../../config/types.js';
import type { LaunchRecord, RestartLogEntry } from './restarts.js';

/** recover.json `carry`: what the job had when its coordinator died. */
export interface Carried {
  /** reactive restarts used so far, the budget they count against (checkpoint.maxRestarts) and their log */
  restarts: { used: number; max: number; log: RestartLogEntry[] };
  /** the periodic checkpoint clock (checkpoint.interval): the next one is due `intervalMs` after `since`
   *  (ISO time: when the timer started, or when the last periodic checkpoint completed) */
  checkpointTimer?: { intervalMs: number; since: string };
  /** how mpirun was launched: a restart from the beginning (--restart-from-start) launches it again */
  launch?: LaunchRecord;
  /** MACs and the checkpoints a restart may use derive from it (a restarted job keeps its checkpoint's job id) */
  macSeed: string;
  /** the guests' prefix length, when the job was restored from a checkpoint */
  prefixLenOverride?: number;
  /** the --events file: the successor appends to it */
  eventsFile?: string;
}

/** How the job carries on, run and recover alike (job.ts runToEnd). */
export interface CarryOn {
  /** restarts used already, their budget and log (a fresh run: 0 of checkpoint.maxRestarts) */
  restarts: { used: number; max: number; log: RestartLogEntry[] };
  /** periodic checkpoints, if the job has an interval: the first one `intervalMs` after `since` (firstTickMs), then every `intervalMs` */
  timer?: { intervalMs: number; since: string };
}

/**
 * The periodic timer's first tick: a fresh run waits the whole interval; a recovered job waits what is
 * left of the interval since `since` (0: it is overdue, take it now).
 */
export function firstTickMs(intervalMs: number, since: string | undefined, now: number): number {
  const t = since === undefined ? NaN : Date.parse(since);
  if (!Number.isFinite(t)) return intervalMs;
  return Math.min(intervalMs, Math.max(0, t + intervalMs - now));
}

/** What the job goes on with: a fresh start (`carried` undefined) or what a dead coordinator recorded. */
export function carryOn(cfg: SymrunConfig['checkpoint'], carried: Carried | undefined, now: number): CarryOn {
  const restarts = carried
    ? { used: carried.restarts.used, max: carried.restarts.max, log: [...carried.restarts.log] }
    : { used: 0, max: cfg.maxRestarts, log: [] };
  const intervalMs = carried?.checkpointTimer?.intervalMs ?? cfg.intervalMs;
  if (!intervalMs || intervalMs <= 0) return { restarts };
  return { restarts, timer: { intervalMs, since: carried?.checkpointTimer?.since ?? new Date(now).toISOString() } };
}

/** The host agents a successor waits for: every host's but those lost before it (their VMs run on spares now). */
export function awaitedHosts(hosts: Array<{ name: string }>, lost: Iterable<string>): string[] {
  const gone = new Set(lost);
  return hosts.map((h) => h.name).filter((h) => !gone.has(h));
}

/**
 * recover.json's `carry`, checked before the successor goes on with it (the file lives in the job's run
 * directory; a damaged or hand-edited one must not set the restart budget or the MAC seed to garbage).
 * A part whose shape is wrong is dropped and named in `dropped`: the successor starts that part afresh
 * (carryOn's defaults), the rest is kept. No carry at all (an older symrun's record): undefined.
 */
export function checkCarried(x: unknown): { carried?: Carried; dropped: string[] } {
  if (x === undefined || x === null) return { dropped: [] };
  if (typeof x !== 'object' || Array.isArray(x)) return { dropped: ['carry'] };
  const o = x as Record<string, unknown>;
  const dropped: string[] = [];
  const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  const r = o.restarts as Record<string, unknown> | undefined;
  if (!r || typeof r !== 'object' || !count(r.used) || !count(r.max) || !Array.isArray(r.log)) { dropped.push('carry.restarts'); return { dropped }; }
  if (typeof o.macSeed !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(o.macSeed)) { dropped.push('carry.macSeed'); return { dropped }; }
  const c: Carried = { restarts: { used: r.used as number, max: r.max as number, log: r.log as RestartLogEntry[] }, macSeed: o.macSeed };
  const t = o.checkpointTimer as Record<string, unknown> | undefined;
  if (t !== undefined) {
    if (t && typeof t === 'object' && typeof t.intervalMs === 'number' && Number.isFinite(t.intervalMs) && t.intervalMs > 0 && typeof t.since === 'string' && Number.isFinite(Date.parse(t.since))) c.checkpointTimer = { intervalMs: t.intervalMs, since: t.since };
    else dropped.push('carry.checkpointTimer');
  }
  if (o.prefixLenOverride !== undefined) {
    if (typeof o.prefixLenOverride === 'number' && Number.isInteger(o.prefixLenOverride) && o.prefixLenOverride >= 1 && o.prefixLenOverride <= 32) c.prefixLenOverride = o.prefixLenOverride;
    else dropped.push('carry.prefixLenOverride');
  }
  if (o.eventsFile !== undefined) {
    if (typeof o.eventsFile === 'string' && o.eventsFile.length > 0 && !o.eventsFile.includes('\0')) c.eventsFile = o.eventsFile;
    else dropped.push('carry.eventsFile');
  }
  if (o.launch !== undefined) {
    const l = o.launch as Record<string, unknown> | null;
    if (l && typeof l === 'object' && typeof l.vm === 'string' && Array.isArray(l.argv) && l.argv.every((a) => typeof a === 'string') && Array.isArray(l.rankVm)) c.launch = l as unknown as LaunchRecord;
    else dropped.push('carry.launch');
  }
  return { carried: c, dropped };
}
