// Coordinated checkpoint as a pure state machine: step(state, event) -> { state, effects }.
// Same shapes as the migration machine (migration/machine.ts), so the same executor
// (migration/executor.ts, `machine: CHECKPOINT_MACHINE`) runs it, journals each phase and reports
// events. No I/O, no timers.
//
// Forward path:
//   prepare (space check, NAME.tmp-XXXX) -> quiesce (all guests) -> unplug (every VM's device)
//   -> save (every VM in parallel: stop + migrate exec:cat > file) -> cont (every VM runs again)
//   -> replug -> reconfigure -> resume -> commit (manifest, fsync, rename tmp -> final, prune) -> done
// The checkpoint exists only after commit. Any failure (or a cancel) BEFORE commit takes the rollback
// path, built from what was started and not yet undone by the forward path itself:
//   rb-cont (save started, cont not done: every VM runs again)
//   -> rb-replug (unplug started, replug not done) -> rb-reconfigure (unplug started, reconfigure not done)
//   -> rb-resume (quiesce started, resume not done) -> rb-discard (prepare started: temp dir removed)
//   -> rolled-back | rollback-failed
// A failed commit only discards the temp dir (the VMs already run). A rollback step that fails is
// recorded as a leftover and the rollback goes on. Previous checkpoints are never touched before
// the new one is complete.
// replug / reconfigure / resume are retried once before the rollback is taken (transient failures).

export const CKPT_FORWARD = ['prepare', 'quiesce', 'unplug', 'save', 'cont', 'replug', 'reconfigure', 'resume', 'commit'] as const;
export const CKPT_ROLLBACK = ['rb-cont', 'rb-replug', 'rb-reconfigure', 'rb-resume', 'rb-discard'] as const;
export const CKPT_TERMINAL = ['done', 'rolled-back', 'rollback-failed'] as const;

export type CkptForwardPhase = (typeof CKPT_FORWARD)[number];
export type CkptRollbackPhase = (typeof CKPT_ROLLBACK)[number];
export type CkptTerminalPhase = (typeof CKPT_TERMINAL)[number];
export type CkptPhase = 'new' | CkptForwardPhase | CkptRollbackPhase | CkptTerminalPhase;
export type CkptRunPhase = CkptForwardPhase | CkptRollbackPhase;

/** What has been started (`*ed` set when the phase starts) and what the forward path has undone again. */
export interface CkptMarks {
  prepared: boolean;
  quiesced: boolean;
  unplugged: boolean;
  saving: boolean;
  committing: boolean;
  /** set when the phase succeeded */
  contDone: boolean;
  replugDone: boolean;
  reconfigureDone: boolean;
  resumeDone: boolean;
}

export interface CkptState {
  phase: CkptPhase;
  marks: CkptMarks;
  /** first error wins */
  error?: { phase: CkptPhase; message: string; code?: string };
  cancelled: boolean;
  attempt: number;
  leftovers: Array<{ phase: CkptPhase; message: string }>;
}

export type CkptEvent =
  | { type: 'start' }
  | { type: 'ok'; phase: CkptPhase }
  | { type: 'fail'; phase: CkptPhase; message: string; code?: string }
  | { type: 'cancel'; reason?: string };

export type CkptEffect =
  | { kind: 'run'; phase: CkptRunPhase }
  | { kind: 'abort'; phase: CkptPhase }
  | { kind: 'end'; phase: CkptTerminalPhase };

type MarkKey = keyof CkptMarks;

/** The transition table. `mark`: set when the phase starts; `done`: set when it succeeds; `retry`: extra attempts. */
export const CKPT_TABLE: Record<CkptForwardPhase, { next: CkptForwardPhase | 'done'; mark?: MarkKey; done?: MarkKey; retry: number }> = {
  prepare: { next: 'quiesce', mark: 'prepared', retry: 0 },
  quiesce: { next: 'unplug', mark: 'quiesced', retry: 0 },
  unplug: { next: 'save', mark: 'unplugged', retry: 0 },
  save: { next: 'cont', mark: 'saving', retry: 0 },
  cont: { next: 'replug', done: 'contDone', retry: 0 },
  replug: { next: 'reconfigure', done: 'replugDone', retry: 1 },
  reconfigure: { next: 'resume', done: 'reconfigureDone', retry: 1 },
  resume: { next: 'commit', done: 'resumeDone', retry: 1 },
  commit: { next: 'done', mark: 'committing', retry: 0 },
};

/** A rollback step applies when `needs` was started and `unless` (its forward counterpart) has not succeeded. */
export const CKPT_RB: Record<CkptRollbackPhase, { needs: MarkKey; unless?: MarkKey }> = {
  'rb-cont': { needs: 'saving', unless: 'contDone' },
  'rb-replug': { needs: 'unplugged', unless: 'replugDone' },
  'rb-reconfigure': { needs: 'unplugged', unless: 'reconfigureDone' },
  'rb-resume': { needs: 'quiesced', unless: 'resumeDone' },
  'rb-discard': { needs: 'prepared' },
};

