// Encrypted migration streams: the per-migration PSK (migration/psk.ts), QEMU's TLS credentials
// (migration/tls.ts), and the host agent's QMP sequence on both sides against the fake QMP server:
// credentials and tls-creds set BEFORE migrate-incoming / migrate, key files 0600 while needed and gone
// afterwards, a failed handshake reported as ESYM_MIGRATION_TLS.
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QmpClient } from '../../launcher/src/qmp/client.js';
import { HostAgent } from '../../launcher/src/agent/hostagent.js';
import { derivePsk, newTlsRequest, pskIdentity, tlsDir, writePskFile, removePskDir, PSK_FILE, type MigrationTlsRequest } from '../../launcher/src/migration/psk.js';
import { tlsCredsId, tlsObjectArgs, tlsFailure } from '../../launcher/src/migration/tls.js';
import type { VmProcess, VmSpec } from '../../launcher/src/vm/index.js';
import type { RpcPeer } from '../../launcher/src/agent/channel.js';
import { FakeQmpServer } from '../fakes/qmp-server.js';

const SECRET = 'a'.repeat(20) + 'job-secret';
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mig-tls-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
};
const mode = (f: string) => fs.statSync(f).mode & 0o777;

/** RFC 5869 written out with HMAC, to check derivePsk against something that is not node's hkdfSync. */
function hkdfByHand(ikm: Buffer, salt: Buffer, info: Buffer, len: number): Buffer {
  const prk = crypto.createHmac('sha256', salt).update(ikm).digest();
  let prev = Buffer.alloc(0);
  const out: Buffer[] = [];
  for (let i = 1; Buffer.concat(out).length < len; i++) {
    prev = crypto.createHmac('sha256', prk).update(Buffer.concat([prev, info, Buffer.from([i])])).digest();
    out.push(prev);
  }
  return Buffer.concat(out).subarray(0, len);
}

// ---------------------------------------------------------------- the key

t.test('derivePsk: HKDF-SHA256(secret, salt, "symrun migration tls OP"), 32 bytes', async (t) => {
  const r: MigrationTlsRequest = { op: 'm0a1b2c', salt: '00112233445566778899aabbccddeeff' };
  const k = derivePsk(SECRET, r);
  t.equal(k.length, 32);
  t.same(k, hkdfByHand(Buffer.from(SECRET), Buffer.from(r.salt, 'hex'), Buffer.from('symrun migration tls m0a1b2c'), 32), 'matches RFC 5869 computed by hand');
  t.same(derivePsk(SECRET, { ...r }), k, 'both host agents derive the same key from the same request');
});

t.test('derivePsk: a different op, salt or job secret gives a different key; requests never repeat', async (t) => {
  const r = newTlsRequest('m000001');
  const keys = new Set<string>([
    derivePsk(SECRET, r),
    derivePsk(SECRET, { ...r, op: 'm000002' }),
    derivePsk(SECRET, { ...r, salt: newTlsRequest('m000001').salt }),
    derivePsk(`${SECRET}x`, r),
  ].map((k) => k.toString('hex')));
  t.equal(keys.size, 4, 'four distinct keys');
  const salts = new Set(Array.from({ length: 200 }, () => newTlsRequest('m000001').salt));
  t.equal(salts.size, 200, 'the same op id gets a new salt each time');
  const perOp = new Set(Array.from({ length: 50 }, (_, i) => derivePsk(SECRET, newTlsRequest(`m${String(i).padStart(6, '0')}`)).toString('hex')));
  t.equal(perOp.size, 50, 'a key per migration');
});

t.test('derivePsk refuses a missing secret and malformed requests, naming the field', async (t) => {
  const r = newTlsRequest('m1');
  t.throws(() => derivePsk('', r), { code: 'ESYM_MIGRATION_TLS', field: 'SYMRUN_JOB_SECRET' });
  t.throws(() => derivePsk(SECRET, { ...r, op: '../x' }), { code: 'ESYM_MIGRATION_TLS', field: 'tls.op' });
  t.throws(() => derivePsk(SECRET, { ...r, salt: 'zz' }), { code: 'ESYM_MIGRATION_TLS', field: 'tls.salt' });
});

