// The chaos soak's plan (bench/soak-plan.ts): seeded draws replay, preconditions hold, and a run's
// records become figures where any outcome outside an operation's allowed set is a violation.
import t from 'tap';
import { SOAK_OPS, draw, eligible, journalUnexplained, rng, summarize, soakMarkdown, type OpName, type OpRecord, type SoakState } from '../../bench/soak-plan.js';

const base: SoakState = { haveCheckpoint: true, freeHosts: 2, vms: ['vm1', 'vm2', 'vm3'] };

t.test('the same seed draws the same operations; another seed does not', async (t) => {
  const seq = (seed: number) => { const r = rng(seed); return Array.from({ length: 50 }, () => draw(r, base)); };
  t.same(seq(42), seq(42));
  t.notSame(seq(42), seq(43));
  const r = rng(1);
  const xs = Array.from({ length: 10000 }, () => r());
  t.ok(xs.every((x) => x >= 0 && x < 1), 'rng stays in [0, 1)');
  t.ok(Math.abs(xs.reduce((a, x) => a + x, 0) / xs.length - 0.5) < 0.02, 'and is centred');
});

t.test('preconditions: no migration without a free host, no power-off without a checkpoint and two free hosts', async (t) => {
  const noFree = eligible({ ...base, freeHosts: 0 });
  t.notOk(noFree.some((n) => ['migrate', 'cancel', 'host-kill'].includes(SOAK_OPS[n].kind)), 'nothing that needs a free host');
  t.ok(noFree.includes('checkpoint'), 'checkpoints still possible');
  t.notOk(eligible({ ...base, haveCheckpoint: false }).includes('host powered off'), 'no power-off before a checkpoint');
  t.notOk(eligible({ ...base, freeHosts: 1 }).includes('host powered off'), 'no power-off with one free host');
  t.ok(eligible(base).includes('host powered off'));
  const r = rng(7);
  for (let i = 0; i < 2000; i++) {
    const d = draw(r, { ...base, freeHosts: 0 });
    if (SOAK_OPS[d.name].kind === 'migrate') { t.fail(`drew ${d.name} with no free host`); break; }
  }
});

t.test('draws follow the weights; faults ride on live migrations; every VM is chosen', async (t) => {
  const r = rng(99);
  const n = 20000;
  const counts = new Map<OpName, number>();
  const vms = new Set<string>();
  let faultNotLive = 0;
  for (let i = 0; i < n; i++) {
    const d = draw(r, base);
    counts.set(d.name, (counts.get(d.name) ?? 0) + 1);
    vms.add(d.vm);
    if (d.name !== 'migrate' && d.mode !== 'live') faultNotLive++;
  }
  const total = (Object.keys(SOAK_OPS) as OpName[]).reduce((a, k) => a + SOAK_OPS[k].weight, 0);
  for (const k of Object.keys(SOAK_OPS) as OpName[]) {
    const want = (SOAK_OPS[k].weight / total) * n;
    const got = counts.get(k) ?? 0;
    t.ok(Math.abs(got - want) < 0.2 * want + 30, `${k}: ${got} draws, ~${Math.round(want)} expected`);
  }
  t.equal(faultNotLive, 0, 'operations with a fault or a cancel are live migrations');
  t.same([...vms].sort(), ['vm1', 'vm2', 'vm3']);
});

t.test('summarize: allowed outcomes count, anything else is a violation', async (t) => {
  const rec = (i: number, name: OpName, outcome: string, violations: string[] = []): OpRecord => ({ i, name, vm: 'vm2', outcome, ms: 1000, violations, ...(SOAK_OPS[name] as { fault?: string }).fault ? { fault: (SOAK_OPS[name] as { fault?: string }).fault } : {} });
  const ok = summarize({ seed: 5, minutes: 3, records: [rec(1, 'migrate', 'done'), rec(2, 'migrate kill-dst-qemu', 'rolled-back'), rec(3, 'migrate + cancel', 'done'), rec(4, 'coordinator killed in a migration', 'recovered')], final: [], answerRight: true, exitCode: 0, leftovers: [], durationS: 200 });
  t.equal(ok.violations, 0);
  t.equal(ok.operations, 4);
  t.equal(ok.faults, 3, 'a fault, a cancel and a coordinator kill');
  t.same(ok.outcomes, { done: 2, 'rolled-back': 1, recovered: 1 });
  t.equal(ok.reproduce, 'npm run soak -- --minutes 3 --seed 5');

  const bad = summarize({ seed: 5, minutes: 3, records: [rec(1, 'migrate', 'rolled-back'), rec(2, 'checkpoint fail-save', 'rollback-failed'), rec(3, 'checkpoint', 'done', ['vm2 is paused, not running'])], final: ['journal: migrate m1 ended in degraded'], answerRight: false, exitCode: 4, leftovers: ['run directory /run/symrun/x'], durationS: 200 });
  t.equal(bad.violations, 6, 'two outcomes, one invariant, the journal, the answer, a leftover');
  t.match(bad.violationList.map((v) => v.what).join('\n'), /outcome rolled-back \(allowed: done\)[^]*rollback-failed[^]*paused[^]*degraded[^]*ring OK[^]*left behind: run directory/);
  const md = soakMarkdown(bad, 'env');
  for (const k of Object.keys(SOAK_OPS)) t.match(md, `| ${k} |`, `table row for ${k}`);
  t.match(md, /invariant violations \*\*6\*\*/);
});

t.test('journal: done and rolled back are explained; degraded only with a return trip that ended done', async (t) => {
  t.same(journalUnexplained([
    { op: 'm1', kind: 'migrate', phase: 'done' },
    { op: 'c1', kind: 'checkpoint', phase: 'rolled-back' },
    { op: 'm2', kind: 'migrate', phase: 'degraded', error: 'hot-plug refused' },
    { op: 'm3', kind: 'migrate', phase: 'done', reason: 'return trip of m2' },
  ]), [], 'a refused device_add moved back by its return trip');
  const bad = journalUnexplained([
    { op: 'm2', kind: 'migrate', phase: 'degraded', error: 'hot-plug refused' },
    { op: 'm3', kind: 'migrate', phase: 'rolled-back', reason: 'return trip of m2' },
    { op: 'm4', kind: 'migrate', phase: 'degraded' },
    { op: 'm5', kind: 'migrate', phase: 'done', reason: 'return trip of m9' },
    { op: 'm6', kind: 'migrate', phase: 'rollback-failed' },
    { op: 'c2', kind: 'checkpoint', phase: 'save' },
    { op: 'c3', kind: 'checkpoint', phase: 'degraded', reason: 'return trip of c3' },
  ]);
  t.equal(bad.length, 5, bad.join('\n'));
  t.match(bad[0], /migrate m2 ended in degraded \(hot-plug refused\) and no return trip of it ended done/);
  t.match(bad.join('\n'), /m4[^]*m6 ended in rollback-failed[^]*c2 ended in save[^]*c3 ended in degraded/);
});
