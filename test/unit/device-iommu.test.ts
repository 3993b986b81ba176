import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { PciFunction } from '../../launcher/src/device/discover.js';
import { groupError, groupVerdict } from '../../launcher/src/device/iommu.js';
import { resolvePools, selectPool } from '../../launcher/src/device/pools.js';
import { readFunction } from '../../launcher/src/device/discover.js';
import { bench } from '../fixtures/sysfs/harness.js';
import { ethernetNode } from '../fixtures/sysfs/machines.js';

const fn = (address: string, kind: PciFunction['kind'], driver?: string, group = 5): PciFunction => ({ address, kind, iommuGroup: group, netdevs: [], ibdevs: [], ...(driver ? { driver } : {}) });
const vf = fn('0000:3b:02.0', 'ethernet', 'iavf');

t.test('viability: other functions on vfio-pci, on no driver, or bridges are fine; any other driver is not', async (t) => {
  const none = () => undefined;
  t.same(groupVerdict(vf, [vf, fn('0000:3a:00.0', 'bridge', 'pcieport'), fn('0000:3b:02.1', 'ethernet')], none, '1'), { group: 5, ok: true, problems: [] });
  const bad = groupVerdict(vf, [vf, fn('0000:5d:00.0', 'other', 'nvme')], none, '1');
  t.same(bad.problems, [{ device: '0000:5d:00.0', rule: 'viability', reason: 'is bound to nvme; every function of the group must be bound to vfio-pci or to no driver' }]);
  const e = groupError(vf.address, bad);
  t.equal(e.code, 'ESYM_DEVICE_IOMMU_GROUP');
  t.equal(e.message, 'VF 0000:3b:02.0 cannot be passed through: IOMMU group 5 also holds 0000:5d:00.0, which is bound to nvme; every function of the group must be bound to vfio-pci or to no driver');
  t.match(e.fix, /unbind 0000:5d:00\.0 .*ls \/sys\/kernel\/iommu_groups\/5\/devices/);
});

t.test('isolation: a group mate claimed by another job, or on vfio-pci and claimed by nobody, is refused', async (t) => {
  const mate = fn('0000:3b:02.1', 'ethernet', 'vfio-pci');
  const claims = new Map([['0000:3b:02.1', '200']]);
  t.same(groupVerdict(vf, [vf, mate], (a) => claims.get(a), '200').ok, true, 'same job: fine');
  t.match(groupVerdict(vf, [vf, mate], (a) => claims.get(a), '100').problems, [{ device: '0000:3b:02.1', rule: 'isolation', reason: /claimed by Slurm job 200/ }]);
  t.match(groupVerdict(vf, [vf, mate], () => undefined, '100').problems, [{ rule: 'isolation', reason: /bound to vfio-pci but claimed by no job/ }]);
  t.match(groupVerdict(vf, [vf, fn('0000:3b:02.1', 'ethernet')], (a) => claims.get(a), '100').problems, [{ rule: 'isolation', reason: /claimed by Slurm job 200/ }], 'claimed, not yet bound: still refused');
  const noGroup = groupVerdict({ ...vf, iommuGroup: undefined }, [], () => undefined, '1');
  t.same([noGroup.ok, noGroup.problems[0]!.rule], [false, 'no-group']);
  t.match(groupError(vf.address, noGroup).fix, /intel_iommu=on/);
});

