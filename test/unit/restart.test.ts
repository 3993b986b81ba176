// Restart: which checkpoint (newest complete one whose hashes verify; corrupt / incomplete / old refused,
// with why), where every VM goes (survivors stay, the lost ones take spares), and the guest sequence
// rewind that lets a restored guest's frames through again.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { CKPT_FORMAT, CKPT_FORMAT_VERSION, checkpointName, createTempDir, writeManifest, publish, symrunVersion, type CheckpointManifest } from '../../launcher/src/checkpoint/manifest.js';
import { pickCheckpoint, planRestart } from '../../launcher/src/coordinator/restart.js';
import { GuestClient } from '../../launcher/src/agent/guest.js';
import { PROTOCOL_VERSION, type HostFrame } from '../../guest/protocol/index.js';
import type { VmSpec } from '../../launcher/src/vm/index.js';

function tmpRoot(t: { teardown(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'restart-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

const spec = (name: string): VmSpec => ({
  name, runDir: `/run/symrun/j1/host1/${name}`, accel: 'tcg', memoryMiB: 512, cpus: 1, machine: 'q35', kernel: '/img/vmlinuz', initrd: '/img/initrd.img',
  rootfs: '/img/root.ext4', append: 'console=ttyS0', agentSocket: '/run/a.sock', agentPortName: 'symrun.agent', rootPorts: 2, extraArgs: [],
});

function makeCheckpoint(root: string, jobId: string, at: Date, o: { sessions?: boolean; complete?: boolean } = {}): { name: string; dir: string } {
  const name = checkpointName(jobId, at);
  const tmp = createTempDir(root, name);
  const vms = ['vm1', 'vm2'].map((vm, i) => {
    const data = crypto.randomBytes(4096 + i);
    fs.writeFileSync(path.join(tmp, `${vm}.state`), data);
    return {
      name: vm, host: `host${i + 1}`, file: `${vm}.state`, size: data.length, sha256: crypto.createHash('sha256').update(data).digest('hex'), spec: spec(vm),
      device: { id: 'symfab0', netdevId: 'symfab0nd', model: 'virtio-net-pci', mac: `52:54:00:00:00:0${i + 1}`, bus: 'rp1', tap: `symtap${i + 1}` },
      network: { name: 'eth1', address: `198.18.0.${i + 2}/24` }, index: i + 1, ip: `198.18.0.${i + 2}`, guestSeq: 10 + i,
    };
  });
  const m: CheckpointManifest = {
    format: CKPT_FORMAT, formatVersion: CKPT_FORMAT_VERSION, symrunVersion: symrunVersion(), name, jobId, createdAt: at.toISOString(),
    command: { app: ['./ring'], cwd: '/work' }, hosts: [], image: { hash: 'abc', kernel: '/k', initrd: '/i', rootfs: '/r' }, vms,
    ...(o.sessions === false ? {} : { sessions: { mpirun: { vm: 'vm1', sid: 's1', rankVm: ['vm1', 'vm2'] }, rsh: [{ rid: 'r1', from: 'vm1', to: 'vm2', sid: 's2' }] } }),
  };
  writeManifest(tmp, m);
  if (o.complete === false) return { name, dir: tmp };
  return { name, dir: publish(tmp, path.join(root, name)) };
}

function corrupt(file: string): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from('XXXX'), 0, 4, 100);
  fs.closeSync(fd);
}

t.test('pickCheckpoint: the newest complete one of the job that verifies', async (t) => {
  const root = tmpRoot(t);
  const a = makeCheckpoint(root, 'j1', new Date('2026-11-22T08:00:00Z'));
  const b = makeCheckpoint(root, 'j1', new Date('2026-11-22T08:10:00Z'));
  makeCheckpoint(root, 'other', new Date('2026-11-22T09:00:00Z'));
  makeCheckpoint(root, 'j1', new Date('2026-11-22T08:20:00Z'), { complete: false });
  const p = await pickCheckpoint(root, { jobIds: ['j1'] });
  t.equal(p.manifest.name, b.name, 'newest complete of j1 (not the other job\'s, not the temp dir)');
  t.same(p.refused.map((r) => r.reason.split(':')[0]), ['incomplete'], 'the temp dir is listed as refused: incomplete');

  corrupt(path.join(b.dir, 'vm2.state'));
  const q = await pickCheckpoint(root, { jobIds: ['j1'] });
  t.equal(q.manifest.name, a.name, 'a corrupt newest one falls back to the one before');
  const why = q.refused.find((r) => r.name === b.name)?.reason ?? '';
  t.match(why, /^corrupt: vm2\.state \(vm2\) sha256 .* does not match the manifest/, `refused with the file and why: ${why}`);

  fs.rmSync(path.join(a.dir, 'vm1.state'));
  await t.rejects(pickCheckpoint(root, { jobIds: ['j1'] }), { code: 'ESYM_NO_CHECKPOINT', message: /no usable checkpoint of job j1 .*vm1\.state \(vm1\) is missing/ });
  await t.rejects(pickCheckpoint(path.join(root, 'nope'), { jobIds: ['j1'] }), { code: 'ESYM_NO_CHECKPOINT', message: /does not exist/ });
});

t.test('pickCheckpoint --from: that one or a clear refusal', async (t) => {
  const root = tmpRoot(t);
  const a = makeCheckpoint(root, 'j1', new Date('2026-11-22T08:00:00Z'));
  t.equal((await pickCheckpoint(root, { from: a.name })).manifest.name, a.name, 'by name');
  t.equal((await pickCheckpoint('/elsewhere', { from: a.dir })).manifest.name, a.name, 'by path');
  corrupt(path.join(a.dir, 'vm1.state'));
  await t.rejects(pickCheckpoint(root, { from: a.name }), { code: 'ESYM_CKPT_REFUSED', field: '--from', exitCode: 2, message: /is corrupt: vm1\.state \(vm1\) sha256/ });
  const old = makeCheckpoint(root, 'j2', new Date('2026-11-22T08:00:00Z'), { sessions: false });
  await t.rejects(pickCheckpoint(root, { from: old.name }), { code: 'ESYM_CKPT_OLD', message: /without the session record/ });
  await t.rejects(pickCheckpoint(root, { from: 'j9-20990101T000000000Z' }), { code: 'ESYM_CKPT_REFUSED', message: /^no checkpoint j9-20990101T000000000Z in / });
});

t.test('planRestart: survivors stay, lost VMs take spares in host order', async (t) => {
  const vms = [{ vm: 'vm1', host: 'n1' }, { vm: 'vm2', host: 'n2' }, { vm: 'vm3', host: 'n3' }];
  const hosts = (lost: string[], extra: Array<{ name: string; usable: boolean }> = []) =>
    ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name, usable: !lost.includes(name) })).concat(extra);
  const p = planRestart(vms, hosts(['n2']));
  t.same([...p.placement], [['vm1', 'n1'], ['vm3', 'n3'], ['vm2', 'n4']]);
  t.same(p.moved, [{ vm: 'vm2', from: 'n2', to: 'n4' }]);
  t.same(p.homeless, []);
  const two = planRestart(vms, hosts(['n2', 'n3']));
  t.same(two.moved, [{ vm: 'vm2', from: 'n2', to: 'n4' }], 'one spare: the first lost VM gets it');
  t.same(two.homeless, ['vm3'], 'the other has nowhere to go');
  const drainedSpare = planRestart(vms, hosts(['n2']).map((h) => (h.name === 'n4' ? { ...h, usable: false } : h)).concat([{ name: 'n5', usable: true }]));
  t.same(drainedSpare.moved, [{ vm: 'vm2', from: 'n2', to: 'n5' }], 'an unusable (drained) spare is skipped');
});

