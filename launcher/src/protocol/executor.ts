// Runs a protocol machine (machine.ts): for each `run` effect, journal first, then call the port for
// that phase, then feed the outcome back as an event. Cancellation aborts the running step through its
// AbortSignal. Every phase is reported as an event (begin/end with duration and figures), the end as a
// `result` event. One executor for every protocol (migration, checkpoint, restart).
import { type Machine, type ProtocolEvent, type ProtocolState, type PhaseOf, type Terminal } from './machine.js';
import { opEvent, type OpEvent } from './events.js';

export type { OpEvent } from './events.js';

/** One function per phase; each gets an AbortSignal and may return figures for the event record. */
export type Ports<R extends string> = Record<R, (signal: AbortSignal) => Promise<Record<string, unknown> | void>>;

/** The journal the executor writes to (journal.ts FileJournal, or a test double). */
export interface OpJournal {
  write(r: { op: string; kind: string; phase: string; state: unknown; params?: Record<string, unknown>; result?: unknown }): Promise<void>;
}

export interface ExecutorOptions<F extends string, RB extends string, M extends string> {
  op: string;
  machine: Machine<F, RB, M>;
  ports: Ports<F | RB>;
  journal?: OpJournal;
  onEvent?: (e: OpEvent<PhaseOf<F, RB>>) => void;
  /** injected clock (ms) */
  now?: () => number;
  /** start from this state (recovery) instead of a fresh one */
  from?: ProtocolState<F, RB, M>;
}

export interface OpResult<P extends string = string> {
  op: string;
  outcome: Terminal;
  error?: { phase: P; message: string; code?: string };
  leftovers: Array<{ phase: P; message: string }>;
  phasesMs: Record<string, number>;
  totalMs: number;
}

export class Executor<F extends string, RB extends string, M extends string> {
  state: ProtocolState<F, RB, M>;
  private running?: { phase: string; ctl: AbortController };
  private queue: Array<ProtocolEvent<PhaseOf<F, RB>>> = [];
  private busy = false;
  private doneResolve!: (r: OpResult<PhaseOf<F, RB>>) => void;
  readonly done: Promise<OpResult<PhaseOf<F, RB>>>;
  readonly phasesMs: Record<string, number> = {};
  private t0: number;
  private now: () => number;
  readonly kind: string;

  constructor(readonly o: ExecutorOptions<F, RB, M>) {
    this.state = o.from ?? o.machine.initialState();
    this.kind = o.machine.protocol.kind;
    this.now = o.now ?? (() => performance.now());
    this.t0 = this.now();
    this.done = new Promise((r) => { this.doneResolve = r; });
  }

  private emit(phase: PhaseOf<F, RB>, event: OpEvent['event'], data?: Record<string, unknown>, ms?: number): void {
    this.o.onEvent?.(opEvent(this.kind, this.o.op, phase, event, data, ms));
  }

  /** Events from outside the machine (progress, deadline actions) go to the same stream. */
  note(phase: PhaseOf<F, RB>, event: OpEvent['event'], data: Record<string, unknown>): void {
    this.emit(phase, event, data);
  }

  start(): Promise<OpResult<PhaseOf<F, RB>>> {
    if (this.state.phase !== 'new') return this.resume();
    this.feed({ type: 'start' });
    return this.done;
  }

  /** Continue a recovered operation: re-run the phase it was in (ports must be idempotent). */
  resume(): Promise<OpResult<PhaseOf<F, RB>>> {
    const p = this.state.phase;
    if (this.o.machine.isTerminal(p)) { this.finish(); return this.done; }
    void this.run(p as F | RB);
    return this.done;
  }

  /** Recovery of an operation whose coordinator died: the phase in flight is taken as failed. */
  failCurrent(message: string): Promise<OpResult<PhaseOf<F, RB>>> {
    if (this.o.machine.isTerminal(this.state.phase)) { this.finish(); return this.done; }
    this.feed({ type: 'fail', phase: this.state.phase, message, code: 'ESYM_COORDINATOR_RESTART' });
    return this.done;
  }

  /**
   * A successor coordinator takes this operation over: what the protocol's recovery table says for the
   * phase in flight (rollback: taken as failed; rerun: run again; from-start: the whole protocol again).
   */
  recover(why: string): Promise<OpResult<PhaseOf<F, RB>>> {
    const action = this.o.machine.recoveryFor(this.state.phase);
    if (action === 'rerun') return this.resume();
    if (action === 'from-start') {
      this.state = this.o.machine.initialState();
      return this.start();
    }
    return this.failCurrent(why); // rollback (and terminal: just report)
  }

  cancel(reason?: string): boolean {
    const before = this.state.cancelled;
    this.feed({ type: 'cancel', ...(reason ? { reason } : {}) });
    return !before && this.state.cancelled;
  }

  private feed(e: ProtocolEvent<PhaseOf<F, RB>>): void {
    this.queue.push(e);
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length) {
        const ev = this.queue.shift()!;
        const { state, effects } = this.o.machine.step(this.state, ev);
        this.state = state;
        if (ev.type === 'cancel' && state.cancelled) this.emit(state.phase, 'cancel');
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

  private async run(phase: F | RB): Promise<void> {
    const ctl = new AbortController();
    this.running = { phase, ctl };
    const t = this.now();
    await this.o.journal?.write({ op: this.o.op, kind: this.kind, phase, state: this.state });
    this.emit(phase, 'begin', this.state.attempt ? { attempt: this.state.attempt + 1 } : undefined);
    let outcome: ProtocolEvent<PhaseOf<F, RB>>;
    try {
      const data = await this.o.ports[phase](ctl.signal);
      const ms = Math.round(this.now() - t);
      this.phasesMs[phase] = (this.phasesMs[phase] ?? 0) + ms;
      this.emit(phase, 'end', data ?? undefined, ms);
      outcome = { type: 'ok', phase };
    } catch (err) {
      const ms = Math.round(this.now() - t);
      this.phasesMs[phase] = (this.phasesMs[phase] ?? 0) + ms;
      const e = err as Error & { code?: string };
      this.emit(phase, 'fail', { error: e.message, code: e.code }, ms);
      outcome = { type: 'fail', phase, message: e.message, code: e.code };
    }
    if (this.running?.ctl === ctl) this.running = undefined;
    this.feed(outcome);
  }

  private finish(): void {
    const s = this.state;
    const r: OpResult<PhaseOf<F, RB>> = { op: this.o.op, outcome: s.phase as Terminal, error: s.error, leftovers: s.leftovers, phasesMs: this.phasesMs, totalMs: Math.round(this.now() - this.t0) };
    void (async () => {
      await this.o.journal?.write({ op: this.o.op, kind: this.kind, phase: s.phase, state: s, result: r });
      this.emit(s.phase, 'result', { outcome: r.outcome, error: r.error, leftovers: r.leftovers, phasesMs: r.phasesMs }, r.totalMs);
      this.doneResolve(r);
    })();
  }
}

export class CancelledError extends Error {
  code = 'ESYM_CANCELLED';
  constructor() { super('cancelled by the user'); }
}
