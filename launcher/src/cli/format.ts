// Shared by the CLI commands that report protocol operations (migrate, checkpoint).
import type { OpEvent } from '../protocol/executor.js';
import { fmtBytes } from '../util/format.js';

export { fmtBytes };

/** One row per phase that ended or failed, then the total; `note` adds the operation's own figures. */
export function renderPhaseTable(events: Array<OpEvent<string>>, total: { totalMs: number; outcome: string }, note: (e: OpEvent<string>, d: Record<string, unknown>) => string = () => ''): string {
  const rows: string[] = [`${'PHASE'.padEnd(16)} ${'MS'.padStart(8)}  NOTE`];
  for (const e of events) {
    if (e.event !== 'end' && e.event !== 'fail') continue;
    const d = e.data ?? {};
    let text = e.event === 'fail' ? `FAILED: ${d.error}` : note(e, d);
    if (d.skipped) text = `skipped: ${d.skipped}`;
    rows.push(`${e.phase.padEnd(16)} ${String(e.ms ?? '').padStart(8)}  ${text}`);
  }
  rows.push(`${'total'.padEnd(16)} ${String(total.totalMs).padStart(8)}  ${total.outcome}`);
  return rows.join('\n');
}
