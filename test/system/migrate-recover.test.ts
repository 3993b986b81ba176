// The coordinator itself is killed (SIGKILL) in the middle of a migration's transfer. Its host agents
// keep the VMs and wait; `symrun recover` takes the job over: it re-attaches to the agents and guests,
// rolls the interrupted migration back from the journal, streams the rest of the job's output, can
// migrate again, and returns the job's exit status. The ring's checksum must still be right.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot, spawnSymrun } from '../fixtures/symrun-env.js';
import { startRingJob } from '../fixtures/ring-job.js';

need('mpicc', 'libopenmpi-dev');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-recover-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
const stopFile = path.join(work, 'stop');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('coordinator killed during perform, then symrun recover', async (t) => {
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', '3', '--spares', '1'], stopFile });
  t.teardown(() => job.kill());
  const { sym } = job;

  const m = await sym(['migrate', 'vm2', '--fault', 'kill-coordinator@perform']);
  t.not(m.code, 0, 'the migrate command loses its job');
  t.match(m.stderr, /closed/);
  const before = job.iterations();

  const rec = spawnSymrun(['recover', '--job', job.id], { cwd: work });
  let out = '';
  let err = '';
  rec.stdout!.on('data', (d) => (out += d));
  rec.stderr!.on('data', (d) => (err += d));
  const recExit = new Promise<number | null>((r) => rec.on('close', (c) => r(c)));
  t.teardown(() => { if (rec.exitCode === null) rec.kill('SIGKILL'); });
  const until = async (what: string, fn: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!fn()) {
      if (Date.now() > end || rec.exitCode !== null) throw new Error(`${what} did not happen within ${ms} ms (recover exit ${rec.exitCode})\n${out.slice(-1500)}\n${err.slice(-3000)}`);
      await sleep(200);
    }
  };
  await until('the interrupted migration rolled back', () => /m\w+ of vm2: rolled-back/.test(err), 180_000);
  t.match(err, /recovering migration \w+ of vm2 \(was in perform\)/, 'recovered from the journal');
  const lastIter = () => Number([...out.matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1);
  await until('ring output through the new coordinator', () => lastIter() > before, 180_000);

  const st = JSON.parse((await sym(['status', '--json'])).stdout);
  t.equal(st.vms.find((v: { name: string }) => v.name === 'vm2').host, 'host2', 'vm2 back on its source');
  t.equal(st.migrations[0].result.outcome, 'rolled-back');

  const again = await sym(['migrate', 'vm2', '--json']);
  t.equal(again.code, 0, `the recovered job migrates again: ${again.stderr.slice(-1500)}`);
  const after = lastIter();
  await until('ring progress after the second migration', () => lastIter() > after, 180_000);

  // Regression (recover hung forever after its job ended): host2, now without a VM, is cut off the
  // network: its agent can never close its connection (no FIN gets through; the namespace is removed
  // at teardown), as when a node's namespace vanishes first. recover must still exit, and say so.
  const st2 = JSON.parse((await sym(['status', '--json'])).stdout);
  const free = st2.hosts.find((h: { role: string }) => h.role === 'spare')?.name as string;
  t.ok(free, `a host without a VM after the move (${JSON.stringify(st2.hosts)})`);
  execFileSync('ip', ['-n', `symrun-${job.id}-h${free.replace(/^host/, '')}`, 'link', 'set', 'up0', 'down']);

  const touch = await sym(['exec', 'vm1', '--', 'touch', stopFile]);
  t.equal(touch.code, 0, touch.stderr);
  const exited = await Promise.race([recExit, sleep(120_000).then(() => 'hang' as const)]);
  t.equal(exited, 0, `recover returns the job's exit status (and does not hang)\n${err.slice(-2000)}`);
  t.match(err, new RegExp(`cut 1 host agent connection that did not close: ${free} `), 'says which connection it had to cut');
  t.match(out, /ring OK: ranks=3 /, 'the checksum over every message is right');
  t.notOk(fs.existsSync(`/run/symrun/${job.id}`), 'run directory removed');
  t.notMatch(execFileSync('ip', ['netns', 'list']).toString(), new RegExp(`symrun-${job.id}-`), 'namespaces removed');
});
