// Protocol events: one record per phase boundary, progress sample, action and result of every
// operation (migration, checkpoint, restart) and of the policies around them. They go to the --events
// file (JSON lines), to control-socket subscribers and, one line per phase, to the terminal.
// Everything that emits one builds it here, so every record has the same shape.

export type OpEventKind = 'begin' | 'end' | 'fail' | 'cancel' | 'progress' | 'action' | 'result';

export interface OpEvent<P extends string = string> {
  ts: string;
  /** operation id (m…, c…, r…), '-' for events outside an operation */
  op: string;
  /** migrate | checkpoint | restart | policy */
  kind: string;
  phase: P;
  event: OpEventKind;
  ms?: number;
  data?: Record<string, unknown>;
}

/** One event record, stamped now. */
export function opEvent<P extends string>(kind: string, op: string, phase: P, event: OpEventKind, data?: Record<string, unknown>, ms?: number): OpEvent<P> {
  return { ts: new Date().toISOString(), op, kind, phase, event, ...(ms !== undefined ? { ms } : {}), ...(data ? { data } : {}) };
}
