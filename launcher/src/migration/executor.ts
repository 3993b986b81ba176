// Runs the pure machine (machine.ts): for each `run` effect, journal first, then call the port for
// that phase, then feed the outcome back as an event. Cancellation aborts the running step through
// its AbortSignal. Every phase is reported as an event (begin/end with duration and figures).
import { step, initialState, isTerminal, type MachineState, type MachineEvent, type Phase, type TerminalPhase } from './machine.js';
import type { Journal } from './journal.js';

/** One function per phase; each gets an AbortSignal and may return figures for the event record. */
export type PhasePorts = Record<Exclude<Phase, 'new' | TerminalPhase>, (signal: AbortSignal) => Promise<Record<string, unknown> | void>>;

export interface OpEvent {
  ts: string;
  op: string;
  kind: string;
  phase: Phase;
  event: 'begin' | 'end' | 'fail' | 'cancel' | 'progress' | 'action' | 'result';
  ms?: number;
  data?: Record<string, unknown>;
}

export interface ExecutorOptions {
  op: string;
  kind: string;
  ports: PhasePorts;
  journal?: Journal;
  onEvent?: (e: OpEvent) => void;
  /** injected clock (ms) */
  now?: () => number;
  /** start from this state (recovery) instead of a fresh one */
  from?: MachineState;
}

export interface OpResult {
  op: string;
  outcome: TerminalPhase;
  error?: MachineState['error'];
  leftovers: MachineState['leftovers'];
  phasesMs: Record<string, number>;
  totalMs: number;
}

export class Executor {
  state: MachineState;
  private running?: { phase: Phase; ctl: AbortController };
  private queue: MachineEvent[] = [];
  private busy = false;
  private doneResolve!: (r: OpResult) => void;
  readonly done: Promise<OpResult>;
  readonly phasesMs: Record<string, number> = {};
  private t0: number;
  private now: () => number;

  constructor(readonly o: ExecutorOptions) {
    this.state = o.from ?? initialState();
    this.now = o.now ?? (() => performance.now());
    this.t0 = this.now();
    this.done = new Promise((r) => { this.doneResolve = r; });
  }

  private emit(e: Omit<OpEvent, 'ts' | 'op' | 'kind'>): void {
    this.o.onEvent?.({ ts: new Date().toISOString(), op: this.o.op, kind: this.o.kind, ...e });
  }

  /** Events from outside the machine (progress, deadline actions) go to the same stream. */
  note(phase: Phase, event: OpEvent['event'], data: Record<string, unknown>): void {
    this.emit({ phase, event, data });
  }

  start(): Promise<OpResult> {
    if (this.state.phase !== 'new') return this.resume();
    this.feed({ type: 'start' });
    return this.done;
  }

  /** Continue a recovered operation: re-run the phase it was in (ports must be idempotent). */
  resume(): Promise<OpResult> {
    const p = this.state.phase;
    if (isTerminal(p)) { this.finish(); return this.done; }
    void this.run(p as Exclude<Phase, 'new' | TerminalPhase>);
    return this.done;
  }

  cancel(): boolean {
    const before = this.state.cancelled;
    this.feed({ type: 'cancel' });
    return !before && this.state.cancelled;
  }

  private feed(e: MachineEvent): void {
    this.queue.push(e);
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length) {
        const ev = this.queue.shift()!;
        const { state, effects } = step(this.state, ev);
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

  private async run(phase: Exclude<Phase, 'new' | TerminalPhase>): Promise<void> {
    const ctl = new AbortController();
    this.running = { phase, ctl };
    const t = this.now();
    await this.o.journal?.write({ op: this.o.op, kind: this.o.kind, phase, state: this.state });
    this.emit({ phase, event: 'begin', data: this.state.attempt ? { attempt: this.state.attempt + 1 } : undefined });
    let outcome: MachineEvent;
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
    const r: OpResult = { op: this.o.op, outcome: s.phase as TerminalPhase, error: s.error, leftovers: s.leftovers, phasesMs: this.phasesMs, totalMs: Math.round(this.now() - this.t0) };
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
