// vfio passthrough through every protocol, at coordinator level: migrations (coordinator/migrate.ts),
// checkpoints (coordinator/checkpoint.ts) and restarts (coordinator/restart.ts) of a job configured with
// interconnect.type vfio, driven through the job's real device bookkeeping (job/vms.ts claim/release)
// and real host agents (agent/hostagent.ts) whose QEMU is a fake QMP server and whose node is a fake
// sysfs tree (test/fixtures/sysfs: X710 VFs, some bound to vfio-pci, one still on iavf). What is shown:
//   - which VF each host hands out (the first free, usable offer; never one another VM holds; never one
//     on another driver), claimed in prepare / restore, released at confirm / rollback;
//   - device_add of vfio-pci with that host's VF and device_del by id, and never a netdev_add/netdev_del;
//   - the device kind and the claimed VF in the journal and the checkpoint manifest; a restart onto a
//     spare plugs vfio again with a VF claimed on the spare.
// Only the migration stream and the state files are played by the fake peer (mig.perform, ckpt.save):
// they are QEMU's business, not the device's.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { HostAgent } from '../../launcher/src/agent/hostagent.js';
import { QmpClient } from '../../launcher/src/qmp/client.js';
import { FsDeviceIO } from '../../launcher/src/device/sysfs.js';
import { Vms } from '../../launcher/src/coordinator/job/vms.js';
import { Migrations, QuiesceGate, type JobAccess } from '../../launcher/src/coordinator/migrate.js';
import { Checkpoints } from '../../launcher/src/coordinator/checkpoint.js';
import { pickCheckpoint, restoreVms } from '../../launcher/src/coordinator/restart.js';
import { parseFaults } from '../../launcher/src/coordinator/faults.js';
import { readJournal, FileJournal } from '../../launcher/src/protocol/journal.js';
import { DEFAULTS, PROTOCOL_DEFAULTS } from '../../launcher/src/defaults.js';
import type { SymrunConfig } from '../../launcher/src/config/types.js';
import type { RpcPeer } from '../../launcher/src/agent/channel.js';
import type { VmProcess, VmSpec } from '../../launcher/src/vm/index.js';
import type { JobContext, VmState } from '../../launcher/src/coordinator/job/context.js';
import type { HostAgents } from '../../launcher/src/coordinator/job/agents.js';
import type { OpEvent } from '../../launcher/src/protocol/events.js';
import { FakeQmpServer } from '../fakes/qmp-server.js';
import { buildSysfs, type FakeMachine } from '../fixtures/sysfs/build.js';
import { x710Port } from '../fixtures/sysfs/machines.js';

const ID = DEFAULTS.interconnect.deviceId;
// the job's offers (interconnect.pool): .3 first, which every host keeps on iavf (not usable)
const POOL = ['0000:3b:02.3', '0000:3b:02.0', '0000:3b:02.1', '0000:3b:02.2'];

/** One X710 port with 4 VFs: .0-.2 bound to vfio-pci by the site (/dev/vfio/N exists), .3 on iavf. */
function node(): FakeMachine {
  const devs = x710Port('0000:3b:00.0', '0000:3b:02', 4, 'ens1f0', 30);
  return {
    drivers: ['i40e', 'iavf', 'vfio-pci'],
    devices: devs.map((d) => (/^0000:3b:02\.[012]$/.test(d.address) ? { ...d, driver: 'vfio-pci', nativeDriver: 'iavf' } : d)),
  };
}

interface Host {
  name: string;
  agent: HostAgent;
  qmp: FakeQmpServer;
  /** the fake QEMU's plugged devices (id -> device_add arguments) */
  plugged: Map<string, Record<string, unknown>>;
  /** the host agent's RPC handlers, called like the channel would */
  call(method: string, p: unknown): Promise<unknown>;
  lost: boolean;
}

