// slurm-plugins/epilog (and prolog) on the lab: a symrun job whose coordinator is SIGKILLed leaves
// nothing on any node once Slurm has run the epilog: no QEMU, no host agent, no symtap/symsb tap, no
// run directory. Second job: the coordinator AND every host agent are SIGKILLed at once, so the QEMUs
// are orphaned (reparented to the node's init, out of Slurm's process tracking): the epilog kills them.
// Third: the prolog drains a node whose configured image cache is unreadable, with that reason.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from '../../launcher/src/defaults.js';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { submitRingJob, waitRing, readOut, type RingJob, jobEnded } from '../fixtures/slurm-ring.js';

needRoot('the Slurm lab and the VMs need root');
for (const [c, p] of [['slurmctld', 'slurm-wlm'], ['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86']] as const) need(c, p);

const RUN_ROOT = '/run/symrun';
const NODES = ['n1', 'n2', 'n3', 'n4'];

/** The symrun job (run dir id, coordinator pid, node) whose owner.json names this cwd. */
function findCoordinator(lab: SlurmLab, cwd: string): { id: string; pid: number; node: string } | undefined {
  for (const id of fs.readdirSync(RUN_ROOT)) {
    let o: { pid: number; pidns?: string; cwd?: string };
    try { o = JSON.parse(fs.readFileSync(path.join(RUN_ROOT, id, 'owner.json'), 'utf8')); } catch { continue; }
    if (o.cwd !== cwd) continue;
    const node = lab.nodes.find((n) => n.pid && fs.readlinkSync(`/proc/${n.pid}/ns/pid`) === o.pidns);
    if (node) return { id, pid: o.pid, node: node.name };
  }
  return undefined;
}

/** What symrun left on a node: qemu, host agents, taps. */
async function leftovers(lab: SlurmLab, node: string): Promise<string[]> {
  const r = await lab.exec(node, ['bash', '-c', 'pgrep -a qemu-system; pgrep -af "[h]ostagent.js"; ip -o link show | grep -oE "sym(tap|sb)[0-9]+" ; true'], { timeoutMs: 30_000 });
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}

async function waitIdle(lab: SlurmLab, jobId: string, timeoutMs: number): Promise<string> {
  const j = await lab.waitJob(jobId, ['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY'], timeoutMs);
  // the epilog has run on a node once it is no longer COMPLETING
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const nodes = await lab.showNodes();
    if (nodes.every((n) => !n.flags.includes('COMPLETING') && !/COMPLETING/.test(n.state))) break;
    if (Date.now() > deadline) throw new Error(`nodes still completing: ${nodes.map((n) => `${n.name}=${n.state}`).join(' ')}`);
    await sleep(200);
  }
  return j.state;
}

type T = Parameters<Parameters<typeof t.test>[0]>[0];

async function runAndKill(t: T, lab: SlurmLab, dir: string, tag: string, killAgents: boolean): Promise<void> {
  for (const n of NODES) fs.rmSync(path.join(dir, `epilog-${n}.log`), { force: true });
  const job: RingJob = await submitRingJob(lab, tag);
  const ended = jobEnded(lab, job);
  await waitRing(job, 900_000, 50, ended);
  const coord = findCoordinator(lab, job.work);
  t.ok(coord, `coordinator found by its cwd (${JSON.stringify(coord)})`);
  if (!coord) return;
  const before: Record<string, string[]> = {};
  for (const n of NODES) before[n] = await leftovers(lab, n);
  t.ok(before.n1!.some((l) => /qemu-system/.test(l)) && before.n2!.some((l) => /symtap/.test(l)), 'VMs and taps run before the kill');

  let planted: number | undefined;
  if (killAgents) {
    // a QEMU of this job that escaped Slurm's process tracking (its host agent was SIGKILLed and it was
    // reparented outside slurmstepd), holding a tap on symbr0: started beside the job, with its environment
    const r = await lab.exec('n2', ['bash', '-c', [
      'ip tuntap add dev symtap9 mode tap && ip link set symtap9 master symbr0 up || exit 1',
      `SLURM_JOB_ID=${job.jobId} SYMRUN_JOB_ID=${coord.id} setsid /usr/bin/qemu-system-x86_64 -M none -nodefaults -display none -S -netdev tap,id=n9,ifname=symtap9,script=no,downscript=no </dev/null >/dev/null 2>&1 &`,
      'echo $!',
    ].join('\n')], { timeoutMs: 30_000 });
    planted = Number(r.stdout.trim());
    await sleep(1000);
    t.ok(r.ok && planted > 0 && (await leftovers(lab, 'n2')).some((l) => l.startsWith(`${planted} `)), `escaped QEMU pid ${planted} runs on n2 with tap symtap9`);
    // every symrun process at once: the QEMUs lose their host agents
    await Promise.all(NODES.map((n) => lab.exec(n, ['bash', '-c', `pkill -9 -f "[h]ostagent.js"; ${n === coord.node ? `kill -9 ${coord.pid}` : 'true'}`])));
  } else {
    const r = await lab.exec(coord.node, ['kill', '-9', String(coord.pid)]);
    t.ok(r.ok, `SIGKILL coordinator pid ${coord.pid} on ${coord.node}`);
  }
  const killedAt = Date.now();
  const state = await waitIdle(lab, job.jobId, 300_000);
  t.comment(`MEASURE ${tag}: job ended ${state}; kill -> all nodes done with the epilog ${Date.now() - killedAt} ms`);

  for (const n of NODES) {
    const left = await leftovers(lab, n);
    t.same(left, [], `${n}: no qemu, host agent or symtap/symsb tap left`);
  }
  t.notOk(fs.existsSync(path.join(RUN_ROOT, coord.id)), `run directory ${RUN_ROOT}/${coord.id} removed`);
  const logs = NODES.map((n) => { try { return fs.readFileSync(path.join(dir, `epilog-${n}.log`), 'utf8'); } catch { return ''; } });
  t.ok(logs.every((l) => /clean|removed|killing/.test(l)), 'the epilog ran on every node');
  t.match(logs[NODES.indexOf(coord.node)], new RegExp(`removed ${RUN_ROOT}/${coord.id}: owner pid ${coord.pid} is gone`), 'coordinator node: run dir of the dead coordinator removed');
  t.notOk(logs.some((l) => /local-mode/.test(l)), 'no local-mode cleanup in a nested pid namespace (the lab shares /run with the machine)');
  if (killAgents) {
    t.match(logs[1], new RegExp(`killing pid ${planted} \\(qemu of symrun job ${coord.id}\\)`), 'n2: the escaped QEMU of this job was killed by the epilog');
    t.match(logs[1], /removed tap symtap9 \(on symbr0, held by no process\)/, 'n2: its tap removed once nobody held it');
    const orphans = ['n1', 'n2', 'n3'].filter((n) => new RegExp(`killing pid (?!${planted} )[0-9]+ \\(qemu`).test(logs[NODES.indexOf(n)]!));
    t.comment(`MEASURE host agents SIGKILLed: the epilog found orphaned symrun QEMUs on ${orphans.join(', ') || 'no node'} (Slurm's slurmstepd, a child subreaper, killed the others at step end)`);
  }
  t.comment(`epilog logs (${tag}):\n${logs.map((l, i) => `--- ${NODES[i]}\n${l.trim()}`).join('\n')}`);
  t.comment(`job output tail: ${readOut(job).slice(-600)}`);
}

