import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { vfMac, vfNodeGuid, vfPortGuid } from '../../launcher/src/device/identity.js';
import { readFunction } from '../../launcher/src/device/discover.js';
import { resolvePools, selectPool } from '../../launcher/src/device/pools.js';
import { snapshotTree } from '../fixtures/sysfs/build.js';
import { bench } from '../fixtures/sysfs/harness.js';
import { ethernetNode, infinibandNode, merge } from '../fixtures/sysfs/machines.js';

const IP = '/sbin/ip';
const files = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);

t.test('claim two VFs: claimed, MAC/spoofchk/trust through the PF, bound to vfio-pci, /dev/vfio to the user', async (t) => {
  const b = bench(t);
  const r = await b.manager().claim({ job: '4711', uid: 1001, gid: 1002, slots: 2 });
  t.same([r.job, r.uid, r.node, r.nodeIndex, r.notes], ['4711', 1001, 'n7', 7, []]);
  t.same(r.claimed.map((c) => [c.pci, c.slot, c.vfIndex, c.pf, c.pfInterface, c.type, c.group, c.vfioDevice, c.boundFrom, c.numaNode]), [
    ['0000:3b:02.0', 0, 0, '0000:3b:00.0', 'ens1f0', 'ethernet', 31, '/dev/vfio/31', 'iavf', 1],
    ['0000:3b:02.1', 1, 1, '0000:3b:00.0', 'ens1f0', 'ethernet', 32, '/dev/vfio/32', 'iavf', 1],
  ]);
  t.same(r.claimed.map((c) => c.mac), [vfMac({ job: 4711, node: 7, slot: 0 }), vfMac({ job: 4711, node: 7, slot: 1 })]);
  t.same(r.claimed[0]!.localCpus, [8, 9, 10, 11, 12, 13, 14, 15], 'pinning advice: the CPUs local to the VF');
  t.same(b.runner.calls, [
    [IP, 'link', 'set', 'dev', 'ens1f0', 'vf', '0', 'mac', vfMac({ job: 4711, node: 7, slot: 0 })],
    [IP, 'link', 'set', 'dev', 'ens1f0', 'vf', '0', 'spoofchk', 'on'],
    [IP, 'link', 'set', 'dev', 'ens1f0', 'vf', '0', 'trust', 'off'],
    [IP, 'link', 'set', 'dev', 'ens1f0', 'vf', '1', 'mac', vfMac({ job: 4711, node: 7, slot: 1 })],
    [IP, 'link', 'set', 'dev', 'ens1f0', 'vf', '1', 'spoofchk', 'on'],
    [IP, 'link', 'set', 'dev', 'ens1f0', 'vf', '1', 'trust', 'off'],
  ]);
  t.same(b.io.writes().map((w) => `${w.file} <- ${w.data}`), [
    'sys/bus/pci/devices/0000:3b:02.0/driver_override <- vfio-pci',
    'sys/bus/pci/devices/0000:3b:02.0/driver/unbind <- 0000:3b:02.0',
    'sys/bus/pci/drivers_probe <- 0000:3b:02.0',
    'dev/vfio/31 <- chown 1001:1002 chmod 600',
    'sys/bus/pci/devices/0000:3b:02.1/driver_override <- vfio-pci',
    'sys/bus/pci/devices/0000:3b:02.1/driver/unbind <- 0000:3b:02.1',
    'sys/bus/pci/drivers_probe <- 0000:3b:02.1',
    'dev/vfio/32 <- chown 1001:1002 chmod 600',
  ], 'the MAC is set while the VF is still on its host driver, then vfio-pci, then the group node');
  t.same(b.io.owner('dev/vfio/31'), { uid: 1001, gid: 1002, mode: 0o600 });
  const claim = JSON.parse(fs.readFileSync(path.join(b.stateDir, 'vf/0000:3b:02.0'), 'utf8'));
  t.match(claim, { pci: '0000:3b:02.0', job: '4711', uid: 1001, slot: 0, boundFrom: 'iavf', overrideFrom: null, stage: 'ready', group: 31, mac: vfMac({ job: 4711, node: 7, slot: 0 }), node: 'n7', nodeIndex: 7 });
  t.ok(Date.parse(claim.claimedAt) > 0);
  t.same(files(path.join(b.stateDir, 'slot')), ['4711.0', '4711.1']);
  t.same(files(path.join(b.stateDir, 'tmp')), [], 'no temp file left');
  t.equal((fs.statSync(path.join(b.stateDir, 'vf')).mode & 0o777), 0o700);
});

