// One protocol engine for migration, checkpoint and restart: a protocol is DATA (its forward table, its
// rollback table, its recovery table); this file is the one pure step function that runs any of them:
// step(state, event) -> { state, effects }. No I/O, no timers: the executor (executor.ts) runs each
// `run` effect through a port, writes the journal before it, and feeds the outcome back as an event.
//
// The rules, for every protocol alike:
// - forward: phases run in table order. A row's `mark` is set when the phase STARTS (a side effect may
//   have happened even if it then fails); its `done` mark when it SUCCEEDS (the forward path itself
//   has undone something, e.g. checkpoint `cont`, so the rollback must not do it again).
// - a failure is retried `retry` more times (not after a cancel). Then:
//   - once the protocol's `forwardOnlyAfter` mark is set (migration: `finished`, the VM lives on the
//     destination), the failure is recorded as a leftover and the next phase runs anyway (guests are
//     always resumed); the end is `degraded` if anything is left over, else `done`;
//   - before it, the rollback runs: every rollback row whose `needs` mark is set and whose `unless`
//     mark is not, in table order; a failing rollback step is a leftover and the next one runs;
//     the end is `rolled-back` (nothing left) or `rollback-failed` (leftovers say what is left where);
//     a protocol without rollback rows (restart) ends `failed`.
// - cancel: aborts the phase in flight and takes the rollback when its outcome comes back; refused
//   once `noCancelAfter` is set, and during a rollback. The first error wins.
// - recovery (a successor coordinator finds the operation in the journal): the protocol's `recovery`
//   row for the phase in flight says `rollback` (take it as failed), `rerun` (ports are idempotent:
//   run it again) or `from-start` (begin the whole protocol again). The compiler checks that every
//   phase has a row.
// An outcome for a phase other than the current one (a step aborted and already replaced) is ignored.

export type Terminal = 'done' | 'rolled-back' | 'rollback-failed' | 'degraded' | 'failed';
export const TERMINALS: readonly Terminal[] = ['done', 'rolled-back', 'rollback-failed', 'degraded', 'failed'];

/** What a successor coordinator does with an operation found in a phase (see the header). */
export type RecoveryAction = 'rollback' | 'rerun' | 'from-start';

export interface ForwardRow<F extends string, M extends string> {
  next: F | 'done';
  /** set when the phase starts */
  mark?: M;
  /** set when the phase succeeds */
  done?: M;
  /** extra attempts after a failure */
  retry: number;
}

export interface RollbackRow<M extends string> {
  /** applies when this was started ... */
  needs: M;
  /** ... and this has not succeeded */
  unless?: M;
}

export interface Protocol<F extends string, RB extends string, M extends string> {
  /** journal and event kind: migrate | checkpoint | restart */
  kind: string;
  forward: readonly F[];
  table: Record<F, ForwardRow<F, M>>;
  rollback: readonly RB[];
  rb: Record<RB, RollbackRow<M>>;
  marks: readonly M[];
  noCancelAfter?: M;
  forwardOnlyAfter?: M;
  recovery: Record<F | RB, RecoveryAction>;
}

export type PhaseOf<F extends string, RB extends string> = 'new' | F | RB | Terminal;

export interface ProtocolState<F extends string = string, RB extends string = string, M extends string = string> {
  phase: PhaseOf<F, RB>;
  marks: Record<M, boolean>;
  /** first error wins */
  error?: { phase: PhaseOf<F, RB>; message: string; code?: string };
  cancelled: boolean;
  /** attempts of the current phase so far (retries) */
  attempt: number;
  /** what a failed rollback or a degraded end leaves behind, in words an operator can act on */
  leftovers: Array<{ phase: PhaseOf<F, RB>; message: string }>;
}

export type ProtocolEvent<P extends string = string> =
  | { type: 'start' }
  | { type: 'ok'; phase: P }
  | { type: 'fail'; phase: P; message: string; code?: string }
  | { type: 'cancel'; reason?: string };

export type ProtocolEffect<R extends string = string> =
  | { kind: 'run'; phase: R }
  /** the running step of this phase must be aborted (cancel) */
  | { kind: 'abort'; phase: R }
  | { kind: 'end'; phase: Terminal };

/** A protocol with its step function: what the executor runs. */
export interface Machine<F extends string, RB extends string, M extends string> {
  readonly protocol: Protocol<F, RB, M>;
  initialState(): ProtocolState<F, RB, M>;
  step(s: ProtocolState<F, RB, M>, e: ProtocolEvent<PhaseOf<F, RB>>): { state: ProtocolState<F, RB, M>; effects: Array<ProtocolEffect<F | RB>> };
  isTerminal(p: string): p is Terminal;
  isForward(p: string): p is F;
  isRollback(p: string): p is RB;
  /** rebuild a state from journaled events */
  replay(events: Array<ProtocolEvent<PhaseOf<F, RB>>>): ProtocolState<F, RB, M>;
  /** the successor's action for an operation found in `phase` (terminal and new: nothing to do) */
  recoveryFor(phase: string): RecoveryAction | undefined;
}

