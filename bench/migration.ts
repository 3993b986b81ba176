// Migration benchmark: what a SymVirt migration costs, where the time goes, and what the application sees.
// (A long file on purpose: the four experiments share one run, one machine and one results table, so
// their numbers are comparable side by side; each experiment is one function below.)
// One run, one VM size (symrun's default, 512 MiB / 1 vCPU), one machine:
//
//   (a) phase breakdown of `symrun migrate vm2 --json` (freeze adapter, live mode), R times in one job
//       running ring; median/min/max of each phase and of QEMU's figures (bytes, downtime, throughput)
//   (b) coordination overhead: symrun's end-to-end time minus a bare QEMU-to-QEMU migration of a VM with
//       the same size, the same guest image and the same load during the transfer (an idle guest: with
//       `freeze` every rank is frozen while QEMU copies), same max-bandwidth and downtime-limit
//   (c) the application's longest pause (ring's maxgap_ms): a job migrated R times with --quiesce freeze,
//       one migrated R times with --quiesce failover, and a baseline job that is not migrated
//   (d) a guest dirtying memory faster than a capped bandwidth (memstress, 20 MiB/s): QEMU's defaults
//       (no deadline: give up after a cap, migrate_cancel) vs symrun's deadline policy (deadlineDecision,
//       acted on exactly as the host agent does)
//   (e) plain vs TLS-encrypted migration stream, same guest, same run (bench/migration-tls.ts)
//
// A benchmark, not a test: it asserts nothing about time; it exits non-zero only if a run itself fails.
// Needs root (symrun --local creates network namespaces). JSON on stdout, markdown table on stderr.
//
//   node dist/bench/migration.js [--repeat R] [--parts a,b,c,d] [--json-out FILE] [--md-out FILE] ...
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { repoRoot, runtimeRoot, DEFAULTS } from '../launcher/src/defaults.js';
import { startVm, probeAccel, type VmProcess, type VmSpec } from '../launcher/src/vm/index.js';
import { resolveImage } from '../launcher/src/image/index.js';
import {
  configureMigration, startIncoming, startOutgoing, waitMigration, completeIncoming, cancelMigration, startPostcopy,
  throttleGuest, deadlineDecision, type MigrationProgress, type MigrationTuning, type DeadlineActionKind,
} from '../launcher/src/migration/qemu.js';
import { symrunBin, spawnSymrun, runSymrun } from '../test/fixtures/symrun-env.js';
import { buildMemstressInitramfs, findKernel, parseMemstressLog } from '../test/fixtures/memstress/build.js';
import { tlsVsPlain, tlsSummary, tlsMarkdown, type TlsResult } from './migration-tls.js';

const USAGE = `usage: node dist/bench/migration.js [options]
  --repeat R            migrations per job and bare migrations (default 3): medians over R
  --bare-repeat N       bare QEMU migrations for (b) (default R)
  --parts LIST          any of a,b,c,d,e (default a,b,c,d); a and c share the freeze job
  --tls-memstress-mib N (e) MiB the guest keeps rewriting while it moves plain and TLS (default 16)
  --bandwidth SIZE      (d) bandwidth cap per second, binary units (default 20M = 20 MiB/s)
  --deadline TIME       (d) deadline of the symrun policy (default 30s)
  --deadline-actions L  (d) actions the policy may take, in order (default postcopy,stop-copy)
  --give-up TIME        (d) QEMU defaults: cancel after this without landing (default 60s)
  --memstress-mib N     (d) MiB the guest keeps rewriting (default 150)
  --before FILE         an earlier run's JSON (e.g. the committed bench/results/migration.json, saved
                        before it is overwritten): adds (f), its key figures next to this run's
  --json-out FILE       also write the JSON there
  --md-out FILE         also write the markdown there
  --accel A             auto | kvm | tcg, passed to symrun (default symrun's own, auto); bare VMs use what symrun used
Runs as root (symrun --local). JSON on stdout, markdown table on stderr.`;

const MiB = 1024 * 1024;
const VM = 'vm2';

function fail(msg: string, code = 2): never {
  process.stderr.write(`bench/migration: ${msg}\n`);
  process.exit(code);
}

function say(msg: string): void {
  process.stderr.write(`bench/migration: ${msg}\n`);
}

function parseDuration(v: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v.trim());
  if (!m) fail(`${what} must be a duration like 20s, 1500ms or 2m (got ${v})`);
  const n = Number(m[1]);
  return Math.round(m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000);
}

function parseSize(v: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMG])?$/i.exec(v.trim());
  if (!m) fail(`${what} must be a size like 32M or 1G (got ${v})`);
  const mult = { K: 1024, M: MiB, G: 1024 * MiB }[(m[2] ?? '').toUpperCase() as 'K' | 'M' | 'G'] ?? 1;
  return Math.round(Number(m[1]) * mult);
}