t.test('InfiniBand VF: node and port GUIDs through the PF\'s IPoIB interface', async (t) => {
  const b = bench(t);
  const m = b.manager();
  const cands = selectPool('ib', resolvePools(b.io, b.cfg.devices.pools), b.io);
  const r = await m.claim({ job: '90', uid: 0, gid: 0, slots: 1, candidates: cands });
  const id = { job: 90, node: 7, slot: 0 };
  t.same(r.claimed.map((c) => [c.pci, c.type, c.nodeGuid, c.portGuid, c.mac, c.pfInterface]), [['0000:5e:00.1', 'infiniband', vfNodeGuid(id), vfPortGuid(id), undefined, 'ib0']]);
  t.same(b.runner.calls, [[IP, 'link', 'set', 'dev', 'ib0', 'vf', '0', 'node_guid', vfNodeGuid(id), 'port_guid', vfPortGuid(id)]]);
  t.equal(readFunction(b.io, '0000:5e:00.1')!.driver, 'vfio-pci');
  await m.release('90');
  t.equal(readFunction(b.io, '0000:5e:00.1')!.driver, 'mlx5_core');
  t.same(readFunction(b.io, '0000:5e:00.1')!.ibdevs, ['mlx5_1'], 'the host RDMA device is back');
});

t.test('release undoes everything the claim did: the tree and the claim directory as before', async (t) => {
  const b = bench(t);
  const before = snapshotTree(b.root);
  const m = b.manager();
  await m.claim({ job: '4711', uid: 1001, gid: 1001, slots: 3 });
  b.runner.calls.length = 0;
  const r = await m.release('4711');
  t.same(r.left, []);
  t.same(r.released.map((x) => [x.pci, x.slot]), [['0000:3b:02.0', 0], ['0000:3b:02.1', 1], ['0000:3b:02.2', 2]]);
  t.same(r.released[0]!.actions, [
    'chown 0:0 /dev/vfio/31; chmod 0600 /dev/vfio/31',
    'echo "0000:3b:02.0" > /sys/bus/pci/devices/0000:3b:02.0/driver/unbind',
    'echo "" > /sys/bus/pci/devices/0000:3b:02.0/driver_override',
    'echo "0000:3b:02.0" > /sys/bus/pci/drivers_probe',
    '/sbin/ip link set dev ens1f0 vf 0 mac 00:00:00:00:00:00',
    '/sbin/ip link set dev ens1f0 vf 0 trust off',
    '/sbin/ip link set dev ens1f0 vf 0 spoofchk on',
    'unclaimed 0000:3b:02.0 (slot 0)',
  ]);
  t.equal(b.runner.calls.length, 9, 'three reset commands per VF');
  t.same(snapshotTree(b.root), before, 'every VF back on iavf, overrides unset, netdevs back');
  t.same(['vf', 'slot', 'tmp'].map((d) => files(path.join(b.stateDir, d))), [[], [], []]);
  t.same(files(path.join(b.root, 'dev/vfio')), ['vfio'], 'the group nodes went away with vfio-pci');
});

t.test('release never touches another job\'s claims', async (t) => {
  const b = bench(t);
  const m = b.manager();
  await m.claim({ job: '100', uid: 1001, gid: 1001, slots: 2 });
  const other = await m.claim({ job: '200', uid: 1002, gid: 1002, slots: 1 });
  const bPci = other.claimed[0]!.pci;
  const bFile = path.join(b.stateDir, 'vf', bPci);
  const bBytes = fs.readFileSync(bFile, 'utf8');
  const writesBefore = b.io.writes().length;
  await t.rejects(m.release('100', { pci: bPci }), { code: 'ESYM_DEVICE_NOT_CLAIMED', message: `${bPci} is claimed by job 200, not job 100: nothing released` });
  t.equal(b.io.writes().length, writesBefore, 'a refused release writes nothing');
  const r = await m.release('100');
  t.same(r.released.map((x) => x.pci), ['0000:3b:02.0', '0000:3b:02.1']);
  t.equal(fs.readFileSync(bFile, 'utf8'), bBytes, 'job 200\'s claim file is byte for byte the same');
  t.equal(readFunction(b.io, bPci)!.driver, 'vfio-pci');
  t.same(b.io.owner(`dev/vfio/${other.claimed[0]!.group}`), { uid: 1002, gid: 1002, mode: 0o600 });
  t.same(files(path.join(b.stateDir, 'slot')), ['200.0']);
  t.notOk(b.io.writes().slice(writesBefore).some((w) => w.file.includes(bPci) || w.data.includes(bPci) || w.file === `dev/vfio/${other.claimed[0]!.group}`), 'no write names job 200\'s VF or group');
  t.same((await m.release('100')).released, [], 'releasing again: nothing');
});

