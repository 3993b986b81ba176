// Chaos soak: one long-running MPI job (test/fixtures/mpi/ring.c: every rank checks a checksum over every
// message it received) on `symrun --local N --spares S`, and for M minutes a seeded random stream of
// operations against it: migrations in every mode and quiesce adapter, cancels mid-transfer,
// checkpoints, and real faults at random phases (bench/soak-plan.ts has the table): destination QEMU
// killed, device_add refused, a guest agent that does not answer quiesce, a wrong TLS key, a checkpoint
// save that fails, a checkpoint into a full file system, the coordinator SIGKILLed in a migration or a
// checkpoint (then `symrun recover` takes the job over), an emulated host powered off (the job restarts
// from its last checkpoint on a spare).
//
// After every operation the soak checks, from outside, what an operator would: the job is still there
// and its ring still progresses; every VM answers (none paused); exactly one QEMU per VM in the job's
// hosts (none left by a rollback); nothing left in the full file system. Before the end: every operation
// in the job's journal ended (done or rolled back; never rollback-failed or unfinished; degraded only for
// a refused device_add whose VM the return trip moved back: journalUnexplained in the plan). At the
// end: the ring's own checksum is right (`ring OK`), the job exits 0, and no QEMU, namespace or run
// directory of the job is left. Every violation is recorded with the operation that preceded it and
// the seed that replays the run.
//
//   npm run soak -- [--minutes M] [--seed S] [--vms N] [--spares S] [--json] [--out DIR | --no-write]
//
// Writes DIR/soak.json and DIR/soak.md (default bench/results). Exit 0 only with no violation.
// Needs root (symrun --local makes network namespaces), qemu-system-x86, Open MPI's mpicc.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { repoRoot, runtimeRoot } from '../launcher/src/defaults.js';
import { readJournal } from '../launcher/src/protocol/journal.js';
import { cleanupJob } from '../launcher/src/local/cluster.js';
import { spawnSymrun, runSymrun, type SymrunRun } from '../test/fixtures/symrun-env.js';
import { SOAK_OPS, draw, journalUnexplained, rng, summarize, soakMarkdown, type JournalOp, type OpRecord, type OpSpec, type SoakState } from './soak-plan.js';

const { values: o } = parseArgs({
  options: {
    minutes: { type: 'string', default: '3' },
    seed: { type: 'string' },
    vms: { type: 'string', default: '3' },
    spares: { type: 'string', default: '2' },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
  },
});

function usage(field: string, value: unknown, fix: string): never {
  process.stderr.write(`soak: ${field} ${JSON.stringify(value)} is not valid: ${fix}\n`);
  process.exit(2);
}
const minutes = Number(o.minutes);
if (!(minutes > 0 && minutes <= 24 * 60)) usage('--minutes', o.minutes, 'give the soak time in minutes, e.g. --minutes 20');
const seed = o.seed === undefined ? (Date.now() % 1_000_000) : Number(o.seed);
if (!Number.isInteger(seed) || seed < 0) usage('--seed', o.seed, 'give a whole number (the seed a report printed)');
const nVms = Number(o.vms);
if (!Number.isInteger(nVms) || nVms < 2 || nVms > 8) usage('--vms', o.vms, 'between 2 and 8 VMs');
const nSpares = Number(o.spares);
if (!Number.isInteger(nSpares) || nSpares < 1 || nSpares > 4) usage('--spares', o.spares, 'between 1 and 4 spare hosts (migrations need one free host)');
if (process.getuid?.() !== 0) { process.stderr.write('soak: needs root (symrun --local creates network namespaces): run as root\n'); process.exit(2); }
for (const [cmd, pkg] of [['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86']]) {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) { process.stderr.write(`soak: ${cmd} is missing: run \`bash scripts/setup\` (installs ${pkg})\n`); process.exit(2); }
}

