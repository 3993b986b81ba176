// Two ordinary users on the Slurm lab with symrun's root node layer installed as a site does it
// (prolog, epilog, a node helper per node; docs/site-install.md):
//  - alice's job runs an MPI ring in VMs; symrun, its host agents and QEMU run as alice;
//  - `symrun status --job <Slurm id>` works for her from the login node (the lab's controller);
//    bob's status / cancel / exec of her job are refused, naming the owner;
//  - from inside alice's guest: her other guest answers; the node (slurmd's address) does not; bob's
//    guest (same nodes, his job) does not; a frame sent with another IP or another MAC is dropped;
//  - a drain moves her VM to a spare; after a checkpoint, the node it runs on is powered off and the
//    job restarts it from the checkpoint; the ring's answer is right;
//  - bob's job shares her nodes; `scancel` of it: the files its ranks had written are in his directory;
//    its epilog leaves her job's network, taps, records and run directory alone;
//  - after both jobs, every node is clean (no job interface, no nftables table, no record, no run dir).
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { symrunPath, untapEnv, JOB_DONE } from '../fixtures/slurm-ring.js';

needRoot('the Slurm lab, the users and the VMs need root');
for (const [c, p] of [['slurmctld', 'slurm-wlm'], ['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86'], ['nft', 'nftables'], ['setpriv', 'util-linux']] as const) need(c, p);

const plugins = path.join(repoRoot(), 'slurm-plugins');
const USERS = ['alice', 'bob'] as const;
type User = (typeof USERS)[number];

function ensureUser(u: User): { uid: number; gid: number } {
  try { execFileSync('id', ['-u', u], { stdio: 'ignore' }); } catch { execFileSync('useradd', ['-m', '-s', '/bin/bash', u]); }
  return { uid: Number(execFileSync('id', ['-u', u]).toString()), gid: Number(execFileSync('id', ['-g', u]).toString()) };
}

