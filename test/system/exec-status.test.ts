// `symrun status` and `symrun exec` against a running job: real QEMU guests, real Open MPI.
// The job is a gate script that waits (in each guest) for a file the test creates with `symrun exec`,
// then runs the ring: so the job runs exactly as long as the checks need, however slow the machine.
// The job uses a private SYMRUN_RUNTIME_DIR, so `status`/`exec` without --job find exactly this job even
// when other symrun jobs run on the machine. Never skips: a missing part fails with how to install it.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as pty from 'node-pty';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot, runSymrun, spawnSymrun, symrunBin, symrunEnv } from '../fixtures/symrun-env.js';

need('mpicc', 'libopenmpi-dev');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();

const root = repoRoot();
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-es-'));
const runtime = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-es-rt-'));
const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-es-other-'));
const env = { SYMRUN_RUNTIME_DIR: runtime };
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(root, 'test', 'fixtures', 'mpi', 'ring.c')]);
fs.writeFileSync(
  path.join(work, 'gated-ring'),
  `#!/bin/sh
# waits until ./go exists in this guest (the test creates it with symrun exec), then runs the ring;
# gives up after ~10 minutes so a broken exec cannot hang the job forever
n=0
while [ ! -e go ]; do
  n=$((n+1)); [ $n -gt 3000 ] && { echo "gated-ring: no ./go after 10 min" >&2; exit 9; }
  sleep 0.2
done
exec ./ring 20 --out result.txt
`,
  { mode: 0o755 },
);

const sym = (args: string[], o: { cwd?: string; input?: string; extraEnv?: Record<string, string> } = {}) =>
  runSymrun(args, { cwd: o.cwd ?? work, extraEnv: { ...env, ...(o.extraEnv ?? {}) }, input: o.input, timeoutMs: 120_000 });

let job: ReturnType<typeof spawnSymrun> | undefined;
t.teardown(async () => {
  if (job && job.exitCode === null && job.signalCode === null) {
    job.kill('SIGTERM');
    await new Promise((r) => job!.once('close', r));
  }
  for (const d of [work, runtime, elsewhere]) fs.rmSync(d, { recursive: true, force: true });
});

t.test('no job running: status and exec fail with ESYM_NO_JOB and exit 2', async (t) => {
  let r = await sym(['status']);
  t.equal(r.code, 2, 'documented exit status 2 (see symrun status --help)');
  t.match(r.stderr, /no running symrun job/);
  t.match(r.stderr, /fix:.*symrun --local/, 'says how to start one');
  t.notMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
  r = await sym(['status', '--json']);
  t.equal(r.code, 2);
  t.equal(JSON.parse(r.stderr.trim()).error.code, 'ESYM_NO_JOB', 'machine-readable error with --json');
  t.equal(r.stdout, '', 'nothing on stdout');
  r = await sym(['exec', 'vm1', '--', 'true']);
  t.equal(r.code, 2);
  t.match(r.stderr, /no running symrun job/);
  r = await sym(['status', '--job', 'nosuch']);
  t.equal(r.code, 2);
  t.match(r.stderr, /no running symrun job nosuch/);
  const help = await sym(['status', '--help']);
  t.match(help.stdout, /Exit status:.*\n?.*2 if no job is running/, 'the exit status is documented in --help');
});

interface Status { jobId: string; state: string; cwd: string; app: string[]; hosts: Array<{ name: string; role: string; agent: boolean }>; vms: Array<{ name: string; host: string; ip: string; mac: string; state: string; agent: string }> }

