// System test of the Slurm lab (test/cluster/slurm.ts): a real Slurm 22.05 cluster of namespace
// nodes, real jobs (srun, Open MPI), drain, node crash, restart, and a stop that leaves nothing behind.
// Needs root, slurm-wlm, munge, openmpi (bash scripts/setup). Never skips: a missing part fails and
// says how to install it. Prints the measurements a later benchmark wants (start, stop, scontrol latency).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { repoRoot } from '../../launcher/src/defaults.js';
import { nodeCondition, parseNodes } from '../../launcher/src/slurm/index.js';
import { cleanupStale, listLabs, startSlurmLab, LAB_ROOT, type SlurmLab } from '../cluster/slurm.js';

const MARKER = 'symrun-slurmlab-init';

async function prerequisites(): Promise<string[]> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('run the Slurm lab system test as root');
  const dirs = `${process.env.PATH ?? ''}:/usr/sbin:/usr/bin:/sbin:/bin`.split(':').filter(Boolean);
  const has = (cmd: string) => dirs.some((d) => fs.existsSync(path.join(d, cmd)));
  for (const [cmd, pkg] of [
    ['slurmctld', 'slurm-wlm'], ['slurmd', 'slurm-wlm'], ['sbatch', 'slurm-wlm'], ['srun', 'slurm-wlm'], ['scontrol', 'slurm-wlm'],
    ['munged', 'munge'], ['mpicc', 'libopenmpi-dev'], ['mpirun', 'openmpi-bin'],
    ['unshare', 'util-linux'], ['nsenter', 'util-linux'], ['ip', 'iproute2'], ['ping', 'iputils-ping'],
  ] as const) {
    if (!has(cmd)) missing.push(`install ${pkg} for \`${cmd}\` (bash scripts/setup does)`);
  }
  return missing;
}

/** Everything of the machine a lab could leave behind, to compare before/after. */
async function snapshot(): Promise<{ netns: string[]; links: string[]; mounts: string[]; marked: number[]; labs: string[] }> {
  const netns = (await execa('ip', ['netns', 'list'])).stdout.split('\n').filter(Boolean).sort();
  const links = (JSON.parse((await execa('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string }[]).map((l) => l.ifname).sort();
  const mounts = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').filter(Boolean).sort();
  const marked: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(MARKER)) marked.push(Number(d));
    } catch { /* gone */ }
  }
  return { netns, links, mounts, marked, labs: listLabs() };
}

function pidsIn(nsInodes: ReadonlySet<string>): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    for (const k of ['pid', 'net', 'mnt']) {
      try {
        if (nsInodes.has(fs.readlinkSync(`/proc/${d}/ns/${k}`))) {
          const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
          if (!st.slice(st.lastIndexOf(')') + 2).startsWith('Z')) out.push(Number(d));
          break;
        }
      } catch { /* gone */ }
    }
  }
  return out;
}

function nsInodesOf(lab: SlurmLab): Set<string> {
  const s = new Set<string>();
  for (const pid of [lab.controllerPid, ...lab.nodes.map((n) => n.pid)]) {
    for (const k of ['pid', 'net', 'mnt']) {
      try {
        s.add(fs.readlinkSync(`/proc/${pid}/ns/${k}`));
      } catch { /* gone */ }
    }
  }
  return s;
}

const labName = (p: string) => `${p}${process.pid.toString(36)}`.slice(0, 16);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

