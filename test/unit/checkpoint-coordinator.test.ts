// Checkpoints (coordinator/checkpoint.ts) against fake host and guest agents: the whole protocol with
// real files (temp dir, manifest, rename, prune), a save that fails on one VM (everything rolls back,
// every VM runs again), refusals, and the interval timer (on a fake clock: @sinonjs/fake-timers).
import t from 'tap';
import FakeTimers from '@sinonjs/fake-timers';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { Checkpoints, type CheckpointHost } from '../../launcher/src/coordinator/checkpoint.js';
import { QuiesceGate, type JobAccess } from '../../launcher/src/coordinator/migrate.js';
import { verifyCheckpoint, listCheckpoints, createTempDir } from '../../launcher/src/checkpoint/manifest.js';
import { CHECKPOINT } from '../../launcher/src/protocol/checkpoint.js';

const ckptReplay = CHECKPOINT.replay;
import { FileJournal } from '../../launcher/src/protocol/journal.js';
import { DEFAULTS, PROTOCOL_DEFAULTS } from '../../launcher/src/defaults.js';
import type { SymrunConfig } from '../../launcher/src/config/types.js';
import type { OpEvent } from '../../launcher/src/protocol/executor.js';
import { Pulse, within } from '../fixtures/wait.js';
import { FakeHostAgents, okAnswers, pciDevice } from '../fakes/host-agent.js';

const pulse = new Pulse();

interface Fake {
  host: CheckpointHost;
  root: string;
  /** the host agents (every call in order) */
  agents: FakeHostAgents;
  guestOps: string[];
  events: OpEvent<string>[];
  plugged: Record<string, boolean>;
  paused: Record<string, boolean>;
  vms: Record<string, { state: string }>;
  failSaveOn?: string;
  jobState: string;
  migrating: boolean;
}

function fake(o: { intervalMs?: number; keep?: number; journal?: FileJournal } = {}): Fake {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-coord-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const img = path.join(dir, 'img');
  fs.mkdirSync(img);
  for (const f of ['vmlinuz', 'initrd.img', 'root.ext4']) fs.writeFileSync(path.join(img, f), f);
  const names = ['vm1', 'vm2', 'vm3'];
  const f: Fake = {
    host: undefined as unknown as CheckpointHost, root: path.join(dir, 'ckpt'), agents: undefined as unknown as FakeHostAgents, guestOps: [], events: [],
    plugged: Object.fromEntries(names.map((n) => [n, true])), paused: Object.fromEntries(names.map((n) => [n, false])),
    vms: {}, jobState: 'running', migrating: false,
  };
  const client = (vm: string) => ({
    request: async (op: string) => { f.guestOps.push(`${vm}:${op}`); return op === 'quiesce' ? { frozen: 1 } : {}; },
    ready: async () => undefined,
  });
  const vmObj = Object.fromEntries(names.map((n, i) => [n, { name: n, host: `h${i + 1}`, mac: `52:54:00:00:00:0${i + 1}`, ip: `198.18.0.${i + 2}`, tap: `symtap${i + 1}`, client: client(n), state: 'running' }]));
  f.vms = vmObj;
  const vmOn = (host: string, name: string) => { if (vmObj[name]!.host !== host) throw new Error(`${name} is not on ${host}`); return name; };
  const ok = okAnswers();
  f.agents = new FakeHostAgents({
    'vm.devices': (p, host) => (f.plugged[vmOn(host, p.name)] ? [pciDevice(DEFAULTS.interconnect.deviceId)] : []),
    'vm.unplug': (p, host) => { f.plugged[vmOn(host, p.name)] = false; return ok['vm.unplug']!(p, host); },
    'vm.plug': (p, host) => { f.plugged[vmOn(host, p.name)] = true; return ok['vm.plug']!(p, host); },
    'ckpt.save': async (p, host) => {
      const n = vmOn(host, p.name);
      f.paused[n] = true;
      await new Promise((r) => setImmediate(r)); // the saves of all VMs overlap
      if (f.failSaveOn === n) {
        fs.writeFileSync(`${p.file}.part`, 'partial');
        throw Object.assign(new Error('migration failed: Unable to write to command: Broken pipe'), { code: 'ESYM_MIGRATION_FAILED' });
      }
      fs.writeFileSync(p.file, crypto.randomBytes(64 * 1024));
      return { status: 'completed', transferredBytes: 65536, remainingBytes: 0, totalBytes: 65536, saveMs: 5 };
    },
    'ckpt.resume': (p, host) => { const n = vmOn(host, p.name); const was = f.paused[n]!; f.paused[n] = false; return { status: was ? 'postmigrate' : 'running', migration: 'completed', resumed: was }; },
  });
  const config = {
    vm: { memoryMiB: 1, cpus: 1, machine: 'q35', extraArgs: [] },
    migration: { mode: 'live', quiesce: 'freeze', maxBandwidthBytes: 1, multifdChannels: 0, downtimeLimitMs: 300, deadlineActions: [...PROTOCOL_DEFAULTS.deadlineActions], maxConcurrent: 2, hooks: {} },
    checkpoint: { dir: f.root, keep: o.keep ?? 1, ...(o.intervalMs ? { intervalMs: o.intervalMs } : {}) },
  } as unknown as SymrunConfig;
  const job = {
    id: 'j1', runDir: dir, migration: config.migration,
    device: (n: string) => ({ kind: 'nic', id: DEFAULTS.interconnect.deviceId, netdevId: DEFAULTS.interconnect.netdevId, tap: vmObj[n]!.tap, mac: vmObj[n]!.mac, model: 'virtio-net-pci', bus: 'rp1' }),
    vm: (n: string) => vmObj[n], vmNames: () => names,
    hosts: () => names.map((_, i) => ({ name: `h${i + 1}`, ip: `198.18.0.${100 + i}`, bridge: 'symbr', spare: false, usable: true })),
    peer: (h: string) => f.agents.peer(h),
    spec: (n: string) => ({ name: n, runDir: path.join(dir, n), accel: 'tcg', memoryMiB: 1, cpus: 1, machine: 'q35', kernel: path.join(img, 'vmlinuz'), initrd: path.join(img, 'initrd.img'), rootfs: path.join(img, 'root.ext4'), append: '', agentSocket: path.join(dir, n, 'a.sock'), agentPortName: 'p', rootPorts: 2, extraArgs: [] }),
    taps: () => [], failoverReady: () => false, setVmHost: () => undefined,
    netConfigArgs: (n: string) => ({ mac: vmObj[n]!.mac, name: 'eth1', address: `${vmObj[n]!.ip}/24` }),
  } as unknown as JobAccess;
  const gate = new QuiesceGate(job);
  f.host = {
    access: job, config: () => config, app: () => ({ app: ['./ring'], cwd: dir }), state: () => f.jobState, gate: () => gate,
    migrating: () => f.migrating, journal: () => o.journal, sessions: () => ({ mpirun: { vm: "vm1", sid: "s1", rankVm: ["vm1", "vm2"] }, rsh: [] }), emit: (e) => { f.events.push(e); pulse.beat(); },
  };
  return f;
}

