// Slurm mode, one ring job (3 VMs + 1 spare):
//  1. `scontrol reboot ASAP n2` (MIXED+DRAIN+REBOOT_REQUESTED) -> vm2 moves to the spare n4;
//  2. n2 is resumed (a spare again); then n3 and n4 are drained at once with one spare left: one VM
//     moves (the first by node order: vm3 on n3 -> n2), the other (vm2 on n4) is reported no-spare in
//     `symrun status --json` notices, and the job keeps running;
//  3. the job is given a fifth node (n5, idle so far: an expand allocation merged with
//     `scontrol update jobid=J NumNodes=ALL`): symrun reads it from `scontrol show job`, starts a host
//     agent there, and vm2, still on the drained n4, moves to it. The job ends COMPLETED.
import t from 'tap';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { submitRingJob, waitRing, status, readOut, readEvents, jobEnded, waitStatus, endRing } from '../fixtures/slurm-ring.js';

needRoot('the Slurm lab and the VMs need root');
for (const [c, p] of [['slurmctld', 'slurm-wlm'], ['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86']] as const) need(c, p);

t.test('reboot ASAP moves the VM; two drains with one spare: one moves, one no-spare; a node given to the job takes the waiting VM', async (t) => {
  // scontrol reboot needs a RebootProgram; /bin/true: the node never really reboots in the lab
  const lab: SlurmLab = await startSlurmLab({ nodes: 5, name: `sr${process.pid.toString(36)}`.slice(0, 16), temporary: true, extraConf: ['RebootProgram=/bin/true'] });
  t.teardown(() => lab.stop());
  const job = await submitRingJob(lab, `reboot${process.pid}`);
  const ended = jobEnded(lab, job);
  await waitRing(job, 900_000, 50, ended);
  const st0 = await status(lab);
  t.same(st0.hosts.map((h) => [h.name, h.role]), [['n1', 'vm'], ['n2', 'vm'], ['n3', 'vm'], ['n4', 'spare']], 'the job holds n1..n4, n4 is the spare (n5 is idle)');

  // 1. reboot ASAP
  const t0 = Date.now();
  await lab.scontrol(['reboot', 'ASAP', 'n2']);
  const n2 = await lab.waitNodeState('n2', /REBOOT/, 30_000);
  t.match(n2.state, /DRAIN/, `n2 is ${n2.state}`);
  let st = await waitStatus(lab, (s) => !!s.migrations.find((m) => m.vm === 'vm2')?.result, 600_000);
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
  st = await waitStatus(lab, (s) => s.hosts.find((h) => h.name === 'n2')?.usable === true, 60_000);
  t.equal(st.hosts.find((h) => h.name === 'n2')?.usable, true, `n2 usable again (${JSON.stringify(st.hosts.find((h) => h.name === 'n2'))})`);
  const itBefore = await waitRing(job, 5_000, 0);
  await Promise.all([lab.drain('n3', 'maint-a'), lab.drain('n4', 'maint-b')]);
  st = await waitStatus(lab, (s) => !!s.migrations.find((x) => x.vm === 'vm3')?.result && (s.notices ?? []).some((n) => /no spare/.test(n)), 600_000);
  const m3 = st.migrations.find((x) => x.vm === 'vm3');
  t.equal(m3?.to, 'n2', 'vm3 moved to the only spare n2');
  t.equal(m3?.result?.outcome, 'done', 'migration done');
  t.equal(st.migrations.filter((x) => x.vm === 'vm2').length, 1, 'vm2 not migrated again');
  t.same(st.vms.map((v) => [v.name, v.host]), [['vm1', 'n1'], ['vm2', 'n4'], ['vm3', 'n2']], 'placement');
  const notice = (st.notices ?? []).find((n) => /vm2/.test(n) && /no spare/.test(n));
  t.ok(notice, `no-spare notice for vm2 in status --json (${JSON.stringify(st.notices)})`);
  t.ok(readEvents(job).some((e) => e.kind === 'policy' && e.data?.action === 'no-spare' && e.data?.vm === 'vm2'), 'no-spare event for vm2');

  // 3. the allocation grows by n5: a new spare, and vm2 (waiting for one) moves there
  const growAt = Date.now();
  const grown = await lab.expandJob(job.jobId, 'n5');
  t.same(grown.nodeList, ['n1', 'n2', 'n3', 'n4', 'n5'], 'slurmctld: the job holds n5 too');
  st = await waitStatus(lab, (s) => s.migrations.filter((x) => x.vm === 'vm2').length === 2 && !!s.migrations.filter((x) => x.vm === 'vm2')[1]?.result, 300_000);
  const m2 = st.migrations.filter((x) => x.vm === 'vm2')[1];
  t.equal(m2?.from, 'n4', 'vm2 moved off the drained n4');
  t.equal(m2?.to, 'n5', 'to the node the job was given');
  t.equal(m2?.result?.outcome, 'done', `migration done (${JSON.stringify(m2?.result)})`);
  t.match(m2?.reason, /^node n4 DRAIN: maint-b/, `reason (${m2?.reason})`);
  t.match(st.hosts.find((h) => h.name === 'n5'), { role: 'vm', agent: true }, 'n5 has a host agent and runs vm2');
  const ev3 = readEvents(job);
  const added = ev3.find((e) => e.kind === 'policy' && e.data?.action === 'host-added' && e.data?.host === 'n5');
  const moved = ev3.find((e) => e.kind === 'policy' && e.data?.action === 'migrate' && e.data?.vm === 'vm2' && e.data?.from === 'n4');
  t.ok(added && moved, 'events: host-added n5, then migrate vm2');
  t.match(readOut(job), /node n5 joined the allocation: starting its host agent[\s\S]*node n5 is a spare now/, 'said on stderr');
  t.comment(`MEASURE allocation grown -> host-added ${added ? Date.parse(added.ts) - growAt : NaN} ms; -> migration of vm2 started ${moved ? Date.parse(moved.ts) - growAt : NaN} ms; total ${m2?.result?.totalMs} ms`);

  await waitRing(job, 300_000, itBefore + 200, ended);
  t.pass('the ring keeps running');
  const { job: j, out } = await endRing(lab, job, st.jobId);
  t.equal(j.state, 'COMPLETED', `batch job COMPLETED (output: ${out.slice(-1500)})`);
  t.match(out, /ring OK: ranks=3/, 'ring OK');
});
