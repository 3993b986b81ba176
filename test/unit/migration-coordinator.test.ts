// Migrations (coordinator/migrate.ts) against fake host and guest agents: destination choice, the
// concurrency cap, the shared freeze (first quiesces, last resumes), rollback bookkeeping.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Migrations, type JobAccess } from '../../launcher/src/coordinator/migrate.js';
import { parseFaults } from '../../launcher/src/coordinator/faults.js';
import { DEFAULTS, PROTOCOL_DEFAULTS } from '../../launcher/src/defaults.js';
import type { OpEvent } from '../../launcher/src/protocol/executor.js';
import type { MigrationConfig } from '../../launcher/src/config/types.js';
import { Pulse } from '../fixtures/wait.js';
import { FakeHostAgents, okAnswers, pciDevice } from '../fakes/host-agent.js';

const pulse = new Pulse();

interface Fake {
  job: JobAccess;
  /** the host agents: every call in order (log(): host:method:vm), params by method (of()) */
  agents: FakeHostAgents;
  guestOps: string[];
  events: OpEvent[];
  hostOf: Record<string, string>;
  /** resolve to let a pending mig.perform of that VM complete */
  releasePerform: Map<string, () => void>;
  failPrepareOn?: string;
  failPerform?: boolean;
  cancelOutcome?: string;
}

function fakeJob(opts: { maxConcurrent?: number; hosts?: number; vms?: number; tls?: 'on' | 'off' } = {}): Fake {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mig-coord-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const nHosts = opts.hosts ?? 5;
  const nVms = opts.vms ?? 3;
  const f: Fake = { guestOps: [], events: [], hostOf: {}, releasePerform: new Map(), job: undefined as unknown as JobAccess, agents: undefined as unknown as FakeHostAgents };
  const migration: MigrationConfig = {
    mode: 'live', quiesce: 'freeze', maxBandwidthBytes: DEFAULTS.migration.maxBandwidthBytes, multifdChannels: 0,
    downtimeLimitMs: 300, deadlineActions: [...PROTOCOL_DEFAULTS.deadlineActions], maxConcurrent: opts.maxConcurrent ?? 2, hooks: {}, tls: opts.tls ?? 'on',
  };
  const vmNames = Array.from({ length: nVms }, (_, i) => `vm${i + 1}`);
  vmNames.forEach((v, i) => (f.hostOf[v] = `h${i + 1}`));
  const client = (vm: string) => ({
    request: async (op: string) => { f.guestOps.push(`${vm}:${op}`); return op === 'quiesce' ? { frozen: 1 } : {}; },
    ready: async () => undefined,
    detach: () => undefined,
  });
  const clients = Object.fromEntries(vmNames.map((v) => [v, client(v)]));
  f.agents = new FakeHostAgents({
    ...okAnswers(),
    'mig.prepare': (_p, host) => {
      if (f.failPrepareOn === host) throw Object.assign(new Error(`QEMU on ${host} did not start`), { code: 'ESYM_QEMU_START' });
      return { uri: `tcp:${host}:4444`, pid: 1, tls: false };
    },
    'vm.devices': () => [pciDevice(DEFAULTS.interconnect.deviceId)],
    'mig.perform': async (p) => {
      await new Promise<void>((r) => { f.releasePerform.set(p.name, r); pulse.beat(); });
      if (f.failPerform) throw Object.assign(new Error('reply lost'), { code: 'ESYM_CHANNEL_TIMEOUT' });
      return { status: 'completed', transferredBytes: 1, remainingBytes: 0, totalBytes: 1 };
    },
    'mig.finish': () => ({ status: 'running', resumed: true }),
    'mig.cancel': () => ({ status: 'postmigrate', migration: f.cancelOutcome ?? 'cancelled' }),
  });
  f.job = {
    id: 'jtest',
    runDir: dir,
    migration,
    device: async () => ({ kind: 'nic', id: DEFAULTS.interconnect.deviceId, netdevId: DEFAULTS.interconnect.netdevId, tap: 'symtap1', mac: '52:54:00:00:00:01', model: 'virtio-net-pci', bus: 'rp1' }),
    releaseDevice: async () => ({}),
    deviceKind: () => 'nic',
    vm: (n) => (f.hostOf[n] ? { name: n, host: f.hostOf[n]!, mac: '52:54:00:00:00:01', ip: '198.18.0.101', tap: 'symtap1', client: clients[n] as never, state: 'running' } : undefined),
    vmNames: () => vmNames,
    hosts: () => Array.from({ length: nHosts }, (_, i) => ({ name: `h${i + 1}`, ip: `10.0.0.${i + 11}`, bridge: 'br0', spare: i >= nVms, usable: true })),
    peer: (h) => f.agents.peer(h),
    spec: (n, host) => ({ name: n, runDir: path.join(dir, host) }) as never,
    taps: () => [],
    failoverReady: () => false,
    setVmHost: (n, h) => { f.hostOf[n] = h; },
    netConfigArgs: () => ({ name: 'symfab0' }),
  };
  return f;
}

