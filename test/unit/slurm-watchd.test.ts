// symrun watchd (slurm/watchd.ts: one poll of every node, changes fanned out to subscribers over the
// authenticated channel) and the coordinator's side of it (slurm/feed.ts: watcher when it answers, own
// polling when not), with a fake scontrol. No sleeps: every wait is for an event (a fake scontrol call,
// a notification, a line said, a closed connection: test/fixtures/wait.ts), and "nothing more comes" is
// shown by letting watchd poll again and flushing the connection with a round trip.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { serveChannel, connectChannel, type RpcPeer } from '../../launcher/src/agent/channel.js';
import { WatchDaemon, startWatchd, initKeyFile, readKeyFile, parseWatchdAddress, parseJobNodes, type SubscribeResult, type WatchdStats } from '../../launcher/src/slurm/watchd.js';
import { NodeFeed, type NodeFeedOptions } from '../../launcher/src/slurm/feed.js';
import type { NodeChange } from '../../launcher/src/slurm/watch.js';
import { Pulse } from '../fixtures/wait.js';

const SECRET = 'k'.repeat(64);
const pulse = new Pulse();
const until = (pred: () => boolean, ms = 5_000, what = 'condition'): Promise<void> => pulse.until(pred, what, ms);

/** A fake cluster: node -> State (and Reason); `scontrol show node -o [LIST]` output. */
class FakeSlurm {
  states = new Map<string, { state: string; reason?: string }>();
  calls: string[][] = [];
  fail?: string;
  constructor(n: number) {
    for (let i = 1; i <= n; i++) this.states.set(`n${i}`, { state: 'IDLE' });
  }
  set(node: string, state: string, reason?: string): void {
    this.states.set(node, { state, ...(reason ? { reason } : {}) });
  }
  run = async (names: string[]): Promise<string> => {
    this.calls.push(names);
    pulse.beat();
    if (this.fail) throw new Error(this.fail);
    const want = names.length ? new Set(names) : undefined;
    return [...this.states].filter(([n]) => !want || want.has(n))
      .map(([n, s]) => `NodeName=${n} Arch=x86_64 CPUTot=2 State=${s.state} Partitions=lab${s.reason ? ` Reason=${s.reason} [root@2026-11-22T03:40:00]` : ''}`).join('\n') + '\n';
  };
  /** Resolves once scontrol has been run `n` more times (n >= 2: a poll begun after now has ended). */
  calledMore(n: number): Promise<void> {
    const k = this.calls.length + n;
    return until(() => this.calls.length >= k, 5_000, `${n} more scontrol calls`);
  }
}

/**
 * Whatever watchd sends for the current node states has arrived: a poll begun after now has ended and
 * fanned out (two more scontrol calls), and each connection is flushed by a round trip (one ordered stream).
 */
async function settle(slurm: FakeSlurm, peers: RpcPeer[]): Promise<void> {
  await slurm.calledMore(2);
  await Promise.all(peers.map((p) => p.call('watch.stats', {})));
}

interface Sub { peer: RpcPeer; changes: NodeChange[][]; closed: boolean }
async function subscriber(port: number, name: string, nodes: string[], secret = SECRET): Promise<Sub & { first: SubscribeResult }> {
  const peer = await connectChannel({ host: '127.0.0.1', port, secret, name, timeoutMs: 2_000 });
  const s: Sub = { peer, changes: [], closed: false };
  peer.on('event', (n: string, d: { changes: NodeChange[] }) => { if (n === 'watch.changes') s.changes.push(d.changes); pulse.beat(); });
  peer.on('close', () => { s.closed = true; pulse.beat(); });
  peer.start();
  const first = await peer.call<SubscribeResult>('watch.subscribe', { nodes });
  return { ...s, first, get changes() { return s.changes; }, get closed() { return s.closed; } };
}

