// Slurm mode: a drain of a node that runs a VM moves that VM to the spare while the job runs
// (proactive migration), the ring keeps running and ends OK, the batch job ends COMPLETED.
// Prints the drain -> migration-started latency and the node watcher's poll cost. `symrun report` draws
// the job's events: the drain and the move are in the picture.
import t from 'tap';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { submitRingJob, waitRing, status, readEvents, type StatusJson, jobEnded, endRing, symrunPath } from '../fixtures/slurm-ring.js';

needRoot('the Slurm lab and the VMs need root');
for (const [c, p] of [['slurmctld', 'slurm-wlm'], ['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86']] as const) need(c, p);

t.test('drain n2 -> vm2 migrated to the spare n4; ring OK; job COMPLETED', async (t) => {
  const lab: SlurmLab = await startSlurmLab({ nodes: 4, name: `sd${process.pid.toString(36)}`.slice(0, 16), temporary: true });
  t.teardown(() => lab.stop());
  const job = await submitRingJob(lab, `drain${process.pid}`);
  const ended = jobEnded(lab, job);
  await waitRing(job, 900_000, 100, ended);
  const before = await status(lab);
  t.same(before.vms.map((v) => [v.name, v.host]), [['vm1', 'n1'], ['vm2', 'n2'], ['vm3', 'n3']], 'VMs on n1..n3 before the drain');

  const drainAt = Date.now();
  await lab.drain('n2', 'maint');
  const drainedAt = Date.now();

  // vm2 on n4 and its migration finished
  let st: StatusJson = before;
  const deadline = Date.now() + 600_000;
  for (;;) {
    st = await status(lab);
    const m = st.migrations.find((x) => x.vm === 'vm2');
    if (m?.result) break;
    if (Date.now() > deadline) break;
    await sleep(500);
  }
  const m = st.migrations.find((x) => x.vm === 'vm2');
  t.ok(m, 'a migration of vm2 was started by the coordinator');
  t.equal(m?.from, 'n2');
  t.equal(m?.to, 'n4', 'to the spare');
  t.match(m?.reason, /^node n2 DRAIN: maint/, `reason recorded (${m?.reason})`);
  t.equal(m?.result?.outcome, 'done', `migration done (${JSON.stringify(m?.result)})`);
  t.same(st.vms.map((v) => [v.name, v.host]), [['vm1', 'n1'], ['vm2', 'n4'], ['vm3', 'n3']], 'status: vm2 on n4');
  const n2 = st.hosts.find((h) => h.name === 'n2');
  t.equal(n2?.condition, 'drain', 'n2 shown draining');
  t.equal(n2?.usable, false, 'n2 no longer a target');

  const events = readEvents(job);
  const node = events.find((e) => e.kind === 'policy' && e.data?.action === 'node' && e.data?.node === 'n2');
  const pol = events.find((e) => e.kind === 'policy' && e.data?.action === 'migrate' && e.data?.vm === 'vm2');
  const first = events.find((e) => e.kind === 'migrate' && e.op === pol?.data?.op);
  t.ok(node && pol && first, 'events: node change, policy decision, migration phases');
  const seenMs = node ? Date.parse(node.ts) - drainAt : NaN;
  const startMs = first ? Date.parse(first.ts) - drainAt : NaN;
  t.ok(startMs < 5_000, `migration started ${startMs} ms after the drain command (seen ${seenMs} ms)`);
  t.comment(`MEASURE drain command took ${drainedAt - drainAt} ms; drain -> seen by coordinator ${seenMs} ms; drain -> migration started ${startMs} ms; migration total ${m?.result?.totalMs} ms`);
  t.comment(`MEASURE watcher: interval ${st.watch?.intervalMs} ms, ${st.watch?.polls} polls, last ${st.watch?.lastMs} ms, max ${st.watch?.maxMs} ms, mean ${st.watch ? (st.watch.totalMs / st.watch.polls).toFixed(1) : '?'} ms, errors ${st.watch?.errors}`);

  // the ring still advances after the move
  const itNow = await waitRing(job, 5_000, 0);
  await waitRing(job, 300_000, itNow + 200, ended);
  const { job: j, out } = await endRing(lab, job, st.jobId);
  t.equal(j.state, 'COMPLETED', `batch job COMPLETED (output: ${out.slice(-2500)})`);
  t.match(out, /ring OK: ranks=3/, 'ring OK');
  const gap = /maxgap_ms[=: ]+([0-9.]+)/.exec(out)?.[1];
  t.comment(`MEASURE ring maxgap_ms ${gap}`);

  // the picture of what happened: symrun report on the job's own events
  const svgFile = `${job.events}.svg`;
  const rep = spawnSync(symrunPath, ['report', job.events, '-o', svgFile, '--json'], { encoding: 'utf8' });
  t.equal(rep.status, 0, `symrun report exits 0 (${rep.stderr})`);
  const sum = JSON.parse(rep.stdout) as { operations: Array<{ op: string; outcome?: string }>; nodeEvents: Array<{ host: string; label: string }> };
  t.ok(sum.operations.some((o) => o.op === pol?.data?.op && o.outcome === 'done'), 'report: the drain migration, done');
  t.ok(sum.nodeEvents.some((n) => n.host === 'n2' && /DRAIN/.test(n.label)), 'report: n2 drained');
  const svg = fs.readFileSync(svgFile, 'utf8');
  t.match(svg, new RegExp(`class="mark" data-kind="node" data-row="host:n2"`), 'SVG: a node mark on n2\'s row');
  for (const p of ['prepare', 'perform', 'finish', 'reconfigure', 'resume']) t.match(svg, new RegExp(`data-op="${pol?.data?.op}" data-phase="${p}"`), `SVG: the migration's ${p} bar`);
  t.match(svg, /data-kind="vm" data-op="vm2" data-phase="vm2" data-row="host:n4"/, 'SVG: vm2 on n4 after the move');
});
