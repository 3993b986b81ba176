// Event intake benchmark (Slurm mode, on the namespace lab of test/cluster/slurm.ts):
//
//   (latency) drain -> migration started, for the poll path (`scontrol update state=drain`, seen by the
//             coordinator's NodeWatcher) at slurm.pollInterval 1 s and 0.25 s, and for the health-check
//             (push) path (slurm-plugins/healthcheck drains its own node, HealthCheckInterval 2 s). A
//             symrun ring job (3 VMs + 1 spare) per poll interval; R drains of each kind, alternating
//             between the VM's node and the spare (undrained after each move).
//   (load)    what polling costs slurmctld: N simulated coordinators (each a NodeWatcher, the same
//             batched `scontrol show node -o A,B,...` symrun runs) polling K nodes every I ms, for D s.
//             Per case: calls/s achieved, client latency (p50/p95/max), slurmctld CPU time per 1000
//             calls (/proc/PID/stat utime+stime) and slurmctld's own time per REQUEST_NODE_INFO (sdiag).
//             No VMs.
//   (watchd)  per-job polling vs one cluster-wide `symrun watchd`: J simulated jobs (J = 1, 16, 64) either
//             each polling its own 4 nodes (NodeWatcher, 1 s) or each a subscriber connection to one
//             watchd (1 s, all nodes). Per case: slurmctld CPU per second (/proc), sdiag REQUEST_NODE_INFO
//             RPCs per second and mean time, the client side's CPU (pollers + their scontrol children, or
//             watchd + its scontrol children). Also an idle baseline (nothing polls). No VMs.
//
// A benchmark, not a test: asserts nothing about time. Needs root (the lab). JSON on stdout, markdown
// on stderr.
//   node dist/bench/events.js [--parts latency,load,watchd] [--repeat R] [--load-nodes L] [--load-seconds D]
//                             [--watchd-seconds D] [--merge FILE] [--json-out FILE] [--md-out FILE]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot, SLURM_DEFAULTS } from '../launcher/src/defaults.js';
import { NodeWatcher, scontrolShowNodes } from '../launcher/src/slurm/watch.js';
import { connectChannel, type RpcPeer } from '../launcher/src/agent/channel.js';
import { initKeyFile, readKeyFile, type WatchdStats } from '../launcher/src/slurm/watchd.js';
import { startSlurmLab, type SlurmLab } from '../test/cluster/slurm.js';
import { submitRingJob, waitRing, status, stopRing, readEvents, readOut, symrunPath, type RingJob, type StatusJson } from '../test/fixtures/slurm-ring.js';

const USAGE = `usage: node dist/bench/events.js [options]
  --parts LIST        latency,load,watchd (default all three)
  --repeat R          (latency) drains per path and poll interval (default 3)
  --load-nodes L      (load) lab nodes (default 32)
  --load-seconds D    (load) seconds per case (default 12)
  --watchd-seconds D  (watchd) seconds per case (default 30)
  --merge FILE        start from this earlier JSON result: the parts run now replace its parts
                      (--parts none --merge FILE --md-out M: only render FILE's markdown again)
  --json-out FILE     also write the JSON there
  --md-out FILE       also write the markdown there
Runs as root (the Slurm lab). JSON on stdout, markdown on stderr.`;

const say = (m: string) => process.stderr.write(`bench/events: ${m}\n`);
const load1 = () => Number(os.loadavg()[0]!.toFixed(2));
const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const med = (xs: number[]) => pct(xs, 50);
const r1 = (x: number) => Math.round(x * 10) / 10;

// ---- poller mode: runs INSIDE the controller's namespace (lab.client), prints JSON ---------------

interface PollerResult { pollers: number; nodesPerCall: number; intervalMs: number; seconds: number; calls: number; errors: number; latMs: number[]; cpuMs?: number }