t.test('a running job: status, exec (output, exit status, stdin, pty)', async (t) => {
  job = spawnSymrun(['--local', '2', '--json', '--', './gated-ring'], { cwd: work, extraEnv: env });
  let jobOut = '';
  let jobErr = '';
  job.stdout!.on('data', (d) => (jobOut += d));
  job.stderr!.on('data', (d) => (jobErr += d));
  const jobDone = new Promise<number | null>((r) => job!.once('close', (code) => r(code)));

  // wait until the job says it runs (status is polled: this is also the check that it answers early)
  let st: Status | undefined;
  const seen = new Set<string>();
  const deadline = Date.now() + 600_000;
  while (Date.now() < deadline && job.exitCode === null) {
    const r = await sym(['status', '--json']);
    if (r.code === 0) {
      st = JSON.parse(r.stdout) as Status;
      seen.add(st.state);
      if (st.state === 'running') break;
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
  t.equal(st?.state, 'running', `status reports the job running (states seen: ${[...seen].join(', ')}; job stderr: ${jobErr.slice(-1500)})`);
  if (st?.state !== 'running') return;
  t.ok(seen.size >= 1, `states seen while starting: ${[...seen].join(' -> ')}`);

  t.test('status --json: VMs, hosts, state', async (t) => {
    t.match(st!.jobId, /^[a-z0-9]+$/);
    t.equal(st!.cwd, work);
    t.same(st!.app, ['./gated-ring']);
    t.same(st!.vms.map((v) => [v.name, v.host]), [['vm1', 'host1'], ['vm2', 'host2']], 'one VM per emulated host');
    for (const v of st!.vms) {
      t.match(v.ip, /^198\.1[89]\.\d+\.\d+$/, `${v.name} has an address in the job's subnet`);
      t.match(v.mac, /^52:54:(?:[0-9a-f]{2}:){3}[0-9a-f]{2}$/);
      t.match(v.state, /^(ready|running)$/, `${v.name} is up`);
      t.equal(v.agent, 'ready', `${v.name}'s guest agent is connected`);
    }
    t.same(st!.hosts.map((h) => [h.name, h.role, h.agent]), [['host1', 'vm', true], ['host2', 'vm', true]]);
    const byId = await sym(['status', '--json', '--job', st!.jobId]);
    t.equal(byId.code, 0);
    t.equal((JSON.parse(byId.stdout) as Status).jobId, st!.jobId, '--job ID selects the same job');
  });

  t.test('status (text)', async (t) => {
    const r = await sym(['status']);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, new RegExp(`^job ${st!.jobId}: running`, 'm'));
    for (const v of st!.vms) t.match(r.stdout, new RegExp(`^\\s+${v.name}\\s+${v.host}\\s+${v.ip.replace(/\./g, '\\.')}\\s+\\w+\\s+ready$`, 'm'), `a line for ${v.name}`);
  });

  t.test('exec: output, the right VM, exit status', async (t) => {
    const vm2 = st!.vms.find((v) => v.name === 'vm2')!;
    let r = await sym(['exec', 'vm2', '--', 'cat', '/proc/cpuinfo']);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /^processor\s*:\s*0$/m, 'the guest CPU list');
    r = await sym(['exec', 'vm2', '--', 'ip', 'addr']);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, `inet ${vm2.ip}/`, "vm2's interconnect address");
    t.match(r.stdout, `link/ether ${vm2.mac}`);
    r = await sym(['exec', 'vm2', '--', 'hostname']);
    t.equal(r.stdout.trim(), 'vm2');
    r = await sym(['exec', 'vm1', '--', 'sh', '-c', 'exit 3']);
    t.equal(r.code, 3, 'exit status propagates');
    r = await sym(['exec', 'vm1', '--', 'sh', '-c', 'echo to-out; echo to-err >&2; exit 0']);
    t.equal(r.code, 0);
    t.equal(r.stdout, 'to-out\n', 'stdout on stdout');
    t.equal(r.stderr, 'to-err\n', 'stderr on stderr');
    r = await sym(['exec', 'vm1', '--', 'sh', '-c', 'kill -9 $$']);
    t.equal(r.code, 137, 'killed by SIGKILL -> 128+9');
    r = await sym(['exec', 'vm1', '--', 'no-such-command-x']);
    t.equal(r.code, 127, 'not found -> 127');
    t.match(r.stderr, /no-such-command-x/, 'and says which');
    r = await sym(['exec', 'vm9', '--', 'true']);
    t.equal(r.code, 2, 'unknown VM is a usage error');
    t.match(r.stderr, /no VM named vm9/);
    t.match(r.stderr, /vm1, vm2/, 'lists the VMs');
    r = await sym(['exec', 'vm1']);
    t.equal(r.code, 2, 'no command');
  });

  t.test('exec: working directory and stdin', async (t) => {
    let r = await sym(['exec', 'vm1', '--', 'pwd']);
    t.equal(r.stdout.trim(), work, "inside the job's directory, the command runs there (staged into the guest)");
    r = await sym(['exec', 'vm1', '--', 'ls']);
    t.match(r.stdout, /^ring$/m, "the job's files are there");
    r = await sym(['exec', 'vm1', '--', 'pwd'], { cwd: elsewhere });
    t.equal(r.code, 0, `from a directory the guests do not have, it still runs (${r.stderr})`);
    t.equal(r.stdout.trim(), '/', 'in /');
    r = await sym(['exec', '-i', 'vm2', '--', 'sh', '-c', 'tr a-z A-Z; echo done'], { input: 'hello from stdin\n' });
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, 'HELLO FROM STDIN\ndone\n', '-i forwards stdin, EOF included');
    r = await sym(['exec', 'vm2', '--', 'cat'], { input: 'ignored\n' });
    t.equal(r.code, 0);
    t.equal(r.stdout, '', 'without -i the command gets EOF on stdin');
  });

  t.test('exec: SIGINT reaches the remote command', async (t) => {
    const c = spawnSymrun(['exec', 'vm2', '--', 'sh', '-c', 'echo started; exec sleep 300'], { cwd: work, extraEnv: env });
    let out = '';
    let err = '';
    const t0 = Date.now();
    c.stdout!.on('data', (d) => {
      out += d;
      if (/started/.test(out)) c.kill('SIGINT');
    });
    c.stderr!.on('data', (d) => (err += d));
    const killer = setTimeout(() => c.kill('SIGKILL'), 120_000);
    const [code, signal] = await new Promise<[number | null, string | null]>((r) => c.once('close', (code, sig) => r([code, sig])));
    clearTimeout(killer);
    t.equal(signal, null, `symrun exec was not killed itself (${err})`);
    t.equal(code, 130, 'the remote sleep died of SIGINT: 128+2');
    t.ok(Date.now() - t0 < 100_000, 'well before sleep 300 would end');
  });

  t.test('exec -it: an interactive shell in a pseudo-terminal', async (t) => {
    const p = pty.spawn(symrunBin, ['exec', '-it', 'vm1', '--', 'sh'], { name: 'xterm', cols: 100, rows: 30, cwd: work, env: symrunEnv(env) as Record<string, string> });
    let out = '';
    const exited = new Promise<{ exitCode: number; signal?: number }>((r) => p.onExit(r));
    const waitFor = (re: RegExp, ms: number) =>
      new Promise<boolean>((resolve) => {
        const t0 = Date.now();
        const iv = setInterval(() => {
          if (re.test(out) || Date.now() - t0 > ms) { clearInterval(iv); resolve(re.test(out)); }
        }, 100);
      });
    p.onData((d) => (out += d));
    t.ok(await waitFor(/# $|\$ $/m, 60_000), `a shell prompt (got ${JSON.stringify(out.slice(-300))})`);
    p.write('echo hi-$((6*7))\n');
    t.ok(await waitFor(/hi-42/, 30_000), `the shell ran the line (only the shell turns $((6*7)) into 42): ${JSON.stringify(out.slice(-300))}`);
    p.write('tty; [ -t 0 ] && echo is-a-tty\n');
    // wait for the command's output, not the terminal's echo of the line (which holds "is-a-tty" too)
    t.ok(await waitFor(/\/dev\/pts\/\d+\s+is-a-tty/, 30_000), `stdin is a terminal in the guest: ${JSON.stringify(out.slice(-300))}`);
    t.match(out, /\/dev\/pts\/\d+/);
    p.write('exit 4\n');
    const timeout = setTimeout(() => p.kill('SIGKILL'), 60_000);
    const e = await exited;
    clearTimeout(timeout);
    t.equal(e.exitCode, 4, 'the shell exit status comes back, and symrun exits once the shell has');
  });

  t.test('the job finishes with exit 0 after the gate opens', async (t) => {
    for (const vm of ['vm1', 'vm2']) {
      const r = await sym(['exec', vm, '--', 'touch', 'go']);
      t.equal(r.code, 0, `opened the gate in ${vm}: ${r.stderr}`);
    }
    const code = await jobDone;
    t.equal(code, 0, `job exit 0 (stderr: ${jobErr.slice(-1500)})`);
    t.match(jobOut, /ring OK: ranks=2 iterations=20/, 'the ring ran, checksum verified');
    t.match(jobOut, /rank 0 of 2 on vm1/);
    t.match(jobOut, /rank 1 of 2 on vm2/);
    t.equal(fs.readFileSync(path.join(work, 'result.txt'), 'utf8').split(' ')[0], 'OK', 'result file came back');
    const summary = JSON.parse(jobErr.split('\n').find((l) => l.includes('"phasesMs"')) ?? '{}') as { jobId?: string; exitCode?: number };
    t.equal(summary.jobId, st!.jobId, 'the job status talked about is the job that ran');
    t.equal(summary.exitCode, 0);
    const after = await sym(['status']);
    t.equal(after.code, 2, 'after the job: no job');
    t.match(after.stderr, /no running symrun job/);
  });
});