t.test('a checkpoint: every phase through the agents, files verified, VMs back to running, --keep', async (t) => {
  const clock = FakeTimers.install({ toFake: ['Date'] }); // checkpoint names carry the time in ms
  t.teardown(() => clock.uninstall());
  const f = fake();
  const c = new Checkpoints(f.host);
  const first = await c.checkpoint({ reason: 'test' }).done;
  t.equal(first.outcome, 'done', JSON.stringify(first.error));
  t.equal(first.vms.length, 3);
  t.ok(first.path && fs.existsSync(path.join(first.path, 'manifest.json')));
  t.same(Object.values(f.vms).map((v) => v.state), ['running', 'running', 'running'], 'VM states restored');
  t.same(f.plugged, { vm1: true, vm2: true, vm3: true }, 'every device plugged again');
  t.same(f.paused, { vm1: false, vm2: false, vm3: false }, 'every VM runs');
  t.same(f.guestOps.filter((g) => g.startsWith('vm1:')), ['vm1:quiesce', 'vm1:net-config', 'vm1:resume']);
  const v = await verifyCheckpoint(first.path!);
  t.equal(v.status, 'complete');
  t.equal(v.manifest?.vms[1]!.device.mac, '52:54:00:00:00:02');
  t.equal(v.manifest?.command.app[0], './ring');
  t.ok(f.events.some((e) => e.kind === 'checkpoint' && e.phase === 'save' && e.event === 'end'));
  t.ok(first.frozenMs !== undefined && first.frozenMs >= 0);

  clock.tick(5); // names carry the time in ms
  const second = await c.checkpoint({}).done;
  t.equal(second.outcome, 'done');
  t.same(second.pruned, [first.name], 'keep 1: the older one goes once the new one is complete');
  t.same((await listCheckpoints(f.root)).map((e) => e.name), [second.name]);
  t.equal(c.list().length, 2);
});

