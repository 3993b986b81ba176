// The phase table both `symrun migrate` and `symrun checkpoint` print, and the size formatter.
import t from 'tap';
import { fmtBytes, renderPhaseTable } from '../../launcher/src/cli/format.js';
import { phaseTable } from '../../launcher/src/cli/migrate.js';

t.test('fmtBytes', async (t) => {
  t.equal(fmtBytes(undefined), '-');
  t.equal(fmtBytes(512 * 1024), '512 KiB');
  t.equal(fmtBytes(150 * 1024 * 1024), '150.0 MiB');
  t.equal(fmtBytes(3 * 1024 ** 3), '3.00 GiB');
});

t.test('phase table: ended and failed phases, skipped notes, total', async (t) => {
  const ev = (phase: string, event: 'end' | 'fail' | 'begin' | 'progress', ms: number, data: Record<string, unknown> = {}) => ({ ts: '', op: 'm1', kind: 'migrate', phase, event, ms, data }) as never;
  const s = renderPhaseTable([ev('prepare', 'begin', 0), ev('prepare', 'end', 12), ev('unplug', 'end', 3, { skipped: 'no device' }), ev('perform', 'progress', 1), ev('perform', 'fail', 40, { error: 'boom' })], { totalMs: 99, outcome: 'rolled-back' }, () => 'x');
  t.same(s.split('\n').map((l) => l.split(/\s+/)[0]), ['PHASE', 'prepare', 'unplug', 'perform', 'total']);
  t.match(s, /prepare\s+12\s+x/);
  t.match(s, /unplug\s+3\s+skipped: no device/);
  t.match(s, /perform\s+40\s+FAILED: boom/);
  t.match(s, /total\s+99\s+rolled-back/);
  const m = phaseTable([ev('perform', 'end', 900, { transferredBytes: 150 * 1024 * 1024, downtimeMs: 36, throughputMbps: 1986.4, actions: ['postcopy'] })] as never, { totalMs: 4000, outcome: 'done' } as never);
  t.match(m, /perform\s+900\s+150\.0 MiB sent, downtime 36 ms, 1986 Mbit\/s, actions: postcopy/);
});