/** A host agent (real) whose QEMU is a fake QMP server and whose /sys and /dev are a fake tree. */
async function host(t: Tap, name: string, nodeClaims?: (job: string) => unknown): Promise<Host> {
  const root = buildSysfs(node());
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const qmp = await FakeQmpServer.start();
  const plugged = new Map<string, Record<string, unknown>>();
  qmp.on('device_add', (a) => {
    if (plugged.has(String(a?.id))) return { error: { class: 'GenericError', desc: `Duplicate device ID '${a?.id}'` } };
    plugged.set(String(a!.id), a!);
    return { return: {} };
  });
  qmp.on('device_del', (a, call, conn) => {
    if (!plugged.delete(String(a?.id))) return { error: { class: 'DeviceNotFound', desc: `Device '${a?.id}' not found` } };
    conn.reply(call, { return: {} });
    conn.sendEvent('DEVICE_DELETED', { device: a!.id, path: `/machine/peripheral/${a!.id}` });
    return undefined;
  });
  qmp.on('netdev_add', () => ({ return: {} })).on('netdev_del', () => ({ return: {} }));
  qmp.on('query-pci', () => ({
    return: [{ bus: 0, devices: [{
      bus: 0, slot: 1, function: 0, class_info: { class: 0x0604 }, id: { vendor: 0x1b36, device: 0x000c }, qdev_id: 'rp1',
      pci_bridge: { bus: { number: 1 }, devices: [...plugged.keys()].map((id, i) => ({ bus: 1, slot: i, function: 0, class_info: { class: 0x0200 }, id: { vendor: 0x8086, device: 0x154c }, qdev_id: id })) },
    }] }],
  }));
  const handlers = new Map<string, (p: any) => unknown>();
  const peer = { handle: (m: string, fn: (p: any) => unknown) => { handlers.set(m, fn); return peer; }, on: () => peer, start: () => undefined, notify: () => undefined, closed: false };
  const clients: QmpClient[] = [];
  const agent = new HostAgent(name, peer as unknown as RpcPeer, {
    deviceIO: new FsDeviceIO(root),
    ...(nodeClaims ? { nodeClaims } : {}),
    spawnVm: async (spec: VmSpec) => {
      // a new QEMU: what its command line plugs at boot (-device vfio-pci,…,id=…) is plugged, nothing else
      plugged.clear();
      const i = spec.extraArgs.indexOf('-device');
      if (i >= 0) {
        const kv = Object.fromEntries(spec.extraArgs[i + 1]!.split(',').slice(1).map((x) => x.split('=') as [string, string]));
        plugged.set(kv.id!, { driver: spec.extraArgs[i + 1]!.split(',')[0], ...kv });
      }
      const q = await QmpClient.connect(qmp.socketPath, { timeoutMs: 2000 });
      clients.push(q);
      return { name: spec.name, pid: 0, qmp: q, exited: new Promise(() => undefined), consoleLog: '', stderrLog: '', args: [], qemu: {} as never, stop: async () => { plugged.clear(); return { code: 0, signal: null }; } } as unknown as VmProcess;
    },
  });
  t.teardown(async () => { await agent.stopAll(); for (const q of clients) await q.close(); await qmp.close(); });
  const h: Host = {
    name, agent, qmp, plugged, lost: false,
    call: async (method, p) => {
      const fn = handlers.get(method);
      if (!fn) throw new Error(`host agent has no method ${method}`);
      return fn(p);
    },
  };
  return h;
}

type Tap = { teardown(fn: () => unknown): void };

interface Rig {
  hosts: Map<string, Host>;
  job: JobAccess;
  vms: Vms;
  ctx: JobContext;
  dir: string;
  calls: Array<{ host: string; method: string; p: any }>;
  events: OpEvent[];
  guestOps: Array<{ vm: string; op: string; args: any }>;
  failPerform?: boolean;
  config: SymrunConfig;
  spec(n: string, host: string, device?: boolean): VmSpec;
}