t.test('a save that fails on one VM: rolled back, every VM runs again with its device, temp dir gone', async (t) => {
  const f = fake();
  const c = new Checkpoints(f.host);
  const ok = await c.checkpoint({}).done;
  f.failSaveOn = 'vm2';
  f.agents.calls.length = 0;
  const r = await c.checkpoint({}).done;
  t.equal(r.outcome, 'rolled-back');
  t.equal(r.error?.phase, 'save');
  t.match(r.error?.message, /vm2.*Broken pipe/);
  t.same(r.leftovers, []);
  t.same(f.paused, { vm1: false, vm2: false, vm3: false }, 'rb-cont: every VM runs');
  t.same(f.plugged, { vm1: true, vm2: true, vm3: true }, 'rb-replug: every device back');
  t.ok(f.guestOps.filter((g) => g.endsWith(':resume')).length >= 6, 'guests resumed');
  t.same(Object.values(f.vms).map((v) => v.state), ['running', 'running', 'running']);
  const l = await listCheckpoints(f.root);
  t.same(l.map((e) => [e.name, e.status]), [[ok.name, 'complete']], 'no temp dir left; the previous checkpoint is intact');
  t.same(r.vms, [], 'no files reported for a checkpoint that was not taken');
});

t.test('refusals: no dir, job not running, migration in flight, one at a time, migrations see checkpointing', async (t) => {
  const f = fake();
  const c = new Checkpoints(f.host);
  t.throws(() => c.checkpoint({ dir: 'relative' }), { code: 'ESYM_CKPT_DIR' });
  f.jobState = 'starting';
  t.throws(() => c.checkpoint({}), { code: 'ESYM_JOB_STATE' });
  f.jobState = 'running';
  f.migrating = true;
  t.throws(() => c.checkpoint({}), { code: 'ESYM_BUSY', message: /migration/ });
  f.migrating = false;
  const a = c.checkpoint({});
  t.same(Object.values(f.vms).map((v) => v.state), ['checkpointing', 'checkpointing', 'checkpointing'], 'a migration would be refused now');
  t.throws(() => c.checkpoint({}), { code: 'ESYM_BUSY', message: /being taken/ });
  t.equal((await a.done).outcome, 'done');
  const g = fake();
  (g.host.config().checkpoint as { dir?: string }).dir = undefined;
  t.throws(() => new Checkpoints(g.host).checkpoint({}), { code: 'ESYM_CKPT_NO_DIR', exitCode: 2 });
});

t.test('the interval timer takes checkpoints while the job runs; stop() waits for one in flight', async (t) => {
  const clock = FakeTimers.install({ toFake: ['setInterval', 'clearInterval', 'Date'] });
  t.teardown(() => clock.uninstall());
  const f = fake({ intervalMs: 40, keep: 2 });
  const c = new Checkpoints(f.host);
  const timer = c.startTimer();
  const done = () => c.list().filter((x) => x.result?.outcome === 'done').length;
  for (let i = 1; i <= 2; i++) {
    clock.tick(40); // one interval: a checkpoint starts
    await pulse.until(() => done() >= i, `periodic checkpoint ${i}`);
  }
  clock.tick(40); // a third one starts and is in flight when the timer stops
  await timer.stop();
  const n = c.list().length;
  t.ok(c.list().filter((x) => x.result?.outcome === 'done').length >= 2, 'two periodic checkpoints');
  t.ok(c.list().every((x) => x.result), 'nothing in flight after stop()');
  t.ok(c.list().every((x) => /^every/.test(x.reason ?? '')), 'reason recorded');
  clock.tick(10 * 40); // ten more intervals
  t.equal(c.list().length, n, 'no checkpoint after stop()');
  t.ok((await listCheckpoints(f.root)).filter((e) => e.status === 'complete').length <= 2, 'keep 2');
});

t.test('a recovered job\'s timer: the first checkpoint when what is left of its interval is over, each completed one reported', async (t) => {
  const f = fake({ intervalMs: 60_000, keep: 2 });
  const c = new Checkpoints(f.host);
  // the interval was over while nobody coordinated (firstMs 0): the next one at once, not 60 s from now
  const taken: Date[] = [];
  let reported!: () => void;
  const first = new Promise<void>((r) => { reported = r; });
  const t0 = Date.now();
  const timer = c.startTimer(60_000, { firstMs: 0, onTaken: (at) => { taken.push(at); reported(); } });
  await within(first, 20_000, 'the overdue periodic checkpoint');
  await timer.stop();
  t.equal(c.list().length, 1, 'one checkpoint, before a whole interval');
  t.equal(c.list()[0]!.result?.outcome, 'done');
  t.match(c.list()[0]!.reason, /^every 60 s/, 'a periodic one');
  t.equal(taken.length, 1, 'its completion reported (the job records its clock)');
  t.ok(taken[0]!.getTime() >= t0);
});

