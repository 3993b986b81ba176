// Slurm mode end to end on the lab (test/cluster/slurm.ts): an sbatch job of 4 nodes runs
// `symrun --spares 1 -- ./ring`: host agents started with srun on every node, VMs on n1..n3, n4 spare,
// the ring stops when the test creates its stop file inside vm1 (symrun exec), the job ends COMPLETED.
import t from 'tap';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { submitRingJob, waitRing, status, jobEnded, endRing } from '../fixtures/slurm-ring.js';

needRoot('the Slurm lab and the VMs need root');
for (const [c, p] of [['slurmctld', 'slurm-wlm'], ['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86']] as const) need(c, p);

t.test('sbatch -N 4: symrun --spares 1 runs the ring on n1..n3, n4 spare, job COMPLETED', async (t) => {
  const lab: SlurmLab = await startSlurmLab({ nodes: 4, name: `sr${process.pid.toString(36)}`.slice(0, 16), temporary: true });
  t.teardown(() => lab.stop());
  const t0 = Date.now();
  const job = await submitRingJob(lab, `run${process.pid}`);
  const ended = jobEnded(lab, job);
  const it = await waitRing(job, 900_000, 100, ended);
  t.comment(`ring running (iteration ${it}) ${((Date.now() - t0) / 1000).toFixed(1)} s after sbatch`);

  const st = await status(lab);
  t.equal(st.mode, 'slurm', 'slurm mode');
  t.equal(st.state, 'running');
  t.same(st.vms.map((v) => [v.name, v.host]), [['vm1', 'n1'], ['vm2', 'n2'], ['vm3', 'n3']], 'VMs on n1..n3');
  t.same(st.hosts.map((h) => [h.name, h.role, h.agent]), [['n1', 'vm', true], ['n2', 'vm', true], ['n3', 'vm', true], ['n4', 'spare', true]], 'n4 is the spare, every node has a host agent');
  t.ok(st.watch && st.watch.polls > 0, `node watcher polls (${JSON.stringify(st.watch)})`);

  const { job: j, out } = await endRing(lab, job, st.jobId);
  t.equal(j.state, 'COMPLETED', `batch job COMPLETED (output: ${out.slice(-2000)})`);
  t.same(j.exitCode, { status: 0, signal: 0 }, 'exit 0');
  t.match(out, /ring OK: ranks=3/, 'ring OK over 3 VMs');
});
