// Checkpoint benchmark: what a coordinated checkpoint of a running job costs, and how big it is.
//
//   (a) scaling: a ring job on --local N (N = 1, 2, 3 by default, 512 MiB / 1 vCPU each), R checkpoints
//       each (`symrun checkpoint --json`): total time, ranks frozen, the save phase (all VMs saved in
//       parallel: it should stay near one VM's save time) and each VM's own save time
//   (b) size vs guest RAM: one VM with each --memory in the list, R checkpoints: state file size
//   (c) restart: a ring job on --local N --spares 1 (N from --vms), one checkpoint, then an emulated host
//       is powered off (every process in its network namespace SIGKILLed; host2, or host1 for N = 1):
//       kill -> host lost, the restart's phases from the --events file, kill -> ring output again; the
//       job must still end with `ring OK`. Then `symrun restart DIR --local N` from the same checkpoint
//       (a new coordinator: verify, hosts, agents, restore) until the ring prints again, stopped, `ring OK`.
//       Baseline in the same run: plain QEMU, the checkpoint's recorded arguments (manifest qemuArgs)
//       + `-incoming "exec:cat FILE"`, every state file of the checkpoint at once, until running after
//       `cont` (query-status polled every 10 ms); and the same waited for as the host agent does it
//       (-incoming defer, migrate-incoming, completeIncoming). Overhead = restart total - plain.
//
// A benchmark, not a test: it asserts nothing about time; it exits non-zero only if a run itself fails.
// Needs root (symrun --local). JSON on stdout, markdown on stderr.
//
//   node dist/bench/checkpoint.js [--vms 1,2,3] [--memory 256M,512M,1G] [--repeat R] [--restart-repeat R]
//                                 [--parts a,b,c] [--json-out FILE] [--md-out FILE]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { repoRoot } from '../launcher/src/defaults.js';
import { startVm, type VmProcess } from '../launcher/src/vm/index.js';
import { queryMigration, startIncoming, completeIncoming } from '../launcher/src/migration/qemu.js';
import { incomingFromFileArgs } from '../launcher/src/migration/statefile.js';
import { verifyCheckpoint, type CheckpointManifest } from '../launcher/src/checkpoint/manifest.js';
import { RESTART_FORWARD as RESTART_PHASES } from '../launcher/src/protocol/restart.js';
import { startRingJob, type RingJob } from '../test/fixtures/ring-job.js';
import { spawnSymrun, runSymrun } from '../test/fixtures/symrun-env.js';

const MiB = 1024 * 1024;

function say(msg: string): void {
  process.stderr.write(`bench/checkpoint: ${msg}\n`);
}

interface Sample { totalMs: number; frozenMs: number; saveMs: number; commitMs: number; perVmSaveMs: number[]; sizeBytes: number; perVmBytes: number[] }
interface Row { vms: number; memory: string; samples: Sample[] }

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN; };
const range = (xs: number[]) => `${Math.min(...xs)}–${Math.max(...xs)}`;

async function measure(work: string, vms: number, memory: string, repeat: number): Promise<Row> {
  const ckpt = path.join(work, `ckpt-${vms}-${memory}`);
  // unique: stage-out copies each job's stop file back into the shared directory
  const stopFile = path.join(work, `stop-${vms}-${memory}-${Date.now()}`);
  say(`--local ${vms} --memory ${memory}: starting the ring`);
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', String(vms), '--memory', memory, '--checkpoint-dir', ckpt, '--keep', '1'], stopFile });
  const samples: Sample[] = [];
  try {
    for (let i = 0; i < repeat; i++) {
      const r = await job.sym(['checkpoint', '--json'], 600_000);
      let res: any;
      try { res = JSON.parse(r.stdout); } catch { throw new Error(`checkpoint: no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`); }
      if (res.outcome !== 'done') throw new Error(`checkpoint ${res.outcome}: ${res.error?.message}`);
      const s: Sample = {
        totalMs: res.totalMs, frozenMs: res.frozenMs, saveMs: res.phasesMs.save, commitMs: res.phasesMs.commit,
        perVmSaveMs: res.vms.map((v: any) => v.saveMs), sizeBytes: res.sizeBytes, perVmBytes: res.vms.map((v: any) => v.size),
      };
      samples.push(s);
      say(`  #${i + 1}: total ${s.totalMs} ms, frozen ${s.frozenMs} ms, save ${s.saveMs} ms (per VM ${s.perVmSaveMs.join(', ')}), ${(s.sizeBytes / MiB).toFixed(1)} MiB`);
      await job.stillRunning(`checkpoint ${i + 1}`);
    }
    const { code } = await job.stop();
    if (code !== 0) throw new Error(`the ring job ended with ${code}: ${job.stderr().slice(-1500)}`);
    if (!/ring OK/.test(job.stdout())) throw new Error('the ring did not end OK');
  } finally {
    job.kill();
    fs.rmSync(ckpt, { recursive: true, force: true });
  }
  return { vms, memory, samples };
}