t.test('a 4-node Slurm lab: jobs, MPI, drain, crash, restart, clean stop', async (t) => {
  const missing = await prerequisites();
  if (missing.length > 0) {
    t.fail(`Slurm lab system test cannot run: ${missing.join('; ')}`);
    return;
  }
  const name = labName('t');
  const other = labName('u');
  const before = await snapshot();
  const hostBefore = (await execa('hostname')).stdout.trim();
  let lab: SlurmLab | undefined;
  let lab2: SlurmLab | undefined;
  t.teardown(async () => {
    await lab?.stop().catch(() => undefined);
    await lab2?.stop().catch(() => undefined);
    await cleanupStale(name).catch(() => undefined);
    await cleanupStale(other).catch(() => undefined);
  });
  const measured: Record<string, number | string> = {};

  // ---- start: every node idle ------------------------------------------------------------------
  let t0 = performance.now();
  lab = await startSlurmLab({ nodes: 4, name, temporary: true });
  measured.startMs = Math.round(performance.now() - t0);
  t.comment(`start 4 nodes: ${measured.startMs} ms (until every node IDLE)`);
  t.ok(Number(measured.startMs) < 10_000, 'started within 10 s');
  t.same(lab.nodes.map((n) => n.name), ['n1', 'n2', 'n3', 'n4']);
  t.equal(lab.controllerIp, '198.19.200.1');
  const nodes = await lab.showNodes();
  t.same(nodes.map((n) => [n.name, n.state, nodeCondition(n), n.addr, n.cpuTot]), lab.nodes.map((n) => [n.name, 'IDLE', 'ok', n.ip, 2]), 'all idle, each at its address with 2 CPUs');
  t.ok(fs.statSync(path.join(LAB_ROOT, name)).isDirectory(), 'state lives under /run/symrun-slurmlab/NAME');

  // ---- the nodes are separate hosts on one L2 segment ----------------------------------------
  const n1 = lab.node('n1');
  t.equal((await lab.exec('n1', ['hostname'])).stdout.trim(), 'n1', 'own hostname');
  t.equal((await execa('hostname')).stdout.trim(), hostBefore, 'machine hostname untouched');
  const br = JSON.parse((await lab.exec('n1', ['ip', '-j', 'addr', 'show', 'symbr0'])).stdout) as Array<{ address: string; addr_info: { local: string; prefixlen: number }[] }>;
  t.equal(br[0]!.addr_info[0]!.local, n1.ip, 'node IP on the bridge symbr0 (VM taps attach there)');
  t.equal(br[0]!.address, n1.mac, 'fixed MAC');
  t.equal((await lab.exec('n1', ['ip', '-o', 'link', 'show', 'master', 'symbr0'])).stdout.includes('up0'), true, 'uplink enslaved to symbr0');
  t.ok((await lab.exec('n1', ['ping', '-c1', '-W2', 'n4'])).ok, 'n1 reaches n4 by name');
  t.ok((await lab.exec('n4', ['ping', '-c1', '-W2', 'ctl'])).ok, 'n4 reaches the controller');
  await lab.exec('n1', ['sh', '-c', 'echo private > /tmp/slurmlab-probe']);
  t.notOk((await lab.exec('n2', ['test', '-e', '/tmp/slurmlab-probe'])).ok, '/tmp is private to each node');
  t.notOk(fs.existsSync('/tmp/slurmlab-probe'), 'and not the host /tmp');
  t.match((await lab.exec('n2', ['cat', '/etc/slurm/slurm.conf'])).stdout, `ClusterName=${name}`, '/etc/slurm on a node is the lab one');
  t.notOk(fs.existsSync('/etc/slurm/slurm.conf') && fs.readFileSync('/etc/slurm/slurm.conf', 'utf8').includes(`ClusterName=${name}`), 'the real /etc/slurm is untouched');

  // ---- scontrol show node -o latency (a running job polls this for drains) ----------------------
  const outside: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await lab.client(['scontrol', 'show', 'node', '-o']);
    outside.push(r.ms);
    t.equal(parseNodes(r.stdout).length, 4);
  }
  const inside = await lab.exec('n1', ['bash', '-c', 's=$(date +%s%N); for i in $(seq 50); do scontrol show node -o >/dev/null || exit 1; done; echo $(( ($(date +%s%N) - s) / 50000 ))']);
  t.ok(inside.ok, 'scontrol works inside a node');
  measured.scontrolNodeMsInsideNode = Number(inside.stdout.trim()) / 1000;
  measured.scontrolNodeMsViaNsenterMedian = Number(median(outside).toFixed(1));
  t.comment(`scontrol show node -o, 4 nodes: ${measured.scontrolNodeMsInsideNode} ms per call inside a node (mean of 50), ${measured.scontrolNodeMsViaNsenterMedian} ms median through nsenter+execa (20 calls)`);

  // ---- every node advertises 2 CPUs (overcommitted), so -N 4 fits; srun works from the controller --
  const srun4 = await lab.client(['srun', '-N4', 'hostname']);
  t.same(srun4.stdout.trim().split('\n').sort(), ['n1', 'n2', 'n3', 'n4'], `srun -N4 hostname from the controller (${srun4.stderr.trim()})`);

  // ---- a job on 3 nodes: srun hostname and a real Open MPI program ------------------------------
  const ring = path.join(lab.workDir, 'ring');
  await execa('mpicc', ['-O2', '-o', ring, path.join(repoRoot(), 'test/fixtures/mpi/ring.c')]);
  const script = `#!/bin/bash
echo "cwd=$(pwd)"
test -r ${repoRoot()}/package.json && echo repo-visible
echo "user=$(id -un)"
srun hostname | sort | sed 's/^/host=/'
mpirun --allow-run-as-root --mca btl tcp,self --mca btl_tcp_if_include symbr0 --mca oob_tcp_if_include symbr0 ./ring 20
srun --mpi=pmix ./ring 10
`;
  t0 = performance.now();
  const job1 = await lab.sbatch(script, { args: ['-N', '3', '-o', 'job1.out'] });
  const done1 = await lab.waitJob(job1, ['COMPLETED', 'FAILED', 'CANCELLED', 'NODE_FAIL', 'TIMEOUT'], 120_000);
  measured.mpiJobMs = Math.round(performance.now() - t0);
  const out1 = fs.readFileSync(path.join(lab.workDir, 'job1.out'), 'utf8');
  t.equal(done1.state, 'COMPLETED', `job ${job1} completed (output:\n${out1})`);
  t.same(done1.nodeList, ['n1', 'n2', 'n3']);
  t.match(out1, `cwd=${lab.workDir}`, 'the job runs in its submit directory');
  t.match(out1, 'repo-visible', 'the batch script sees the repo');
  t.match(out1, 'user=root', 'jobs run as root');
  t.same(out1.split('\n').filter((l) => l.startsWith('host=')), ['host=n1', 'host=n2', 'host=n3'], 'srun hostname on 3 nodes');
  const ranks = out1.split('\n').filter((l) => /^rank \d of 3 on n\d$/.test(l)).sort();
  t.same([...new Set(ranks)], ['rank 0 of 3 on n1', 'rank 1 of 3 on n2', 'rank 2 of 3 on n3'], 'one MPI rank per node, on the right node');
  t.equal(out1.split('\n').filter((l) => l.startsWith('ring OK: ranks=3')).length, 2, 'mpirun and srun --mpi=pmix both ran the ring correctly');
  t.notMatch(out1, /ring FAILED/);
  t.comment(`sbatch -N3 job (srun hostname + mpirun ring + srun --mpi=pmix ring): ${measured.mpiJobMs} ms submit to COMPLETED`);

  // ---- drain a node that runs a job: MIXED+DRAIN ----------------------------------------------
  const longScript = `#!/bin/bash
echo "nodelist=$SLURM_JOB_NODELIST"
srun --no-kill sleep 600 &
wait
`;
  const job2 = await lab.sbatch(longScript, { args: ['-N', '3', '--no-kill', '-o', 'job2.out'] });
  const running = await lab.waitJob(job2, ['RUNNING'], 30_000);
  t.same(running.nodeList, ['n1', 'n2', 'n3']);
  t.equal(running.batchHost, 'n1');
  await lab.waitNodeState('n2', /^MIXED$/, 10_000);
  t0 = performance.now();
  await lab.drain('n2', 'symrun test: evacuate n2');
  const drained = await lab.waitNodeState('n2', /DRAIN/, 10_000);
  measured.drainVisibleMs = Math.round(performance.now() - t0);
  t.equal(drained.state, 'MIXED+DRAIN', 'a drained node that runs a job shows MIXED+DRAIN');
  t.equal(nodeCondition(drained), 'drain');
  t.equal(drained.reason, 'symrun test: evacuate n2');
  t.equal((await lab.showJob(job2)).state, 'RUNNING', 'the job keeps running on a draining node');
  const sinfo = await lab.client(['sinfo', '-h', '-N', '-n', 'n2', '-o', '%T']);
  t.equal(sinfo.stdout.trim(), 'draining', 'sinfo calls it draining');

  // ---- crash a node of a --no-kill job: NOT_RESPONDING, DOWN, and the job drops it ----------------
  t0 = performance.now();
  await lab.crash('n3');
  measured.crashMs = Math.round(performance.now() - t0);
  t.equal(lab.node('n3').pid, 0, 'crashed node has no pid');
  t.notOk((await lab.exec('n1', ['ping', '-c1', '-W1', 'n3'])).ok, 'n3 is unreachable');
  const nr = await lab.waitNodeState('n3', /NOT_RESPONDING/, 30_000);
  measured.notRespondingAfterMs = Math.round(performance.now() - t0);
  t.ok(['not-responding', 'down'].includes(nodeCondition(nr)), `n3 ${nr.state}`);
  const down = await lab.waitNodeState('n3', /^DOWN/, 40_000);
  measured.downAfterMs = Math.round(performance.now() - t0);
  t.equal(down.state, 'DOWN+NOT_RESPONDING');
  t.equal(nodeCondition(down), 'down');
  t.comment(`crash n3: NOT_RESPONDING after ${measured.notRespondingAfterMs} ms, DOWN after ${measured.downAfterMs} ms (SlurmdTimeout=10)`);
  const survived = await lab.showJob(job2);
  t.equal(survived.state, 'RUNNING', 'the --no-kill job survives the node failure');
  t.same(survived.nodeList, ['n1', 'n2'], 'scontrol show job dropped the dead node');
  t.equal(survived.numNodes, 2);
  t.match(fs.readFileSync(path.join(lab.workDir, 'job2.out'), 'utf8'), 'nodelist=n[1-3]', 'the batch script saw n[1-3] at start');

  // ---- restart the node: it returns to service (ReturnToService=1) ------------------------------
  t0 = performance.now();
  const back = await lab.restart('n3');
  measured.restartMs = Math.round(performance.now() - t0);
  t.equal(back.state, 'IDLE', 'a node that went DOWN for not responding returns to service');
  t.ok(lab.node('n3').pid > 0);
  t.ok((await lab.exec('n1', ['ping', '-c1', '-W2', 'n3'])).ok, 'n3 reachable again (same IP and MAC)');
  await lab.undrain('n2');
  t.equal((await lab.waitNodeState('n2', /^MIXED$/, 10_000)).state, 'MIXED', 'undrain');
  await lab.client(['scancel', job2]);
  t.equal((await lab.waitJob(job2, ['CANCELLED'], 30_000)).state, 'CANCELLED');

  // ---- a second lab at the same time --------------------------------------------------------
  lab2 = await startSlurmLab({ nodes: 1, name: other, temporary: true });
  t.equal((await lab2.client(['sinfo', '-h', '-o', '%D %T'])).stdout.trim(), '1 idle', 'a second lab runs beside the first');
  t.equal((await lab.client(['sinfo', '-h', '-o', '%N'])).stdout.trim(), 'n[1-4]', 'the first one still answers');
  await lab2.stop();
  lab2 = undefined;
  t.equal((await lab.showNodes()).length, 4, 'stopping one lab leaves the other alone');

  // ---- stop: nothing left --------------------------------------------------------------------
  const ns = nsInodesOf(lab);
  t.ok(ns.size >= 15, 'namespaces of 5 inits recorded');
  t0 = performance.now();
  const report = await lab.stop();
  measured.stopMs = Math.round(performance.now() - t0);
  lab = undefined;
  t.comment(`stop: ${measured.stopMs} ms, killed ${report.killedPids.length} processes`);
  t.ok(Number(measured.stopMs) < 5_000, 'stopped within 5 s');
  const after = await snapshot();
  t.same(pidsIn(ns), [], 'no process left in any lab namespace');
  t.same(after.marked, [], 'no lab init process left');
  t.same(after.netns, before.netns, '`ip netns` unchanged');
  t.same(after.links, before.links, 'root-namespace links unchanged');
  t.same(after.mounts, before.mounts, 'host mounts unchanged');
  t.notOk(fs.existsSync(path.join(LAB_ROOT, name)), 'state directory removed');
  t.notOk(after.labs.includes(name) || after.labs.includes(other), 'no lab listed');

  t.comment(`slurm-lab measurements: ${JSON.stringify(measured)}`);
});