/** Three VMs on h1-h3 booted with a VF each (as job/vms.ts boot does), spares h4 and h5. */
async function rig(t: Tap, o: { nodeLayer?: { job: string; claims: Record<string, unknown> } } = {}): Promise<Rig> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfio-coord-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const img = path.join(dir, 'img');
  fs.mkdirSync(img);
  for (const f of ['vmlinuz', 'initrd.img', 'root.ext4']) fs.writeFileSync(path.join(img, f), f);
  const names = ['h1', 'h2', 'h3', 'h4', 'h5'];
  const hosts = new Map<string, Host>();
  for (const n of names) hosts.set(n, await host(t, n, o.nodeLayer ? (job) => (job === o.nodeLayer!.job ? o.nodeLayer!.claims[n] : undefined) : undefined));
  const config = {
    source: 'test', accel: 'tcg', image: img,
    vm: { memoryMiB: 1, cpus: 1, machine: 'q35', extraArgs: [] },
    interconnect: { type: 'vfio', pool: POOL },
    network: { subnet: 'auto', guestIfName: 'symfab0' },
    migration: { mode: 'live', quiesce: 'freeze', maxBandwidthBytes: 1, multifdChannels: 0, downtimeLimitMs: 300, deadlineActions: [...PROTOCOL_DEFAULTS.deadlineActions], maxConcurrent: 2, hooks: {}, tls: 'off' },
    checkpoint: { dir: path.join(dir, 'ckpt'), keep: 0, maxRestarts: 1, restartFromStart: false },
  } as unknown as SymrunConfig;
  const r: Rig = { hosts, dir, calls: [], events: [], guestOps: [], config, job: undefined as never, vms: undefined as never, ctx: undefined as never, spec: undefined as never };
  const peer = (h: string) => ({
    call: async (method: string, p: any) => {
      const x = hosts.get(h)!;
      if (x.lost) throw Object.assign(new Error(`host ${h} is lost`), { code: 'ESYM_HOST_LOST' });
      r.calls.push({ host: h, method, p });
      switch (method) {
        // QEMU's side of migration and checkpoints (not the device's): played here
        case 'mig.prepare': { const s = await x.agent.startVm(p.spec, []); return { uri: `tcp:${h}:4444`, pid: s.pid }; }
        case 'mig.perform':
          if (r.failPerform) throw Object.assign(new Error('migration failed: connection reset'), { code: 'ESYM_MIGRATION_FAILED' });
          return { status: 'completed', transferredBytes: 1, remainingBytes: 0, totalBytes: 1 };
        case 'mig.finish': return { status: 'running', resumed: true };
        case 'mig.cancel': return { status: 'paused', migration: 'failed' };
        case 'guest.reconnect': case 'vm.cont': return { resumed: true };
        case 'ckpt.save': fs.writeFileSync(p.file, crypto.randomBytes(4096)); return { status: 'completed', transferredBytes: 4096, saveMs: 1 };
        case 'ckpt.resume': return { status: 'running', migration: 'completed', resumed: true };
        case 'ckpt.restore': { const s = await x.agent.startVm(p.spec, []); return { pid: s.pid, status: 'paused', loadMs: 1 }; }
        // the device's part: the real host agent
        default: return x.call(method, p);
      }
    },
  });
  const vmsMap = new Map<string, VmState>();
  const ctx = {
    id: 'j1', runDir: dir, config, vms: vmsMap, lostHosts: new Set<string>(), macSeed: 'j1', accel: 'tcg', state: 'running', vmHostCount: 3,
    cluster: { guestIp: (i: number) => `198.18.0.${100 + i}`, prefixLen: 24, hosts: names.map((n) => ({ name: n, ip: `10.0.0.${n.slice(1)}`, bridge: 'br0' })), ...(o.nodeLayer ? { nodeLayer: { job: o.nodeLayer.job, runDir: dir, mtu: 1450 } } : {}) },
    image: { kernel: path.join(img, 'vmlinuz'), initrd: path.join(img, 'initrd.img'), rootfs: path.join(img, 'root.ext4') },
  } as unknown as JobContext;
  const agents = { peer: (h: string) => peer(h) } as unknown as HostAgents;
  const vms = new Vms(ctx, agents, () => undefined, () => undefined);
  const client = (vm: string) => ({
    request: async (op: string, args: unknown) => { r.guestOps.push({ vm, op, args }); return op === 'quiesce' ? { frozen: 1 } : {}; },
    ready: async () => undefined, detach: () => undefined, rewind: () => undefined, receivedSeq: 0,
  });
  r.spec = (n, h, device = false) => vms.spec(vmsMap.get(n)!, device ? vms.device(vmsMap.get(n)!, h) : undefined, h);
  r.job = {
    id: 'j1', runDir: dir, migration: config.migration,
    device: (n, h) => vms.claim(vmsMap.get(n)!, h),
    releaseDevice: (n, h) => vms.release(vmsMap.get(n)!, h),
    deviceKind: () => 'vfio',
    vm: (n) => vmsMap.get(n),
    vmNames: () => [...vmsMap.keys()],
    hosts: () => names.map((n, i) => ({ name: n, ip: `10.0.0.${i + 1}`, bridge: 'br0', spare: i >= 3, usable: !hosts.get(n)!.lost })),
    peer: (h) => peer(h) as never,
    spec: (n, h, withDevice) => r.spec(n, h, withDevice),
    taps: () => [],
    failoverReady: () => false,
    setVmHost: (n, h) => { vmsMap.get(n)!.host = h; },
    netConfigArgs: (n) => vms.netConfigArgs(vmsMap.get(n)!),
  };
  r.vms = vms;
  r.ctx = ctx;
  for (const [i, n] of ['vm1', 'vm2', 'vm3'].entries()) {
    const v = vms.add(n, i + 1, `h${i + 1}`, { state: 'running' });
    v.client = client(n) as never;
    // boot: the VF claimed on the host first, then QEMU with it on its command line
    const d = await vms.claim(v);
    await hosts.get(v.host)!.agent.startVm(vms.spec(v, d), []);
  }
  r.calls.length = 0;
  return r;
}

