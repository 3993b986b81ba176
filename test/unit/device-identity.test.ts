import t from 'tap';
import { decodeVfMac, MAX_JOB_MAC, MAX_NODE_INDEX, MAX_SLOT, vfMac, vfNodeGuid, vfPortGuid } from '../../launcher/src/device/identity.js';
import { vmMac } from '../../launcher/src/coordinator/job/interconnect.js';
import { macForIp, macForPort } from '../../launcher/src/local/names.js';

t.test('MAC layout: worked examples and the fixed bits', async (t) => {
  t.equal(vfMac({ job: 3, node: 1, slot: 0 }), 'c2:00:00:0c:00:40');
  t.equal(vfMac({ job: 0, node: 0, slot: 0 }), 'c2:00:00:00:00:00');
  t.equal(vfMac({ job: MAX_JOB_MAC, node: MAX_NODE_INDEX, slot: MAX_SLOT }), 'fe:ff:ff:ff:ff:ff');
  t.equal(vfMac({ job: 4711, node: 17, slot: 2 }), 'c2:00:49:9c:04:42');
  for (const id of [{ job: 1, node: 0, slot: 0 }, { job: 12_345_678, node: 4000, slot: 63 }, { job: 2 ** 25, node: 1, slot: 1 }]) {
    const first = parseInt(vfMac(id).slice(0, 2), 16);
    t.equal(first & 1, 0, 'unicast');
    t.equal(first & 2, 2, 'locally administered');
    t.equal(first & 0xc0, 0xc0, 'bits 7..6 set: apart from 52:54 and 02:5x');
    t.same(decodeVfMac(vfMac(id)), id, 'decodes back');
  }
});

t.test('MACs are injective: neighbours in every field differ, and none equals a MAC symrun uses elsewhere', async (t) => {
  const seen = new Map<string, string>();
  const jobs = [1, 2, 3, 255, 256, 65_535, 65_536, 2 ** 24 - 1, 2 ** 24, MAX_JOB_MAC - 1, MAX_JOB_MAC];
  const nodes = [0, 1, 2, 63, 64, 255, 256, MAX_NODE_INDEX];
  const slots = [0, 1, 2, 31, 32, MAX_SLOT];
  for (const job of jobs) for (const node of nodes) for (const slot of slots) {
    const m = vfMac({ job, node, slot });
    const key = `${job}/${node}/${slot}`;
    if (seen.has(m)) t.fail(`${key} and ${seen.get(m)} share ${m}`);
    seen.set(m, key);
  }
  t.equal(seen.size, jobs.length * nodes.length * slots.length, `${seen.size} distinct MACs`);
  const others = [vmMac('j7ccf9', 0), vmMac('j7ccf9', 3, 'standby'), macForIp('198.18.0.12'), macForPort({ base: 0xc6120000, prefixLen: 24 } as never, 'switchBridge')];
  for (const o of others) t.notOk(seen.has(o), `${o} (emulated/local MAC) is outside the VF range`);
  for (const o of others) t.equal(decodeVfMac(o), undefined, `${o} does not decode as a VF MAC`);
});

t.test('GUIDs: node and port differ, U/L bit set, the whole 32-bit job id fits', async (t) => {
  const id = { job: 4711, node: 17, slot: 2 };
  t.equal(vfNodeGuid(id), 'c2:00:00:09:33:80:88:40');
  t.equal(vfPortGuid(id), 'c2:80:00:09:33:80:88:40');
  t.not(vfNodeGuid(id), vfPortGuid(id));
  const big = { job: 2 ** 32 - 1, node: MAX_NODE_INDEX, slot: MAX_SLOT };
  t.match(vfPortGuid(big), /^c2:ff:ff:ff:ff:ff:ff:e0$/);
  const seen = new Set<string>();
  for (const job of [1, 2, 2 ** 26, 2 ** 26 + 1, 2 ** 32 - 1]) for (const node of [0, 1, MAX_NODE_INDEX]) for (const slot of [0, 1, MAX_SLOT]) {
    for (const g of [vfNodeGuid({ job, node, slot }), vfPortGuid({ job, node, slot })]) {
      t.notOk(seen.has(g), `${g} unique`);
      seen.add(g);
      t.equal(parseInt(g.slice(0, 2), 16) & 2, 2, 'locally administered: no vendor (OUI) GUID can be equal');
    }
  }
});

t.test('out-of-range identities are refused with the field and the fix', async (t) => {
  t.throws(() => vfMac({ job: MAX_JOB_MAC + 1, node: 0, slot: 0 }), { code: 'ESYM_DEVICE_IDENTITY', field: 'Slurm job id', message: /outside 0\.\.67108863/ });
  t.throws(() => vfMac({ job: 1, node: MAX_NODE_INDEX + 1, slot: 0 }), { code: 'ESYM_DEVICE_IDENTITY', field: 'node index', fix: /node\.index/ });
  t.throws(() => vfMac({ job: 1, node: 0, slot: 64 }), { code: 'ESYM_DEVICE_IDENTITY', field: 'slot' });
  t.throws(() => vfNodeGuid({ job: 2 ** 32, node: 0, slot: 0 }), { code: 'ESYM_DEVICE_IDENTITY' });
  t.throws(() => vfMac({ job: 1.5, node: 0, slot: 0 }), { code: 'ESYM_DEVICE_IDENTITY' });
  t.equal(vfNodeGuid({ job: MAX_JOB_MAC + 1, node: 0, slot: 0 }).length, 23, 'a federated job id is fine for GUIDs');
});
