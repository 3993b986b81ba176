// The job's control socket (coordinator/job/control.ts, agent/channel.ts serveUnix/connectUnix): a client
// must prove the job's control key, a file next to the socket readable by the job's owner only; what it
// may call is the contract of wire/control.ts, and params that break it are refused.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { PassThrough, Duplex } from 'node:stream';
import { serveUnix, connectUnix, RpcPeer } from '../../launcher/src/agent/channel.js';
import { writeControlKey, readControlKey, serveControl } from '../../launcher/src/coordinator/job/control.js';
import { EventSink } from '../../launcher/src/coordinator/job/events.js';
import { callerOf } from '../../launcher/src/agent/typed.js';
import type { ControlMethods, JobStatus } from '../../launcher/src/wire/control.js';
import type { SymError } from '../../launcher/src/errors.js';

async function job(t: Test) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-control-'));
  const sock = path.join(dir, 'control.sock');
  const key = writeControlKey(dir);
  const calls: string[] = [];
  const refused: SymError[] = [];
  const srv = await serveUnix(sock, {
    secret: key,
    onPeer: (p) => p.handle('status', () => { calls.push('status'); return { state: 'running' }; }).start(),
    onRefused: (e) => refused.push(e),
  });
  t.teardown(async () => { await srv.close({ graceMs: 100 }); fs.rmSync(dir, { recursive: true, force: true }); });
  return { dir, sock, key, calls, refused };
}

t.test('the control key: 64 hex digits, mode 0600, a new one for every coordinator', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-control-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const k1 = writeControlKey(dir);
  t.match(k1, /^[0-9a-f]{64}$/);
  t.equal(fs.statSync(path.join(dir, 'control.key')).mode & 0o777, 0o600);
  t.equal(readControlKey(dir), k1);
  const k2 = writeControlKey(dir); // symrun recover: a dead coordinator's key is replaced
  t.not(k2, k1);
  t.equal(readControlKey(dir), k2);
  fs.writeFileSync(path.join(dir, 'control.key'), 'short\n');
  t.throws(() => readControlKey(dir), { code: 'ESYM_CONTROL_KEY', message: /control\.key is not 64 hex digits/ });
  fs.rmSync(path.join(dir, 'control.key'));
  t.throws(() => readControlKey(dir), { code: 'ESYM_CONTROL_KEY', field: 'control key', message: /control\.key: no such file/, fix: /older symrun/ });
});

t.test('a client with the key talks to the job; the job proves the key back', async (t) => {
  const j = await job(t);
  const c = await connectUnix(j.sock, { secret: readControlKey(j.dir) });
  t.same(await c.call('status'), { state: 'running' });
  t.ok(c.sealed, 'the connection is sealed');
  c.close();
});

t.test('a client without the key is refused before anything reaches the job', async (t) => {
  const j = await job(t);
  // what every client could do before: connect (it may, the socket mode aside) and call
  const raw = net.createConnection(j.sock);
  const got: string[] = [];
  raw.on('data', (d) => got.push(...d.toString().split('\n').filter(Boolean)));
  raw.write(JSON.stringify({ t: 'call', id: '1', method: 'status', params: {} }) + '\n');
  await once(raw, 'close');
  t.same(got.map((l) => JSON.parse(l).t), ['challenge', 'denied'], 'a challenge, then denied: no result');
  t.same(j.calls, [], 'the job ran nothing');
  t.match(j.refused[0], { code: 'ESYM_CHANNEL_AUTH', message: /sent "call" instead of the handshake's hello/ });
  // a key of another job (or a guess)
  await t.rejects(connectUnix(j.sock, { secret: 'f'.repeat(64) }), { code: 'ESYM_CHANNEL_AUTH', message: /control socket .* refused control client .*wrong key/ });
  t.same(j.calls, []);
});

t.test('control-proxy: proves the key on the batch host, relays unsealed over stdio', async (t) => {
  const j = await job(t);
  // the proxy's two ends, as cli/jobref.ts controlProxy wires them (srun's stdio here: two pipes)
  const toUser = new PassThrough();
  const fromUser = new PassThrough();
  const jobSide = await connectUnix(j.sock, { secret: readControlKey(j.dir) });
  const out = new RpcPeer(Duplex.from({ readable: fromUser, writable: toUser }));
  out.relayTo((m) => jobSide.send(m));
  jobSide.relayTo((m) => out.send(m));
  // the user's side (viaSrun): a plain peer on the other ends of the pipes
  const user = new RpcPeer(Duplex.from({ readable: toUser, writable: fromUser })).start();
  t.same(await user.call('status'), { state: 'running' });
  t.same(j.calls, ['status']);
  jobSide.close();
  user.close();
});

t.test('the control contract (wire/control.ts): typed answers; params that break it are refused naming the field, nothing runs', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-control-'));
  const cleanups: Array<() => unknown> = [];
  t.teardown(async () => { for (const c of cleanups) await c(); fs.rmSync(dir, { recursive: true, force: true }); });
  const cancelled: string[] = [];
  const status: JobStatus = {
    jobId: 'j1', pid: 1, state: 'running', app: ['./ring'], cwd: dir, hosts: [{ name: 'h1', ip: '10.0.0.1', role: 'vm', agent: true }],
    vms: [{ name: 'vm1', host: 'h1', ip: '198.18.0.2', mac: '52:54:00:00:00:01', state: 'ready', agent: 'ready' }],
    migrations: [], restarts: { count: 0, max: 1, lostHosts: [], log: [] }, phases: {},
  };
  const job = { id: 'j1', runDir: dir, state: 'running', vms: new Map(), err: process.stderr, onCleanup: (_w: string, fn: () => unknown) => cleanups.push(fn) };
  const migrations = { cancel: (vm: string) => { cancelled.push(vm); return { op: 'm1', accepted: true, phase: 'perform' }; } };
  await serveControl(job as never, { status: () => status, migrations: migrations as never, checkpoints: {} as never, events: new EventSink(() => undefined) });
  const peer = await connectUnix(path.join(dir, 'control.sock'), { secret: readControlKey(dir) });
  cleanups.unshift(() => peer.close());
  const c = callerOf<ControlMethods>(peer);
  t.same(await c.call('status', {}), status);
  t.same(await c.call('cancel', { vm: 'vm1' }), { op: 'm1', accepted: true, phase: 'perform' });
  await t.rejects(peer.call('cancel', { vm: 1 }), { code: 'ESYM_RPC_PARAMS', field: 'vm', message: 'job j1 cancel: params.vm must be a string, got number' });
  await t.rejects(peer.call('migrate', { to: 'h2' }), { code: 'ESYM_RPC_PARAMS', field: 'vm', message: /job j1 migrate: params\.vm must be a string, got undefined/ });
  await t.rejects(peer.call('exec.start', { vm: 'vm1', argv: 'ls -l' }), { code: 'ESYM_RPC_PARAMS', field: 'argv', message: /params\.argv must be an array, got string/ });
  await t.rejects(peer.call('status', 'now'), { code: 'ESYM_RPC_PARAMS', field: 'params' });
  await t.rejects(peer.call('frobnicate', {}), { code: 'ESYM_NO_METHOD' });
  t.same(cancelled, ['vm1'], 'only the well-formed cancel reached the job');
});
