import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { discoverPfs, groupMembers, hasIommu, readFunction, readPf, readVf } from '../../launcher/src/device/discover.js';
import { resolvePools, selectPool } from '../../launcher/src/device/pools.js';
import { FsDeviceIO } from '../../launcher/src/device/sysfs.js';
import { buildSysfs } from '../fixtures/sysfs/build.js';
import { ethernetNode, igbNode, infinibandNode, merge } from '../fixtures/sysfs/machines.js';
import { nodeConfig } from '../fixtures/sysfs/harness.js';

function tree(t: { teardown(fn: () => void): void }, m = merge(ethernetNode(), infinibandNode())) {
  const root = buildSysfs(m);
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  return { root, io: new FsDeviceIO(root) };
}

t.test('the fake tree has the kernel\'s shape (relative links into sys/devices)', async (t) => {
  const { root } = tree(t);
  t.equal(fs.readlinkSync(path.join(root, 'sys/bus/pci/devices/0000:3b:02.1')), '../../../devices/pci0000:00/0000:3b:02.1');
  t.equal(fs.readlinkSync(path.join(root, 'sys/devices/pci0000:00/0000:3b:02.1/driver')), '../../../bus/pci/drivers/iavf');
  t.equal(fs.readlinkSync(path.join(root, 'sys/devices/pci0000:00/0000:3b:02.1/physfn')), '../0000:3b:00.0');
  t.equal(fs.readlinkSync(path.join(root, 'sys/devices/pci0000:00/0000:3b:00.0/virtfn1')), '../0000:3b:02.1');
  t.equal(fs.readlinkSync(path.join(root, 'sys/devices/pci0000:00/0000:3b:02.1/iommu_group')), '../../../kernel/iommu_groups/32');
  t.equal(fs.readFileSync(path.join(root, 'sys/bus/pci/devices/0000:3b:02.1/driver_override'), 'utf8'), '(null)\n');
});

t.test('PFs, their VFs, drivers, groups, NUMA nodes, interfaces', async (t) => {
  const { io } = tree(t);
  const pfs = discoverPfs(io);
  t.same(pfs.map((p) => [p.address, p.kind, p.numVfs, p.totalVfs, p.vfs.length]), [
    ['0000:3b:00.0', 'ethernet', 4, 64, 4], ['0000:3b:00.1', 'ethernet', 4, 64, 4], ['0000:5e:00.0', 'infiniband', 2, 8, 2],
  ]);
  const pf = readPf(io, '0000:3b:00.0')!;
  t.same(pf.netdevs, ['ens1f0']);
  t.equal(pf.driver, 'i40e');
  t.equal(pf.driversAutoprobe, true);
  t.same(pf.vfs.map((v) => [v.address, v.vfIndex, v.driver, v.iommuGroup, v.netdevs[0]]), [
    ['0000:3b:02.0', 0, 'iavf', 31, 'ens1f0v0'], ['0000:3b:02.1', 1, 'iavf', 32, 'ens1f0v1'], ['0000:3b:02.2', 2, 'iavf', 33, 'ens1f0v2'], ['0000:3b:02.3', 3, 'iavf', 34, 'ens1f0v3'],
  ]);
  const vf = readVf(io, '0000:3b:0a.2')!;
  t.same({ pf: vf.pf, idx: vf.vfIndex, vendor: vf.vendor, device: vf.device, numa: vf.numaNode, cpus: vf.localCpus }, { pf: '0000:3b:00.1', idx: 2, vendor: 0x8086, device: 0x154c, numa: 1, cpus: [8, 9, 10, 11, 12, 13, 14, 15] });
  const ib = readVf(io, '0000:5e:00.2')!;
  t.same([ib.kind, ib.netdevs, ib.ibdevs, ib.numaNode], ['infiniband', ['ib2'], ['mlx5_2'], 0]);
  t.equal(readVf(io, '0000:3b:00.0'), undefined, 'a PF is no VF');
  t.equal(readPf(io, '0000:3b:02.0'), undefined, 'a VF is no PF');
  t.equal(readFunction(io, '0000:99:00.0'), undefined, 'absent');
  t.same(groupMembers(io, 32), ['0000:3b:02.1']);
  t.ok(hasIommu(io));
  const nvme = readFunction(io, '0000:5d:00.0')!;
  t.same([nvme.kind, nvme.driver, nvme.iommuGroup], ['other', 'nvme', 60]);
});

