// Real QEMU (TCG) + Debian kernel + tiny busybox initramfs: NIC hot-plug / unplug through a tap.
// Never skips: without QEMU it fails and says how to install it. Needs root (tap creation).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { detectQemu, startVm, type VmSpec } from '../../launcher/src/vm/index.js';
import { plugNic, unplugDevice, findFreeRootPort, listDevices } from '../../launcher/src/hotplug/index.js';
import { buildTinyInitramfs, findKernel, TINY_INIT_MARKER } from '../fixtures/tiny-initramfs/build.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitForFile(file: string, text: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try { if (fs.readFileSync(file, 'utf8').includes(text)) return; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`${text} not seen in ${file} within ${timeoutMs} ms`);
    await sleep(100);
  }
}

t.test('hot-plug a tap NIC, unplug it, plug it again with the same id and MAC', async (t) => {
  await detectQemu().catch((e) => { throw new Error(`QEMU is required for system tests (bash scripts/setup installs it): ${e.message}`); });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sys-hotplug-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tap = `symhp${process.pid % 100000}`;
  execFileSync('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  t.teardown(() => { try { execFileSync('ip', ['link', 'del', tap]); } catch { /* gone */ } });

  const rootfs = path.join(dir, 'root.img');
  fs.writeFileSync(rootfs, Buffer.alloc(1024 * 1024));
  const spec: VmSpec = {
    name: 'hp0', runDir: dir, accel: 'tcg', memoryMiB: 256, cpus: 1, machine: 'q35',
    kernel: findKernel(), initrd: buildTinyInitramfs(path.join(dir, 'initrd.cpio')), rootfs,
    append: 'console=ttyS0 panic=-1 loglevel=4',
    agentSocket: path.join(dir, 'hp0.agent'), agentPortName: 'org.symrun.agent.0', rootPorts: 2, extraArgs: [],
  };
  const vm = await startVm(spec, {});
  t.teardown(() => vm.stop({ graceMs: 1000 }));
  const tBoot = Date.now();
  await waitForFile(vm.consoleLog, TINY_INIT_MARKER, 120_000);
  t.comment(`guest reached /init in ${Date.now() - tBoot} ms (TCG)`);

  const bus = await findFreeRootPort(vm.qmp);
  t.equal(bus, 'rp1');
  const nic = { id: 'symfab0', netdevId: 'symfab0nd', tap, mac: '52:54:00:5e:00:01', model: 'virtio-net-pci' as const, bus: bus! };
  const plugged1 = await plugNic(vm.qmp, nic, { timeoutMs: 15_000 });
  t.comment(`plug #1 (netdev_add + device_add): ${plugged1.ms} ms`);
  let devs = await listDevices(vm.qmp);
  t.equal(devs.find((d) => d.qdevId === 'symfab0')?.parent, 'rp1', 'NIC behind rp1');
  t.equal(await findFreeRootPort(vm.qmp), 'rp2', 'rp1 is now busy');
  await sleep(2000); // let the guest finish handling the insertion

  const un1 = await unplugDevice(vm.qmp, 'symfab0', { timeoutMs: 15_000, netdevId: 'symfab0nd' });
  t.comment(`unplug #1 (device_del -> DEVICE_DELETED): ${un1.ms} ms`);
  t.equal(un1.netdevRemoved, true);
  devs = await listDevices(vm.qmp);
  t.notOk(devs.some((d) => d.qdevId === 'symfab0'), 'gone from query-pci');

  const plugged2 = await plugNic(vm.qmp, nic, { timeoutMs: 15_000 });
  t.comment(`plug #2 same id + MAC: ${plugged2.ms} ms`);
  devs = await listDevices(vm.qmp);
  const d = devs.find((x) => x.qdevId === 'symfab0');
  t.equal(d?.parent, 'rp1');
  t.equal(d?.vendor, 0x1af4, 'virtio vendor id');
  const mac = await vm.qmp.execute<string>('qom-get', { path: '/machine/peripheral/symfab0', property: 'mac' });
  t.equal(mac, nic.mac, 'same MAC');
  await sleep(2000);

  const un2 = await unplugDevice(vm.qmp, 'symfab0', { timeoutMs: 15_000, netdevId: 'symfab0nd' });
  t.comment(`unplug #2: ${un2.ms} ms`);
  // a second unplug of the same id: DeviceNotFound -> typed error
  await t.rejects(unplugDevice(vm.qmp, 'symfab0', { timeoutMs: 2000 }), { code: 'ESYM_DEVICE_NOT_FOUND' });

  const pid = vm.pid;
  await vm.stop({ graceMs: 2000 });
  t.throws(() => process.kill(pid, 0), 'QEMU gone');
});
