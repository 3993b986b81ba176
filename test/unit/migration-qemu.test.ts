import t from 'tap';
import { QmpClient } from '../../launcher/src/qmp/client.js';
import { capabilitiesFor, parametersFor, parseQueryMigrate, configureMigration, startIncoming, startOutgoing, waitMigration, cancelMigration, startPostcopy, setMaxBandwidth, throttleGuest, deadlineDecision, projectPrecopy, completeIncoming, type MigrationProgress } from '../../launcher/src/migration/qemu.js';
import { shellQuote, incomingFromFileArgs, saveStateToFile } from '../../launcher/src/migration/statefile.js';
import { DEFAULTS } from '../../launcher/src/defaults.js';
import { FakeQmpServer } from '../fakes/qmp-server.js';
import { within } from '../fixtures/wait.js';

const MiB = 1024 * 1024;

async function setup(t: { teardown(fn: () => unknown): void }) {
  const srv = await FakeQmpServer.start();
  const qmp = await QmpClient.connect(srv.socketPath, { timeoutMs: 2000 });
  t.teardown(async () => { await qmp.close(); await srv.close(); });
  return { srv, qmp };
}
const calls = (srv: FakeQmpServer) => srv.calls.filter((c) => c.command !== 'qmp_capabilities').map((c) => [c.command, c.arguments]);

// ---------------------------------------------------------------- pure: capabilities / parameters

t.test('capabilitiesFor: plain precopy resets multifd/postcopy, enables events; auto-converge only on src', async (t) => {
  const base = { maxBandwidthBytes: 1e9 };
  t.same(capabilitiesFor(base, 'src'), [
    { capability: 'events', state: true },
    { capability: 'multifd', state: false },
    { capability: 'postcopy-ram', state: false },
    { capability: 'auto-converge', state: false },
  ]);
  t.same(capabilitiesFor({ ...base, autoConverge: true }, 'dst'), [
    { capability: 'events', state: true },
    { capability: 'multifd', state: false },
    { capability: 'postcopy-ram', state: false },
  ]);
  const mf = capabilitiesFor({ ...base, multifdChannels: 2, autoConverge: true }, 'src');
  t.same(mf.find((c) => c.capability === 'multifd'), { capability: 'multifd', state: true });
  t.same(mf.find((c) => c.capability === 'auto-converge'), { capability: 'auto-converge', state: true });
  for (const side of ['src', 'dst'] as const) {
    t.same(capabilitiesFor({ ...base, postcopy: true }, side).find((c) => c.capability === 'postcopy-ram'), { capability: 'postcopy-ram', state: true }, `postcopy on ${side}`);
  }
});

t.test('parametersFor: bandwidth/downtime on src only, multifd-channels on both, tls-creds always', async (t) => {
  t.same(parametersFor({ maxBandwidthBytes: 10 * 1024 ** 3 }, 'src'), { 'tls-creds': '', 'max-bandwidth': 10 * 1024 ** 3 });
  t.same(parametersFor({ maxBandwidthBytes: 10 * 1024 ** 3 }, 'dst'), { 'tls-creds': '' });
  t.same(parametersFor({ maxBandwidthBytes: 5e8, downtimeLimitMs: 50, multifdChannels: 4 }, 'src'), { 'tls-creds': '', 'max-bandwidth': 5e8, 'downtime-limit': 50, 'multifd-channels': 4 });
  t.same(parametersFor({ maxBandwidthBytes: 5e8, downtimeLimitMs: 50, multifdChannels: 4 }, 'dst'), { 'tls-creds': '', 'multifd-channels': 4 });
  t.same(parametersFor({ maxBandwidthBytes: 5e8, multifdChannels: 0 }, 'src'), { 'tls-creds': '', 'max-bandwidth': 5e8 });
  t.same(parametersFor({ maxBandwidthBytes: 5e8 }, 'dst', 'symrun-tls-m1'), { 'tls-creds': 'symrun-tls-m1' }, 'TLS credentials named on the destination');
  t.same(parametersFor({ maxBandwidthBytes: 5e8 }, 'src', 'symrun-tls-m1'), { 'tls-creds': 'symrun-tls-m1', 'max-bandwidth': 5e8 }, 'and on the source');
});

