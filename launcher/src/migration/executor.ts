// Runs a pure protocol machine: for each `run` effect, journal first, then call the port for that
// phase, then feed the outcome back as an event. Cancellation aborts the running step through its
// AbortSignal. Every phase is reported as an event (begin/end with duration and figures).
// The machine is the migration one (machine.ts) unless another table is passed (`machine` option:
// checkpoint/machine.ts): every machine has the same event/effect shapes and a state with
// phase / cancelled / attempt / error / leftovers.
import { step, initialState, isTerminal, type MachineState, type Phase, type TerminalPhase } from './machine.js';

/** What the executor needs of a machine's state (the rest, e.g. marks, is the machine's own). */
export interface ProtocolState<P extends string = string> {
  phase: P;
  cancelled: boolean;
  attempt: number;
  error?: { phase: P; message: string; code?: string };
  leftovers: Array<{ phase: P; message: string }>;
}

export type ProtocolEvent<P extends string = string> =
  | { type: 'start' }
  | { type: 'ok'; phase: P }
  | { type: 'fail'; phase: P; message: string; code?: string }
  | { type: 'cancel'; reason?: string };

export type ProtocolEffect<R extends string = string, T extends string = string> =
  | { kind: 'run'; phase: R }
  | { kind: 'abort'; phase: string }
  | { kind: 'end'; phase: T };

/** A pure transition table: step(state, event) -> { state, effects }. R = phases with a port, T = terminal phases. */
export interface ProtocolMachine<S extends ProtocolState<string>, R extends string, T extends string> {
  initialState(): S;
  step(s: S, e: ProtocolEvent<S['phase']>): { state: S; effects: Array<ProtocolEffect<R, T>> };
  isTerminal(p: S['phase']): boolean;
}

type MigrationRun = Exclude<Phase, 'new' | TerminalPhase>;

/** The migration table (machine.ts), the default machine of an Executor. */
export const MIGRATION_MACHINE: ProtocolMachine<MachineState, MigrationRun, TerminalPhase> = { initialState, step, isTerminal };

/** One function per phase; each gets an AbortSignal and may return figures for the event record. */
export type Ports<R extends string> = Record<R, (signal: AbortSignal) => Promise<Record<string, unknown> | void>>;
export type PhasePorts = Ports<MigrationRun>;

/** The journal the executor writes to (migration/journal.ts FileJournal, or a test double). */
export interface OpJournal {
  write(r: { op: string; kind: string; phase: string; state: unknown; params?: Record<string, unknown>; result?: unknown }): Promise<void>;
}

export interface OpEvent<P extends string = Phase> {
  ts: string;
  op: string;
  kind: string;
  phase: P;
  event: 'begin' | 'end' | 'fail' | 'cancel' | 'progress' | 'action' | 'result';
  ms?: number;
  data?: Record<string, unknown>;
}

export interface ExecutorOptions<S extends ProtocolState<string> = MachineState, R extends string = MigrationRun, T extends string = TerminalPhase> {
  op: string;
  kind: string;
  ports: Ports<R>;
  /** the transition table (default: migration, machine.ts) */
  machine?: ProtocolMachine<S, R, T>;
  journal?: OpJournal;
  onEvent?: (e: OpEvent<S['phase']>) => void;
  /** injected clock (ms) */
  now?: () => number;
  /** start from this state (recovery) instead of a fresh one */
  from?: S;
}

export interface OpResult<S extends ProtocolState<string> = MachineState, T extends string = TerminalPhase> {
  op: string;
  outcome: T;
  error?: S['error'];
  leftovers: S['leftovers'];
  phasesMs: Record<string, number>;
  totalMs: number;
}

export class Executor<S extends ProtocolState<string> = MachineState, R extends string = MigrationRun, T extends string = TerminalPhase> {
  state: S;
  private machine: ProtocolMachine<S, R, T>;
  private running?: { phase: string; ctl: AbortController };
  private queue: Array<ProtocolEvent<S['phase']>> = [];
  private busy = false;
  private doneResolve!: (r: OpResult<S, T>) => void;
  readonly done: Promise<OpResult<S, T>>;
  readonly phasesMs: Record<string, number> = {};
  private t0: number;
  private now: () => number;

  constructor(readonly o: ExecutorOptions<S, R, T>) {
    this.machine = o.machine ?? (MIGRATION_MACHINE as unknown as ProtocolMachine<S, R, T>);
    this.state = o.from ?? this.machine.initialState();
    this.now = o.now ?? (() => performance.now());
    this.t0 = this.now();
    this.done = new Promise((r) => { this.doneResolve = r; });
  }