async function pollerMain(argv: string[]): Promise<void> {
  const [n, k, iv, secs, ...nodes] = argv;
  const N = Number(n), K = Number(k), I = Number(iv), D = Number(secs);
  const lat: number[] = [];
  const watchers: NodeWatcher[] = [];
  for (let i = 0; i < N; i++) {
    // job i watches K consecutive nodes (wrapping), like an allocation
    const mine = Array.from({ length: K }, (_, j) => nodes[(i * K + j) % nodes.length]!);
    const w = new NodeWatcher({
      nodes: () => mine,
      intervalMs: I,
      onChange: () => undefined,
      onError: () => undefined,
      run: async (names) => {
        const t = performance.now();
        try { return await scontrolShowNodes(names); } finally { lat.push(performance.now() - t); }
      },
    });
    watchers.push(w);
  }
  // independent jobs: random phases
  await Promise.all(watchers.map(async (w) => { await sleep(Math.random() * I); w.start(); }));
  await sleep(D * 1000);
  await Promise.all(watchers.map((w) => w.stop()));
  const calls = watchers.reduce((a, w) => a + w.stats.polls, 0);
  const errors = watchers.reduce((a, w) => a + w.stats.errors, 0);
  const res: PollerResult = { pollers: N, nodesPerCall: K, intervalMs: I, seconds: D, calls, errors, latMs: lat.map(r1), cpuMs: cpuMs('self', true) };
  process.stdout.write(JSON.stringify(res) + '\n');
}

// ---- subscriber mode: J simulated jobs subscribed to one watchd, INSIDE the controller's namespace --

interface SubscriberResult { subscribers: number; nodesPerSub: number; seconds: number; connected: number; subscribeMs: number[]; notifications: number; stats?: WatchdStats }

async function subscriberMain(argv: string[]): Promise<void> {
  const [j, k, secs, host, port, keyFile, ...nodes] = argv;
  const J = Number(j), K = Number(k), D = Number(secs);
  const secret = readKeyFile(keyFile!);
  const peers: RpcPeer[] = [];
  const subscribeMs: number[] = [];
  let notifications = 0;
  for (let i = 0; i < J; i++) {
    const mine = Array.from({ length: K }, (_, x) => nodes[(i * K + x) % nodes.length]!);
    const p = await connectChannel({ host: host!, port: Number(port), secret, name: `bench-job-${i}`, timeoutMs: 5_000 });
    p.on('event', (n: string) => { if (n === 'watch.changes') notifications++; });
    p.start();
    const t = performance.now();
    await p.call('watch.subscribe', { nodes: mine }, { timeoutMs: 10_000 });
    subscribeMs.push(r1(performance.now() - t));
    peers.push(p);
  }
  await sleep(D * 1000);
  const stats = await peers[0]?.call<WatchdStats>('watch.stats', {}, { timeoutMs: 10_000 });
  for (const p of peers) p.close();
  const res: SubscriberResult = { subscribers: J, nodesPerSub: K, seconds: D, connected: peers.length, subscribeMs, notifications, ...(stats ? { stats } : {}) };
  process.stdout.write(JSON.stringify(res) + '\n');
}

// ---- helpers on the lab ----------------------------------------------------------------------

function slurmctldPid(lab: SlurmLab): number {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0] ?? '') === 'slurmctld' && argv.includes(lab.confFile)) return Number(d);
    } catch { /* gone */ }
  }
  throw new Error('slurmctld of the lab not found');
}
/** utime + stime of a process, in ms (+ cutime + cstime: its waited-for children, e.g. scontrol) */
function cpuMs(pid: number | 'self', children = false): number {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  const tck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  return ((Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0)) * 1000) / tck;
}
/** sdiag: REQUEST_NODE_INFO count and mean server time (µs); all RPCs by message type but sdiag's own */
async function sdiagNodeInfo(lab: SlurmLab): Promise<{ count: number; aveUs: number; allRpcs: number } | undefined> {
  const r = await lab.client(['sdiag']);
  const m = /REQUEST_NODE_INFO\s*\(\s*\d+\)\s*count:(\d+)\s+ave_time:(\d+)/.exec(r.stdout);
  const byType = r.stdout.split(/statistics by message type/)[1]?.split(/statistics by user/)[0] ?? '';
  let allRpcs = 0;
  for (const x of byType.matchAll(/^\s*([A-Z_0-9]+)\s*\(\s*\d+\)\s*count:(\d+)/gm)) if (x[1] !== 'REQUEST_STATS_INFO') allRpcs += Number(x[2]);
  if (!r.ok) return undefined;
  return { count: m ? Number(m[1]) : 0, aveUs: m ? Number(m[2]) : 0, allRpcs };
}