function opts() {
  let v;
  try {
    v = parseArgs({
      options: {
        repeat: { type: 'string', default: '3' },
        'bare-repeat': { type: 'string' },
        parts: { type: 'string', default: 'a,b,c,d' },
        bandwidth: { type: 'string', default: '20M' },
        deadline: { type: 'string', default: '30s' },
        'deadline-actions': { type: 'string', default: 'postcopy,stop-copy' },
        'give-up': { type: 'string', default: '60s' },
        'memstress-mib': { type: 'string', default: '150' },
        'tls-memstress-mib': { type: 'string', default: '16' },
        'json-out': { type: 'string' },
        before: { type: 'string' },
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
  const repeat = Number(v.repeat);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 50) fail(`--repeat must be an integer 1..50 (got ${v.repeat})`);
  const bareRepeat = v['bare-repeat'] === undefined ? repeat : Number(v['bare-repeat']);
  if (!Number.isInteger(bareRepeat) || bareRepeat < 1 || bareRepeat > 50) fail(`--bare-repeat must be an integer 1..50 (got ${v['bare-repeat']})`);
  const parts = new Set(v.parts!.split(',').map((s) => s.trim()).filter(Boolean));
  for (const p of parts) if (!['a', 'b', 'c', 'd', 'e'].includes(p)) fail(`--parts takes a,b,c,d,e (got ${p})`);
  const actions = v['deadline-actions']!.split(',').map((s) => s.trim()).filter(Boolean) as DeadlineActionKind[];
  for (const a of actions) if (!['postcopy', 'throttle', 'stop-copy'].includes(a)) fail(`--deadline-actions takes postcopy, throttle, stop-copy (got ${a})`);
  if (!actions.length) fail('--deadline-actions needs at least one action');
  if (v.accel !== undefined && !['auto', 'kvm', 'tcg'].includes(v.accel)) fail(`--accel must be auto, kvm or tcg (got ${v.accel})`);
  const memstressMiB = Number(v['memstress-mib']);
  if (!Number.isInteger(memstressMiB) || memstressMiB < 8 || memstressMiB > 400) fail(`--memstress-mib must be an integer 8..400 (got ${v['memstress-mib']})`);
  const tlsMemstressMiB = Number(v['tls-memstress-mib']);
  if (!Number.isInteger(tlsMemstressMiB) || tlsMemstressMiB < 8 || tlsMemstressMiB > 400) fail(`--tls-memstress-mib must be an integer 8..400 (got ${v['tls-memstress-mib']})`);
  let before: any;
  if (v.before !== undefined) {
    try { before = JSON.parse(fs.readFileSync(v.before, 'utf8')); } catch (e) { fail(`--before ${v.before}: not a readable JSON file (${(e as Error).message}); give the JSON an earlier run wrote`); }
    if (before?.benchmark !== 'migration' || !before.summary) fail(`--before ${v.before}: not a bench/migration result (no benchmark: migration / summary); give the JSON an earlier run wrote`);
  }
  return {
    repeat, bareRepeat, parts, before,
    bandwidthBytes: parseSize(v.bandwidth!, '--bandwidth'),
    deadlineMs: parseDuration(v.deadline!, '--deadline'),
    deadlineActions: actions,
    giveUpMs: parseDuration(v['give-up']!, '--give-up'),
    memstressMiB, tlsMemstressMiB,
    jsonOut: v['json-out'], mdOut: v['md-out'], accel: v.accel as 'auto' | 'kvm' | 'tcg' | undefined,
  };
}
type Opts = ReturnType<typeof opts>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** p, or 'timeout' after ms; the timer is cleared either way (a pending one would keep node alive). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}
const load1 = () => Number(os.loadavg()[0]!.toFixed(2));

interface Stat { median: number; min: number; max: number; n: number }
function stat(xs: Array<number | undefined | null>): Stat | null {
  const s = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  return { median: Math.round(median), min: Math.round(s[0]!), max: Math.round(s[s.length - 1]!), n: s.length };
}

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString().split('\n')[0]!.trim();
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------------------------------
// symrun jobs running ring

interface Job {
  label: string;
  proc: ChildProcess;
  out: { stdout: string; stderr: string };
  exited: Promise<number | null>;
  id: string;
  accel: 'kvm' | 'tcg';
  memoryMiB: number;
  cpus: number;
  stopFile: string;
  /** performance.now() when ring's first progress line was seen */
  runningAt: number;
}

interface MigrationRun {
  vm: string;
  from?: string;
  to?: string;
  exitCode: number | null;
  outcome?: string;
  error?: string;
  /** wall time of the `symrun migrate` process (CLI start, connect, protocol, print) */
  cliWallMs: number;
  /** the protocol's own total (executor: first phase to result) */
  totalMs?: number;
  phasesMs?: Record<string, number>;
  perform?: { transferredBytes?: number; downtimeMs?: number; throughputMbps?: number; qemuTotalMs?: number; setupMs?: number; dirtySyncs?: number; actions?: string[] };
  actions?: Array<{ action?: string; reason?: string }>;
  /** where finish and reconfigure spent their time (their end events: launcher/src/coordinator/migrate.ts, guest/src/nic.ts) */
  sub?: Record<string, number>;
  /**
   * the application's longest pause around this migration: rank 0's longest time between two ring
   * iterations (ring --gaps), from the migrate call until 200 iterations after it; includes the ring's
   * own --sleep-ms. Undefined when no gap over GAP_MS was printed (the pause was shorter).
   */
  pauseMs?: number;
  loadavg1: number;
}

/** ring prints every time between two iterations longer than this (--gaps) */
const GAP_MS = 100;
const SLEEP_MS = 20;
/** the longest "ring gap G ms" line in a slice of the job's stdout */
function longestGap(out: string): number | undefined {
  const gs = [...out.matchAll(/^ring gap (\d+) ms/gm)].map((m) => Number(m[1]));
  return gs.length ? Math.max(...gs) : undefined;
}

interface JobRun {
  label: string;
  args: string[];
  jobId?: string;
  migrations: MigrationRun[];
  /** ms from ring's first progress line to the stop request */
  windowMs?: number;
  ringLine?: string;
  ringOk?: boolean;
  iterations?: number;
  maxgapMs?: number;
  exitCode?: number | null;
  error?: string;
  loadavg1Before: number;
  loadavg1After?: number;
  /** QEMU command line of vm2 as symrun started it (for (b): same image, same size) */
  vmCmdline?: string[];
}

const iterations = (j: Job) => Number([...j.out.stdout.matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1);

async function until(j: Job, what: string, fn: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end || j.proc.exitCode !== null) {
      throw new Error(`${j.label}: ${what} did not happen within ${ms} ms (job exit ${j.proc.exitCode})\nstdout: ${j.out.stdout.slice(-1500)}\nstderr: ${j.out.stderr.slice(-2500)}`);
    }
    await sleep(200);
  }
}

async function startJob(label: string, work: string, events: string, extra: string[], o: Opts, run: JobRun): Promise<Job> {
  const stopFile = path.join(work, `stop-${label}`);
  const args = ['--local', '3', '--spares', '1', ...(o.accel ? ['--accel', o.accel] : []), ...extra, '--events', events,
    '--', './ring', '1000000', '--progress', '100', '--sleep-ms', String(SLEEP_MS), '--gaps', String(GAP_MS), '--stop-file', stopFile];
  run.args = ['symrun', ...args];
  say(`${label}: symrun ${args.join(' ')}`);
  const proc = spawnSymrun(args, { cwd: work });
  const out = { stdout: '', stderr: '' };
  proc.stdout!.on('data', (d) => (out.stdout += d));
  proc.stderr!.on('data', (d) => (out.stderr += d));
  const exited = new Promise<number | null>((r) => proc.on('close', (c) => r(c)));
  const j: Job = { label, proc, out, exited, id: '', accel: 'tcg', memoryMiB: DEFAULTS.vm.memoryMiB, cpus: DEFAULTS.vm.cpus, stopFile, runningAt: 0 };
  try {
    await until(j, 'first ring iterations', () => /ring iteration 100\b/.test(out.stdout), 600_000);
  } catch (e) {
    await killJob(j);
    throw e;
  }
  j.runningAt = performance.now();
  const m = /job (\w+): booting \d+ VMs \((kvm|tcg), (\d+) MiB, (\d+) vCPU/.exec(out.stderr);
  const id = /job (\w+): booting/.exec(out.stderr)?.[1];
  if (!id) { await killJob(j); throw new Error(`${label}: no "job ID: booting" line on stderr:\n${out.stderr.slice(-1500)}`); }
  j.id = id;
  run.jobId = id;
  if (m) { j.accel = m[2] as 'kvm' | 'tcg'; j.memoryMiB = Number(m[3]); j.cpus = Number(m[4]); }
  return j;
}

async function killJob(j: Job): Promise<void> {
  if (j.proc.exitCode !== null || j.proc.signalCode !== null) return;
  j.proc.kill('SIGTERM'); // symrun tears down its VMs, hosts and namespaces on SIGTERM
  if ((await within(j.exited, 60_000)) === 'timeout') j.proc.kill('SIGKILL');
}

const sym = (j: Job, work: string, args: string[], timeoutMs = 900_000) => runSymrun([args[0]!, '--job', j.id, ...args.slice(1)], { cwd: work, timeoutMs });

async function hostOf(j: Job, work: string, vm: string): Promise<string | undefined> {
  const r = await sym(j, work, ['status', '--json'], 60_000);
  try { return (JSON.parse(r.stdout) as { vms: Array<{ name: string; host: string }> }).vms.find((v) => v.name === vm)?.host; } catch { return undefined; }
}

/** QEMU argv of a VM of the job (from its pid file under the job's runtime directory). */
function vmCmdline(jobId: string, vm: string): string[] | undefined {
  const root = path.join(runtimeRoot(), jobId);
  try {
    for (const host of fs.readdirSync(root)) {
      const pidFile = path.join(root, host, vm, `${vm}.pid`);
      if (!fs.existsSync(pidFile)) continue;
      const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (argv.some((a) => /qemu/.test(a))) return argv;
    }
  } catch { /* not found */ }
  return undefined;
}

async function migrateOnce(j: Job, work: string, vm: string): Promise<MigrationRun> {
  const from = await hostOf(j, work, vm);
  const l = load1();
  const t0 = performance.now();
  const r = await sym(j, work, ['migrate', vm, '--json']);
  const cliWallMs = Math.round(performance.now() - t0);
  const m: MigrationRun = { vm, from, exitCode: r.code, cliWallMs, loadavg1: l };
  let res: any;
  try { res = JSON.parse(r.stdout); } catch {
    m.error = `no JSON from symrun migrate (exit ${r.code}): ${r.stdout.slice(-500)}${r.stderr.slice(-1000)}`;
    return m;
  }
  m.outcome = res.outcome;
  m.totalMs = res.totalMs;
  m.phasesMs = res.phasesMs;
  if (res.error) m.error = `${res.error.phase ?? ''}: ${res.error.message ?? JSON.stringify(res.error)}`;
  const perf = (res.events as Array<{ phase: string; event: string; data?: Record<string, any> }> | undefined)?.find((e) => e.phase === 'perform' && e.event === 'end');
  if (perf?.data) {
    const d = perf.data;
    m.perform = { transferredBytes: d.transferredBytes, downtimeMs: d.downtimeMs, throughputMbps: d.throughputMbps, qemuTotalMs: d.totalTimeMs, setupMs: d.setupTimeMs, dirtySyncs: d.dirtySyncCount, actions: d.actions };
  }
  m.actions = (res.events as Array<{ event: string; data?: Record<string, any> }> | undefined)?.filter((e) => e.event === 'action').map((e) => ({ action: e.data?.action, reason: e.data?.reason }));
  const endOf = (phase: string) => (res.events as Array<{ phase: string; event: string; data?: Record<string, any> }> | undefined)?.find((e) => e.phase === phase && e.event === 'end')?.data;
  const fin = endOf('finish'), rec = endOf('reconfigure');
  const sub: Record<string, number> = {};
  for (const [k, v] of [['finish.incoming', fin?.incomingMs], ['finish.reconnect', fin?.reconnectMs], ['finish.guestReady', fin?.readyMs],
    ['reconfigure.nicAppears', rec?.timing?.appearMs], ['reconfigure.ip', rec?.timing?.ipMs], ['reconfigure.carrier', rec?.timing?.upMs]] as Array<[string, unknown]>) {
    if (typeof v === 'number') sub[k] = v;
  }
  if (Object.keys(sub).length) m.sub = sub;
  m.to = await hostOf(j, work, vm);
  return m;
}

async function stopJob(j: Job, work: string, run: JobRun): Promise<void> {
  run.windowMs = Math.round(performance.now() - j.runningAt);
  const s = await sym(j, work, ['exec', 'vm1', '--', 'touch', j.stopFile], 120_000);
  if (s.code !== 0) throw new Error(`${j.label}: exec touch failed (${s.code}): ${s.stdout}${s.stderr}`);
  const code = await within(j.exited, 300_000);
  if (code === 'timeout') throw new Error(`${j.label}: the job did not exit within 300 s after the stop file`);
  run.exitCode = code;
  const line = /^ring (OK|FAILED): .*$/m.exec(j.out.stdout)?.[0];
  run.ringLine = line;
  run.ringOk = /^ring OK/.test(line ?? '');
  run.iterations = Number(/iterations=(\d+)/.exec(line ?? '')?.[1] ?? NaN);
  const g = /maxgap_ms=(\d+)/.exec(line ?? '')?.[1];
  run.maxgapMs = g === undefined ? undefined : Number(g);
  if (code !== 0 || !run.ringOk) throw new Error(`${j.label}: symrun exit ${code}, ring line: ${line ?? '(none)'}\n${j.out.stderr.slice(-2000)}`);
}

/** One job: R migrations of vm2 (0 for the baseline, which runs for baselineMs instead). */
async function ringJob(label: string, work: string, extra: string[], migrations: number, o: Opts, baselineMs?: number): Promise<JobRun> {
  const run: JobRun = { label, args: [], migrations: [], loadavg1Before: load1() };
  let j: Job | undefined;
  try {
    j = await startJob(label, work, path.join(work, `events-${label}.jsonl`), extra, o, run);
    run.vmCmdline = vmCmdline(j.id, VM);
    await sleep(3000); // let the ring settle after the launch
    for (let i = 1; i <= migrations; i++) {
      say(`${label}: migration ${i}/${migrations} of ${VM}`);
      const mark = j.out.stdout.length;
      const m = await migrateOnce(j, work, VM);
      run.migrations.push(m);
      say(`${label}: ${m.outcome ?? 'no result'} in ${m.totalMs ?? '?'} ms (${m.from} → ${m.to}; cli ${m.cliWallMs} ms)${m.error ? `: ${m.error}` : ''}`);
      if (m.outcome !== 'done') throw new Error(`${label}: migration ${i} ${m.outcome ?? 'failed'}: ${m.error ?? ''}`);
      const before = iterations(j);
      await until(j, `ring progress after migration ${i}`, () => iterations(j!) >= before + 200, 180_000);
      m.pauseMs = longestGap(j.out.stdout.slice(mark));
      if (m.pauseMs !== undefined) say(`${label}: longest pause of the ring around it ${m.pauseMs} ms (QEMU downtime ${m.perform?.downtimeMs ?? '?'} ms)`);
      await sleep(2000);
    }
    if (baselineMs !== undefined) {
      const left = baselineMs - (performance.now() - j.runningAt);
      say(`${label}: no migration; running ${Math.round(Math.max(0, left) / 1000)} s more (same window as the freeze job)`);
      if (left > 0) await sleep(left);
    }
    await stopJob(j, work, run);
    say(`${label}: ${run.ringLine}`);
  } catch (e) {
    run.error = (e as Error).message;
    say(`${label}: FAILED: ${run.error.slice(0, 3000)}`);
    if (j) await killJob(j);
  }
  run.loadavg1After = load1();
  return run;
}

// ---------------------------------------------------------------------------------------------------
// bare QEMU (b) and (d)

function consoleText(vm: VmProcess): string {
  try { return fs.readFileSync(vm.consoleLog, 'utf8'); } catch { return ''; }
}

async function waitConsole(vm: VmProcess, pred: (text: string) => boolean, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (pred(consoleText(vm))) return;
    if (Date.now() > end) throw new Error(`${vm.name}: ${what} not seen within ${timeoutMs} ms; console tail:\n${consoleText(vm).split('\n').slice(-12).join('\n')}`);
    await sleep(200);
  }
}

interface GuestImage { kernel: string; initrd: string; rootfs: string; from: string }

/** The image the symrun job's vm2 ran (from its QEMU command line), else the image symrun would use now. */
async function guestImage(cmdline: string[] | undefined): Promise<GuestImage> {
  if (cmdline) {
    const after = (flag: string) => { const i = cmdline.indexOf(flag); return i >= 0 ? cmdline[i + 1] : undefined; };
    const drive = cmdline.find((a) => /^file=.*,id=root0/.test(a));
    const rootfs = drive ? /^file=((?:[^,]|,,)*)/.exec(drive)?.[1]?.replace(/,,/g, ',') : undefined;
    const kernel = after('-kernel');
    const initrd = after('-initrd');
    if (kernel && initrd && rootfs && [kernel, initrd, rootfs].every((f) => fs.existsSync(f))) return { kernel, initrd, rootfs, from: 'the QEMU command line of the symrun job\'s vm2' };
  }
  const img = await resolveImage('auto');
  return { kernel: img.kernel, initrd: img.initrd, rootfs: img.rootfs, from: `resolveImage('auto') (${img.dir})` };
}

interface VmShape { accel: 'kvm' | 'tcg'; memoryMiB: number; cpus: number }

interface BareRun {
  /** migrate command to the source's `completed` */
  migrateToCompletedMs: number;
  /** migrate command to the destination running (completeIncoming) */
  migrateToDstRunningMs: number;
  /** destination QEMU start (-incoming defer) + configure + migrate-incoming */
  dstStartMs: number;
  qemuTotalMs?: number;
  setupMs?: number;
  downtimeMs?: number;
  transferredBytes: number;
  throughputMbps?: number;
  dirtySyncs?: number;
  dstRunState: string;
  loadavg1: number;
}

interface BareResult {
  image?: GuestImage;
  shape?: VmShape;
  tuning?: MigrationTuning;
  bootMs?: number;
  runs: BareRun[];
  error?: string;
}

/** (b): boot the guest image idle (no NIC: symrun unplugs it before perform), then ping-pong N migrations. */
async function bareMigrations(top: string, shape: VmShape, cmdline: string[] | undefined, n: number): Promise<BareResult> {
  const res: BareResult = { runs: [], shape };
  const vms: VmProcess[] = [];
  try {
    const image = await guestImage(cmdline);
    res.image = image;
    const dir = fs.mkdtempSync(path.join(top, 'bare-'));
    const spec = (name: string, incoming?: 'defer'): VmSpec => {
      const runDir = path.join(dir, name);
      fs.mkdirSync(runDir, { recursive: true });
      return {
        name, runDir, accel: shape.accel, memoryMiB: shape.memoryMiB, cpus: shape.cpus, machine: DEFAULTS.vm.machine,
        kernel: image.kernel, initrd: image.initrd, rootfs: image.rootfs,
        append: `console=ttyS0 root=/dev/vda ro quiet panic=-1 symrun.hostname=${VM}`,
        agentSocket: path.join(runDir, 'agent.sock'), agentPortName: DEFAULTS.agent.portName,
        rootPorts: DEFAULTS.interconnect.rootPorts, extraArgs: [], ...(incoming ? { incoming } : {}),
      };
    };
    // same tuning as symrun's migrate without options: migration.maxBandwidth and downtimeLimitMs defaults
    const tuning: MigrationTuning = { maxBandwidthBytes: DEFAULTS.migration.maxBandwidthBytes, downtimeLimitMs: DEFAULTS.migration.downtimeLimitMs };
    res.tuning = tuning;
    const t0 = performance.now();
    let src = await startVm(spec('bare0'));
    vms.push(src);
    await waitConsole(src, (s) => /symrun-agent: started/.test(s), 'the guest agent starting', 300_000);
    res.bootMs = Math.round(performance.now() - t0);
    say(`bare: guest image booted in ${res.bootMs} ms; settling 5 s`);
    await sleep(5000);
    for (let i = 1; i <= n; i++) {
      const l = load1();
      const td = performance.now();
      const dst = await startVm(spec(`bare${i}`, 'defer'));
      vms.push(dst);
      await configureMigration(src.qmp, tuning, 'src');
      await configureMigration(dst.qmp, tuning, 'dst');
      const uri = await startIncoming(dst.qmp, 'tcp:127.0.0.1:0');
      const dstStartMs = Math.round(performance.now() - td);
      const t1 = performance.now();
      await startOutgoing(src.qmp, uri);
      const fin = await waitMigration(src.qmp, { intervalMs: DEFAULTS.migration.pollIntervalMs, timeoutMs: 600_000 });
      const migrateToCompletedMs = Math.round(performance.now() - t1);
      const inc = await completeIncoming(dst.qmp, { resume: true, timeoutMs: 120_000 });
      const migrateToDstRunningMs = Math.round(performance.now() - t1);
      const r: BareRun = {
        migrateToCompletedMs, migrateToDstRunningMs, dstStartMs, qemuTotalMs: fin.totalTimeMs, setupMs: fin.setupTimeMs, downtimeMs: fin.downtimeMs,
        transferredBytes: fin.transferredBytes, throughputMbps: fin.throughputMbps, dirtySyncs: fin.dirtySyncCount, dstRunState: inc.runState, loadavg1: l,
      };
      res.runs.push(r);
      say(`bare: migration ${i}/${n}: migrate→completed ${migrateToCompletedMs} ms, →destination running ${migrateToDstRunningMs} ms, ${(r.transferredBytes / MiB).toFixed(1)} MiB, downtime ${r.downtimeMs} ms`);
      await src.stop({ graceMs: 1000 });
      src = dst;
      await sleep(3000);
    }
  } catch (e) {
    res.error = (e as Error).message;
    say(`bare: FAILED: ${res.error}`);
  } finally {
    await Promise.all(vms.map((v) => v.stop({ graceMs: 1000 }).catch(() => undefined)));
  }
  return res;
}

interface NonConvCase {
  policy: string;
  landed: boolean;
  /** migrate command to the destination running, if it landed */
  timeToLandMs?: number;
  /** when we gave up (migrate_cancel), if it did not land */
  gaveUpAtMs?: number;
  statusAfterCancel?: string;
  cancelMs?: number;
  actions: Array<{ kind: string; atMs: number; reason: string; percent?: number; projectedFinishMs?: number; projectedWithActionMs?: number }>;
  finalStatus?: string;
  transferredBytes?: number;
  remainingBytesAtEnd?: number;
  downtimeMs?: number;
  expectedDowntimeMsAtEnd?: number;
  maxDirtyRateBytesPerSec?: number;
  dirtySyncs?: number;
  postcopyRequests?: number;
  /** stop-copy: from `stop` to the destination running (only when no postcopy switch came first) */
  guestPausedMs?: number;
  /** a stop-copy was taken right after postcopy (before QEMU left `active`): the guest runs on the destination anyway */
  stopAfterPostcopy?: boolean;
  /** the destination was paused after the transfer and needed `cont` (the source had been stopped) */
  dstNeededCont?: boolean;
  /** memstress after the move (or on the source after the cancel): generations checked, corrupt pages */
  memstress?: { gensAfter: number; corrupt: number; failedGens: number };
  loadavg1: number;
  error?: string;
}

interface NonConvResult {
  shape?: VmShape;
  bandwidthBytes: number;
  memstressMiB: number;
  deadlineMs: number;
  giveUpMs: number;
  bootMs?: number;
  cases: NonConvCase[];
  error?: string;
}

/** (d): memstress guest, bandwidth capped below its dirty rate; QEMU defaults, then symrun's deadline policy. */
async function nonConverging(top: string, shape: VmShape, o: Opts): Promise<NonConvResult> {
  const res: NonConvResult = { shape, bandwidthBytes: o.bandwidthBytes, memstressMiB: o.memstressMiB, deadlineMs: o.deadlineMs, giveUpMs: o.giveUpMs, cases: [] };
  const vms: VmProcess[] = [];
  try {
    const dir = fs.mkdtempSync(path.join(top, 'nonconv-'));
    const initrd = buildMemstressInitramfs(path.join(dir, 'memstress.cpio'), { sizeMiB: o.memstressMiB });
    const rootfs = path.join(dir, 'root.img');
    fs.writeFileSync(rootfs, Buffer.alloc(MiB));
    const kernel = findKernel();
    const spec = (name: string, incoming?: 'defer'): VmSpec => {
      const runDir = path.join(dir, name);
      fs.mkdirSync(runDir, { recursive: true });
      return {
        name, runDir, accel: shape.accel, memoryMiB: shape.memoryMiB, cpus: shape.cpus, machine: DEFAULTS.vm.machine,
        kernel, initrd, rootfs, append: 'console=ttyS0 panic=-1 loglevel=4',
        agentSocket: path.join(runDir, 'agent.sock'), agentPortName: DEFAULTS.agent.portName, rootPorts: 0, extraArgs: [],
        ...(incoming ? { incoming } : {}),
      };
    };
    const t0 = performance.now();
    const src = await startVm(spec('src'));
    vms.push(src);
    await waitConsole(src, (s) => parseMemstressLog(s).okGens.includes(2), 'MEMSTRESS gen 2 ok', 300_000);
    res.bootMs = Math.round(performance.now() - t0);
    say(`nonconv: memstress guest up (2 generations) in ${res.bootMs} ms`);

    const memstressAfter = async (vm: VmProcess, sinceGen: number) => {
      await waitConsole(vm, (s) => parseMemstressLog(s).okGens.filter((g) => g > sinceGen).length >= 2 || parseMemstressLog(s).corrupt.length > 0, '2 more memstress generations', 120_000).catch(() => undefined);
      const l = parseMemstressLog(consoleText(vm));
      return { gensAfter: l.okGens.filter((g) => g > sinceGen).length, corrupt: l.corrupt.length, failedGens: l.failedGens.length };
    };

    // 1. QEMU defaults: precopy with downtime-limit 300 ms, no postcopy, no throttle, no deadline
    {
      const c: NonConvCase = { policy: 'QEMU defaults (precopy, downtime-limit 300 ms, no deadline)', landed: false, actions: [], loadavg1: load1() };
      res.cases.push(c);
      const dst = await startVm(spec('dst-defaults', 'defer'));
      vms.push(dst);
      const tuning: MigrationTuning = { maxBandwidthBytes: o.bandwidthBytes, downtimeLimitMs: DEFAULTS.migration.downtimeLimitMs };
      await configureMigration(src.qmp, tuning, 'src');
      await configureMigration(dst.qmp, tuning, 'dst');
      const uri = await startIncoming(dst.qmp, 'tcp:127.0.0.1:0');
      let last: MigrationProgress | undefined;
      let maxD = 0;
      const t1 = performance.now();
      say(`nonconv: QEMU defaults at ${(o.bandwidthBytes / MiB).toFixed(0)} MiB/s; giving up after ${o.giveUpMs / 1000} s`);
      await startOutgoing(src.qmp, uri);
      try {
        const fin = await waitMigration(src.qmp, { intervalMs: DEFAULTS.migration.pollIntervalMs, timeoutMs: o.giveUpMs, onProgress: (p) => { last = p; maxD = Math.max(maxD, p.dirtyRateBytesPerSec ?? 0); } });
        await completeIncoming(dst.qmp, { resume: true, timeoutMs: 120_000 });
        c.landed = true;
        c.timeToLandMs = Math.round(performance.now() - t1);
        c.finalStatus = fin.status;
        c.transferredBytes = fin.transferredBytes;
        c.downtimeMs = fin.downtimeMs;
        c.dirtySyncs = fin.dirtySyncCount;
      } catch (e) {
        if ((e as { code?: string }).code !== 'ESYM_MIGRATION_TIMEOUT') throw e;
        c.gaveUpAtMs = Math.round(performance.now() - t1);
        const tc = performance.now();
        const after = await cancelMigration(src.qmp);
        c.cancelMs = Math.round(performance.now() - tc);
        c.statusAfterCancel = after.status;
        c.finalStatus = after.status;
        c.landed = after.status === 'completed';
        const p = last ?? after;
        c.transferredBytes = p.transferredBytes;
        c.remainingBytesAtEnd = p.remainingBytes;
        c.expectedDowntimeMsAtEnd = p.expectedDowntimeMs;
        c.dirtySyncs = p.dirtySyncCount;
      }
      c.maxDirtyRateBytesPerSec = maxD;
      say(`nonconv: QEMU defaults: ${c.landed ? `landed in ${c.timeToLandMs} ms` : `did not land; migrate_cancel after ${c.gaveUpAtMs} ms → ${c.statusAfterCancel}`}; dirty rate up to ${(maxD / MiB).toFixed(0)} MiB/s`);
      await within(dst.exited, 10_000); // QEMU 7.2: a destination whose incoming migration was cancelled exits by itself
      await dst.stop({ graceMs: 1000 }).catch(() => undefined);
      const gen = parseMemstressLog(consoleText(src)).okGens.at(-1) ?? 0;
      if (!c.landed) c.memstress = await memstressAfter(src, gen);
    }

    // 2. symrun's deadline policy, acted on as the host agent does (hostagent.ts mig.action)
    {
      const c: NonConvCase = { policy: `symrun deadline policy (deadline ${o.deadlineMs / 1000} s, actions ${o.deadlineActions.join(' > ')})`, landed: false, actions: [], loadavg1: load1() };
      res.cases.push(c);
      const st = await src.qmp.execute<{ status: string }>('query-status');
      if (st.status !== 'running') throw new Error(`source is ${st.status} after the cancelled migration`);
      const dst = await startVm(spec('dst-deadline', 'defer'));
      vms.push(dst);
      // as coordinator/migrate.ts: postcopy only if allowed (capabilities cannot change mid-migration), throttle needs auto-converge
      const tuning: MigrationTuning = {
        maxBandwidthBytes: o.bandwidthBytes, downtimeLimitMs: DEFAULTS.migration.downtimeLimitMs,
        ...(o.deadlineActions.includes('postcopy') ? { postcopy: true } : {}),
        ...(o.deadlineActions.includes('throttle') ? { autoConverge: true } : {}),
      };
      await configureMigration(src.qmp, tuning, 'src');
      await configureMigration(dst.qmp, tuning, 'dst');
      // the cap models the link: QEMU's max-postcopy-bandwidth (default 0 = unlimited) would let postcopy
      // ignore max-bandwidth, so it gets the same cap
      if (tuning.postcopy) await src.qmp.execute('migrate-set-parameters', { 'max-postcopy-bandwidth': o.bandwidthBytes });
      const allowed = o.deadlineActions.filter((x) => (x !== 'postcopy' || tuning.postcopy) && (x !== 'throttle' || tuning.autoConverge));
      const uri = await startIncoming(dst.qmp, 'tcp:127.0.0.1:0');
      const samples: Array<{ atMs: number; p: MigrationProgress }> = [];
      const taken: string[] = [];
      const acting: Array<Promise<unknown>> = [];
      let stoppedAt: number | undefined;
      let maxD = 0;
      const gen0 = parseMemstressLog(consoleText(src)).okGens.at(-1) ?? 0;
      const t1 = performance.now();
      say(`nonconv: symrun deadline policy at ${(o.bandwidthBytes / MiB).toFixed(0)} MiB/s, deadline ${o.deadlineMs / 1000} s, allowed ${allowed.join(', ')}`);
      await startOutgoing(src.qmp, uri);
      let fin: MigrationProgress | undefined;
      try {
        fin = await waitMigration(src.qmp, {
          intervalMs: DEFAULTS.migration.pollIntervalMs,
          timeoutMs: o.deadlineMs * 3, // as coordinator/migrate.ts gives mig.perform
          onProgress: (p) => {
            const atMs = performance.now() - t1;
            samples.push({ atMs, p });
            maxD = Math.max(maxD, p.dirtyRateBytesPerSec ?? 0);
            const d = deadlineDecision(samples, { deadlineMs: o.deadlineMs, allowed, alreadyTaken: taken, downtimeLimitMs: DEFAULTS.migration.downtimeLimitMs });
            if (d.kind === 'none') return;
            taken.push(d.kind === 'throttle' ? `throttle:${d.percent}` : d.kind);
            c.actions.push({ kind: d.kind, atMs: Math.round(atMs), reason: d.reason, ...(d.kind === 'throttle' ? { percent: d.percent } : {}), projectedFinishMs: Number.isFinite(d.projectedFinishMs) ? Math.round(d.projectedFinishMs!) : undefined, projectedWithActionMs: Number.isFinite(d.projectedWithActionMs) ? Math.round(d.projectedWithActionMs!) : undefined });
            say(`nonconv: deadline policy at ${(atMs / 1000).toFixed(1)} s: ${d.kind}: ${d.reason}`);
            if (d.kind === 'postcopy') acting.push(startPostcopy(src.qmp).catch((e) => say(`postcopy switch failed: ${(e as Error).message}`)));
            else if (d.kind === 'throttle') acting.push(throttleGuest(src.qmp, d.percent).catch((e) => say(`throttle failed: ${(e as Error).message}`)));
            else { stoppedAt = performance.now(); acting.push(src.qmp.execute('stop').catch((e) => say(`stop failed: ${(e as Error).message}`))); }
          },
        });
      } catch (e) {
        c.error = (e as Error).message;
        if ((e as { code?: string }).code === 'ESYM_MIGRATION_TIMEOUT') {
          c.gaveUpAtMs = Math.round(performance.now() - t1);
          const after = await cancelMigration(src.qmp).catch((x) => ({ status: `cancel refused: ${(x as Error).message}` }) as MigrationProgress);
          c.statusAfterCancel = after.status;
        }
      }
      await Promise.all(acting);
      if (fin) {
        const inc = await completeIncoming(dst.qmp, { resume: true, timeoutMs: 120_000 });
        const landedAt = performance.now();
        c.landed = inc.runState === 'running';
        c.dstNeededCont = inc.resumed;
        c.timeToLandMs = Math.round(landedAt - t1);
        const postcopyFirst = c.actions.findIndex((a) => a.kind === 'postcopy') >= 0 && c.actions.findIndex((a) => a.kind === 'postcopy') < c.actions.findIndex((a) => a.kind === 'stop-copy');
        if (stoppedAt !== undefined && !postcopyFirst) c.guestPausedMs = Math.round(landedAt - stoppedAt);
        if (stoppedAt !== undefined && postcopyFirst) c.stopAfterPostcopy = true;
        c.finalStatus = fin.status;
        c.transferredBytes = fin.transferredBytes;
        c.downtimeMs = fin.downtimeMs;
        c.dirtySyncs = fin.dirtySyncCount;
        c.postcopyRequests = fin.postcopyRequests;
        c.memstress = await memstressAfter(dst, gen0);
      }
      c.maxDirtyRateBytesPerSec = maxD;
      say(`nonconv: deadline policy: ${c.landed ? `landed in ${c.timeToLandMs} ms` : 'did not land'} (${c.actions.map((a) => `${a.kind} at ${a.atMs} ms`).join(', ') || 'no action'})`);
    }
  } catch (e) {
    res.error = (e as Error).message;
    say(`nonconv: FAILED: ${res.error}`);
  } finally {
    await Promise.all(vms.map((v) => v.stop({ graceMs: 1000 }).catch(() => undefined)));
  }
  return res;
}

// ---------------------------------------------------------------------------------------------------

const PHASES = ['prepare', 'quiesce', 'unplug', 'perform', 'finish', 'replug', 'reconfigure', 'resume', 'confirm'];

function phaseStats(ms: MigrationRun[]) {
  const ok = ms.filter((m) => m.outcome === 'done' && m.phasesMs);
  const names = [...PHASES, ...new Set(ok.flatMap((m) => Object.keys(m.phasesMs!)).filter((k) => !PHASES.includes(k)))];
  const phases = Object.fromEntries(names.map((p) => [p, stat(ok.map((m) => m.phasesMs![p]))]).filter(([, s]) => s !== null));
  return {
    migrations: ok.length,
    phasesMs: phases as Record<string, Stat>,
    totalMs: stat(ok.map((m) => m.totalMs)),
    cliWallMs: stat(ok.map((m) => m.cliWallMs)),
    /** quiesce through resume: how long ranks are frozen (freeze) */
    quiesceToResumeMs: stat(ok.map((m) => ['quiesce', 'unplug', 'perform', 'finish', 'replug', 'reconfigure', 'resume'].reduce((s, p) => s + (m.phasesMs![p] ?? 0), 0))),
    transferredMiB: stat(ok.map((m) => (m.perform?.transferredBytes ?? NaN) / MiB)),
    downtimeMs: stat(ok.map((m) => m.perform?.downtimeMs)),
    throughputMbps: stat(ok.map((m) => m.perform?.throughputMbps)),
    qemuTotalMs: stat(ok.map((m) => m.perform?.qemuTotalMs)),
    /** the frozen window without the transfer (perform): what symrun itself adds while ranks are frozen */
    frozenBeyondPerformMs: stat(ok.map((m) => ['quiesce', 'unplug', 'finish', 'replug', 'reconfigure', 'resume'].reduce((s, p) => s + (m.phasesMs![p] ?? 0), 0))),
    /** the ring's longest pause around each migration (< GAP_MS counts as GAP_MS: an upper bound) */
    pauseMs: stat(ok.map((m) => m.pauseMs ?? GAP_MS)),
    /** that pause minus QEMU's downtime of the same migration: what switching paths costs beyond it */
    pauseBeyondDowntimeMs: stat(ok.map((m) => (m.perform?.downtimeMs === undefined ? undefined : (m.pauseMs ?? GAP_MS) - m.perform.downtimeMs))),
    subMs: Object.fromEntries([...new Set(ok.flatMap((m) => Object.keys(m.sub ?? {})))].map((k) => [k, stat(ok.map((m) => m.sub?.[k]))]).filter(([, v]) => v !== null)) as Record<string, Stat>,
  };
}

async function main(): Promise<number> {
  const o = opts();
  if (process.getuid?.() !== 0) fail('needs root: symrun --local creates network namespaces, bridges and taps (run it with sudo)', 3);
  for (const [cmd, pkg] of [['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86'], ['gcc', 'gcc'], ['cpio', 'cpio']]) {
    try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); } catch { fail(`${cmd} is missing: run \`bash scripts/setup\` (installs ${pkg})`, 3); }
  }
  const t0 = performance.now();
  const top = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-bench-mig-'));
  const work = path.join(top, 'job'); // the job's cwd (staged into the guests): ring only
  fs.mkdirSync(work);
  const cleanup = () => fs.rmSync(top, { recursive: true, force: true });
  process.once('SIGINT', () => { cleanup(); process.exit(130); });
  try {
    execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
    const R = o.repeat;
    const jobs: Record<string, JobRun> = {};
    let bare: BareResult | undefined;
    let nonconv: NonConvResult | undefined;
    let tls: TlsResult | undefined;
    let shape: VmShape | undefined;

    if (o.parts.has('a') || o.parts.has('c') || o.parts.has('b')) {
      // the freeze job also tells (b) which image, size and accelerator symrun used
      jobs.freeze = await ringJob('freeze', work, [], o.parts.has('a') || o.parts.has('c') ? R : 0, o);
    }
    const fz = jobs.freeze;
    if (fz?.jobId) {
      const m = fz.vmCmdline;
      const accel = m?.[m.indexOf('-accel') + 1];
      shape = { accel: accel === 'kvm' ? 'kvm' : 'tcg', memoryMiB: DEFAULTS.vm.memoryMiB, cpus: DEFAULTS.vm.cpus };
    }
    if (!shape) shape = { accel: (await probeAccel(o.accel ?? 'auto').catch(() => ({ accel: 'tcg' as const }))).accel, memoryMiB: DEFAULTS.vm.memoryMiB, cpus: DEFAULTS.vm.cpus };
    if (o.parts.has('b')) {
      say(`bare: ${o.bareRepeat} QEMU-to-QEMU migrations of an idle ${shape.memoryMiB} MiB guest (${shape.accel})`);
      bare = await bareMigrations(top, shape, fz?.vmCmdline, o.bareRepeat);
    }
    if (o.parts.has('c')) {
      jobs.failover = await ringJob('failover', work, ['--quiesce', 'failover'], R, o);
      jobs.baseline = await ringJob('baseline', work, [], 0, o, fz?.windowMs ?? 60_000);
    }
    if (o.parts.has('d')) nonconv = await nonConverging(top, shape, o);
    if (o.parts.has('e')) tls = await tlsVsPlain(top, { repeat: R, memstressMiB: o.tlsMemstressMiB, memoryMiB: shape.memoryMiB, say });

    // ---- summary ----
    const freezeStats = fz ? phaseStats(fz.migrations) : undefined;
    const failoverStats = jobs.failover ? phaseStats(jobs.failover.migrations) : undefined;
    const bareStats = bare ? {
      migrateToCompletedMs: stat(bare.runs.map((r) => r.migrateToCompletedMs)),
      migrateToDstRunningMs: stat(bare.runs.map((r) => r.migrateToDstRunningMs)),
      dstStartMs: stat(bare.runs.map((r) => r.dstStartMs)),
      qemuTotalMs: stat(bare.runs.map((r) => r.qemuTotalMs)),
      downtimeMs: stat(bare.runs.map((r) => r.downtimeMs)),
      transferredMiB: stat(bare.runs.map((r) => r.transferredBytes / MiB)),
      throughputMbps: stat(bare.runs.map((r) => r.throughputMbps)),
    } : undefined;
    const overhead = freezeStats?.totalMs && bareStats?.migrateToCompletedMs ? {
      /** symrun protocol total (median) - bare migrate→completed (median) */
      totalMinusBareCompletedMs: freezeStats.totalMs.median - bareStats.migrateToCompletedMs.median,
      /** same, against the bare migration up to the destination running */
      totalMinusBareDstRunningMs: freezeStats.totalMs.median - bareStats.migrateToDstRunningMs!.median,
      /** what the user waits for (symrun migrate CLI wall) - bare migrate→completed */
      cliWallMinusBareCompletedMs: freezeStats.cliWallMs!.median - bareStats.migrateToCompletedMs.median,
      /** symrun total minus its own perform phase (the QEMU transfer as symrun ran it) */
      totalMinusOwnPerformMs: freezeStats.totalMs.median - (freezeStats.phasesMs.perform?.median ?? 0),
    } : undefined;
    const maxgap = {
      freeze: jobs.freeze ? { migrations: jobs.freeze.migrations.filter((m) => m.outcome === 'done').length, maxgapMs: jobs.freeze.maxgapMs ?? null, windowMs: jobs.freeze.windowMs ?? null, iterations: jobs.freeze.iterations ?? null } : null,
      failover: jobs.failover ? { migrations: jobs.failover.migrations.filter((m) => m.outcome === 'done').length, maxgapMs: jobs.failover.maxgapMs ?? null, windowMs: jobs.failover.windowMs ?? null, iterations: jobs.failover.iterations ?? null } : null,
      baseline: jobs.baseline ? { migrations: 0, maxgapMs: jobs.baseline.maxgapMs ?? null, windowMs: jobs.baseline.windowMs ?? null, iterations: jobs.baseline.iterations ?? null } : null,
    };
    const failedRuns = Object.values(jobs).filter((j) => j.error).length + (bare?.error ? 1 : 0) + (nonconv?.error ? 1 : 0) + (nonconv?.cases.filter((c) => c.error && c.gaveUpAtMs === undefined).length ?? 0) + (tls?.error ? 1 : 0);
    const result = {
      benchmark: 'migration',
      date: new Date().toISOString(),
      durationS: Math.round((performance.now() - t0) / 1000),
      machine: {
        hostname: os.hostname(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', memGiB: Math.round(os.totalmem() / 2 ** 30),
        kernel: os.release(), loadavg1: load1(), node: process.version,
        qemu: version('qemu-system-x86_64', ['--version']), mpirun: version('mpirun', ['--version']), accel: shape.accel,
      },
      params: {
        repeat: R, bareRepeat: o.bareRepeat, parts: [...o.parts].sort(), vm: VM, vmShape: shape,
        program: `test/fixtures/mpi/ring.c: ./ring 1000000 --progress 100 --sleep-ms ${SLEEP_MS} --gaps ${GAP_MS} --stop-file F (3 ranks, one VM each, + 1 spare host)`,
        migrate: 'symrun migrate vm2 --job ID --json (to the free spare: host2 → host4 → host2 …; live mode, config defaults: maxBandwidth 10G, downtime-limit 300 ms)',
        bareTuning: bare?.tuning, bareImage: bare?.image?.from,
        nonconv: { bandwidthBytesPerSec: o.bandwidthBytes, memstressMiB: o.memstressMiB, deadlineMs: o.deadlineMs, deadlineActions: o.deadlineActions, giveUpMs: o.giveUpMs, postcopyBandwidthCapped: true },
        tls: { memstressMiB: o.tlsMemstressMiB },
        symrun: symrunBin,
      },
      summary: { phases: { freeze: freezeStats, failover: failoverStats }, bare: bareStats, overhead, maxgap, nonconv: nonconv?.cases.map((c) => ({ policy: c.policy, landed: c.landed, timeToLandMs: c.timeToLandMs ?? null, gaveUpAtMs: c.gaveUpAtMs ?? null, actions: c.actions.map((a) => `${a.kind}${a.percent ? `:${a.percent}` : ''}@${a.atMs}ms`) })), tls: tls ? tlsSummary(tls) : undefined },
      before: o.before ? { date: o.before.date, loadavg1: o.before.machine?.loadavg1, summary: o.before.summary } : undefined,
      runs: { jobs, bare, nonconv, tls },
      failedRuns,
    };
    const md = markdown(result);
    const json = JSON.stringify(result, null, 2) + '\n';
    fs.writeSync(1, json);
    process.stderr.write('\n' + md);
    if (o.jsonOut) fs.writeFileSync(o.jsonOut, json);
    if (o.mdOut) fs.writeFileSync(o.mdOut, md);
    return failedRuns ? 1 : 0;
  } finally {
    cleanup();
  }
}

