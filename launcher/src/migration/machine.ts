// The SymVirt protocol as a pure state machine: step(state, event) -> { state, effects }.
// No I/O, no timers: the executor (executor.ts) runs each effect through narrow ports, writes the
// journal before it, and feeds the outcome back as an event.
//
// Forward path (migration):
//   prepare -> quiesce -> unplug -> perform -> finish -> replug -> reconfigure -> resume -> confirm -> done
// Any failure (or a cancel) BEFORE finish takes the rollback path, built from what has been done:
//   rb-cancel (perform started) -> rb-dst-stop (prepare started) -> rb-replug (unplug started)
//   -> rb-reconfigure (unplug started) -> rb-resume (quiesce started) -> rolled-back
// A rollback step that fails is recorded as a leftover and the rollback goes on with the next step;
// it ends in `rolled-back` (nothing left) or `rollback-failed` (leftovers say what is left where).
// After finish the VM lives on the destination: failures there are retried once (retryable phases)
// and otherwise end in `degraded` with the leftover (e.g. no device on the destination); guests
// are always resumed.

export const FORWARD = ['prepare', 'quiesce', 'unplug', 'perform', 'finish', 'replug', 'reconfigure', 'resume', 'confirm'] as const;
export const ROLLBACK = ['rb-cancel', 'rb-dst-stop', 'rb-replug', 'rb-reconfigure', 'rb-resume'] as const;
export const TERMINAL = ['done', 'rolled-back', 'rollback-failed', 'degraded'] as const;

export type ForwardPhase = (typeof FORWARD)[number];
export type RollbackPhase = (typeof ROLLBACK)[number];
export type TerminalPhase = (typeof TERMINAL)[number];
export type Phase = 'new' | ForwardPhase | RollbackPhase | TerminalPhase;

/** What has been started (a side effect may have happened even if the step then failed). */
export interface Marks {
  prepared: boolean;
  quiesced: boolean;
  unplugged: boolean;
  performing: boolean;
  finished: boolean;
}

export interface MachineState {
  phase: Phase;
  marks: Marks;
  /** first error wins */
  error?: { phase: Phase; message: string; code?: string };
  cancelled: boolean;
  /** attempts of the current phase (post-finish retries) */
  attempt: number;
  /** what a failed rollback / degraded finish leaves behind, in words an operator can act on */
  leftovers: Array<{ phase: Phase; message: string }>;
}

export type MachineEvent =
  | { type: 'start' }
  | { type: 'ok'; phase: Phase }
  | { type: 'fail'; phase: Phase; message: string; code?: string }
  | { type: 'cancel'; reason?: string };

export type Effect =
  | { kind: 'run'; phase: Exclude<Phase, 'new' | TerminalPhase> }
  /** the running effect of this phase must be aborted (cancel requested) */
  | { kind: 'abort'; phase: Phase }
  | { kind: 'end'; phase: TerminalPhase };

/** The transition table: one row per forward phase. `mark` is set when the phase starts. */
export const TABLE: Record<ForwardPhase, { next: ForwardPhase | 'done'; mark?: keyof Marks; retry: number }> = {
  prepare: { next: 'quiesce', mark: 'prepared', retry: 0 },
  quiesce: { next: 'unplug', mark: 'quiesced', retry: 0 },
  unplug: { next: 'perform', mark: 'unplugged', retry: 0 },
  perform: { next: 'finish', mark: 'performing', retry: 0 },
  finish: { next: 'replug', mark: 'finished', retry: 0 },
  replug: { next: 'reconfigure', retry: 1 },
  reconfigure: { next: 'resume', retry: 1 },
  resume: { next: 'confirm', retry: 1 },
  confirm: { next: 'done', retry: 1 },
};

/** Which rollback steps apply, given what was started. */
const RB_NEEDS: Record<RollbackPhase, keyof Marks> = {
  'rb-cancel': 'performing',
  'rb-dst-stop': 'prepared',
  'rb-replug': 'unplugged',
  'rb-reconfigure': 'unplugged',
  'rb-resume': 'quiesced',
};

export function initialState(): MachineState {
  return { phase: 'new', marks: { prepared: false, quiesced: false, unplugged: false, performing: false, finished: false }, cancelled: false, attempt: 0, leftovers: [] };
}