const held = (r: Rig, h: string) => Object.fromEntries(r.hosts.get(h)!.agent.vfs.list().map((x) => [x.vm, x.pci]));
const qmpCalls = (r: Rig, h: string, cmd: string) => r.hosts.get(h)!.qmp.calls.filter((c) => c.command === cmd).map((c) => c.arguments);
const netdevCalls = (r: Rig) => [...r.hosts.values()].flatMap((h) => h.qmp.calls.filter((c) => c.command.startsWith('netdev_')).map((c) => `${h.name}:${c.command}`));

t.test('boot: each VM gets the first usable VF of the pool on its host (never the one on iavf)', async (t) => {
  const r = await rig(t);
  for (const h of ['h1', 'h2', 'h3']) t.same(Object.values(held(r, h)), ['0000:3b:02.0'], `${h}: .3 is on iavf, .0 is the first usable`);
  t.same(r.hosts.get('h1')!.plugged.get(ID), { driver: 'vfio-pci', host: '0000:3b:02.0', id: ID, bus: 'rp1' }, 'QEMU started with -device vfio-pci,host=…');
  t.same(r.vms.netConfigArgs(r.ctx.vms.get('vm1')!).find, 'passthrough', 'a VF whose MAC nobody set: found as the one non-virtio interface');
  // the host agent plugs only the VF the VM holds there
  const other = { kind: 'vfio', id: 'symfab1', host: '0000:3b:02.1', bus: 'rp2', mac: '52:54:00:00:00:09' };
  await t.rejects(r.hosts.get('h1')!.call('vm.plug', { name: 'vm1', device: other }), { code: 'ESYM_NO_DEVICE', message: /vm1 does not hold VF 0000:3b:02\.1 on h1 \(it holds 0000:3b:02\.0\)/ });
  t.same(qmpCalls(r, 'h1', 'device_add'), [], 'nothing reached QEMU');
});

