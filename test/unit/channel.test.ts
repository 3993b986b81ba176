import t from 'tap';
import { serveChannel, connectChannel, type RpcPeer } from '../../launcher/src/agent/channel.js';
import { GuestClient } from '../../launcher/src/agent/guest.js';
import type { HostFrame } from '../../guest/protocol/index.js';

t.test('authenticated channel: right secret connects and calls, wrong secret is refused', async (t) => {
  let server!: RpcPeer;
  const srv = await serveChannel({ host: '127.0.0.1', secret: 'right', onPeer: (p) => { server = p; p.start(); } });
  t.teardown(() => srv.close());
  const agent = await connectChannel({ host: '127.0.0.1', port: srv.port, secret: 'right', name: 'host1' });
  agent.handle('echo', (p: unknown) => p).start();
  await new Promise((r) => setTimeout(r, 50));
  t.equal(server.name, 'host1');
  t.same(await server.call('echo', { a: 1 }), { a: 1 });
  await t.rejects(server.call('nope'), { code: 'ESYM_NO_METHOD' });
  await t.rejects(connectChannel({ host: '127.0.0.1', port: srv.port, secret: 'wrong', name: 'evil', timeoutMs: 2000 }), { code: 'ESYM_CHANNEL_AUTH' });
  agent.close();
  await new Promise((r) => setTimeout(r, 50));
  await t.rejects(server.call('echo'), { code: 'ESYM_CHANNEL_CLOSED' });
});

t.test('calls that arrive before handlers are registered wait for start()', async (t) => {
  let server!: RpcPeer;
  const srv = await serveChannel({ host: '127.0.0.1', secret: 's', onPeer: (p) => { server = p; p.start(); } });
  t.teardown(() => srv.close());
  const agent = await connectChannel({ host: '127.0.0.1', port: srv.port, secret: 's', name: 'h' });
  await new Promise((r) => setTimeout(r, 30));
  const pending = server.call('late', {});
  await new Promise((r) => setTimeout(r, 50));
  agent.handle('late', () => 'ok').start();
  t.equal(await pending, 'ok');
  agent.close();
});

t.test('guest client: sync by id, replayed frames deduplicated, requests fail on detach', async (t) => {
  const sent: HostFrame[] = [];
  const g = new GuestClient('vm1');
  g.attach((f) => sent.push(f));
  const sync = sent[0] as Extract<HostFrame, { t: 'sync' }>;
  g.receive({ t: 'sync', id: 'other', v: 1, agent: { version: '1', hostname: 'vm1', pid: 1, bootId: 'b', uptime: 1 } });
  t.equal(g.state, 'syncing', 'a sync with another id is ignored');
  g.receive({ t: 'sync', id: sync.id, v: 1, agent: { version: '1', hostname: 'vm1', pid: 1, bootId: 'b', uptime: 1 } });
  t.equal(g.state, 'ready');
  const out: string[] = [];
  const hp = g.exec({ argv: ['x'] }, { onStdout: (d) => out.push(d.toString()) });
  const req = sent.find((f) => f.t === 'req') as Extract<HostFrame, { t: 'req' }>;
  g.receive({ t: 'res', id: req.id, ok: true, value: { pid: 5 } });
  const h = await hp;
  const sid = h.sid;
  g.receive({ t: 'out', seq: 1, sid, fd: 1, data: Buffer.from('a').toString('base64') });
  g.detach('migrating');
  await t.rejects(g.request('info', {}), { code: 'ESYM_GUEST_DISCONNECTED' });
  // new link: the guest replays seq 1 (already seen) and sends seq 2
  g.attach((f) => sent.push(f));
  const sync2 = sent[sent.length - 1] as Extract<HostFrame, { t: 'sync' }>;
  t.equal(sync2.lastSeq, 1, 'tells the guest what it already has');
  g.receive({ t: 'sync', id: sync2.id, v: 1, agent: { version: '1', hostname: 'vm1', pid: 1, bootId: 'b', uptime: 1 } });
  g.receive({ t: 'out', seq: 1, sid, fd: 1, data: Buffer.from('a').toString('base64') });
  g.receive({ t: 'out', seq: 2, sid, fd: 1, data: Buffer.from('b').toString('base64') });
  g.receive({ t: 'exit', seq: 3, sid, code: 0, signal: null });
  const r = await h.done;
  t.equal(out.join(''), 'ab', 'no loss, no duplicate across the reconnect');
  t.equal(r.status, 0);
  g.close();
});
