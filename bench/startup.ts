// Startup benchmark: what does running an MPI job inside symrun's VMs cost compared with plain mpirun
// on the same machine, and where does the time go?
//
//   (a) plain `mpirun -np N ./ring 1` on the host
//   (b) `symrun --local N -np N --json -- ./ring 1` (N emulated hosts, one VM each)
//
// For both: wall time from spawn to the first byte a rank prints, and to exit. For symrun, the phase
// breakdown from its --json summary (stderr). A benchmark, not a test: it asserts nothing about time;
// it exits non-zero only if a run itself fails. Needs root (--local creates network namespaces).
//
//   node dist/bench/startup.js [--vms N] [--repeat R] [--json-out FILE] [--md-out FILE]
//
// JSON goes to stdout, the markdown table (and progress) to stderr.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { repoRoot } from '../launcher/src/defaults.js';
import { symrunBin, symrunEnv } from '../test/fixtures/symrun-env.js';

const USAGE = `usage: node dist/bench/startup.js [--vms N] [--repeat R] [--json-out FILE] [--md-out FILE] [--accel auto|kvm|tcg]
  --vms N         VMs (and ranks) for symrun, ranks for plain mpirun (default 3)
  --repeat R      runs of each (default 1); the tables show the median
  --json-out FILE also write the JSON there
  --md-out FILE   also write the markdown there
  --accel A       passed to symrun (default: symrun's own default, auto)
Runs as root (symrun --local). JSON on stdout, markdown table on stderr.`;

interface Timed { exitCode: number | null; signal: string | null; firstOutputMs: number | null; totalMs: number; stderrTail: string; markMs?: number | null }
interface SymrunRun extends Timed {
  jobId?: string;
  /** symrun's own numbers (ms since the job object was created) */
  phasesMs?: Record<string, number>;
  symrunFirstOutputMs?: number;
  /** wall time when the --json summary line arrived on stderr */
  summaryLineMs?: number | null;
  breakdown?: Breakdown;
}
/** Where symrun's time goes (ms). `launch` = end of staging to first rank output. */
interface Breakdown {
  setup: number; image: number; boot: number; agent: number; stage: number; launch: number;
  runRest: number; stageOut: number; teardown: number; process: number; exit: number;
}

const BREAKDOWN_ROWS: Array<[keyof Breakdown, string]> = [
  ['process', 'process start, config, gaps between phases'],
  ['setup', 'set-up: stale cleanup, program closure, emulated hosts'],
  ['image', 'image: resolve/build guest image, probe accelerator'],
  ['boot', 'boot: QEMU start to guest agent answering'],
  ['agent', 'agent: host agents + guest network configuration'],
  ['stage', 'stage: program, libraries and cwd copied into the guests'],
  ['launch', 'launch: mpirun in vm1 to first rank output'],
  ['runRest', 'run: first output to job end'],
  ['stageOut', 'stage-out: results copied back'],
  ['teardown', 'teardown: VMs, hosts, sockets removed'],
  ['exit', 'exit: from the --json summary to process exit'],
];

function fail(msg: string, code = 2): never {
  process.stderr.write(`bench/startup: ${msg}\n`);
  process.exit(code);
}

function opts() {
  let v;
  try {
    v = parseArgs({
      options: {
        vms: { type: 'string', default: '3' },
        repeat: { type: 'string', default: '1' },
        'json-out': { type: 'string' },
        'md-out': { type: 'string' },
        accel: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    fail(`${(e as Error).message}\n${USAGE}`);
  }
  if (v.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  const vms = Number(v.vms);
  const repeat = Number(v.repeat);
  if (!Number.isInteger(vms) || vms < 1 || vms > 64) fail(`--vms must be an integer 1..64 (got ${v.vms})`);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 100) fail(`--repeat must be an integer 1..100 (got ${v.repeat})`);
  if (v.accel !== undefined && !['auto', 'kvm', 'tcg'].includes(v.accel)) fail(`--accel must be auto, kvm or tcg (got ${v.accel})`);
  return { vms, repeat, jsonOut: v['json-out'], mdOut: v['md-out'], accel: v.accel };
}

/** Spawn, time the first stdout byte and the exit. */
function timed(cmd: string, args: string[], o: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number; mark?: RegExp }): Promise<Timed & { stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(cmd, args, { cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let first: number | null = null;
    let mark: number | null = null;
    let stderr = '';
    c.stdout.on('data', () => { if (first === null) first = performance.now() - t0; });
    c.stderr.on('data', (d) => {
      stderr += d;
      if (mark === null && o.mark?.test(stderr)) mark = performance.now() - t0;
    });
    const timer = setTimeout(() => c.kill('SIGKILL'), o.timeoutMs);
    c.on('error', reject);
    c.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      const r = { exitCode, signal, firstOutputMs: first === null ? null : Math.round(first), totalMs: Math.round(performance.now() - t0), stderr, stderrTail: stderr.slice(-1500) };
      resolve(o.mark ? { ...r, markMs: mark === null ? null : Math.round(mark) } : r);
    });
  });
}

