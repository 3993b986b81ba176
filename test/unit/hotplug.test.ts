import t from 'tap';
import { QmpClient } from '../../launcher/src/qmp/client.js';
import { plugNic, plugVfio, unplugDevice, findFreeRootPort, listDevices } from '../../launcher/src/hotplug/index.js';
import { FakeQmpServer } from '../fakes/qmp-server.js';

async function setup(t: { teardown(fn: () => unknown): void }) {
  const srv = await FakeQmpServer.start();
  const qmp = await QmpClient.connect(srv.socketPath, { timeoutMs: 2000 });
  t.teardown(async () => { await qmp.close(); await srv.close(); });
  return { srv, qmp };
}
const nic = { id: 'symfab0', netdevId: 'symfab0nd', tap: 'tap0', mac: '52:54:00:00:00:01', model: 'virtio-net-pci' as const, bus: 'rp1' };

t.test('plugNic: netdev_add then device_add with the right arguments', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('netdev_add', () => ({ return: {} })).on('device_add', () => ({ return: {} }));
  const r = await plugNic(qmp, nic, { timeoutMs: 2000 });
  t.equal(r.id, 'symfab0');
  const calls = srv.calls.filter((c) => c.command !== 'qmp_capabilities');
  t.same(calls.map((c) => [c.command, c.arguments]), [
    ['netdev_add', { type: 'tap', id: 'symfab0nd', ifname: 'tap0', script: 'no', downscript: 'no' }],
    ['device_add', { driver: 'virtio-net-pci', id: 'symfab0', netdev: 'symfab0nd', mac: '52:54:00:00:00:01', bus: 'rp1' }],
  ]);
});

t.test('plugNic: device_add failure rolls the netdev back', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('netdev_add', () => ({ return: {} }))
    .on('device_add', () => ({ error: { class: 'GenericError', desc: "Bus 'rp9' not found" } }))
    .on('netdev_del', () => ({ return: {} }));
  const e: any = await plugNic(qmp, { ...nic, bus: 'rp9' }).catch((e) => e);
  t.equal(e.code, 'ESYM_HOTPLUG_FAILED');
  t.match(e.message, /rp9/);
  t.equal(e.details.errorClass, 'GenericError');
  t.equal(e.details.rollback, 'netdev removed');
  t.same(srv.calls.at(-1), { command: 'netdev_del', arguments: { id: 'symfab0nd' }, id: srv.calls.at(-1)!.id });
});

t.test('plugNic: netdev_add failure does not try device_add; bad args rejected before QMP', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('netdev_add', () => ({ error: { class: 'GenericError', desc: 'could not open /dev/net/tun' } }));
  await t.rejects(plugNic(qmp, nic), { code: 'ESYM_HOTPLUG_FAILED' });
  t.notOk(srv.calls.some((c) => c.command === 'device_add'));
  await t.rejects(plugNic(qmp, { ...nic, mac: 'zz' }), { code: 'ESYM_HOTPLUG_ARGS' });
  await t.rejects(plugNic(qmp, { ...nic, id: 'bad id' }), { code: 'ESYM_HOTPLUG_ARGS' });
});

t.test('plugVfio builds a vfio-pci device_add', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('device_add', () => ({ return: {} }));
  await plugVfio(qmp, { id: 'symfab0', host: '0000:3b:00.2', bus: 'rp2' });
  t.same(srv.calls.at(-1)!.arguments, { driver: 'vfio-pci', id: 'symfab0', host: '0000:3b:00.2', bus: 'rp2' });
  srv.on('device_add', () => ({ error: { class: 'GenericError', desc: 'vfio 0000:3b:00.2: group 12 is not viable' } }));
  const e: any = await plugVfio(qmp, { id: 'symfab0', host: '0000:3b:00.2', bus: 'rp2' }).catch((e) => e);
  t.equal(e.code, 'ESYM_HOTPLUG_FAILED');
  t.match(e.fix, /vfio-pci/);
  await t.rejects(plugVfio(qmp, { id: 'x', host: 'not-an-address', bus: 'rp1' }), { code: 'ESYM_HOTPLUG_ARGS' });
});

t.test('unplugDevice waits for DEVICE_DELETED of that id, even when it races the reply', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('device_del', (a, call, conn) => {
    // event before the reply: only a subscription made before device_del sees it
    conn.sendEvent('DEVICE_DELETED', { device: 'other', path: '/machine/peripheral/other' });
    conn.sendEvent('DEVICE_DELETED', { device: a?.id, path: `/machine/peripheral/${a?.id}` });
    conn.reply(call, { return: {} });
  });
  srv.on('netdev_del', () => ({ return: {} }));
  const r = await unplugDevice(qmp, 'symfab0', { timeoutMs: 1000, netdevId: 'symfab0nd' });
  t.equal(r.netdevRemoved, true);
  t.same(srv.calls.filter((c) => c.command !== 'qmp_capabilities').map((c) => c.command), ['device_del', 'netdev_del']);
});

t.test('unplugDevice times out with ESYM_UNPLUG_TIMEOUT naming the device', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('device_del', () => ({ return: {} }));
  srv.on('netdev_del', () => ({ return: {} }));
  const e: any = await unplugDevice(qmp, 'symfab0', { timeoutMs: 150, netdevId: 'symfab0nd' }).catch((e) => e);
  t.equal(e.code, 'ESYM_UNPLUG_TIMEOUT');
  t.match(e.message, /symfab0.*150 ms/);
  t.match(e.fix, /ACPI/);
  t.notOk(srv.calls.some((c) => c.command === 'netdev_del'), 'backend left alone while the device is still plugged');
});

t.test('unplugDevice of a missing device', async (t) => {
  const { srv, qmp } = await setup(t);
  srv.on('device_del', (a) => ({ error: { class: 'DeviceNotFound', desc: `Device '${a?.id}' not found` } }));
  srv.on('netdev_del', () => ({ return: {} }));
  await t.rejects(unplugDevice(qmp, 'ghost', { timeoutMs: 500 }), { code: 'ESYM_DEVICE_NOT_FOUND' });
  const r = await unplugDevice(qmp, 'ghost', { timeoutMs: 500, missingOk: true, netdevId: 'ghostnd' });
  t.equal(r.netdevRemoved, true);
  t.equal(qmp.listenerCount('event'), 0);
});

t.test('listDevices / findFreeRootPort from query-pci', async (t) => {
  const { srv, qmp } = await setup(t);
  const port = (n: number, devices: unknown[]) => ({ bus: 0, slot: 2 + n, function: 0, class_info: { class: 1540, desc: 'PCI bridge' }, id: { device: 12, vendor: 6966 }, qdev_id: `rp${n}`, pci_bridge: { bus: { number: n, secondary: n, subordinate: n }, devices } });
  const nicDev = { bus: 1, slot: 0, function: 0, class_info: { class: 512, desc: 'Ethernet controller' }, id: { device: 4161, vendor: 6900 }, qdev_id: 'symfab0' };
  srv.on('query-pci', () => ({ return: [{ bus: 0, devices: [
    { bus: 0, slot: 0, function: 0, class_info: { class: 1536 }, id: { device: 10688, vendor: 32902 }, qdev_id: '' },
    port(1, [nicDev]), port(2, []), port(10, []),
  ] }] }));
  const devs = await listDevices(qmp);
  t.equal(devs.find((d) => d.qdevId === 'symfab0')?.parent, 'rp1');
  t.equal(await findFreeRootPort(qmp), 'rp2');
});
