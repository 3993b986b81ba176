// The channel's mutual handshake and sealed frames (agent/channel.ts, agent/channel-crypto.ts), against
// the attacks they answer: an impostor where the coordinator was, a peer of another version, and a
// machine in the middle that changes, replays, reorders or injects frames (a line-level TCP relay here).
import t, { type Test } from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { serveChannel, connectChannel, proof, CHANNEL_VERSION, type RpcPeer } from '../../launcher/src/agent/channel.js';
import type { SymError } from '../../launcher/src/errors.js';

const SECRET = 'the-job-secret-0123456789abcdef';

function nextPeer(): { onPeer: (p: RpcPeer) => void; peer: Promise<RpcPeer> } {
  let resolve!: (p: RpcPeer) => void;
  const peer = new Promise<RpcPeer>((r) => { resolve = r; });
  return { onPeer: (p) => { p.start(); resolve(p); }, peer };
}

const listen = (server: net.Server, port = 0) => new Promise<number>((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
});

/** Split a socket's bytes into lines. */
function onLines(s: net.Socket, fn: (line: string) => void): void {
  let buf = '';
  s.on('data', (d) => {
    buf += d.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) { fn(buf.slice(0, nl)); buf = buf.slice(nl + 1); }
  });
}

/**
 * A machine in the middle: relays every line both ways, except that each client→server line goes through
 * `c2s(line, index, send)` (index 0 is the hello; 1.. the sealed frames), which decides what to send on.
 */
async function middle(target: number, c2s: (line: string, i: number, send: (l: string) => void) => void) {
  const seen: string[] = [];
  const server = net.createServer((client) => {
    const up = net.createConnection({ host: '127.0.0.1', port: target });
    client.on('error', () => {}); up.on('error', () => {});
    client.on('close', () => up.destroy()); up.on('close', () => client.destroy());
    onLines(up, (l) => { seen.push(l); client.write(l + '\n'); });
    let i = 0;
    onLines(client, (l) => { seen.push(l); c2s(l, i++, (x) => up.write(x + '\n')); });
  });
  const port = await listen(server);
  return { port, seen, close: () => server.close() };
}

/** A server, an agent connected through `c2s`, and what the server peer saw. */
async function throughMiddle(t: Test, c2s: Parameters<typeof middle>[1]) {
  const next = nextPeer();
  const srv = await serveChannel({ host: '127.0.0.1', secret: SECRET, onPeer: next.onPeer });
  const mid = await middle(srv.port, c2s);
  t.teardown(() => { mid.close(); return srv.close({ graceMs: 100 }); });
  const agent = await connectChannel({ host: '127.0.0.1', port: mid.port, secret: SECRET, name: 'h1', timeoutMs: 15_000 });
  agent.start();
  const server = await next.peer;
  const events: unknown[] = [];
  server.on('event', (name: string, data: unknown) => events.push([name, data]));
  const closed = once(server, 'close') as Promise<[SymError | undefined]>;
  return { agent, server, events, closed, mid };
}