const PRE_RUN = ['cleanup-stale', 'image', 'closure', 'hosts', 'agents', 'boot', 'network', 'stage'];

/** wallSummary: when the --json summary line arrived (symrun prints it after teardown, just before exiting) */
function breakdownOf(p: Record<string, number>, symFirst: number | undefined, wallTotal: number, wallSummary: number | null | undefined): Breakdown {
  const g = (k: string) => p[k] ?? 0;
  const preRun = PRE_RUN.reduce((s, k) => s + g(k), 0);
  // symrun counts firstOutputMs from the start of the job; everything before the run phase is sequential
  const launch = symFirst !== undefined ? Math.max(0, symFirst - preRun) : g('run');
  const sum = Object.values(p).reduce((s, v) => s + v, 0);
  const summaryAt = wallSummary ?? wallTotal;
  return {
    setup: g('cleanup-stale') + g('closure') + g('hosts'),
    image: g('image'),
    boot: g('boot'),
    agent: g('agents') + g('network'),
    stage: g('stage'),
    launch,
    runRest: Math.max(0, g('run') - launch),
    stageOut: g('stage-out'),
    teardown: g('teardown'),
    process: Math.max(0, summaryAt - sum),
    exit: Math.max(0, wallTotal - summaryAt),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : Math.round((s[m - 1]! + s[m]!) / 2);
}

const sec = (ms: number | null | undefined) => (ms === null || ms === undefined ? 'n/a' : (ms / 1000).toFixed(2));
const ratio = (a: number | null, b: number | null) => (a && b ? `${(b / a).toFixed(1)}x` : 'n/a');
const range = (xs: number[]) => (xs.length > 1 ? ` (${sec(Math.min(...xs))}–${sec(Math.max(...xs))})` : '');

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString().split('\n')[0]!.trim();
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<number> {
  const o = opts();
  if (process.getuid?.() !== 0) fail('needs root: symrun --local creates network namespaces, bridges and taps (run it with sudo)', 3);
  for (const [cmd, pkg] of [['mpicc', 'libopenmpi-dev'], ['mpirun', 'openmpi-bin'], ['qemu-system-x86_64', 'qemu-system-x86']]) {
    try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); } catch { fail(`${cmd} is missing: run \`bash scripts/setup\` (installs ${pkg})`, 3); }
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-bench-'));
  try {
    execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
    const env = symrunEnv();
    const mpiEnv = { ...env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' };
    const appArgs = ['./ring', '1'];
    const mpirunArgs = ['--oversubscribe', '-np', String(o.vms), ...appArgs];
    const symrunArgs = ['--local', String(o.vms), '-np', String(o.vms), ...(o.accel ? ['--accel', o.accel] : []), '--json', '--', ...appArgs];
    const mpiruns: Timed[] = [];
    const symruns: SymrunRun[] = [];
    let accelNotice = '';
    let failed = 0;
    for (let i = 1; i <= o.repeat; i++) {
      process.stderr.write(`bench/startup: run ${i}/${o.repeat}: mpirun ${mpirunArgs.join(' ')}\n`);
      const m = await timed('mpirun', mpirunArgs, { cwd: work, env: mpiEnv, timeoutMs: 120_000 });
      const { stderr: _m, ...mr } = m;
      mpiruns.push(mr);
      if (m.exitCode !== 0) { failed++; process.stderr.write(`bench/startup: mpirun failed (${m.exitCode ?? m.signal}): ${m.stderrTail}\n`); }

      process.stderr.write(`bench/startup: run ${i}/${o.repeat}: symrun ${symrunArgs.join(' ')}\n`);
      const s = await timed(symrunBin, symrunArgs, { cwd: work, env, timeoutMs: 900_000, mark: /"phasesMs".*\n/ });
      const line = s.stderr.split('\n').find((l) => l.startsWith('{') && l.includes('"phasesMs"'));
      const r: SymrunRun = { exitCode: s.exitCode, signal: s.signal, firstOutputMs: s.firstOutputMs, totalMs: s.totalMs, summaryLineMs: s.markMs ?? null, stderrTail: s.stderrTail };
      accelNotice ||= /^symrun: (.*using (?:TCG|KVM).*)$/m.exec(s.stderr)?.[1] ?? '';
      if (line) {
        const j = JSON.parse(line) as { jobId: string; phasesMs: Record<string, number>; firstOutputMs?: number };
        r.jobId = j.jobId;
        r.phasesMs = j.phasesMs;
        r.symrunFirstOutputMs = j.firstOutputMs;
        r.breakdown = breakdownOf(j.phasesMs, j.firstOutputMs, s.totalMs, s.markMs);
      }
      symruns.push(r);
      if (s.exitCode !== 0 || !line) { failed++; process.stderr.write(`bench/startup: symrun failed (${s.exitCode ?? s.signal}${line ? '' : ', no --json summary'}): ${s.stderrTail}\n`); }
    }

    const okM = mpiruns.filter((r) => r.exitCode === 0);
    const okS = symruns.filter((r) => r.exitCode === 0 && r.breakdown);
    const med = (rs: Timed[], k: 'firstOutputMs' | 'totalMs') => {
      const xs = rs.map((r) => r[k]).filter((x): x is number => typeof x === 'number');
      return xs.length ? median(xs) : null;
    };
    const summary = {
      mpirun: { firstOutputMs: med(okM, 'firstOutputMs'), totalMs: med(okM, 'totalMs') },
      symrun: {
        firstOutputMs: med(okS, 'firstOutputMs'),
        totalMs: med(okS, 'totalMs'),
        breakdownMs: okS.length ? Object.fromEntries(BREAKDOWN_ROWS.map(([k]) => [k, median(okS.map((r) => r.breakdown![k]))])) as unknown as Breakdown : null,
      },
    };
    const result = {
      benchmark: 'startup',
      date: new Date().toISOString(),
      machine: {
        hostname: os.hostname(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', memGiB: Math.round(os.totalmem() / 2 ** 30),
        kernel: os.release(), loadavg1: Number(os.loadavg()[0]!.toFixed(2)), node: process.version,
        qemu: version('qemu-system-x86_64', ['--version']), mpirun: version('mpirun', ['--version']), accel: accelNotice || 'as configured',
      },
      params: { vms: o.vms, ranks: o.vms, repeat: o.repeat, program: 'test/fixtures/mpi/ring.c, 1 iteration', mpirun: ['mpirun', ...mpirunArgs], symrun: ['symrun', ...symrunArgs] },
      summary,
      runs: { mpirun: mpiruns, symrun: symruns },
      failedRuns: failed,
    };
    const md = markdown(result, okM, okS);
    const json = JSON.stringify(result, null, 2) + '\n';
    process.stdout.write(json);
    process.stderr.write('\n' + md);
    if (o.jsonOut) fs.writeFileSync(o.jsonOut, json);
    if (o.mdOut) fs.writeFileSync(o.mdOut, md);
    return failed ? 1 : 0;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function markdown(r: { date: string; machine: Record<string, unknown>; params: { vms: number; repeat: number }; summary: any }, okM: Timed[], okS: SymrunRun[]): string {
  const s = r.summary;
  const m = r.machine;
  const L: string[] = [];
  L.push(`# Startup: symrun --local ${r.params.vms} vs plain mpirun -np ${r.params.vms}`, '');
  L.push(`${r.date}; ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, Linux ${m.kernel}, load ${m.loadavg1} at the end; ${m.qemu}; ${m.mpirun}; accelerator: ${m.accel}.`);
  L.push(`Program: ring.c, 1 iteration, ${r.params.vms} ranks. ${r.params.repeat > 1 ? `Median of ${r.params.repeat} runs (min–max).` : 'One run.'}`, '');
  L.push('| | plain mpirun | symrun | symrun / mpirun |', '|---|---:|---:|---:|');
  const vals = (rs: Timed[], k: 'firstOutputMs' | 'totalMs') => rs.map((x) => x[k]).filter((x): x is number => typeof x === 'number');
  L.push(`| first rank output (s) | ${sec(s.mpirun.firstOutputMs)}${range(vals(okM, 'firstOutputMs'))} | ${sec(s.symrun.firstOutputMs)}${range(vals(okS, 'firstOutputMs'))} | ${ratio(s.mpirun.firstOutputMs, s.symrun.firstOutputMs)} |`);
  L.push(`| total (s) | ${sec(s.mpirun.totalMs)}${range(vals(okM, 'totalMs'))} | ${sec(s.symrun.totalMs)}${range(vals(okS, 'totalMs'))} | ${ratio(s.mpirun.totalMs, s.symrun.totalMs)} |`, '');
  if (s.symrun.breakdownMs) {
    const b = s.symrun.breakdownMs as Breakdown;
    const tot = BREAKDOWN_ROWS.reduce((acc, [k]) => acc + b[k], 0);
    L.push('Where symrun\'s time goes (from its `--json` summary):', '');
    L.push('| phase | s | share |', '|---|---:|---:|');
    for (const [k, label] of BREAKDOWN_ROWS) L.push(`| ${label} | ${sec(b[k])} | ${tot ? ((100 * b[k]) / tot).toFixed(0) : 0}% |`);
    L.push(`| **total** | **${sec(tot)}** | |`, '');
    if (okS.length > 1) L.push('Each row is the median of its own runs, so the rows need not add up to the median total.', '');
  }
  return L.join('\n') + '\n';
}

process.exitCode = await main();
