// Claims survive a crash of the claimer: a claimer process SIGKILLed at each step of a claim, then the
// epilog's release undoes exactly what it left.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { snapshotTree } from '../fixtures/sysfs/build.js';
import { bench, spawnClaimer } from '../fixtures/sysfs/harness.js';
import { ethernetNode } from '../fixtures/sysfs/machines.js';

const files = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);
const FABRIC = { fabric: { pfs: ['0000:3b:00.0', '0000:3b:00.1'] } };

// A claimer killed at each step of a claim; then the epilog's release. Step names: claims.ts / manager.ts.
const STOPS: Array<{ at: string; n?: number; left: string }> = [
  { at: 'temp-written', n: 1, left: 'a temp file of the slot record' },
  { at: 'slot-reserved', left: 'a slot, no claim' },
  { at: 'temp-written', n: 2, left: 'a slot and the temp file of the claim record' },
  { at: 'claimed', left: 'a claim at stage claimed, nothing else done' },
  { at: 'command', n: 2, left: 'the MAC set, spoofchk not yet' },
  { at: 'stage-configured', left: 'VF configured, still on iavf' },
  { at: 'stage-bound', left: 'VF on vfio-pci, /dev/vfio/31 still root\'s' },
  { at: 'ready', left: 'a complete claim' },
];

t.setTimeout(180_000); // processes start slowly on a loaded machine: a bound on the file, not an assertion

t.test('a claimer killed at each step of a claim: the epilog reads what is left and undoes it', async (t) => {
  // one fake node and one claimer per stop point, all started at once (a process start is the slow part)
  const cases = STOPS.map((s) => {
    const b = bench(t, ethernetNode(), FABRIC);
    return { s, b, before: snapshotTree(b.root), c: spawnClaimer(b, { job: '777', uid: 1500, gid: 1500, slots: 1, stopAt: s.at, ...(s.n ? { stopAfter: s.n } : {}) }) };
  });
  await Promise.all(cases.map((x) => x.c.ready));
  for (const x of cases) x.c.go();
  const stopped = await Promise.all(cases.map((x) => x.c.outcome));
  for (const x of cases) x.c.child.kill('SIGKILL');
  await Promise.all(cases.map((x) => x.c.exited));
  for (const [i, { s, b, before }] of cases.entries()) {
    await t.test(`killed at ${s.at}${s.n ? ` #${s.n}` : ''} (${s.left})`, async (t) => {
      t.same(stopped[i], { stopped: s.at });
      const m = b.manager();
      const l = m.list();
      const claimed = l.vfs.filter((v) => v.claim);
      const leftFiles = ['vf', 'slot', 'tmp'].flatMap((d) => files(path.join(b.stateDir, d)).map((f) => `${d}/${f}`));
      t.ok(leftFiles.length > 0, `left behind: ${leftFiles.join(', ')}`);
      t.ok(leftFiles.every((f) => /\/(0000:3b:02\.0|777\.)/.test(f)), 'every file names the VF or job 777');
      if (claimed.length) t.same(claimed.map((v) => [v.pci, v.claim!.job]), [['0000:3b:02.0', '777']], 'the epilog can read the claim');
      const other = await m.claim({ job: '888', uid: 1600, gid: 1600, slots: 1 });
      t.equal(other.claimed[0]!.pci, claimed.length ? '0000:3b:02.1' : '0000:3b:02.0', 'another job is not blocked');
      const r = await m.release('777');
      t.same(r.left, []);
      t.same(r.released.map((x) => x.pci), claimed.map((v) => v.pci));
      await m.release('888');
      t.same(snapshotTree(b.root), before, 'sysfs as before');
      t.same(['vf', 'slot', 'tmp'].map((d) => files(path.join(b.stateDir, d))), [[], [], []], 'claim directory empty');
    });
  }
});