/** Waits for a migration to reach its fake mig.perform (which beats), not for a span of time. */
const until = (fn: () => boolean, what: string): Promise<void> => pulse.until(fn, what);

t.test('destination: a free spare first; busy and unknown hosts are refused with the field named', async (t) => {
  const f = fakeJob();
  const m = new Migrations(f.job, (e) => f.events.push(e), parseFaults(''));
  t.equal(m.pickDestination('vm2'), 'h4');
  t.throws(() => m.pickDestination('vm2', 'h1'), { code: 'ESYM_HOST_BUSY', field: '--to' });
  t.throws(() => m.pickDestination('vm2', 'h9'), { code: 'ESYM_NO_HOST', field: '--to' });
  const none = fakeJob({ hosts: 3 });
  const m2 = new Migrations(none.job, () => undefined, parseFaults(''));
  t.throws(() => m2.pickDestination('vm1'), { code: 'ESYM_NO_SPARE' });
  t.throws(() => m.migrate({ vm: 'vm9' }), { code: 'ESYM_NO_VM' });
});

t.test('two migrations at once share one freeze: quiesced once, resumed once, after both', async (t) => {
  const f = fakeJob({ maxConcurrent: 2 });
  const m = new Migrations(f.job, (e) => f.events.push(e), parseFaults(''));
  const a = m.migrate({ vm: 'vm1' });
  const b = m.migrate({ vm: 'vm2' });
  t.throws(() => m.migrate({ vm: 'vm1' }), { code: 'ESYM_BUSY' }, 'one migration per VM');
  await until(() => f.releasePerform.size === 2, 'both in perform');
  t.same(f.guestOps.filter((o) => o.endsWith(':quiesce')).sort(), ['vm1:quiesce', 'vm2:quiesce', 'vm3:quiesce'], 'every guest quiesced exactly once');
  f.releasePerform.get('vm1')!();
  const ra = await a.done;
  t.equal(ra.outcome, 'done');
  t.same(f.guestOps.filter((o) => o.endsWith(':resume')), [], 'no guest resumed while the other migration still needs the freeze');
  f.releasePerform.get('vm2')!();
  const rb = await b.done;
  t.equal(rb.outcome, 'done');
  t.same(f.guestOps.filter((o) => o.endsWith(':resume')).sort(), ['vm1:resume', 'vm2:resume', 'vm3:resume'], 'resumed once, by the last one');
  t.same([f.hostOf.vm1, f.hostOf.vm2].sort(), ['h4', 'h5']);
});

t.test('the cap queues further migrations until one ends', async (t) => {
  const f = fakeJob({ maxConcurrent: 1 });
  const m = new Migrations(f.job, (e) => f.events.push(e), parseFaults(''));
  const a = m.migrate({ vm: 'vm1' });
  const b = m.migrate({ vm: 'vm2' });
  await until(() => f.releasePerform.has('vm1'), 'vm1 in perform');
  t.notOk(f.agents.log().some((c) => c.endsWith('mig.prepare:vm2')), 'vm2 has not started');
  t.ok(f.events.some((e) => e.data?.vm === 'vm2' && e.data?.queued === true), 'the queueing is reported');
  f.releasePerform.get('vm1')!();
  await a.done;
  await until(() => f.releasePerform.has('vm2'), 'vm2 in perform');
  f.releasePerform.get('vm2')!();
  t.equal((await b.done).outcome, 'done');
});

t.test('a destination that cannot start QEMU: rolled back, the VM stays, guests resumed', async (t) => {
  const f = fakeJob();
  f.failPrepareOn = 'h4';
  const m = new Migrations(f.job, (e) => f.events.push(e), parseFaults(''));
  const r = await m.migrate({ vm: 'vm2' }).done;
  t.equal(r.outcome, 'rolled-back');
  t.equal(r.error?.phase, 'prepare');
  t.equal(f.hostOf.vm2, 'h2');
  t.ok(f.agents.log().includes('h4:vm.stop:vm2'), 'the half-started destination is stopped');
  t.same(f.guestOps, [], 'guests were never quiesced (prepare comes first)');
  t.equal(m.list()[0]!.result?.outcome, 'rolled-back', 'status lists the outcome');
});

t.test('a transfer that completed before the cancel: the destination is stopped before the source runs again', async (t) => {
  const f = fakeJob();
  f.failPerform = true;
  f.cancelOutcome = 'completed';
  const m = new Migrations(f.job, (e) => f.events.push(e), parseFaults(''));
  const op = m.migrate({ vm: 'vm2' });
  await until(() => f.releasePerform.has('vm2'), 'perform');
  f.releasePerform.get('vm2')!();
  const r = await op.done;
  t.equal(r.outcome, 'rolled-back');
  const i = f.agents.log().indexOf('h4:vm.stop:vm2');
  const j = f.agents.log().indexOf('h2:vm.cont:vm2');
  t.ok(i >= 0 && j > i, `destination stopped (${i}) before the source continues (${j})`);
  t.equal(f.hostOf.vm2, 'h2');
});