t.test('watchd: one scontrol call per poll for all nodes, whatever the subscribers; each gets its own nodes only', async (t) => {
  const slurm = new FakeSlurm(6);
  slurm.set('n5', 'IDLE+DRAIN', 'old maint');
  const w = await startWatchd({ host: '127.0.0.1', port: 0, secret: SECRET, intervalMs: 40, run: slurm.run });
  t.teardown(() => w.stop());
  const a = await subscriber(w.server.port, 'job-a', ['n1', 'n2']);
  const b = await subscriber(w.server.port, 'job-b', ['n3']);
  const c = await subscriber(w.server.port, 'job-c', ['n1', 'n2', 'n3', 'n5', 'nX']);
  t.same(a.first.nodes.map((n) => [n.node, n.condition, n.state]), [['n1', 'ok', 'IDLE'], ['n2', 'ok', 'IDLE']], 'subscribe answers the current state of its nodes');
  t.same(a.first.unknown, []);
  t.same(c.first.unknown, ['nX'], 'a node Slurm does not know is named');
  t.match(c.first.nodes.find((n) => n.node === 'n5'), { condition: 'drain', state: 'IDLE+DRAIN', reason: 'old maint' }, 'a node drained before the subscribe is in the answer');
  t.equal(a.first.intervalMs, 40);

  const before = slurm.calls.length;
  const pollsBefore = w.daemon.stats().polls;
  await slurm.calledMore(3);
  const polls = slurm.calls.length - before;
  t.equal(polls, w.daemon.stats().polls - pollsBefore, `one scontrol call per poll with 3 subscribers (${polls} calls)`);
  t.ok(slurm.calls.every((names) => names.length === 0), 'every call asks for all nodes (no names)');

  slurm.set('n2', 'MIXED+DRAIN', 'maint');
  await until(() => a.changes.length > 0 && c.changes.length > 0, 2_000, 'n2 change');
  t.equal(a.changes.length, 1);
  t.match(a.changes[0], [{ node: 'n2', condition: 'drain', previous: 'ok', state: 'MIXED+DRAIN', reason: 'maint' }], 'NodeChange as NodeWatcher reports it');
  t.type(a.changes[0]![0]!.seenAt, 'number');
  t.same(c.changes.flat().map((x) => x.node), ['n2']);
  t.same(b.changes, [], 'n3 subscriber hears nothing of n2');
  slurm.set('n3', 'DOWN+NOT_RESPONDING');
  slurm.set('n6', 'IDLE+DRAIN');
  await until(() => b.changes.length > 0, 2_000, 'n3 change');
  await settle(slurm, [a.peer, b.peer, c.peer]);
  t.same(b.changes.flat().map((x) => [x.node, x.condition]), [['n3', 'down']]);
  t.equal(a.changes.length, 1, 'job-a: nothing for n3/n6');
  t.ok(!c.changes.flat().some((x) => x.node === 'n6'), 'n6 goes to nobody');

  const st = await a.peer.call<WatchdStats>('watch.stats', { subscribers: true });
  t.equal(st.subscribers, 3);
  t.equal(st.nodes, 6);
  t.ok(st.polls >= polls && st.errors === 0 && st.meanMs >= 0 && st.maxMs >= st.lastMs);
  t.same(st.subscriberList?.map((s) => [s.name, s.nodes]).sort(), [['job-a', 2], ['job-b', 1], ['job-c', 5]]);
  t.ok(st.notifications >= 3);
  for (const s of [a, b, c]) s.peer.close();
});

t.test('watchd: re-subscribe replaces the node list; a bad request is refused; a wrong key is refused', async (t) => {
  const slurm = new FakeSlurm(3);
  const w = await startWatchd({ host: '127.0.0.1', port: 0, secret: SECRET, intervalMs: 30, run: slurm.run });
  t.teardown(() => w.stop());
  const a = await subscriber(w.server.port, 'job-a', ['n1']);
  const again = await a.peer.call<SubscribeResult>('watch.subscribe', { nodes: ['n2'] });
  t.same(again.nodes.map((n) => n.node), ['n2']);
  slurm.set('n1', 'IDLE+DRAIN');
  slurm.set('n2', 'IDLE+FAIL');
  await until(() => a.changes.length > 0);
  await settle(slurm, [a.peer]);
  t.same(a.changes.flat().map((x) => [x.node, x.condition]), [['n2', 'fail']], 'only the new list');
  await t.rejects(a.peer.call('watch.subscribe', { nodes: 'n1' }), { code: 'ESYM_WATCHD_REQUEST' });
  await t.rejects(a.peer.call('watch.subscribe', { nodes: ['n1; rm -rf /'] }), { code: 'ESYM_WATCHD_REQUEST' });
  await t.rejects(connectChannel({ host: '127.0.0.1', port: w.server.port, secret: 'x'.repeat(64), name: 'evil', timeoutMs: 1_000 }), { code: 'ESYM_CHANNEL_AUTH' });
  a.peer.close();
});

