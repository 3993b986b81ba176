import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QmpClient, QmpCommandError, QmpDisconnectedError } from '../../launcher/src/qmp/client.js';
import { FakeQmpServer } from '../fakes/qmp-server.js';

async function setup(t: { teardown(fn: () => unknown): void }, opts = {}) {
  const srv = await FakeQmpServer.start(opts);
  const qmp = await QmpClient.connect(srv.socketPath, { timeoutMs: 2000 });
  t.teardown(async () => { await qmp.close(); await srv.close(); });
  return { srv, qmp };
}

t.test('connect: greeting parsed, capabilities negotiated, state ready', async (t) => {
  const { srv, qmp } = await setup(t, { version: { major: 10, minor: 0, micro: 2 } });
  t.equal(qmp.state, 'ready');
  t.same(qmp.version, { major: 10, minor: 0, micro: 2 });
  t.same(srv.calls.map((c) => c.command), ['qmp_capabilities']);
  const v = await qmp.execute<{ qemu: { major: number } }>('query-version');
  t.equal(v.qemu.major, 10);
});

t.test('connect retries until the socket appears', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qmp-retry-'));
  const sock = path.join(dir, 'late.sock');
  const srv = await FakeQmpServer.start({ deferListen: true, socketPath: sock });
  t.teardown(async () => { await srv.close(); fs.rmSync(dir, { recursive: true, force: true }); });
  const t0 = Date.now();
  setTimeout(() => void srv.listen(), 300);
  const qmp = await QmpClient.connect(sock, { timeoutMs: 3000 });
  t.ok(Date.now() - t0 >= 250, 'waited for the socket');
  t.equal(qmp.state, 'ready');
  await qmp.close();
  t.equal(qmp.state, 'closed');
});

t.test('connect gives up with ESYM_QMP_CONNECT / ESYM_QMP_TIMEOUT', async (t) => {
  const missing = path.join(os.tmpdir(), `nope-${process.pid}.sock`);
  await t.rejects(QmpClient.connect(missing, { timeoutMs: 2000, retryUntilMs: 0 }), { code: 'ESYM_QMP_CONNECT' });
  const t0 = Date.now();
  await t.rejects(QmpClient.connect(missing, { timeoutMs: 300 }), { code: /ESYM_QMP_(TIMEOUT|CONNECT)/ });
  t.ok(Date.now() - t0 < 1500);
  // server that never greets
  const srv = await FakeQmpServer.start({ greeting: false });
  t.teardown(() => srv.close());
  await t.rejects(QmpClient.connect(srv.socketPath, { timeoutMs: 300 }), { code: 'ESYM_QMP_TIMEOUT' });
  const ac = new AbortController();
  const connecting = QmpClient.connect(srv.socketPath, { timeoutMs: 5000, signal: ac.signal });
  await srv.waitForConnection(); // connected, waiting for the greeting that never comes
  ac.abort(new Error('stop now'));
  await t.rejects(connecting, { message: 'stop now' });
});

t.test('id matching with out-of-order replies and events in between', async (t) => {
  const { srv, qmp } = await setup(t);
  const held: Array<() => void> = [];
  srv.on('slow', (_a, call, conn) => { held.push(() => conn.reply(call, { return: 'slow' })); return { noReply: true }; });
  srv.on('fast', (a) => ({ return: { echo: a?.n } }));
  const events: string[] = [];
  qmp.on('event', (e) => events.push(e.event));
  const p1 = qmp.execute('slow');
  const p2 = qmp.execute('fast', { n: 2 });
  const p3 = qmp.execute('fast', { n: 3 });
  t.same(await p2, { echo: 2 });
  t.same(await p3, { echo: 3 });
  srv.emitEvent('RESUME');
  srv.emitEvent('STOP');
  await srv.waitForCall('slow');
  held[0]!();
  t.equal(await p1, 'slow');
  t.same(events, ['RESUME', 'STOP']);
});

t.test('command errors carry errorClass and command', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('device_del', (a) => ({ error: { class: 'DeviceNotFound', desc: `Device '${a?.id}' not found` } }));
  const e: any = await qmp.execute('device_del', { id: 'ghost' }).catch((e: any) => e);
  t.ok(e instanceof QmpCommandError);
  t.equal(e.code, 'ESYM_QMP_COMMAND');
  t.equal(e.errorClass, 'DeviceNotFound');
  t.equal(e.command, 'device_del');
  t.match(e.message, /ghost/);
  const e2: any = await qmp.execute('no-such-command').catch((e: any) => e);
  t.equal(e2.errorClass, 'CommandNotFound');
  t.equal(qmp.state, 'ready', 'a command error does not close the connection');
});