t.test('writePskFile: dir 0700, keys.psk 0600 with identity:hexkey; refuses a leftover; removePskDir', async (t) => {
  const run = tmp();
  const old = process.umask(0o022);
  t.teardown(() => process.umask(old));
  const dir = tlsDir(run, 'm9');
  const key = derivePsk(SECRET, newTlsRequest('m9'));
  const file = writePskFile(dir, pskIdentity('m9'), key);
  t.equal(file, path.join(dir, PSK_FILE));
  t.equal(mode(dir), 0o700);
  t.equal(mode(file), 0o600);
  t.equal(fs.readFileSync(file, 'utf8'), `symrun-m9:${key.toString('hex')}\n`);
  t.throws(() => writePskFile(dir, pskIdentity('m9'), key), { code: 'ESYM_MIGRATION_TLS', field: 'tls dir' }, 'an existing directory is not reused');
  removePskDir(dir);
  t.notOk(fs.existsSync(dir));
  removePskDir(dir);
  t.pass('removing twice is harmless');
});

t.test('tlsObjectArgs: server without username, client with it', async (t) => {
  t.same(tlsObjectArgs({ id: tlsCredsId('m1'), endpoint: 'server', dir: '/run/x/tls-m1' }), ['-object', 'tls-creds-psk,id=symrun-tls-m1,endpoint=server,dir=/run/x/tls-m1']);
  t.throws(() => tlsObjectArgs({ id: 'x', endpoint: 'server', dir: '/d', username: 'u' }), { code: 'ESYM_MIGRATION_TLS', field: 'username' });
  t.throws(() => tlsObjectArgs({ id: 'x', endpoint: 'client', dir: '/d' }), { code: 'ESYM_MIGRATION_TLS', field: 'username' });
  t.throws(() => tlsObjectArgs({ id: 'x', endpoint: 'server', dir: '/a,b' }), { code: 'ESYM_MIGRATION_TLS', field: 'dir' });
});

t.test('tlsFailure: a handshake error or a stream that broke before any byte → TLS error; other failures pass', async (t) => {
  const where = { src: 'h2', dst: 'tcp:10.0.0.4:4444' };
  const e = tlsFailure({ status: 'failed', errorDesc: 'TLS handshake failed: Decryption has failed.', transferredBytes: 0, remainingBytes: 0, totalBytes: 0 }, where)!;
  t.equal(e.code, 'ESYM_MIGRATION_TLS');
  t.match(e.message, /^TLS handshake failed between h2 and tcp:10\.0\.0\.4:4444/);
  t.equal(e.field, 'migration.tls');
  t.ok(tlsFailure({ status: 'failed', errorDesc: 'Unable to write to socket: Connection reset by peer', transferredBytes: 0, remainingBytes: 0, totalBytes: 0 }, where));
  t.equal(tlsFailure({ status: 'failed', errorDesc: 'Unable to write to socket: Connection reset by peer', transferredBytes: 5e6, remainingBytes: 0, totalBytes: 0 }, where), undefined);
  t.equal(tlsFailure({ status: 'completed', transferredBytes: 0, remainingBytes: 0, totalBytes: 0 }, where), undefined);
});

// ---------------------------------------------------------------- the host agent's QMP sequence

const fakePeer = (): RpcPeer => {
  const p = { handle: () => p, on: () => p, start: () => undefined, notify: () => undefined, closed: false };
  return p as unknown as RpcPeer;
};

interface Side { agent: HostAgent; srv: FakeQmpServer; spawned: VmSpec[]; seen: Record<string, { mode: number; text: string } | undefined> }

/** A host agent whose "QEMU" is a fake QMP server; `seen[cmd]` records the key file when cmd arrived. */
async function side(t: { teardown(fn: () => unknown): void }, host: string, runDir: string, keyDir: () => string | undefined): Promise<Side> {
  const srv = await FakeQmpServer.start();
  const spawned: VmSpec[] = [];
  const seen: Side['seen'] = {};
  const look = () => {
    const d = keyDir();
    const f = d && path.join(d, PSK_FILE);
    return f && fs.existsSync(f) ? { mode: mode(f), text: fs.readFileSync(f, 'utf8') } : undefined;
  };
  srv.on('migrate-set-capabilities', () => ({ return: {} }))
    .on('migrate-set-parameters', () => ({ return: {} }))
    .on('object-add', () => { seen['object-add'] = look(); return { return: {} }; })
    .on('object-del', () => ({ return: {} }))
    .on('migrate-incoming', () => ({ return: {} }))
    .on('query-status', () => ({ return: { status: 'running', running: true } }));
  const qmps: QmpClient[] = [];
  const agent = new HostAgent(host, fakePeer(), {
    secret: SECRET,
    spawnVm: async (spec) => {
      spawned.push(spec);
      seen.spawn = look();
      const qmp = await QmpClient.connect(srv.socketPath, { timeoutMs: 2000 });
      qmps.push(qmp);
      return { name: spec.name, pid: 0, qmp, exited: new Promise(() => undefined), consoleLog: '', stderrLog: path.join(runDir, 'stderr.log'), args: [], qemu: {} as never, stop: async () => ({ code: 0, signal: null }) } as unknown as VmProcess;
    },
  });
  t.teardown(async () => { await agent.stopAll(); for (const q of qmps) await q.close(); await srv.close(); });
  return { agent, srv, spawned, seen };
}

