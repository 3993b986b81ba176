// A coordinator killed in the middle of a checkpoint's ROLLBACK (the save failed, every VM is stopped,
// the rollback begins to `cont` them): `symrun recover` runs that rollback step again (the protocol's
// recovery table), so every VM runs again, the checkpoint is rolled back (nothing left) and the job
// finishes with the right answer. Before the engine had a recovery table the step was recorded as a
// leftover and the VMs stayed paused.
// The job has a checkpoint interval, a restart budget and an events file: the recovered coordinator
// carries on with them (carry.ts): the dead coordinator's recovery record holds them, a periodic
// checkpoint is taken again after the recover (on the job's clock, not a new one), and its events go on
// into the same file. Before recover re-armed the timer, no checkpoint was ever taken after a recover.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { repoRoot, runtimeRoot } from '../../launcher/src/defaults.js';
import type { RecoveryState } from '../../launcher/src/coordinator/job/rundir.js';
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
  const events = path.join(work, 'events.jsonl');
  // 60 s: long enough that no periodic checkpoint runs before the requested one kills the coordinator
  // (the ring's first 100 iterations take seconds), short enough to see one after the recover
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', '2', '--checkpoint-dir', ckpt, '--checkpoint-interval', '60s', '--max-restarts', '2', '--events', events], stopFile, extraEnv: { SYMRUN_FAULTS: 'fail-save@save,kill-coordinator@rb-cont' } });
  t.teardown(() => job.kill());
  const c = await job.sym(['checkpoint']);
  t.not(c.code, 0, 'the checkpoint command loses its job');
  const recordOf = () => JSON.parse(fs.readFileSync(path.join(runtimeRoot(), job.id, 'recover.json'), 'utf8')) as RecoveryState;
  const dead = recordOf().carry;
  t.same(dead?.restarts, { used: 0, max: 2, log: [] }, 'the recovery record holds the restart budget');
  t.equal(dead?.checkpointTimer?.intervalMs, 60_000, 'and the checkpoint interval');
  t.equal(dead?.eventsFile, events, 'and the events file');
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
  const rolledBack = /checkpoint (\S+): rolled-back/.exec(err)?.[1] ?? '(none)';
  // (a periodic checkpoint of the recovered job may have begun by now: only the rolled-back one's are looked for)
  t.same(fs.readdirSync(ckpt).filter((n) => n.startsWith(rolledBack)), [], 'no checkpoint and no temp dir of the rolled-back one left');
  const before = Number([...out.matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1);
  while (Number([...out.matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1) <= before && rec.exitCode === null && Date.now() < end + 120_000) await sleep(200);
  t.ok(Number([...out.matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1) > before, 'the ranks run again: the VMs are not paused');
  // the periodic timer runs again in the recovered coordinator, on the dead one's clock
  const taken = () => fs.readdirSync(ckpt).filter((n) => fs.existsSync(path.join(ckpt, n, 'manifest.json')));
  while (!taken().length && rec.exitCode === null && Date.now() < end + 240_000) await sleep(500);
  t.equal(taken().length, 1, `a periodic checkpoint was taken after the recover: ${err.slice(-1500)}`);
  const lines = fs.readFileSync(events, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; event: string; data?: { outcome?: string; checkpoint?: string } });
  t.ok(lines.some((e) => e.kind === 'checkpoint' && e.event === 'result' && e.data?.outcome === 'done' && e.data.checkpoint === taken()[0]), 'its events went on into the job\'s events file');
  const since = recordOf().carry?.checkpointTimer?.since;
  t.ok(since && dead?.checkpointTimer && Date.parse(since) > Date.parse(dead.checkpointTimer.since), 'the clock moved on with the checkpoint taken');
  const touch = await runSymrun(['exec', '--job', job.id, 'vm1', '--', 'touch', stopFile], { cwd: work, timeoutMs: 120_000 });
  t.equal(touch.code, 0, 'the job can be stopped');
  while (rec.exitCode === null && Date.now() < end + 300_000) await sleep(200);
  t.equal(rec.exitCode, 0, `recover exit 0: ${err.slice(-1500)}`);
  t.match(out, /ring OK: ranks=2 /, 'ring OK');
});
