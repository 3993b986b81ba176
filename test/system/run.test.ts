// End to end: `symrun --local N -- ./ring` with real QEMU guests, real Open MPI, real namespaces.
// Never skips: a missing part fails with how to install it.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { symrunEnv } from '../fixtures/symrun-env.js';

const root = repoRoot();
const symrun = path.join(root, 'bin', 'symrun');

function need(cmd: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) throw new Error(`${cmd} is missing: run \`bash scripts/setup\` (installs ${pkg})`);
}
need('mpicc', 'libopenmpi-dev');
need('qemu-system-x86_64', 'qemu-system-x86');
if (process.getuid?.() !== 0) throw new Error('system tests need root (symrun --local creates network namespaces): run as root');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-run-'));
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(root, 'test', 'fixtures', 'mpi', 'ring.c')]);
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }
function run(args: string[], opts: { killAfterLine?: RegExp; killSignal?: NodeJS.Signals; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    // run symrun as a user would: without the test runner's loaders in NODE_OPTIONS
    const env = symrunEnv(opts.env);
    const c = spawn(symrun, args, { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killed = false;
    const check = () => {
      if (!killed && opts.killAfterLine && opts.killAfterLine.test(stdout + stderr)) {
        killed = true;
        c.kill(opts.killSignal ?? 'SIGTERM');
      }
    };
    c.stdout.on('data', (d) => { stdout += d; check(); });
    c.stderr.on('data', (d) => { stderr += d; check(); });
    c.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 }));
  });
}

function leftovers(jobId?: string): string[] {
  const left: string[] = [];
  const ns = execFileSync('ip', ['netns', 'list']).toString();
  for (const l of ns.split('\n')) if (l.startsWith('symrun-') && (!jobId || l.includes(jobId))) left.push(`netns ${l.split(' ')[0]}`);
  const ps = spawnSync('pgrep', ['-af', 'qemu-system-x86_64.*symrun.hostname']).stdout?.toString() ?? '';
  for (const l of ps.split('\n').filter(Boolean)) left.push(`process ${l.slice(0, 80)}`);
  if (jobId && fs.existsSync(`/run/symrun/${jobId}`)) left.push(`run dir /run/symrun/${jobId}`);
  return left;
}

function jobIdOf(r: Run): string | undefined {
  return /"jobId":"([a-z0-9]+)"/.exec(r.stderr)?.[1];
}

t.test('3 VMs: ring across guests, tagged output, results come back, nothing left', async (t) => {
  const r = await run(['--local', '3', '--accel', 'auto', '--tag-output', '--json', '--', './ring', '40', '--out', 'result.txt']);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.slice(-1500)})`);
  t.match(r.stdout, /ring OK: ranks=3 iterations=40/, 'checksum verified by the program');
  for (const vm of ['vm1', 'vm2', 'vm3']) t.match(r.stdout, new RegExp(`\\[${vm},\\d+\\]<stdout>:rank \\d of 3 on ${vm}`), `a rank ran on ${vm} and its line is tagged`);
  t.match(r.stderr, /using TCG/, 'auto ends on TCG here, with a notice');
  t.equal(fs.readFileSync(path.join(work, 'result.txt'), 'utf8').split(' ')[0], 'OK', 'file written by rank 0 in the guest is back on the host');
  const id = jobIdOf(r);
  t.ok(id, 'job id reported in --json summary');
  t.same(leftovers(id), [], 'no namespace, QEMU or run dir left');
});

t.test("exit status is the application's", async (t) => {
  const r = await run(['--local', '2', '--accel', 'tcg', '-q', '--json', '--', './ring', '5', '--exit', '7']);
  t.equal(r.code, 7, `rank exit 7 -> symrun exit 7 (stderr: ${r.stderr.slice(-800)})`);
  t.same(leftovers(jobIdOf(r)), []);
});

t.test('missing program: 127 and a message naming the path, before any VM boots', async (t) => {
  const r = await run(['--local', '2', '--', './no-such-program']);
  t.equal(r.code, 127);
  t.match(r.stderr, /no-such-program/);
  t.notMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
  t.ok(r.ms < 15_000, 'fails fast');
});

t.test('bad input: clear errors with field, value and fix', async (t) => {
  const bad = path.join(work, 'bad.yaml');
  fs.writeFileSync(bad, 'vm:\n  memroy: 1G\n');
  let r = await run(['--config', bad, '--local', '1', '--', './ring']);
  t.equal(r.code, 2);
  t.match(r.stderr, /memroy/);
  t.match(r.stderr, /memory/, 'suggests the right key');
  fs.writeFileSync(bad, 'vm: [1, 2\n');
  r = await run(['--config', bad, '--local', '1', '--', './ring']);
  t.equal(r.code, 2);
  t.match(r.stderr, /bad\.yaml:\d+/, 'YAML error has a position');
  r = await run(['--image', path.join(work, 'no-image'), '--local', '1', '--', './ring']);
  t.not(r.code, 0);
  t.match(r.stderr, /no-image/);
  t.match(r.stderr, /fix:/);
});

t.test('SIGTERM mid-run tears everything down within 10 s', async (t) => {
  const r = await run(['--local', '2', '--accel', 'tcg', '--', './ring', '100000', '--sleep-ms', '50'], { killAfterLine: /rank 1 of 2/ });
  t.equal(r.code, 143, `exit 143 after SIGTERM (stderr: ${r.stderr.slice(-600)})`);
  const m = /nothing left behind/.test(r.stderr);
  t.ok(m, 'says it stopped cleanly');
  t.same(leftovers(), [], 'no namespace or QEMU left');
});

t.test('SIGKILL of symrun, then a new run cleans what the old one left', async (t) => {
  // no grace: host agents stop their VMs as soon as the coordinator is gone (by default they wait
  // 60 s for `symrun recover`, and a new run leaves such a job alone: test/system/migrate-recover)
  const r = await run(['--local', '2', '--accel', 'tcg', '--', './ring', '100000', '--sleep-ms', '50'], { killAfterLine: /rank 1 of 2/, killSignal: 'SIGKILL', env: { SYMRUN_AGENT_GRACE_MS: '0' } });
  t.equal(r.signal, 'SIGKILL');
  // namespaces stay until the next run
  const again = await run(['--local', '1', '--accel', 'tcg', '--', './ring', '3']);
  t.equal(again.code, 0, again.stderr.slice(-800));
  t.match(again.stderr, /removed leftovers of an earlier run/);
  t.same(leftovers(), [], 'nothing of either run is left');
});
