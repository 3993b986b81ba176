// Scale benchmark: the coordinator's own code against many simulated hosts, and watchd against a large
// cluster. No VMs, no Slurm: what is measured is symrun's coordination cost, which is what grows with the
// allocation (QEMU's transfer does not: each VM's is its own).
//
//   (round)  a job-wide quiesce/resume round, as a checkpoint or a freeze migration does it: the real
//            QuiesceGate over real GuestClients, whose frames travel as they do in a job (coordinator
//            -> job channel -> host agent -> guest and back). The host agents are fake (bench/scale-agents.ts,
//            a few processes, one real channel connection each) and answer at once. Per N: wall time
//            and the coordinator's CPU time of a round (median of R), coordinator RSS with N VMs attached.
//   (storm)  a drain storm: D = min(64, N) nodes drained at once. The real DrainPolicy and Migrations
//            (maxConcurrent, the shared freeze, the journal) against the fake agents (mig.perform takes
//            --perform-ms). Measured: time until every migration is admitted (started or queued), time
//            until all are done, the coordinator's CPU; checked: every drained VM moved, each exactly
//            once (mig.prepare per VM), every operation journaled as done.
//   (watchd) symrun watchd's poll of a 10,000-node cluster (recorded `scontrol show node -o` lines of Slurm
//            22.05, multiplied) with J = 1,000 subscriber jobs of 10 nodes each (subscriber processes,
//            real channel connections): CPU per poll without changes, and with 64 nodes drained the
//            time from the poll to the last subscriber's notification.
//
// A benchmark, not a test: nothing here asserts time. Writes bench/results/scale.{json,md} for the growth
// curve (default), or prints one JSON object for `--vms N --json`.
//   npm run bench:scale                                 N = 16, 64, 256, 1024; watchd part; writes results
//   npm run bench:scale -- --vms 1024 --json            one N, JSON on stdout (keys: vms,
//                                                       quiesceResumeRoundMs, drainStormMs, rssMB, ...)
//   options: --rounds R (default 5)  --workers W (default 4)  --perform-ms MS (default 20)
//            --max-concurrent C (default 4)  --no-watchd  --watchd-nodes K (10000)  --watchd-jobs J (1000)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { fork, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { repoRoot, DEFAULTS, PROTOCOL_DEFAULTS } from '../launcher/src/defaults.js';
import { serveChannel, type RpcPeer } from '../launcher/src/agent/channel.js';
import { GuestClient } from '../launcher/src/agent/guest.js';
import { QuiesceGate, Migrations, type JobAccess } from '../launcher/src/coordinator/migrate.js';
import { DrainPolicy } from '../launcher/src/coordinator/policy.js';
import { parseFaults } from '../launcher/src/coordinator/faults.js';
import { readJournal } from '../launcher/src/protocol/journal.js';
import type { OpResult } from '../launcher/src/protocol/executor.js';
import type { GuestFrame } from '../guest/protocol/index.js';
import type { NodeChange } from '../launcher/src/slurm/watch.js';
import { startWatchd } from '../launcher/src/slurm/watchd.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const AGENTS = path.join(HERE, 'scale-agents.js');
const say = (m: string) => process.stderr.write(`bench/scale: ${m}\n`);
const now = () => performance.timeOrigin + performance.now();
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const med = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
const r1 = (x: number) => Math.round(x * 10) / 10;
const rssMB = () => r1(process.memoryUsage().rss / 1024 / 1024);

interface Worker { child: ChildProcess; send(m: object): void; next<T>(key: string): Promise<T>; onMessage(fn: (m: Record<string, unknown>) => void): void }