export function ckptInitialState(): CkptState {
  return {
    phase: 'new',
    marks: { prepared: false, quiesced: false, unplugged: false, saving: false, committing: false, contDone: false, replugDone: false, reconfigureDone: false, resumeDone: false },
    cancelled: false,
    attempt: 0,
    leftovers: [],
  };
}

export function ckptIsTerminal(p: CkptPhase): p is CkptTerminalPhase {
  return (CKPT_TERMINAL as readonly string[]).includes(p);
}
function isForward(p: CkptPhase): p is CkptForwardPhase {
  return (CKPT_FORWARD as readonly string[]).includes(p);
}
function isRollback(p: CkptPhase): p is CkptRollbackPhase {
  return (CKPT_ROLLBACK as readonly string[]).includes(p);
}

type Out = { state: CkptState; effects: CkptEffect[] };

function enter(s: CkptState, phase: CkptForwardPhase | 'done'): Out {
  if (phase === 'done') return { state: { ...s, phase: 'done', attempt: 0 }, effects: [{ kind: 'end', phase: 'done' }] };
  const row = CKPT_TABLE[phase];
  const marks = row.mark ? { ...s.marks, [row.mark]: true } : s.marks;
  return { state: { ...s, phase, marks, attempt: 0 }, effects: [{ kind: 'run', phase }] };
}

function nextRollback(s: CkptState, from?: CkptRollbackPhase): Out {
  const start = from ? CKPT_ROLLBACK.indexOf(from) + 1 : 0;
  for (let i = start; i < CKPT_ROLLBACK.length; i++) {
    const p = CKPT_ROLLBACK[i]!;
    const r = CKPT_RB[p];
    if (s.marks[r.needs] && !(r.unless && s.marks[r.unless])) return { state: { ...s, phase: p, attempt: 0 }, effects: [{ kind: 'run', phase: p }] };
  }
  const end: CkptTerminalPhase = s.leftovers.length ? 'rollback-failed' : 'rolled-back';
  return { state: { ...s, phase: end }, effects: [{ kind: 'end', phase: end }] };
}

export function ckptStep(s: CkptState, e: CkptEvent): Out {
  if (ckptIsTerminal(s.phase)) return { state: s, effects: [] };
  switch (e.type) {
    case 'start':
      if (s.phase !== 'new') return { state: s, effects: [] };
      return enter(s, 'prepare');

    case 'cancel': {
      // once commit runs, the checkpoint is (being) made: too late to cancel
      if (s.cancelled || s.marks.committing || isRollback(s.phase)) return { state: s, effects: [] };
      const st = { ...s, cancelled: true, error: s.error ?? { phase: s.phase, message: e.reason ?? 'cancelled by the user', code: 'ESYM_CANCELLED' } };
      if (s.phase === 'new') return nextRollback(st);
      return { state: st, effects: [{ kind: 'abort', phase: s.phase }] };
    }

    case 'ok': {
      if (e.phase !== s.phase) return { state: s, effects: [] }; // stale outcome
      if (isRollback(s.phase)) return nextRollback(s, s.phase);
      if (!isForward(s.phase)) return { state: s, effects: [] };
      const row = CKPT_TABLE[s.phase];
      const st = row.done ? { ...s, marks: { ...s.marks, [row.done]: true } } : s;
      if (s.cancelled) return nextRollback(st); // finished before the abort reached it
      return enter(st, row.next);
    }

    case 'fail': {
      if (e.phase !== s.phase) return { state: s, effects: [] };
      if (isRollback(s.phase)) {
        return nextRollback({ ...s, leftovers: [...s.leftovers, { phase: s.phase, message: e.message }] }, s.phase);
      }
      if (!isForward(s.phase)) return { state: s, effects: [] };
      const err = s.error ?? { phase: s.phase, message: e.message, code: e.code };
      const row = CKPT_TABLE[s.phase];
      if (!s.cancelled && s.attempt < row.retry) return { state: { ...s, error: s.error, attempt: s.attempt + 1 }, effects: [{ kind: 'run', phase: s.phase }] };
      return nextRollback({ ...s, error: err });
    }
  }
}

/** Replay journaled events (recovery). */
export function ckptReplay(events: CkptEvent[]): CkptState {
  let s = ckptInitialState();
  for (const e of events) s = ckptStep(s, e).state;
  return s;
}

/** For the executor (migration/executor.ts). */
export const CHECKPOINT_MACHINE = { initialState: ckptInitialState, step: ckptStep, isTerminal: ckptIsTerminal };