t.test('tuning validation', async (t) => {
  t.throws(() => parametersFor({ maxBandwidthBytes: 0 }, 'src'), { code: 'ESYM_MIGRATION_TUNING', field: 'maxBandwidthBytes' });
  t.throws(() => parametersFor({ maxBandwidthBytes: 1.5 }, 'src'), { code: 'ESYM_MIGRATION_TUNING' });
  t.throws(() => capabilitiesFor({ maxBandwidthBytes: 1e9, multifdChannels: 256 }, 'src'), { code: 'ESYM_MIGRATION_TUNING', field: 'multifdChannels' });
  t.throws(() => capabilitiesFor({ maxBandwidthBytes: 1e9, multifdChannels: -1 }, 'src'), { code: 'ESYM_MIGRATION_TUNING' });
  t.throws(() => capabilitiesFor({ maxBandwidthBytes: 1e9, downtimeLimitMs: -5 }, 'src'), { code: 'ESYM_MIGRATION_TUNING', field: 'downtimeLimitMs' });
  t.throws(() => capabilitiesFor({ maxBandwidthBytes: 1e9, multifdChannels: 2, postcopy: true }, 'dst'), { code: 'ESYM_MIGRATION_TUNING' });
  t.ok(DEFAULTS.migration.maxBandwidthBytes > 128 * MiB, 'default bandwidth is above QEMU\'s 128 MiB/s');
});

// ---------------------------------------------------------------- pure: query-migrate parsing

t.test('parseQueryMigrate: early states, missing and bogus fields', async (t) => {
  t.same(parseQueryMigrate({}), { status: 'none', transferredBytes: 0, remainingBytes: 0, totalBytes: 0 });
  t.same(parseQueryMigrate(undefined), { status: 'none', transferredBytes: 0, remainingBytes: 0, totalBytes: 0 });
  t.same(parseQueryMigrate('junk'), { status: 'none', transferredBytes: 0, remainingBytes: 0, totalBytes: 0 });
  t.same(parseQueryMigrate({ status: 'setup' }), { status: 'setup', transferredBytes: 0, remainingBytes: 0, totalBytes: 0 });
  const p = parseQueryMigrate({ status: 'active', ram: { transferred: 'x', remaining: -4, total: NaN, mbps: null }, 'total-time': 'soon' });
  t.same(p, { status: 'active', transferredBytes: 0, remainingBytes: 0, totalBytes: 0 });
});

t.test('parseQueryMigrate: a QEMU 7.2 active and completed reply', async (t) => {
  const active = parseQueryMigrate({
    'expected-downtime': 465, status: 'active', 'setup-time': 170, 'total-time': 1138,
    ram: { total: 537395200, 'postcopy-requests': 0, 'dirty-sync-count': 3, 'multifd-bytes': 0, 'pages-per-second': 81234,
      'page-size': 4096, remaining: 153038848, mbps: 2819.75, transferred: 295113909, duplicate: 91000,
      'dirty-pages-rate': 37633, skipped: 0, 'normal-bytes': 290000000, normal: 70800 },
    'cpu-throttle-percentage': 20,
  });
  t.same(active, {
    status: 'active', transferredBytes: 295113909, remainingBytes: 153038848, totalBytes: 537395200,
    totalTimeMs: 1138, setupTimeMs: 170, expectedDowntimeMs: 465, dirtyRateBytesPerSec: 37633 * 4096,
    throughputMbps: 2819.75, dirtySyncCount: 3, postcopyRequests: 0, multifdBytes: 0, cpuThrottlePercent: 20,
  });
  const done = parseQueryMigrate({ status: 'completed', downtime: 62, 'total-time': 1299, ram: { transferred: 480257661, remaining: 0, total: 537395200 } });
  t.equal(done.downtimeMs, 62);
  t.equal(done.status, 'completed');
  const failed = parseQueryMigrate({ status: 'failed', 'error-desc': 'Unable to write to socket: Connection reset by peer' });
  t.equal(failed.errorDesc, 'Unable to write to socket: Connection reset by peer');
});

// ---------------------------------------------------------------- pure: deadline projector