  private emit(e: Omit<OpEvent<S['phase']>, 'ts' | 'op' | 'kind'>): void {
    this.o.onEvent?.({ ts: new Date().toISOString(), op: this.o.op, kind: this.o.kind, ...e });
  }

  /** Events from outside the machine (progress, deadline actions) go to the same stream. */
  note(phase: S['phase'], event: OpEvent['event'], data: Record<string, unknown>): void {
    this.emit({ phase, event, data });
  }

  start(): Promise<OpResult<S, T>> {
    if (this.state.phase !== 'new') return this.resume();
    this.feed({ type: 'start' });
    return this.done;
  }

  /** Continue a recovered operation: re-run the phase it was in (ports must be idempotent). */
  resume(): Promise<OpResult<S, T>> {
    const p = this.state.phase;
    if (this.machine.isTerminal(p)) { this.finish(); return this.done; }
    void this.run(p as unknown as R);
    return this.done;
  }

  /** Recovery of an operation whose coordinator died: the phase in flight is taken as failed. */
  failCurrent(message: string): Promise<OpResult<S, T>> {
    if (this.machine.isTerminal(this.state.phase)) { this.finish(); return this.done; }
    this.feed({ type: 'fail', phase: this.state.phase, message, code: 'ESYM_COORDINATOR_RESTART' });
    return this.done;
  }

  cancel(reason?: string): boolean {
    const before = this.state.cancelled;
    this.feed({ type: 'cancel', ...(reason ? { reason } : {}) });
    return !before && this.state.cancelled;
  }

  private feed(e: ProtocolEvent<S['phase']>): void {
    this.queue.push(e);
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length) {
        const ev = this.queue.shift()!;
        const { state, effects } = this.machine.step(this.state, ev);
        this.state = state;
        if (ev.type === 'cancel' && state.cancelled) this.emit({ phase: state.phase, event: 'cancel' });
        for (const eff of effects) {
          if (eff.kind === 'abort') {
            if (this.running?.phase === eff.phase) this.running.ctl.abort(new CancelledError());
          } else if (eff.kind === 'run') {
            void this.run(eff.phase);
          } else {
            this.finish();
          }
        }
      }
    } finally {
      this.busy = false;
    }
  }

  private async run(runPhase: R): Promise<void> {
    const phase = runPhase as unknown as S['phase'] & R; // a run phase is a phase of the state
    const ctl = new AbortController();
    this.running = { phase, ctl };
    const t = this.now();
    await this.o.journal?.write({ op: this.o.op, kind: this.o.kind, phase, state: this.state });
    this.emit({ phase, event: 'begin', data: this.state.attempt ? { attempt: this.state.attempt + 1 } : undefined });
    let outcome: ProtocolEvent<S['phase']>;
    try {
      const data = await this.o.ports[phase](ctl.signal);
      const ms = Math.round(this.now() - t);
      this.phasesMs[phase] = (this.phasesMs[phase] ?? 0) + ms;
      this.emit({ phase, event: 'end', ms, data: data ?? undefined });
      outcome = { type: 'ok', phase };
    } catch (err) {
      const ms = Math.round(this.now() - t);
      this.phasesMs[phase] = (this.phasesMs[phase] ?? 0) + ms;
      const e = err as Error & { code?: string };
      this.emit({ phase, event: 'fail', ms, data: { error: e.message, code: e.code } });
      outcome = { type: 'fail', phase, message: e.message, code: e.code };
    }
    if (this.running?.ctl === ctl) this.running = undefined;
    this.feed(outcome);
  }

  private finish(): void {
    const s = this.state;
    const r: OpResult<S, T> = { op: this.o.op, outcome: s.phase as unknown as T, error: s.error, leftovers: s.leftovers, phasesMs: this.phasesMs, totalMs: Math.round(this.now() - this.t0) };
    void (async () => {
      await this.o.journal?.write({ op: this.o.op, kind: this.o.kind, phase: s.phase, state: s, result: r });
      this.emit({ phase: s.phase, event: 'result', ms: r.totalMs, data: { outcome: r.outcome, error: r.error, leftovers: r.leftovers, phasesMs: r.phasesMs } });
      this.doneResolve(r);
    })();
  }
}

export class CancelledError extends Error {
  code = 'ESYM_CANCELLED';
  constructor() { super('cancelled by the user'); }
}
