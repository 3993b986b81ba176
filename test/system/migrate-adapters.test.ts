// The quiesce adapters with real QEMU and Open MPI: a job booted for `failover` (each VM's interconnect
// NIC bonded with a virtio standby), migrated with the failover adapter (ranks never frozen), with
// the hooks adapter (site commands in every guest), and with freeze; the ring's checksum stays right.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { startRingJob } from '../fixtures/ring-job.js';

need('mpicc', 'libopenmpi-dev');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-adapt-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
fs.writeFileSync(path.join(work, 'symrun.yaml'), [
  'migration:',
  '  quiesce: failover',
  '  hooks:',
  '    quiesce: "echo quiesce-$(hostname) >> /run/symrun/hooks.log"',
  '    resume: "echo resume-$(hostname) >> /run/symrun/hooks.log"',
  '',
].join('\n'));
const stopFile = path.join(work, 'stop');

t.test('failover, hooks and freeze adapters on one running job', async (t) => {
  const job = await startRingJob({ cwd: work, symrunArgs: ['--config', 'symrun.yaml', '--local', '3', '--spares', '1'], stopFile });
  t.teardown(() => job.kill());
  const { sym, stillRunning } = job;
  const migrate = async (args: string[]) => {
    const r = await sym(['migrate', ...args, '--json']);
    t.equal(r.code, 0, `migrate ${args.join(' ')}: ${r.stderr.slice(-1500)}`);
    return JSON.parse(r.stdout);
  };

  const bond = await sym(['exec', 'vm2', '--', 'cat', '/proc/net/bonding/symfab0']);
  t.equal(bond.code, 0, 'vm2 has the failover bond');
  t.match(bond.stdout, /Currently Active Slave: symfab0p/, 'the passthrough NIC is the active slave');
  t.match(bond.stdout, /Slave Interface: symfab0s/, 'the standby is enslaved');

  const f = await migrate(['vm2', '--quiesce', 'failover']);
  t.equal(f.outcome, 'done');
  const q = f.events.find((e: any) => e.phase === 'quiesce' && e.event === 'end');
  t.equal(q.data.frozen, 0, 'failover: no rank was frozen');
  t.equal(q.data.vms, 1, 'failover: only the moving VM was asked');
  const after = await sym(['exec', 'vm2', '--', 'cat', '/proc/net/bonding/symfab0']);
  t.match(after.stdout, /Currently Active Slave: symfab0p/, 'after the move the replugged NIC is active again');
  await stillRunning('failover migration');

  const h = await migrate(['vm3', '--quiesce', 'hooks']);
  t.equal(h.outcome, 'done');
  for (const vm of ['vm1', 'vm2', 'vm3']) {
    const log = await sym(['exec', vm, '--', 'cat', '/run/symrun/hooks.log']);
    t.equal(log.stdout, `quiesce-${vm}\nresume-${vm}\n`, `hooks ran once each in ${vm}`);
  }
  await stillRunning('hooks migration');

  const z = await migrate(['vm2', '--quiesce', 'freeze']); // to whichever host is free now
  t.equal(z.outcome, 'done');
  t.ok(z.events.find((e: any) => e.phase === 'quiesce' && e.event === 'end').data.frozen >= 3, 'freeze: ranks in every VM frozen');
  await stillRunning('freeze migration');

  const { touch, code } = await job.stop();
  t.equal(touch.code, 0, touch.stderr);
  t.equal(code, 0, job.stderr().slice(-2000));
  t.match(job.stdout(), /ring OK: ranks=3 /);
});