const prog = (o: Partial<MigrationProgress>): MigrationProgress => ({ status: 'active', transferredBytes: 0, remainingBytes: 0, totalBytes: 512 * MiB, ...o });
/** samples every 500 ms at bandwidth B (bytes/s), remaining following remaining(tMs), dirty rate D */
function series(n: number, B: number, D: number, remaining: (ms: number) => number, stepMs = 500) {
  return Array.from({ length: n }, (_, i) => {
    const at = (i + 1) * stepMs;
    return { atMs: at, p: prog({ transferredBytes: Math.round((B * at) / 1000), remainingBytes: Math.max(0, Math.round(remaining(at))), dirtyRateBytesPerSec: D }) };
  });
}

t.test('projectPrecopy: fluid model', async (t) => {
  // 100 MiB left, 100 MiB/s, no dirtying, 300 ms downtime: 70 MiB at 100 MiB/s + 0.3 s = 1 s
  t.equal(Math.round(projectPrecopy(0, 100 * MiB, 100 * MiB, 0, 300)), 1000);
  t.equal(projectPrecopy(0, 100 * MiB, 100 * MiB, 100 * MiB, 300), Infinity, 'dirty rate = bandwidth never converges');
  t.equal(projectPrecopy(0, 10 * MiB, 0, 0, 300), Infinity, 'no bandwidth');
  t.equal(Math.round(projectPrecopy(1000, 10 * MiB, 100 * MiB, 500 * MiB, 300)), 1100, 'fits in the downtime: switch-over now');
});

t.test('deadlineDecision: converging migration → none, with a projection', async (t) => {
  const B = 300 * MiB, D = 50 * MiB;
  const s = series(4, B, D, (ms) => 1000 * MiB - ((B - D) * ms) / 1000); // now = 2000 ms, 500 MiB left
  const r = deadlineDecision(s, { deadlineMs: 10_000, allowed: ['postcopy', 'stop-copy'], alreadyTaken: [] });
  t.equal(r.kind, 'none');
  // (500 - 90) MiB / 250 MiB/s + 0.3 s
  t.equal(Math.round(r.projectedFinishMs!), 2000 + 1640 + 300);
  t.equal(deadlineDecision(s, { deadlineMs: 3000, allowed: ['postcopy'], alreadyTaken: [] }).kind, 'postcopy', 'same migration, tighter deadline');
});

t.test('deadlineDecision: non-converging → the first allowed action, in preference order', async (t) => {
  const B = 100 * MiB, D = 120 * MiB;
  const s = series(6, B, D, () => 300 * MiB);
  const a = deadlineDecision(s, { deadlineMs: 20_000, allowed: ['postcopy', 'stop-copy'], alreadyTaken: [] });
  t.equal(a.kind, 'postcopy');
  t.equal(a.projectedFinishMs, Infinity);
  t.equal(Math.round(a.projectedWithActionMs!), 3000 + 3000, 'now + 300 MiB / 100 MiB/s');
  t.match((a as { reason: string }).reason, /never/);
  const b = deadlineDecision(s, { deadlineMs: 20_000, allowed: ['stop-copy', 'postcopy'], alreadyTaken: [] });
  t.equal(b.kind, 'stop-copy');
  const c = deadlineDecision(s, { deadlineMs: 20_000, allowed: ['postcopy', 'stop-copy'], alreadyTaken: ['postcopy'] });
  t.equal(c.kind, 'stop-copy', 'postcopy already taken');
  const d = deadlineDecision(s, { deadlineMs: 20_000, allowed: ['postcopy'], alreadyTaken: ['postcopy'] });
  t.equal(d.kind, 'none', 'nothing left to do');
  t.equal(d.projectedFinishMs, Infinity);
});

