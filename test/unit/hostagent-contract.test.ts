// The host agent (agent/hostagent.ts) against its contract (wire/hostagent.ts), over the real RPC of the
// channel (agent/channel.ts RpcPeer, unsealed, on an in-memory stream pair) and called the way the
// coordinator calls it (agent/typed.ts callerOf): a method it does not have and params that break the
// contract are refused with a clear error before anything happens; its events arrive checked and typed
// (a payload that breaks the contract is dropped); the VF claims round-trip (claim,
// idempotent claim, list, release); a VM starts, lists its devices and stops. No QEMU: a fake QMP server
// plays it, and the node's /sys and /dev are a fake tree (an X710 port with 4 VFs, .3 still on iavf).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HostAgent } from '../../launcher/src/agent/hostagent.js';
import { RpcPeer } from '../../launcher/src/agent/channel.js';
import { callerOf, eventOf, onEvents } from '../../launcher/src/agent/typed.js';
import { QmpClient } from '../../launcher/src/qmp/client.js';
import { FsDeviceIO } from '../../launcher/src/device/sysfs.js';
import { COORDINATOR_EVENTS, HOST_AGENT_EVENTS, HOST_AGENT_PARAMS, type HostAgentEvents, type HostAgentMethods } from '../../launcher/src/wire/hostagent.js';
import type { EventOf } from '../../launcher/src/wire/rpc.js';
import type { VmProcess } from '../../launcher/src/vm/index.js';
import type { VmSpec } from '../../launcher/src/wire/vm.js';
import { FakeQmpServer } from '../fakes/qmp-server.js';
import { buildSysfs } from '../fixtures/sysfs/build.js';
import { x710Port } from '../fixtures/sysfs/machines.js';
import { streamPair } from '../fixtures/streams.js';

type Tap = { teardown(fn: () => unknown): void };