const specIn = (runDir: string): VmSpec => ({
  name: 'vm2', runDir, accel: 'tcg', memoryMiB: 64, cpus: 1, machine: 'q35', kernel: '/k', initrd: '/i', rootfs: '/r', append: '',
  agentSocket: path.join(runDir, 'agent.sock'), agentPortName: 'org.symrun.agent.0', rootPorts: 1, extraArgs: ['-global', 'x=y'],
});
const cmds = (srv: FakeQmpServer) => srv.calls.filter((c) => c.command !== 'qmp_capabilities').map((c) => c.command);

t.test('TLS on: destination and source set credentials and tls-creds before migrate-incoming / migrate; keys 0600, then gone', async (t) => {
  const run = tmp();
  const tls = newTlsRequest('m4d5e6f');
  const dstRun = path.join(run, 'h4', 'vm2');
  const srcRun = path.join(run, 'h2', 'vm2');
  const dst = await side(t, 'h4', dstRun, () => tlsDir(dstRun, tls.op));
  const src = await side(t, 'h2', srcRun, () => tlsDir(srcRun, tls.op));
  const id = tlsCredsId(tls.op);
  const expectedLine = `symrun-m4d5e6f:${derivePsk(SECRET, tls).toString('hex')}\n`;

  // destination
  const prep = await dst.agent.prepareIncoming(specIn(dstRun), [], { maxBandwidthBytes: 1e9 }, '127.0.0.1', tls);
  t.equal(prep.tls, true);
  const args = dst.spawned[0]!.extraArgs;
  t.same(args.slice(0, 2), ['-global', 'x=y'], 'the spec\'s own arguments are kept');
  t.same(args.slice(2), ['-object', `tls-creds-psk,id=${id},endpoint=server,dir=${tlsDir(dstRun, tls.op)}`], 'server credentials on the command line, no username');
  t.same(dst.seen.spawn, { mode: 0o600, text: expectedLine }, 'keys.psk (0600) exists when QEMU starts');
  t.same(cmds(dst.srv), ['migrate-set-capabilities', 'migrate-set-parameters', 'migrate-incoming', 'query-migrate']);
  t.equal(dst.srv.calls.find((c) => c.command === 'migrate-set-parameters')!.arguments!['tls-creds'], id, 'tls-creds set before migrate-incoming');

  // source (its own agent, same job secret: derives the same key without it crossing a wire)
  await src.agent.startVm(specIn(srcRun), []);
  let status = 'active';
  src.srv.on('migrate', () => ({ return: {} })).on('query-migrate', () => {
    const r = { return: { status, ram: { transferred: 1000, remaining: 0, total: 1000 }, 'total-time': 5, downtime: 1 } };
    status = 'completed';
    return r;
  });
  const done = await src.agent.perform({ name: 'vm2', uri: prep.uri, tuning: { maxBandwidthBytes: 1e9 }, mode: 'live', op: tls.op, tls });
  t.equal(done.status, 'completed');
  const sc = cmds(src.srv);
  t.same(sc.slice(0, 4), ['object-add', 'migrate-set-capabilities', 'migrate-set-parameters', 'migrate'], 'credentials, capabilities, parameters, then migrate');
  t.same(src.srv.calls.find((c) => c.command === 'object-add')!.arguments, { 'qom-type': 'tls-creds-psk', id, endpoint: 'client', dir: tlsDir(srcRun, tls.op), username: 'symrun-m4d5e6f' });
  t.same(src.seen['object-add'], { mode: 0o600, text: expectedLine }, 'the source wrote the same key (0600) before object-add');
  t.equal(src.srv.calls.find((c) => c.command === 'migrate-set-parameters')!.arguments!['tls-creds'], id, 'tls-creds set on the source before migrate');
  t.notOk(fs.existsSync(tlsDir(srcRun, tls.op)), 'source key directory removed once the migration is over');
  t.same(sc.slice(-2), ['migrate-set-parameters', 'object-del'], 'source credentials dropped afterwards');

  t.ok(fs.existsSync(tlsDir(dstRun, tls.op)), 'the destination keeps its key until the stream is in');
  dst.srv.on('query-migrate', () => ({ return: { status: 'completed' } }));
  await dst.agent.finishIncoming('vm2', 5000);
  t.notOk(fs.existsSync(tlsDir(dstRun, tls.op)), 'destination key directory removed after finish');
  const tail = dst.srv.calls.slice(-2).map((c) => [c.command, c.arguments]);
  t.same(tail, [['migrate-set-parameters', { 'tls-creds': '' }], ['object-del', { id }]], 'destination back to plain (a later checkpoint is not affected)');
});

