// Real QEMU (TCG, -S): QMP client against the real thing. Never skips: without QEMU it fails and says how to install it.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { detectQemu, startVm, type VmSpec } from '../../launcher/src/vm/index.js';
import { QmpCommandError } from '../../launcher/src/qmp/client.js';
import { buildTinyInitramfs, findKernel } from '../fixtures/tiny-initramfs/build.js';

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

t.test('QMP against a real QEMU', async (t) => {
  const qemu = await detectQemu().catch((e) => { throw new Error(`QEMU is required for system tests (bash scripts/setup installs it): ${e.message}`); });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sys-qmp-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'root.img');
  fs.writeFileSync(rootfs, Buffer.alloc(1024 * 1024));
  const spec: VmSpec = {
    name: 'qmptest', runDir: dir, accel: 'tcg', memoryMiB: 128, cpus: 1, machine: 'q35',
    kernel: findKernel(), initrd: buildTinyInitramfs(path.join(dir, 'initrd.cpio')), rootfs, append: 'console=ttyS0',
    agentSocket: path.join(dir, 'qmptest.agent'), agentPortName: 'org.symrun.agent.0', rootPorts: 2, extraArgs: ['-S'],
  };
  const t0 = Date.now();
  const vm = await startVm(spec, {});
  t.comment(`startVm (QMP ready) took ${Date.now() - t0} ms`);
  t.teardown(() => vm.stop({ graceMs: 1000 }));
  t.equal(vm.qmp.state, 'ready');
  t.same(vm.qmp.version, qemu.version, 'greeting version matches --version');
  const v = await vm.qmp.execute<{ qemu: { major: number; minor: number; micro: number } }>('query-version');
  t.same(v.qemu, qemu.version, 'query-version matches detectQemu');
  const st = await vm.qmp.execute<{ status: string; running: boolean }>('query-status');
  t.equal(st.status, 'prelaunch', '-S keeps the guest stopped');

  const bad: any = await vm.qmp.execute('no-such-command').catch((e) => e);
  t.ok(bad instanceof QmpCommandError);
  t.equal(bad.errorClass, 'CommandNotFound');
  const gone: any = await vm.qmp.execute('device_del', { id: 'nonexistent0' }).catch((e) => e);
  t.ok(gone instanceof QmpCommandError);
  t.comment(`device_del of a missing id: ${gone.errorClass}: ${gone.desc}`);
  t.equal(gone.errorClass, 'DeviceNotFound');

  // the root ports exist and are empty
  const pci = await vm.qmp.execute<Array<{ devices: Array<{ qdev_id: string }> }>>('query-pci');
  const ids = pci.flatMap((b) => b.devices.map((d) => d.qdev_id));
  t.ok(ids.includes('rp1') && ids.includes('rp2'), 'root ports present');

  const pid = vm.pid;
  const ex = await vm.stop({ graceMs: 2000 });
  t.comment(`stop: ${JSON.stringify(ex)}`);
  t.notOk(alive(pid), 'QEMU process is gone');
  t.notOk(alive(-pid), 'its process group is gone');
  t.equal(vm.qmp.state, 'closed');
  t.same(await vm.stop(), ex, 'stop is idempotent');
});
