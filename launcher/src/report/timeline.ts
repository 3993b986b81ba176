// A job's events (the --events file, JSON lines of protocol/events.ts) as a timeline model: what ran
// where and when. Pure: text in, model out; svg.ts draws it and summary.ts words it.
//
// Rows, top to bottom:
//   job        the job's own phases (image, hosts, agents, boot, network, stage, run, stage-out, ...)
//   host rows  which VM ran on which host over time (placement at boot/restore, moved by each migration
//              that ended done or degraded), and the node events Slurm reported for that host (drain,
//              down, reboot: the drain policy's `node` actions) as marks
//   op rows    one per operation (migrate, checkpoint, restart), its phases as bars, its result as a mark
// and across all rows the windows in which the ranks were frozen (a freeze-adapter quiesce's begin to
// its resume's end; a failover quiesce freezes nothing and draws no window).
//
// The events file is the user's own, but it may be cut short (a job still running, a full disk): a
// line that is not an event is counted and skipped, a phase without its end runs to the last event.

export interface ReportEvent {
  ts: string;
  op: string;
  kind: string;
  phase: string;
  event: string;
  ms?: number;
  data?: Record<string, unknown>;
}

export interface Row { id: string; label: string; group: 'job' | 'host' | 'op' }
export interface Bar { row: string; kind: string; op: string; phase: string; start: number; end: number; ms?: number; state: 'done' | 'failed' | 'open'; label: string }
export interface Mark { row: string; at: number; kind: 'node' | 'result' | 'action'; label: string }
export interface Window { start: number; end: number; ops: string[] }

export interface Timeline {
  /** ms since the epoch of the first and last event */
  t0: number;
  t1: number;
  rows: Row[];
  bars: Bar[];
  marks: Mark[];
  frozen: Window[];
  ops: Array<{ op: string; kind: string; label: string; outcome?: string; ms?: number }>;
  skipped: number;
}

const KINDS = new Set(['job', 'migrate', 'checkpoint', 'restart', 'policy']);

