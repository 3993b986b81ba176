// Control-plane load: what many users' requests and a flood of guest output do to one running job.
//
// A real ring job (test/fixtures/mpi/ring.c) on `symrun --local 2 --spares 1`; then, one after the other:
//   (a) status storm: S `status` requests, C at a time, each on its own control connection (connect,
//       the channel's handshake, call, close), the way `symrun status` does it: every answer must name
//       the job and its VMs; latency p50/p95/max, errors, the coordinator's RSS before and after;
//   (b) exec storm: E `symrun exec VM -- echo TOKEN` processes (the real command), P at a time, over both
//       VMs: every one must print exactly its own token and exit 0 (no output crossed or lost);
//   (c) output flood: one exec in vm1 writes F MiB to stdout while status requests keep coming: the bytes
//       received (all of them), throughput, the coordinator's peak RSS (sampled every 100 ms), the status
//       latency during the flood;
//   (d) migrate race: M migrate requests at once for both VMs with one spare: exactly one may run at a
//       time per free host; the others must be refused with a clear code (ESYM_BUSY, ESYM_NO_HOST ...),
//       none lost or half-done; the job's status agrees afterwards.
// Through all of it the ring keeps running: its iteration rate in each part is compared with the rate
// of the same job with no load, measured first in the same run (the baseline). The job must end with
// `ring OK`.
//
// A benchmark, not a test: it asserts nothing about time; it exits non-zero if a request was lost or
// answered wrongly, or the job's answer is wrong. Needs root (symrun --local). Writes
// results/control-load.{json,md} (or --out DIR).
//
//   npm run bench:control-load -- [--status 1000] [--concurrency 100] [--execs 100] [--flood-mib 64] [--out DIR]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { repoRoot } from '../launcher/src/defaults.js';
import { findJob } from '../launcher/src/cli/jobref.js';
import { cleanupJob } from '../launcher/src/local/cluster.js';
import { runSymrun } from '../test/fixtures/symrun-env.js';
import { startRingJob } from '../test/fixtures/ring-job.js';

const { values: o } = parseArgs({
  options: {
    status: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '100' },
    execs: { type: 'string', default: '100' },
    'exec-concurrency': { type: 'string', default: '10' },
    'flood-mib': { type: 'string', default: '64' },
    migrates: { type: 'string', default: '8' },
    out: { type: 'string' },
  },
});
const num = (k: keyof typeof o, min: number) => {
  const v = Number(o[k]);
  if (!Number.isInteger(v) || v < min) { process.stderr.write(`control-load: --${k} ${JSON.stringify(o[k])}: give a whole number >= ${min}\n`); process.exit(2); }
  return v;
};
const S = num('status', 1), C = num('concurrency', 1), E = num('execs', 1), P = num('exec-concurrency', 1), F = num('flood-mib', 1), M = num('migrates', 2);
if (process.getuid?.() !== 0) { process.stderr.write('control-load: needs root (symrun --local creates network namespaces)\n'); process.exit(2); }

