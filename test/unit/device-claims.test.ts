// Claims: the store's atomic records, and real concurrency: claimer processes racing on one fake node.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ClaimStore, newNonce, type Claim } from '../../launcher/src/device/claims.js';
import { readFunction } from '../../launcher/src/device/discover.js';
import { snapshotTree } from '../fixtures/sysfs/build.js';
import { bench, spawnClaimer, type Claimer } from '../fixtures/sysfs/harness.js';
import { ethernetNode } from '../fixtures/sysfs/machines.js';

const files = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);
const ONE_PF = { fabric: { pfs: ['0000:3b:00.0'] } };
const TWO_PFS = { fabric: { pfs: ['0000:3b:00.0', '0000:3b:00.1'] } };

function claimRec(over: Partial<Claim> = {}): Claim {
  return {
    version: 1, pci: '0000:3b:02.0', pf: '0000:3b:00.0', vfIndex: 0, type: 'ethernet', pool: 'fabric', job: '42', uid: 1001, gid: 1001, slot: 0,
    node: 'n7', nodeIndex: 7, claimedAt: new Date(0).toISOString(), boundFrom: 'iavf', overrideFrom: null, group: 31, mac: 'c2:00:00:0a:81:c0',
    nodeGuid: null, portGuid: null, stage: 'claimed', claimerPid: process.pid, nonce: newNonce(), ...over,
  };
}

t.test('store: a VF or a slot is created once; only its job removes it; updates only by the claimer', async (t) => {
  const b = bench(t);
  const s = new ClaimStore(b.stateDir);
  s.init();
  t.ok(s.tryClaim(claimRec()));
  t.notOk(s.tryClaim(claimRec({ job: '43' })), 'the second claimer of the same VF loses');
  t.equal(s.get('0000:3b:02.0')!.job, '42');
  t.same([s.reserveSlot('42', 63), s.reserveSlot('42', 63), s.reserveSlot('43', 63)], [0, 1, 0]);
  s.releaseSlot('42', 0);
  t.equal(s.reserveSlot('42', 63), 0, 'a freed slot is reused');
  t.equal(s.reserveSlot('44', 0) !== undefined && s.reserveSlot('44', 0), undefined, 'all slots taken');
  t.notOk(s.remove('0000:3b:02.0', '43'), 'another job cannot remove it');
  t.throws(() => s.update({ ...claimRec(), stage: 'ready' }), { code: 'ESYM_DEVICE_STATE' }, 'a different nonce: not the claimer');
  const mine = s.get('0000:3b:02.0')!;
  s.update({ ...mine, stage: 'bound' });
  t.equal(s.get('0000:3b:02.0')!.stage, 'bound');
  t.ok(s.remove('0000:3b:02.0', '42'));
  t.same(files(path.join(b.stateDir, 'tmp')), [], 'temp files are gone after each publish');
  t.throws(() => s.reserveSlot('../x', 1), /bad job id/);
});

t.test('store: records that are not claims are reported and never acted upon', async (t) => {
  const b = bench(t);
  const s = new ClaimStore(b.stateDir);
  s.init();
  const vf = path.join(b.stateDir, 'vf');
  fs.writeFileSync(path.join(vf, '0000:3b:02.1'), '{not json');
  fs.writeFileSync(path.join(vf, '0000:3b:02.2'), JSON.stringify(claimRec({ pci: '0000:3b:02.3' })));
  fs.writeFileSync(path.join(vf, '0000:3b:02.3'), JSON.stringify(claimRec({ pci: '0000:3b:02.3', job: '4x' })));
  fs.writeFileSync(path.join(vf, '0000:3b:0a.0'), ' '.repeat(70_000));
  fs.symlinkSync('/etc/passwd', path.join(vf, '0000:3b:0a.1'));
  fs.writeFileSync(path.join(vf, 'junk'), '');
  const l = s.list();
  t.same(l.claims, []);
  t.same(l.bad.map((x) => [x.file, x.reason]), [
    ['vf/0000:3b:02.1', 'not JSON'],
    ['vf/0000:3b:02.2', 'names 0000:3b:02.3, but the file is 0000:3b:02.2'],
    ['vf/0000:3b:02.3', 'job is not a Slurm job id'],
    ['vf/0000:3b:0a.0', 'too large (70000 bytes)'],
    ['vf/0000:3b:0a.1', 'cannot open: ELOOP'],
    ['vf/junk', 'the file name is no PCI address'],
  ]);
  const r = await b.manager().release('42');
  t.same([r.released, r.left], [[], []], 'the forged record naming job 42 is not released (nor its VF touched)');
  t.equal(fs.readlinkSync(path.join(vf, '0000:3b:0a.1')), '/etc/passwd');
  t.match((await b.manager().check()).problems, [/vf\/0000:3b:02\.1 is not a valid record/, /02\.2/, /02\.3/, /0a\.0/, /0a\.1/, /junk/]);
});