t.test('watchd: a dead subscriber is forgotten, a slow one is dropped, the others keep getting changes', async (t) => {
  const slurm = new FakeSlurm(4);
  const logs: string[] = [];
  const daemon = new WatchDaemon({ intervalMs: 25, run: slurm.run, maxBufferedBytes: 300, log: (_l, m) => logs.push(m) });
  // the "slow" subscriber's socket is corked on watchd's side: what is sent to it stays queued, as for
  // a subscriber that stopped reading once the kernel buffers are full
  const peers = new Map<string, RpcPeer>();
  const srv = await serveChannel({ host: '127.0.0.1', port: 0, secret: SECRET, onPeer: (p) => { peers.set(p.name, p); daemon.attach(p); p.on('close', pulse.beat); } });
  daemon.start();
  t.teardown(async () => { await daemon.stop(); await srv.close(); });
  const all = ['n1', 'n2', 'n3', 'n4'];
  const good = await subscriber(srv.port, 'good', all);
  const dead = await subscriber(srv.port, 'dead', all);
  const slow = await subscriber(srv.port, 'slow', all);
  peers.get('slow')!.sock.cork();
  t.equal(daemon.stats().subscribers, 3);

  dead.peer.sock.destroy(); // killed without a goodbye
  await until(() => daemon.stats().subscribers === 2, 2_000, 'dead subscriber gone');
  t.pass('a closed connection leaves the subscriber list');

  // changes until the slow one has more than 300 bytes queued
  const t0 = Date.now();
  for (let i = 0; i < 8; i++) {
    const n = all[i % 4]!;
    slurm.set(n, 'IDLE+DRAIN', `round ${i}`);
    const want = good.changes.length + 1;
    await until(() => good.changes.length >= want, 2_000, `good gets change ${i}`);
    slurm.set(n, 'IDLE');
    await until(() => good.changes.length >= want + 1, 2_000, `good gets change ${i}b`);
  }
  const ms = Date.now() - t0;
  t.ok(good.changes.length >= 16, `the good subscriber got every change (${good.changes.length}) in ${ms} ms`);
  await until(() => slow.closed, 2_000, 'slow subscriber dropped');
  t.equal(daemon.stats().dropped, 1);
  t.equal(daemon.stats().subscribers, 1);
  t.ok(logs.some((l) => /dropped subscriber slow: not reading/.test(l)), 'logged');
  good.peer.close();
});

t.test('watchd: subscribe waits for the first poll; stop() closes every subscriber', async (t) => {
  const slurm = new FakeSlurm(2);
  slurm.fail = 'slurmctld down';
  const w = await startWatchd({ host: '127.0.0.1', port: 0, secret: SECRET, intervalMs: 30, run: slurm.run, firstPollTimeoutMs: 150 });
  const peer = await connectChannel({ host: '127.0.0.1', port: w.server.port, secret: SECRET, name: 'early', timeoutMs: 1_000 });
  peer.start();
  await t.rejects(peer.call('watch.subscribe', { nodes: ['n1'] }), { code: 'ESYM_WATCHD_NO_DATA', message: /slurmctld down/ }, 'no data yet: refused, with why');
  slurm.fail = undefined;
  const r = await peer.call<SubscribeResult>('watch.subscribe', { nodes: ['n1'] });
  t.equal(r.nodes[0]?.condition, 'ok');
  let closed = false;
  peer.on('close', () => { closed = true; pulse.beat(); });
  const t0 = Date.now();
  await w.stop();
  t.ok(Date.now() - t0 < 1_500, 'stops at once');
  await until(() => closed, 1_000, 'subscriber sees the close');
  await t.rejects(connectChannel({ host: '127.0.0.1', port: w.server.port, secret: SECRET, name: 'late', timeoutMs: 1 }), { code: 'ESYM_CHANNEL_CONNECT' }, 'no longer listening');
});