t.test('epilog leaves every node clean after a SIGKILLed symrun; prolog drains a broken node', async (t) => {
  const dir = fs.mkdtempSync('/var/tmp/symrun-ep-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const plugins = path.join(repoRoot(), 'slurm-plugins');
  // node.conf: n3 gets an unreadable image cache once the test creates break-n3
  fs.writeFileSync(path.join(dir, 'node.conf'), `[ -e ${dir}/break-$(/bin/hostname) ] && SYMRUN_IMAGE_CACHE=${dir}/no-such-cache\n`);
  const prolog = path.join(dir, 'prolog');
  fs.writeFileSync(prolog, `#!/bin/sh\nexec 2>>${dir}/prolog-$(/bin/hostname).log\nSYMRUN_NODE_CONF=${dir}/node.conf exec ${path.join(plugins, 'prolog', 'symrun-prolog')}\n`, { mode: 0o755 });
  const epilog = path.join(dir, 'epilog');
  fs.writeFileSync(epilog, `#!/bin/sh\nexec 2>>${dir}/epilog-$(/bin/hostname).log\nSYMRUN_NODE_CONF=${dir}/node.conf SYMRUN_EPILOG_VERBOSE=1 exec ${path.join(plugins, 'epilog', 'symrun-epilog')}\n`, { mode: 0o755 });

  const lab = await startSlurmLab({ nodes: 4, name: `se${process.pid.toString(36)}`.slice(0, 16), temporary: true, prolog, epilog });
  t.teardown(() => lab.stop());

  await t.test('coordinator SIGKILLed', (t) => runAndKill(t, lab, dir, `ep1${process.pid}`, false));
  await t.test('coordinator and all host agents SIGKILLed (QEMUs orphaned)', (t) => runAndKill(t, lab, dir, `ep2${process.pid}`, true));

  await t.test('prolog: unreadable image cache on n3 -> n3 drained with the reason; others run jobs', async (t) => {
    const nodes = await lab.showNodes();
    t.notOk(nodes.some((n) => /DRAIN/.test(n.state)), `no node drained by the prolog so far (${nodes.map((n) => `${n.name}=${n.state}`).join(' ')})`);
    fs.writeFileSync(path.join(dir, 'break-n3'), '');
    const t0 = Date.now();
    const id = await lab.sbatch('#!/bin/sh\n/bin/hostname\n', { args: ['-w', 'n3', '-o', path.join(lab.workDir, 'prolog-%j.out')] });
    const n3 = await lab.waitNodeState('n3', /DRAIN/, 60_000);
    t.match(n3.reason, /^symrun-prolog: image cache .*no-such-cache not a readable directory/, `drain reason kept (${n3.reason})`);
    t.comment(`MEASURE prolog failure -> n3 DRAIN in ${Date.now() - t0} ms; reason "${n3.reason}"`);
    const j = await lab.showJob(id);
    t.comment(`job ${id} after the prolog failure: ${j.state} (${j.reason ?? ''})`);
    await lab.client(['scancel', id]);
    const ok = await lab.sbatch('#!/bin/sh\n/bin/hostname\n', { args: ['-w', 'n1', '-o', path.join(lab.workDir, 'prolog-ok-%j.out')] });
    t.equal((await lab.waitJob(ok, ['COMPLETED', 'FAILED'], 60_000)).state, 'COMPLETED', 'a healthy node passes the prolog');
  });
});