/** A process of bench/scale-agents.ts, spoken to over IPC. */
function startWorker(): Worker {
  const child = fork(AGENTS, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map<string, Array<(v: unknown) => void>>();
  const listeners: Array<(m: Record<string, unknown>) => void> = [];
  child.on('message', (m: Record<string, unknown>) => {
    for (const l of listeners) l(m);
    for (const k of Object.keys(m)) { const w = waiting.get(k)?.shift(); if (w) w(m[k]); }
  });
  return {
    child,
    send: (m) => child.send(m),
    next: <T>(key: string) => new Promise<T>((resolve) => { if (!waiting.has(key)) waiting.set(key, []); waiting.get(key)!.push(resolve as (v: unknown) => void); }),
    onMessage: (fn) => { listeners.push(fn); },
  };
}

// ---- (round) + (storm) -------------------------------------------------------------------------

export interface CoordResult {
  vms: number;
  hosts: number;
  workers: number;
  attachMs: number;
  rssMB: number;
  quiesceResumeRoundMs: number;
  quiesceResumeRoundCpuMs: number;
  rounds: number[];
  drained: number;
  maxConcurrent: number;
  drainScheduleMs: number;
  drainStormMs: number;
  drainStormCpuMs: number;
  drainChecks: { moved: number; prepares: number; journaledDone: number; outcomes: Record<string, number> };
  /** per protocol phase of the storm's migrations: median and max (ms) */
  drainPhasesMs: Record<string, { median: number; max: number }>;
  agentCpuMs: number;
}

interface Vm { name: string; index: number; host: string; mac: string; ip: string; tap: string; client: GuestClient; state: string }

async function coordinatorPart(n: number, o: { rounds: number; workers: number; performMs: number; maxConcurrent: number }): Promise<CoordResult> {
  const drain = Math.min(64, n);
  const nHosts = n + drain;
  const secret = crypto.randomBytes(32).toString('hex');
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-scale-'));
  const peers = new Map<string, RpcPeer>();
  const vms = new Map<string, Vm>();
  for (let i = 1; i <= n; i++) {
    vms.set(`vm${i}`, { name: `vm${i}`, index: i, host: `h${i}`, mac: '52:54:00:00:00:01', ip: `198.18.${i >> 8}.${i & 255}`, tap: `t${i}`, client: new GuestClient(`vm${i}`), state: 'running' });
  }
  const hostList = Array.from({ length: nHosts }, (_, i) => ({ name: `h${i + 1}`, ip: '127.0.0.1', bridge: 'br0', spare: i >= n }));
  let policy: DrainPolicy | undefined;
  // as coordinator/job/vms.ts routes a host agent's events: only from the VM's current host
  const route = (p: RpcPeer, name: string, data: { vm?: string; up?: boolean; frame?: GuestFrame }) => {
    const vm = data?.vm ? vms.get(data.vm) : undefined;
    if (!vm || vm.host !== p.name) return;
    if (name === 'guest.frame') vm.client.receive(data.frame!);
    else if (name === 'guest.link') {
      if (data.up) vm.client.attach((frame) => peers.get(vm.host)!.notify('guest.send', { vm: vm.name, frame }));
      else vm.client.detach('link down');
    }
  };
  const server = await serveChannel({ host: '127.0.0.1', secret, onPeer: (p) => { peers.set(p.name, p); p.on('event', (name: string, data: Parameters<typeof route>[2]) => route(p, name, data)); p.start(); } });

  const t0 = now();
  const nw = Math.min(o.workers, nHosts);
  const workers = Array.from({ length: nw }, () => startWorker());
  const ready = workers.map((w) => w.next<number>('ready'));
  workers.forEach((w, k) => {
    const agents = hostList.filter((_, i) => i % nw === k).map((h) => ({ name: h.name, vms: [...vms.values()].filter((v) => v.host === h.name).map((v) => v.name) }));
    w.send({ cmd: 'start', host: '127.0.0.1', port: server.port, secret, agents, performMs: o.performMs });
  });
  await Promise.all(ready);
  await Promise.all([...vms.values()].map((v) => v.client.ready(120_000)));
  const attachMs = r1(now() - t0);
  const rss = rssMB();
  say(`N=${n}: ${nHosts} fake hosts in ${nw} processes, ${n} guests synced in ${attachMs} ms; RSS ${rss} MB`);

  const job: JobAccess = {
    id: 'jbench',
    runDir,
    migration: { mode: 'live', quiesce: 'freeze', maxBandwidthBytes: DEFAULTS.migration.maxBandwidthBytes, multifdChannels: 0, downtimeLimitMs: 300, deadlineActions: [...PROTOCOL_DEFAULTS.deadlineActions], maxConcurrent: o.maxConcurrent, tls: PROTOCOL_DEFAULTS.migrationTls, hooks: {} },
    device: async () => ({ kind: 'nic', id: DEFAULTS.interconnect.deviceId, netdevId: DEFAULTS.interconnect.netdevId, tap: 't', mac: '52:54:00:00:00:01', model: 'virtio-net-pci', bus: 'rp1' }),
    releaseDevice: async () => ({}),
    deviceKind: () => 'nic',
    vm: (name) => vms.get(name),
    vmNames: () => [...vms.keys()],
    hosts: () => hostList.map((h) => ({ ...h, usable: !policy?.unusable(h.name) })),
    peer: (h) => peers.get(h)!,
    spec: (name, host) => ({ name, runDir: path.join(runDir, host) }) as never,
    taps: () => [],
    failoverReady: () => false,
    setVmHost: (name, host) => { vms.get(name)!.host = host; },
    netConfigArgs: () => ({ name: 'symfab0', mac: '52:54:00:00:00:01', address: '198.18.0.1/24' }),
  };

  // (round)
  const gate = new QuiesceGate(job);
  const rounds: number[] = [];
  const roundCpu: number[] = [];
  for (let r = 0; r < o.rounds; r++) {
    const c0 = cpuMs();
    const w0 = now();
    const q = await gate.acquire(`r${r}`, 'freeze', 'vm1', new AbortController().signal, parseFaults(''));
    if ((q as { frozen?: number }).frozen !== n) throw new Error(`round ${r}: ${JSON.stringify(q)} frozen, expected ${n}`);
    await gate.release(`r${r}`, 'freeze', 'vm1');
    rounds.push(r1(now() - w0));
    roundCpu.push(r1(cpuMs() - c0));
  }
  say(`N=${n}: quiesce/resume round ${med(rounds)} ms (CPU ${med(roundCpu)} ms), rounds ${rounds.join(', ')}`);

  // (storm)
  const results: Array<Promise<OpResult>> = [];
  const phaseMs: Record<string, number[]> = {};
  const began = new Map<string, number>();
  const migrations = new Migrations(job, (e) => { const k = `${e.op}:${e.phase}`; if (e.event === 'begin') began.set(k, now()); else if (began.has(k)) (phaseMs[e.phase] ??= []).push(now() - began.get(k)!); }, parseFaults(''));
  policy = new DrainPolicy({
    vmsOn: (h) => [...vms.values()].filter((v) => v.host === h).map((v) => v.name), // as the job does (allocation.ts)
    isMigrating: (vm) => migrations.active(vm) !== undefined,
    canMigrate: () => true,
    migrate: (req) => { const s = migrations.migrate(req); results.push(s.done); return s; },
    event: () => undefined,
    say: () => undefined,
  });
  const drainedHosts = hostList.slice(0, drain).map((h) => h.name);
  const seenAt = Date.now();
  const changes: NodeChange[] = drainedHosts.map((node) => ({ node, condition: 'drain', previous: 'ok', state: 'MIXED+DRAIN', reason: 'bench: rack maintenance', seenAt }));
  const c0 = cpuMs();
  const s0 = now();
  policy.onChanges(changes);
  const drainScheduleMs = r1(now() - s0);
  // a migration that ends starts the policy's evaluate() again, which may admit more: wait for all
  const all: OpResult[] = [];
  while (all.length < results.length || results.length < drain) {
    const batch = results.slice(all.length);
    if (!batch.length) throw new Error(`only ${results.length} of ${drain} migrations were started`);
    all.push(...(await Promise.all(batch)));
  }
  const drainStormMs = r1(now() - s0);
  const drainStormCpuMs = r1(cpuMs() - c0);
  const drainPhasesMs = Object.fromEntries(Object.entries(phaseMs).map(([k, v]) => [k, { median: r1(med(v)), max: r1(Math.max(...v)) }]));
  const outcomes: Record<string, number> = {};
  for (const r of all) outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
  const moved = [...vms.values()].filter((v) => v.index <= drain && !drainedHosts.includes(v.host)).length;
  const stats = await Promise.all(workers.map((w) => { const p = w.next<{ calls: Record<string, number>; cpuMs: number }>('stats'); w.send({ cmd: 'stats' }); return p; }));
  const prepares = stats.reduce((s, x) => s + (x.calls['mig.prepare'] ?? 0), 0);
  const journaledDone = [...readJournal(migrations.journal.file).values()].filter((r) => r.kind === 'migrate' && r.phase === 'done').length;
  say(`N=${n}: drain storm of ${drain}: admitted in ${drainScheduleMs} ms, all done in ${drainStormMs} ms (CPU ${drainStormCpuMs} ms); moved ${moved}, mig.prepare ${prepares}, journaled done ${journaledDone}, outcomes ${JSON.stringify(outcomes)}`);

  for (const w of workers) w.send({ cmd: 'stop' });
  for (const v of vms.values()) v.client.close();
  await server.close({ graceMs: 200 });
  fs.rmSync(runDir, { recursive: true, force: true });
  return {
    vms: n, hosts: nHosts, workers: nw, attachMs, rssMB: rss,
    quiesceResumeRoundMs: med(rounds), quiesceResumeRoundCpuMs: med(roundCpu), rounds,
    drained: drain, maxConcurrent: o.maxConcurrent, drainScheduleMs, drainStormMs, drainStormCpuMs,
    drainChecks: { moved, prepares, journaledDone, outcomes }, drainPhasesMs,
    agentCpuMs: r1(stats.reduce((s, x) => s + x.cpuMs, 0)),
  };
}

// ---- (watchd) ----------------------------------------------------------------------------------

export interface WatchdResult {
  nodes: number; jobs: number; nodesPerJob: number; drained: number;
  pollCpuMs: number; pollCpuMsRuns: number[];
  changePollCpuMs: number; fanOutMs: number; notified: number; rssMB: number;
}

/** `scontrol show node -o` of K nodes from two recorded lines (an ok node and a drained one). */
function clusterText(k: number, drained: ReadonlySet<number>): string {
  const lines = fs.readFileSync(path.join(repoRoot(), 'test', 'fixtures', 'slurm', 'nodes-mixed-drain.txt'), 'utf8').split('\n');
  const ok = lines.find((l) => / State=MIXED /.test(l))!;
  const dr = lines.find((l) => / State=MIXED\+DRAIN /.test(l))!;
  const out: string[] = [];
  for (let i = 0; i < k; i++) {
    const name = `c${i}`;
    out.push((drained.has(i) ? dr : ok).replace(/NodeName=\S+/, `NodeName=${name}`).replace(/NodeHostName=\S+/, `NodeHostName=${name}`).replace(/drain n\d+/, `drain ${name}`));
  }
  return out.join('\n') + '\n';
}

async function watchdPart(o: { nodes: number; jobs: number; workers: number }): Promise<WatchdResult> {
  const perJob = 10;
  const drainedIdx = new Set(Array.from({ length: 64 }, (_, i) => i * perJob)); // one node of each of 64 jobs
  const quiet = clusterText(o.nodes, new Set());
  const storm = clusterText(o.nodes, drainedIdx);
  let text = quiet;
  const secret = crypto.randomBytes(32).toString('hex');
  const w = await startWatchd({ host: '127.0.0.1', port: 0, secret, intervalMs: 3_600_000, run: async () => text, runJobs: async () => '' });
  await w.daemon.pollOnce();
  const workers = Array.from({ length: Math.min(o.workers, o.jobs) }, () => startWorker());
  const arrivals: number[] = [];
  for (const wk of workers) wk.onMessage((m) => { if (typeof m.changedAt === 'number') arrivals.push(m.changedAt); });
  const ready = workers.map((wk) => wk.next<number>('subscribed'));
  workers.forEach((wk, k) => {
    const subs = Array.from({ length: o.jobs }, (_, j) => j).filter((j) => j % workers.length === k)
      .map((j) => ({ name: `job${j}`, nodes: Array.from({ length: perJob }, (_, x) => `c${(j * perJob + x) % o.nodes}`) }));
    wk.send({ cmd: 'subscribe', host: '127.0.0.1', port: w.server.port, secret, subs });
  });
  await Promise.all(ready);
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const c0 = cpuMs();
    const changes = await w.daemon.pollOnce();
    if (changes.length) throw new Error('a quiet poll saw changes');
    runs.push(r1(cpuMs() - c0));
  }
  text = storm;
  const expected = [...drainedIdx].filter((i) => i < o.jobs * perJob).length;
  const c0 = cpuMs();
  const t0 = now();
  const changes = await w.daemon.pollOnce();
  const changePollCpuMs = r1(cpuMs() - c0);
  if (changes.length !== drainedIdx.size) throw new Error(`expected ${drainedIdx.size} changes, saw ${changes.length}`);
  const deadline = Date.now() + 60_000;
  while (arrivals.length < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const fanOutMs = arrivals.length ? r1(Math.max(...arrivals) - t0) : NaN;
  const rss = rssMB();
  for (const wk of workers) wk.send({ cmd: 'stop' });
  await w.stop();
  const res = { nodes: o.nodes, jobs: o.jobs, nodesPerJob: perJob, drained: drainedIdx.size, pollCpuMs: med(runs), pollCpuMsRuns: runs, changePollCpuMs, fanOutMs, notified: arrivals.length, rssMB: rss };
  say(`watchd: ${o.nodes} nodes, ${o.jobs} subscribers: quiet poll ${res.pollCpuMs} ms CPU; 64 drained: poll ${changePollCpuMs} ms CPU, last of ${arrivals.length}/${expected} notified after ${fanOutMs} ms`);
  return res;
}

// ---- report ------------------------------------------------------------------------------------

function markdown(coord: CoordResult[], wd?: WatchdResult): string {
  const L: string[] = [];
  L.push('# bench/scale: the coordinator against many simulated hosts', '');
  L.push(`Run ${new Date().toISOString()} on ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}, load average ${os.loadavg()[0]!.toFixed(2)} at the end. Fake host agents (bench/scale-agents.ts) answer at once over real channel connections; see the header of bench/scale.ts for what is and is not simulated.`, '');
  L.push('## Job-wide quiesce/resume round and drain storm', '');
  L.push('| VMs | hosts | guests synced (ms) | coordinator RSS (MB) | round wall (ms) | round CPU (ms) | drained | admitted (ms) | storm done (ms) | storm CPU (ms) | moved / prepares / journaled |');
  L.push('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const c of coord) {
    L.push(`| ${c.vms} | ${c.hosts} | ${c.attachMs} | ${c.rssMB} | ${c.quiesceResumeRoundMs} | ${c.quiesceResumeRoundCpuMs} | ${c.drained} | ${c.drainScheduleMs} | ${c.drainStormMs} | ${c.drainStormCpuMs} | ${c.drainChecks.moved} / ${c.drainChecks.prepares} / ${c.drainChecks.journaledDone} |`);
  }
  if (coord.length > 1) {
    L.push('', 'Growth (each row against the first): a linear cost grows as the VM count does.', '');
    L.push('| VMs | x VMs | x round CPU | x round wall | x RSS |');
    L.push('| ---: | ---: | ---: | ---: | ---: |');
    const b = coord[0]!;
    for (const c of coord) L.push(`| ${c.vms} | ${r1(c.vms / b.vms)} | ${r1(c.quiesceResumeRoundCpuMs / b.quiesceResumeRoundCpuMs)} | ${r1(c.quiesceResumeRoundMs / b.quiesceResumeRoundMs)} | ${r1(c.rssMB / b.rssMB)} |`);
  }
  L.push('', `Drain storm: maxConcurrent ${coord[0]?.maxConcurrent}, every migration's mig.perform takes the fake's --perform-ms; with the freeze adapter each migration's quiesce and resume reach every VM of the job (the freeze is shared while migrations overlap).`);
  if (wd) {
    L.push('', '## symrun watchd', '');
    L.push('| nodes | subscriber jobs (nodes each) | quiet poll CPU (ms) | poll with 64 drained CPU (ms) | poll -> last notification (ms) | notified | RSS of watchd + the bench (MB) |');
    L.push('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    L.push(`| ${wd.nodes} | ${wd.jobs} (${wd.nodesPerJob}) | ${wd.pollCpuMs} | ${wd.changePollCpuMs} | ${wd.fanOutMs} | ${wd.notified} | ${wd.rssMB} |`);
    L.push('', 'The poll CPU is watchd parsing `scontrol show node -o` and diffing it (scontrol itself and slurmctld are not included: bench/events measures those on the Slurm lab).');
  }
  return L.join('\n') + '\n';
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      vms: { type: 'string' }, json: { type: 'boolean' }, rounds: { type: 'string' }, workers: { type: 'string' },
      'perform-ms': { type: 'string' }, 'max-concurrent': { type: 'string' }, 'no-watchd': { type: 'boolean' },
      'watchd-nodes': { type: 'string' }, 'watchd-jobs': { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (a.help) { process.stdout.write(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).join('\n') + '\n'); return; }
  const num = (v: string | undefined, d: number, name: string) => {
    if (v === undefined) return d;
    const x = Number(v);
    if (!Number.isInteger(x) || x < 1) { process.stderr.write(`bench/scale: --${name} must be a whole number >= 1, not ${JSON.stringify(v)}\n`); process.exit(2); }
    return x;
  };
  const o = { rounds: num(a.rounds, 5, 'rounds'), workers: num(a.workers, 4, 'workers'), performMs: num(a['perform-ms'], 20, 'perform-ms'), maxConcurrent: num(a['max-concurrent'], 4, 'max-concurrent') };
  const sizes = a.vms ? [num(a.vms, 0, 'vms')] : [16, 64, 256, 1024];
  const coord: CoordResult[] = [];
  for (const n of sizes) coord.push(await coordinatorPart(n, o));
  const wd = a['no-watchd'] || (a.vms && a.json) ? undefined : await watchdPart({ nodes: num(a['watchd-nodes'], 10_000, 'watchd-nodes'), jobs: num(a['watchd-jobs'], 1000, 'watchd-jobs'), workers: o.workers });
  if (a.vms && a.json) {
    process.stdout.write(JSON.stringify(coord[0]) + '\n');
    return;
  }
  const result = { at: new Date().toISOString(), cpus: os.cpus().length, loadavg: os.loadavg(), node: process.version, options: o, coordinator: coord, watchd: wd };
  const dir = path.join(repoRoot(), 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'scale.json'), JSON.stringify(result, null, 2) + '\n');
  fs.writeFileSync(path.join(dir, 'scale.md'), markdown(coord, wd));
  process.stdout.write(markdown(coord, wd));
  say(`wrote bench/results/scale.json and scale.md`);
}

main().then(() => process.exit(0), (e) => { process.stderr.write(`bench/scale: ${(e as Error).stack ?? e}\n`); process.exit(1); });
