// Reactive restart with --local hosts (an emulated host "dies": its host agent and QEMU are SIGKILLed):
//  1. no checkpoint and no --restart-from-start: the job stops with a message that says what to do, exit 4,
//     nothing left behind;
//  2. --restart-from-start: the job runs again from the beginning (the lost VM on the spare), ring OK;
//  3. no spare left: the job stops naming the checkpoint and the `symrun restart` command; that command
//     (--local) restores the job on this machine and it finishes with the right answer;
//  4. the coordinator dies while a checkpoint is being written (VMs stopped, devices out): `symrun recover`
//     rolls the checkpoint back from the journal (no temp dir left) and the job finishes.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot, spawnSymrun, runSymrun } from '../fixtures/symrun-env.js';
import { startRingJob } from '../fixtures/ring-job.js';

need('mpicc', 'libopenmpi-dev');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-restart-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
// checkpoints inside the job's directory: symrun leaves them out of what it stages into the guests
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Power off emulated host N of a job: everything in its network namespace is SIGKILLed. */
function killHost(jobId: string, n: number): number {
  const ns = `symrun-${jobId}-h${n}`;
  const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const p of pids) { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }
  return pids.length;
}

function leftovers(jobId: string): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes(jobId));
}

async function exitOf(child: { exitCode: number | null }, ms = 180_000): Promise<number | null> {
  const end = Date.now() + ms;
  while (child.exitCode === null && Date.now() < end) await sleep(200);
  return child.exitCode;
}

t.test('no checkpoint, no --restart-from-start: a clear stop, nothing left', async (t) => {
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', '2', '--spares', '1'], stopFile: path.join(work, 'stop1') });
  t.teardown(() => job.kill());
  t.ok(killHost(job.id, 2) > 0, 'host2 powered off');
  const { code } = await job.stop();
  t.equal(code, 4, 'exit 4');
  const st = job.stderr();
  t.match(st, /host host2 lost \(its host agent's connection closed\): vm2 went with it/, 'the loss is reported');
  t.match(st, /error: vm2 lost with host2 .*no complete checkpoint to restart from/, 'the job stops: no checkpoint');
  t.match(st, /--restart-from-start/, 'says how to allow a restart from the beginning');
  t.notMatch(st, /\n\s+at /, 'no stack trace');
  t.same(leftovers(job.id), [], 'no namespace of the job left');
});

t.test('--restart-from-start: the job runs again from the beginning on the spare', async (t) => {
  const stopFile = path.join(work, 'stop2');
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', '2', '--spares', '1', '--restart-from-start'], stopFile });
  t.teardown(() => job.kill());
  killHost(job.id, 2);
  await job.until('relaunch', () => /no checkpoint: running the job again from the beginning \(vm2 on host3\)/.test(job.stderr()), 120_000);
  await job.until('ring output after the relaunch', () => (job.stdout().match(/ring iteration 100\b/g) ?? []).length >= 2, 300_000);
  const st = JSON.parse((await job.sym(['status', '--json'])).stdout);
  t.same(st.vms.map((v: { name: string; host: string }) => [v.name, v.host]), [['vm1', 'host1'], ['vm2', 'host3']], 'vm2 on the spare');
  t.equal(st.restarts.count, 1, 'one restart counted');
  const { code } = await job.stop();
  t.equal(code, 0, 'exit 0');
  t.match(job.stdout(), /ring OK: ranks=2 /, 'ring OK');
});

t.test('no spare left: stop with the checkpoint to restart from; symrun restart --local finishes the job', async (t) => {
  const ckpt = path.join(work, 'ckpt');
  const stopFile = path.join(work, 'stop3');
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', '2', '--checkpoint-dir', ckpt], stopFile });
  t.teardown(() => job.kill());
  const c = await job.sym(['checkpoint', '--json']);
  t.equal(c.code, 0, `checkpoint taken: ${c.stderr.slice(-800)}`);
  const name = JSON.parse(c.stdout).name as string;
  const itCkpt = job.iterations();
  await job.stillRunning('the checkpoint');
  killHost(job.id, 2);
  t.equal((await job.stop()).code, 4, 'exit 4');
  const err = job.stderr();
  t.match(err, /error: vm2 lost with host2 .*no spare host is left to restart vm2 on/, 'the job stops: no spare');
  t.match(err, new RegExp(`symrun restart ${ckpt.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} --from ${name}`), 'names the restart command and the checkpoint');
  t.same(leftovers(job.id), [], 'nothing of the job left');

  const rs = spawnSymrun(['restart', ckpt, '--local', '2'], { cwd: work });
  let out = '';
  let rerr = '';
  rs.stdout!.on('data', (d) => (out += d));
  rs.stderr!.on('data', (d) => (rerr += d));
  t.teardown(() => { if (rs.exitCode === null) rs.kill('SIGKILL'); });
  const end = Date.now() + 300_000;
  while (!/ring iteration \d+/.test(out) && rs.exitCode === null && Date.now() < end) await sleep(200);
  t.match(rerr, new RegExp(`restarting job ${job.id} from checkpoint ${name}`), 'restored from the checkpoint');
  const first = Number(/ring iteration (\d+)/.exec(out)?.[1] ?? -1);
  t.ok(first >= itCkpt && first <= itCkpt + 200, `the ring goes on from the checkpoint (iteration ${first}, checkpoint at ~${itCkpt})`);
  const newId = /job (\w+): restarting/.exec(rerr)?.[1];
  const touch = await runSymrun(['exec', '--job', newId!, 'vm1', '--', 'touch', stopFile], { cwd: work, timeoutMs: 120_000 });
  t.equal(touch.code, 0, 'stop file created in the restored vm1');
  const code = await exitOf(rs);
  t.equal(code, 0, `symrun restart exit 0: ${rerr.slice(-1500)}`);
  t.match(out, /ring OK: ranks=2 /, 'ring OK: the right answer');
});

t.test('coordinator killed while a checkpoint is written, then symrun recover rolls it back', async (t) => {
  const ckpt = path.join(work, 'ckpt4');
  const stopFile = path.join(work, 'stop4');
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', '2', '--checkpoint-dir', ckpt], stopFile, extraEnv: { SYMRUN_FAULTS: 'kill-coordinator@save' } });
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
  while (!/checkpoint \S+: rolled-back/.test(err) && rec.exitCode === null && Date.now() < end) await sleep(200);
  t.match(err, /recovering checkpoint \w+ \(was in save\)/, 'recovered from the journal');
  t.match(err, /checkpoint \S+: rolled-back/, 'rolled back');
  t.same(fs.readdirSync(ckpt).filter((n) => n !== 'CACHEDIR.TAG'), [], 'no checkpoint and no temp dir left (only the cache tag)');
  const before = Number([...out.matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1);
  while (Number([...out.matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1) <= before && rec.exitCode === null && Date.now() < end + 120_000) await sleep(200);
  const touch = await runSymrun(['exec', '--job', job.id, 'vm1', '--', 'touch', stopFile], { cwd: work, timeoutMs: 120_000 });
  t.equal(touch.code, 0, 'the ranks run again (unfrozen) and the job can be stopped');
  while (rec.exitCode === null && Date.now() < end + 300_000) await sleep(200);
  t.equal(rec.exitCode, 0, `recover exit 0: ${err.slice(-1500)}`);
  t.match(out, /ring OK: ranks=2 /, 'ring OK');
});