/** Events from the file's text; lines that are not events are counted, not fatal. */
export function parseEvents(text: string): { events: ReportEvent[]; skipped: number } {
  const events: ReportEvent[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let e: unknown;
    try { e = JSON.parse(line); } catch { skipped++; continue; }
    const o = e as Record<string, unknown>;
    if (!o || typeof o !== 'object' || typeof o.ts !== 'string' || Number.isNaN(Date.parse(o.ts)) || typeof o.op !== 'string'
      || typeof o.kind !== 'string' || !KINDS.has(o.kind) || typeof o.phase !== 'string' || typeof o.event !== 'string'
      || (o.ms !== undefined && typeof o.ms !== 'number') || (o.data !== undefined && (typeof o.data !== 'object' || o.data === null || Array.isArray(o.data)))) {
      skipped++;
      continue;
    }
    events.push(o as unknown as ReportEvent);
  }
  events.sort((a, b) => Date.parse(a.ts) - Date.parse(b.ts));
  return { events, skipped };
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function opLabel(e: ReportEvent): string {
  const d = e.data ?? {};
  if (e.kind === 'migrate') return `migrate ${str(d.vm) ?? '?'} ${str(d.from) ?? '?'}→${str(d.to) ?? '?'}`;
  if (e.kind === 'checkpoint') return `checkpoint ${str(d.vm) ?? ''}`.trim();
  if (e.kind === 'restart') return `restart from ${str(d.checkpoint) ?? str(d.from) ?? '?'}`;
  return `${e.kind} ${e.op}`;
}

export function buildTimeline(events: readonly ReportEvent[], skipped = 0): Timeline {
  const t = (e: ReportEvent) => Date.parse(e.ts);
  const t0 = events.length ? t(events[0]!) : 0;
  const t1 = events.length ? t(events[events.length - 1]!) : 0;
  const rows: Row[] = [];
  const rowIds = new Set<string>();
  const addRow = (id: string, label: string, group: Row['group']) => { if (!rowIds.has(id)) { rowIds.add(id); rows.push({ id, label, group }); } };
  const bars: Bar[] = [];
  const marks: Mark[] = [];
  const open = new Map<string, Bar>();
  const ops = new Map<string, Timeline['ops'][number]>();
  // residency: vm -> its open bar on a host row
  const resident = new Map<string, Bar>();
  const place = (vm: string, host: string, at: number) => {
    const cur = resident.get(vm);
    if (cur && cur.row === `host:${host}`) return; // still there
    if (cur) { cur.end = at; cur.state = 'done'; }
    addRow(`host:${host}`, host, 'host');
    const b: Bar = { row: `host:${host}`, kind: 'vm', op: vm, phase: vm, start: at, end: t1, state: 'open', label: vm };
    bars.push(b);
    resident.set(vm, b);
  };
  const quiesced = new Map<string, number>();
  const frozenRaw: Window[] = [];

  addRow('job', 'job', 'job');
  for (const e of events) {
    const at = t(e);
    const d = e.data ?? {};
    if (e.kind === 'policy') {
      if (d.action === 'node' && str(d.node)) {
        addRow(`host:${d.node}`, String(d.node), 'host');
        marks.push({ row: `host:${d.node}`, at, kind: 'node', label: `${d.node} ${str(d.state) ?? str(d.condition) ?? ''}${str(d.reason) ? ` (${d.reason})` : ''}` });
      } else if (d.action === 'lost' && str(d.node)) {
        addRow(`host:${d.node}`, String(d.node), 'host');
        marks.push({ row: `host:${d.node}`, at, kind: 'node', label: `${d.node} lost` });
      }
      continue;
    }
    if (e.kind === 'restart' && e.op === '-') {
      if (d.action === 'host-lost' && str(d.host)) {
        addRow(`host:${d.host}`, String(d.host), 'host');
        marks.push({ row: `host:${d.host}`, at, kind: 'node', label: `${d.host} lost${str(d.why) ? `: ${d.why}` : ''}` });
      }
      continue;
    }
    if (e.kind === 'job') {
      if (e.event === 'action' && d.action === 'placed' && d.vms && typeof d.vms === 'object') {
        for (const [vm, host] of Object.entries(d.vms as Record<string, unknown>)) if (typeof host === 'string') place(vm, host, at);
        for (const h of Array.isArray(d.spares) ? d.spares : []) if (typeof h === 'string') addRow(`host:${h}`, h, 'host');
        continue;
      }
    }
    const row = e.kind === 'job' ? 'job' : `op:${e.op}`;
    if (e.kind !== 'job' && !ops.has(e.op)) {
      ops.set(e.op, { op: e.op, kind: e.kind, label: opLabel(e) });
      addRow(row, opLabel(e), 'op');
    }
    const key = `${e.op}:${e.phase}`;
    if (e.event === 'begin') {
      const b: Bar = { row, kind: e.kind, op: e.op, phase: e.phase, start: at, end: t1, state: 'open', label: e.phase };
      bars.push(b);
      open.set(key, b);
      if (e.phase === 'quiesce') quiesced.set(e.op, at);
    } else if (e.event === 'end' || e.event === 'fail') {
      const b = open.get(key);
      if (b) {
        b.end = at;
        b.state = e.event === 'end' ? 'done' : 'failed';
        if (e.ms !== undefined) b.ms = e.ms;
        open.delete(key);
      }
      // a failover quiesce reports 0 frozen: the ranks kept running
      if (e.phase === 'quiesce' && e.event === 'end' && d.frozen === 0) quiesced.delete(e.op);
      if (e.phase === 'resume' && quiesced.has(e.op)) { frozenRaw.push({ start: quiesced.get(e.op)!, end: at, ops: [e.op] }); quiesced.delete(e.op); }
    } else if (e.event === 'result') {
      const o = ops.get(e.op);
      const outcome = str(d.outcome) ?? e.phase;
      if (o) { o.outcome = outcome; if (e.ms !== undefined) o.ms = e.ms; }
      marks.push({ row, at, kind: 'result', label: `${outcome}${e.ms !== undefined ? ` ${e.ms} ms` : ''}` });
      if (e.kind === 'migrate' && (outcome === 'done' || outcome === 'degraded') && str(d.vm) && str(d.to)) place(String(d.vm), String(d.to), at);
      if (e.kind === 'restart' && Array.isArray(d.vms)) {
        for (const v of d.vms as Array<Record<string, unknown>>) if (str(v?.vm) && str(v?.host)) place(String(v.vm), String(v.host), at);
      }
      // a freeze still held when the operation ended (rolled back after quiesce): until the result
      if (quiesced.has(e.op)) { frozenRaw.push({ start: quiesced.get(e.op)!, end: at, ops: [e.op] }); quiesced.delete(e.op); }
    } else if (e.event === 'action') {
      marks.push({ row, at, kind: 'action', label: `${str(d.action) ?? str(d.fault) ?? 'action'}${str(d.reason) ? `: ${d.reason}` : ''}` });
    }
  }
  for (const [op, start] of quiesced) frozenRaw.push({ start, end: t1, ops: [op] });
  // overlapping freezes (migrations that share one) are one window for the ranks
  frozenRaw.sort((a, b) => a.start - b.start);
  const frozen: Window[] = [];
  for (const w of frozenRaw) {
    const last = frozen[frozen.length - 1];
    if (last && w.start <= last.end) { last.end = Math.max(last.end, w.end); last.ops.push(...w.ops); } else frozen.push({ ...w, ops: [...w.ops] });
  }
  const order = (g: Row['group']) => (g === 'job' ? 0 : g === 'host' ? 1 : 2);
  rows.sort((a, b) => order(a.group) - order(b.group) || (a.group === 'host' ? a.label.localeCompare(b.label, 'en', { numeric: true }) : 0));
  return { t0, t1, rows, bars, marks, frozen, ops: [...ops.values()], skipped };
}