t.test('timeout rejects only that call; a late reply is ignored', async (t) => {
  const { srv, qmp } = await setup(t);
  let late: (() => void) | undefined;
  srv.on('hang', (_a, call, conn) => { late = () => conn.reply(call, { return: 'late' }); return { noReply: true }; });
  const warnings: unknown[] = [];
  qmp.on('warning', (w) => warnings.push(w));
  await t.rejects(qmp.execute('hang', undefined, { timeoutMs: 100 }), { code: 'ESYM_QMP_TIMEOUT' });
  late!();
  t.same(await qmp.execute('query-version').then((v: any) => v.qemu.major), 7, 'still usable');
  t.equal(warnings.length, 1, 'late reply reported as a warning');
});

t.test('abort signal rejects a call with the abort reason', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('hang', () => ({ noReply: true }));
  const ac = new AbortController();
  const p = qmp.execute('hang', undefined, { signal: ac.signal });
  await srv.waitForCall('hang'); // the call is out, its reply will never come
  ac.abort(new Error('user cancelled'));
  await t.rejects(p, { message: 'user cancelled' });
});

t.test('disconnect rejects all pending calls and waits', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('hang', () => ({ noReply: true }));
  const p1 = qmp.execute('hang');
  const p2 = qmp.execute('hang');
  const w = qmp.waitEvent('DEVICE_DELETED', undefined, { timeoutMs: 5000 });
  await srv.waitForCall('hang');
  srv.dropConnections();
  for (const p of [p1, p2, w.promise]) {
    const e: any = await p.catch((e: any) => e);
    t.ok(e instanceof QmpDisconnectedError);
    t.equal(e.code, 'ESYM_QMP_DISCONNECTED');
  }
  await qmp.closed;
  t.equal(qmp.state, 'closed');
  await t.rejects(qmp.execute('query-version'), { code: 'ESYM_QMP_DISCONNECTED' });
});

t.test('waitEvent subscribes immediately, filters, times out, cancels', async (t) => {
  const { srv, qmp } = await setup(t);
  // The event arrives in the same chunk as the reply of the command that causes it.
  srv.on('device_del', (a, call, conn) => {
    conn.sendEvent('DEVICE_DELETED', { path: `/machine/peripheral/${a?.id}/virtio-backend` });
    conn.reply(call, { return: {} });
    conn.sendEvent('DEVICE_DELETED', { device: a?.id, path: `/machine/peripheral/${a?.id}` });
  });
  const w = qmp.waitEvent('DEVICE_DELETED', (d) => d.device === 'nic0', { timeoutMs: 2000 });
  await qmp.execute('device_del', { id: 'nic0' });
  const ev = await w.promise;
  t.equal(ev.data.device, 'nic0');
  t.ok(ev.timestamp.seconds > 0);

  const w2 = qmp.waitEvent('NEVER', undefined, { timeoutMs: 80 });
  await t.rejects(w2.promise, { code: 'ESYM_QMP_TIMEOUT' });
  const w3 = qmp.waitEvent('NEVER');
  w3.cancel();
  await t.rejects(w3.promise, { code: 'ESYM_QMP_CANCELLED' });
  const w4 = qmp.waitEvent('NEVER');
  w4.cancel(); // never awaited: must not produce an unhandled rejection
  t.equal(qmp.listenerCount('event'), 0, 'no listeners leak');
});

t.test('oversize or garbage line from the server closes the client with a protocol error', async (t) => {
  const srv = await FakeQmpServer.start();
  t.teardown(() => srv.close());
  const qmp = await QmpClient.connect(srv.socketPath, { timeoutMs: 2000, maxLineBytes: 1024 });
  srv.on('big', (_a, call, conn) => { conn.sendRaw(JSON.stringify({ return: 'x'.repeat(5000), id: call.id })); });
  const reasons: Error[] = [];
  qmp.on('close', (r) => reasons.push(r));
  const e: any = await qmp.execute('big').catch((e: any) => e);
  t.equal(e.code, 'ESYM_QMP_DISCONNECTED');
  t.equal(reasons[0] && (reasons[0] as any).code, 'ESYM_QMP_PROTOCOL');
  t.equal(qmp.state, 'closed');

  const qmp2 = await QmpClient.connect(srv.socketPath, { timeoutMs: 2000 });
  const p = qmp2.execute('hang-forever', undefined, {}).catch((e: any) => e);
  srv.sendRaw('this is not json');
  const e2: any = await p;
  t.match(e2.code, /ESYM_QMP_(DISCONNECTED|COMMAND)/);
  await qmp2.closed;
  t.equal(qmp2.state, 'closed');
});

t.test('greeting with garbage fails connect with a protocol error', async (t) => {
  const srv = await FakeQmpServer.start({ greeting: false });
  t.teardown(() => srv.close());
  const p = QmpClient.connect(srv.socketPath, { timeoutMs: 2000 });
  await srv.waitForConnection();
  srv.sendRaw('{"hello": "world"}');
  await t.rejects(p, { code: 'ESYM_QMP_PROTOCOL' });
});
