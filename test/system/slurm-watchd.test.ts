// Slurm mode with a cluster-wide node watcher: `symrun watchd` runs on the lab's controller, the ring
// job (3 VMs + 1 spare) subscribes to it (slurm.watcher). A drain of n2 reaches the job through watchd
// (the job makes no scontrol call of its own) and vm2 moves to the spare n4. The job is then given a
// fifth node (an expand allocation): watchd's squeue sees it, the job starts a host agent there (a new
// spare), still without a Slurm call of its own. Then watchd is stopped (SIGTERM) mid-job: the job says
// so, polls slurmctld itself, and still reacts to a drain of n3: vm3 moves to n5. The ring ends OK, the
// job COMPLETED.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { submitRingJob, waitRing, status, readOut, readEvents, symrunPath, type StatusJson, jobEnded, waitStatus, endRing } from '../fixtures/slurm-ring.js';
import { initKeyFile } from '../../launcher/src/slurm/watchd.js';
import { SLURM_DEFAULTS } from '../../launcher/src/defaults.js';

needRoot('the Slurm lab and the VMs need root');
for (const [c, p] of [['slurmctld', 'slurm-wlm'], ['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86'], ['nsenter', 'util-linux']] as const) need(c, p);

type WatchStatus = NonNullable<StatusJson['watch']> & {
  source?: string;
  watcher?: { address: string; state: string; connects: number; fallbacks: number; notifications: number; lastError?: string; daemon?: { polls: number; subscribers: number; meanMs: number } };
  allocation?: { intervalMs: number; checks: number; errors: number; updates: number; nodes?: string[] };
};
const watchOf = (st: StatusJson) => st.watch as WatchStatus | undefined;