// ---------------------------------------------------------------------------------------------------
// (c) restart

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load1 = () => +os.loadavg()[0]!.toFixed(2);

/** Power off emulated host n of a job: every process in its network namespace SIGKILLed (as the system test does). */
function killHost(jobId: string, n: number): number {
  const pids = spawnSync('ip', ['netns', 'pids', `symrun-${jobId}-h${n}`], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const p of pids) { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }
  return pids.length;
}

interface Ev { ts: string; kind: string; phase: string; event: string; ms?: number; data?: any }
function readEvents(file: string): Ev[] {
  let text = '';
  try { text = fs.readFileSync(file, 'utf8'); } catch { return []; }
  return text.split('\n').filter(Boolean).flatMap((l) => { try { return [JSON.parse(l) as Ev]; } catch { return []; } });
}


interface Line { at: number; text: string }
/** Every "ring iteration N" line of a growing stdout, with the time the bench first saw it (polled every 20 ms). */
function lineWatcher(get: () => string) {
  const lines: Array<Line & { it: number }> = [];
  let seen = 0;
  let stopped = false;
  const tick = () => {
    const out = get();
    const all = [...out.matchAll(/ring iteration (\d+)/g)];
    for (let i = seen; i < all.length; i++) lines.push({ at: Date.now(), text: all[i]![0], it: Number(all[i]![1]) });
    seen = all.length;
  };
  void (async () => { while (!stopped) { tick(); await sleep(20); } })();
  return { lines, tick, stop: () => { stopped = true; } };
}

interface ReactiveSample {
  killedHost: string; pidsKilled: number; loadavg1: number; checkpoint: string; ckptIteration: number;
  /** kill -> the coordinator's host-lost event */
  killToLostMs: number;
  /** host-lost -> the restart's first phase begins (pending ops settled, newest checkpoint picked: sha256 of every file) */
  lostToStopMs: number;
  /** restoreVms' own total (stop .. resume, the `result` event) */
  restartMs: number;
  phasesMs: Record<string, number>;
  /** kill -> the restart's result event */
  killToRestartedMs: number;
  /** kill -> the first ring line printed by the restored ranks */
  killToRingMs: number;
  /** the restart's result event -> that line (the ring prints every 100 iterations: up to one print interval) */
  resultToRingMs: number;
  firstIteration: number;
  /** symrun status --json: restarts.log[0].ms (pick excluded, restore included) */
  statusLogMs?: number;
  moved: Array<{ vm: string; from: string; to: string }>;
}

interface CliSample {
  loadavg1: number;
  /** spawn of `symrun restart` -> its "job X: restarting job ..." line */
  toRestartingLineMs: number;
  /** spawn -> the first ring line of the restored ranks */
  toRingMs: number;
  /** sha256 of every state file: the bench calling verifyCheckpoint() (the function symrun restart calls first) right before */
  verifyMs: number;
  /** `--json` summary's phasesMs (job phases: image, hosts, agents, restore, run, ...) */
  jobPhasesMs: Record<string, number>;
  /** the restore's own phases from --events (stop, restore = QEMU start + load, cont, replug, reconfigure, resume) */
  phasesMs: Record<string, number>;
  restartMs: number;
  firstIteration: number;
  exitCode: number | null;
}