t.test('prolog, epilog, health check, and cleanupStale after a killed creator', async (t) => {
  const missing = await prerequisites();
  if (missing.length > 0) {
    t.fail(`Slurm lab system test cannot run: ${missing.join('; ')}`);
    return;
  }
  const name = labName('h');
  // scripts must be visible inside the nodes: not under /tmp (private per node)
  const dir = fs.mkdtempSync('/run/symrun-slurmlab-test-');
  t.teardown(async () => {
    await cleanupStale(name).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const write = (f: string, body: string) => {
    fs.writeFileSync(path.join(dir, f), body, { mode: 0o755 });
    return path.join(dir, f);
  };
  const prolog = write('prolog', `#!/bin/sh\necho "$SLURM_JOB_ID $SLURM_NODELIST \${SLURM_JOB_NODELIST:-unset}" > ${dir}/prolog.$(hostname)\n`);
  const epilog = write('epilog', `#!/bin/sh\necho "$SLURM_JOB_ID" > ${dir}/epilog.$(hostname)\n`);
  // no PATH and no SLURM_CONF in a health check (docs/lab-notes.md): absolute paths; /etc/slurm is the lab's
  const hc = write('healthcheck', `#!/bin/sh\nh=$(/bin/hostname)\n/bin/date +%s%N > ${dir}/hc.$h\nif [ -e ${dir}/sick.$h ]; then /usr/bin/scontrol update NodeName=$h State=DRAIN Reason="healthcheck: sick"; fi\nexit 0\n`);

  const lab = await startSlurmLab({ nodes: 2, name, prolog, epilog, healthCheckProgram: hc, healthCheckInterval: 2, temporary: true });
  const conf = fs.readFileSync(lab.confFile, 'utf8');
  t.match(conf, 'PrologFlags=Alloc');
  t.match(conf, 'HealthCheckInterval=2');

  const job = await lab.sbatch('#!/bin/sh\nsrun -N1 -w n1 true\n', { args: ['-N', '2', '-o', 'p.out'] });
  t.equal((await lab.waitJob(job, ['COMPLETED', 'FAILED'], 60_000)).state, 'COMPLETED');
  for (const n of ['n1', 'n2']) {
    t.equal(fs.readFileSync(path.join(dir, `prolog.${n}`), 'utf8').trim(), `${job} n[1-2] unset`, `prolog ran on ${n} (PrologFlags=Alloc) and sees SLURM_NODELIST only`);
  }
  const deadline = Date.now() + 10_000;
  while (!(fs.existsSync(path.join(dir, 'epilog.n1')) && fs.existsSync(path.join(dir, 'epilog.n2'))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.ok(fs.existsSync(path.join(dir, 'epilog.n2')), 'epilog ran on every node');

  const hcDeadline = Date.now() + 15_000;
  while (!fs.existsSync(path.join(dir, 'hc.n2')) && Date.now() < hcDeadline) await new Promise((r) => setTimeout(r, 100));
  t.ok(fs.existsSync(path.join(dir, 'hc.n2')), 'the health check runs on the nodes');
  fs.writeFileSync(path.join(dir, 'sick.n2'), '');
  const t0 = performance.now();
  const sick = await lab.waitNodeState('n2', /DRAIN/, 20_000);
  t.comment(`health check drained its node ${Math.round(performance.now() - t0)} ms after it turned sick (HealthCheckInterval=2)`);
  t.equal(sick.reason, 'healthcheck: sick');
  t.equal(nodeCondition(sick), 'drain');

  // a creator killed without stop(): cleanupStale finds the lab by its state dir and process markers
  const ns = nsInodesOf(lab);
  fs.rmSync(path.join(LAB_ROOT, name, 'state.json')); // even without its state file
  const reports = await cleanupStale(name);
  t.equal(reports.length, 1);
  t.ok(reports[0]!.killedPids.length >= 3, `killed ${reports[0]!.killedPids.length} processes`);
  t.same(pidsIn(ns), [], 'nothing left in its namespaces');
  t.notOk(fs.existsSync(path.join(LAB_ROOT, name)), 'state directory removed');
  const again = await cleanupStale(name);
  t.same(again.map((r) => [r.killedPids, r.removed]), [[[], []]], 'cleanupStale of a gone lab is a no-op');
});