t.test('two users on shared nodes with the root node layer', async (t) => {
  const ids = Object.fromEntries(USERS.map((u) => [u, ensureUser(u)])) as Record<User, { uid: number; gid: number }>;
  const lab: SlurmLab = await startSlurmLab({
    nodes: 4, name: `mu${process.pid.toString(36)}`.slice(0, 16), temporary: true, nodeLayer: true,
    prolog: path.join(plugins, 'prolog', 'symrun-prolog'), epilog: path.join(plugins, 'epilog', 'symrun-epilog'),
  });
  t.teardown(() => lab.stop());
  const dirs = {} as Record<User, string>;
  for (const u of USERS) {
    dirs[u] = path.join(lab.workDir, u);
    fs.mkdirSync(dirs[u], { recursive: true });
    execFileSync('mpicc', ['-O2', '-o', path.join(dirs[u], 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
    execFileSync('chown', ['-R', `${ids[u].uid}:${ids[u].gid}`, dirs[u]]);
  }
  // nothing of the test runner (tap's NODE_OPTIONS and friends) reaches the users' symrun
  const env: Record<string, string | undefined> = { ...untapEnv(), PATH: '/usr/bin:/bin' };
  for (const k of Object.keys(process.env)) if (/tap/i.test(k) || k.startsWith('NODE_')) env[k] = undefined;
  /** a command as `u` on the login node (the lab's controller: Slurm clients, no slurmd) */
  const login = (u: User, argv: string[], timeoutMs = 300_000) => lab.client(argv, { user: u, env, cwd: dirs[u], timeoutMs });
  const sym = (u: User, args: string[], timeoutMs?: number) => login(u, [symrunPath, ...args], timeoutMs);
  const submit = async (u: User, script: string[], args: string[]) => {
    const f = path.join(dirs[u], `job-${Date.now()}.sh`);
    fs.writeFileSync(f, ['#!/bin/bash', ...script, ''].join('\n'), { mode: 0o755 });
    fs.chownSync(f, ids[u].uid, ids[u].gid);
    const r = await login(u, ['sbatch', '--parsable', '--comment=symrun', ...args, f]);
    t.equal(r.exitCode, 0, `${u} submits (${r.stderr.trim()})`);
    return r.stdout.trim().split(';')[0]!;
  };
  const read = (f: string) => { try { return fs.readFileSync(f, 'utf8'); } catch { return ''; } };
  const ring = (out: string) => Number([...read(out).matchAll(/ring iteration (\d+)/g)].pop()?.[1] ?? -1);
  const until = async (what: string, fn: () => boolean | Promise<boolean>, ms: number, log = () => '') => {
    const end = Date.now() + ms;
    while (!(await fn())) {
      if (Date.now() > end) throw new Error(`${what} did not happen within ${ms} ms\n${log().slice(-3000)}`);
      await sleep(500);
    }
  };
  const statusOf = async (u: User, job: string) => {
    const r = await sym(u, ['status', '--job', job, '--json'], 60_000);
    if (r.exitCode !== 0) throw new Error(`status --job ${job} as ${u}: ${r.stderr}`);
    return JSON.parse(r.stdout) as { state: string; vms: Array<{ name: string; host: string; ip: string }>; hosts: Array<{ name: string; role: string }>; migrations: Array<{ result?: { outcome: string } }>; restarts?: { count: number } };
  };
  const inGuest = (u: User, job: string, vm: string, script: string) => sym(u, ['exec', '--job', job, vm, '--', 'sh', '-c', script], 120_000);

  // ---- alice: a ring across 2 VMs, 2 spares, checkpoints in her directory ----
  const aOut = path.join(dirs.alice, 'ring.out');
  const stop = path.join(dirs.alice, 'STOP');
  const A = await submit('alice', [
    '#SBATCH -N 4 --no-kill', `#SBATCH -o ${aOut}`,
    `${symrunPath} --spares 2 --checkpoint-dir ${path.join(dirs.alice, 'ckpt')} -- ./ring 1000000 --progress 100 --sleep-ms 20 --stop-file ${stop}`,
  ], []);
  await until('alice\'s ring running', () => ring(aOut) >= 100, 600_000, () => read(aOut));

  // ---- bob: ranks that write a file each, then wait (his job shares alice's nodes: 2 CPUs per node) ----
  const bOut = path.join(dirs.bob, 'job.out');
  const B = await submit('bob', [
    '#SBATCH -N 2', `#SBATCH -o ${bOut}`,
    `${symrunPath} -- /bin/sh -c 'echo "written by rank $OMPI_COMM_WORLD_RANK" > result-$OMPI_COMM_WORLD_RANK.txt; echo ranks-wrote; sleep 3600'`,
  ], []);
  await until('bob\'s ranks wrote their files', () => (read(bOut).match(/ranks-wrote/g) ?? []).length >= 2, 600_000, () => read(bOut));
  const bJob = await lab.showJob(B);
  const shared = bJob.nodeList.filter((n) => n !== undefined);
  t.ok(shared.length === 2, `bob's job on ${shared.join(',')}: nodes alice's job has too`);

  await t.test('symrun, host agents and QEMU run as the job\'s user', async (t) => {
    for (const n of lab.nodes) {
      const ps = (await lab.exec(n.name, ['ps', '-eo', 'user:20,args'])).stdout.split('\n');
      const ours = ps.filter((l) => /qemu-system|hostagent\.js|launcher\/src\/cli\.js/.test(l) && !/node helper/.test(l));
      for (const l of ours) t.match(l, /^(alice|bob)\s/, `${n.name}: ${l.slice(0, 90)}`);
    }
    const all = (await Promise.all(lab.nodes.map((n) => lab.exec(n.name, ['ps', '-eo', 'user:20,args'])))).map((r) => r.stdout).join('\n');
    t.match(all, /alice\s+qemu-system/, 'alice\'s QEMU');
    t.match(all, /bob\s+qemu-system/, 'bob\'s QEMU');
    t.match(all, /alice\s+.*hostagent\.js/, 'alice\'s host agents');
    t.match(all, /alice\s+.*cli\.js --spares 2/, 'alice\'s coordinator');
  });

  let a = await statusOf('alice', A);
  await t.test('job control by Slurm job id from the login node; other users refused', async (t) => {
    t.equal(a.state, 'running', 'alice: status --job <Slurm id> from the login node');
    t.equal(a.vms.length, 2);
    for (const [cmd, args] of [['status', ['status', '--job', A]], ['cancel', ['cancel', '--job', A, 'vm1']], ['exec', ['exec', '--job', A, 'vm1', '--', 'id']], ['migrate', ['migrate', '--job', A, 'vm1']]] as const) {
      const r = await sym('bob', [...args]);
      t.equal(r.exitCode, 2, `bob's ${cmd} of alice's job: exit 2`);
      t.match(r.stderr, new RegExp(`job ${A} is alice's: only its owner`), `bob's ${cmd}: says whose job it is`);
    }
    const r = await sym('alice', ['status', '--job', B]);
    t.equal(r.exitCode, 2, 'alice cannot look at bob\'s job either');
  });

  await t.test('from inside alice\'s guest: her guests only; spoofed frames dropped', async (t) => {
    const bob = await statusOf('bob', B);
    const [v1, v2] = a.vms;
    const nodeIp = lab.node(v1!.host).ip;
    const peer = await inGuest('alice', A, 'vm1', `ping -c 2 -W 3 ${v2!.ip}`);
    t.equal(peer.exitCode, 0, `vm1 reaches vm2 (${v2!.ip})`);
    const node = await inGuest('alice', A, 'vm1', `ping -c 2 -W 2 ${nodeIp}`);
    t.not(node.exitCode, 0, `vm1 does not reach its node ${nodeIp} (slurmd's address)`);
    const node2 = await inGuest('alice', A, 'vm1', `ip addr add ${nodeIp.replace(/\d+$/, '199')}/24 dev symfab0; nc -w 3 ${nodeIp} 6818 </dev/null; r=$?; ip addr del ${nodeIp.replace(/\d+$/, '199')}/24 dev symfab0; exit $r`);
    t.not(node2.exitCode, 0, 'not even with an address of the node network: slurmd\'s port 6818 is unreachable');
    const bobIp = bob.vms[0]!.ip;
    const other = await inGuest('alice', A, 'vm1', `arping -c 2 -w 4 -I symfab0 ${bobIp}`);
    t.not(other.exitCode, 0, `bob's guest ${bobIp} does not answer alice's vm1 (another L2)`);
    const ok = await inGuest('alice', A, 'vm1', `arping -c 2 -w 4 -I symfab0 ${v2!.ip}`);
    t.equal(ok.exitCode, 0, 'control: an ARP request with vm1\'s own addresses is answered');
    const spoofIp = v1!.ip.replace(/\d+$/, '77');
    const ipSpoof = await inGuest('alice', A, 'vm1', `ip addr add ${spoofIp}/32 dev symfab0; arping -c 2 -w 4 -I symfab0 -s ${spoofIp} ${v2!.ip}; r=$?; ip addr del ${spoofIp}/32 dev symfab0; exit $r`);
    t.not(ipSpoof.exitCode, 0, `a frame sent from another IP (${spoofIp}) is dropped`);
    const macSpoof = await inGuest('alice', A, 'vm1', `m=$(cat /sys/class/net/symfab0/address); ip link set symfab0 address 02:aa:bb:cc:dd:ee; arping -c 2 -w 4 -I symfab0 ${v2!.ip}; r=$?; ip link set symfab0 address $m; exit $r`);
    t.not(macSpoof.exitCode, 0, 'a frame sent with another MAC is dropped');
    const after = await inGuest('alice', A, 'vm1', `arping -c 1 -w 4 -I symfab0 ${v2!.ip}`);
    t.equal(after.exitCode, 0, 'vm1 is heard again with its own MAC');
  });

  await t.test('a drain moves alice\'s VM to a spare', async (t) => {
    const vm2 = a.vms.find((v) => v.name === 'vm2')!;
    const before = ring(aOut);
    await lab.drain(vm2.host, 'multiuser test');
    await until('vm2 moved', async () => (await statusOf('alice', A)).migrations.some((m) => m.result?.outcome === 'done'), 300_000, () => read(aOut));
    a = await statusOf('alice', A);
    t.not(a.vms.find((v) => v.name === 'vm2')!.host, vm2.host, `vm2 left ${vm2.host}`);
    await until('the ring goes on', () => ring(aOut) > before + 100, 300_000, () => read(aOut));
    await lab.undrain(vm2.host);
  });

  await t.test('scancel of bob\'s job: his files are copied back; alice\'s job untouched by his epilog', async (t) => {
    const r = await login('bob', ['scancel', B]);
    t.equal(r.exitCode, 0, 'bob cancels his job');
    const j = await lab.waitJob(B, JOB_DONE, 120_000);
    await until('bob\'s epilog ran', async () => !(await lab.showJob(B)).state.includes('COMPLETING'), 60_000);
    t.equal(j.state, 'CANCELLED');
    for (const rank of [0, 1]) t.equal(read(path.join(dirs.bob, `result-${rank}.txt`)).trim(), `written by rank ${rank}`, `result-${rank}.txt written in the guest is in bob's directory`);
    for (const n of shared) {
      const links = (await lab.exec(n, ['ip', '-br', 'link'])).stdout;
      t.notMatch(links, new RegExp(`^sj[bxtf]${B}(v|\\s)`, 'm'), `${n}: bob's job network removed`);
      t.match(links, new RegExp(`^sjb${A}\\s`, 'm'), `${n}: alice's bridge still there`);
      const tables = (await lab.exec(n, ['nft', 'list', 'tables'])).stdout;
      t.match(tables, new RegExp(`symrun_j${A}\\b`), `${n}: alice's nftables table still there`);
      t.notMatch(tables, new RegExp(`symrun_j${B}\\b`), `${n}: bob's table removed`);
      t.ok(fs.existsSync(path.join(lab.stateDir, 'node-state', n, 'jobs', A, 'record.json')), `${n}: alice's record kept`);
      t.notOk(fs.existsSync(path.join(lab.stateDir, 'node-state', n, 'jobs', B)), `${n}: bob's record removed`);
    }
    t.ok(fs.existsSync(path.join(lab.stateDir, 'run', `slurm-${A}`)), 'alice\'s run directory kept');
    t.notOk(fs.existsSync(path.join(lab.stateDir, 'run', `slurm-${B}`)), 'bob\'s run directory removed');
    const before = ring(aOut);
    await until('alice\'s ring goes on', () => ring(aOut) > before + 50, 120_000, () => read(aOut));
  });

  await t.test('checkpoint, then alice\'s VM host powered off: restarted from the checkpoint', async (t) => {
    const c = await sym('alice', ['checkpoint', '--job', A, '--json'], 600_000);
    t.equal(c.exitCode, 0, `checkpoint from the login node (${c.stderr.slice(-800)})`);
    const v = a.vms.find((x) => x.name === 'vm2')!.host;
    await lab.crash(v);
    await until('restarted', async () => { const s = await statusOf('alice', A); return (s.restarts?.count ?? 0) >= 1 && s.state === 'running'; }, 600_000, () => read(aOut));
    a = await statusOf('alice', A);
    t.not(a.vms.find((x) => x.name === 'vm2')!.host, v, `vm2 restarted off the dead ${v}`);
    const now = ring(aOut);
    await until('the ring goes on after the restart', () => ring(aOut) > now + 100, 300_000, () => read(aOut));
    await lab.restart(v);
  });

  await t.test('alice\'s job ends with the right answer; every node clean', async (t) => {
    const r = await inGuest('alice', A, 'vm1', `touch ${stop}`);
    t.equal(r.exitCode, 0, 'stop file');
    const j = await lab.waitJob(A, JOB_DONE, 300_000);
    await until('alice\'s epilog ran', async () => !(await lab.showJob(A)).state.includes('COMPLETING'), 60_000);
    t.equal(j.state, 'COMPLETED', read(aOut).slice(-2000));
    t.match(read(aOut), /ring OK: ranks=2 /, 'ring OK: the right answer');
    for (const n of lab.nodes) {
      t.notMatch((await lab.exec(n.name, ['ip', '-br', 'link'])).stdout, /^sj[bxtf]/m, `${n.name}: no job interface left`);
      t.notMatch((await lab.exec(n.name, ['nft', 'list', 'tables'])).stdout, /symrun_j/, `${n.name}: no nftables table left`);
      const jobs = path.join(lab.stateDir, 'node-state', n.name, 'jobs');
      t.same(fs.existsSync(jobs) ? fs.readdirSync(jobs) : [], [], `${n.name}: no record left`);
    }
    t.same(fs.readdirSync(path.join(lab.stateDir, 'run')), [], 'no run directory left');
  });
});