t.test('key file: created 0600 once, never overwritten; too short refused; addresses', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'watchd-key-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'etc', 'watchd.key');
  t.same(initKeyFile(f), { created: true, mode: 0o600 });
  const k = readKeyFile(f);
  t.match(k, /^[0-9a-f]{64}$/);
  t.equal(initKeyFile(f).created, false);
  t.equal(readKeyFile(f), k, 'unchanged');
  fs.writeFileSync(path.join(dir, 'short'), 'abc\n');
  t.throws(() => readKeyFile(path.join(dir, 'short')), { code: 'ESYM_WATCHD_KEY' });
  t.throws(() => readKeyFile(path.join(dir, 'none')), { code: 'ESYM_WATCHD_KEY', message: /no such file/ });
  t.same(parseWatchdAddress('ctl:7000'), { host: 'ctl', port: 7000 });
  t.same(parseWatchdAddress('ctl'), { host: 'ctl', port: 6825 });
  t.same(parseWatchdAddress(':6900'), { host: '0.0.0.0', port: 6900 });
  t.throws(() => parseWatchdAddress('ctl:99999'));
});

// ---- the coordinator's side ----------------------------------------------------------------------

interface FeedHarness {
  feed: NodeFeed; changes: NodeChange[][]; said: string[]; ownCalls: () => number; own: FakeSlurm;
  /** the feed's connections to watchd, newest last (a round trip on one flushes what watchd sent) */
  peers: RpcPeer[];
  /** attempts to reach watchd so far */
  attempts: () => number;
  /** node lists the feed subscribed with (answered) */
  subscribes: string[][];
}
function feedFor(port: number, nodes: string[], o: { own?: FakeSlurm; retryMs?: number; checkMs?: number; staleMs?: number; secret?: string; nodesFn?: () => string[]; allocation?: NodeFeedOptions['allocation'] } = {}): FeedHarness {
  const own = o.own ?? new FakeSlurm(6);
  const changes: NodeChange[][] = [];
  const said: string[] = [];
  const peers: RpcPeer[] = [];
  const subscribes: string[][] = [];
  let attempts = 0;
  const feed = new NodeFeed({
    nodes: o.nodesFn ?? (() => nodes),
    intervalMs: 30,
    watcher: { address: `127.0.0.1:${port}`, keyFile: '/nonexistent' },
    readKey: () => o.secret ?? SECRET,
    name: 'test-job',
    run: own.run,
    onChange: (c) => { changes.push(c); pulse.beat(); },
    say: (m) => { said.push(m); pulse.beat(); },
    connect: async (c) => {
      attempts++;
      pulse.beat();
      const p = await connectChannel(c);
      const call = p.call.bind(p);
      p.call = (async (method: string, params?: unknown, co?: { timeoutMs?: number; signal?: AbortSignal }) => {
        const r = await call(method, params, co);
        if (method === 'watch.subscribe') { subscribes.push((params as { nodes: string[] }).nodes); pulse.beat(); }
        return r;
      }) as typeof p.call;
      peers.push(p);
      return p;
    },
    connectTimeoutMs: 1_000,
    retryMs: o.retryMs ?? 60_000,
    checkMs: o.checkMs ?? 5_000,
    staleMs: o.staleMs ?? 10_000,
    ...(o.allocation ? { allocation: { ...o.allocation, onChange: (n: string[]) => { o.allocation!.onChange(n); pulse.beat(); } } } : {}),
  });
  return { feed, changes, said, own, ownCalls: () => own.calls.length, peers, attempts: () => attempts, subscribes };
}