t.test('deadlineDecision: throttle percent is what makes the deadline, accounting for an existing throttle', async (t) => {
  const B = 100 * MiB, D = 120 * MiB;
  const s = series(6, B, D, () => 300 * MiB); // now = 3000 ms
  const a = deadlineDecision(s, { deadlineMs: 13_000, allowed: ['throttle', 'stop-copy'], alreadyTaken: [], downtimeLimitMs: 300 });
  t.equal(a.kind, 'throttle');
  const pct = (a as { percent: number }).percent;
  // need (300 - 30) MiB / (100 - D') <= 10 - 0.3 s  ->  D' <= 72.16 MiB/s -> share 0.601 -> 40 %
  t.equal(pct, 40);
  t.ok(a.projectedWithActionMs! <= 13_000);
  // the measured dirty rate already reflects a 40 % throttle: the next step is a TOTAL above it
  const s2 = series(6, B, D * 0.8, () => 300 * MiB).map((x) => ({ ...x, p: { ...x.p, cpuThrottlePercent: 40 } }));
  const b = deadlineDecision(s2, { deadlineMs: 5_000, allowed: ['throttle'], alreadyTaken: ['throttle:40'] });
  t.equal(b.kind, 'throttle');
  t.ok((b as { percent: number }).percent > 40, `escalates: ${(b as { percent: number }).percent}`);
  // throttle cannot save it, stop-copy can -> stop-copy even though throttle is preferred
  const c = deadlineDecision(s, { deadlineMs: 6_000, allowed: ['throttle', 'stop-copy'], alreadyTaken: [] });
  t.equal(c.kind, 'stop-copy');
  // throttle at the maximum already: not proposed again
  const s3 = s.map((x) => ({ ...x, p: { ...x.p, cpuThrottlePercent: 99 } }));
  t.equal(deadlineDecision(s3, { deadlineMs: 13_000, allowed: ['throttle'], alreadyTaken: ['throttle:99'] }).kind, 'none');
});

t.test('deadlineDecision: already late → earliest finish among the allowed (ties: preference)', async (t) => {
  const B = 200 * MiB, D = 50 * MiB;
  const s = series(10, B, D, (ms) => 800 * MiB - (75 * MiB * ms) / 1000); // now = 5000 ms, 425 MiB left, converging
  const a = deadlineDecision(s, { deadlineMs: 4_000, allowed: ['throttle', 'postcopy', 'stop-copy'], alreadyTaken: [] });
  t.equal(a.kind, 'postcopy', 'postcopy and stop-copy tie (R/B) and beat a throttled precopy; postcopy preferred');
  t.match((a as { reason: string }).reason, /already passed/);
  const b = deadlineDecision(s, { deadlineMs: 4_000, allowed: ['stop-copy', 'postcopy'], alreadyTaken: [] });
  t.equal(b.kind, 'stop-copy');
  const c = deadlineDecision(s, { deadlineMs: 4_000, allowed: ['throttle'], alreadyTaken: [] });
  t.equal(c.kind, 'throttle');
  t.equal((c as { percent: number }).percent, 99, 'late: the strongest throttle');
});

t.test('deadlineDecision: no evidence yet, or nothing to help', async (t) => {
  t.same(deadlineDecision([], { deadlineMs: 1000, allowed: ['postcopy'], alreadyTaken: [] }), { kind: 'none' });
  // a single sample without mbps: no throughput known, not late -> none
  t.same(deadlineDecision([{ atMs: 100, p: prog({ remainingBytes: 500 * MiB }) }], { deadlineMs: 1000, allowed: ['postcopy'], alreadyTaken: [] }), { kind: 'none' });
  // a single sample with QEMU's mbps gives a projection, but too little evidence to act before the deadline
  const oneP = prog({ remainingBytes: 500 * MiB, throughputMbps: 8 * 1.048576 * 10, dirtyRateBytesPerSec: 20 * MiB });
  const one = deadlineDecision([{ atMs: 100, p: oneP }], { deadlineMs: 1000, allowed: ['postcopy'], alreadyTaken: [] });
  t.same(one, { kind: 'none', projectedFinishMs: Infinity }, '10 MiB/s against 20 MiB/s dirtying, observed 0 ms');
  t.equal(deadlineDecision([{ atMs: 100, p: oneP }], { deadlineMs: 1000, allowed: ['postcopy'], alreadyTaken: [], minEvidenceMs: 0 }).kind, 'postcopy');
  t.equal(deadlineDecision([{ atMs: 1100, p: oneP }], { deadlineMs: 1000, allowed: ['postcopy'], alreadyTaken: [] }).kind, 'postcopy', 'late: act on what there is');
  // late but without any throughput information: act anyway
  t.equal(deadlineDecision([{ atMs: 5000, p: prog({ remainingBytes: 500 * MiB }) }], { deadlineMs: 1000, allowed: ['stop-copy'], alreadyTaken: [] }).kind, 'stop-copy');
  // states the projector does not act on
  for (const status of ['setup', 'postcopy-active', 'completed', 'failed', 'cancelled', 'cancelling']) {
    const s = series(4, 10 * MiB, 100 * MiB, () => 500 * MiB).map((x) => ({ ...x, p: { ...x.p, status } }));
    t.equal(deadlineDecision(s, { deadlineMs: 100, allowed: ['postcopy', 'stop-copy', 'throttle'], alreadyTaken: [] }).kind, 'none', status);
  }
  // stop-copy already taken: nothing else applies
  const s = series(4, 10 * MiB, 100 * MiB, () => 500 * MiB);
  t.equal(deadlineDecision(s, { deadlineMs: 100, allowed: ['postcopy', 'throttle', 'stop-copy'], alreadyTaken: ['stop-copy'] }).kind, 'none');
});

