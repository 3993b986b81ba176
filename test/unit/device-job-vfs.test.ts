// The job's VFs on one node (device/job-vfs.ts) against fake sysfs trees, how the guest is told to find
// the device (coordinator/job/interconnect.ts findArgs), and the guest's side of it (guest/src/nic.ts
// findInterface) against a fake /sys/class/net.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JobVfs, offersFromClaims } from '../../launcher/src/device/job-vfs.js';
import { FsDeviceIO } from '../../launcher/src/device/sysfs.js';
import { findArgs, vfOffers, vfioFor } from '../../launcher/src/coordinator/job/interconnect.js';
import { findInterface } from '../../guest/src/nic.js';
import type { SymrunConfig } from '../../launcher/src/config/types.js';
import { buildSysfs, type FakeMachine } from '../fixtures/sysfs/build.js';
import { infinibandNode, x710Port, merge } from '../fixtures/sysfs/machines.js';

/** X710 VFs .0/.1 on vfio-pci, .2 on iavf, .3 on vfio-pci but its /dev/vfio node removed; CX-5 IB VFs on vfio-pci. */
function tree(t: { teardown(fn: () => void): void }): string {
  const eth = x710Port('0000:3b:00.0', '0000:3b:02', 4, 'ens1f0', 30).map((d) => (/\.[013]$/.test(d.address) && d.address.startsWith('0000:3b:02') ? { ...d, driver: 'vfio-pci', nativeDriver: 'iavf' } : d));
  const ib = infinibandNode();
  ib.devices = ib.devices.map((d) => (d.address === '0000:5e:00.0' ? d : { ...d, driver: 'vfio-pci', nativeDriver: 'mlx5_core' }));
  const m: FakeMachine = merge({ drivers: ['i40e', 'iavf', 'vfio-pci'], devices: eth }, ib);
  const root = buildSysfs(m);
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.rmSync(path.join(root, 'dev/vfio/34')); // group of 0000:3b:02.3
  return root;
}

t.test('claim: first usable offer not held by another VM; idempotent per VM; release frees it', async (t) => {
  const v = new JobVfs(new FsDeviceIO(tree(t)), 'n7');
  const offers = ['0000:3b:02.2', '0000:3b:02.3', '0000:3b:02.0', '0000:3b:02.1'].map((pci) => ({ pci }));
  const a = v.claim('vm1', offers);
  t.same(a, { vm: 'vm1', pci: '0000:3b:02.0', link: 'ethernet', group: 31, vfioDevice: '/dev/vfio/31' });
  t.same(v.claim('vm1', offers), a, 'asked again: the same VF');
  t.equal(v.claim('vm2', offers).pci, '0000:3b:02.1', 'the next VM gets the next usable one');
  const e = (() => { try { v.claim('vm3', offers); } catch (x) { return x as { code: string; message: string; field: string }; } return undefined; })();
  t.equal(e?.code, 'ESYM_NO_DEVICE');
  t.equal(e?.field, 'interconnect.pool');
  t.match(e?.message, /0000:3b:02\.2: bound to iavf, not vfio-pci; 0000:3b:02\.3: \/dev\/vfio\/34 does not exist; 0000:3b:02\.0: held by vm1; 0000:3b:02\.1: held by vm2/);
  t.equal(v.release('vm1')?.pci, '0000:3b:02.0');
  t.equal(v.release('vm1'), undefined, 'releasing twice is harmless');
  t.equal(v.claim('vm3', offers).pci, '0000:3b:02.0', 'a released VF is handed out again');
  t.throws(() => v.claim('vm4', []), { code: 'ESYM_NO_DEVICE', message: /no VF is offered on n7/, fix: /interconnect\.pool.*SYMRUN_VF_SLOTS/ });
  t.throws(() => v.claim('vm4', [{ pci: '0000:99:00.0' }]), { message: /0000:99:00\.0: no such PCI function/ });
  t.throws(() => v.claim('vm4', [{ pci: '0000:3b:00.0' }]), { message: /bound to i40e/ }, 'a PF on its driver is not handed out');
});

t.test('identity: the offer\'s MAC or GUID is kept; the link type comes from the PCI class', async (t) => {
  const v = new JobVfs(new FsDeviceIO(tree(t)), 'n7');
  const ib = v.claim('vm1', [{ pci: '0000:5e:00.1', guid: 'c2:01:00:00:12:67:00:e0' }]);
  t.same(ib, { vm: 'vm1', pci: '0000:5e:00.1', link: 'infiniband', guid: 'c2:01:00:00:12:67:00:e0', group: 71, vfioDevice: '/dev/vfio/71' });
  const eth = v.claim('vm2', [{ pci: '0000:3b:02.1', vfMac: 'c2:00:49:9c:01:c0' }]);
  t.equal(eth.link, 'ethernet');
  t.equal(eth.vfMac, 'c2:00:49:9c:01:c0');
  // what the guest is told
  t.same(findArgs(vfioFor(ib, { mac: '52:54:00:aa:bb:01' }), '52:54:00:aa:bb:01'), { mac: '52:54:00:aa:bb:01', find: 'guid', guid: 'c2:01:00:00:12:67:00:e0' });
  t.same(findArgs(vfioFor(eth, { mac: '52:54:00:aa:bb:02' }), '52:54:00:aa:bb:02'), { mac: 'c2:00:49:9c:01:c0', find: 'mac' });
  t.same(findArgs(vfioFor({ ...eth, vfMac: undefined }, { mac: '52:54:00:aa:bb:02' }), '52:54:00:aa:bb:02'), { mac: '52:54:00:aa:bb:02', find: 'passthrough' });
  t.same(findArgs({ kind: 'nic', id: 'x', netdevId: 'y', tap: 't', mac: '52:54:00:aa:bb:03', model: 'virtio-net-pci', bus: 'rp1' }, '52:54:00:aa:bb:03'), { mac: '52:54:00:aa:bb:03' }, 'a NIC: by its MAC, as before');
});