export function isTerminal(p: Phase): p is TerminalPhase {
  return (TERMINAL as readonly string[]).includes(p);
}
export function isForward(p: Phase): p is ForwardPhase {
  return (FORWARD as readonly string[]).includes(p);
}
export function isRollback(p: Phase): p is RollbackPhase {
  return (ROLLBACK as readonly string[]).includes(p);
}

function enter(s: MachineState, phase: ForwardPhase | 'done'): { state: MachineState; effects: Effect[] } {
  if (phase === 'done') return { state: { ...s, phase: 'done', attempt: 0 }, effects: [{ kind: 'end', phase: 'done' }] };
  const row = TABLE[phase];
  const marks = row.mark ? { ...s.marks, [row.mark]: true } : s.marks;
  return { state: { ...s, phase, marks, attempt: 0 }, effects: [{ kind: 'run', phase }] };
}

/** The next applicable rollback step after `from` (or the first one), else the terminal state. */
function nextRollback(s: MachineState, from?: RollbackPhase): { state: MachineState; effects: Effect[] } {
  const start = from ? ROLLBACK.indexOf(from) + 1 : 0;
  for (let i = start; i < ROLLBACK.length; i++) {
    const p = ROLLBACK[i]!;
    if (s.marks[RB_NEEDS[p]]) return { state: { ...s, phase: p, attempt: 0 }, effects: [{ kind: 'run', phase: p }] };
  }
  const end: TerminalPhase = s.leftovers.length ? 'rollback-failed' : 'rolled-back';
  return { state: { ...s, phase: end }, effects: [{ kind: 'end', phase: end }] };
}

function nextAfterFinish(s: MachineState, phase: ForwardPhase): { state: MachineState; effects: Effect[] } {
  // after finish the only way is forward; resume always runs so no guest stays frozen
  const next = TABLE[phase].next;
  if (next === 'done') {
    const end: TerminalPhase = s.leftovers.length ? 'degraded' : 'done';
    return { state: { ...s, phase: end, attempt: 0 }, effects: [{ kind: 'end', phase: end }] };
  }
  return enter(s, next);
}

export function step(s: MachineState, e: MachineEvent): { state: MachineState; effects: Effect[] } {
  if (isTerminal(s.phase)) return { state: s, effects: [] };
  switch (e.type) {
    case 'start':
      if (s.phase !== 'new') return { state: s, effects: [] };
      return enter(s, 'prepare');

    case 'cancel': {
      if (s.cancelled) return { state: s, effects: [] };
      // cancel is only possible while the VM still belongs to the source
      if (s.marks.finished || isRollback(s.phase)) return { state: s, effects: [] };
      const st = { ...s, cancelled: true, error: s.error ?? { phase: s.phase, message: e.reason ?? 'cancelled by the user', code: 'ESYM_CANCELLED' } };
      if (s.phase === 'new') return nextRollback(st);
      return { state: st, effects: [{ kind: 'abort', phase: s.phase }] };
    }

    case 'ok': {
      if (e.phase !== s.phase) return { state: s, effects: [] }; // stale outcome of an aborted step
      if (isRollback(s.phase)) return nextRollback(s, s.phase);
      if (!isForward(s.phase)) return { state: s, effects: [] };
      if (s.marks.finished) return nextAfterFinish(s, s.phase);
      if (s.cancelled) return nextRollback(s); // the step finished before the abort reached it
      return enter(s, TABLE[s.phase].next);
    }

    case 'fail': {
      if (e.phase !== s.phase) return { state: s, effects: [] };
      if (isRollback(s.phase)) {
        const st = { ...s, leftovers: [...s.leftovers, { phase: s.phase, message: e.message }] };
        return nextRollback(st, s.phase);
      }
      if (!isForward(s.phase)) return { state: s, effects: [] };
      const err = s.error ?? { phase: s.phase, message: e.message, code: e.code };
      if (s.marks.finished) {
        const row = TABLE[s.phase];
        if (s.attempt < row.retry) return { state: { ...s, error: err, attempt: s.attempt + 1 }, effects: [{ kind: 'run', phase: s.phase }] };
        const st = { ...s, error: err, leftovers: [...s.leftovers, { phase: s.phase, message: e.message }] };
        return nextAfterFinish(st, s.phase);
      }
      return nextRollback({ ...s, error: err });
    }
  }
}

/** Replay a journal's phase records to rebuild the state (recovery after a coordinator restart). */
export function replay(events: MachineEvent[]): MachineState {
  let s = initialState();
  for (const e of events) s = step(s, e).state;
  return s;
}
