// The root node layer's VFs (launcher/src/node/vfs.ts) on a fake sysfs tree: what the prolog claims and
// writes into the job record is what the job's host agent offers its VMs (device/job-vfs.ts) and what
// the guest is told to look for; the epilog releases by job id (also a claim the record never listed),
// refuses while the job's QEMU holds the group, and touches no other job's claim.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { claimJobVfs, releaseJobVfs } from '../../launcher/src/node/vfs.js';
import { parseNodeConfig } from '../../launcher/src/node/config.js';
import { JobVfs, offersFromClaims } from '../../launcher/src/device/job-vfs.js';
import { vfMac, vfPortGuid } from '../../launcher/src/device/identity.js';
import { readFunction } from '../../launcher/src/device/discover.js';
import { bench } from '../fixtures/sysfs/harness.js';
import { ethernetNode } from '../fixtures/sysfs/machines.js';

t.test('SYMRUN_VF_SLOTS: default 0 (no claims), a number 0-64, anything else named with the fix', async (t) => {
  t.equal(parseNodeConfig('').vfSlots, 0);
  t.equal(parseNodeConfig('SYMRUN_VF_SLOTS=2\n').vfSlots, 2);
  for (const bad of ['-1', '65', 'two', '1.5', '']) {
    t.throws(() => parseNodeConfig(`# site\nSYMRUN_VF_SLOTS=${bad}\n`, '/etc/symrun/node.conf'), { code: 'ESYM_NODE_CONFIG', field: 'SYMRUN_VF_SLOTS', message: /node\.conf:2: SYMRUN_VF_SLOTS=/, fix: /0-64/ }, `SYMRUN_VF_SLOTS=${bad}`);
  }
});

t.test('prolog claim -> job record -> the host agent hands the claimed VFs to the VMs -> epilog release', async (t) => {
  const b = bench(t);
  const make = () => b.manager();
  const vfs = await claimJobVfs(make, { job: '4711', uid: 1001, gid: 1002 }, 2);
  t.same(vfs, [
    { pci: '0000:3b:02.0', type: 'ethernet', mac: vfMac({ job: 4711, node: 7, slot: 0 }) },
    { pci: '0000:3b:02.1', type: 'ethernet', mac: vfMac({ job: 4711, node: 7, slot: 1 }) },
  ], 'what the record keeps: address, kind and the MAC root set');
  // the record is JSON on disk between root and the user's host agent
  const offers = offersFromClaims(JSON.parse(JSON.stringify(vfs)));
  const agent = new JobVfs(b.io, 'n7');
  const a = agent.claim('vm0', offers);
  const c = agent.claim('vm1', offers);
  t.same([a.pci, c.pci], ['0000:3b:02.0', '0000:3b:02.1'], 'each VM gets its own of the claimed VFs');
  t.equal(a.vfMac, vfMac({ job: 4711, node: 7, slot: 0 }), 'the guest is told the MAC root set');
  const rel = await releaseJobVfs(make, '4711');
  t.same(rel, { released: ['0000:3b:02.0', '0000:3b:02.1'], problems: [] });
  t.equal(readFunction(b.io, '0000:3b:02.0')!.driver, 'iavf', 'given back to its driver');
});

t.test('InfiniBand: the record carries the port GUID the guest looks for', async (t) => {
  const b = bench(t, undefined, { ib: { pfs: ['0000:5e:00.0'] } });
  const vfs = await claimJobVfs(() => b.manager(), { job: '90', uid: 1001, gid: 1001 }, 1);
  t.same(vfs, [{ pci: '0000:5e:00.1', type: 'infiniband', portGuid: vfPortGuid({ job: 90, node: 7, slot: 0 }) }]);
  t.same((await releaseJobVfs(() => b.manager(), '90')).released, ['0000:5e:00.1']);
});

t.test('epilog: releases by job id only; a group still held is reported, not undone; no other job touched', async (t) => {
  const b = bench(t, ethernetNode(), { fabric: { pfs: ['0000:3b:00.0'] } });
  const make = () => b.manager();
  await claimJobVfs(make, { job: '11', uid: 1001, gid: 1001 }, 1); // a prolog that died before writing the record
  const other = await claimJobVfs(make, { job: '12', uid: 1002, gid: 1002 }, 1);
  fs.mkdirSync(path.join(b.root, 'proc/5000/fd'), { recursive: true });
  fs.writeFileSync(path.join(b.root, 'proc/5000/comm'), 'qemu-system-x86\n');
  fs.symlinkSync('/dev/vfio/31', path.join(b.root, 'proc/5000/fd/20'));
  const held = await releaseJobVfs(make, '11');
  t.same(held.released, []);
  t.match(held.problems, [/^VF 0000:3b:02\.0 of job 11 still claimed: \/dev\/vfio\/31 is still held open by pid 5000 .*fix: stop the job's QEMU first/]);
  fs.rmSync(path.join(b.root, 'proc/5000'), { recursive: true });
  t.same(await releaseJobVfs(make, '11'), { released: ['0000:3b:02.0'], problems: [] }, 'released by job id, with no record listing it');
  t.equal(readFunction(b.io, other[0]!.pci)!.driver, 'vfio-pci', "job 12's VF stays claimed and bound");
  t.same(await releaseJobVfs(make, '11'), { released: [], problems: [] }, 'a second epilog finds nothing to do');
});