t.test('a job\'s second claim gets the next slot; a failing claim rolls back only what it claimed', async (t) => {
  const b = bench(t);
  const m = b.manager();
  const first = await m.claim({ job: '7', uid: 1001, gid: 1001, slots: 1 });
  b.runner.on((a) => a.includes('vf') && a.includes('2') && a.includes('mac'), { code: 2, stderr: 'RTNETLINK answers: Invalid argument\n' });
  const before = snapshotTree(b.root);
  const e = await m.claim({ job: '7', uid: 1001, gid: 1001, slots: 2 }).catch((x) => x);
  t.equal(e.code, 'ESYM_DEVICE_COMMAND');
  t.equal(e.message, `/sbin/ip link set dev ens1f0 vf 2 mac ${vfMac({ job: 7, node: 7, slot: 2 })} failed (exit 2): RTNETLINK answers: Invalid argument; the 2 VFs this call had claimed were released`);
  t.same(e.details.rolledBack, ['0000:3b:02.1', '0000:3b:02.2']);
  t.same(snapshotTree(b.root), before, 'the failed call left sysfs as it found it');
  t.same(files(path.join(b.stateDir, 'vf')), [first.claimed[0]!.pci], 'the first claim stays');
  t.same(files(path.join(b.stateDir, 'slot')), ['7.0']);
  b.runner.answers.length = 0;
  const again = await m.claim({ job: '7', uid: 1001, gid: 1001, slots: 1 });
  t.same(again.claimed.map((c) => [c.slot, c.mac]), [[1, vfMac({ job: 7, node: 7, slot: 1 })]]);
});