t.test('deadlineDecision: early samples of the bulk pass (dirty rate 0) do not trigger actions', async (t) => {
  const s = series(3, 300 * MiB, 0, (ms) => 512 * MiB - (300 * MiB * ms) / 1000);
  t.equal(deadlineDecision(s, { deadlineMs: 5000, allowed: ['postcopy'], alreadyTaken: [] }).kind, 'none');
});

t.test('deadlineDecision: setup samples do not count as throughput or evidence (QEMU 7.2 trace)', async (t) => {
  // the shape that fired too early in a real run: setup for 200 ms, then the first 'active' samples
  const s = [
    { atMs: 2, p: prog({ status: 'setup', totalBytes: 0 }) },
    { atMs: 200, p: prog({ status: 'setup', totalBytes: 0 }) },
    { atMs: 306, p: prog({ transferredBytes: 4 * MiB, remainingBytes: 508 * MiB, throughputMbps: 0 }) },
    { atMs: 408, p: prog({ transferredBytes: 34 * MiB, remainingBytes: 478 * MiB, throughputMbps: 656 }) },
  ];
  const d = deadlineDecision(s, { deadlineMs: 2000, allowed: ['stop-copy'], alreadyTaken: [] });
  t.equal(d.kind, 'none', 'only 102 ms of precopy observed');
  // bandwidth from the two active samples: 30 MiB in 102 ms, not 34 MiB in 406 ms
  t.equal(Math.round(d.projectedFinishMs!), Math.round(408 + (478 * MiB / (30 * MiB / 0.102)) * 1000));
});

// ---------------------------------------------------------------- QMP calls against the fake

t.test('configureMigration: capabilities, then parameters', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('migrate-set-capabilities', () => ({ return: {} })).on('migrate-set-parameters', () => ({ return: {} }));
  await configureMigration(qmp, { maxBandwidthBytes: 1e10, multifdChannels: 2 }, 'src');
  await configureMigration(qmp, { maxBandwidthBytes: 1e10 }, 'dst');
  t.same(calls(srv), [
    ['migrate-set-capabilities', { capabilities: capabilitiesFor({ maxBandwidthBytes: 1e10, multifdChannels: 2 }, 'src') }],
    ['migrate-set-parameters', { 'tls-creds': '', 'max-bandwidth': 1e10, 'multifd-channels': 2 }],
    ['migrate-set-capabilities', { capabilities: capabilitiesFor({ maxBandwidthBytes: 1e10 }, 'dst') }],
    ['migrate-set-parameters', { 'tls-creds': '' }],
  ]);
  srv.on('migrate-set-capabilities', () => ({ error: { class: 'GenericError', desc: "There's a migration process in progress" } }));
  const e: any = await configureMigration(qmp, { maxBandwidthBytes: 1e10 }, 'src').catch((e) => e);
  t.equal(e.code, 'ESYM_MIGRATION_CONFIG');
  t.match(e.message, /in progress/);
});

