import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { bindPlan, bindVfio, restoreDriver, restorePlan } from '../../launcher/src/device/bind.js';
import { readFunction } from '../../launcher/src/device/discover.js';
import { buildSysfs, snapshotTree } from '../fixtures/sysfs/build.js';
import { ethernetNode } from '../fixtures/sysfs/machines.js';
import { FakeKernelIO } from '../fakes/fake-kernel.js';

const VF = '0000:3b:02.0';

function fake(t: { teardown(fn: () => void): void }, m = ethernetNode()) {
  const root = buildSysfs(m);
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  return { root, io: new FakeKernelIO(root) };
}

t.test('plans: the kernel sequence, and only the steps needed', async (t) => {
  t.same(bindPlan(VF, 'iavf'), [
    { file: `sys/bus/pci/devices/${VF}/driver_override`, data: 'vfio-pci' },
    { file: `sys/bus/pci/devices/${VF}/driver/unbind`, data: VF },
    { file: 'sys/bus/pci/drivers_probe', data: VF },
  ]);
  t.same(bindPlan(VF, undefined).map((w) => w.file.split('/').pop()), ['driver_override', 'drivers_probe'], 'unbound: nothing to unbind');
  t.same(bindPlan(VF, 'vfio-pci'), [], 'already vfio-pci');
  t.same(restorePlan(VF, 'vfio-pci', 'vfio-pci', 'iavf', undefined), [
    { file: `sys/bus/pci/devices/${VF}/driver/unbind`, data: VF },
    { file: `sys/bus/pci/devices/${VF}/driver_override`, data: '\n' },
    { file: 'sys/bus/pci/drivers_probe', data: VF },
  ]);
  t.same(restorePlan(VF, 'vfio-pci', 'vfio-pci', undefined, undefined).map((w) => w.file.split('/').pop()), ['unbind', 'driver_override'], 'was unbound: stays unbound');
  t.same(restorePlan(VF, 'vfio-pci', 'vfio-pci', 'vfio-pci', undefined), [], 'the site bound it to vfio-pci: left so');
  t.same(restorePlan(VF, 'iavf', 'vfio-pci', 'iavf', undefined).map((w) => w.file.split('/').pop()), ['driver_override'], 'a claimer that died after step 1 of bind: only the override is undone');
  t.same(restorePlan(VF, undefined, 'vfio-pci', 'iavf', undefined).map((w) => w.file.split('/').pop()), ['driver_override', 'drivers_probe'], 'died between unbind and probe');
  t.same(restorePlan(VF, 'iavf', undefined, 'iavf', undefined), [], 'nothing to undo');
  t.same(restorePlan(VF, 'vfio-pci', 'vfio-pci', 'iavf', 'iavf')[1], { file: `sys/bus/pci/devices/${VF}/driver_override`, data: 'iavf\n' }, 'an override the site had is put back');
});

t.test('bind to vfio-pci and back on the fake kernel: exact writes, the tree as it was', async (t) => {
  const { root, io } = fake(t);
  const before = snapshotTree(root);
  const b = bindVfio(io, VF);
  t.equal(b.from, 'iavf');
  t.same(io.writes().map((w) => [w.file, w.data]), [
    [`sys/bus/pci/devices/${VF}/driver_override`, 'vfio-pci'],
    [`sys/bus/pci/devices/${VF}/driver/unbind`, VF],
    ['sys/bus/pci/drivers_probe', VF],
  ]);
  const f = readFunction(io, VF)!;
  t.same([f.driver, f.driverOverride, f.netdevs], ['vfio-pci', 'vfio-pci', []], 'on vfio-pci; its netdev is gone');
  t.ok(fs.existsSync(path.join(root, 'dev/vfio/31')), '/dev/vfio/31 appeared');
  t.ok(fs.existsSync(path.join(root, `sys/bus/pci/drivers/vfio-pci/${VF}`)));

  const r = restoreDriver(io, VF, 'iavf', undefined);
  t.same(r.writes.map((w) => [w.file, w.data]), [
    [`sys/bus/pci/devices/${VF}/driver/unbind`, VF],
    [`sys/bus/pci/devices/${VF}/driver_override`, '\n'],
    ['sys/bus/pci/drivers_probe', VF],
  ]);
  t.equal(r.driver, 'iavf');
  t.equal(r.override, undefined);
  t.notOk(fs.existsSync(path.join(root, 'dev/vfio/31')), '/dev/vfio/31 gone with the last vfio-pci device of the group');
  t.same(snapshotTree(root), before, 'sysfs is exactly as before (driver, override, netdev)');
});