t.test('trust off on a driver without trust: a note; spoofchk on unsupported: refused', async (t) => {
  const b = bench(t);
  const m = b.manager();
  b.runner.on((a) => a.includes('trust'), { code: 2, stderr: 'RTNETLINK answers: Operation not supported\n' });
  const r = await m.claim({ job: '8', uid: 0, gid: 0, slots: 1 });
  t.match(r.notes, [/trust off: RTNETLINK answers: Operation not supported \(the driver has no such setting/]);
  b.runner.on((a) => a.includes('spoofchk'), { code: 2, stderr: 'RTNETLINK answers: Operation not supported\n' });
  await t.rejects(m.claim({ job: '9', uid: 0, gid: 0, slots: 1 }), { code: 'ESYM_DEVICE_COMMAND', fix: /spoofCheck: false/ });
});

t.test('a VF whose group is held open by a process is skipped; a release while held is refused', async (t) => {
  const m0 = ethernetNode();
  m0.procs = [{ pid: 4242, comm: 'qemu-system-x86', fds: { 3: '/dev/vfio/vfio', 17: '/dev/vfio/31' } }];
  const b = bench(t, m0, { fabric: { pfs: ['0000:3b:00.0'] } });
  const m = b.manager();
  const r = await m.claim({ job: '11', uid: 1001, gid: 1001, slots: 1 });
  t.equal(r.claimed[0]!.pci, '0000:3b:02.1', '02.0 skipped: /dev/vfio/31 is held by pid 4242');
  fs.mkdirSync(path.join(b.root, 'proc/5000/fd'), { recursive: true });
  fs.writeFileSync(path.join(b.root, 'proc/5000/comm'), 'qemu-system-x86\n');
  fs.symlinkSync('/dev/vfio/32', path.join(b.root, 'proc/5000/fd/20'));
  const rel = await m.release('11');
  t.same(rel.released, []);
  t.match(rel.left, [{ pci: '0000:3b:02.1', reason: '/dev/vfio/32 is still held open by pid 5000 (qemu-system-x86)', fix: /stop the job's QEMU first/ }]);
  t.equal(readFunction(b.io, '0000:3b:02.1')!.driver, 'vfio-pci', 'nothing undone under a running QEMU');
  t.ok(fs.existsSync(path.join(b.stateDir, 'vf/0000:3b:02.1')), 'the claim stays');
  fs.rmSync(path.join(b.root, 'proc/5000'), { recursive: true });
  t.equal((await m.release('11')).released.length, 1, 'released once the holder is gone');
});

t.test('not enough VFs: all or nothing', async (t) => {
  const b = bench(t);
  const before = snapshotTree(b.root);
  const e = await b.manager().claim({ job: '12', uid: 0, gid: 0, slots: 11 }).catch((x) => x);
  t.equal(e.code, 'ESYM_DEVICE_NONE_FREE');
  t.match(e.message, /^no free VF for job 12 \(slot 10, VF 11 of 11\): 10 of 10 claimed by jobs; the 10 VFs this call had claimed were released$/);
  t.same(snapshotTree(b.root), before);
  t.same(files(path.join(b.stateDir, 'vf')), []);
});

t.test('check: a healthy node, claims, stale claims, missing IOMMU and vfio', async (t) => {
  const b = bench(t);
  const m = b.manager();
  t.same(await m.check(), { ok: true, problems: [], notes: [], free: 10, claimed: 0 });
  await m.claim({ job: '300', uid: 1001, gid: 1001, slots: 1 });
  await m.claim({ job: '301', uid: 1001, gid: 1001, slots: 1 });
  const live = async (job: string) => ({ job, state: job === '300' ? 'gone' as const : 'live' as const, detail: job === '300' ? 'JobState=COMPLETED' : 'JobState=RUNNING' });
  const c = await m.check(live);
  t.same([c.ok, c.free, c.claimed], [false, 8, 2]);
  t.same(c.problems, ['stale claim: 0000:3b:02.0 by job 300 (JobState=COMPLETED): symrun node devices release --job 300']);
  t.same((await m.stale(live)).map((s) => s.claim.pci), ['0000:3b:02.0']);

  const noIommu = ethernetNode();
  for (const d of noIommu.devices) delete d.group;
  noIommu.drivers = noIommu.drivers.filter((d) => d !== 'vfio-pci');
  const b2 = bench(t, noIommu, { fabric: { pfs: ['0000:3b:00.0'] } });
  const c2 = await b2.manager().check();
  t.equal(c2.ok, false);
  t.match(c2.problems, [/^the kernel has no IOMMU groups/, /^the vfio-pci driver is not loaded/, /^VF 0000:3b:02.0 has no IOMMU group/, /02\.1/, /02\.2/, /02\.3/]);
  await t.rejects(b2.manager().claim({ job: '1', uid: 0, gid: 0, slots: 1 }), { code: 'ESYM_DEVICE_IOMMU_GROUP', message: /has no IOMMU group/ });
});

t.test('a node without an index cannot make MACs: claim says how to set it, check reports it', async (t) => {
  const b = bench(t);
  const cfg = { ...b.cfg, node: { name: 'login', indexFrom: 'none' as const } };
  const { DeviceManager } = await import('../../launcher/src/device/manager.js');
  const m = new DeviceManager({ cfg, io: b.io, run: b.runner.run });
  await t.rejects(m.claim({ job: '1', uid: 0, gid: 0, slots: 1 }), { code: 'ESYM_NODE_CONFIG_INVALID', field: 'node.index', fix: /set node\.index/ });
  t.match((await m.check()).problems, [/node login has no index/]);
  t.same(b.io.writes(), []);
});

t.test('ethernet and IB pools in one node: every VF, once', async (t) => {
  const b = bench(t, merge(ethernetNode(), infinibandNode()));
  const l = b.manager().list();
  t.equal(l.vfs.length, 10);
  t.same(l.vfs.filter((v) => v.type === 'infiniband').map((v) => v.pci), ['0000:5e:00.1', '0000:5e:00.2']);
  t.same([l.node, l.nodeIndex, l.problems, l.bad, l.strayClaims], ['n7', 7, [], [], []]);
});

t.test('list as a user who may not read the claim directory: VFs without claims, said so', async (t) => {
  const b = bench(t);
  await b.manager().claim({ job: '5', uid: 0, gid: 0, slots: 1 });
  const { ClaimStore } = await import('../../launcher/src/device/claims.js');
  class Unreadable extends ClaimStore {
    override list(): never { throw Object.assign(new Error(`EACCES: permission denied, scandir '${this.dir}/vf'`), { code: 'EACCES' }); }
  }
  const l = b.manager({ store: new Unreadable(b.stateDir) }).list();
  t.equal(l.vfs.length, 10);
  t.notOk(l.vfs.some((v) => v.claim), 'no claim shown');
  t.equal(l.claimsHidden, `the claims in ${b.stateDir} are readable by root only`);
  t.equal(b.manager().list().claimsHidden, undefined);
});

t.test('a claimed VF that no longer exists (VFs removed): release drops the claim and says so', async (t) => {
  const b = bench(t);
  const m = b.manager();
  await m.claim({ job: '6', uid: 1001, gid: 1001, slots: 1 });
  fs.rmSync(path.join(b.root, 'sys/bus/pci/devices/0000:3b:02.0'));
  fs.rmSync(path.join(b.root, 'sys/devices/pci0000:00/0000:3b:02.0'), { recursive: true });
  const writes = b.io.writes().length;
  const r = await m.release('6');
  t.same(r.left, []);
  t.match(r.released[0]!.notes, ['0000:3b:02.0 no longer exists (VFs removed?): nothing to give back, the claim is dropped']);
  t.equal(b.io.writes().length, writes + 1, 'only /dev/vfio/31 was taken back');
  t.same(files(path.join(b.stateDir, 'vf')), []);
});