// ---- (load) ------------------------------------------------------------------------------------

interface LoadCase {
  pollers: number; nodesPerCall: number; intervalMs: number; seconds: number;
  offeredPerSec: number; callsPerSec: number; errors: number;
  latP50Ms: number; latP95Ms: number; latMaxMs: number;
  slurmctldCpuMs: number; slurmctldCpuMsPer1000: number; slurmctldCpuPct: number;
  sdiagCount?: number; sdiagAveUs?: number; loadavg1: number;
}

async function loadPart(o: Opts): Promise<{ nodes: number; cases: LoadCase[] }> {
  const lab = await startSlurmLab({ nodes: o.loadNodes, name: `bl${process.pid.toString(36)}`.slice(0, 16), temporary: true, log: () => undefined });
  const cases: LoadCase[] = [];
  try {
    const names = lab.nodes.map((n) => n.name);
    const ctl = slurmctldPid(lab);
    const grid: Array<[number, number, number]> = [
      [1, 4, 1000], [1, o.loadNodes, 1000],
      [8, 4, 1000], [32, 4, 1000], [64, 4, 1000],
      [8, 16, 1000], [32, 16, 1000],
      [8, 4, 250], [32, 4, 250],
    ];
    for (const [N, K, I] of grid) {
      await lab.client(['sdiag', '--reset']);
      await sleep(300);
      const c0 = cpuMs(ctl);
      const r = await lab.client([process.execPath, path.join(repoRoot(), 'dist', 'bench', 'events.js'), '--poller', String(N), String(K), String(I), String(o.loadSeconds), ...names], { timeoutMs: (o.loadSeconds + 120) * 1000 });
      const c1 = cpuMs(ctl);
      if (!r.ok) throw new Error(`poller failed: ${r.stderr.slice(-500)}`);
      const p = JSON.parse(r.stdout.trim().split('\n').pop()!) as PollerResult;
      const sd = await sdiagNodeInfo(lab);
      const cpu = c1 - c0;
      const c: LoadCase = {
        pollers: N, nodesPerCall: K, intervalMs: I, seconds: o.loadSeconds,
        offeredPerSec: r1((N * 1000) / I), callsPerSec: r1(p.calls / o.loadSeconds), errors: p.errors,
        latP50Ms: r1(pct(p.latMs, 50)), latP95Ms: r1(pct(p.latMs, 95)), latMaxMs: r1(Math.max(...p.latMs)),
        slurmctldCpuMs: r1(cpu), slurmctldCpuMsPer1000: r1((cpu / Math.max(1, p.calls)) * 1000), slurmctldCpuPct: r1((cpu / (o.loadSeconds * 1000)) * 100),
        ...(sd ? { sdiagCount: sd.count, sdiagAveUs: sd.aveUs } : {}), loadavg1: load1(),
      };
      cases.push(c);
      say(`load: ${N} pollers x ${K} nodes every ${I} ms: ${c.callsPerSec}/s (offered ${c.offeredPerSec}), p50 ${c.latP50Ms} ms p95 ${c.latP95Ms} ms, slurmctld ${c.slurmctldCpuMsPer1000} ms CPU / 1000 calls (${c.slurmctldCpuPct}% of a core), sdiag ${sd?.aveUs ?? '?'} µs/RPC`);
    }
  } finally {
    await lab.stop();
  }
  return { nodes: o.loadNodes, cases };
}

// ---- (watchd) ----------------------------------------------------------------------------------