t.test('the coordinator proves the secret too: an impostor at its address is refused', async (t) => {
  // the real coordinator, then (it died) a stranger listening on the same address
  const real = await serveChannel({ host: '127.0.0.1', secret: SECRET, onPeer: (p) => p.start() });
  const port = real.port;
  (await connectChannel({ host: '127.0.0.1', port, secret: SECRET, name: 'h1' })).close();
  await real.close({ graceMs: 100 });
  const got: string[] = [];
  // what the stranger answers to a hello: at first, what a v1 coordinator sent (no proof at all)
  let welcome: (hello: Record<string, string>) => Record<string, unknown> = () => ({ t: 'welcome' });
  const impostor = net.createServer((s) => {
    s.on('error', () => {});
    s.write(JSON.stringify({ t: 'challenge', v: CHANNEL_VERSION, nonce: 'a'.repeat(64) }) + '\n');
    let answered = false;
    onLines(s, (l) => {
      got.push(l);
      if (answered) return;
      answered = true;
      s.write(JSON.stringify(welcome(JSON.parse(l) as Record<string, string>)) + '\n' + JSON.stringify({ t: 'call', id: '1', method: 'vm.kill', params: { name: 'vm1' } }) + '\n');
    });
  });
  await listen(impostor, port);
  t.teardown(() => impostor.close());
  const connect = () => connectChannel({ host: '127.0.0.1', port, secret: SECRET, name: 'h1', timeoutMs: 15_000 });
  await t.rejects(connect(), { code: 'ESYM_CHANNEL_AUTH', message: `the peer at 127.0.0.1:${port} did not prove the key (an impostor listening at that address, or another job's coordinator): refused` }, 'a welcome without a proof');
  welcome = (h) => ({ t: 'welcome', v: CHANNEL_VERSION, mac: proof('another-jobs-secret', 'server', 'h1', 'a'.repeat(64), h.nonce!) });
  await t.rejects(connect(), { code: 'ESYM_CHANNEL_AUTH' }, 'a proof made with another secret');
  welcome = (h) => ({ t: 'welcome', v: CHANNEL_VERSION, mac: h.mac });
  await t.rejects(connect(), { code: 'ESYM_CHANNEL_AUTH' }, "the agent's own proof reflected back");
  t.equal(got.length, 3);
  t.ok(got.every((l) => JSON.parse(l).t === 'hello'), 'the impostor got nothing but hellos');
});

t.test('a wrong secret is refused on both sides, and the server says why', async (t) => {
  const refused: SymError[] = [];
  const srv = await serveChannel({ host: '127.0.0.1', secret: SECRET, onPeer: (p) => p.start(), onRefused: (e) => refused.push(e) });
  t.teardown(() => srv.close());
  await t.rejects(connectChannel({ host: '127.0.0.1', port: srv.port, secret: 'wrong', name: 'evil', timeoutMs: 15_000 }), { code: 'ESYM_CHANNEL_AUTH', message: /refused evil: wrong key/ });
  t.equal(refused.length, 1);
  t.match(refused[0], { code: 'ESYM_CHANNEL_AUTH', message: /\(calling itself "evil"\) did not prove the key: refused/ });
});

t.test('a peer of another channel version gets an error naming both versions', async (t) => {
  // an old (v1) agent against this coordinator: its hello has no version
  const refused: SymError[] = [];
  const srv = await serveChannel({ host: '127.0.0.1', secret: SECRET, onPeer: (p) => p.start(), onRefused: (e) => refused.push(e) });
  t.teardown(() => srv.close());
  const old = net.createConnection({ host: '127.0.0.1', port: srv.port });
  const lines: string[] = [];
  onLines(old, (l) => {
    lines.push(l);
    if (lines.length === 1) old.write(JSON.stringify({ t: 'hello', name: 'h1', mac: '00'.repeat(32) }) + '\n');
  });
  await once(old, 'close');
  t.match(JSON.parse(lines[1]!), { t: 'denied', reason: 'version', v: CHANNEL_VERSION });
  t.match(refused[0], { code: 'ESYM_CHANNEL_VERSION', message: new RegExp(`version 1 \\(or none\\), this server speaks version ${CHANNEL_VERSION}`) });
  // this agent against an old (v1) coordinator
  const v1 = net.createServer((s) => { s.on('error', () => {}); s.write(JSON.stringify({ t: 'challenge', nonce: 'ab'.repeat(16), v: 1 }) + '\n'); });
  const port = await listen(v1);
  t.teardown(() => v1.close());
  await t.rejects(connectChannel({ host: '127.0.0.1', port, secret: SECRET, name: 'h1', timeoutMs: 15_000 }),
    { code: 'ESYM_CHANNEL_VERSION', message: new RegExp(`speaks channel version 1, this client speaks version ${CHANNEL_VERSION}`) });
});

t.test('nothing after the handshake crosses the wire in clear', async (t) => {
  const { agent, server, mid } = await throughMiddle(t, (l, _i, send) => send(l));
  server.handle('echo', (p: unknown) => p);
  t.same(await agent.call('echo', { word: 'plaintext-marker' }), { word: 'plaintext-marker' });
  const after = mid.seen.filter((l) => !/"t":"(challenge|hello|welcome)"/.test(l));
  t.equal(after.length, 2, 'one frame each way');
  t.ok(after.every((l) => /^\{"t":"sealed","n":0,"c":"[A-Za-z0-9+/=]+"\}$/.test(l)), 'sealed frames only');
  t.notMatch(mid.seen.join('\n'), /plaintext-marker|echo/, 'neither the method nor the data is readable');
});

