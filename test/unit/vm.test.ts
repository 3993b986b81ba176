import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseQemuVersion, versionAtLeast, effectiveMemory, qemuArgs, bootSector, probeAccel, detectQemu, startVm, type VmSpec } from '../../launcher/src/vm/index.js';

t.test('parseQemuVersion', async (t) => {
  t.same(parseQemuVersion('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright'), { major: 7, minor: 2, micro: 22 });
  t.same(parseQemuVersion('QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)'), { major: 10, minor: 0, micro: 2 });
  t.same(parseQemuVersion('QEMU emulator version 9.1'), { major: 9, minor: 1, micro: 0 });
  t.equal(parseQemuVersion('bash: nope'), undefined);
  t.ok(versionAtLeast({ major: 10, minor: 0, micro: 2 }, 9));
  t.notOk(versionAtLeast({ major: 8, minor: 2, micro: 9 }, 9));
});

t.test('effectiveMemory', async (t) => {
  const v72 = { major: 7, minor: 2, micro: 22 }, v10 = { major: 10, minor: 0, micro: 2 };
  const r = effectiveMemory(512, 'tcg', v72);
  t.equal(r.arg, '524280K');
  t.match(r.note, /256 KiB/);
  t.same(effectiveMemory(512, 'kvm', v72), { arg: '512M' });
  t.same(effectiveMemory(512, 'tcg', v10), { arg: '512M' });
  t.same(effectiveMemory(512, 'tcg', { major: 9, minor: 0, micro: 0 }), { arg: '512M' });
  t.throws(() => effectiveMemory(0, 'tcg', v10));
});

const spec: VmSpec = {
  name: 'vm0', runDir: '/run/x', accel: 'tcg', memoryMiB: 512, cpus: 2, machine: 'q35',
  kernel: '/img/vmlinuz', initrd: '/img/initrd.img', rootfs: '/img/root,1.ext4', append: 'console=ttyS0 quiet',
  agentSocket: '/run/x/vm0.agent', agentPortName: 'org.symrun.agent.0', rootPorts: 3, extraArgs: ['-cpu', 'max'],
};

t.test('qemuArgs', async (t) => {
  const a = qemuArgs(spec, { version: { major: 7, minor: 2, micro: 22 } });
  const j = a.join(' ');
  for (const s of ['-nodefaults', '-no-user-config', '-display none', '-nic none', '-machine q35', '-accel tcg', '-m 524280K', '-smp 2',
    'socket,id=qmp0,path=/run/x/vm0.qmp,server=on,wait=off', '-mon chardev=qmp0,mode=control',
    'file,id=con0,path=/run/x/vm0.console.log', '-kernel /img/vmlinuz', '-initrd /img/initrd.img',
    'file=/img/root,,1.ext4,if=none,id=root0,format=raw,readonly=on', 'virtio-blk-pci,drive=root0',
    'virtio-serial-pci', 'socket,id=agent0,path=/run/x/vm0.agent,server=on,wait=off', 'virtserialport,bus=vser0.0,chardev=agent0,id=agentport0,name=org.symrun.agent.0',
    'pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1', 'pcie-root-port,id=rp3,bus=pcie.0,chassis=3,slot=3', '-pidfile /run/x/vm0.pid']) {
    t.ok(j.includes(s), s);
  }
  t.equal(a[a.indexOf('-append') + 1], 'console=ttyS0 quiet', 'append is one argument');
  t.notOk(a.includes('-incoming'));
  t.same(a.slice(-2), ['-cpu', 'max']);
  const dst = qemuArgs({ ...spec, incoming: 'defer' }, { version: { major: 7, minor: 2, micro: 22 } });
  const i = dst.indexOf('-incoming');
  t.same(dst.slice(i, i + 2), ['-incoming', 'defer']);
  t.same([...dst.slice(0, i), ...dst.slice(i + 2)], a, 'destination = source + -incoming defer');
  t.throws(() => qemuArgs({ ...spec, name: 'a b' }, { version: { major: 7, minor: 2, micro: 0 } }));
});

t.test('boot sector', async (t) => {
  const b = bootSector();
  t.equal(b.length, 512);
  t.equal(b[510], 0x55);
  t.equal(b[511], 0xaa);
  t.equal(b[0], 0xfa, 'starts with cli');
  t.ok(b.includes(Buffer.from([0xb0, 0x2a, 0xe6, 0xf4])), 'mov $0x2a,%al; out %al,$0xf4');
});

t.test('probeAccel without a usable /dev/kvm', async (t) => {
  t.same(await probeAccel('tcg'), { accel: 'tcg' });
  const r = await probeAccel('auto', { kvmDevice: '/nonexistent/kvm', cacheFile: null });
  t.equal(r.accel, 'tcg');
  t.match(r.notice, /does not exist; using TCG/);
  await t.rejects(probeAccel('kvm', { kvmDevice: '/nonexistent/kvm', cacheFile: null }), { code: 'ESYM_KVM_UNAVAILABLE', fix: /accel: tcg/ });
});

t.test('detectQemu / startVm with a missing binary', async (t) => {
  await t.rejects(detectQemu('/nonexistent/qemu-system-x86_64'), { code: 'ESYM_QEMU_MISSING', fix: /bash scripts\/setup/ });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmtest-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await t.rejects(startVm({ ...spec, runDir: dir }, { qemuBinary: '/nonexistent/qemu-system-x86_64' }), { code: 'ESYM_QEMU_MISSING' });
});

t.test('startVm fails fast with the stderr tail when QEMU exits early', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmtest-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fake = path.join(dir, 'fake-qemu');
  fs.writeFileSync(fake, '#!/bin/sh\necho "qemu-system-x86_64: -drive file=/x: Could not open /x: No such file" >&2\nexit 1\n', { mode: 0o755 });
  const t0 = Date.now();
  const e: any = await startVm({ ...spec, runDir: dir }, { qemuBinary: fake, qemu: { binary: fake, version: { major: 7, minor: 2, micro: 22 } } }).catch((e) => e);
  t.equal(e.code, 'ESYM_QEMU_START');
  t.match(e.message, /Could not open/);
  t.match(e.message, /status 1/);
  t.ok(Date.now() - t0 < 3000, 'fails fast');
});