interface WatchdCase {
  mode: 'idle' | 'per-job polling' | 'watchd';
  jobs: number; nodesPerJob: number; intervalMs: number; seconds: number;
  /** slurmctld CPU ms per second of wall time (/proc utime+stime) */
  slurmctldCpuMsPerSec: number; slurmctldCpuPct: number;
  /** sdiag REQUEST_NODE_INFO over the case */
  sdiagCount?: number; sdiagPerSec?: number; sdiagAveUs?: number;
  /** every RPC slurmctld served (sdiag, by message type, but sdiag's own REQUEST_STATS_INFO), per second */
  allRpcsPerSec?: number;
  /** the polling side: J pollers (one process) or watchd, with their scontrol children; ms per second */
  clientCpuMsPerSec?: number;
  /** per-job polling: calls/s; watchd: its polls/s */
  scontrolCallsPerSec?: number;
  /** watchd: subscribe round trip p50 / max, notifications received, watchd's mean poll time */
  subscribeP50Ms?: number; subscribeMaxMs?: number; notifications?: number; watchdMeanPollMs?: number; errors?: number;
  loadavg1: number;
}

interface WatchdPart { when: string; machine: string; nodes: number; seconds: number; cases: WatchdCase[] }

async function watchdPart(o: Opts, machine: string): Promise<WatchdPart> {
  const when = new Date().toISOString();
  const lab = await startSlurmLab({ nodes: o.loadNodes, name: `bw${process.pid.toString(36)}`.slice(0, 16), temporary: true, log: () => undefined });
  const cases: WatchdCase[] = [];
  const D = o.watchdSeconds;
  const K = 4;
  let wd: ReturnType<typeof spawn> | undefined;
  try {
    const names = lab.nodes.map((n) => n.name);
    const ctl = slurmctldPid(lab);
    const events = path.join(repoRoot(), 'dist', 'bench', 'events.js');
    const measure = async (fn: () => Promise<void>): Promise<{ wallS: number; ctlMs: number; sd?: { count: number; aveUs: number; allRpcs: number } }> => {
      await lab.client(['sdiag', '--reset']);
      await sleep(300);
      const t0 = performance.now();
      const c0 = cpuMs(ctl);
      await fn();
      const c1 = cpuMs(ctl);
      const wallS = (performance.now() - t0) / 1000;
      const sd = await sdiagNodeInfo(lab);
      return { wallS, ctlMs: c1 - c0, ...(sd ? { sd } : {}) };
    };
    const base = (mode: WatchdCase['mode'], jobs: number, m: Awaited<ReturnType<typeof measure>>): WatchdCase => ({
      mode, jobs, nodesPerJob: K, intervalMs: 1000, seconds: r1(m.wallS),
      slurmctldCpuMsPerSec: r1(m.ctlMs / m.wallS), slurmctldCpuPct: r1((m.ctlMs / m.wallS / 1000) * 100),
      ...(m.sd ? { sdiagCount: m.sd.count, sdiagPerSec: r1(m.sd.count / m.wallS), sdiagAveUs: m.sd.aveUs, allRpcsPerSec: r1(m.sd.allRpcs / m.wallS) } : {}),
      loadavg1: load1(),
    });

    // idle: nothing polls (slurmctld's own background work)
    const idle = await measure(() => sleep(D * 1000));
    cases.push(base('idle', 0, idle));
    say(`watchd: idle: slurmctld ${cases[cases.length - 1]!.slurmctldCpuMsPerSec} ms CPU/s`);

    // J jobs, each polling its own 4 nodes every second (what symrun does without a watcher)
    for (const J of o.watchdJobs) {
      let p: PollerResult | undefined;
      const m = await measure(async () => {
        const r = await lab.client([process.execPath, events, '--poller', String(J), String(K), '1000', String(D), ...names], { timeoutMs: (D + 120) * 1000 });
        if (!r.ok) throw new Error(`poller failed: ${r.stderr.slice(-500)}`);
        p = JSON.parse(r.stdout.trim().split('\n').pop()!) as PollerResult;
      });
      const c: WatchdCase = { ...base('per-job polling', J, m), clientCpuMsPerSec: p?.cpuMs !== undefined ? r1(p.cpuMs / m.wallS) : undefined, scontrolCallsPerSec: r1(p!.calls / m.wallS), errors: p!.errors };
      cases.push(c);
      say(`watchd: ${J} jobs polling: slurmctld ${c.slurmctldCpuMsPerSec} ms CPU/s, ${c.sdiagPerSec} node-info RPC/s (${c.sdiagAveUs} µs), pollers ${c.clientCpuMsPerSec} ms CPU/s`);
    }

    // one watchd (all nodes, every second), J subscriber connections
    const keyFile = path.join(lab.workDir, 'watchd.key');
    initKeyFile(keyFile);
    const port = SLURM_DEFAULTS.watchdPort;
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('SLURM') && k !== 'NODE_OPTIONS') env[k] = v;
    env.SLURM_CONF = lab.confFile;
    env.PATH = `${env.PATH ?? ''}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
    const logFile = path.join(lab.workDir, 'watchd.log');
    const log = fs.openSync(logFile, 'a');
    wd = spawn('nsenter', ['-t', String(lab.controllerPid), '-n', '-u', '--', symrunPath, 'watchd', '--listen', `${lab.controllerIp}:${port}`, '--key', keyFile, '--interval', '1s'], { env, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    for (let i = 0; i < 100 && !/listening on/.test(fs.readFileSync(logFile, 'utf8')); i++) await sleep(100);
    if (!/listening on/.test(fs.readFileSync(logFile, 'utf8'))) throw new Error(`watchd did not start: ${fs.readFileSync(logFile, 'utf8').slice(-500)}`);
    await sleep(2_000);
    for (const J of o.watchdJobs) {
      let sr: SubscriberResult | undefined;
      let w0 = 0, w1 = 0;
      const m = await measure(async () => {
        w0 = cpuMs(wd!.pid!, true);
        const r = await lab.client([process.execPath, events, '--subscriber', String(J), String(K), String(D), lab.controllerIp, String(port), keyFile, ...names], { timeoutMs: (D + 120) * 1000 });
        w1 = cpuMs(wd!.pid!, true);
        if (!r.ok) throw new Error(`subscribers failed: ${r.stderr.slice(-500)}`);
        sr = JSON.parse(r.stdout.trim().split('\n').pop()!) as SubscriberResult;
      });
      const c: WatchdCase = {
        ...base('watchd', J, m), clientCpuMsPerSec: r1((w1 - w0) / m.wallS), scontrolCallsPerSec: m.sd ? r1(m.sd.count / m.wallS) : undefined,
        subscribeP50Ms: r1(pct(sr!.subscribeMs, 50)), subscribeMaxMs: r1(Math.max(...sr!.subscribeMs)), notifications: sr!.notifications,
        watchdMeanPollMs: sr!.stats?.meanMs, errors: sr!.stats?.errors,
      };
      cases.push(c);
      say(`watchd: 1 watchd, ${J} subscribers: slurmctld ${c.slurmctldCpuMsPerSec} ms CPU/s, ${c.sdiagPerSec} node-info RPC/s (${c.sdiagAveUs} µs), watchd ${c.clientCpuMsPerSec} ms CPU/s, subscribe p50 ${c.subscribeP50Ms} ms`);
    }
  } finally {
    if (wd && wd.exitCode === null) {
      wd.kill('SIGTERM');
      await Promise.race([new Promise((r) => wd!.once('exit', r)), sleep(5_000)]);
    }
    await lab.stop();
  }
  return { when, machine, nodes: o.loadNodes, seconds: D, cases };
}

// ---- (latency) ---------------------------------------------------------------------------------

interface Trial { path: 'poll' | 'push'; pollIntervalMs: number; node: string; seenMs: number; startedMs: number; migrationMs?: number; outcome?: string; drainVisibleMs?: number }

async function waitMigration(lab: SlurmLab, count: number, timeoutMs: number): Promise<StatusJson> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await status(lab);
    const ms = st.migrations.filter((m) => m.vm === 'vm2');
    if (ms.length >= count && ms[count - 1]!.result) return st;
    if (Date.now() > deadline) throw new Error(`migration ${count} of vm2 did not finish in ${timeoutMs} ms`);
    await sleep(300);
  }
}

async function latencyPart(o: Opts): Promise<Trial[]> {
  const hc = fs.mkdtempSync('/var/tmp/symrun-bench-ev-');
  fs.mkdirSync(path.join(hc, 'health.d'));
  fs.writeFileSync(path.join(hc, 'health.d', '10-fabric'), `#!/bin/sh\nif [ -e ${hc}/fail-$(hostname) ]; then echo "fabric link down"; exit 1; fi\nexit 0\n`, { mode: 0o755 });
  const wrapper = path.join(hc, 'healthcheck');
  fs.writeFileSync(wrapper, `#!/bin/sh\nSYMRUN_HEALTH_DIR=${hc}/health.d exec ${path.join(repoRoot(), 'slurm-plugins', 'healthcheck', 'symrun-healthcheck')}\n`, { mode: 0o755 });
  const lab = await startSlurmLab({ nodes: 4, name: `be${process.pid.toString(36)}`.slice(0, 16), temporary: true, healthCheckProgram: wrapper, healthCheckInterval: 2, log: () => undefined });
  const trials: Trial[] = [];
  try {
    for (const iv of [1000, 250]) {
      const cfg = path.join(lab.workDir, `symrun-poll${iv}.yaml`);
      fs.writeFileSync(cfg, `slurm:\n  pollInterval: ${iv}ms\n`);
      const job: RingJob = await submitRingJob(lab, `bench${iv}-${process.pid}`, ['--spares', '1', '--config', cfg]);
      const ended = async () => {
        const j = await lab.showJob(job.jobId).catch(() => undefined);
        return j && j.state !== 'RUNNING' && j.state !== 'PENDING' ? `job ${job.jobId} ended ${j.state}` : undefined;
      };
      await waitRing(job, 900_000, 50, ended);
      let count = 0;
      for (const kind of ['poll', 'push'] as const) {
        for (let r = 0; r < o.repeat; r++) {
          const st0 = await status(lab);
          const node = st0.vms.find((v) => v.name === 'vm2')!.host;
          const t0 = Date.now();
          if (kind === 'poll') await lab.drain(node, `bench ${r}`);
          else fs.writeFileSync(path.join(hc, `fail-${node}`), '');
          let drainVisibleMs: number | undefined;
          if (kind === 'push') { await lab.waitNodeState(node, /DRAIN/, 60_000); drainVisibleMs = Date.now() - t0; }
          count++;
          const st = await waitMigration(lab, count, 600_000);
          const m = st.migrations.filter((x) => x.vm === 'vm2')[count - 1]!;
          const ev = readEvents(job);
          const nodeEv = [...ev].reverse().find((e) => e.kind === 'policy' && e.data?.action === 'node' && e.data?.node === node && e.data?.condition === 'drain');
          const pol = ev.find((e) => e.kind === 'policy' && e.data?.action === 'migrate' && e.data?.op === m.op);
          const tr: Trial = {
            path: kind, pollIntervalMs: iv, node, seenMs: nodeEv ? Date.parse(nodeEv.ts) - t0 : NaN, startedMs: pol ? Date.parse(pol.ts) - t0 : NaN,
            migrationMs: m.result?.totalMs, outcome: m.result?.outcome, ...(drainVisibleMs !== undefined ? { drainVisibleMs } : {}),
          };
          trials.push(tr);
          say(`latency: ${kind} (poll ${iv} ms) ${node}: seen ${tr.seenMs} ms, migration started ${tr.startedMs} ms, migration ${tr.migrationMs} ms ${tr.outcome}`);
          // make the node a spare again and wait until the job sees it ok (a health check run that
          // started before the flag file went away can drain it once more: resume until it stays ok)
          fs.rmSync(path.join(hc, `fail-${node}`), { force: true });
          if (kind === 'push') await sleep(3_000);
          await lab.undrain(node);
          const until = Date.now() + 120_000;
          for (;;) {
            const s = await status(lab);
            if (s.hosts.find((h) => h.name === node)?.usable) break;
            if (Date.now() > until) throw new Error(`${node} did not become a usable spare again`);
            if (/DRAIN/.test((await lab.showNode(node)).state)) await lab.undrain(node);
            await sleep(500);
          }
        }
      }
      const st = await status(lab);
      await stopRing(lab, job, st.jobId);
      const j = await lab.waitJob(job.jobId, ['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL'], 300_000);
      if (j.state !== 'COMPLETED') say(`job ${job.jobId} ended ${j.state}: ${readOut(job).slice(-800)}`);
    }
  } finally {
    await lab.stop();
    fs.rmSync(hc, { recursive: true, force: true });
  }
  return trials;
}