t.test('offers: the host\'s own address, else the pool in order; none is an error naming the field', async (t) => {
  const cfg = (ic: unknown) => ({ interconnect: ic }) as unknown as SymrunConfig;
  t.same(vfOffers(cfg({ type: 'vfio', addresses: { n1: '0000:3b:00.1' }, pool: ['0000:3b:02.0'] }), 'n1'), [{ pci: '0000:3b:00.1' }]);
  t.same(vfOffers(cfg({ type: 'vfio', addresses: { n1: '0000:3b:00.1' }, pool: ['0000:3b:02.0', '0000:3b:02.1'] }), 'n2'), [{ pci: '0000:3b:02.0' }, { pci: '0000:3b:02.1' }]);
  t.throws(() => vfOffers(cfg({ type: 'vfio', addresses: { n1: '0000:3b:00.1' } }), 'n2'), { code: 'ESYM_NO_DEVICE', field: 'interconnect.addresses' });
  t.same(vfOffers(cfg({ type: 'emulated', model: 'virtio-net-pci' }), 'n1'), []);
});

/** A fake /sys/class/net: name -> { address, driver (device/driver link target name) } */
function sysNet(t: { teardown(fn: () => void): void }, ifs: Record<string, { address: string; driver?: string; bond?: boolean }>): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sysnet-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  for (const [n, i] of Object.entries(ifs)) {
    fs.mkdirSync(path.join(d, n, 'device'), { recursive: true });
    fs.writeFileSync(path.join(d, n, 'address'), `${i.address}\n`);
    if (i.driver) fs.symlinkSync(`../../../bus/drivers/${i.driver}`, path.join(d, n, 'device', 'driver'));
    else fs.rmdirSync(path.join(d, n, 'device'));
    if (i.bond) fs.mkdirSync(path.join(d, n, 'bonding'));
  }
  return d;
}

t.test('guest: the interface by MAC, by IPoIB port GUID, or as the one non-virtio interface', async (t) => {
  const ipoib = '00:00:10:87:fe:80:00:00:00:00:00:00:c2:01:00:00:12:67:00:e0';
  const d = sysNet(t, {
    lo: { address: '00:00:00:00:00:00' },
    eth0: { address: '52:54:00:11:22:33', driver: 'virtio_net' },
    ens2: { address: 'c2:00:49:9c:01:c0', driver: 'iavf' },
    ib0: { address: ipoib, driver: 'mlx5_core' },
  });
  t.equal(findInterface(d, { mac: 'C2:00:49:9C:01:C0' }), 'ens2', 'by MAC (any case)');
  t.equal(findInterface(d, { mac: '52:54:00:00:00:01', find: 'guid', guid: 'c2:01:00:00:12:67:00:e0' }), 'ib0', 'by the last 8 bytes of the IPoIB address');
  t.equal(findInterface(d, { mac: '52:54:00:00:00:01', find: 'guid', guid: 'c2:01:00:00:12:67:00:e1' }), undefined);
  t.throws(() => findInterface(d, { mac: '52:54:00:00:00:01', find: 'passthrough' }), { code: 'EINVAL', message: /more than one passthrough interface \(ens2, ib0\)/ });
  const one = sysNet(t, { lo: { address: '00:00:00:00:00:00' }, eth0: { address: '52:54:00:11:22:33', driver: 'virtio_net' }, bond0: { address: '52:54:00:11:22:34', bond: true }, enp1s0: { address: '1a:2b:3c:4d:5e:6f', driver: 'igbvf' } });
  t.equal(findInterface(one, { mac: '52:54:00:00:00:01', find: 'passthrough' }), 'enp1s0', 'virtio, loopback and bonds are not it');
  const none = sysNet(t, { lo: { address: '00:00:00:00:00:00' }, eth0: { address: '52:54:00:11:22:33', driver: 'virtio_net' } });
  t.equal(findInterface(none, { mac: '52:54:00:00:00:01', find: 'passthrough' }), undefined, 'not plugged yet: keep waiting');
});

t.test('offersFromClaims: the node layer\'s claim records, malformed entries left out', async (t) => {
  t.same(offersFromClaims([
    { pci: '0000:3b:02.0', type: 'ethernet', mac: 'c2:00:49:9c:01:c0' },
    { pci: '0000:5e:00.1', type: 'infiniband', portGuid: 'c2:01:00:00:12:67:00:e0', nodeGuid: 'c2:00:00:00:12:67:00:e0' },
    { pci: '0000:3b:02.1' },
    { pci: '../x' }, { pci: '0000:3b:02.2', mac: 'zz' }, { pci: '0000:3b:02.3', portGuid: 1 }, null, 'x', [1],
  ]), [{ pci: '0000:3b:02.0', vfMac: 'c2:00:49:9c:01:c0' }, { pci: '0000:5e:00.1', guid: 'c2:01:00:00:12:67:00:e0' }, { pci: '0000:3b:02.1' }]);
  t.same(offersFromClaims(undefined), []);
  t.same(offersFromClaims({ pci: '0000:3b:02.0' }), []);
});
