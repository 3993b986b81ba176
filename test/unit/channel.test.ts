import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { serveChannel, connectChannel, proof, CHANNEL_VERSION, type RpcPeer } from '../../launcher/src/agent/channel.js';
import { GuestClient } from '../../launcher/src/agent/guest.js';
import type { HostFrame } from '../../guest/protocol/index.js';

/** The server side of the next authenticated connection, as a promise (no waiting for it by time). */
function nextPeer(): { onPeer: (p: RpcPeer) => void; peer: Promise<RpcPeer> } {
  let resolve!: (p: RpcPeer) => void;
  const peer = new Promise<RpcPeer>((r) => { resolve = r; });
  return { onPeer: (p) => { p.start(); resolve(p); }, peer };
}

t.test('authenticated channel: right secret connects and calls, wrong secret is refused', async (t) => {
  const next = nextPeer();
  const srv = await serveChannel({ host: '127.0.0.1', secret: 'right', onPeer: next.onPeer });
  t.teardown(() => srv.close());
  const agent = await connectChannel({ host: '127.0.0.1', port: srv.port, secret: 'right', name: 'host1' });
  agent.handle('echo', (p: unknown) => p).start();
  const server = await next.peer;
  t.equal(server.name, 'host1');
  t.same(await server.call('echo', { a: 1 }), { a: 1 });
  await t.rejects(server.call('nope'), { code: 'ESYM_NO_METHOD' });
  await t.rejects(connectChannel({ host: '127.0.0.1', port: srv.port, secret: 'wrong', name: 'evil', timeoutMs: 2000 }), { code: 'ESYM_CHANNEL_AUTH' });
  const serverSawClose = once(server, 'close');
  agent.close();
  await serverSawClose;
  await t.rejects(server.call('echo'), { code: 'ESYM_CHANNEL_CLOSED' });
});

t.test('calls that arrive before handlers are registered wait for start()', async (t) => {
  const next = nextPeer();
  const srv = await serveChannel({ host: '127.0.0.1', secret: 's', onPeer: next.onPeer });
  t.teardown(() => srv.close());
  const agent = await connectChannel({ host: '127.0.0.1', port: srv.port, secret: 's', name: 'h' });
  const server = await next.peer;
  const arrived = once(agent.sock, 'data'); // after the peer's own reader: the call is queued by then
  const pending = server.call('late', {});
  await arrived;
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

// Regression (recover hang): a peer that never closes its end (its network namespace was removed, so
// no FIN ever comes; here: a client that keeps its side half-open) must not hold the server open.
t.test('server close() cuts connections whose peers never close, and names them', async (t) => {
  const srv = await serveChannel({ host: '127.0.0.1', secret: 's3', onPeer: (p) => p.start() });
  const stubborn = (name?: string) => new Promise<net.Socket>((resolve) => {
    const s = net.createConnection({ host: '127.0.0.1', port: srv.port, allowHalfOpen: true });
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      const first = buf.split('\n')[0]!;
      if (!name) { resolve(s); return; } // stays in the handshake
      const m = JSON.parse(first) as { t: string; nonce?: string };
      const cn = 'c'.repeat(64);
      if (m.t === 'challenge') { s.write(JSON.stringify({ t: 'hello', v: CHANNEL_VERSION, name, nonce: cn, mac: proof('s3', 'client', name, String(m.nonce), cn) }) + '\n'); buf = ''; }
      else if (m.t === 'welcome') resolve(s);
    });
  });
  const a = await stubborn('host9');
  const b = await stubborn();
  const ended: string[] = [];
  a.on('end', () => ended.push('a'));
  const r = await Promise.race([srv.close({ graceMs: 200 }), new Promise<'hang'>((res) => setTimeout(() => res('hang'), 5000).unref())]);
  t.not(r, 'hang', 'close() returns although the peers keep their ends open');
  if (r === 'hang') return;
  t.equal(r.cut.length, 2, 'both connections were cut');
  t.match(r.cut.join(' '), /host9 \(127\.0\.0\.1:\d+\)/, 'an authenticated peer is named');
  t.match(r.cut.join(' '), /unauthenticated peer/);
  t.same(ended, ['a'], 'the peer was told (FIN) before it was cut');
  t.same(await srv.close(), r, 'idempotent');
  a.destroy(); b.destroy();
});

t.test('server close() waits for peers that do close within the grace', async (t) => {
  const next = nextPeer();
  const srv = await serveChannel({ host: '127.0.0.1', secret: 's4', onPeer: next.onPeer });
  const agent = await connectChannel({ host: '127.0.0.1', port: srv.port, secret: 's4', name: 'h1' });
  agent.start();
  await next.peer; // the server holds the connection as a named peer
  const r = await srv.close({ graceMs: 2000 });
  t.same(r.cut, [], 'a peer that answers the FIN is not cut');
  t.ok(agent.closed, 'the agent saw its channel close');
});