// ---------------------------------------------------------------------------------------------------

const s1 = (ms: number | null | undefined) => (ms === null || ms === undefined || !Number.isFinite(ms) ? 'n/a' : (ms / 1000).toFixed(2));
const rng = (s: Stat | null | undefined, f: (x: number) => string = (x) => String(x)) => (!s ? 'n/a' : s.n > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median));
const msS = (s: Stat | null | undefined) => rng(s);
const mib = (b: number | undefined) => (b === undefined ? 'n/a' : (b / MiB).toFixed(0));

function markdown(r: any): string {
  const L: string[] = [];
  const m = r.machine;
  const sum = r.summary;
  L.push('# Migration: phases, coordination overhead, application pause, non-converging guest', '');
  L.push(`${r.date}; ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, Linux ${m.kernel}, load ${m.loadavg1} at the end; ${m.qemu}; ${m.mpirun}; accelerator: ${m.accel}. Whole run: ${r.durationS} s.`);
  L.push(`VM: ${r.params.vmShape.memoryMiB} MiB, ${r.params.vmShape.cpus} vCPU (symrun's default), everywhere. ${r.params.repeat > 1 ? `Median of ${r.params.repeat} migrations (min–max)` : 'One migration'} per job; ${r.params.bareRepeat} bare migrations.`, '');

  const fz = sum.phases.freeze;
  const fo = sum.phases.failover;
  const parts: string[] = r.params.parts;
  if ((fz || fo) && parts.includes('a')) {
    L.push(`## (a) Phases of \`symrun migrate ${r.params.vm} --json\` (live mode; ms)`, '');
    L.push('| phase | freeze | failover |', '|---|---:|---:|');
    const names: string[] = [...new Set([...Object.keys(fz?.phasesMs ?? {}), ...Object.keys(fo?.phasesMs ?? {})])];
    for (const p of names) L.push(`| ${p} | ${msS(fz?.phasesMs?.[p])} | ${msS(fo?.phasesMs?.[p])} |`);
    L.push(`| **total** (protocol, result.totalMs) | **${msS(fz?.totalMs)}** | **${msS(fo?.totalMs)}** |`);
    L.push(`| \`symrun migrate\` wall (CLI process) | ${msS(fz?.cliWallMs)} | ${msS(fo?.cliWallMs)} |`);
    L.push(`| quiesce → resume (ranks frozen with freeze) | ${msS(fz?.quiesceToResumeMs)} | ${msS(fo?.quiesceToResumeMs)} |`);
    L.push(`| quiesce → resume without perform (symrun's share of the frozen window) | ${msS(fz?.frozenBeyondPerformMs)} | ${msS(fo?.frozenBeyondPerformMs)} |`);
    for (const k of [...new Set([...Object.keys(fz?.subMs ?? {}), ...Object.keys(fo?.subMs ?? {})])]) L.push(`| ${k} | ${msS(fz?.subMs?.[k])} | ${msS(fo?.subMs?.[k])} |`);
    L.push(`| perform: QEMU total-time | ${msS(fz?.qemuTotalMs)} | ${msS(fo?.qemuTotalMs)} |`);
    L.push(`| perform: transferred (MiB) | ${msS(fz?.transferredMiB)} | ${msS(fo?.transferredMiB)} |`);
    L.push(`| perform: downtime (ms) | ${msS(fz?.downtimeMs)} | ${msS(fo?.downtimeMs)} |`);
    L.push(`| perform: throughput (Mbit/s) | ${msS(fz?.throughputMbps)} | ${msS(fo?.throughputMbps)} |`, '');
  }
  const b = sum.bare;
  if (b && parts.includes('b')) {
    L.push('## (b) Coordination overhead: symrun vs a bare QEMU migration (ms)', '');
    L.push(`Bare: two QEMUs started here with the same guest image (${r.params.bareImage ?? 'n/a'}), the same size and accelerator, no NIC (symrun unplugs it before perform), idle guest (with \`freeze\` every rank is frozen during perform), max-bandwidth ${r.params.bareTuning ? `${(r.params.bareTuning.maxBandwidthBytes / 2 ** 30).toFixed(0)} GiB/s` : 'n/a'}, downtime-limit ${r.params.bareTuning?.downtimeLimitMs ?? 'n/a'} ms, over 127.0.0.1.`, '');
    L.push('| | ms |', '|---|---:|');
    L.push(`| symrun: protocol total (freeze) | ${msS(fz?.totalMs)} |`);
    L.push(`| symrun: \`symrun migrate\` wall | ${msS(fz?.cliWallMs)} |`);
    L.push(`| symrun: perform phase | ${msS(fz?.phasesMs?.perform)} |`);
    L.push(`| bare: \`migrate\` → source \`completed\` | ${msS(b.migrateToCompletedMs)} |`);
    L.push(`| bare: \`migrate\` → destination running | ${msS(b.migrateToDstRunningMs)} |`);
    L.push(`| bare: destination QEMU start + migrate-incoming (not in the line above) | ${msS(b.dstStartMs)} |`);
    L.push(`| bare: QEMU total-time / downtime | ${msS(b.qemuTotalMs)} / ${msS(b.downtimeMs)} |`);
    L.push(`| transferred MiB: symrun / bare | ${msS(fz?.transferredMiB)} / ${msS(b.transferredMiB)} |`);
    const ov = sum.overhead;
    L.push(`| **overhead = symrun total − bare migrate→completed** | **${ov ? ov.totalMinusBareCompletedMs : 'n/a'}** |`);
    L.push(`| overhead vs bare migrate→destination running | ${ov ? ov.totalMinusBareDstRunningMs : 'n/a'} |`);
    L.push(`| overhead as the user sees it (CLI wall − bare migrate→completed) | ${ov ? ov.cliWallMinusBareCompletedMs : 'n/a'} |`);
    L.push(`| symrun total − its own perform phase | ${ov ? ov.totalMinusOwnPerformMs : 'n/a'} |`, '');
  }
  const g = sum.maxgap;
  if ((g.freeze || g.failover || g.baseline) && parts.includes('c')) {
    L.push('## (c) Longest pause the application sees (ring maxgap_ms, rank 0)', '');
    L.push('| job | migrations of vm2 | ring iterations | window (s) | maxgap (ms) |', '|---|---:|---:|---:|---:|');
    const row = (name: string, x: any) => x && L.push(`| ${name} | ${x.migrations} | ${x.iterations ?? 'n/a'} | ${s1(x.windowMs)} | ${x.maxgapMs ?? 'n/a'} |`);
    row('`--quiesce freeze` (default)', g.freeze);
    row('`--quiesce failover`', g.failover);
    row('no migration (baseline)', g.baseline);
    L.push('', 'Window: from the first `ring iteration 100` line to the stop request; the baseline runs as long as the freeze job.', '');
    if (fz?.pauseMs || fo?.pauseMs) {
      L.push(`Per migration: rank 0's longest time between two iterations from the \`migrate\` call until 200 iterations later (ring \`--gaps ${GAP_MS}\`; it includes the ring's own ${SLEEP_MS} ms sleep; a pause under ${GAP_MS} ms counts as ${GAP_MS}), next to QEMU's downtime of the same migration.`, '');
      L.push('| job | pause (ms) | QEMU downtime (ms) | pause − downtime (ms) |', '|---|---:|---:|---:|');
      if (fz?.pauseMs) L.push(`| \`--quiesce freeze\` | ${msS(fz.pauseMs)} | ${msS(fz.downtimeMs)} | ${msS(fz.pauseBeyondDowntimeMs)} |`);
      if (fo?.pauseMs) L.push(`| \`--quiesce failover\` | ${msS(fo.pauseMs)} | ${msS(fo.downtimeMs)} | ${msS(fo.pauseBeyondDowntimeMs)} |`);
      L.push('');
    }
  }
  if (r.before) {
    const bs = r.before.summary;
    const bfz = bs.phases?.freeze, bfo = bs.phases?.failover;
    L.push(`## (f) Before → after: the run of ${r.before.date} (load ${r.before.loadavg1 ?? 'n/a'} at its end) and this one (medians, ms)`, '');
    L.push('| | before | after |', '|---|---:|---:|');
    const med = (x: Stat | null | undefined) => (x ? String(x.median) : 'n/a');
    const rowBA = (name: string, a: Stat | null | undefined, b: Stat | null | undefined) => L.push(`| ${name} | ${med(a)} | ${med(b)} |`);
    rowBA('freeze: quiesce → resume (ranks frozen)', bfz?.quiesceToResumeMs, fz?.quiesceToResumeMs);
    rowBA('freeze: of which perform (QEMU transfer)', bfz?.phasesMs?.perform, fz?.phasesMs?.perform);
    rowBA('freeze: frozen beyond perform', bfz?.frozenBeyondPerformMs ?? (bfz?.quiesceToResumeMs && bfz?.phasesMs?.perform ? { ...bfz.quiesceToResumeMs, median: bfz.quiesceToResumeMs.median - bfz.phasesMs.perform.median } : null), fz?.frozenBeyondPerformMs);
    for (const p of ['prepare', 'quiesce', 'unplug', 'finish', 'replug', 'reconfigure', 'resume', 'confirm']) rowBA(`freeze: ${p}`, bfz?.phasesMs?.[p], fz?.phasesMs?.[p]);
    rowBA('freeze: protocol total', bfz?.totalMs, fz?.totalMs);
    L.push(`| overhead beyond a bare QEMU migration | ${bs.overhead?.totalMinusBareCompletedMs ?? 'n/a'} | ${sum.overhead?.totalMinusBareCompletedMs ?? 'n/a'} |`);
    rowBA('failover: protocol total', bfo?.totalMs, fo?.totalMs);
    L.push(`| failover: ring maxgap over the job | ${bs.maxgap?.failover?.maxgapMs ?? 'n/a'} | ${g.failover?.maxgapMs ?? 'n/a'} |`);
    L.push(`| no migration: ring maxgap (the machine's own jitter) | ${bs.maxgap?.baseline?.maxgapMs ?? 'n/a'} | ${g.baseline?.maxgapMs ?? 'n/a'} |`, '');
  }
  const nc = r.runs.nonconv;
  if (nc) {
    L.push(`## (d) Non-converging guest: memstress rewriting ${nc.memstressMiB} MiB, bandwidth capped at ${(nc.bandwidthBytes / MiB).toFixed(0)} MiB/s`, '');
    L.push('| policy | landed | time to land (s) | action taken | transferred (MiB) | downtime / guest paused (ms) | dirty rate seen (MiB/s) | memstress after |', '|---|---|---:|---|---:|---|---:|---|');
    for (const c of nc.cases as NonConvCase[]) {
      const act = c.actions.length ? c.actions.map((a) => `${a.kind}${a.percent ? ` ${a.percent}%` : ''} at ${s1(a.atMs)} s`).join(', ') : (c.gaveUpAtMs !== undefined ? `none; migrate_cancel at ${s1(c.gaveUpAtMs)} s → ${c.statusAfterCancel}` : 'none');
      const landed = c.landed ? 'yes' : `**no** (did not land${c.remainingBytesAtEnd !== undefined ? `; ${mib(c.remainingBytesAtEnd)} MiB still dirty` : ''})`;
      const dt = c.landed ? `${c.downtimeMs ?? 'n/a'}${c.guestPausedMs !== undefined ? ` / ${c.guestPausedMs}` : ''}${c.dstNeededCont ? ' (destination paused until `cont`)' : ''}${c.stopAfterPostcopy ? ' (stop came after the postcopy switch: destination running, no `cont` needed)' : ''}` : `expected ${c.expectedDowntimeMsAtEnd ?? 'n/a'}`;
      const ms = c.memstress ? `${c.memstress.gensAfter} gens, ${c.memstress.corrupt} corrupt${c.landed ? ' (destination)' : ' (source)'}` : 'n/a';
      L.push(`| ${c.policy} | ${landed} | ${c.landed ? s1(c.timeToLandMs) : 'n/a'} | ${act} | ${mib(c.transferredBytes)} | ${dt} | ${c.maxDirtyRateBytesPerSec ? (c.maxDirtyRateBytesPerSec / MiB).toFixed(0) : 'n/a'} | ${ms} |`);
    }
    const reasons = (nc.cases as NonConvCase[]).flatMap((c) => c.actions.map((a) => `- ${a.kind}: ${a.reason}`));
    if (reasons.length) L.push('', 'Deadline policy reasons:', '', ...reasons);
    L.push('');
  }
  if (r.runs.tls) L.push(tlsMarkdown(r.runs.tls));
  const errs: string[] = [];
  for (const [k, j] of Object.entries(r.runs.jobs as Record<string, JobRun>)) if (j.error) errs.push(`- job ${k}: ${j.error.split('\n')[0]}`);
  if (r.runs.bare?.error) errs.push(`- bare: ${r.runs.bare.error.split('\n')[0]}`);
  if (r.runs.nonconv?.error) errs.push(`- nonconv: ${r.runs.nonconv.error.split('\n')[0]}`);
  if (errs.length) L.push('## Failures', '', ...errs, '');
  return L.join('\n') + '\n';
}

process.exitCode = await main();