t.test('TLS on: both sides get the same op id and a fresh salt per migration, never a key', async (t) => {
  const f = fakeJob({ maxConcurrent: 1 });
  const m = new Migrations(f.job, (e) => f.events.push(e), parseFaults(''));
  const salts: string[] = [];
  for (const vm of ['vm1', 'vm2']) {
    const op = m.migrate({ vm });
    await until(() => f.releasePerform.has(vm), `${vm} in perform`);
    f.releasePerform.get(vm)!();
    t.equal((await op.done).outcome, 'done');
    const prep = f.agents.of('mig.prepare').find((c) => c.params.spec.name === vm)!.params;
    const perf = f.agents.of('mig.perform').find((c) => c.params.name === vm)!.params;
    t.same(prep.tls, perf.tls, `${vm}: destination and source derive from the same request`);
    t.equal(prep.tls!.op, op.op, 'the request names this migration');
    t.match(prep.tls!.salt, /^[0-9a-f]{32}$/);
    t.same(Object.keys(prep.tls!).sort(), ['op', 'salt'], 'only the op id and the salt cross the wire');
    t.notOk(JSON.stringify(f.agents.calls).includes('keys.psk'), 'no key file content sent');
    salts.push(prep.tls!.salt);
  }
  t.not(salts[0], salts[1], 'each migration gets its own salt');
  t.ok(m.list().every((o) => o.tls), 'the operation says it is encrypted');
});

t.test('TLS off: no TLS request to either side', async (t) => {
  const f = fakeJob({ tls: 'off' });
  const m = new Migrations(f.job, (e) => f.events.push(e), parseFaults(''));
  const op = m.migrate({ vm: 'vm2' });
  await until(() => f.releasePerform.has('vm2'), 'in perform');
  f.releasePerform.get('vm2')!();
  t.equal((await op.done).outcome, 'done');
  t.notOk(f.agents.calls.some((c) => typeof c.params === 'object' && c.params !== null && 'tls' in c.params), 'no tls parameter');
});

t.test('fault wrong-tls-key@dst: the destination gets another salt than the source', async (t) => {
  const f = fakeJob();
  const m = new Migrations(f.job, (e) => f.events.push(e), parseFaults('wrong-tls-key@dst'));
  const op = m.migrate({ vm: 'vm2' });
  await until(() => f.releasePerform.has('vm2'), 'in perform');
  f.releasePerform.get('vm2')!();
  await op.done;
  const prep = f.agents.of('mig.prepare')[0]!.params;
  const perf = f.agents.of('mig.perform')[0]!.params;
  t.equal(prep.tls!.op, perf.tls!.op);
  t.not(prep.tls!.salt, perf.tls!.salt);
});

t.test('transport rdma: an adapter that cannot keep verbs alive is refused before any host or guest is touched', async (t) => {
  const f = fakeJob();
  Object.assign(f.job, { transport: { transport: 'rdma', kind: 'soft-roce' }, failoverReady: () => true });
  const m = new Migrations(f.job, (e) => f.events.push(e), parseFaults(''));
  t.throws(() => m.migrate({ vm: 'vm2', quiesce: 'freeze' }), { code: 'ESYM_TRANSPORT_ADAPTER', field: '--quiesce', value: 'freeze', message: /Soft-RoCE.*nothing was touched/ });
  t.throws(() => m.migrate({ vm: 'vm2' }), { code: 'ESYM_TRANSPORT_ADAPTER', field: 'migration.quiesce' }, 'the configured default (freeze) is checked too');
  t.same(f.agents.log(), [], 'no host agent was called');
  t.same(f.guestOps, [], 'no guest was asked anything');
  t.same(f.events, [], 'no operation started');
  const hca = fakeJob();
  Object.assign(hca.job, { transport: { transport: 'rdma', kind: 'hca' }, failoverReady: () => true });
  t.throws(() => new Migrations(hca.job, () => undefined, parseFaults('')).migrate({ vm: 'vm2', quiesce: 'failover' }), { code: 'ESYM_TRANSPORT_ADAPTER', message: /bound to the HCA/ });
  const r = m.migrate({ vm: 'vm2', quiesce: 'failover' });
  await until(() => f.releasePerform.has('vm2'), 'failover migration of the Soft-RoCE job reaches perform');
  f.releasePerform.get('vm2')!();
  t.equal((await r.done).outcome, 'done', 'failover keeps Soft-RoCE: the migration runs');
});