t.test('startIncoming resolves port 0; startOutgoing / startPostcopy / setMaxBandwidth map errors', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('migrate-incoming', () => ({ return: {} }))
    .on('query-migrate', () => ({ return: { status: 'setup', 'socket-address': [{ type: 'inet', host: '127.0.0.1', port: '45439' }] } }));
  t.equal(await startIncoming(qmp, 'tcp:127.0.0.1:0'), 'tcp:127.0.0.1:45439');
  t.equal(await startIncoming(qmp, 'exec:cat /x'), 'exec:cat /x');
  srv.on('migrate-incoming', () => ({ error: { class: 'GenericError', desc: "The incoming migration has already been started" } }));
  await t.rejects(startIncoming(qmp, 'tcp:127.0.0.1:1'), { code: 'ESYM_MIGRATION_START' });
  srv.on('migrate', () => ({ return: {} }));
  await startOutgoing(qmp, 'tcp:127.0.0.1:45439');
  t.same(srv.calls.at(-1)!.arguments, { uri: 'tcp:127.0.0.1:45439' });
  srv.on('migrate', () => ({ error: { class: 'GenericError', desc: 'disallowing migration blocker' } }));
  await t.rejects(startOutgoing(qmp, 'tcp:x:1'), { code: 'ESYM_MIGRATION_START' });
  srv.on('migrate-start-postcopy', () => ({ error: { class: 'GenericError', desc: 'Enable postcopy with migrate_set_capability before the start of migration' } }));
  await t.rejects(startPostcopy(qmp), { code: 'ESYM_MIGRATION_POSTCOPY' });
  srv.on('migrate-set-parameters', () => ({ return: {} }));
  await setMaxBandwidth(qmp, 5e9);
  t.same(srv.calls.at(-1)!.arguments, { 'max-bandwidth': 5e9 });
  await t.rejects(setMaxBandwidth(qmp, -1), { code: 'ESYM_MIGRATION_TUNING' });
});

function statusSequence(srv: FakeQmpServer, seq: Array<Record<string, unknown>>) {
  let i = 0;
  srv.on('query-migrate', () => ({ return: seq[Math.min(i++, seq.length - 1)] }));
}

t.test('waitMigration: progress for every sample until completed', async (t) => {
  const { srv, qmp } = await setup(t);
  statusSequence(srv, [{ status: 'setup' }, { status: 'active', ram: { transferred: 10, remaining: 90, total: 100 } }, { status: 'completed', downtime: 40, ram: { transferred: 100, remaining: 0, total: 100 } }]);
  const seen: string[] = [];
  const p = await waitMigration(qmp, { intervalMs: 5, onProgress: (p) => seen.push(p.status) });
  t.equal(p.status, 'completed');
  t.equal(p.downtimeMs, 40);
  t.same(seen, ['setup', 'active', 'completed']);
});

t.test('waitMigration: failed / cancelled / postcopy-paused → typed errors', async (t) => {
  const { srv, qmp } = await setup(t);
  statusSequence(srv, [{ status: 'active' }, { status: 'failed', 'error-desc': 'Unable to write to socket: Broken pipe' }]);
  const e: any = await waitMigration(qmp, { intervalMs: 5 }).catch((e) => e);
  t.equal(e.code, 'ESYM_MIGRATION_FAILED');
  t.match(e.message, /Broken pipe/);
  t.equal(e.details.progress.status, 'failed');
  statusSequence(srv, [{ status: 'cancelling' }, { status: 'cancelled' }]);
  await t.rejects(waitMigration(qmp, { intervalMs: 5 }), { code: 'ESYM_MIGRATION_CANCELLED' });
  statusSequence(srv, [{ status: 'postcopy-active' }, { status: 'postcopy-paused' }]);
  await t.rejects(waitMigration(qmp, { intervalMs: 5 }), { code: 'ESYM_MIGRATION_POSTCOPY_PAUSED' });
});

t.test('waitMigration: timeout, abort (no migrate_cancel sent), MIGRATION event wakes it up', async (t) => {
  const { srv, qmp } = await setup(t);
  statusSequence(srv, [{ status: 'active' }]);
  const e: any = await waitMigration(qmp, { intervalMs: 20, timeoutMs: 100 }).catch((e) => e);
  t.equal(e.code, 'ESYM_MIGRATION_TIMEOUT');
  t.equal(e.details.progress.status, 'active');

  const ac = new AbortController();
  const reason = new Error('coordinator gave up');
  // abort while it waits for the next poll: right after the first sample (once the wait has begun)
  const a = await waitMigration(qmp, { intervalMs: 10_000, signal: ac.signal, onProgress: () => setImmediate(() => ac.abort(reason)) }).catch((e) => e);
  t.equal(a, reason, 'rejects with signal.reason');
  t.notOk(srv.calls.some((c) => c.command === 'migrate_cancel'), 'did not cancel');

  let done = false;
  let queried!: () => void;
  const firstQuery = new Promise<void>((r) => (queried = r));
  srv.on('query-migrate', () => { queried(); return { return: { status: done ? 'completed' : 'active' } }; });
  const t0 = Date.now();
  const w = waitMigration(qmp, { intervalMs: 30_000 });
  await within(firstQuery, 5_000, 'the first query-migrate'); // answered 'active': the next poll is 30 s away
  done = true;
  srv.emitEvent('MIGRATION', { status: 'completed' });
  t.equal((await w).status, 'completed');
  t.ok(Date.now() - t0 < 5000, 'woken by the event, not the 30 s poll');
});