t.test('GuestClient.rewind: a restored guest\'s frames count again', async (t) => {
  const sent: HostFrame[] = [];
  const c = new GuestClient('vm1');
  const out: string[] = [];
  c.adopt('s1', { onStdout: (d) => out.push(d.toString()) });
  const sync = () => {
    c.attach((f) => sent.push(f));
    const s = sent.filter((f) => f.t === 'sync').pop() as Extract<HostFrame, { t: 'sync' }>;
    c.receive({ t: 'sync', id: s.id, v: PROTOCOL_VERSION, agent: { version: 'x', hostname: 'vm1', pid: 1, bootId: 'b', uptime: 1 } });
    return s;
  };
  sync();
  for (let seq = 1; seq <= 20; seq++) c.receive({ t: 'out', seq, sid: 's1', fd: 1, data: Buffer.from(`${seq} `).toString('base64') });
  t.equal(c.receivedSeq, 20);
  c.detach('restored');
  c.rewind(12); // the checkpoint was taken when 12 frames had arrived
  const s = sync();
  t.equal(s.lastSeq, 12, 'the sync acknowledges up to the checkpoint: the guest replays what came after');
  c.receive({ t: 'out', seq: 13, sid: 's1', fd: 1, data: Buffer.from('13again ').toString('base64') });
  t.equal(out.at(-1), '13again ', 'frames after the checkpoint are delivered again (not dropped as duplicates)');
  c.close();
});
