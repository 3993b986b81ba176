// What a job carries across a coordinator restart (coordinator/job/carry.ts): the restart budget used,
// the periodic checkpoint clock and the hosts whose agents a successor waits for.
import t from 'tap';
import { awaitedHosts, carryOn, firstTickMs, type Carried, checkCarried } from '../../launcher/src/coordinator/job/carry.js';

const ckpt = (o: { intervalMs?: number; maxRestarts?: number } = {}) => ({ keep: 0, maxRestarts: o.maxRestarts ?? 3, restartFromStart: false, ...(o.intervalMs !== undefined ? { intervalMs: o.intervalMs } : {}) });
const now = Date.parse('2026-12-05T12:00:00.000Z');
const carried = (o: Partial<Carried> = {}): Carried => ({ restarts: { used: 2, max: 3, log: [] }, macSeed: 'j0ld01', ...o });

t.test('firstTickMs: a fresh clock waits the whole interval, a carried one what is left of it', async (t) => {
  t.equal(firstTickMs(60_000, undefined, now), 60_000, 'no clock yet: a whole interval');
  t.equal(firstTickMs(60_000, new Date(now - 25_000).toISOString(), now), 35_000, 'the last one 25 s ago: 35 s left');
  t.equal(firstTickMs(60_000, new Date(now - 90_000).toISOString(), now), 0, 'overdue: now');
  t.equal(firstTickMs(60_000, new Date(now + 5_000).toISOString(), now), 60_000, 'a clock ahead of this machine\'s: not more than one interval');
  t.equal(firstTickMs(60_000, 'not a time', now), 60_000, 'an unreadable clock: a whole interval');
});

t.test('carryOn: a fresh run starts with none of its restarts used and its clock now', async (t) => {
  const c = carryOn(ckpt({ intervalMs: 60_000, maxRestarts: 4 }), undefined, now);
  t.same(c.restarts, { used: 0, max: 4, log: [] });
  t.same(c.timer, { intervalMs: 60_000, since: new Date(now).toISOString() });
});

t.test('carryOn: a recovered job goes on with the restarts left and the dead coordinator\'s clock', async (t) => {
  const since = new Date(now - 40_000).toISOString();
  const log = [{ at: since, hosts: ['h2'], why: 'gone', from: 'ck1', ms: 1200 }];
  const c = carryOn(ckpt({ intervalMs: 60_000, maxRestarts: 3 }), carried({ restarts: { used: 2, max: 3, log }, checkpointTimer: { intervalMs: 60_000, since } }), now);
  t.same(c.restarts, { used: 2, max: 3, log }, 'restarts used are not reset');
  t.not(c.restarts.log, log, 'the log is the job\'s own copy');
  t.same(c.timer, { intervalMs: 60_000, since }, 'the clock is not restarted');
  t.equal(firstTickMs(c.timer!.intervalMs, c.timer!.since, now), 20_000, 'the next periodic checkpoint is due in 20 s');
});

t.test('carryOn: no interval, no timer; a record without a clock (older symrun) starts one', async (t) => {
  t.equal(carryOn(ckpt(), undefined, now).timer, undefined);
  t.equal(carryOn(ckpt(), carried(), now).timer, undefined);
  t.same(carryOn(ckpt({ intervalMs: 30_000 }), carried(), now).timer, { intervalMs: 30_000, since: new Date(now).toISOString() });
});

t.test('awaitedHosts: hosts lost before the coordinator died are not waited for', async (t) => {
  const hosts = ['h1', 'h2', 'h3', 'h4'].map((name) => ({ name, ip: '', bridge: '' }));
  t.same(awaitedHosts(hosts, []), ['h1', 'h2', 'h3', 'h4']);
  t.same(awaitedHosts(hosts, new Set(['h2'])), ['h1', 'h3', 'h4'], 'h2 is gone (its VMs run on a spare now)');
  t.same(awaitedHosts(hosts, ['h1', 'h4']), ['h2', 'h3']);
});

t.test('checkCarried: a damaged recover.json carry is not taken as it is', async (t) => {
  const good = { restarts: { used: 1, max: 2, log: [] }, macSeed: 'j4a5a3', checkpointTimer: { intervalMs: 60_000, since: '2026-12-06T00:00:00.000Z' }, prefixLenOverride: 24, eventsFile: '/tmp/ev.jsonl' };
  t.same(checkCarried(good), { carried: good, dropped: [] }, 'a whole carry passes unchanged');
  t.same(checkCarried(undefined), { dropped: [] }, 'an older record without carry: nothing carried, nothing said');
  t.same(checkCarried('x').dropped, ['carry']);
  t.same(checkCarried({ ...good, restarts: { used: '9', max: 2, log: [] } }), { dropped: ['carry.restarts'] }, 'restart budget not a count: nothing carried');
  t.same(checkCarried({ ...good, restarts: { used: -1, max: 2, log: [] } }).carried, undefined);
  t.same(checkCarried({ ...good, macSeed: '../../x' }), { dropped: ['carry.macSeed'] });
  const r = checkCarried({ ...good, checkpointTimer: { intervalMs: -5, since: 'yesterday' }, prefixLenOverride: 99, eventsFile: 7 });
  t.same(r.dropped, ['carry.checkpointTimer', 'carry.prefixLenOverride', 'carry.eventsFile'], 'each damaged part named');
  t.same(r.carried, { restarts: good.restarts, macSeed: good.macSeed }, 'the sound parts kept');
  t.same(checkCarried({ ...good, launch: { vm: 'vm1', argv: [1], rankVm: [] } }).dropped, ['carry.launch']);
});