t.test('cancelMigration: migrate_cancel then wait for a final state; returns completed too; refuses postcopy', async (t) => {
  const { srv, qmp } = await setup(t);
  let cancelled = false;
  let polls = 0;
  srv.on('migrate_cancel', () => { cancelled = true; return { return: {} }; })
    .on('query-migrate', () => ({ return: { status: !cancelled ? 'active' : ++polls < 3 ? 'cancelling' : 'cancelled' } }));
  const p = await cancelMigration(qmp, { intervalMs: 5 });
  t.equal(p.status, 'cancelled');
  t.ok(srv.calls.some((c) => c.command === 'migrate_cancel'));

  srv.calls.length = 0;
  srv.on('query-migrate', () => ({ return: { status: 'completed' } }));
  t.equal((await cancelMigration(qmp)).status, 'completed', 'already completed: caller must check');
  t.notOk(srv.calls.some((c) => c.command === 'migrate_cancel'), 'nothing to cancel');

  let raced = false;
  srv.on('migrate_cancel', () => { raced = true; return { return: {} }; })
    .on('query-migrate', () => ({ return: { status: raced ? 'completed' : 'device' } }));
  t.equal((await cancelMigration(qmp, { intervalMs: 5 })).status, 'completed', 'completed while cancelling');

  srv.on('query-migrate', () => ({ return: { status: 'postcopy-active' } }));
  await t.rejects(cancelMigration(qmp), { code: 'ESYM_MIGRATION_POSTCOPY_CANCEL' });

  srv.on('migrate_cancel', () => ({ return: {} }));
  srv.on('query-migrate', (() => { let n = 0; return () => ({ return: { status: n++ === 0 ? 'active' : 'cancelling' } }); })());
  await t.rejects(cancelMigration(qmp, { timeoutMs: 100, intervalMs: 10 }), { code: 'ESYM_MIGRATION_TIMEOUT' });
});

t.test('throttleGuest: needs auto-converge; sets initial, then an increment toward the target', async (t) => {
  const { srv, qmp } = await setup(t);
  let ac = false;
  let thr: number | undefined;
  srv.on('query-migrate-capabilities', () => ({ return: [{ capability: 'events', state: true }, { capability: 'auto-converge', state: ac }] }))
    .on('query-migrate', () => ({ return: { status: 'active', ...(thr !== undefined ? { 'cpu-throttle-percentage': thr } : {}) } }))
    .on('migrate-set-parameters', () => ({ return: {} }));
  await t.rejects(throttleGuest(qmp, 50), { code: 'ESYM_MIGRATION_THROTTLE_UNAVAILABLE' });
  ac = true;
  await throttleGuest(qmp, 50);
  t.same(srv.calls.at(-1)!.arguments, { 'max-cpu-throttle': 50, 'throttle-trigger-threshold': 1, 'cpu-throttle-tailslow': false, 'cpu-throttle-initial': 50, 'cpu-throttle-increment': 10 });
  thr = 50;
  await throttleGuest(qmp, 80);
  t.same(srv.calls.at(-1)!.arguments, { 'max-cpu-throttle': 80, 'throttle-trigger-threshold': 1, 'cpu-throttle-tailslow': false, 'cpu-throttle-initial': 50, 'cpu-throttle-increment': 30 });
  await throttleGuest(qmp, 30);
  t.same(srv.calls.at(-1)!.arguments, { 'max-cpu-throttle': 30, 'throttle-trigger-threshold': 1, 'cpu-throttle-tailslow': false, 'cpu-throttle-initial': 30, 'cpu-throttle-increment': 1 }, 'lowering: cap at 30');
  for (const bad of [0, 100, 50.5]) await t.rejects(throttleGuest(qmp, bad), { code: 'ESYM_MIGRATION_TUNING' });
});

