// MPICH programs (docs/mpi.md) with real QEMU and Debian's MPICH: ring.c built with mpicc.mpich runs
// on 3 VMs through Hydra's mpiexec.hydra (remote hydra_pmi_proxy started through symrun-rsh), its ranks
// are one MPI job (rank R of 3, not 3 singletons), it survives a live migration of vm2 to the spare
// mid-run with the right checksum, and a reactive restart from a coordinated checkpoint (host2 powered
// off: vm2 restored on the spare, every VM back to the checkpoint) with the right checksum; asking for
// Open MPI for it, or giving it an image without Hydra, is refused before any VM boots.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot, runSymrun } from '../fixtures/symrun-env.js';
import { startRingJob, type RingJob } from '../fixtures/ring-job.js';

need('mpicc.mpich', 'libmpich-dev');
need('mpiexec.hydra', 'mpich');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-mpich-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
execFileSync('mpicc.mpich', ['-O2', '-o', path.join(work, 'ring-mpich'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
const stopFile = path.join(work, 'stop');
const STOP_MS = 120_000;
type T = Parameters<Parameters<typeof t.test>[0]>[0];

/** Each guest's processes (state, kernel wait channel, command) and its TCP sockets with queued bytes. */
async function guestState(job: RingJob): Promise<string> {
  const script = 'for d in /proc/[0-9]*; do c=$(tr "\\0" " " < $d/cmdline 2>/dev/null | cut -c1-160); [ -n "$c" ] || continue; '
    + 'echo "$(basename $d) $(cut -d" " -f3 $d/stat) $(cat $d/wchan 2>/dev/null) $c"; done; '
    + 'echo "tcp (local remote tx:rx queue, non-empty):"; awk \'NR>1 && $5!="00000000:00000000" {print $2, $3, $5}\' /proc/net/tcp';
  const out: string[] = [];
  for (const vm of ['vm1', 'vm2', 'vm3']) {
    const r = await job.sym(['exec', vm, '--', 'sh', '-c', script], 30_000).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
    out.push(`--- ${vm} (pid state wchan command):\n${r.stdout}${r.stderr}`);
  }
  return out.join('\n');
}

/**
 * Stop the ring (stop file in vm1) and check the answer. The ranks finish within seconds of the stop
 * file; a job still running after STOP_MS hangs (the MPI_Finalize hang of docs/mpi.md): fail now, with
 * each guest's processes and socket queues.
 */
async function stopAndCheck(t: T, job: RingJob, ranks: number): Promise<boolean> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([job.stop(), new Promise<undefined>((r) => { timer = setTimeout(() => r(undefined), STOP_MS); })]);
  clearTimeout(timer); // a pending 120 s timer would keep the test process alive after it passed
  if (!stopped) {
    const dump = await guestState(job);
    job.kill();
    t.fail(`the job did not exit within ${STOP_MS / 1000} s after the stop file was made (a hang at MPI_Finalize?)\n${dump}\nstdout: ${job.stdout().slice(-1500)}\nstderr: ${job.stderr().slice(-2000)}`);
    return false;
  }
  const { touch, code } = stopped;
  t.comment(`stop file to exit: ${Date.now() - t0} ms`);
  t.equal(touch.code, 0, `exec touch: ${touch.stdout}${touch.stderr}`);
  t.equal(code, 0, `symrun exit 0\n${job.stderr().slice(-3000)}`);
  t.match(job.stdout(), new RegExp(`ring OK: ranks=${ranks} `), 'the checksum over every message is right');
  return true;
}

t.test('--mpi openmpi for an MPICH program: a usage error naming the field, before any VM boots', async (t) => {
  const r = await runSymrun(['--local', '3', '--mpi', 'openmpi', '--', './ring-mpich', '5'], { cwd: work, timeoutMs: 60_000 });
  t.equal(r.code, 2, 'exit 2 (usage)');
  t.match(r.stderr, /linked against MPICH \(libmpich\.so\.12\), but mpi\.implementation \(--mpi\) is openmpi/);
  t.match(r.stderr, /field: mpi\.implementation \(--mpi\)/);
  t.match(r.stderr, /--mpi mpich or --mpi auto/, 'the fix');
  t.match(r.stderr, /ESYM_MPI_MISMATCH/);
  t.notMatch(r.stderr, /booting/, 'no VM booted');
});

t.test('an image without Hydra (the Open MPI image given as image: DIR): ESYM_MPI_MISSING naming image, before any VM boots', async (t) => {
  const b = await runSymrun(['image', 'build', '--json'], { cwd: work, timeoutMs: 300_000 });
  t.equal(b.code, 0, `image build: ${b.stderr}`);
  const dir = (JSON.parse(b.stdout) as { dir: string }).dir;
  const r = await runSymrun(['--local', '3', '--accel', 'tcg', '--image', dir, '--', './ring-mpich', '5'], { cwd: work, timeoutMs: 120_000 });
  t.equal(r.code, 3, 'exit 3 (a missing part)');
  t.match(r.stderr, /needs MPICH, but the guest image .* has no \/usr\/bin\/mpiexec\.hydra/);
  t.match(r.stderr, /field: image/);
  t.match(r.stderr, /image: auto/, 'the fix');
  t.match(r.stderr, /ESYM_MPI_MISSING/);
  t.notMatch(r.stderr, /booting/, 'no VM booted');
});

t.test('an MPICH ring on 3 VMs: real ranks, a live migration mid-run, the right checksum', async (t) => {
  const job = await startRingJob({ cwd: work, program: './ring-mpich', symrunArgs: ['--local', '3', '--spares', '1'], stopFile });
  t.teardown(() => job.kill());
  t.match(job.stderr(), /ring-mpich is an MPICH program: launching it with MPICH's mpiexec\.hydra/);
  for (const r of [0, 1, 2]) t.match(job.stdout(), new RegExp(`^rank ${r} of 3 on vm${r + 1}$`, 'm'), `rank ${r} of 3 runs in vm${r + 1}`);
  t.notMatch(job.stdout(), /rank 0 of 1\b/, 'no singletons');

  const r = await job.sym(['migrate', 'vm2', '--json']);
  const res = JSON.parse(r.stdout) as { outcome: string; to?: string };
  t.equal(r.code, 0, `migrate vm2 (exit ${r.code}): ${r.stderr.slice(-2000)}`);
  t.equal(res.outcome, 'done');
  const st = JSON.parse((await job.sym(['status', '--json'])).stdout) as { vms: Array<{ name: string; host: string }> };
  t.equal(st.vms.find((v) => v.name === 'vm2')!.host, 'host4', 'vm2 runs on the spare');
  await job.stillRunning('the migration of vm2');

  await stopAndCheck(t, job, 3);
  t.comment(job.stdout().split('\n').filter((l) => /^rank \d+ of|^ring (OK|FAILED)/.test(l)).join('\n'));
});

/** Power off emulated host N of a --local job: everything in its network namespace is SIGKILLed. */
function killHost(jobId: string, n: number): number {
  const pids = spawnSync('ip', ['netns', 'pids', `symrun-${jobId}-h${n}`], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const p of pids) { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }
  return pids.length;
}

t.test('an MPICH ring: a coordinated checkpoint, host2 powered off, the job restarts from the checkpoint on the spare, the right checksum', async (t) => {
  const ckpt = path.join(work, 'ckpt');
  const job = await startRingJob({ cwd: work, program: './ring-mpich', symrunArgs: ['--local', '2', '--spares', '1', '--checkpoint-dir', ckpt], stopFile: path.join(work, 'stop-ckpt') });
  t.teardown(() => job.kill());
  const c = await job.sym(['checkpoint', '--json']);
  t.equal(c.code, 0, `checkpoint taken: ${c.stderr.slice(-1500)}`);
  const name = (JSON.parse(c.stdout) as { name: string }).name;
  const itCkpt = job.iterations();
  await job.stillRunning('the checkpoint');
  const itLost = job.iterations();
  t.ok(killHost(job.id, 2) > 0, 'host2 (vm2) powered off');
  await job.until('the restart from the checkpoint', () => /restarted from /.test(job.stderr()), 300_000);
  t.match(job.stderr(), new RegExp(`restarted from ${name} `), `restarted from ${name}`);
  const st = JSON.parse((await job.sym(['status', '--json'])).stdout) as { vms: Array<{ name: string; host: string }> };
  t.equal(st.vms.find((v) => v.name === 'vm2')!.host, 'host3', 'vm2 restored on the spare');
  await job.stillRunning('the restart');
  t.comment(`checkpoint at iteration ~${itCkpt}, host2 lost at ~${itLost}, now ${job.iterations()}`);
  await stopAndCheck(t, job, 2);
});