// ---- main --------------------------------------------------------------------------------------

interface Opts { parts: string[]; repeat: number; loadNodes: number; loadSeconds: number; watchdSeconds: number; watchdJobs: number[]; merge?: string; jsonOut?: string; mdOut?: string }

interface Result { when: string; machine: string; loadavg1End?: number; trials: Trial[]; load?: { nodes: number; cases: LoadCase[] }; watchd?: WatchdPart }

function markdown(res: Result): string {
  const L: string[] = ['# Event intake: drain -> migration started, and what polling costs slurmctld', '', `${res.when}; ${res.machine}.`, ''];
  if (res.trials.length) {
    L.push('## Latency (lab, TCG, 3 VMs + 1 spare; ms from the drain command / the check starting to fail)', '', '| path | pollInterval | n | drain seen by coordinator (median, min–max) | migration started (median, min–max) | migration total (median) |', '|---|---:|---:|---:|---:|---:|');
    for (const p of ['poll', 'push'] as const) for (const iv of [1000, 250]) {
      const ts = res.trials.filter((x) => x.path === p && x.pollIntervalMs === iv);
      if (!ts.length) continue;
      const f = (xs: number[]) => `${Math.round(med(xs))} (${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))})`;
      L.push(`| ${p === 'poll' ? 'poll (scontrol drain)' : 'push (health check, interval 2 s)'} | ${iv} ms | ${ts.length} | ${f(ts.map((x) => x.seenMs))} | ${f(ts.map((x) => x.startedMs))} | ${Math.round(med(ts.map((x) => x.migrationMs ?? NaN)))} |`);
    }
    L.push('');
  }
  if (res.load) {
    L.push(`## slurmctld load of polling (lab: ${res.load.nodes} nodes; N simulated coordinators, each one batched scontrol call per interval)`, '',
      '| coordinators | nodes per call | interval | offered calls/s | achieved calls/s | latency p50 / p95 / max (ms) | slurmctld CPU ms per 1000 calls | slurmctld CPU % of a core | sdiag µs per RPC |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of res.load.cases) L.push(`| ${c.pollers} | ${c.nodesPerCall} | ${c.intervalMs} ms | ${c.offeredPerSec} | ${c.callsPerSec} | ${c.latP50Ms} / ${c.latP95Ms} / ${c.latMaxMs} | ${c.slurmctldCpuMsPer1000} | ${c.slurmctldCpuPct} | ${c.sdiagAveUs ?? '?'} |`);
    L.push('');
  }
  if (res.watchd) {
    const w = res.watchd;
    const v = (x: number | undefined) => (x === undefined ? '–' : String(x));
    L.push(`## Per-job polling vs one symrun watchd (lab: ${w.nodes} nodes; J simulated jobs of ${w.cases[0]?.nodesPerJob ?? 4} nodes, 1 s; ${w.seconds} s per case)`, '',
      `${w.when}; ${w.machine}.`, '',
      '| jobs | node source | slurmctld CPU ms/s | slurmctld CPU % of a core | node-info RPCs/s (sdiag) | all RPCs/s (sdiag) | sdiag µs per node-info RPC | polling side CPU ms/s (incl. scontrol) | subscribe p50 / max (ms) |', '|---:|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of w.cases) {
      const src = c.mode === 'idle' ? 'none (idle baseline)' : c.mode === 'watchd' ? '1 watchd, J subscribers' : 'each job polls';
      L.push(`| ${c.jobs} | ${src} | ${c.slurmctldCpuMsPerSec} | ${c.slurmctldCpuPct} | ${v(c.sdiagPerSec)} | ${v(c.allRpcsPerSec)} | ${v(c.sdiagCount ? c.sdiagAveUs : undefined)} | ${v(c.clientCpuMsPerSec)} | ${c.subscribeP50Ms !== undefined ? `${c.subscribeP50Ms} / ${c.subscribeMaxMs}` : '–'} |`);
    }
    L.push('');
  }
  return L.join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--poller') return pollerMain(argv.slice(1));
  if (argv[0] === '--subscriber') return subscriberMain(argv.slice(1));
  let v;
  try {
    v = parseArgs({ args: argv, options: {
      parts: { type: 'string', default: 'latency,load,watchd' }, repeat: { type: 'string', default: '3' },
      'load-nodes': { type: 'string', default: '32' }, 'load-seconds': { type: 'string', default: '12' },
      'watchd-seconds': { type: 'string', default: '30' }, 'watchd-jobs': { type: 'string', default: '1,16,64' }, merge: { type: 'string' },
      'json-out': { type: 'string' }, 'md-out': { type: 'string' }, help: { type: 'boolean' },
    } }).values;
  } catch (e) { process.stderr.write(`${(e as Error).message}\n${USAGE}\n`); process.exit(2); }
  if (v.help) { process.stdout.write(USAGE + '\n'); return; }
  if (process.getuid?.() !== 0) { process.stderr.write('bench/events: needs root (the Slurm lab)\n'); process.exit(2); }
  const o: Opts = {
    parts: v.parts!.split(','), repeat: Number(v.repeat), loadNodes: Number(v['load-nodes']), loadSeconds: Number(v['load-seconds']),
    watchdSeconds: Number(v['watchd-seconds']), watchdJobs: v['watchd-jobs']!.split(',').map(Number), merge: v.merge, jsonOut: v['json-out'], mdOut: v['md-out'],
  };
  const when = new Date().toISOString();
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, load ${load1()} at start`;
  // --merge: the parts not run now come from the earlier result (its when/machine stay theirs)
  const prev: Result | undefined = o.merge ? JSON.parse(fs.readFileSync(o.merge, 'utf8')) as Result : undefined;
  const load = o.parts.includes('load') ? await loadPart(o) : prev?.load;
  const trials = o.parts.includes('latency') ? await latencyPart(o) : prev?.trials ?? [];
  const watchd = o.parts.includes('watchd') ? await watchdPart(o, machine) : prev?.watchd;
  const ranOld = o.parts.includes('load') || o.parts.includes('latency');
  const res: Result = {
    when: prev && !ranOld ? prev.when : when, machine: prev && !ranOld ? prev.machine : machine, loadavg1End: prev && !ranOld ? prev.loadavg1End : load1(),
    trials, ...(load ? { load } : {}), ...(watchd ? { watchd } : {}),
  };
  const json = JSON.stringify(res, null, 2) + '\n';
  const md = markdown(res);
  process.stdout.write(json);
  process.stderr.write(md + '\n');
  if (o.jsonOut) fs.writeFileSync(o.jsonOut, json);
  if (o.mdOut) fs.writeFileSync(o.mdOut, md + '\n');
}

main().catch((e) => { process.stderr.write(`bench/events: ${(e as Error).stack ?? e}\n`); process.exit(1); });