t.test('an unbound device is bound without unbind, and goes back to unbound', async (t) => {
  const m = ethernetNode();
  delete m.devices.find((d) => d.address === VF)!.driver;
  const { io } = fake(t, m);
  bindVfio(io, VF);
  t.same(io.writes().map((w) => w.file.split('/').pop()), ['driver_override', 'drivers_probe']);
  restoreDriver(io, VF, undefined, undefined);
  t.equal(readFunction(io, VF)!.driver, undefined);
  t.same(io.writes().slice(2).map((w) => w.file.split('/').pop()), ['unbind', 'driver_override'], 'no drivers_probe: it was unbound');
});

t.test('vfio-pci not loaded: a clear error, and restore undoes the half-done bind', async (t) => {
  const m = ethernetNode();
  m.drivers = m.drivers.filter((d) => d !== 'vfio-pci');
  const { root, io } = fake(t, m);
  const before = snapshotTree(root);
  t.throws(() => bindVfio(io, VF), { code: 'ESYM_DEVICE_BIND', message: `${VF} is not bound to vfio-pci after drivers_probe: the vfio-pci driver is not loaded`, fix: /modprobe vfio-pci/ });
  t.equal(readFunction(io, VF)!.driver, undefined, 'left unbound with the override');
  restoreDriver(io, VF, 'iavf', undefined);
  t.same(snapshotTree(root), before);
});

t.test('no IOMMU group: vfio-pci refuses the device', async (t) => {
  const m = ethernetNode();
  delete m.devices.find((d) => d.address === VF)!.group;
  const { io } = fake(t, m);
  t.throws(() => bindVfio(io, VF), { code: 'ESYM_DEVICE_BIND', message: /it has no IOMMU group/ });
});

t.test('a kernel error on a write names the file, the value and the errno', async (t) => {
  const { io } = fake(t);
  io.beforeWrite = (file) => { if (file.endsWith('/unbind')) throw Object.assign(new Error('EBUSY'), { code: 'EBUSY' }); };
  const e = t.throws(() => bindVfio(io, VF), { code: 'ESYM_DEVICE_BIND' }) as unknown as { message: string; details: Record<string, unknown> };
  t.equal(e.message, `binding ${VF} to vfio-pci: writing "${VF}" to /sys/bus/pci/devices/${VF}/driver/unbind failed: EBUSY`);
  t.equal(e.details.errno, 'EBUSY');
});

t.test('already on vfio-pci (a site that pre-binds): no writes either way', async (t) => {
  const m = ethernetNode();
  const d = m.devices.find((x) => x.address === VF)!;
  d.driver = 'vfio-pci';
  d.nativeDriver = 'iavf';
  const { io } = fake(t, m);
  t.same(bindVfio(io, VF).writes, []);
  t.same(restoreDriver(io, VF, 'vfio-pci', undefined).writes, []);
  t.same(io.writes(), []);
});

t.test('going back to a driver that is not loaded any more', async (t) => {
  const { root, io } = fake(t);
  bindVfio(io, VF);
  fs.rmSync(path.join(root, 'sys/bus/pci/drivers/iavf'), { recursive: true });
  t.throws(() => restoreDriver(io, VF, 'iavf', undefined), { code: 'ESYM_DEVICE_BIND', message: /cannot go back to iavf: that driver is not loaded/, fix: /modprobe iavf/ });
});