const say = (s: string) => process.stderr.write(`control-load: ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r1 = (x: number) => Math.round(x * 10) / 10;
const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s.length ? r1(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!) : NaN; };
const rssMB = (pid: number) => { try { return r1(Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024); } catch { return NaN; } };

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-ctlload-'));
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
const stopFile = path.join(work, 'stop');
const problems: string[] = [];
let running: { id: string; kill(): void } | undefined;

/** ring iterations per second over a window, from the job's own progress lines */
async function ringRate(job: { iterations(): number }, during: () => Promise<unknown>): Promise<{ rate: number; ms: number }> {
  const i0 = job.iterations();
  const t0 = performance.now();
  await during();
  const ms = performance.now() - t0;
  return { rate: r1(((job.iterations() - i0) * 1000) / ms), ms: Math.round(ms) };
}

async function pool<T>(n: number, conc: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(conc, n) }, async () => { while (next < n) { const i = next++; out[i] = await fn(i); } }));
  return out;
}

async function main(): Promise<number> {
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', '2', '--spares', '1'], stopFile, startTimeoutMs: 600_000 });
  running = job;
  const ref = await findJob(job.id);
  const statusOnce = async (): Promise<{ ms: number; ok: boolean; err?: string }> => {
    const t0 = performance.now();
    try {
      const peer = await ref.connect();
      try {
        const s = (await peer.call('status', {}, { timeoutMs: 120_000 })) as { jobId?: string; vms?: unknown[] };
        const ok = s.jobId === job.id && Array.isArray(s.vms) && s.vms.length === 2;
        return { ms: performance.now() - t0, ok, ...(ok ? {} : { err: `wrong answer: ${JSON.stringify(s).slice(0, 200)}` }) };
      } finally { peer.close(); }
    } catch (e) {
      return { ms: performance.now() - t0, ok: false, err: (e as Error).message };
    }
  };
  const first = await statusOnce();
  /** one status request on its own connection (the way `symrun status` asks) */
  const statusCall = async <T>(): Promise<T> => { const p = await ref.connect(); try { return await p.call<T>('status', {}, { timeoutMs: 120_000 }); } finally { p.close(); } };
  const coordPid = (await statusCall<{ pid: number }>()).pid;
  say(`job ${job.id}, coordinator pid ${coordPid}, RSS ${rssMB(coordPid)} MB; first status ${r1(first.ms)} ms`);

  const baseline = await ringRate(job, () => sleep(15_000));
  say(`baseline: ring ${baseline.rate} iterations/s`);

  // (a) status storm
  const rss0 = rssMB(coordPid);
  let storm: Array<{ ms: number; ok: boolean; err?: string }> = [];
  const aRate = await ringRate(job, async () => { storm = await pool(S, C, () => statusOnce()); });
  const aBad = storm.filter((x) => !x.ok);
  if (aBad.length) problems.push(`status storm: ${aBad.length} of ${S} failed or wrong (first: ${aBad[0]!.err})`);
  const a = { requests: S, concurrency: C, failed: aBad.length, p50Ms: pct(storm.map((x) => x.ms), 50), p95Ms: pct(storm.map((x) => x.ms), 95), maxMs: pct(storm.map((x) => x.ms), 100), rssBeforeMB: rss0, rssAfterMB: rssMB(coordPid), ringRate: aRate.rate, wallMs: aRate.ms };
  say(`(a) ${S} status (${C} at a time): failed ${a.failed}, p50 ${a.p50Ms} ms, p95 ${a.p95Ms} ms, max ${a.maxMs} ms; RSS ${a.rssBeforeMB} -> ${a.rssAfterMB} MB; ring ${a.ringRate}/s`);

  // (b) exec storm, the real command line
  let execs: Array<{ ok: boolean; ms: number; why?: string }> = [];
  const bRate = await ringRate(job, async () => {
    execs = await pool(E, P, async (i) => {
      const token = `tok-${i}-${Math.random().toString(36).slice(2, 8)}`;
      const r = await runSymrun(['exec', '--job', job.id, i % 2 ? 'vm2' : 'vm1', '--', 'echo', token], { cwd: work, timeoutMs: 300_000 });
      const ok = r.code === 0 && r.stdout === `${token}\n`;
      return { ok, ms: r.ms, ...(ok ? {} : { why: `exit ${r.code}, stdout ${JSON.stringify(r.stdout.slice(0, 100))}, stderr ${r.stderr.slice(-200)}` }) };
    });
  });
  const bBad = execs.filter((x) => !x.ok);
  if (bBad.length) problems.push(`exec storm: ${bBad.length} of ${E} wrong (first: ${bBad[0]!.why})`);
  const b = { execs: E, concurrency: P, wrong: bBad.length, p50Ms: pct(execs.map((x) => x.ms), 50), p95Ms: pct(execs.map((x) => x.ms), 95), maxMs: pct(execs.map((x) => x.ms), 100), ringRate: bRate.rate, rssAfterMB: rssMB(coordPid) };
  say(`(b) ${E} execs (${P} at a time): wrong ${b.wrong}, p50 ${b.p50Ms} ms, p95 ${b.p95Ms} ms; ring ${b.ringRate}/s`);

  // (c) output flood from vm1, with status requests during it
  let bytes = 0;
  let floodMs = 0;
  let exitStatus: number | undefined;
  let peakRss = rssMB(coordPid);
  const during: number[] = [];
  let duringBad = 0;
  const cRate = await ringRate(job, async () => {
    const peer = await ref.connect();
    let sid = '';
    const t0 = performance.now();
    let flooding = true;
    const sampler = (async () => { while (flooding) { peakRss = Math.max(peakRss, rssMB(coordPid)); await sleep(100); } })();
    const poller = (async () => { while (flooding) { const s = await statusOnce(); during.push(s.ms); if (!s.ok) duringBad++; await sleep(200); } })();
    await new Promise<void>((resolve, reject) => {
      peer.on('event', (name: string, d: { sid?: string; fd?: number; data?: string; status?: number }) => {
        if (d?.sid !== sid && d?.sid !== '') return;
        if (name === 'exec.out' && d.fd === 1) bytes += Buffer.from(d.data ?? '', 'base64').length;
        if (name === 'exec.exit') { exitStatus = Number(d.status); resolve(); }
      });
      peer.on('close', () => reject(new Error('the control connection closed during the flood')));
      peer.call<{ sid: string }>('exec.start', { vm: 'vm1', argv: ['dd', 'if=/dev/zero', 'bs=1048576', `count=${F}`] }).then((r) => { sid = r.sid; peer.notify('exec.in', { sid, eof: true }); }, reject);
    });
    floodMs = performance.now() - t0;
    flooding = false;
    await Promise.all([sampler, poller]);
    peer.close();
  });
  if (bytes !== F * 1048576 || exitStatus !== 0) problems.push(`flood: ${bytes} of ${F * 1048576} bytes, exit ${exitStatus}`);
  if (duringBad) problems.push(`flood: ${duringBad} status requests failed during it`);
  const c = { mib: F, bytesReceived: bytes, seconds: r1(floodMs / 1000), mbPerS: r1(bytes / 1048576 / (floodMs / 1000)), peakRssMB: peakRss, statusDuringP50Ms: pct(during, 50), statusDuringMaxMs: pct(during, 100), statusDuring: during.length, ringRate: cRate.rate };
  say(`(c) flood ${F} MiB: ${c.bytesReceived} bytes in ${c.seconds} s (${c.mbPerS} MiB/s), peak RSS ${c.peakRssMB} MB, status during it p50 ${c.statusDuringP50Ms} ms / max ${c.statusDuringMaxMs} ms; ring ${c.ringRate}/s`);

  // (d) migrate race: M requests at once over both VMs, one spare
  const results = await Promise.all(Array.from({ length: M }, (_, i) => runSymrun(['migrate', '--job', job.id, i % 2 ? 'vm2' : 'vm1', '--json'], { cwd: work, timeoutMs: 600_000 })));
  const outcomes: Record<string, number> = {};
  let done = 0;
  for (const r of results) {
    let key = `exit ${r.code}`;
    try { const j = JSON.parse(r.stdout); key = j.outcome ?? key; if (j.outcome === 'done') done++; } catch {
      const m = /"code":\s*"(ESYM_\w+)"|\((ESYM_\w+)\)|\b(ESYM_[A-Z_]+)\b/.exec(r.stderr);
      key = m ? (m[1] ?? m[2] ?? m[3])! : `exit ${r.code}: ${r.stderr.trim().split('\n').pop()?.slice(0, 120)}`;
    }
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  }
  const st = await statusCall<{ vms: Array<{ name: string; host: string; migrating?: string }>; hosts: Array<{ name: string; role: string }> }>();
  const unclear = Object.keys(outcomes).filter((k) => !/^(done|ESYM_\w+)$/.test(k));
  if (done < 1) problems.push(`migrate race: none of ${M} moved a VM (${JSON.stringify(outcomes)})`);
  if (unclear.length) problems.push(`migrate race: answers without an error code: ${unclear.join('; ')}`);
  if (st.vms.some((v) => v.migrating)) problems.push('migrate race: a VM still shows a migration afterwards');
  const d = { requests: M, done, outcomes, hostsAfter: Object.fromEntries(st.vms.map((v) => [v.name, v.host])) };
  say(`(d) ${M} migrates at once: ${JSON.stringify(outcomes)}; VMs now ${JSON.stringify(d.hostsAfter)}`);
  await job.stillRunning('the load', 180_000);

  const { code } = await job.stop();
  running = undefined;
  const answerRight = /ring OK: ranks=2 /.test(job.stdout());
  if (!answerRight || code !== 0) problems.push(`the job: exit ${code}, ring OK ${answerRight}`);

  const env = { cores: os.cpus().length, load: os.loadavg().map(r1), date: new Date().toISOString() };
  const res = { baseline: { ringRate: baseline.rate }, statusStorm: a, execStorm: b, flood: c, migrateRace: d, answerRight, exitCode: code, problems, env };
  const md = [
    `# control-plane load (${env.date.slice(0, 10)}, ${env.cores} cores, load ${env.load.join(' ')} at the end, TCG, --local 2 --spares 1)`,
    '',
    '| part | requests | failed / wrong | latency p50 / p95 / max | coordinator RSS | ring iterations/s (baseline ' + baseline.rate + ') |',
    '|---|---|---|---|---|---|',
    `| (a) status, ${C} at a time, a connection each | ${S} | ${a.failed} | ${a.p50Ms} / ${a.p95Ms} / ${a.maxMs} ms | ${a.rssBeforeMB} → ${a.rssAfterMB} MB | ${a.ringRate} |`,
    `| (b) symrun exec echo, ${P} at a time | ${E} | ${b.wrong} | ${b.p50Ms} / ${b.p95Ms} / ${b.maxMs} ms | ${b.rssAfterMB} MB | ${b.ringRate} |`,
    `| (c) ${F} MiB of guest output (+ status every 200 ms) | ${c.statusDuring} status | ${duringBad} | status ${c.statusDuringP50Ms} / - / ${c.statusDuringMaxMs} ms; flood ${c.mbPerS} MiB/s, all ${c.bytesReceived} bytes | peak ${c.peakRssMB} MB | ${c.ringRate} |`,
    `| (d) migrate, ${M} at once, one spare | ${M} | done ${done}; ${Object.entries(outcomes).filter(([k]) => k !== 'done').map(([k, n]) => `${k} ${n}`).join(', ') || 'no refusals'} | - | - | - |`,
    '',
    `The job ended with exit ${code}, ring OK: ${answerRight ? 'yes' : 'no'}. Problems: ${problems.length ? problems.join('; ') : 'none'}.`,
    '',
  ].join('\n');
  const dir = path.resolve(o.out ?? path.join(repoRoot(), 'bench', 'results'));
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'control-load.json'), JSON.stringify(res, null, 2) + '\n');
  fs.writeFileSync(path.join(dir, 'control-load.md'), md);
  process.stderr.write('\n' + md);
  process.stdout.write(JSON.stringify(res) + '\n');
  return problems.length ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  say(`failed: ${(e as Error).message}`);
} finally {
  // stopped early: nothing of the job stays behind
  if (running) { running.kill(); await cleanupJob(running.id).catch(() => undefined); }
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(code);