t.test('migrate: VF claimed on the destination in prepare, device_del / device_add vfio-pci, source VF released at confirm', async (t) => {
  const r = await rig(t);
  // another VM of the job already holds .0 on h4: the move must get the next free VF there, not pool[0]
  r.hosts.get('h4')!.agent.vfs.claim('vm9', [{ pci: '0000:3b:02.0' }]);
  const m = new Migrations(r.job, (e) => r.events.push(e), parseFaults(''));
  const op = m.migrate({ vm: 'vm1', to: 'h4' });
  const res = await op.done;
  t.equal(res.outcome, 'done', JSON.stringify(res.error));
  t.equal(r.ctx.vms.get('vm1')!.host, 'h4');
  t.same(held(r, 'h4'), { vm9: '0000:3b:02.0', vm1: '0000:3b:02.1' }, 'the destination handed out its next free VF');
  t.same(held(r, 'h1'), {}, 'the source VF is free again after confirm');
  t.same(qmpCalls(r, 'h1', 'device_del'), [{ id: ID }], 'unplugged by id on the source');
  t.same(qmpCalls(r, 'h4', 'device_add'), [{ driver: 'vfio-pci', id: ID, host: '0000:3b:02.1', bus: 'rp1' }], 'the claimed VF plugged on the destination');
  t.same(netdevCalls(r), [], 'no netdev_add / netdev_del anywhere (a VF has no backend)');
  const order = r.calls.filter((c) => c.method.startsWith('dev.') || c.method === 'mig.prepare' || c.method === 'vm.stop').map((c) => `${c.host}:${c.method}`);
  t.same(order, ['h4:dev.claim', 'h4:mig.prepare', 'h1:dev.claim', 'h4:dev.claim', 'h1:vm.stop', 'h1:dev.release'],
    'claim on the destination before its QEMU starts; unplug and plug ask for the VF held (idempotent); release after the source stopped');
  const j = readJournal(path.join(r.dir, 'journal.jsonl')).get(op.op)!;
  t.equal(j.params?.device, 'vfio', 'the kind travels in the journal');
  t.match(j.params?.dstDevice, { kind: 'vfio', host: '0000:3b:02.1', link: 'ethernet' }, 'so does the VF claimed on the destination');
  const nc = r.guestOps.filter((g) => g.op === 'net-config' && g.vm === 'vm1');
  t.equal(nc.length, 1);
  t.match(nc[0]!.args, { find: 'passthrough', name: 'symfab0' });
  const rep = r.events.find((e) => e.phase === 'replug' && e.event === 'end');
  t.match(rep?.data, { device: { kind: 'vfio', pci: '0000:3b:02.1' } }, 'the replug event names the VF');
});

t.test('rollback after a failed transfer: the destination VF is released, the source VF plugged back (the same one)', async (t) => {
  const r = await rig(t);
  r.failPerform = true;
  const m = new Migrations(r.job, (e) => r.events.push(e), parseFaults(''));
  const res = await m.migrate({ vm: 'vm2', to: 'h4' }).done;
  t.equal(res.outcome, 'rolled-back');
  t.equal(res.error?.phase, 'perform');
  t.same(held(r, 'h4'), {}, 'what prepare claimed on h4 is given back');
  t.same(held(r, 'h2'), { vm2: '0000:3b:02.0' }, 'vm2 keeps its VF on h2');
  t.same(qmpCalls(r, 'h2', 'device_del'), [{ id: ID }]);
  t.same(qmpCalls(r, 'h2', 'device_add'), [{ driver: 'vfio-pci', id: ID, host: '0000:3b:02.0', bus: 'rp1' }], 'replugged on the source: vfio-pci, its own VF');
  t.same(netdevCalls(r), []);
  t.ok(r.calls.some((c) => c.host === 'h4' && c.method === 'dev.release' && c.p.vm === 'vm2'));
});

t.test('a destination with no usable VF: refused in prepare before QEMU starts, nothing claimed, the VM stays', async (t) => {
  const r = await rig(t);
  const a = r.hosts.get('h4')!.agent;
  a.vfs.claim('vm7', [{ pci: '0000:3b:02.0' }]);
  a.vfs.claim('vm8', [{ pci: '0000:3b:02.1' }]);
  a.vfs.claim('vm9', [{ pci: '0000:3b:02.2' }]);
  const m = new Migrations(r.job, (e) => r.events.push(e), parseFaults(''));
  const res = await m.migrate({ vm: 'vm1', to: 'h4' }).done;
  t.equal(res.outcome, 'rolled-back');
  t.equal(res.error?.code, 'ESYM_NO_DEVICE');
  t.match(res.error?.message, /0000:3b:02\.3: bound to iavf, not vfio-pci.*0000:3b:02\.0: held by vm7/);
  t.notOk(r.calls.some((c) => c.method === 'mig.prepare'), 'no QEMU started on h4');
  t.same(Object.keys(held(r, 'h4')).sort(), ['vm7', 'vm8', 'vm9']);
  t.equal(r.ctx.vms.get('vm1')!.host, 'h1');
  t.same(r.guestOps.filter((g) => g.op === 'quiesce'), [], 'the guests were never frozen');
});