t.test('state file helpers: quoting and validation', async (t) => {
  t.equal(shellQuote("/a b/it's"), `'/a b/it'\\''s'`);
  t.same(incomingFromFileArgs('/var/ckpt/vm 1.state'), ['-incoming', "exec:cat '/var/ckpt/vm 1.state'"]);
  t.throws(() => incomingFromFileArgs('relative.state'), { code: 'ESYM_MIGRATION_FILE' });
  t.throws(() => incomingFromFileArgs('/a\nb'), { code: 'ESYM_MIGRATION_FILE' });
  const { qmp } = await setup(t);
  await t.rejects(saveStateToFile(qmp, 'rel.state'), { code: 'ESYM_MIGRATION_FILE' });
});

t.test('saveStateToFile: stop, reset capabilities, exec:cat into .part then rename', async (t) => {
  const { srv, qmp } = await setup(t);
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mig-unit-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "vm's.state");
  let running = true;
  let status = 'none';
  srv.on('query-status', () => ({ return: { status: running ? 'running' : 'paused', running } }))
    .on('stop', () => { running = false; return { return: {} }; })
    .on('migrate-set-capabilities', () => ({ return: {} }))
    .on('migrate-set-parameters', () => ({ return: {} }))
    .on('migrate', (a) => {
      status = 'active';
      // play QEMU: run the exec: command with /bin/sh, feeding it some state
      void (async () => {
        const { spawnSync } = await import('node:child_process');
        const cmd = String(a!.uri).replace(/^exec:/, '');
        spawnSync('/bin/sh', ['-c', cmd], { input: 'STATE' });
        status = 'completed';
      })();
      return { return: {} };
    })
    .on('query-migrate', () => ({ return: { status } }));
  const p = await saveStateToFile(qmp, file, { intervalMs: 5 });
  t.equal(p.status, 'completed');
  t.equal(fs.readFileSync(file, 'utf8'), 'STATE');
  t.notOk(fs.existsSync(`${file}.part`));
  const cmds = calls(srv).map((c) => c[0]);
  t.same(cmds.slice(0, 5), ['query-status', 'stop', 'migrate-set-capabilities', 'migrate-set-parameters', 'migrate']);
  t.match(String(srv.calls.find((c) => c.command === 'migrate')!.arguments!.uri), /^exec:cat > '.*\.part' && sync /);
  t.equal(srv.calls.find((c) => c.command === 'migrate-set-parameters')!.arguments!['tls-creds'], '', 'a state file is never written through TLS (tls-creds reset)');
});

t.test('completeIncoming: waits for the destination, then resumes it only if it ended paused', async (t) => {
  const { srv, qmp } = await setup(t);
  let n = 0;
  let run = 'inmigrate';
  srv.on('query-migrate', () => { if (++n === 3) run = 'paused'; return { return: { status: n >= 3 ? 'completed' : 'active' } }; })
    .on('query-status', () => ({ return: { status: run, running: run === 'running' } }))
    .on('cont', () => { run = 'running'; return { return: {} }; });
  const r = await completeIncoming(qmp, { intervalMs: 5 });
  t.same({ runState: r.runState, resumed: r.resumed, status: r.progress.status }, { runState: 'running', resumed: true, status: 'completed' });
  run = 'paused';
  const r2 = await completeIncoming(qmp, { intervalMs: 5, resume: false });
  t.same([r2.runState, r2.resumed], ['paused', false]);
  run = 'running';
  srv.calls.length = 0;
  const r3 = await completeIncoming(qmp, { intervalMs: 5 });
  t.same([r3.runState, r3.resumed], ['running', false]);
  t.notOk(srv.calls.some((c) => c.command === 'cont'), 'a running destination is left alone');
});

t.test('waitMigration: re-reads a `completed` that QEMU has not timed yet (total-time 0)', async (t) => {
  const { srv, qmp } = await setup(t);
  const ram = { transferred: 100, remaining: 0, total: 100 };
  statusSequence(srv, [{ status: 'active', ram }, { status: 'completed', 'total-time': 0, downtime: 0, ram }, { status: 'completed', 'total-time': 1234, downtime: 56, ram }]);
  const p = await waitMigration(qmp, { intervalMs: 5 });
  t.equal(p.totalTimeMs, 1234);
  t.equal(p.downtimeMs, 56);
});
