// Slurm mode, one ring job (3 VMs + 1 spare):
//  1. `scontrol reboot ASAP n2` (MIXED+DRAIN+REBOOT_REQUESTED) -> vm2 moves to the spare n4;
//  2. n2 is resumed (a spare again); then n3 and n4 are drained at once with one spare left: one VM
//     moves (the first by node order: vm3 on n3 -> n2), the other (vm2 on n4) is reported no-spare in
//     `symrun status --json` notices, and the job keeps running and ends COMPLETED.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { submitRingJob, waitRing, status, stopRing, readOut, readEvents, type StatusJson } from '../fixtures/slurm-ring.js';

needRoot('the Slurm lab and the VMs need root');
for (const [c, p] of [['slurmctld', 'slurm-wlm'], ['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86']] as const) need(c, p);

async function waitFor(lab: SlurmLab, pred: (st: StatusJson) => boolean, timeoutMs: number): Promise<StatusJson> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await status(lab);
    if (pred(st) || Date.now() > deadline) return st;
    await sleep(500);
  }
}

t.test('reboot ASAP moves the VM; two drains with one spare: one moves, one no-spare, job keeps running', async (t) => {
  // scontrol reboot needs a RebootProgram; /bin/true: the node never really reboots in the lab
  const lab: SlurmLab = await startSlurmLab({ nodes: 4, name: `sr${process.pid.toString(36)}`.slice(0, 16), temporary: true, extraConf: ['RebootProgram=/bin/true'] });
  t.teardown(() => lab.stop());
  const job = await submitRingJob(lab, `reboot${process.pid}`);
  const ended = async () => {
    const j = await lab.showJob(job.jobId).catch(() => undefined);
    return j && j.state !== 'RUNNING' && j.state !== 'PENDING' ? `job ${job.jobId} ended ${j.state}` : undefined;
  };
  await waitRing(job, 900_000, 50, ended);

  // 1. reboot ASAP
  const t0 = Date.now();
  await lab.scontrol(['reboot', 'ASAP', 'n2']);
  const n2 = await lab.waitNodeState('n2', /REBOOT/, 30_000);
  t.match(n2.state, /DRAIN/, `n2 is ${n2.state}`);
  let st = await waitFor(lab, (s) => !!s.migrations.find((m) => m.vm === 'vm2')?.result, 600_000);
  const m = st.migrations.find((x) => x.vm === 'vm2');
  t.equal(m?.to, 'n4', 'vm2 moved to the spare');
  t.equal(m?.result?.outcome, 'done', `migration done (${JSON.stringify(m?.result)})`);
  t.match(m?.reason, /^node n2 .*REBOOT/, `reason (${m?.reason})`);
  const pol = readEvents(job).find((e) => e.kind === 'policy' && e.data?.action === 'migrate' && e.data?.vm === 'vm2');
  t.equal(pol?.data?.condition, 'reboot', 'policy condition reboot');
  t.comment(`MEASURE reboot ASAP -> migration started ${pol ? Date.parse(pol.ts) - t0 : NaN} ms; total ${m?.result?.totalMs} ms`);

  // 2. n2 back as a spare; then two drains, one spare
  await lab.scontrol(['update', 'nodename=n2', 'state=resume']).catch(() => undefined);
  await lab.scontrol(['cancel_reboot', 'n2']).catch(() => undefined);
  st = await waitFor(lab, (s) => s.hosts.find((h) => h.name === 'n2')?.usable === true, 60_000);
  t.equal(st.hosts.find((h) => h.name === 'n2')?.usable, true, `n2 usable again (${JSON.stringify(st.hosts.find((h) => h.name === 'n2'))})`);
  const itBefore = await waitRing(job, 5_000, 0);
  await Promise.all([lab.drain('n3', 'maint-a'), lab.drain('n4', 'maint-b')]);
  st = await waitFor(lab, (s) => !!s.migrations.find((x) => x.vm === 'vm3')?.result && (s.notices ?? []).some((n) => /no spare/.test(n)), 600_000);
  const m3 = st.migrations.find((x) => x.vm === 'vm3');
  t.equal(m3?.to, 'n2', 'vm3 moved to the only spare n2');
  t.equal(m3?.result?.outcome, 'done', 'migration done');
  t.equal(st.migrations.filter((x) => x.vm === 'vm2').length, 1, 'vm2 not migrated again');
  t.same(st.vms.map((v) => [v.name, v.host]), [['vm1', 'n1'], ['vm2', 'n4'], ['vm3', 'n2']], 'placement');
  const notice = (st.notices ?? []).find((n) => /vm2/.test(n) && /no spare/.test(n));
  t.ok(notice, `no-spare notice for vm2 in status --json (${JSON.stringify(st.notices)})`);
  t.ok(readEvents(job).some((e) => e.kind === 'policy' && e.data?.action === 'no-spare' && e.data?.vm === 'vm2'), 'no-spare event for vm2');

  await waitRing(job, 300_000, itBefore + 200, ended);
  t.pass('the ring keeps running');
  await stopRing(lab, job, st.jobId);
  const j = await lab.waitJob(job.jobId, ['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL'], 180_000);
  const out = readOut(job);
  t.equal(j.state, 'COMPLETED', `batch job COMPLETED (output: ${out.slice(-1500)})`);
  t.match(out, /ring OK: ranks=3/, 'ring OK');
});
