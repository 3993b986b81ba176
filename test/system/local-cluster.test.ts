// System test of `symrun --local`: real namespaces, bridges and veths. Needs root, iproute2 and ping.
// Never skips: without them it fails and says what to install / how to run it.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { execa, type Options } from 'execa';
import {
  createLocalCluster, cleanupJob, findStaleJobs, deleteTap, ensureTap, netnsExecPrefix, statePath,
  type LocalCluster,
} from '../../launcher/src/local/index.js';
import { SymError } from '../../launcher/src/errors.js';
import { stateDir } from '../../launcher/src/local/state.js';

const indexJs = fileURLToPath(new URL('../../launcher/src/local/index.js', import.meta.url));

async function prerequisites(): Promise<string[]> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('run the local-mode system tests as root (sudo npx tap dist/test/system/local-cluster.test.js)');
  const has = async (cmd: string, args: string[]) => (await execa(cmd, args, { reject: false })).exitCode === 0;
  if (!(await has('ip', ['-V']))) missing.push('install iproute2 (apt-get install iproute2) for `ip`');
  if (!(await has('ping', ['-V']))) missing.push('install iputils-ping (apt-get install iputils-ping) for `ping`');
  if (!(await has('sysctl', ['-V']))) missing.push('install procps (apt-get install procps) for `sysctl`');
  return missing;
}

const jobTag = (p: string) => `${p}${process.pid.toString(36)}${Math.floor(Math.random() * 36 ** 2).toString(36)}`.slice(0, 8);