t.test('a coordinator that restarted asks again: the host agent answers with the VF the VM holds', async (t) => {
  const r = await rig(t);
  const fresh = new Vms(r.ctx, { peer: (h: string) => ({ call: (m: string, p: unknown) => r.hosts.get(h)!.call(m, p) }) } as unknown as HostAgents, () => undefined, () => undefined);
  t.equal(fresh.device(r.ctx.vms.get('vm2')!), undefined, 'the successor knows nothing yet');
  const d = await fresh.claim(r.ctx.vms.get('vm2')!);
  t.match(d, { kind: 'vfio', host: '0000:3b:02.0' });
  t.same(held(r, 'h2'), { vm2: '0000:3b:02.0' }, 'still one VF for vm2');
});

t.test('checkpoint and restart: vfio unplugged and plugged again; the manifest keeps the kind; a restart onto a spare claims a VF there', async (t) => {
  const r = await rig(t);
  const gate = new QuiesceGate(r.job);
  const journal = new FileJournal(path.join(r.dir, 'journal.jsonl'));
  const c = new Checkpoints({
    access: r.job, config: () => r.config, app: () => ({ app: ['./ring'], cwd: r.dir }), state: () => 'running', gate: () => gate,
    migrating: () => false, journal: () => journal, sessions: () => ({ mpirun: { vm: 'vm1', sid: 's1', rankVm: ['vm1', 'vm2', 'vm3'] }, rsh: [] }),
    emit: (e) => r.events.push(e as OpEvent),
  });
  const ck = await c.checkpoint({ reason: 'test' }).done;
  t.equal(ck.outcome, 'done', JSON.stringify(ck.error));
  for (const h of ['h1', 'h2', 'h3']) {
    t.same(qmpCalls(r, h, 'device_del'), [{ id: ID }], `${h}: unplugged before the save`);
    t.same(qmpCalls(r, h, 'device_add'), [{ driver: 'vfio-pci', id: ID, host: '0000:3b:02.0', bus: 'rp1' }], `${h}: the same VF plugged back`);
  }
  t.same(netdevCalls(r), []);
  const picked = await pickCheckpoint(r.config.checkpoint.dir!, { jobIds: ['j1'] });
  t.match(picked.manifest.vms[1]!.device, { kind: 'vfio', host: '0000:3b:02.0', link: 'ethernet', mac: r.ctx.vms.get('vm2')!.mac }, 'the manifest records the kind and the VF');
  t.notOk(picked.manifest.vms[1]!.spec.extraArgs.some((a) => a.startsWith('vfio-pci')), 'the saved spec has no device (restored unplugged)');

  // h2 dies: vm2 goes to the spare h4 (where .0 is taken), vm1 and vm3 stay
  r.hosts.get('h2')!.lost = true;
  r.hosts.get('h4')!.agent.vfs.claim('vm9', [{ pci: '0000:3b:02.0' }]);
  for (const h of r.hosts.values()) h.qmp.calls.length = 0;
  const placement = new Map([['vm1', 'h1'], ['vm2', 'h4'], ['vm3', 'h3']]);
  const rr = await restoreVms({ access: r.job, checkpoint: picked, placement, running: [{ vm: 'vm1', host: 'h1' }, { vm: 'vm3', host: 'h3' }], emit: (e) => r.events.push(e as OpEvent), op: 'r1', journal });
  t.same(rr.vms.map((v) => v.host), ['h1', 'h4', 'h3']);
  t.same(held(r, 'h4'), { vm9: '0000:3b:02.0', vm2: '0000:3b:02.1' }, 'a VF claimed on the spare (its next free one)');
  t.same(held(r, 'h1'), { vm1: '0000:3b:02.0' }, 'a VM restored where it was keeps its VF');
  t.same(qmpCalls(r, 'h4', 'device_add'), [{ driver: 'vfio-pci', id: ID, host: '0000:3b:02.1', bus: 'rp1' }], 'vfio plugged again on the spare, with the spare\'s VF');
  t.same(qmpCalls(r, 'h1', 'device_add'), [{ driver: 'vfio-pci', id: ID, host: '0000:3b:02.0', bus: 'rp1' }]);
  t.same(netdevCalls(r), [], 'never a NIC backend: the restart plugs the kind it unplugged');
  const restoreOrder = r.calls.filter((x) => x.host === 'h4' && ['dev.claim', 'ckpt.restore'].includes(x.method)).map((x) => x.method);
  t.same(restoreOrder.slice(0, 2), ['dev.claim', 'ckpt.restore'], 'the VF is claimed before the state is loaded');
  const nc = r.guestOps.filter((g) => g.op === 'net-config' && g.vm === 'vm2').pop();
  t.match(nc?.args, { find: 'passthrough', address: picked.manifest.vms[1]!.network.address }, 'the saved address, found by the new device');
});