interface BareVm { vm: string; stateMiB: number; spawnToQmpMs: number; loadedMs: number; runningMs: number; runStateAfterLoad: string; migrationEvents: number }
interface BareSample { how: 'poll' | 'agent'; loadavg1: number; allRunningMs: number; vms: BareVm[]; error?: string }

interface RestartRow { vms: number; reactive: ReactiveSample[]; cli: CliSample[]; bare: BareSample[]; bareAgent: BareSample[] }

/**
 * Plain QEMU: the VM's recorded QEMU arguments (manifest qemuArgs, saved without the interconnect device)
 * with paths moved to a fresh directory; every VM of the checkpoint at once (symrun restores them in
 * parallel too); `cont` after the load. Two ways of waiting:
 *   poll   `-incoming "exec:cat FILE"` on the command line, query-status every 10 ms until it leaves
 *          `inmigrate` (what QEMU itself takes);
 *   agent  what symrun's host agent does in ckpt.restore, without the RPC around it: `-incoming defer`,
 *          migrate-incoming "exec:cat FILE", completeIncoming (waitMigration: a 200 ms poll woken by
 *          MIGRATION events), then `cont`.
 */
async function bareRestore(top: string, ckDir: string, how: 'poll' | 'agent'): Promise<BareSample> {
  const m = JSON.parse(fs.readFileSync(path.join(ckDir, 'manifest.json'), 'utf8')) as CheckpointManifest;
  const procs: VmProcess[] = [];
  const res: BareSample = { how, loadavg1: load1(), allRunningMs: NaN, vms: [] };
  const dir = fs.mkdtempSync(path.join(top, 'bare-'));
  try {
    const t0 = performance.now();
    res.vms = await Promise.all(m.vms.map(async (v) => {
      if (!v.qemuArgs) throw new Error(`manifest of ${m.name}: ${v.name} has no qemuArgs`);
      const runDir = path.join(dir, v.name);
      fs.mkdirSync(runDir, { recursive: true });
      const agentSocket = path.join(runDir, 'agent.sock');
      const args: string[] = [];
      for (let i = 0; i < v.qemuArgs.length; i++) {
        if (v.qemuArgs[i] === '-incoming') { i++; continue; }
        args.push(v.qemuArgs[i]!.split(v.spec.agentSocket).join(agentSocket).split(v.spec.runDir).join(runDir));
      }
      const file = path.join(ckDir, v.file);
      const inc = incomingFromFileArgs(file);
      args.push(...(how === 'poll' ? inc : ['-incoming', 'defer']));
      const ts = performance.now();
      const p = await startVm({ ...v.spec, runDir, agentSocket }, { argsOverride: args });
      procs.push(p);
      const tq = performance.now();
      // QEMU 7.2 sends MIGRATION events only with the `events` capability on: count what arrives
      let migrationEvents = 0;
      p.qmp.on('event', (e: { event: string }) => { if (e.event === 'MIGRATION') migrationEvents++; });
      let st: { status: string };
      if (how === 'poll') {
        // 'inmigrate' while QEMU loads the file, then the saved run state (paused)
        st = await p.qmp.execute<{ status: string }>('query-status');
        const until = Date.now() + 600_000;
        while (st.status === 'inmigrate' && Date.now() < until) {
          await sleep(10);
          st = await p.qmp.execute<{ status: string }>('query-status');
        }
        const mig = await queryMigration(p.qmp);
        if (mig.status !== 'completed') throw new Error(`bare ${v.name}: incoming migration ${mig.status} (run state ${st.status})`);
      } else {
        await startIncoming(p.qmp, inc[1]!);
        st = { status: (await completeIncoming(p.qmp, { resume: false, timeoutMs: 600_000 })).runState };
      }
      const tl = performance.now();
      if (st.status !== 'running') await p.qmp.execute('cont');
      const st2 = await p.qmp.execute<{ status: string }>('query-status');
      if (st2.status !== 'running') throw new Error(`bare ${v.name}: ${st2.status} after cont`);
      const tr = performance.now();
      return { vm: v.name, stateMiB: +(v.size / MiB).toFixed(1), spawnToQmpMs: Math.round(tq - ts), loadedMs: Math.round(tl - ts), runningMs: Math.round(tr - ts), runStateAfterLoad: st.status, migrationEvents };
    }));
    res.allRunningMs = Math.round(performance.now() - t0);
  } catch (e) {
    res.error = (e as Error).message;
    say(`  bare (${how}): FAILED: ${res.error}`);
  } finally {
    await Promise.all(procs.map((p) => p.stop({ graceMs: 1000 }).catch(() => undefined)));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return res;
}

function restartPhases(evs: Ev[], after?: string): { phases: Record<string, number>; result?: Ev; stopBegin?: Ev; resumeBegin?: Ev; fail?: Ev } {
  const r = evs.filter((e) => e.kind === 'restart' && (!after || e.ts >= after));
  const phases: Record<string, number> = {};
  for (const e of r) if (e.event === 'end' && (RESTART_PHASES as readonly string[]).includes(e.phase) && e.ms !== undefined) phases[e.phase] = e.ms;
  return {
    phases,
    result: r.find((e) => e.event === 'result'),
    stopBegin: r.find((e) => e.phase === 'stop' && e.event === 'begin'),
    resumeBegin: r.find((e) => e.phase === 'resume' && e.event === 'begin'),
    fail: r.find((e) => e.event === 'fail'),
  };
}

async function restartOnce(work: string, vms: number, k: number): Promise<{ reactive: ReactiveSample; cli: CliSample; bare: BareSample; bareAgent: BareSample }> {
  const tag = `${vms}-${k}-${Date.now()}`;
  const ckpt = path.join(work, `ckpt-restart-${tag}`);
  const events = path.join(work, `events-${tag}.jsonl`);
  const stopFile = path.join(work, `stop-restart-${tag}`);
  const victim = vms === 1 ? 1 : 2;
  say(`(c) --local ${vms} --spares 1, run ${k}: starting the ring`);
  const job: RingJob = await startRingJob({ cwd: work, symrunArgs: ['--local', String(vms), '--spares', '1', '--checkpoint-dir', ckpt, '--keep', '1', '--events', events], stopFile });
  let reactive: ReactiveSample;
  const w = lineWatcher(() => job.stdout());
  try {
    const c = await job.sym(['checkpoint', '--json'], 600_000);
    let cr: any;
    try { cr = JSON.parse(c.stdout); } catch { throw new Error(`checkpoint: no JSON (exit ${c.code}): ${c.stdout}\n${c.stderr}`); }
    if (cr.outcome !== 'done') throw new Error(`checkpoint ${cr.outcome}: ${cr.error?.message}`);
    const ckptIteration = job.iterations();
    await job.stillRunning('the checkpoint');
    const l = load1();
    const tKill = Date.now();
    const pids = killHost(job.id, victim);
    if (!pids) throw new Error(`no process in symrun-${job.id}-h${victim}`);
    say(`  checkpoint ${cr.name} (${cr.totalMs} ms); host${victim} powered off (${pids} processes killed)`);
    // (until() throws when the job exits first)
    await job.until('the restart result event', () => { const x = restartPhases(readEvents(events)); return !!(x.result || x.fail); }, 600_000);
    const ph = restartPhases(readEvents(events));
    if (!ph.result) throw new Error(`restart failed in ${ph.fail!.phase}: ${JSON.stringify(ph.fail!.data)}\n${job.stderr().slice(-2000)}`);
    if (ph.result.data?.outcome !== 'done') throw new Error(`restart ${ph.result.data?.outcome}: ${JSON.stringify(ph.result.data)}`);
    const lost = readEvents(events).find((e) => e.kind === 'restart' && e.event === 'action' && e.data?.action === 'host-lost');
    if (!lost) throw new Error('no host-lost event');
    const resumeAt = Date.parse(ph.resumeBegin!.ts);
    await job.until('ring output after the restart', () => { w.tick(); return w.lines.some((x) => x.at >= resumeAt); }, 300_000);
    const first = w.lines.find((x) => x.at >= resumeAt)!;
    await job.stillRunning('the restart');
    const st = JSON.parse((await job.sym(['status', '--json'])).stdout);
    reactive = {
      killedHost: `host${victim}`, pidsKilled: pids, loadavg1: l, checkpoint: cr.name, ckptIteration,
      killToLostMs: Date.parse(lost.ts) - tKill,
      lostToStopMs: Date.parse(ph.stopBegin!.ts) - Date.parse(lost.ts),
      restartMs: ph.result.ms!,
      phasesMs: ph.phases,
      killToRestartedMs: Date.parse(ph.result.ts) - tKill,
      killToRingMs: first.at - tKill,
      resultToRingMs: first.at - Date.parse(ph.result.ts),
      firstIteration: first.it,
      statusLogMs: st.restarts?.log?.[0]?.ms,
      moved: st.restarts?.log?.[0]?.moved ?? [],
    };
    if (st.restarts?.count !== 1) throw new Error(`status: restarts.count ${st.restarts?.count}`);
    say(`  reactive: kill→lost ${reactive.killToLostMs} ms, lost→restart ${reactive.lostToStopMs} ms, restart ${reactive.restartMs} ms (${RESTART_PHASES.map((p) => `${p} ${ph.phases[p]}`).join(', ')}), kill→ring ${reactive.killToRingMs} ms (iteration ${first.it}, checkpoint at ~${ckptIteration})`);
    const { code } = await job.stop();
    if (code !== 0) throw new Error(`the restarted ring job ended with ${code}: ${job.stderr().slice(-1500)}`);
    if (!/ring OK/.test(job.stdout())) throw new Error('the restarted ring did not end OK');
  } finally {
    w.stop();
    job.kill();
  }

  // symrun restart DIR --local N: a new coordinator from the same checkpoint
  let cli: CliSample;
  let bare: BareSample;
  let bareAgent: BareSample;
  try {
    const tv = performance.now();
    const v = await verifyCheckpoint(path.join(ckpt, reactive.checkpoint));
    const verifyMs = Math.round(performance.now() - tv);
    if (!v.ok) throw new Error(`checkpoint ${reactive.checkpoint}: ${v.problems.join('; ')}`);
    const ev2 = path.join(work, `events-cli-${tag}.jsonl`);
    const l = load1();
    const t0 = Date.now();
    const rs = spawnSymrun(['restart', ckpt, '--local', String(vms), '--from', reactive.checkpoint, '--json', '--events', ev2], { cwd: work });
    let out = '';
    let err = '';
    let restartingAt = NaN;
    rs.stdout!.on('data', (d) => (out += d));
    rs.stderr!.on('data', (d) => { err += d; if (Number.isNaN(restartingAt) && /job \w+: restarting job/.test(err)) restartingAt = Date.now(); });
    const exited = new Promise<number | null>((r) => rs.on('close', (c) => r(c)));
    const w2 = lineWatcher(() => out);
    try {
      const end = Date.now() + 600_000;
      while (!w2.lines.length) {
        if (rs.exitCode !== null || Date.now() > end) throw new Error(`symrun restart: no ring output (exit ${rs.exitCode})\n${err.slice(-3000)}`);
        await sleep(20);
      }
      const first = w2.lines[0]!;
      const newId = /job (\w+): restarting job/.exec(err)?.[1];
      if (!newId) throw new Error(`symrun restart: no "restarting job" line\n${err.slice(-2000)}`);
      const touch = await runSymrun(['exec', '--job', newId, 'vm1', '--', 'touch', stopFile], { cwd: work, timeoutMs: 120_000 });
      if (touch.code !== 0) throw new Error(`symrun exec touch: ${touch.code} ${touch.stderr}`);
      const code = await Promise.race([exited, sleep(300_000).then(() => 'timeout' as const)]);
      if (code !== 0) throw new Error(`symrun restart ended with ${code}: ${err.slice(-1500)}`);
      if (!/ring OK/.test(out)) throw new Error('the ring restarted by symrun restart did not end OK');
      const summary = err.split('\n').filter((x) => x.startsWith('{')).map((x) => { try { return JSON.parse(x); } catch { return undefined; } }).filter(Boolean).pop();
      const ph = restartPhases(readEvents(ev2));
      cli = {
        loadavg1: l, toRestartingLineMs: restartingAt - t0, toRingMs: first.at - t0, verifyMs,
        jobPhasesMs: summary?.phasesMs ?? {}, phasesMs: ph.phases, restartMs: ph.result?.ms ?? NaN, firstIteration: first.it, exitCode: code,
      };
      say(`  symrun restart: →"restarting" line ${cli.toRestartingLineMs} ms, →ring ${cli.toRingMs} ms (iteration ${first.it}), verify ${verifyMs} ms, job phases ${JSON.stringify(cli.jobPhasesMs)}`);
    } finally {
      w2.stop();
      if (rs.exitCode === null) rs.kill('SIGKILL');
    }
    bare = await bareRestore(work, path.join(ckpt, reactive.checkpoint), 'poll');
    bareAgent = await bareRestore(work, path.join(ckpt, reactive.checkpoint), 'agent');
    for (const b of [bare, bareAgent]) if (!b.error) say(`  plain QEMU (${b.how}): all ${b.vms.length} running after ${b.allRunningMs} ms (${b.vms.map((x) => `${x.vm}: qmp ${x.spawnToQmpMs}, loaded ${x.loadedMs} (${x.runStateAfterLoad}), running ${x.runningMs}, ${x.migrationEvents} MIGRATION events`).join('; ')})`);
  } finally {
    fs.rmSync(ckpt, { recursive: true, force: true });
  }
  return { reactive, cli, bare, bareAgent };
}

async function measureRestart(work: string, vms: number, repeat: number): Promise<RestartRow> {
  const row: RestartRow = { vms, reactive: [], cli: [], bare: [], bareAgent: [] };
  for (let k = 1; k <= repeat; k++) {
    const r = await restartOnce(work, vms, k);
    row.reactive.push(r.reactive);
    row.cli.push(r.cli);
    row.bare.push(r.bare);
    row.bareAgent.push(r.bareAgent);
  }
  return row;
}

function toMib(s: string): number {
  const m = /^(\d+)([MG])$/i.exec(s);
  if (!m) throw new Error(`--memory items are like 256M or 1G (got ${s})`);
  return Number(m[1]) * (m[2]!.toUpperCase() === 'G' ? 1024 : 1);
}

const fmt = (xs: Array<number | undefined>): string => {
  const v = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  if (!v.length) return 'n/a';
  return v.length > 1 ? `${median(v)} (${range(v)})` : String(v[0]);
};

/** QEMU processes running on the machine (other sessions' VMs compete for the same cores). */
function otherQemus(): number {
  return Number(spawnSync('pgrep', ['-c', 'qemu-system'], { encoding: 'utf8' }).stdout.trim() || 0);
}

function restartMarkdown(rows: RestartRow[], repeat: number): string[] {
  const md: string[] = [];
  const slowest = (b: BareSample, k: 'loadedMs' | 'runningMs') => Math.max(...b.vms.map((v) => v[k]));
  md.push(`## Restart (median of ${repeat}, min–max; ms)`, '');
  md.push('Reactive restart inside the running job (`--local N --spares 1`, one `symrun checkpoint`, then the host is powered off: every process in its network namespace SIGKILLed). Phases from the `--events` file; "restore" = every VM\'s QEMU started and its state file loaded, in parallel:', '');
  md.push('| VMs | host off | kill → host lost | host lost → restart begins (settle, pick: sha256) | restart total (stop … resume) | stop | restore | cont | replug | reconfigure | resume | kill → ring prints again | of which: restarted → next progress line |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const R = r.reactive;
    md.push(`| ${r.vms} | ${R[0]?.killedHost ?? ''} (${R[0]?.moved.map((m) => `${m.vm} → ${m.to}`).join(', ') ?? ''}) | ${fmt(R.map((s) => s.killToLostMs))} | ${fmt(R.map((s) => s.lostToStopMs))} | ${fmt(R.map((s) => s.restartMs))} | ${RESTART_PHASES.map((p) => fmt(R.map((s) => s.phasesMs[p]))).join(' | ')} | ${fmt(R.map((s) => s.killToRingMs))} | ${fmt(R.map((s) => s.resultToRingMs))} |`);
  }
  md.push('');
  md.push('`symrun restart DIR --local N --from NAME` from the same checkpoint (a new coordinator on this machine; "job restore" is the job\'s phase around the six restore phases; the verify column is the bench calling the same `verifyCheckpoint` just before):', '');
  md.push('| VMs | verify (sha256) | start → "restarting job" line | image | hosts | agents | job restore | stop | restore | cont | replug | reconfigure | resume | start → ring prints again |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const C = r.cli;
    md.push(`| ${r.vms} | ${fmt(C.map((s) => s.verifyMs))} | ${fmt(C.map((s) => s.toRestartingLineMs))} | ${['image', 'hosts', 'agents', 'restore'].map((p) => fmt(C.map((s) => s.jobPhasesMs[p]))).join(' | ')} | ${RESTART_PHASES.map((p) => fmt(C.map((s) => s.phasesMs[p]))).join(' | ')} | ${fmt(C.map((s) => s.toRingMs))} |`);
  }
  md.push('');
  md.push('Side by side with plain QEMU in the same run: the checkpoint\'s recorded QEMU arguments (manifest `qemuArgs`), every state file of the checkpoint at once, `cont` after the load. "10 ms poll": `-incoming "exec:cat FILE"`, query-status every 10 ms (what QEMU takes); "agent\'s wait": `-incoming defer` + migrate-incoming + `completeIncoming` as symrun\'s host agent does it, without the RPC:', '');
  md.push('| VMs | plain: spawn → loaded, slowest VM (10 ms poll) | plain: spawn → all running (10 ms poll) | plain: → all running (agent\'s wait) | symrun: restore + cont (reactive) | symrun: restart total (reactive) | symrun overhead (total − plain, 10 ms poll) | of which reconfigure |', '|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const B = r.bare.filter((b) => !b.error);
    const A = r.bareAgent.filter((b) => !b.error);
    const R = r.reactive;
    const plain = B.map((b) => b.allRunningMs);
    const over = median(R.map((s) => s.restartMs)) - median(plain);
    md.push(`| ${r.vms} | ${fmt(B.map((b) => slowest(b, 'loadedMs')))} | ${fmt(plain)} | ${fmt(A.map((b) => b.allRunningMs))} | ${fmt(R.map((s) => (s.phasesMs.restore ?? NaN) + (s.phasesMs.cont ?? NaN)))} | ${fmt(R.map((s) => s.restartMs))} | ${plain.length ? Math.round(over) : 'n/a'} | ${fmt(R.map((s) => s.phasesMs.reconfigure))} |`);
  }
  md.push('');
  md.push('Not measured here: a real power cut with the link gone. The coordinator then notices the host through its heartbeat (host.info every 1 s; lost after 6 s of silence, `SYMRUN_AGENT_LOST_MS`), so "kill → host lost" becomes ~6–7 s; here the host agent\'s connection closes when it is killed and the loss is seen at once.', '');
  return md;
}

async function main(): Promise<void> {
  const { values: o } = parseArgs({
    options: {
      vms: { type: 'string', default: '1,2,3' },
      memory: { type: 'string', default: '256M,512M,1G' },
      repeat: { type: 'string', default: '2' },
      'restart-repeat': { type: 'string' },
      parts: { type: 'string', default: 'a,b,c' },
      'json-out': { type: 'string' },
      'md-out': { type: 'string' },
    },
  });
  if (process.getuid?.() !== 0) { say('needs root (symrun --local)'); process.exit(2); }
  const repeat = Number(o.repeat);
  const restartRepeat = Number(o['restart-repeat'] ?? o.repeat);
  const parts = o.parts!.split(',');
  for (const p of parts) if (!['a', 'b', 'c'].includes(p)) { say(`--parts: a, b, c (got ${p})`); process.exit(2); }
  const loadStart = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  const qemusStart = otherQemus();
  say(`load at start ${loadStart}; QEMU processes already running: ${qemusStart}`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-bench-ckpt-'));
  execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
  const scaling: Row[] = [];
  const sizes: Row[] = [];
  const restarts: RestartRow[] = [];
  const vmsList = o.vms!.split(',').map(Number);
  try {
    if (parts.includes('a')) for (const n of vmsList) scaling.push(await measure(work, n, '512M', repeat));
    if (parts.includes('b')) for (const m of o.memory!.split(',')) sizes.push(await measure(work, 1, m, repeat));
    if (parts.includes('c')) for (const n of vmsList) restarts.push(await measureRestart(work, n, restartRepeat));
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  const out = {
    when: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, loadavg: load, loadavgStart: loadStart, qemuProcessesAtStart: qemusStart, repeat,
    ...(restarts.length ? { restartRepeat } : {}),
    scaling: scaling.map((r) => ({ vms: r.vms, memory: r.memory, samples: r.samples })),
    sizeVsRam: sizes.map((r) => ({ memory: r.memory, memoryMiB: toMib(r.memory), stateMiB: r.samples.map((s) => +(s.perVmBytes[0]! / MiB).toFixed(1)) })),
    ...(restarts.length ? { restart: restarts } : {}),
  };
  const md: string[] = [];
  md.push(`# Checkpoint benchmark (${out.when}, ${out.cpus} cores, load ${loadStart} at start, ${load} at the end, ${qemusStart} other QEMU processes at start, TCG, median of ${repeat}, min–max)`, '');
  if (scaling.length) {
    md.push('| VMs | total ms | ranks frozen ms | save phase ms (all VMs in parallel) | one VM\'s save ms | commit ms (sha256 + manifest) | checkpoint MiB |', '|---|---|---|---|---|---|---|');
    for (const r of scaling) {
      const S = r.samples;
      const per = S.flatMap((s) => s.perVmSaveMs);
      md.push(`| ${r.vms} | ${median(S.map((s) => s.totalMs))} (${range(S.map((s) => s.totalMs))}) | ${median(S.map((s) => s.frozenMs))} | ${median(S.map((s) => s.saveMs))} (${range(S.map((s) => s.saveMs))}) | ${median(per)} (${range(per)}) | ${median(S.map((s) => s.commitMs))} | ${(median(S.map((s) => s.sizeBytes)) / MiB).toFixed(0)} |`);
    }
    md.push('');
  }
  if (sizes.length) {
    md.push('| guest RAM | state file MiB | % of RAM |', '|---|---|---|');
    for (const r of sizes) {
      const b = median(r.samples.map((s) => s.perVmBytes[0]!));
      md.push(`| ${r.memory} | ${(b / MiB).toFixed(1)} | ${((b / MiB / toMib(r.memory)) * 100).toFixed(0)} % |`);
    }
    md.push('');
  }
  if (restarts.length) md.push(...restartMarkdown(restarts, restartRepeat));
  const json = JSON.stringify(out, null, 2) + '\n';
  process.stdout.write(json);
  process.stderr.write(md.join('\n') + '\n');
  if (o['json-out']) fs.writeFileSync(o['json-out'], json);
  if (o['md-out']) fs.writeFileSync(o['md-out'], md.join('\n') + '\n');
}

main().catch((e) => {
  say(`failed: ${(e as Error).message}`);
  process.exit(1);
});
