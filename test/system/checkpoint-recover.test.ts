// A coordinator killed in the middle of a checkpoint's ROLLBACK (the save failed, every VM is stopped,
// the rollback begins to `cont` them): `symrun recover` runs that rollback step again (the protocol's
// recovery table), so every VM runs again, the checkpoint is rolled back (nothing left) and the job
// finishes with the right answer. Before the engine had a recovery table the step was recorded as a
// leftover and the VMs stayed paused.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot, spawnSymrun, runSymrun } from '../fixtures/symrun-env.js';
import { startRingJob } from '../fixtures/ring-job.js';

need('mpicc', 'libopenmpi-dev');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-ckrec-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('coordinator killed in a checkpoint rollback step, then symrun recover', async (t) => {
  const ckpt = path.join(work, 'ckpt');
  const stopFile = path.join(work, 'stop');
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', '2', '--checkpoint-dir', ckpt], stopFile, extraEnv: { SYMRUN_FAULTS: 'fail-save@save,kill-coordinator@rb-cont' } });
  t.teardown(() => job.kill());
  const c = await job.sym(['checkpoint']);
  t.not(c.code, 0, 'the checkpoint command loses its job');
  const rec = spawnSymrun(['recover', '--job', job.id], { cwd: work });
  let out = '';
  let err = '';
  rec.stdout!.on('data', (d) => (out += d));
  rec.stderr!.on('data', (d) => (err += d));
  t.teardown(() => { if (rec.exitCode === null) rec.kill('SIGKILL'); });
  const end = Date.now() + 180_000;
  while (!/checkpoint \S+: (rolled-back|rollback-failed)/.test(err) && rec.exitCode === null && Date.now() < end) await sleep(200);
  t.match(err, /recovering checkpoint \w+ \(was in rb-cont\)/, 'recovered from the journal in the rollback step');
  t.match(err, /checkpoint \S+: rolled-back/, 'rolled back (not rollback-failed: rb-cont ran again)');
  t.notMatch(err, /left: /, 'nothing left over');
  t.same(fs.readdirSync(ckpt).filter((n) => n !== 'CACHEDIR.TAG'), [], 'no checkpoint and no temp dir left');
  const before = Number([...out.matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1);
  while (Number([...out.matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1) <= before && rec.exitCode === null && Date.now() < end + 120_000) await sleep(200);
  t.ok(Number([...out.matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1) > before, 'the ranks run again: the VMs are not paused');
  const touch = await runSymrun(['exec', '--job', job.id, 'vm1', '--', 'touch', stopFile], { cwd: work, timeoutMs: 120_000 });
  t.equal(touch.code, 0, 'the job can be stopped');
  while (rec.exitCode === null && Date.now() < end + 300_000) await sleep(200);
  t.equal(rec.exitCode, 0, `recover exit 0: ${err.slice(-1500)}`);
  t.match(out, /ring OK: ranks=2 /, 'ring OK');
});