export function isTerminal(p: string): p is Terminal {
  return (TERMINALS as readonly string[]).includes(p);
}

/** The step function of a protocol table (see the header for the rules). */
export function machine<F extends string, RB extends string, M extends string>(proto: Protocol<F, RB, M>): Machine<F, RB, M> {
  type S = ProtocolState<F, RB, M>;
  type Out = { state: S; effects: Array<ProtocolEffect<F | RB>> };
  const isForward = (p: string): p is F => (proto.forward as readonly string[]).includes(p);
  const isRollback = (p: string): p is RB => (proto.rollback as readonly string[]).includes(p);
  const marked = (s: S, m: M | undefined): boolean => m !== undefined && s.marks[m];

  const initialState = (): S => ({
    phase: 'new',
    marks: Object.fromEntries(proto.marks.map((m) => [m, false])) as Record<M, boolean>,
    cancelled: false,
    attempt: 0,
    leftovers: [],
  });

  const end = (s: S, phase: Terminal): Out => ({ state: { ...s, phase, attempt: 0 }, effects: [{ kind: 'end', phase }] });

  const enter = (s: S, phase: F | 'done'): Out => {
    if (phase === 'done') return end(s, s.leftovers.length ? 'degraded' : 'done');
    const row = proto.table[phase];
    const marks = row.mark ? { ...s.marks, [row.mark]: true } : s.marks;
    return { state: { ...s, phase, marks, attempt: 0 }, effects: [{ kind: 'run', phase }] };
  };

  const nextRollback = (s: S, from?: RB): Out => {
    if (proto.rollback.length === 0) return end(s, 'failed');
    const start = from ? proto.rollback.indexOf(from) + 1 : 0;
    for (let i = start; i < proto.rollback.length; i++) {
      const p = proto.rollback[i]!;
      const r = proto.rb[p];
      if (s.marks[r.needs] && !marked(s, r.unless)) return { state: { ...s, phase: p, attempt: 0 }, effects: [{ kind: 'run', phase: p }] };
    }
    return end(s, s.leftovers.length ? 'rollback-failed' : 'rolled-back');
  };

  const step = (s: S, e: ProtocolEvent<PhaseOf<F, RB>>): Out => {
    if (isTerminal(s.phase)) return { state: s, effects: [] };
    switch (e.type) {
      case 'start':
        return s.phase === 'new' ? enter(s, proto.forward[0]!) : { state: s, effects: [] };

      case 'cancel': {
        if (s.cancelled || isRollback(s.phase) || marked(s, proto.noCancelAfter)) return { state: s, effects: [] };
        const st: S = { ...s, cancelled: true, error: s.error ?? { phase: s.phase, message: e.reason ?? 'cancelled by the user', code: 'ESYM_CANCELLED' } };
        if (s.phase === 'new') return nextRollback(st);
        return { state: st, effects: [{ kind: 'abort', phase: s.phase as F }] }; // a forward phase: not new, not a rollback, not terminal
      }

      case 'ok': {
        if (e.phase !== s.phase) return { state: s, effects: [] }; // stale outcome of an aborted step
        if (isRollback(s.phase)) return nextRollback(s, s.phase);
        if (!isForward(s.phase)) return { state: s, effects: [] };
        const row = proto.table[s.phase];
        const st: S = row.done ? { ...s, marks: { ...s.marks, [row.done]: true } } : s;
        if (!marked(st, proto.forwardOnlyAfter) && st.cancelled) return nextRollback(st); // finished before the abort reached it
        return enter(st, row.next);
      }

      case 'fail': {
        if (e.phase !== s.phase) return { state: s, effects: [] };
        if (isRollback(s.phase)) return nextRollback({ ...s, leftovers: [...s.leftovers, { phase: s.phase, message: e.message }] }, s.phase);
        if (!isForward(s.phase)) return { state: s, effects: [] };
        const row = proto.table[s.phase];
        if (!s.cancelled && s.attempt < row.retry) return { state: { ...s, attempt: s.attempt + 1 }, effects: [{ kind: 'run', phase: s.phase }] };
        const err = s.error ?? { phase: s.phase, message: e.message, code: e.code };
        if (marked(s, proto.forwardOnlyAfter)) {
          return enter({ ...s, error: err, leftovers: [...s.leftovers, { phase: s.phase, message: e.message }] }, row.next);
        }
        return nextRollback({ ...s, error: err });
      }
    }
  };

  return {
    protocol: proto,
    initialState,
    step,
    isTerminal: (p: string): p is Terminal => isTerminal(p),
    isForward,
    isRollback,
    replay: (events) => events.reduce((s, e) => step(s, e).state, initialState()),
    recoveryFor: (phase) => (isForward(phase) || isRollback(phase) ? proto.recovery[phase] : undefined),
  };
}