/** A host agent `h1` and the coordinator's end of its channel (raw peer and typed caller). */
async function rig(t: Tap) {
  const devs = x710Port('0000:3b:00.0', '0000:3b:02', 4, 'ens1f0', 30);
  const root = buildSysfs({
    drivers: ['i40e', 'iavf', 'vfio-pci'],
    devices: devs.map((d) => (/^0000:3b:02\.[012]$/.test(d.address) ? { ...d, driver: 'vfio-pci', nativeDriver: 'iavf' } : d)),
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostagent-'));
  const qmp = await FakeQmpServer.start();
  qmp.on('query-pci', () => ({
    return: [{ bus: 0, devices: [{ bus: 0, slot: 1, function: 0, class_info: { class: 0x0604 }, id: { vendor: 0x1b36, device: 0x000c }, qdev_id: 'rp1', pci_bridge: { bus: { number: 1 }, devices: [] } }] }],
  }));
  const clients: QmpClient[] = [];
  const started: string[] = [];
  const [agentEnd, coordEnd] = streamPair();
  const agent = new HostAgent('h1', new RpcPeer(agentEnd, undefined, { name: 'coordinator' }), {
    deviceIO: new FsDeviceIO(root),
    spawnVm: async (spec: VmSpec) => {
      started.push(spec.name);
      const q = await QmpClient.connect(qmp.socketPath, { timeoutMs: 2000 });
      clients.push(q);
      const proc: Pick<VmProcess, 'name' | 'pid' | 'qmp' | 'exited' | 'stop'> = {
        name: spec.name, pid: 4242, qmp: q, exited: new Promise(() => undefined), stop: async () => ({ code: 0, signal: null }),
      };
      return proc as VmProcess;
    },
  });
  const coord = new RpcPeer(coordEnd, undefined, { name: 'h1' }).start();
  t.teardown(async () => {
    await agent.stopAll();
    for (const q of clients) await q.close();
    await qmp.close();
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const spec = (name: string): VmSpec => ({
    name, runDir: path.join(dir, name), accel: 'tcg', memoryMiB: 64, cpus: 1, machine: 'q35', kernel: 'k', initrd: 'i', rootfs: 'r',
    append: '', agentSocket: path.join(dir, name, 'agent.sock'), agentPortName: 'p', rootPorts: 2, extraArgs: [],
  });
  return { agent, coord, qmp, call: callerOf<HostAgentMethods>(coord), started, spec };
}

t.test('a method the host agent does not have: ESYM_NO_METHOD, naming it', async (t) => {
  const r = await rig(t);
  await t.rejects(r.coord.call('vm.frobnicate', { name: 'vm1' }), { code: 'ESYM_NO_METHOD', message: /no method vm\.frobnicate/ });
  // the contract and the handlers agree: every method of the table is answered (none is ESYM_NO_METHOD;
  // with {} most are refused for their params, host.info and dev.list answer; shutdown would exit this process)
  for (const m of Object.keys(HOST_AGENT_PARAMS).filter((x) => x !== 'shutdown')) {
    const e = await r.coord.call(m, {}).then(() => undefined, (x: { code?: string }) => x);
    t.not(e?.code, 'ESYM_NO_METHOD', `${m} has a handler`);
  }
});

t.test('params that break the contract: ESYM_RPC_PARAMS naming the method, the field and what came, nothing done', async (t) => {
  const r = await rig(t);
  await t.rejects(r.coord.call('vm.stop', {}), { code: 'ESYM_RPC_PARAMS', field: 'name', message: 'host agent h1 vm.stop: params.name must be a string, got undefined' });
  await t.rejects(r.coord.call('dev.claim', { vm: 'vm1', offers: '0000:3b:02.0' }), { code: 'ESYM_RPC_PARAMS', field: 'offers', value: '0000:3b:02.0', message: /dev\.claim: params\.offers must be an array, got string/ });
  await t.rejects(r.coord.call('vm.start', { spec: null }), { code: 'ESYM_RPC_PARAMS', field: 'spec', message: /vm\.start: params\.spec must be an object, got null/ });
  await t.rejects(r.coord.call('mig.perform', { name: 'vm1', uri: 'tcp:x:1', tuning: {}, mode: 'live', op: 7 }), { code: 'ESYM_RPC_PARAMS', field: 'op', message: /params\.op must be a string, got number/ });
  await t.rejects(r.coord.call('dev.release', ['vm1']), { code: 'ESYM_RPC_PARAMS', field: 'params', message: /dev\.release: params must be an object, got array/ });
  await t.rejects(r.coord.call('dev.list', null), { code: 'ESYM_RPC_PARAMS', field: 'params', message: /got null/ });
  t.same(r.agent.vfs.list(), [], 'no VF was claimed');
  t.same(r.started, [], 'no VM was started');
  // optional fields may be absent; a well-formed call goes through
  t.same(await r.call.call('dev.list', {}), []);
});

t.test('dev.claim / dev.release: the first usable offer, idempotent per VM, listed, given back', async (t) => {
  const r = await rig(t);
  const offers = [{ pci: '0000:3b:02.3' }, { pci: '0000:3b:02.0' }, { pci: '0000:3b:02.1' }];
  const a = await r.call.call('dev.claim', { vm: 'vm1', offers });
  t.match(a, { vm: 'vm1', pci: '0000:3b:02.0', link: 'ethernet' }, '.3 is on iavf: .0 is the first usable');
  t.match(a.vfioDevice, /^\/dev\/vfio\/\d+$/);
  t.same(await r.call.call('dev.claim', { vm: 'vm1', offers }), a, 'asked again (a successor coordinator): the VF it holds');
  const b = await r.call.call('dev.claim', { vm: 'vm2', offers });
  t.equal(b.pci, '0000:3b:02.1', 'never the VF another VM holds');
  t.same((await r.call.call('dev.list', {})).map((h) => [h.vm, h.pci]), [['vm1', '0000:3b:02.0'], ['vm2', '0000:3b:02.1']]);
  t.equal((await r.call.call('dev.release', { vm: 'vm1' })).released?.pci, '0000:3b:02.0');
  t.same(await r.call.call('dev.release', { vm: 'vm1' }), { released: null }, 'released twice: nothing the second time');
  t.same((await r.call.call('dev.list', {})).map((h) => h.vm), ['vm2']);
  t.equal((await r.call.call('dev.claim', { vm: 'vm3', offers })).pci, '0000:3b:02.0', 'a released VF is handed out again');
  await t.rejects(r.call.call('dev.claim', { vm: 'vm4', offers }), { code: 'ESYM_NO_DEVICE' }, 'none left: refused');
});

t.test('vm.start, host.info, vm.devices, vm.stop: typed answers over the wire', async (t) => {
  const r = await rig(t);
  t.same(await r.call.call('vm.start', { spec: r.spec('vm1') }), { pid: 4242 });
  await t.rejects(r.call.call('vm.start', { spec: r.spec('vm1') }), { code: 'ESYM_VM_EXISTS' });
  t.match(await r.call.call('host.info', {}), { host: 'h1', vms: ['vm1'] });
  const devs = await r.call.call('vm.devices', { name: 'vm1' });
  t.same(devs.map((d) => [d.qdevId, d.parent, d.isBridge]), [['rp1', 'pcie.0', true]]);
  await t.rejects(r.call.call('vm.devices', { name: 'vm9' }), { code: 'ESYM_NO_VM', message: /no VM vm9 on host h1/ });
  t.same(await r.call.call('vm.stop', { name: 'vm1' }), { stopped: true });
  t.same(await r.call.call('vm.stop', { name: 'vm1' }), { stopped: false }, 'stopped twice: not there any more');
  t.match(await r.call.call('host.info', {}), { vms: [] });
});

t.test('events: the coordinator receives them checked and typed; what breaks the contract is dropped with a reason', async (t) => {
  const r = await rig(t);
  const got: Array<EventOf<HostAgentEvents>> = [];
  const bad: string[] = [];
  onEvents<HostAgentEvents>(r.coord, HOST_AGENT_EVENTS, (ev) => got.push(ev), (why) => bad.push(why));
  await r.call.call('vm.start', { spec: r.spec('vm1') });
  r.qmp.emitEvent('VSERPORT_CHANGE', { id: 'p', open: true });
  for (let i = 0; i < 200 && !got.some((e) => e.name === 'qmp.event'); i++) await new Promise((res) => setImmediate(res));
  const q = got.find((e) => e.name === 'qmp.event');
  t.match(q, { name: 'qmp.event', data: { vm: 'vm1', event: 'VSERPORT_CHANGE', data: { open: true } } }, 'a QMP event of vm1, typed');
  t.same(bad, [], 'nothing the real agent sends is refused');

  // the table, case by case (a host agent is on the other side of a boundary)
  t.match(eventOf(HOST_AGENT_EVENTS, 'vm.exit', { vm: 'vm1', code: null, signal: 'SIGKILL', expected: false }), { name: 'vm.exit', data: { code: null } }, 'a nullable field may be null');
  t.match(eventOf(HOST_AGENT_EVENTS, 'mig.progress', { vm: 'vm1', op: 'm1', note: 'x' }), { name: 'mig.progress' }, 'either form of a union payload');
  t.same(eventOf(HOST_AGENT_EVENTS, 'vm.boom', { vm: 'vm1' }), { bad: 'unknown event "vm.boom"' });
  t.same(eventOf(HOST_AGENT_EVENTS, '__proto__', {}), { bad: 'unknown event "__proto__"' }, 'no inherited names');
  t.same(eventOf(HOST_AGENT_EVENTS, 'guest.frame', null), { bad: 'event guest.frame: payload must be an object, got null' });
  t.same(eventOf(HOST_AGENT_EVENTS, 'guest.frame', { vm: 'vm1', frame: 'x' }), { bad: 'event guest.frame: frame must be an object, got string' });
  t.same(eventOf(HOST_AGENT_EVENTS, 'guest.link', { vm: 7, up: true }), { bad: 'event guest.link: vm must be a string, got number' });
  t.same(eventOf(HOST_AGENT_EVENTS, 'vm.exit', { vm: 'vm1', code: 0, signal: null }), { bad: 'event vm.exit: expected must be a boolean, got undefined' });
  t.same(eventOf(COORDINATOR_EVENTS, 'guest.send', { vm: 'vm1' }), { bad: 'event guest.send: frame must be an object, got undefined' });
});