t.test('a frame changed in transit closes the connection, and nothing of it is used', async (t) => {
  const { agent, server, events, closed } = await throughMiddle(t, (l, i, send) => {
    if (i !== 1) { send(l); return; }
    const m = JSON.parse(l) as { c: string };
    const c = Buffer.from(m.c, 'base64');
    c[2]! ^= 0x01; // one bit of the ciphertext
    send(JSON.stringify({ ...m, c: c.toString('base64') }));
  });
  agent.notify('job.cmd', { argv: ['ls'] });
  const [reason] = await closed;
  t.match(reason, { code: 'ESYM_CHANNEL_INTEGRITY', message: /frame n=0 failed authentication/ });
  t.equal(server.closeReason, reason);
  t.same(events, [], 'the changed frame was not delivered');
});

t.test('a replayed frame closes the connection after the original was used once', async (t) => {
  const { agent, events, closed } = await throughMiddle(t, (l, i, send) => { send(l); if (i === 1) send(l); });
  agent.notify('job.cmd', { n: 1 });
  const [reason] = await closed;
  t.match(reason, { code: 'ESYM_CHANNEL_INTEGRITY', message: /frame n=0 again \(replayed; expected n=1\)/ });
  t.same(events, [['job.cmd', { n: 1 }]], 'delivered once');
});

t.test('reordered frames close the connection, and neither is used', async (t) => {
  let held = '';
  const { agent, events, closed } = await throughMiddle(t, (l, i, send) => {
    if (i === 1) { held = l; return; }
    send(l);
    if (i === 2) send(held);
  });
  agent.notify('job.cmd', { n: 1 });
  agent.notify('job.cmd', { n: 2 });
  const [reason] = await closed;
  t.match(reason, { code: 'ESYM_CHANNEL_INTEGRITY', message: /frame n=1 out of order \(expected n=0\)/ });
  t.same(events, []);
});

t.test('a plain message injected after the handshake closes the connection', async (t) => {
  const { agent, events, closed } = await throughMiddle(t, (l, i, send) => {
    if (i === 1) send(JSON.stringify({ t: 'event', name: 'job.cmd', data: { injected: true } }));
    send(l);
  });
  agent.notify('job.cmd', { n: 1 });
  const [reason] = await closed;
  t.match(reason, { code: 'ESYM_CHANNEL_INTEGRITY', message: /an unsealed message \(t="event"\) after the handshake/ });
  t.same(events, []);
});

t.test('a frame recorded on one connection does not open on the next (fresh keys)', async (t) => {
  let recorded = '';
  const { agent: a1, closed: c1 } = await throughMiddle(t, (l, i, send) => { if (i === 1) recorded = l; send(l); });
  a1.notify('job.cmd', { first: true });
  a1.close();
  await c1;
  t.ok(recorded, 'a frame was recorded');
  const { agent, events, closed } = await throughMiddle(t, (l, i, send) => send(i === 1 ? recorded : l));
  agent.notify('job.cmd', { second: true });
  const [reason] = await closed;
  t.match(reason, { code: 'ESYM_CHANNEL_INTEGRITY', message: /frame n=0 failed authentication/ });
  t.same(events, []);
});

t.test('a call in flight when a bad frame closes the channel fails naming the reason', async (t) => {
  const { agent, server } = await throughMiddle(t, (l, i, send) => send(i === 2 ? l.replace('"n":1', '"n":5') : l));
  agent.handle('wait', () => new Promise(() => {}));
  const pending = server.call('wait');
  const agentClosed = once(agent, 'close');
  agent.notify('x', {});
  agent.notify('y', {});
  await t.rejects(pending, { code: 'ESYM_CHANNEL_CLOSED', message: /frame n=5 out of order \(expected n=1\)/ });
  await agentClosed;
});
