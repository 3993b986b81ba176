// slurm-plugins/healthcheck as the lab's HealthCheckProgram: a check that starts failing on n2 drains
// n2, and symrun (Slurm mode) migrates vm2 to the spare n4; ring OK, job COMPLETED.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from '../../launcher/src/defaults.js';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { submitRingJob, waitRing, status, readEvents, type StatusJson, jobEnded, endRing } from '../fixtures/slurm-ring.js';

needRoot('the Slurm lab and the VMs need root');
for (const [c, p] of [['slurmctld', 'slurm-wlm'], ['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86']] as const) need(c, p);

t.test('health check fails on n2 -> n2 drained -> vm2 migrated to n4', async (t) => {
  // /var/tmp: seen by every lab node (their /tmp is private)
  const hc = fs.mkdtempSync('/var/tmp/symrun-hc-');
  t.teardown(() => fs.rmSync(hc, { recursive: true, force: true }));
  fs.mkdirSync(path.join(hc, 'health.d'));
  fs.writeFileSync(path.join(hc, 'health.d', '10-fabric'), `#!/bin/sh\nif [ -e ${hc}/fail-$(hostname) ]; then echo "fabric link down"; exit 1; fi\nexit 0\n`, { mode: 0o755 });
  const wrapper = path.join(hc, 'healthcheck');
  fs.writeFileSync(wrapper, `#!/bin/sh\nSYMRUN_HEALTH_DIR=${hc}/health.d exec ${path.join(repoRoot(), 'slurm-plugins', 'healthcheck', 'symrun-healthcheck')}\n`, { mode: 0o755 });

  const lab: SlurmLab = await startSlurmLab({ nodes: 4, name: `sh${process.pid.toString(36)}`.slice(0, 16), temporary: true, healthCheckProgram: wrapper, healthCheckInterval: 2 });
  t.teardown(() => lab.stop());
  const job = await submitRingJob(lab, `health${process.pid}`);
  const ended = jobEnded(lab, job);
  await waitRing(job, 900_000, 100, ended);
  const nodesOk = await lab.showNodes();
  t.notOk(nodesOk.some((n) => /DRAIN/.test(n.state)), 'healthy checks drain nothing');

  const failAt = Date.now();
  fs.writeFileSync(path.join(hc, 'fail-n2'), '');
  const drained = await lab.waitNodeState('n2', /DRAIN/, 30_000);
  const drainSeenMs = Date.now() - failAt;
  t.match(drained.reason, /^symrun-health: 10-fabric: fabric link down/, `drain reason (${drained.reason})`);

  let st: StatusJson | undefined;
  const deadline = Date.now() + 600_000;
  for (;;) {
    st = await status(lab);
    if (st.migrations.find((x) => x.vm === 'vm2')?.result || Date.now() > deadline) break;
    await sleep(500);
  }
  const m = st.migrations.find((x) => x.vm === 'vm2');
  t.equal(m?.to, 'n4', 'vm2 to the spare');
  t.equal(m?.result?.outcome, 'done', `migration done (${JSON.stringify(m?.result)})`);
  t.match(m?.reason, /^node n2 DRAIN: symrun-health: 10-fabric/, `reason (${m?.reason})`);
  t.same(st.vms.map((v) => [v.name, v.host]), [['vm1', 'n1'], ['vm2', 'n4'], ['vm3', 'n3']]);
  const pol = readEvents(job).find((e) => e.kind === 'policy' && e.data?.action === 'migrate' && e.data?.vm === 'vm2');
  const startMs = pol ? Date.parse(pol.ts) - failAt : NaN;
  t.comment(`MEASURE check fails -> n2 DRAIN visible to the test ${drainSeenMs} ms; -> migration started ${startMs} ms (HealthCheckInterval 2 s, pollInterval ${st.watch?.intervalMs} ms)`);

  fs.rmSync(path.join(hc, 'fail-n2'));
  const { job: j, out } = await endRing(lab, job, st.jobId);
  t.equal(j.state, 'COMPLETED', `batch job COMPLETED (output: ${out.slice(-2000)})`);
  t.match(out, /ring OK: ranks=3/, 'ring OK');
});
