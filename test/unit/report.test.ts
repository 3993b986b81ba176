// symrun report against the recorded events of a real job (test/fixtures/events/: `symrun --local 2
// --spares 1 --events F` with one `symrun migrate vm2` and one `symrun checkpoint` mid-run): every phase
// of every operation is a bar whose duration is the event's, vm2 moves from host2 to host3 at the
// migration's result, the two freezes are the shaded windows; a file cut mid-line (a job still running)
// still draws; node events become marks on their host's row; bad input is a clear error.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseEvents, buildTimeline, type ReportEvent } from '../../launcher/src/report/timeline.js';
import { renderSvg } from '../../launcher/src/report/svg.js';
import { summarize, summaryText } from '../../launcher/src/report/summary.js';
import { main } from '../../launcher/src/main.js';
import { repoRoot } from '../../launcher/src/defaults.js';

const FIXTURE = path.join(repoRoot(), 'test', 'fixtures', 'events', 'local-migrate-checkpoint.jsonl');
const text = fs.readFileSync(FIXTURE, 'utf8');
const raw: ReportEvent[] = text.split('\n').filter(Boolean).map((l) => JSON.parse(l));

t.test('every phase of every operation is a bar with the event\'s duration', async (t) => {
  const { events, skipped } = parseEvents(text);
  t.equal(skipped, 0);
  const tl = buildTimeline(events);
  const svg = renderSvg(tl);
  const ends = raw.filter((e) => (e.kind === 'migrate' || e.kind === 'checkpoint') && e.event === 'end');
  t.ok(ends.length >= 15, `${ends.length} phase ends in the fixture`);
  for (const e of ends) {
    t.match(svg, new RegExp(`class="bar" data-kind="${e.kind}" data-op="${e.op}" data-phase="${e.phase}" data-row="op:${e.op}" data-ms="${e.ms}" data-state="done"`), `${e.kind} ${e.phase} ${e.ms} ms`);
  }
  const jobEnds = raw.filter((e) => e.kind === 'job' && e.event === 'end');
  for (const e of jobEnds) t.match(svg, new RegExp(`data-kind="job" data-op="${e.op}" data-phase="${e.phase}" data-row="job" data-ms="${e.ms}"`), `job ${e.phase}`);
  t.same(tl.rows.map((r) => r.label), ['job', 'host1', 'host2', 'host3', 'migrate vm2 host2→host3', 'checkpoint vm1,vm2']);
});

t.test('vm2 lives on host2, then on host3 from the migration\'s result', async (t) => {
  const tl = buildTimeline(parseEvents(text).events);
  const result = raw.find((e) => e.kind === 'migrate' && e.event === 'result')!;
  const vm2 = tl.bars.filter((b) => b.kind === 'vm' && b.op === 'vm2');
  t.same(vm2.map((b) => b.row), ['host:host2', 'host:host3']);
  t.equal(vm2[0]!.end, Date.parse(result.ts));
  t.equal(vm2[1]!.start, Date.parse(result.ts));
  t.same(tl.bars.filter((b) => b.kind === 'vm' && b.op === 'vm1').map((b) => b.row), ['host:host1'], 'vm1 never moved');
});

t.test('the ranks\' frozen windows: quiesce begin to resume end, one per operation here', async (t) => {
  const tl = buildTimeline(parseEvents(text).events);
  t.equal(tl.frozen.length, 2);
  for (const w of tl.frozen) {
    const op = w.ops[0]!;
    const q = raw.find((e) => e.op === op && e.phase === 'quiesce' && e.event === 'begin')!;
    const r = raw.find((e) => e.op === op && e.phase === 'resume' && e.event === 'end')!;
    t.same([w.start, w.end], [Date.parse(q.ts), Date.parse(r.ts)], `window of ${op}`);
  }
  const sum = summarize(tl);
  t.equal(sum.frozenMs, tl.frozen.reduce((a, w) => a + w.end - w.start, 0));
  t.match(summaryText(sum), /migrate vm2 host2→host3: done in 4\.5 s/);
  t.match(summaryText(sum), /checkpoint vm1,vm2: done in 3\.0 s/);
});