t.test('restart of a checkpoint taken with another kind of device is refused, naming the field', async (t) => {
  const r = await rig(t);
  const gate = new QuiesceGate(r.job);
  const c = new Checkpoints({
    access: r.job, config: () => r.config, app: () => ({ app: ['./ring'], cwd: r.dir }), state: () => 'running', gate: () => gate,
    migrating: () => false, journal: () => undefined, sessions: () => ({ mpirun: { vm: 'vm1', sid: 's1', rankVm: ['vm1'] }, rsh: [] }), emit: () => undefined,
  });
  t.equal((await c.checkpoint({}).done).outcome, 'done');
  const picked = await pickCheckpoint(r.config.checkpoint.dir!, { jobIds: ['j1'] });
  // the restarting job is configured with the emulated NIC
  const nicJob: JobAccess = { ...r.job, deviceKind: () => 'nic', device: async (n) => ({ kind: 'nic', id: ID, netdevId: DEFAULTS.interconnect.netdevId, tap: 't', mac: r.ctx.vms.get(n)!.mac, model: 'virtio-net-pci', bus: 'rp1' }) };
  const err = await restoreVms({ access: nicJob, checkpoint: picked, placement: new Map([['vm1', 'h1'], ['vm2', 'h2'], ['vm3', 'h3']]), running: [], emit: () => undefined, op: 'r2' }).catch((e: Error) => e);
  t.match(String((err as Error).message), /vm1: vm1 was checkpointed with a passed-through VF; this job gives it a NIC/);
});

t.test('node layer: the VFs root claimed for the job come first, with the MAC root set; the guest finds the VF by it', async (t) => {
  // what `symrun node devices claim --json` recorded per node (claimed[]): .2 on every node, with its MAC
  const claims = Object.fromEntries(['h1', 'h2', 'h3', 'h4', 'h5'].map((h, i) => [h, [{ pci: '0000:3b:02.2', type: 'ethernet', mac: `c2:00:00:01:1c:${(0xc0 + i).toString(16)}` }, { pci: '../../etc', mac: 'x' }]]));
  const r = await rig(t, { nodeLayer: { job: '4711', claims } });
  t.same(held(r, 'h1'), { vm1: '0000:3b:02.2' }, 'the claimed VF, not the first of the pool');
  const m = new Migrations(r.job, (e) => r.events.push(e), parseFaults(''));
  t.equal((await m.migrate({ vm: 'vm1', to: 'h4' }).done).outcome, 'done');
  t.same(held(r, 'h4'), { vm1: '0000:3b:02.2' });
  t.same(qmpCalls(r, 'h4', 'device_add'), [{ driver: 'vfio-pci', id: ID, host: '0000:3b:02.2', bus: 'rp1' }]);
  const nc = r.guestOps.filter((g) => g.op === 'net-config' && g.vm === 'vm1').pop();
  t.match(nc?.args, { mac: 'c2:00:00:01:1c:c3', find: 'mac', mtu: 1450 }, 'the MAC follows the node: h4\'s VF MAC');
  t.ok(r.calls.some((c) => c.method === 'dev.claim' && c.p.nodeLayerJob === '4711'), 'the host agent is told the Slurm job');
});