async function nsList(): Promise<string[]> {
  return (await execa('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
}
async function rootLinks(): Promise<string[]> {
  return (JSON.parse((await execa('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string }[]).map((l) => l.ifname);
}

/** Everything of one job that is still there. */
async function leftovers(jobId: string): Promise<string[]> {
  const left: string[] = [];
  for (const ns of await nsList()) if (ns.startsWith(`symrun-${jobId}-`)) left.push(`netns ${ns}`);
  for (const l of await rootLinks()) if (l === `sym-${jobId}` || l.includes(jobId)) left.push(`link ${l}`);
  if (fs.existsSync(statePath(jobId))) left.push(`file ${statePath(jobId)}`);
  for (const f of fs.existsSync(stateDir()) ? fs.readdirSync(stateDir()) : []) {
    if (f.startsWith('net-') && fs.readFileSync(`${stateDir()}/${f}`, 'utf8').trim() === jobId) left.push(`claim ${f}`);
  }
  return left;
}

function inNs(ns: string, argv: string[], opts: Options = {}) {
  const [file, ...pre] = netnsExecPrefix(ns);
  return execa(file!, [...pre, ...argv], { reject: false, ...opts });
}

async function ping(ns: string, ip: string): Promise<boolean> {
  return (await inNs(ns, ['ping', '-c1', '-W2', ip])).exitCode === 0;
}

t.test('local cluster of 4 hosts', async (t) => {
  const missing = await prerequisites();
  if (missing.length > 0) {
    t.fail(`local-mode system test cannot run: ${missing.join('; ')}`);
    return;
  }

  const jobId = jobTag('a');
  const other = jobTag('b');
  const made: LocalCluster[] = [];
  t.teardown(async () => {
    for (const c of made) await c.destroy().catch(() => undefined);
    for (const j of [jobId, other]) await cleanupJob(j).catch(() => undefined);
  });

  let t0 = performance.now();
  const c = await createLocalCluster({ jobId, hosts: 4 });
  const createMs = performance.now() - t0;
  made.push(c);
  t.comment(`create 4 hosts: ${createMs.toFixed(0)} ms, subnet ${c.subnet}`);
  t.ok(createMs < 5_000, `created in ${createMs.toFixed(0)} ms (target < 1 s)`);

  t.match(c.subnet, /^198\.1[89]\.\d+\.0\/24$/);
  t.equal(c.prefixLen, 24);
  const base = c.subnet.replace(/\.0\/24$/, '');
  t.equal(c.coordinatorIp, `${base}.1`);
  t.same(c.hosts.map((h) => h.name), ['host1', 'host2', 'host3', 'host4']);
  t.same(c.hosts.map((h) => h.ip), [11, 12, 13, 14].map((x) => `${base}.${x}`));
  t.same(c.hosts.map((h) => h.netns), [1, 2, 3, 4].map((i) => `symrun-${jobId}-h${i}`));
  t.equal(c.hosts[0]!.bridge, 'brfab');
  t.equal(c.guestIp(1), `${base}.101`);
  t.equal(c.guestIp(2), `${base}.102`);

  const state = JSON.parse(fs.readFileSync(statePath(jobId), 'utf8'));
  t.match(state, { ownerPid: process.pid, phase: 'ready', subnet: c.subnet });
  t.ok(state.namespaces.includes(`symrun-${jobId}-sw`));
  t.notOk((await findStaleJobs()).includes(jobId), 'a live job is not stale');

  t.test('hosts reach each other and the coordinator', async (t) => {
    t.ok(await ping(c.hosts[0]!.netns, c.hosts[3]!.ip), 'host1 -> host4');
    t.ok(await ping(c.hosts[3]!.netns, c.hosts[0]!.ip), 'host4 -> host1');
    for (const h of c.hosts) t.ok(await ping(h.netns, c.coordinatorIp), `${h.name} -> coordinator`);
    const lo = await inNs(c.hosts[1]!.netns, ['ping', '-c1', '-W2', '127.0.0.1']);
    t.equal(lo.exitCode, 0, 'lo is up in the host namespace');
  });

  t.test('no IPv6 on the created interfaces, fixed MACs', async (t) => {
    for (const ns of [c.switchNetns, c.hosts[0]!.netns]) {
      const v6 = await execa('ip', ['-n', ns, '-6', '-o', 'addr', 'show']);
      t.equal(v6.stdout.trim(), '', `no IPv6 addresses in ${ns}`);
    }
    for (const [ns, ifs] of [[c.hosts[0]!.netns, ['up0', 'brfab', 'lo']], [c.switchNetns, ['brsw', 'h1', 'coord']]] as const) {
      const r = await inNs(ns, ['sh', '-c', ifs.map((i) => `cat /proc/sys/net/ipv6/conf/${i}/disable_ipv6`).join(';')]);
      t.same(String(r.stdout).split('\n'), ifs.map(() => '1'), `IPv6 disabled on ${ifs.join(', ')} in ${ns}`);
    }
    t.equal(fs.readFileSync(`/proc/sys/net/ipv6/conf/${c.coordinatorLink}/disable_ipv6`, 'utf8').trim(), '1', 'and on the coordinator veth');
    if (fs.existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables')) {
      for (const ns of [c.switchNetns, c.hosts[0]!.netns]) {
        const r = await inNs(ns, ['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables', '/proc/sys/net/bridge/bridge-nf-call-arptables']);
        t.equal(String(r.stdout).replace(/\s+/g, ' ').trim(), '0 0', `br_netfilter loaded: bridged traffic not filtered in ${ns}`);
      }
    }
    const v6root = await execa('ip', ['-6', '-o', 'addr', 'show', 'dev', c.coordinatorLink]);
    t.equal(v6root.stdout.trim(), '', 'no IPv6 address on the coordinator veth');
    const br = JSON.parse((await execa('ip', ['-n', c.hosts[0]!.netns, '-j', 'link', 'show', 'dev', 'brfab'])).stdout)[0];
    const ipHex = c.hosts[0]!.ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join(':');
    t.equal(br.address, `02:53:${ipHex}`, 'host bridge MAC derives from its IP');
  });

  t.test('TCP from a host namespace to a listener on the coordinator IP', async (t) => {
    const server = net.createServer((s) => {
      s.once('data', (d) => s.end(`echo:${d.toString()}`));
    });
    await new Promise<void>((res, rej) => server.listen(0, c.coordinatorIp, res).once('error', rej));
    t.teardown(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const script = `const s=require('net').connect(${port},'${c.coordinatorIp}',()=>s.write('hi from host2'));` +
      `let b='';s.on('data',d=>b+=d);s.on('end',()=>{console.log(b);process.exit(0)});s.on('error',e=>{console.error(e.message);process.exit(1)});` +
      `setTimeout(()=>{console.error('timeout');process.exit(2)},5000)`;
    const r = await inNs(c.hosts[1]!.netns, [process.execPath, '-e', script]);
    t.equal(r.exitCode, 0, String(r.stderr));
    t.equal(String(r.stdout).trim(), 'echo:hi from host2');
  });

  t.test('ensureTap / deleteTap run inside a host namespace', async (t) => {
    const h = c.hosts[2]!;
    const script = `import { ensureTap, deleteTap } from ${JSON.stringify(indexJs)};` +
      `await ensureTap('tap-vm1', ${JSON.stringify(h.bridge)}); await ensureTap('tap-vm1', ${JSON.stringify(h.bridge)});` +
      `await ensureTap('tap-vm2', ${JSON.stringify(h.bridge)}); await deleteTap('tap-vm2'); await deleteTap('tap-vm2');`;
    const r = await inNs(h.netns, [process.execPath, '--input-type=module', '-e', script]);
    t.equal(r.exitCode, 0, `ensureTap in ${h.netns}: ${r.stderr}`);
    const links = JSON.parse((await execa('ip', ['-n', h.netns, '-j', '-d', 'link', 'show'])).stdout) as any[];
    const tap = links.find((l) => l.ifname === 'tap-vm1');
    t.ok(tap, 'tap exists');
    t.equal(tap?.master, h.bridge, 'attached to the host bridge');
    t.ok(tap?.flags.includes('UP'), 'up');
    t.equal(tap?.linkinfo?.info_data?.type, 'tap');
    t.notOk(links.some((l) => l.ifname === 'tap-vm2'), 'deleted tap is gone');
    const v6 = await inNs(h.netns, ['cat', '/proc/sys/net/ipv6/conf/tap-vm1/disable_ipv6']);
    t.equal(String(v6.stdout).trim(), '1', 'no IPv6 on the tap');
    // from outside, through ip -n
    await ensureTap('tap-vm3', h.bridge, { netns: h.netns });
    await ensureTap('tap-vm3', h.bridge, { netns: h.netns });
    const l3 = JSON.parse((await execa('ip', ['-n', h.netns, '-j', 'link', 'show', 'dev', 'tap-vm3'])).stdout)[0];
    t.equal(l3.master, h.bridge);
    await deleteTap('tap-vm3', { netns: h.netns });
    // a non-tap with that name is an error, not silently accepted
    await t.rejects(ensureTap('up0', h.bridge, { netns: h.netns }), { code: 'ESYM_TAP_FAILED' });
  });

  t.test('a second cluster at the same time gets its own subnet', async (t) => {
    const c2 = await createLocalCluster({ jobId: other, hosts: 2 });
    made.push(c2);
    t.not(c2.subnet, c.subnet);
    t.ok(await ping(c2.hosts[0]!.netns, c2.hosts[1]!.ip), 'second cluster works');
    t.ok(await ping(c.hosts[0]!.netns, c.hosts[1]!.ip), 'first one still works');
    const taken = await createLocalCluster({ jobId: jobTag('x'), hosts: 1, subnet: c.subnet }).then(
      () => undefined, (e: unknown) => e);
    t.ok(taken instanceof SymError && taken.code === 'ESYM_SUBNET_IN_USE' && taken.field === 'network.subnet',
      `explicit subnet of a running job refused: ${String(taken)}`);
    await c2.destroy();
    t.same(await leftovers(other), []);
  });

  t.test('two clusters created at the very same moment differ', async (t) => {
    const ids = [jobTag('p'), jobTag('q')];
    t.teardown(async () => { for (const j of ids) await cleanupJob(j).catch(() => undefined); });
    const [p, q] = await Promise.all(ids.map((jobId) => createLocalCluster({ jobId, hosts: 1 })));
    t.not(p!.subnet, q!.subnet);
    t.not(p!.subnet, c.subnet);
    await Promise.all([p!.destroy(), q!.destroy()]);
    for (const j of ids) t.same(await leftovers(j), [], `nothing left of ${j}`);
  });

  t.test('cancelling creation leaves nothing', async (t) => {
    for (const delay of [0, 15, 40]) {
      const j = jobTag('c');
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(new Error('cancelled by test')), delay);
      const r = await createLocalCluster({ jobId: j, hosts: 3, signal: ac.signal }).then((cl) => cl, (e: unknown) => e);
      clearTimeout(timer);
      if (!(r instanceof Error)) await (r as LocalCluster).destroy(); // finished before the abort
      t.same(await leftovers(j), [], `nothing left after abort at ${delay} ms (${r instanceof Error ? r.message : 'completed'})`);
    }
  });

  t.test('destroy stops processes left in the namespaces and leaves nothing', async (t) => {
    // a well-behaved and a SIGTERM-ignoring process, like a QEMU that does not quit
    const a = inNs(c.hosts[0]!.netns, ['sleep', '1000']);
    const b = inNs(c.hosts[1]!.netns, ['sh', '-c', 'trap "" TERM; sleep 1000 & wait']);
    await new Promise((r) => setTimeout(r, 200));
    t0 = performance.now();
    const report = await c.destroy();
    const destroyMs = performance.now() - t0;
    t.comment(`destroy 4 hosts: ${destroyMs.toFixed(0)} ms`);
    t.ok(destroyMs < 5_000, `destroyed in ${destroyMs.toFixed(0)} ms`);
    t.equal(report.namespaces.length, 5);
    t.same(report.links, [`sym-${jobId}`]);
    t.ok(report.files.includes(statePath(jobId)));
    t.ok(report.killedPids.length >= 2, `killed ${report.killedPids.join(',')}`);
    await Promise.all([a, b]);
    t.same(await leftovers(jobId), [], 'no namespace, link, state or claim left');
    t.same(await c.destroy(), report, 'destroy is idempotent');
    t.same(await cleanupJob(jobId), { namespaces: [], links: [], files: [], killedPids: [] }, 'cleanupJob is idempotent');
  });
});