t.test('a file cut short (job still running) draws what it has; node events are marks on the host', async (t) => {
  const cut = text.slice(0, text.indexOf('"phase":"finish","event":"end"') + 20); // mid-line, mid-migration
  const { events, skipped } = parseEvents(cut);
  t.equal(skipped, 1, 'the cut line is skipped, not fatal');
  const drain: ReportEvent = { ts: events[events.length - 1]!.ts, op: 'policy', kind: 'policy', phase: 'new', event: 'action', data: { action: 'node', node: 'host2', condition: 'drain', state: 'MIXED+DRAIN', reason: 'maint' } };
  const tl = buildTimeline([...events, drain], skipped);
  const open = tl.bars.filter((b) => b.state === 'open' && b.kind === 'migrate').map((b) => b.phase);
  t.same(open, ['finish'], 'the phase in progress has no end yet');
  t.equal(tl.frozen.length, 1, 'frozen until the last event');
  t.equal(tl.frozen[0]!.end, tl.t1);
  const svg = renderSvg(tl);
  t.match(svg, /class="mark" data-kind="node" data-row="host:host2"><path[^>]*><title>host2 MIXED\+DRAIN \(maint\)<\/title>/);
  t.match(summaryText(summarize(tl)), /1 line of the file were not events/);
});

t.test('hostile text is escaped, not markup', async (t) => {
  const evil: ReportEvent[] = [
    { ts: '2026-01-01T00:00:00.000Z', op: 'm1', kind: 'migrate', phase: '<script>x</script>', event: 'begin', data: { vm: '"><svg onload=1>', from: 'a&b', to: 'c' } },
    { ts: '2026-01-01T00:00:01.000Z', op: 'm1', kind: 'migrate', phase: '<script>x</script>', event: 'end', ms: 1000, data: {} },
  ];
  const svg = renderSvg(buildTimeline(evil));
  t.notMatch(svg, /<script>|<svg onload/);
  t.match(svg, /&lt;script&gt;/);
});

t.test('symrun report: writes the SVG, prints the summary; bad input exits 2 naming EVENTS', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'report-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ev = path.join(dir, 'ev.jsonl');
  fs.copyFileSync(FIXTURE, ev);
  const out: string[] = [];
  const w = process.stdout.write.bind(process.stdout);
  (process.stdout as { write: unknown }).write = (s: string) => { out.push(String(s)); return true; };
  let code: number;
  try { code = await main(['report', ev]); } finally { (process.stdout as { write: unknown }).write = w; }
  t.equal(code, 0);
  t.ok(fs.existsSync(path.join(dir, 'ev.svg')), 'default output: EVENTS with .svg');
  t.match(out.join(''), /wrote .*ev\.svg/);
  const errs: string[] = [];
  const we = process.stderr.write.bind(process.stderr);
  (process.stderr as { write: unknown }).write = (s: string) => { errs.push(String(s)); return true; };
  try {
    t.equal(await main(['report', path.join(dir, 'missing.jsonl')]), 2);
    fs.writeFileSync(path.join(dir, 'junk.jsonl'), 'not json\n{"a":1}\n');
    t.equal(await main(['report', path.join(dir, 'junk.jsonl')]), 2);
  } finally { (process.stderr as { write: unknown }).write = we; }
  t.match(errs.join(''), /cannot read the events file .*missing\.jsonl: no such file/);
  t.match(errs.join(''), /junk\.jsonl holds no symrun event \(2 lines that are not events\)/);
  t.match(errs.join(''), /ESYM_REPORT_INPUT/);
});

t.test('a restart places the VMs anew: the report moves them where the job says', async (t) => {
  const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
  const evs: ReportEvent[] = [
    { ts: at(0), op: 'j1', kind: 'job', phase: 'boot', event: 'action', data: { action: 'placed', vms: { vm1: 'n1', vm2: 'n2' }, spares: ['n3'] } },
    { ts: at(5), op: '-', kind: 'restart', phase: 'new', event: 'action', data: { action: 'host-lost', host: 'n2', why: 'DOWN' } },
    { ts: at(6), op: 'j1', kind: 'job', phase: 'restart-1', event: 'action', data: { action: 'placed', vms: { vm1: 'n1', vm2: 'n3' } } },
    { ts: at(9), op: 'r1', kind: 'restart', phase: 'done', event: 'result', ms: 3000, data: { outcome: 'done', checkpoint: 'c1' } },
  ];
  const tl = buildTimeline(evs);
  t.same(tl.bars.filter((b) => b.op === 'vm2').map((b) => [b.row, b.start, b.end]), [['host:n2', Date.parse(at(0)), Date.parse(at(6))], ['host:n3', Date.parse(at(6)), Date.parse(at(9))]]);
  t.same(tl.bars.filter((b) => b.op === 'vm1').length, 1, 'vm1 stays (one bar, not restarted on the same host as a new one)');
  t.match(renderSvg(tl), /data-kind="node" data-row="host:n2"><path[^>]*><title>n2 lost: DOWN</);
});
