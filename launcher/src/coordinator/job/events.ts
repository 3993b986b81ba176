// Where a job's protocol events go: the --events file (JSON lines), control-socket subscribers
// (symrun migrate/checkpoint --wait, status watchers), and ONE line per phase on the terminal.
import fs from 'node:fs';
import type { OpEvent } from '../../protocol/events.js';

export interface EventSubscriber { notify(name: string, data: unknown): void }

export class EventSink {
  private fd?: number;
  private subscribers = new Set<EventSubscriber>();

  constructor(private say: (msg: string) => void) {}

  /** Append every event to FILE from now on (mode 0600). Returns the closer. */
  toFile(file: string): () => void {
    this.fd = fs.openSync(file, 'a', 0o600);
    const fd = this.fd;
    return () => { this.fd = undefined; fs.closeSync(fd); };
  }

  subscribe(s: EventSubscriber): void { this.subscribers.add(s); }
  unsubscribe(s: EventSubscriber): void { this.subscribers.delete(s); }

  emit(e: OpEvent): void {
    if (this.fd !== undefined) { try { fs.writeSync(this.fd, JSON.stringify(e) + '\n'); } catch { /* disk full: keep going */ } }
    for (const s of this.subscribers) s.notify('op.event', e);
    const line = terminalLine(e);
    if (line) this.say(line);
  }
}

/**
 * The terminal's one line for an event, or nothing: phase ends and failures, actions, cancels and the
 * result of an operation. The drain policy says its own lines (policy.ts); host-lost actions are said
 * where the loss is handled.
 */
export function terminalLine(e: OpEvent): string | undefined {
  // the job's own phases are said where they happen (and in the --json summary)
  if (e.kind === 'policy' || e.kind === 'job' || (e.kind === 'restart' && e.event === 'action')) return undefined;
  if (!['end', 'fail', 'result', 'action', 'cancel'].includes(e.event)) return undefined;
  const d = e.data ?? {};
  const what = e.event === 'result'
    ? `${d.outcome}${d.error ? ` (${(d.error as { message: string }).message})` : ''}`
    : e.event === 'action' ? `action ${d.action ?? d.fault}${d.reason ? `: ${d.reason}` : ''}`
      : e.event === 'fail' ? `failed: ${d.error}` : e.event;
  return `${e.kind} ${d.vm} ${d.from}->${d.to}: ${e.event === 'result' ? 'finished:' : e.phase} ${what}${e.ms !== undefined ? ` (${e.ms} ms)` : ''}`;
}
