// interconnect.transport with real QEMU guests (TCG), Open MPI, UCX and Soft-RoCE (docs/passthrough.md,
// "MPI transports and which adapters keep them alive"):
//  - rdma: the guest agent creates rxe0 on symfab0; the ring runs across 2 VMs over UCX's rc_verbs on
//    rxe0 (UCX's own report of the transport each endpoint uses, libuct_ib mapped by every rank, rxe0's
//    packet counters moving while the ring runs) and its checksum over every message is right;
//  - tcp: every VM has a Soft-RoCE device (the program's wrapper creates rxe0 before MPI_Init, so Open
//    MPI's default would take pml ucx over it), yet no rank maps a UCX library and UCX says nothing.
// Never skips: a missing part fails with how to install it.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { startRingJob, type RingJob } from '../fixtures/ring-job.js';

need('mpicc', 'libopenmpi-dev');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();
for (const [f, pkg] of [['/usr/lib/x86_64-linux-gnu/ucx/libuct_ib.so.0', 'libucx0'], ['/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so', 'ibverbs-providers'], ['/usr/bin/rdma', 'iproute2']] as const) {
  if (!fs.existsSync(f)) throw new Error(`${f} is missing: the guest image needs it for Soft-RoCE; install it with \`bash scripts/setup\` (apt-get install ${pkg})`);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-rdma-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
// for the tcp job: a Soft-RoCE device in every VM before MPI_Init, the bait Open MPI's default would take
fs.writeFileSync(path.join(work, 'ring-rxe'), [
  '#!/bin/sh',
  'modprobe crc32_generic && modprobe rdma_rxe && { rdma link show rxe0/1 >/dev/null 2>&1 || rdma link add rxe0 type rxe netdev symfab0; } || echo "ring-rxe: no Soft-RoCE device" >&2',
  'exec ./ring "$@"', '',
].join('\n'), { mode: 0o755 });
// UCX reports the transport each endpoint uses at log level info
fs.writeFileSync(path.join(work, 'ucx-info.yaml'), 'mpi:\n  extraArgs: ["-x", "UCX_LOG_LEVEL=info"]\n');

/** in `vm`: how many ring processes run, and how many of them map a library matching `lib` */
async function mapsIn(job: RingJob, vm: string, lib: string): Promise<{ ring: number; mapping: number; out: string }> {
  const r = await job.sym(['exec', vm, '--', 'sh', '-c', `r=0; m=0; for p in $(pidof ring); do r=$((r+1)); grep -q '${lib}' /proc/$p/maps && m=$((m+1)); done; echo "ring=$r mapping=$m"`]);
  const m = /ring=(\d+) mapping=(\d+)/.exec(r.stdout);
  return { ring: Number(m?.[1] ?? -1), mapping: Number(m?.[2] ?? -1), out: r.stdout + r.stderr };
}

/** rxe0's packet counters in `vm` and the netdev it sits on (`rdma link show`) */
async function rxe(job: RingJob, vm: string): Promise<{ sent: number; rcvd: number; netdev: string; state: string; raw: string }> {
  const r = await job.sym(['exec', vm, '--', 'sh', '-c', 'd=/sys/class/infiniband/rxe0/ports/1/hw_counters; echo sent=$(cat $d/sent_pkts) rcvd=$(cat $d/rcvd_pkts); rdma link show rxe0/1']);
  return {
    sent: Number(/sent=(\d+)/.exec(r.stdout)?.[1] ?? -1), rcvd: Number(/rcvd=(\d+)/.exec(r.stdout)?.[1] ?? -1),
    netdev: /netdev (\S+)/.exec(r.stdout)?.[1] ?? '', state: /state (\S+)/.exec(r.stdout)?.[1] ?? '', raw: r.stdout + r.stderr,
  };
}

t.test('--transport rdma: the ring across 2 VMs over UCX rc_verbs on Soft-RoCE (rxe0 on symfab0)', async (t) => {
  const stopFile = path.join(work, 'stop-rdma');
  const job = await startRingJob({ cwd: work, symrunArgs: ['--config', 'ucx-info.yaml', '--local', '2', '--accel', 'tcg', '--transport', 'rdma'], stopFile });
  t.teardown(() => job.kill());
  const all = () => job.stdout() + job.stderr();

  t.match(all(), /UCX\s+INFO\s+ep_cfg\[\d+\]: tag\(rc_verbs\/rxe0:1\)/, 'UCX reports an endpoint that uses only rc_verbs on rxe0:1 (the one to the other VM)');
  t.notMatch(all(), /UCX\s+INFO\s+ep_cfg.*tcp\//, 'no endpoint uses UCX tcp');
  for (const vm of ['vm1', 'vm2']) {
    const m = await mapsIn(job, vm, 'libuct_ib\\.so');
    t.equal(m.ring, 1, `one ring rank in ${vm}: ${m.out}`);
    t.equal(m.mapping, 1, `the rank in ${vm} maps UCX's verbs transport (libuct_ib)`);
  }
  const c0 = await rxe(job, 'vm2');
  t.equal(c0.netdev, 'symfab0', `the agent made rxe0 on the interconnect interface: ${c0.raw}`);
  t.equal(c0.state, 'ACTIVE', 'rxe0 port 1 is ACTIVE');
  await job.stillRunning('reading rxe0 counters');
  const c1 = await rxe(job, 'vm2');
  t.ok(c1.sent > c0.sent && c1.rcvd > c0.rcvd, `vm2's rxe0 sends and receives while the ring runs (${c0.sent}/${c0.rcvd} -> ${c1.sent}/${c1.rcvd} packets)`);

  const { touch, code } = await job.stop();
  t.equal(touch.code, 0, touch.stderr);
  t.equal(code, 0, job.stderr().slice(-3000));
  t.match(job.stdout(), /ring OK: ranks=2 /, 'the checksum over every message is right');
});

t.test('--transport tcp: Soft-RoCE present in every VM, and still no rank loads UCX', async (t) => {
  const stopFile = path.join(work, 'stop-tcp');
  const job = await startRingJob({ cwd: work, symrunArgs: ['--config', 'ucx-info.yaml', '--local', '2', '--accel', 'tcg', '--transport', 'tcp'], stopFile, program: './ring-rxe' });
  t.teardown(() => job.kill());
  t.notMatch(job.stderr(), /ring-rxe: no Soft-RoCE device/, 'the wrapper made rxe0 in both VMs');
  const r = await rxe(job, 'vm2');
  t.equal(r.netdev, 'symfab0', `vm2 has rxe0 on the interconnect (the bait): ${r.raw}`);
  for (const vm of ['vm1', 'vm2']) {
    const m = await mapsIn(job, vm, 'libuc[pst]\\.so');
    t.equal(m.ring, 1, `one ring rank runs in ${vm}: ${m.out}`);
    t.equal(m.mapping, 0, `the rank in ${vm} has no UCX library mapped`);
  }
  const { code } = await job.stop();
  t.equal(code, 0, job.stderr().slice(-2000));
  t.match(job.stdout(), /ring OK: ranks=2 /);
  t.notMatch(job.stderr() + job.stdout(), /UCX/, 'UCX said nothing (UCX_LOG_LEVEL=info would make it talk)');
});