t.test('claim refuses a VF whose group holds a device on another driver, naming the device and the group; nothing is touched', async (t) => {
  const m = ethernetNode();
  m.devices.find((d) => d.address === '0000:5d:00.0')!.group = 31; // the NVMe drive shares group 31 with VF 0000:3b:02.0
  const b = bench(t, m, { fabric: { pfs: ['0000:3b:00.0'] } });
  const one = selectPool('0000:3b:02.0', resolvePools(b.io, b.cfg.devices.pools), b.io);
  const e = await b.manager().claim({ job: '5', uid: 1001, gid: 1001, slots: 1, candidates: one }).catch((x) => x);
  t.equal(e.code, 'ESYM_DEVICE_IOMMU_GROUP');
  t.equal(e.message, 'no VF can be handed to job 5: 0000:3b:02.0 cannot be passed through: IOMMU group 31 also holds 0000:5d:00.0, which is bound to nvme; every function of the group must be bound to vfio-pci or to no driver');
  t.match(e.fix, /unbind 0000:5d:00\.0 .* ls \/sys\/kernel\/iommu_groups\/31\/devices shows the group/);
  t.same(e.details.refused.map((r: { pci: string; device: string; rule: string }) => [r.pci, r.device, r.rule]), [['0000:3b:02.0', '0000:5d:00.0', 'viability']]);
  t.same(b.io.writes(), [], 'nothing written to sysfs');
  t.same(b.runner.calls, [], 'no command run');
  t.same(fs.readdirSync(path.join(b.stateDir, 'vf')), [], 'no claim');
  t.same(fs.readdirSync(path.join(b.stateDir, 'slot')), [], 'no slot');
  const any = await b.manager().claim({ job: '5', uid: 1001, gid: 1001, slots: 1 });
  t.equal(any.claimed[0]!.pci, '0000:3b:02.1', 'from the whole pool: the next VF');
  t.match((await b.manager().check()).problems, [/VF 0000:3b:02\.0 cannot be passed through: IOMMU group 31 also holds 0000:5d:00\.0/], 'check reports the pool VF that can never be used');
});

t.test('two VFs in one group (no ACS): one job may hold both, another job gets neither', async (t) => {
  const m = ethernetNode();
  m.devices.find((d) => d.address === '0000:3b:02.1')!.group = 31;
  const b = bench(t, m, { fabric: { vfs: ['0000:3b:02.0', '0000:3b:02.1'] } });
  // group mates must not sit on their host driver (viability): the site leaves them unbound
  for (const a of ['0000:3b:02.0', '0000:3b:02.1']) b.io.write(`sys/bus/pci/devices/${a}/driver/unbind`, a);
  const mgr = b.manager();
  const a = await mgr.claim({ job: '100', uid: 1001, gid: 1001, slots: 1 });
  t.equal(a.claimed[0]!.pci, '0000:3b:02.0');
  const e = await mgr.claim({ job: '200', uid: 1002, gid: 1002, slots: 1 }).catch((x) => x);
  t.equal(e.code, 'ESYM_DEVICE_NONE_FREE', 'one VF claimed by job 100, the other refused');
  t.match(e.message, /^no free VF for job 200 \(slot 0, VF 1 of 1\): 1 of 2 claimed by jobs, 1 refused: 0000:3b:02\.1 cannot be passed through: IOMMU group 31 also holds 0000:3b:02\.0, which is claimed by Slurm job 100/);
  t.match(e.details.refused, [{ pci: '0000:3b:02.1', device: '0000:3b:02.0', rule: 'isolation' }]);
  t.same(fs.readdirSync(path.join(b.stateDir, 'vf')), ['0000:3b:02.0'], 'job 200 left no claim');
  const both = await mgr.claim({ job: '100', uid: 1001, gid: 1001, slots: 1 });
  t.equal(both.claimed[0]!.pci, '0000:3b:02.1', 'the same job may take the group mate');
  t.same(b.io.owner('dev/vfio/31'), { uid: 1001, gid: 1001, mode: 0o600 });
  const r1 = await mgr.release('100', { pci: '0000:3b:02.0' });
  t.notOk(r1.released[0]!.actions.some((x) => x.startsWith('chown')), 'the group node stays with the job while it holds another VF of the group');
  t.equal(readFunction(b.io, '0000:3b:02.0')!.driver, undefined, 'back to unbound');
  t.same(b.io.owner('dev/vfio/31'), { uid: 1001, gid: 1001, mode: 0o600 }, 'still the job\'s: 02.1 is on vfio-pci in group 31');
  const r2 = await mgr.release('100');
  t.same(r2.released.map((x) => x.pci), ['0000:3b:02.1']);
  t.equal(b.io.owner('dev/vfio/31'), undefined, 'gone with the last vfio-pci device');
});
