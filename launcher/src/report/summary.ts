// The terminal's short account of a timeline (timeline.ts): the job's phases, each operation with its
// outcome and duration, node events, and how long the ranks were frozen in all.
import type { Timeline } from './timeline.js';

const s = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(0)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);

export interface ReportSummary {
  spanMs: number;
  jobPhases: Array<{ phase: string; ms: number; state: string }>;
  operations: Array<{ op: string; kind: string; label: string; outcome?: string; ms?: number }>;
  nodeEvents: Array<{ host: string; at: string; label: string }>;
  frozenMs: number;
  frozenWindows: number;
  skippedLines: number;
}

export function summarize(tl: Timeline): ReportSummary {
  return {
    spanMs: tl.t1 - tl.t0,
    jobPhases: tl.bars.filter((b) => b.row === 'job').map((b) => ({ phase: b.phase, ms: b.ms ?? b.end - b.start, state: b.state })),
    operations: tl.ops,
    nodeEvents: tl.marks.filter((m) => m.kind === 'node').map((m) => ({ host: m.row.slice(5), at: new Date(m.at).toISOString(), label: m.label })),
    frozenMs: tl.frozen.reduce((a, w) => a + (w.end - w.start), 0),
    frozenWindows: tl.frozen.length,
    skippedLines: tl.skipped,
  };
}

export function summaryText(r: ReportSummary): string {
  const L: string[] = [];
  L.push(`span ${s(r.spanMs)}`);
  if (r.jobPhases.length) L.push(`job: ${r.jobPhases.map((p) => `${p.phase} ${s(p.ms)}${p.state === 'failed' ? ' (failed)' : p.state === 'open' ? ' (no end)' : ''}`).join(', ')}`);
  for (const o of r.operations) L.push(`${o.label}: ${o.outcome ?? 'no result recorded'}${o.ms !== undefined ? ` in ${s(o.ms)}` : ''}`);
  for (const n of r.nodeEvents) L.push(`node event ${n.at}: ${n.label}`);
  L.push(`ranks frozen ${s(r.frozenMs)} in ${r.frozenWindows} window${r.frozenWindows === 1 ? '' : 's'}`);
  if (r.skippedLines) L.push(`${r.skippedLines} line${r.skippedLines === 1 ? '' : 's'} of the file were not events (skipped)`);
  return L.join('\n') + '\n';
}