t.test('coordinator feed: changes come from watchd, no own polling', async (t) => {
  const slurm = new FakeSlurm(4);
  slurm.set('n3', 'MIXED+DRAIN', 'maint');
  const w = await startWatchd({ host: '127.0.0.1', port: 0, secret: SECRET, intervalMs: 30, run: slurm.run });
  t.teardown(() => w.stop());
  const h = feedFor(w.server.port, ['n1', 'n2', 'n3']);
  h.feed.start();
  t.teardown(() => h.feed.stop());
  await until(() => h.feed.source === 'watcher', 2_000, 'watcher source');
  await until(() => h.changes.length > 0, 2_000, 'initial state');
  t.same(h.changes[0]!.map((c) => [c.node, c.condition, c.previous]), [['n3', 'drain', 'ok']], 'the snapshot reports a node already drained');
  slurm.set('n1', 'MIXED+FAIL');
  slurm.set('n4', 'IDLE+DRAIN');
  await until(() => h.changes.length > 1, 2_000, 'n1 change');
  t.same(h.changes[1]!.map((c) => [c.node, c.condition]), [['n1', 'fail']]);
  await settle(slurm, [h.peers.at(-1)!]);
  t.equal(h.changes.length, 2, 'n4 is not the job\'s');
  t.equal(h.ownCalls(), 0, 'the job did not call scontrol');
  const st = h.feed.status();
  t.match(st, { source: 'watcher', intervalMs: 30, polls: 0, watcher: { address: `127.0.0.1:${w.server.port}`, state: 'connected', connects: 1, fallbacks: 0 } });
  t.ok(st.watcher!.notifications >= 1);
  t.same(h.said, [`watching the nodes through the node watcher 127.0.0.1:${w.server.port}`]);
});

t.test('coordinator feed: watchd unreachable at start -> own polling at once, said once', async (t) => {
  const port = await freePort();
  const h = feedFor(port, ['n1', 'n2']);
  h.own.set('n2', 'MIXED+DRAIN', 'maint');
  const t0 = Date.now();
  h.feed.start();
  t.teardown(() => h.feed.stop());
  await until(() => h.ownCalls() > 0, 3_000, 'own poll');
  t.ok(Date.now() - t0 < 1_500, `polling within ${Date.now() - t0} ms`);
  await until(() => h.changes.length > 0, 2_000, 'change via own polling');
  t.same(h.changes[0]!.map((c) => [c.node, c.condition]), [['n2', 'drain']]);
  t.equal(h.feed.source, 'poll');
  t.equal(h.said.length, 1);
  t.match(h.said[0], new RegExp(`^node watcher 127\\.0\\.0\\.1:${port} unreachable \\(.*ECONNREFUSED.*\\): polling slurmctld myself every 0\\.03 s$`));
  t.match(h.feed.status(), { source: 'poll', watcher: { state: 'unreachable', fallbacks: 1, lastError: /ECONNREFUSED/ } });
  t.same(h.own.calls[0], ['n1', 'n2'], 'its own nodes, one batched call');
});

t.test('coordinator feed: watchd dies mid-job -> own polling, no change lost or repeated; back to watchd when it returns', async (t) => {
  const slurm = new FakeSlurm(4);
  let w = await startWatchd({ host: '127.0.0.1', port: 0, secret: SECRET, intervalMs: 30, run: slurm.run });
  const port = w.server.port;
  const h = feedFor(port, ['n1', 'n2', 'n3'], { own: slurm, retryMs: 300 });
  h.feed.start();
  t.teardown(async () => { await h.feed.stop(); await w.stop(); });
  await until(() => h.feed.source === 'watcher', 2_000, 'watcher');
  slurm.set('n2', 'MIXED+DRAIN', 'first');
  await until(() => h.changes.length === 1, 2_000, 'first drain via watchd');
  const callsBefore = slurm.calls.length;
  await w.stop(); // SIGTERM of watchd, as far as the job can tell
  await until(() => h.feed.source === 'poll', 2_000, 'fallback');
  await until(() => slurm.calls.some((c, i) => i >= callsBefore && c.length === 3), 2_000, 'own poll');
  t.match(h.said[1], new RegExp(`^node watcher 127\\.0\\.0\\.1:${port} unreachable \\(lost: connection closed\\): polling slurmctld myself every 0\\.03 s$`));
  await slurm.calledMore(2); // own polls only (watchd is gone): one begun after now has ended
  t.equal(h.changes.length, 1, 'n2 drain is not reported again by the own poller');
  slurm.set('n3', 'MIXED+DRAIN', 'second');
  slurm.set('n2', 'MIXED');
  await until(() => h.changes.length >= 2, 2_000, 'changes via own polling');
  await slurm.calledMore(2);
  t.same(h.changes.slice(1).flat().map((c) => [c.node, c.condition, c.previous]).sort(), [['n2', 'ok', 'drain'], ['n3', 'drain', 'ok']]);
  const tried = h.attempts();
  await until(() => h.attempts() >= tried + 2, 5_000, 'two more attempts to reach watchd'); // one failed (nothing listens), the next was scheduled
  t.equal(h.said.length, 2, 'said once, not per retry');
  t.equal(h.feed.source, 'poll');

  // watchd back on the same port: the feed returns to it and stops polling
  w = await startWatchd({ host: '127.0.0.1', port, secret: SECRET, intervalMs: 30, run: slurm.run });
  await until(() => h.feed.source === 'watcher', 3_000, 'back to the watcher');
  t.match(h.said[2], /reachable again: using it/);
  const n = h.feed.status().polls;
  await slurm.calledMore(4); // watchd polled 4 times (>= 90 ms): the own poller (every 30 ms) would have run meanwhile
  t.equal(h.feed.status().polls, n, 'own polling stopped');
  t.match(h.feed.status().watcher, { connects: 2, fallbacks: 1, state: 'connected' });
  const k = h.changes.length;
  slurm.set('n1', 'IDLE+DRAIN');
  await until(() => h.changes.length > k, 2_000, 'change via watchd again');
  t.same(h.changes[k]!.map((c) => c.node), ['n1']);
});