const say = (s: string) => process.stderr.write(`soak: ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sec = (ms: number) => Math.round(ms / 100) / 10;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-soak-'));
const ckpt = path.join(work, 'ckpt');
const full = path.join(work, 'full');
const stopFile = path.join(work, 'stop');
const events = path.join(work, 'events.jsonl');
fs.mkdirSync(ckpt);
fs.mkdirSync(full);
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
// failover needs the standby NIC at boot (migration.quiesce: failover); hooks need their commands
fs.writeFileSync(path.join(work, 'symrun.yaml'), [
  'migration:',
  '  quiesce: failover',
  '  hooks:',
  '    quiesce: "echo quiesce >> /run/symrun/hooks.log"',
  '    resume: "echo resume >> /run/symrun/hooks.log"',
  'checkpoint:',
  '  keep: 2',
  '',
].join('\n'));
// a 1 MiB file system: a checkpoint into it fails with ENOSPC in the save
execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'symrun-soak-full', full]);

/** the job's coordinator: the run at first, then each `symrun recover` that takes it over */
interface Coordinator { proc: ChildProcess; err: string; exit: Promise<number | null> }
let ringOut = '';
let coord: Coordinator;
function attach(proc: ChildProcess): Coordinator {
  const c: Coordinator = { proc, err: '', exit: new Promise((r) => proc.on('close', (code) => r(code))) };
  proc.stdout!.on('data', (d) => (ringOut += d));
  proc.stderr!.on('data', (d) => (c.err += d));
  return c;
}
const ringLines = () => (ringOut.match(/ring iteration \d+/g) ?? []).length;

async function until(what: string, fn: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    if (coord.proc.exitCode !== null) return false;
    await sleep(300);
  }
  return false;
}

let jobId = '';
const sym = (args: string[], timeoutMs = 600_000): Promise<SymrunRun> => runSymrun([args[0]!, '--job', jobId, ...args.slice(1)], { cwd: work, timeoutMs });

interface Status { state: string; hosts: Array<{ name: string; role: string }>; vms: Array<{ name: string; host: string; state: string; migrating?: string }>; restarts: { count: number } }
async function status(): Promise<Status | undefined> {
  const r = await sym(['status', '--json'], 60_000);
  try { return JSON.parse(r.stdout) as Status; } catch { return undefined; }
}

const nsOf = (host: string) => `symrun-${jobId}-h${host.replace(/^host/, '')}`;
function qemusIn(ns: string): number {
  const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  return pids.filter((p) => { try { return fs.readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('qemu-system'); } catch { return false; } }).length;
}
function powerOff(host: string): number {
  const pids = spawnSync('ip', ['netns', 'pids', nsOf(host)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const p of pids) { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }
  return pids.length;
}
const parse = (r: SymrunRun): { outcome?: string; op?: string; error?: { message?: string } } | undefined => { try { return JSON.parse(r.stdout); } catch { return undefined; } };
const tail = (s: string, n = 600) => s.slice(-n).replace(/\s+/g, ' ').trim();

/** What an operator checks after an operation; returns the violations. */
async function invariants(state: SoakState, afterFullDisk: boolean): Promise<string[]> {
  const v: string[] = [];
  if (coord.proc.exitCode !== null) return [`the job stopped (exit ${coord.proc.exitCode}): ${tail(coord.err)}`];
  const before = ringLines();
  if (!(await until('ring progress', () => ringLines() >= before + 2, 240_000))) v.push(`the ring made no progress for 240 s (${tail(coord.err, 300)})`);
  const st = await status();
  if (!st) return [...v, 'symrun status --json gave no answer'];
  for (const vm of st.vms) {
    if (vm.migrating) v.push(`${vm.name} still in a migration (${vm.migrating})`);
    if (vm.state !== 'running') v.push(`${vm.name} is ${vm.state}, not running`);
  }
  // every VM answers (a paused VM's guest agent cannot)
  await Promise.all(st.vms.map(async (vm) => {
    const r = await sym(['exec', vm.name, '--', 'true'], 60_000);
    if (r.code !== 0) v.push(`${vm.name} does not answer exec (exit ${r.code}: ${tail(r.stderr, 200)})`);
  }));
  const live = st.hosts.filter((h) => h.role !== 'lost');
  const qemus = live.reduce((a, h) => a + qemusIn(nsOf(h.name)), 0);
  if (qemus !== st.vms.length) v.push(`${qemus} QEMU processes in the job's hosts for ${st.vms.length} VMs`);
  if (afterFullDisk) {
    const left = fs.readdirSync(full);
    if (left.length) v.push(`left in the full file system after the failed checkpoint: ${left.join(', ')}`);
  }
  state.freeHosts = st.hosts.filter((h) => h.role === 'spare').length;
  state.vms = st.vms.map((x) => x.name);
  return v;
}