t.test('TLS off: no credentials, tls-creds "" on both sides, no key directory', async (t) => {
  const run = tmp();
  const dstRun = path.join(run, 'h4', 'vm2');
  const dst = await side(t, 'h4', dstRun, () => undefined);
  await dst.agent.prepareIncoming(specIn(dstRun), [], { maxBandwidthBytes: 1e9 }, '127.0.0.1');
  t.same(dst.spawned[0]!.extraArgs, ['-global', 'x=y']);
  t.equal(dst.srv.calls.find((c) => c.command === 'migrate-set-parameters')!.arguments!['tls-creds'], '');
  t.same(fs.readdirSync(dstRun).filter((f) => f.startsWith('tls-')), []);
  const srcRun = path.join(run, 'h2', 'vm2');
  const src = await side(t, 'h2', srcRun, () => undefined);
  await src.agent.startVm(specIn(srcRun), []);
  src.srv.on('migrate', () => ({ return: {} })).on('query-migrate', () => ({ return: { status: 'completed', 'total-time': 3, ram: { transferred: 1, remaining: 0, total: 1 } } }));
  await src.agent.perform({ name: 'vm2', uri: 'tcp:127.0.0.1:1', tuning: { maxBandwidthBytes: 1e9 }, mode: 'live', op: 'm1' });
  t.notOk(cmds(src.srv).includes('object-add'));
  t.equal(src.srv.calls.find((c) => c.command === 'migrate-set-parameters')!.arguments!['tls-creds'], '');
});

t.test('a refused handshake: perform fails with "TLS handshake failed", the key is removed, credentials dropped', async (t) => {
  const run = tmp();
  const srcRun = path.join(run, 'h2', 'vm2');
  const tls = newTlsRequest('m777777');
  const src = await side(t, 'h2', srcRun, () => tlsDir(srcRun, tls.op));
  await src.agent.startVm(specIn(srcRun), []);
  src.srv.on('migrate', () => ({ return: {} })).on('query-migrate', () => ({ return: { status: 'failed', 'error-desc': 'Unable to write to socket: Connection reset by peer' } }));
  const e = await src.agent.perform({ name: 'vm2', uri: 'tcp:10.0.0.4:4444', tuning: { maxBandwidthBytes: 1e9 }, mode: 'live', op: tls.op, tls }).catch((x) => x);
  t.equal(e.code, 'ESYM_MIGRATION_TLS');
  t.match(e.message, /^TLS handshake failed between h2 and tcp:10\.0\.0\.4:4444/);
  t.notOk(fs.existsSync(tlsDir(srcRun, tls.op)));
  t.same(cmds(src.srv).slice(-2), ['migrate-set-parameters', 'object-del']);
});

t.test('a destination stopped before the stream came (rollback) leaves no key behind', async (t) => {
  const run = tmp();
  const dstRun = path.join(run, 'h4', 'vm2');
  const tls = newTlsRequest('m888888');
  const dst = await side(t, 'h4', dstRun, () => tlsDir(dstRun, tls.op));
  await dst.agent.prepareIncoming(specIn(dstRun), [], { maxBandwidthBytes: 1e9 }, '127.0.0.1', tls);
  t.ok(fs.existsSync(tlsDir(dstRun, tls.op)));
  await dst.agent.stopVm('vm2');
  t.notOk(fs.existsSync(tlsDir(dstRun, tls.op)));
});