t.test('after a coordinator restart: a checkpoint in flight is rolled back from the journal', async (t) => {
  const jdir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-journal-'));
  t.teardown(() => fs.rmSync(jdir, { recursive: true, force: true }));
  const journal = new FileJournal(path.join(jdir, 'journal.jsonl'));
  const f = fake({ journal });
  const name = 'j1-20260101T000000000Z';
  const tmp = createTempDir(f.root, name);
  fs.writeFileSync(path.join(tmp, 'vm1.state.part'), 'partial');
  for (const n of ['vm1', 'vm2', 'vm3']) { f.plugged[n] = false; f.paused[n] = true; }
  const state = ckptReplay([{ type: 'start' }, { type: 'ok', phase: 'prepare' }, { type: 'ok', phase: 'quiesce' }, { type: 'ok', phase: 'unplug' }]);
  t.equal(state.phase, 'save');
  await journal.write({ op: 'cdead1', kind: 'checkpoint', phase: 'new', state: ckptReplay([]) as never, params: { op: 'cdead1', name, root: f.root, startedAt: new Date().toISOString(), keep: 1 } });
  await journal.write({ op: 'cdead1', kind: 'checkpoint', phase: 'save', state: state as never });
  await journal.write({ op: 'm1', kind: 'migrate', phase: 'perform', state: {} as never, params: {} });
  const c = new Checkpoints(f.host);
  const rec = c.recoverFromJournal();
  t.same(rec.map((r) => [r.op, r.phase]), [['cdead1', 'save']], 'only the checkpoint op, not the migration');
  const r = await rec[0]!.done;
  t.equal(r.outcome, 'rolled-back');
  t.equal(r.error?.code, 'ESYM_COORDINATOR_RESTART');
  t.same(f.paused, { vm1: false, vm2: false, vm3: false }, 'every VM runs again');
  t.same(f.plugged, { vm1: true, vm2: true, vm3: true }, 'every device back');
  t.ok(f.guestOps.includes('vm2:resume'), 'guests resumed');
  t.notOk(fs.existsSync(tmp), 'the temp dir is gone');
  t.same(new Checkpoints(f.host).recoverFromJournal(), [], 'nothing in flight any more');
});

// Regression (issue 14): a coordinator that died DURING a rollback step (here rb-cont: the VMs are
// stopped by the failed save) left that step recorded as a leftover and the VMs paused. The recovery
// table says: run the rollback step again.
t.test('after a coordinator restart in a rollback step: the step runs again, every VM runs', async (t) => {
  const jdir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-journal-'));
  t.teardown(() => fs.rmSync(jdir, { recursive: true, force: true }));
  const journal = new FileJournal(path.join(jdir, 'journal.jsonl'));
  const f = fake({ journal });
  const name = 'j1-20260101T000000001Z';
  const tmp = createTempDir(f.root, name);
  for (const n of ['vm1', 'vm2', 'vm3']) { f.plugged[n] = false; f.paused[n] = true; }
  const state = ckptReplay([{ type: 'start' }, { type: 'ok', phase: 'prepare' }, { type: 'ok', phase: 'quiesce' }, { type: 'ok', phase: 'unplug' }, { type: 'fail', phase: 'save', message: 'vm2: write failed' }]);
  t.equal(state.phase, 'rb-cont', 'the save failed: the rollback was in rb-cont when the coordinator died');
  await journal.write({ op: 'cdead2', kind: 'checkpoint', phase: 'new', state: ckptReplay([]) as never, params: { op: 'cdead2', name, root: f.root, startedAt: new Date().toISOString(), keep: 1 } });
  await journal.write({ op: 'cdead2', kind: 'checkpoint', phase: 'rb-cont', state: state as never });
  const rec = new Checkpoints(f.host).recoverFromJournal();
  t.same(rec.map((r) => [r.op, r.phase]), [['cdead2', 'rb-cont']]);
  const r = await rec[0]!.done;
  t.equal(r.outcome, 'rolled-back', 'rolled back, not rollback-failed');
  t.same(r.leftovers, [], 'rb-cont is not left over');
  t.equal(r.error?.message, 'vm2: write failed', 'the first error is kept');
  t.same(f.paused, { vm1: false, vm2: false, vm3: false }, 'every VM runs again');
  t.same(f.plugged, { vm1: true, vm2: true, vm3: true }, 'every device back');
  t.ok(['vm1', 'vm2', 'vm3'].every((n) => f.guestOps.includes(`${n}:resume`)), 'every guest resumed');
  t.notOk(fs.existsSync(tmp), 'the temp dir is gone');
});
