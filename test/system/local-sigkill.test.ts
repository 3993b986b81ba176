// The owner of a local cluster is SIGKILLed (after creating it, and in the middle of creating it):
// findStaleJobs() lists the job and cleanupJob() removes everything, processes inside included.
import t from 'tap';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { cleanupJob, findStaleJobs, pidsInNetns, statePath } from '../../launcher/src/local/index.js';
import { stateDir } from '../../launcher/src/local/state.js';

const indexJs = fileURLToPath(new URL('../../launcher/src/local/index.js', import.meta.url));

async function prerequisites(): Promise<string[]> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('run the local-mode system tests as root (sudo npx tap dist/test/system/local-sigkill.test.js)');
  if ((await execa('ip', ['-V'], { reject: false })).exitCode !== 0) missing.push('install iproute2 (apt-get install iproute2) for `ip`');
  if ((await execa('sysctl', ['-V'], { reject: false })).exitCode !== 0) missing.push('install procps (apt-get install procps) for `sysctl`');
  return missing;
}

const jobTag = (p: string) => `${p}${process.pid.toString(36)}${Math.floor(Math.random() * 36 ** 2).toString(36)}`.slice(0, 8);

async function leftovers(jobId: string): Promise<string[]> {
  const left: string[] = [];
  const ns = (await execa('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!);
  for (const n of ns) if (n.startsWith(`symrun-${jobId}-`)) left.push(`netns ${n}`);
  const links = JSON.parse((await execa('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string }[];
  for (const l of links) if (l.ifname === `sym-${jobId}`) left.push(`link ${l.ifname}`);
  if (fs.existsSync(statePath(jobId))) left.push(`file ${statePath(jobId)}`);
  for (const f of fs.existsSync(stateDir()) ? fs.readdirSync(stateDir()) : []) {
    if (f.startsWith('net-') && fs.readFileSync(`${stateDir()}/${f}`, 'utf8').trim() === jobId) left.push(`claim ${f}`);
  }
  return left;
}

function owner(jobId: string, hosts: number) {
  // creates the cluster, starts a long-running process inside host1 (like QEMU), then waits forever
  const script = `import { createLocalCluster, netnsExecPrefix } from ${JSON.stringify(indexJs)};
import { spawn } from 'node:child_process';
const c = await createLocalCluster({ jobId: ${JSON.stringify(jobId)}, hosts: ${hosts} });
const [f, ...a] = netnsExecPrefix(c.hosts[0].netns);
spawn(f, [...a, 'sleep', '1000'], { stdio: 'ignore', detached: true }).unref();
setTimeout(() => console.log('ready'), 300);
setInterval(() => {}, 1000);`;
  return execa(process.execPath, ['--input-type=module', '-e', script], { reject: false, buffer: false, stdout: 'pipe' });
}

t.test('owner SIGKILLed after creating the cluster', async (t) => {
  const missing = await prerequisites();
  if (missing.length > 0) {
    t.fail(`local-mode system test cannot run: ${missing.join('; ')}`);
    return;
  }
  const jobId = jobTag('k');
  t.teardown(() => cleanupJob(jobId).catch(() => undefined));
  const child = owner(jobId, 3);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d; if (out.includes('ready')) resolve(); });
    child.once('exit', (code) => reject(new Error(`owner exited (${code}) before ready`)));
  });
  t.notOk((await findStaleJobs()).includes(jobId), 'not stale while the owner lives');
  const inside = pidsInNetns([`symrun-${jobId}-h1`]);
  t.ok(inside.length >= 1, `a process runs inside host1: ${inside.join(',')}`);
  child.kill('SIGKILL');
  await child;
  t.ok((await findStaleJobs()).includes(jobId), 'stale after the owner died');
  t.ok((await leftovers(jobId)).length > 0, 'its namespaces are still there');
  const report = await cleanupJob(jobId);
  t.equal(report.namespaces.length, 4);
  t.same(report.links, [`sym-${jobId}`]);
  for (const p of inside) t.ok(report.killedPids.includes(p), `process ${p} left inside was stopped`);
  for (const p of inside) t.notOk(fs.existsSync(`/proc/${p}/ns/net`), `process ${p} is gone`);
  t.same(await leftovers(jobId), [], 'nothing left');
  t.notOk((await findStaleJobs()).includes(jobId), 'no longer stale');
});

t.test('owner SIGKILLed in the middle of creating the cluster', async (t) => {
  const missing = await prerequisites();
  if (missing.length > 0) {
    t.fail(`local-mode system test cannot run: ${missing.join('; ')}`);
    return;
  }
  // kill as soon as creation reached a milestone: state file written (nothing else yet), namespaces
  // added, switch built (the root end of the coordinator veth exists)
  const milestones: [string, (jobId: string) => boolean][] = [
    ['state file', (j) => fs.existsSync(statePath(j))],
    ['namespaces', (j) => fs.existsSync(`/run/netns/symrun-${j}-sw`)],
    ['switch', (j) => fs.existsSync(`/sys/class/net/sym-${j}`)],
  ];
  for (const [name, reached] of milestones) {
    const jobId = jobTag('m');
    t.teardown(() => cleanupJob(jobId).catch(() => undefined));
    const child = owner(jobId, 8);
    const deadline = Date.now() + 20_000;
    while (!reached(jobId) && Date.now() < deadline) await sleep(1);
    t.ok(reached(jobId), `creation reached: ${name}`);
    child.kill('SIGKILL');
    await child;
    await sleep(300); // an `ip` the owner had started finishes on its own
    const before = await leftovers(jobId);
    t.comment(`killed at "${name}"; left: ${before.join(', ')}`);
    t.ok(before.length > 0, 'something was left to clean');
    t.ok((await findStaleJobs()).includes(jobId), 'listed as stale');
    await cleanupJob(jobId);
    t.same(await leftovers(jobId), [], `nothing left (killed at ${name})`);
  }
});