/** `symrun watchd` inside the controller's network namespace (where slurmctld and the lab bridge are). */
function startWatchdOn(lab: SlurmLab, listen: string, keyFile: string, logFile: string): { child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('TAP') && !k.startsWith('SLURM') && k !== 'NODE_OPTIONS') env[k] = v;
  env.SLURM_CONF = lab.confFile;
  env.PATH = `${env.PATH ?? ''}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
  const log = fs.openSync(logFile, 'a');
  // nsenter without -p execs the program itself: the child's pid is watchd's
  const child = spawn('nsenter', ['-t', String(lab.controllerPid), '-n', '-u', '--', symrunPath, 'watchd', '--listen', listen, '--key', keyFile, '--json'], { env, stdio: ['ignore', log, log], cwd: lab.workDir });
  fs.closeSync(log);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  return { child, exited };
}

t.test('drain and a grown allocation seen through symrun watchd; watchd stopped mid-job -> the job polls itself and still reacts', async (t) => {
  const lab: SlurmLab = await startSlurmLab({ nodes: 5, name: `sw${process.pid.toString(36)}`.slice(0, 16), temporary: true });
  t.teardown(() => lab.stop());

  // watchd on the controller, its key in the lab's work directory (every node sees it)
  const keyFile = path.join(lab.workDir, 'watchd.key');
  t.equal(initKeyFile(keyFile).created, true, 'key created');
  t.equal(fs.statSync(keyFile).mode & 0o777, 0o600, 'key mode 0600');
  const listen = `${lab.controllerIp}:${SLURM_DEFAULTS.watchdPort}`;
  const wdLog = path.join(lab.workDir, 'watchd.log');
  const wd = startWatchdOn(lab, listen, keyFile, wdLog);
  t.teardown(() => { if (wd.child.exitCode === null && wd.child.signalCode === null) wd.child.kill('SIGKILL'); });
  const readWdLog = () => { try { return fs.readFileSync(wdLog, 'utf8'); } catch { return ''; } };
  for (let i = 0; i < 100 && !/listening on/.test(readWdLog()); i++) await sleep(100);
  t.match(readWdLog(), /"msg":"listening on 198\.19\.200\.1:6825/, 'watchd listens on the controller');

  const cfg = path.join(lab.workDir, 'symrun-watchd.yaml');
  fs.writeFileSync(cfg, `slurm:\n  watcher: "${listen}"\n  watcherKey: ${keyFile}\n`);
  const job = await submitRingJob(lab, `watchd${process.pid}`, ['--spares', '1', '--config', cfg]);
  const ended = jobEnded(lab, job);
  await waitRing(job, 900_000, 100, ended);
  const before = await status(lab);
  t.same(before.vms.map((v) => [v.name, v.host]), [['vm1', 'n1'], ['vm2', 'n2'], ['vm3', 'n3']], 'VMs on n1..n3');
  t.match(watchOf(before), { source: 'watcher', polls: 0, watcher: { address: listen, state: 'connected', connects: 1 } }, `status --json: the watcher is the source (${JSON.stringify(before.watch)})`);
  t.match(readOut(job), new RegExp(`symrun: watching the nodes through the node watcher ${listen.replace(/\./g, '\\.')}`), 'the job says it uses the watcher');

  // 1. drain n2: seen through watchd, vm2 -> n4
  const drainAt = Date.now();
  await lab.drain('n2', 'maint-a');
  let st = await waitStatus(lab, (s) => !!s.migrations.find((x) => x.vm === 'vm2')?.result, 600_000);
  const m = st.migrations.find((x) => x.vm === 'vm2');
  t.equal(m?.to, 'n4', 'vm2 moved to the spare');
  t.equal(m?.result?.outcome, 'done', `migration done (${JSON.stringify(m?.result)})`);
  t.match(m?.reason, /^node n2 DRAIN: maint-a/, `reason (${m?.reason})`);
  const w1 = watchOf(st);
  t.equal(w1?.source, 'watcher', 'still on the watcher');
  t.equal(w1?.polls, 0, 'the job made no scontrol call of its own');
  t.ok((w1?.watcher?.notifications ?? 0) >= 1, `watch.changes received (${w1?.watcher?.notifications})`);
  const ev = readEvents(job);
  const seen = ev.find((e) => e.kind === 'policy' && e.data?.action === 'node' && e.data?.node === 'n2');
  const started = ev.find((e) => e.kind === 'policy' && e.data?.action === 'migrate' && e.data?.vm === 'vm2');
  t.ok(seen && started, 'policy events: node change and migration');
  const seenMs = seen ? Date.parse(seen.ts) - drainAt : NaN;
  const startMs = started ? Date.parse(started.ts) - drainAt : NaN;
  t.ok(startMs < 5_000, `migration started ${startMs} ms after the drain`);
  st = await waitStatus(lab, (s) => watchOf(s)?.watcher?.daemon !== undefined, 15_000);
  const d = watchOf(st)?.watcher?.daemon;
  t.equal(d?.subscribers, 1, `watchd has one subscriber (${JSON.stringify(d)})`);
  t.comment(`MEASURE via watchd: drain -> seen by coordinator ${seenMs} ms; drain -> migration started ${startMs} ms; migration total ${m?.result?.totalMs} ms; watchd ${d?.polls} polls, mean ${d?.meanMs} ms`);

  // 2. the job is given n5: seen through watchd (squeue), n5 becomes a spare; the job asks Slurm nothing
  const growAt = Date.now();
  const grown = await lab.expandJob(job.jobId, 'n5');
  t.same(grown.nodeList, ['n1', 'n2', 'n3', 'n4', 'n5'], 'slurmctld: the job holds n5 too');
  st = await waitStatus(lab, (s) => !!s.hosts.find((h) => h.name === 'n5' && h.agent), 60_000);
  t.match(st.hosts.find((h) => h.name === 'n5'), { role: 'spare', agent: true, usable: true }, `n5 is a spare with a host agent (${JSON.stringify(st.hosts)})`);
  const wg = watchOf(st);
  t.match(wg, { source: 'watcher', polls: 0, allocation: { checks: 0 } }, `no scontrol call of the job's own: nodes or allocation (${JSON.stringify(wg)})`);
  t.ok((wg?.allocation?.updates ?? 0) >= 1, 'the allocation came from watchd');
  const addedEv = readEvents(job).find((e) => e.kind === 'policy' && e.data?.action === 'host-added' && e.data?.host === 'n5');
  t.ok(addedEv, 'host-added event');
  t.comment(`MEASURE via watchd: allocation grown -> host-added ${addedEv ? Date.parse(addedEv.ts) - growAt : NaN} ms; -> n5 usable in status ${Date.now() - growAt} ms (status poll 0.5 s)`);

  // 3. stop watchd: the job falls back to its own polling at once, and says so once
  const killAt = Date.now();
  wd.child.kill('SIGTERM');
  const ex = await Promise.race([wd.exited, sleep(10_000).then(() => undefined)]);
  t.same(ex, { code: 0, signal: null }, `watchd exits 0 on SIGTERM (${JSON.stringify(ex)})`);
  t.match(readWdLog(), /"msg":"SIGTERM: stopped after \d+ polls/, 'watchd logged its stop');
  st = await waitStatus(lab, (s) => watchOf(s)?.source === 'poll' && (watchOf(s)?.polls ?? 0) > 0, 30_000);
  const w2 = watchOf(st);
  t.match(w2, { source: 'poll', watcher: { state: /unreachable|connecting/, fallbacks: 1 } }, `status --json: own polling (${JSON.stringify(w2)})`);
  t.ok((w2?.polls ?? 0) > 0, `the job polls slurmctld itself (${w2?.polls} polls)`);
  const notice = `symrun: node watcher ${listen} unreachable (lost: connection closed): polling slurmctld myself every 1 s`;
  const out1 = readOut(job);
  t.ok(out1.includes(notice), `said on stderr: "${notice}"`);
  t.equal(out1.split(notice).length - 1, 1, 'said once');
  t.comment(`MEASURE watchd SIGTERM -> own polling visible in status ${Date.now() - killAt} ms (status poll 0.5 s)`);

  // 4. a second drain (n3), seen by the job's own polling: vm3 moves to n5, the node the job was given
  const drain2At = Date.now();
  await lab.drain('n3', 'maint-b');
  st = await waitStatus(lab, (s) => !!s.migrations.find((x) => x.vm === 'vm3')?.result, 300_000);
  const m3 = st.migrations.find((x) => x.vm === 'vm3');
  t.equal(m3?.to, 'n5', 'vm3 moved to n5');
  t.equal(m3?.result?.outcome, 'done', `migration done (${JSON.stringify(m3?.result)})`);
  t.match(m3?.reason, /^node n3 DRAIN: maint-b/, `reason (${m3?.reason})`);
  t.equal(watchOf(st)?.source, 'poll', 'still polling itself');
  const seen2 = readEvents(job).find((e) => e.kind === 'policy' && e.data?.action === 'node' && e.data?.node === 'n3');
  t.comment(`MEASURE own polling after fallback: drain -> seen by coordinator ${seen2 ? Date.parse(seen2.ts) - drain2At : NaN} ms; migration total ${m3?.result?.totalMs} ms`);
  t.same(st.vms.map((v) => [v.name, v.host]), [['vm1', 'n1'], ['vm2', 'n4'], ['vm3', 'n5']], 'placement');
  t.equal(readOut(job).split(notice).length - 1, 1, 'the fallback was said once, retries are silent');

  const itNow = await waitRing(job, 5_000, 0);
  await waitRing(job, 300_000, itNow + 200, ended);
  t.pass('the ring keeps running');
  const { job: j, out } = await endRing(lab, job, st.jobId);
  t.equal(j.state, 'COMPLETED', `batch job COMPLETED (output: ${out.slice(-2000)})`);
  t.match(out, /ring OK: ranks=3/, 'ring OK');
});