async function main(): Promise<number> {
  const t0 = Date.now();
  const r = rng(seed);
  say(`seed ${seed}, ${minutes} min, ${nVms} VMs + ${nSpares} spares, work dir ${work}`);
  coord = attach(spawnSymrun(['--config', 'symrun.yaml', '--local', String(nVms), '--spares', String(nSpares), '--checkpoint-dir', ckpt, '--events', events,
    '--', './ring', '1000000', '--progress', '100', '--sleep-ms', '20', '--stop-file', stopFile], { cwd: work }));
  if (!(await until('boot', () => /ring iteration 100\b/.test(ringOut), 600_000))) throw new Error(`the job did not start: ${tail(coord.err, 2000)}`);
  jobId = /job (\w+): booting/.exec(coord.err)![1]!;
  say(`job ${jobId} runs; operations for ${minutes} min`);

  const state: SoakState = { haveCheckpoint: false, freeHosts: nSpares, vms: Array.from({ length: nVms }, (_, i) => `vm${i + 1}`) };
  const records: OpRecord[] = [];
  // M minutes of operations: the clock starts when the ring runs (a TCG boot takes a minute or more)
  const endAt = Date.now() + minutes * 60_000;
  let stopped = false;
  for (let i = 1; Date.now() < endAt && !stopped; i++) {
    const d = draw(r, state);
    const spec: OpSpec = SOAK_OPS[d.name];
    const fault = spec.fault;
    const rec: OpRecord = { i, name: d.name, vm: d.vm, outcome: '?', ms: 0, violations: [], ...(fault ? { fault } : {}) };
    const s0 = Date.now();
    const faultArgs = fault ? ['--fault', fault] : [];
    if (spec.kind === 'migrate') {
      rec.mode = d.mode;
      rec.adapter = d.adapter;
      const m = await sym(['migrate', d.vm, '--mode', d.mode, '--quiesce', d.adapter, '--json', ...faultArgs]);
      const j = parse(m);
      rec.op = (j as { op?: string } | undefined)?.op;
      rec.outcome = j?.outcome ?? `no result (exit ${m.code}): ${tail(m.stderr, 300)}`;
    } else if (spec.kind === 'cancel') {
      rec.adapter = d.adapter;
      const bg = sym(['migrate', d.vm, '--bandwidth', '2M', '--quiesce', d.adapter, '--json']);
      await until('perform', async () => (await status())?.vms.find((x) => x.name === d.vm)?.migrating === 'perform', 120_000);
      await sym(['cancel', d.vm], 60_000);
      const m = await bg;
      const j = parse(m);
      rec.outcome = j?.outcome ?? `no result (exit ${m.code}): ${tail(m.stderr, 300)}`;
    } else if (spec.kind === 'checkpoint' || spec.kind === 'checkpoint-full') {
      const c = await sym(['checkpoint', '--json', ...(spec.kind === 'checkpoint-full' ? ['--dir', full] : []), ...faultArgs]);
      const j = parse(c);
      rec.outcome = j?.outcome ?? `no result (exit ${c.code}): ${tail(c.stderr, 300)}`;
      if (rec.outcome === 'done') state.haveCheckpoint = true;
    } else if (spec.kind === 'coordinator-kill') {
      const cmd = spec.checkpoint ? ['checkpoint', '--json', ...faultArgs] : ['migrate', d.vm, '--quiesce', d.adapter, '--json', ...faultArgs];
      rec.adapter = spec.checkpoint ? undefined : d.adapter;
      const c = await sym(cmd);
      const j = parse(c);
      if (j?.outcome) rec.outcome = `${j.outcome} (the fault did not fire)`;
      else {
        const died = await Promise.race([coord.exit.then(() => true), sleep(60_000).then(() => false)]);
        if (!died) rec.outcome = 'coordinator still alive after its fault';
        else {
          coord = attach(spawnSymrun(['recover', '--job', jobId], { cwd: work }));
          const before = ringLines();
          const ok = await until('recovered', () => ringLines() >= before + 2, 300_000);
          rec.outcome = ok ? 'recovered' : `lost: recover ${coord.proc.exitCode === null ? 'runs but the ring stays silent' : `exited ${coord.proc.exitCode}`}: ${tail(coord.err, 400)}`;
        }
      }
    } else if (spec.kind === 'host-kill') {
      const st = await status();
      const host = st?.vms.find((x) => x.name === d.vm)?.host;
      const count0 = st?.restarts.count ?? 0;
      if (!host) rec.outcome = `no host for ${d.vm}`;
      else {
        rec.vm = `${d.vm} (${host})`;
        powerOff(host);
        const ok = await until('restart', async () => {
          const s = await status();
          return !!s && s.restarts.count > count0 && s.vms.every((x) => x.state === 'running') && !s.vms.some((x) => x.migrating);
        }, 600_000);
        const before = ringLines();
        const moving = ok && (await until('ring after restart', () => ringLines() >= before + 2, 240_000));
        rec.outcome = moving ? 'restarted' : `lost: ${coord.proc.exitCode === null ? 'no restart seen' : `job exited ${coord.proc.exitCode}`}: ${tail(coord.err, 400)}`;
      }
    }
    const c0 = Date.now();
    rec.violations = await invariants(state, spec.kind === 'checkpoint-full');
    rec.checkMs = Date.now() - c0;
    rec.ms = Date.now() - s0;
    records.push(rec);
    say(`#${i} ${d.name} ${rec.vm}${rec.mode ? ` ${rec.mode}` : ''}${rec.adapter ? `/${rec.adapter}` : ''} -> ${rec.outcome} (${sec(rec.ms)} s, checks ${sec(rec.checkMs)} s)${rec.violations.length ? `; VIOLATIONS: ${rec.violations.join('; ')}` : ''}`);
    if (coord.proc.exitCode !== null) stopped = true;
  }

  // the journal explains every operation: each ended done or rolled back
  const final: string[] = [];
  const jfile = path.join(runtimeRoot(), jobId, 'journal.jsonl');
  if (!stopped) {
    const ops = [...readJournal(jfile).values()].map((rec): JournalOp => ({
      op: rec.op, kind: rec.kind, phase: rec.state.phase as string,
      ...(typeof rec.params?.reason === 'string' ? { reason: rec.params.reason } : {}),
      ...(rec.state.error ? { error: rec.state.error.message } : {}),
    }));
    const unexplained = journalUnexplained(ops);
    final.push(...unexplained);
    say(`journal: ${ops.length} operations, ${unexplained.length} not explained (ended neither done nor rolled back, nor degraded and moved back)`);
  }
  let exitCode: number | null = coord.proc.exitCode;
  if (!stopped) {
    const touch = await sym(['exec', 'vm1', '--', 'touch', stopFile], 120_000);
    if (touch.code !== 0) final.push(`the stop file could not be made in vm1: ${tail(touch.stderr)}`);
    exitCode = await Promise.race([coord.exit, sleep(600_000).then(() => null)]);
  }
  if (exitCode !== 0) final.push(`the job exited ${exitCode}: ${tail(coord.err, 800)}`);
  const answerRight = new RegExp(`ring OK: ranks=${nVms} `).test(ringOut);
  // what is left of the job (after the job exited; wait a little for its teardown)
  await sleep(2000);
  const leftovers: string[] = [];
  const ns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => jobId && l.includes(`symrun-${jobId}-`));
  if (ns.length) leftovers.push(`network namespaces ${ns.map((l) => l.split(' ')[0]).join(', ')}`);
  if (fs.existsSync(path.join(runtimeRoot(), jobId))) leftovers.push(`run directory ${path.join(runtimeRoot(), jobId)}`);
  const q = spawnSync('pgrep', ['-f', `qemu-system.*${jobId}`], { encoding: 'utf8' }).stdout.trim();
  if (q) leftovers.push(`QEMU processes ${q.split('\n').join(', ')}`);

  const sum = summarize({ seed, minutes, records, final, answerRight, exitCode, leftovers, durationS: Math.round((Date.now() - t0) / 1000) });
  const env = `Machine: ${os.cpus().length} cores, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end; ${nVms} VMs + ${nSpares} spares under TCG; ${new Date().toISOString().slice(0, 10)}.`;
  const md = soakMarkdown(sum, env);
  const report = { ...sum, records, env };
  if (!o['no-write']) {
    const dir = path.resolve(o.out ?? path.join(repoRoot(), 'bench', 'results'));
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'soak.json'), JSON.stringify(report, null, 2) + '\n');
    fs.writeFileSync(path.join(dir, 'soak.md'), md);
    say(`wrote ${path.join(dir, 'soak.json')} and soak.md`);
  }
  process.stderr.write('\n' + md);
  if (o.json) process.stdout.write(JSON.stringify(report) + '\n');
  return sum.violations === 0 ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  say(`the soak itself failed: ${(e as Error).message} (seed ${seed})`);
  code = 1;
} finally {
  // a soak that stops early still leaves nothing: the job's own teardown (SIGTERM), then the last resort
  if (coord! && coord.proc.exitCode === null) {
    coord.proc.kill('SIGTERM');
    await Promise.race([coord.exit, sleep(120_000)]);
    if (coord.proc.exitCode === null) coord.proc.kill('SIGKILL');
  }
  if (jobId) await cleanupJob(jobId).catch(() => undefined);
  spawnSync('umount', [full]);
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(code);
