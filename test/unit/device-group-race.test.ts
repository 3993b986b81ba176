// Two jobs claiming two VFs of one IOMMU group at the same time: at most one of them gets a VF of it
// (link-then-check, manager.ts).
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { bench, spawnClaimer, type Claimer } from '../fixtures/sysfs/harness.js';
import { ethernetNode } from '../fixtures/sysfs/machines.js';

const files = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);

t.setTimeout(180_000); // processes start slowly on a loaded machine: a bound on the file, not an assertion

async function race(cs: Claimer[]): Promise<Array<Record<string, any>>> {
  await Promise.all(cs.map((c) => c.ready));
  for (const c of cs) c.go();
  const out = await Promise.all(cs.map((c) => c.outcome));
  await Promise.all(cs.map((c) => c.exited));
  return out;
}

// two IOMMU groups of two VFs each (no ACS); per group two jobs race, 4 processes at once, 3 rounds
const PAIRS = [['0000:3b:02.0', '0000:3b:02.1'], ['0000:3b:02.2', '0000:3b:02.3']] as const;

t.test('two jobs race for the two VFs of one IOMMU group: never both get one (2 groups x 3 rounds)', async (t) => {
  for (let round = 0; round < 3; round++) {
    const m = ethernetNode();
    PAIRS.forEach(([a, b], i) => {
      const g = 31 + i * 2;
      for (const d of m.devices) if (d.address === a || d.address === b) { d.group = g; delete d.driver; }
    });
    const b = bench(t, m, { fabric: { pfs: ['0000:3b:00.0'] } });
    const cs = PAIRS.flatMap(([x, y], i) => [
      spawnClaimer(b, { job: String(100 + 2 * i), uid: 1000 + 2 * i, gid: 1000 + 2 * i, slots: 1, candidates: round % 2 ? [y] : [x, y] }),
      spawnClaimer(b, { job: String(101 + 2 * i), uid: 1001 + 2 * i, gid: 1001 + 2 * i, slots: 1, candidates: [x, y] }),
    ]);
    const out = await race(cs);
    const claims = files(path.join(b.stateDir, 'vf')).map((f) => JSON.parse(fs.readFileSync(path.join(b.stateDir, 'vf', f), 'utf8')) as { pci: string; job: string; group: number; uid: number });
    PAIRS.forEach((pair, i) => {
      const won = [out[2 * i]!, out[2 * i + 1]!].filter((o) => o.result);
      t.ok(won.length <= 1, `round ${round}, group ${31 + 2 * i}: ${won.length} winner`);
      const jobs = new Set(claims.filter((c) => (pair as readonly string[]).includes(c.pci)).map((c) => c.job));
      t.ok(jobs.size <= 1, `round ${round}, group ${31 + 2 * i}: claims of ${[...jobs].join(', ') || 'no job'}`);
      if (won.length) t.same(b.io.owner(`dev/vfio/${31 + 2 * i}`), { uid: won[0]!.result.uid, gid: won[0]!.result.uid, mode: 0o600 }, 'the node belongs to the winner');
      for (const o of [out[2 * i]!, out[2 * i + 1]!]) if (o.error) t.match(o.error.code, /^ESYM_DEVICE_(NONE_FREE|IOMMU_GROUP)$/);
    });
  }
});