t.test('coordinator feed: wrong key, a stale watchd, and a changed node list', async (t) => {
  const slurm = new FakeSlurm(5);
  const w = await startWatchd({ host: '127.0.0.1', port: 0, secret: SECRET, intervalMs: 30, run: slurm.run });
  t.teardown(() => w.stop());
  const bad = feedFor(w.server.port, ['n1'], { secret: 'z'.repeat(64) });
  bad.feed.start();
  await until(() => bad.feed.source === 'poll', 2_000, 'wrong key -> poll');
  t.match(bad.said[0], /unreachable \(it refused us, or did not prove itself \(.*wrong key.*\): check slurm\.watcherAuth/);
  await bad.feed.stop();

  let nodes = ['n1'];
  const h = feedFor(w.server.port, [], { nodesFn: () => nodes, checkMs: 60, staleMs: 200 });
  h.feed.start();
  t.teardown(() => h.feed.stop());
  await until(() => h.feed.source === 'watcher', 2_000, 'watcher');
  nodes = ['n1', 'n5']; // e.g. a replacement node after a restart
  await until(() => h.subscribes.some((l) => l.includes('n5')), 2_000, 're-subscription with n5');
  slurm.set('n5', 'IDLE+DRAIN');
  await until(() => h.changes.length > 0, 2_000, 'n5 via re-subscription');
  t.same(h.changes[0]!.map((c) => c.node), ['n5']);
  slurm.fail = 'slurmctld unreachable from watchd';
  await until(() => h.feed.source === 'poll', 3_000, 'stale watchd -> poll');
  t.match(h.said[h.said.length - 1], /unreachable \(lost: its last successful poll of slurmctld was/);
  await until(() => h.ownCalls() > 0, 2_000, 'own polling');
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

t.test('squeue "%A %N" parsing: ranges expanded, heterogeneous components merged, junk skipped', async (t) => {
  const m = parseJobNodes('12 n[1-3]\n13 n5\n12 n7\n\nbogus line\n14 (null)x[\n');
  t.same([...m], [['12', ['n1', 'n2', 'n3', 'n7']], ['13', ['n5']]]);
});

/** A fake `squeue -h -t RUNNING -o "%A %N"`: job id -> node list expression. */
function fakeJobs(jobs: Record<string, string>): { run: () => Promise<string>; calls: () => number; jobs: Record<string, string> } {
  let n = 0;
  return { jobs, calls: () => n, run: async () => { n++; pulse.beat(); return Object.entries(jobs).map(([j, l]) => `${j} ${l}`).join('\n') + '\n'; } };
}

t.test('watchd: the node list of each subscriber\'s job, sent when it changes; no squeue while nobody gives a job', async (t) => {
  const slurm = new FakeSlurm(6);
  const sq = fakeJobs({ '7': 'n[1-3]', '8': 'n4' });
  const w = await startWatchd({ host: '127.0.0.1', port: 0, secret: SECRET, intervalMs: 30, jobIntervalMs: 40, run: slurm.run, runJobs: sq.run });
  t.teardown(() => w.stop());
  const plain = await subscriber(w.server.port, 'no-job', ['n1']);
  await slurm.calledMore(5); // >= 120 ms of watchd's 30 ms polls: its 40 ms job timer has fired meanwhile
  await w.daemon.pollJobs(); // and once more now
  t.equal(sq.calls(), 0, 'no subscriber with a job: squeue is not called');
  const allocs: Array<{ job: string; nodes: string[] }> = [];
  const a = await subscriber(w.server.port, 'job-7', ['n1', 'n2', 'n3']);
  a.peer.on('event', (n: string, d: { job: string; nodes: string[] }) => { if (n === 'watch.allocation') allocs.push(d); pulse.beat(); });
  await a.peer.call('watch.subscribe', { nodes: ['n1', 'n2', 'n3'], job: '7' });
  await until(() => allocs.length === 1, 2_000, 'first allocation');
  t.same(allocs[0], { job: '7', nodes: ['n1', 'n2', 'n3'] }, 'the job\'s nodes, once watchd has read them');
  const again = await a.peer.call<SubscribeResult>('watch.subscribe', { nodes: ['n1', 'n2', 'n3'], job: '7' });
  t.same(again.allocation, ['n1', 'n2', 'n3'], 'a subscribe answers the known allocation');
  const polls = sq.calls();
  await until(() => sq.calls() >= polls + 2, 2_000, 'two more squeue reads');
  await a.peer.call('watch.stats', {}); // what those reads sent has arrived
  t.ok(sq.calls() > polls, 'squeue is read every job interval');
  t.equal(allocs.length, 1, 'unchanged: nothing sent');
  sq.jobs['7'] = 'n[1-3],n6';
  await until(() => allocs.length === 2, 2_000, 'grown allocation');
  t.same(allocs[1], { job: '7', nodes: ['n1', 'n2', 'n3', 'n6'] }, 'grown by n6');
  sq.jobs['7'] = 'n[1,3],n6';
  await until(() => allocs.length === 3, 2_000, 'shrunk allocation');
  t.same(allocs[2]!.nodes, ['n1', 'n3', 'n6'], 'n2 left');
  await t.rejects(a.peer.call('watch.subscribe', { nodes: ['n1'], job: '7; rm -rf /' }), /job must be a Slurm job id/, 'a bad job id is refused');
  const st = await plain.peer.call<WatchdStats>('watch.stats', {});
  t.match(st, { allocationNotices: 3, jobPollErrors: 0 });
  t.ok(st.jobPolls >= 3);
});

t.test('coordinator feed: the job\'s node list from watchd (no own scontrol show job), and by its own checks while polling', async (t) => {
  const slurm = new FakeSlurm(6);
  const sq = fakeJobs({ '42': 'n[1-2]' });
  const w = await startWatchd({ host: '127.0.0.1', port: 0, secret: SECRET, intervalMs: 30, jobIntervalMs: 40, run: slurm.run, runJobs: sq.run });
  const lists: string[][] = [];
  let own = 0;
  let ownNodes = ['n1', 'n2', 'n5'];
  const { feed } = feedFor(w.server.port, ['n1', 'n2'], { allocation: { job: '42', intervalMs: 40, run: async () => { own++; return ownNodes; }, onChange: (n) => lists.push(n) } });
  feed.start();
  t.teardown(() => feed.stop());
  await until(() => lists.length >= 1, 2_000, 'allocation via watchd');
  t.same(lists[0], ['n1', 'n2']);
  sq.jobs['42'] = 'n[1-2,4]';
  await until(() => lists.length >= 2, 2_000, 'grown via watchd');
  t.same(lists[1], ['n1', 'n2', 'n4']);
  t.equal(own, 0, 'watcher mode: the job asked slurmctld nothing');
  await w.stop();
  await until(() => feed.source === 'poll', 3_000, 'fallback');
  await until(() => lists.length >= 3, 2_000, 'allocation by own check');
  t.same(lists[lists.length - 1], ['n1', 'n2', 'n5'], 'poll mode: its own scontrol show job');
  t.ok(own >= 1);
  ownNodes = ['n1'];
  await until(() => lists[lists.length - 1]!.length === 1, 2_000, 'shrunk by own check');
  t.match(feed.status().allocation, { intervalMs: 40, errors: 0, nodes: ['n1'] });
});