t.test('QEMU igb shape (82576 + igbvf): the nested lab\'s outer VM', async (t) => {
  const { io } = tree(t, igbNode());
  const pf = readPf(io, '0000:01:00.0')!;
  t.same(pf.vfs.map((v) => [v.address, v.vfIndex, v.driver]), [['0000:02:10.0', 0, 'igbvf'], ['0000:02:10.2', 1, 'igbvf']]);
  t.equal(pf.numaNode, undefined, 'numa_node -1: none');
});

t.test('without an IOMMU there are no groups', async (t) => {
  const m = ethernetNode();
  for (const d of m.devices) delete d.group;
  const { io } = tree(t, m);
  t.notOk(hasIommu(io));
  t.equal(readVf(io, '0000:3b:02.0')!.iommuGroup, undefined);
});

t.test('pools: PFs expand to their VFs, VFs stand alone; what does not fit is a problem, not a VF', async (t) => {
  const { io, root } = tree(t);
  const cfg = nodeConfig(root, '/x', {
    fabric: { pfs: ['0000:3b:00.0'], vfs: ['0000:3b:0a.1'] },
    ib: { vfs: ['0000:5e:00.1'] },
    broken: { pfs: ['0000:5d:00.0', '0000:77:00.0'], vfs: ['0000:3b:00.1', '0000:78:02.0'] },
  });
  const r = resolvePools(io, cfg.devices.pools);
  t.same(r.vfs.map((v) => [v.pool.name, v.vf.address, v.type]), [
    ['fabric', '0000:3b:02.0', 'ethernet'], ['fabric', '0000:3b:02.1', 'ethernet'], ['fabric', '0000:3b:02.2', 'ethernet'], ['fabric', '0000:3b:02.3', 'ethernet'],
    ['fabric', '0000:3b:0a.1', 'ethernet'], ['ib', '0000:5e:00.1', 'infiniband'],
  ]);
  t.same(r.problems.map((p) => [p.device, p.problem]), [
    ['0000:5d:00.0', 'is not SR-IOV capable (no sriov_totalvfs)'], ['0000:77:00.0', 'is not present'],
    ['0000:3b:00.1', 'is not a VF (no physfn link)'], ['0000:78:02.0', 'is not present'],
  ]);
  t.same(selectPool('ib', r, io).map((v) => v.vf.address), ['0000:5e:00.1']);
  t.same(selectPool('0000:3b:00.0', r, io).map((v) => v.vf.address), ['0000:3b:02.0', '0000:3b:02.1', '0000:3b:02.2', '0000:3b:02.3']);
  t.same(selectPool('0000:3b:02.3,0000:5e:00.1', r, io).map((v) => v.vf.address), ['0000:3b:02.3', '0000:5e:00.1']);
  t.throws(() => selectPool('0000:3b:0a.2', r, io), { code: 'ESYM_DEVICE_NOT_IN_POOL', message: /is a VF that is in no pool/ });
  t.throws(() => selectPool('0000:3b:00.1', r, io), { code: 'ESYM_DEVICE_NOT_IN_POOL', message: /in no pool/ }, 'a PF whose only pool VF is listed singly is not a PF selection');
  t.throws(() => selectPool('0000:99:00.0', r, io), { code: 'ESYM_DEVICE_NOT_IN_POOL', message: /does not exist on this node/ });
  t.throws(() => selectPool('/sys/bus/pci/devices/0000:3b:02.0', r, io), { code: 'ESYM_DEVICE_NOT_IN_POOL', message: /neither a configured pool/ });
  t.throws(() => selectPool('fabric,', r, io), { code: 'ESYM_DEVICE_ARGS' });
  t.throws(() => selectPool('fabirc', r, io), { code: 'ESYM_DEVICE_NOT_IN_POOL', fix: /fabric, ib/ });
});

t.test('a PF with sriov_numvfs 0 says how to create VFs', async (t) => {
  const m = ethernetNode();
  m.devices[1]!.sriov!.vfs = [];
  const { io, root } = tree(t, m);
  const r = resolvePools(io, nodeConfig(root, '/x', { fabric: { pfs: ['0000:3b:00.0'] } }).devices.pools);
  t.same(r.vfs, []);
  t.match(r.problems[0], { device: '0000:3b:00.0', problem: 'has no VFs (sriov_numvfs is 0, at most 64)', fix: /sriov_numvfs/ });
});