t.test('store: a claim directory others could write to, or a symlink, is refused', async (t) => {
  const b = bench(t);
  fs.mkdirSync(b.stateDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(b.stateDir, 0o777);
  t.throws(() => new ClaimStore(b.stateDir).init(), { code: 'ESYM_DEVICE_STATE', message: /is writable by group or others \(mode 777\)/ });
  fs.rmSync(b.stateDir, { recursive: true });
  fs.symlinkSync('/tmp', b.stateDir);
  t.throws(() => new ClaimStore(b.stateDir).init(), { code: 'ESYM_DEVICE_STATE', message: /is a symbolic link/ });
});

t.setTimeout(180_000); // processes start slowly on a loaded machine: a bound on the file, not an assertion

async function race(cs: Claimer[]): Promise<Array<Record<string, any>>> {
  await Promise.all(cs.map((c) => c.ready));
  for (const c of cs) c.go(); // all at once: they were started, loaded and waiting
  const out = await Promise.all(cs.map((c) => c.outcome));
  await Promise.all(cs.map((c) => c.exited));
  return out;
}

t.test('6 claimer processes race for 4 VFs: exactly 4 win, each a different VF; the 2 losers leave nothing', async (t) => {
  const b = bench(t, ethernetNode(), ONE_PF);
  const cs = Array.from({ length: 6 }, (_, i) => spawnClaimer(b, { job: String(101 + i), uid: 2000 + i, gid: 2000 + i, slots: 1 }));
  const out = await race(cs);
  const won = out.filter((o) => o.result).map((o) => o.result);
  const lost = out.filter((o) => o.error);
  t.equal(won.length, 4, '4 claims');
  t.equal(lost.length, 2, '2 refusals');
  t.same(lost.map((o) => o.error.code), ['ESYM_DEVICE_NONE_FREE', 'ESYM_DEVICE_NONE_FREE']);
  const pcis = won.map((r) => r.claimed[0].pci);
  t.equal(new Set(pcis).size, 4, 'no VF twice');
  t.same(files(path.join(b.stateDir, 'vf')), [...pcis].sort(), 'one claim file per winner');
  for (const r of won) {
    const c = JSON.parse(fs.readFileSync(path.join(b.stateDir, 'vf', r.claimed[0].pci), 'utf8'));
    t.same([c.job, c.uid, c.stage], [r.job, r.uid, 'ready'], `${r.claimed[0].pci}: job ${r.job}`);
    t.equal(readFunction(b.io, r.claimed[0].pci)!.driver, 'vfio-pci');
    t.same(b.io.owner(`dev/vfio/${r.claimed[0].group}`), { uid: r.uid, gid: r.uid, mode: 0o600 });
  }
  t.same(files(path.join(b.stateDir, 'slot')), won.map((r) => `${r.job}.0`).sort(), 'losers hold no slot');
  t.same(files(path.join(b.stateDir, 'tmp')), []);
  t.equal(new Set(won.map((r) => r.claimed[0].mac)).size, 4, 'four different MACs');
});

// 5 claimers x 2 VFs for 8: a claimer fails only when all 8 are claimed, 1 by itself and 7 by the 4 others,
// so at least one other holds 2 (pigeonhole) and has won: 1..4 winners, whatever the interleaving
t.test('5 processes x 2 VFs race for 8: all-or-nothing claims never share a VF', async (t) => {
  const b = bench(t, ethernetNode(), TWO_PFS);
  const before = snapshotTree(b.root);
  const cs = Array.from({ length: 5 }, (_, i) => spawnClaimer(b, { job: String(201 + i), uid: 3000 + i, gid: 3000 + i, slots: 2 }));
  const out = await race(cs);
  const won = out.filter((o) => o.result).map((o) => o.result);
  t.ok(won.length >= 1 && won.length <= 4, `${won.length} of 5 got two VFs`);
  t.equal(out.filter((o) => o.error).length, 5 - won.length);
  const pcis = won.flatMap((r) => r.claimed.map((c: { pci: string }) => c.pci));
  t.equal(new Set(pcis).size, pcis.length, 'no VF in two claims');
  t.same(files(path.join(b.stateDir, 'vf')), [...pcis].sort(), 'every claim on disk belongs to a winner: losers rolled back');
  for (const v of ['0000:3b:02.0', '0000:3b:02.1', '0000:3b:02.2', '0000:3b:02.3', '0000:3b:0a.0', '0000:3b:0a.1', '0000:3b:0a.2', '0000:3b:0a.3']) {
    t.equal(readFunction(b.io, v)!.driver, pcis.includes(v) ? 'vfio-pci' : 'iavf', `${v}: ${pcis.includes(v) ? 'claimed' : 'back on iavf'}`);
  }
  for (const r of won) await b.manager().release(r.job);
  t.same(snapshotTree(b.root), before, 'released: as before');
});

