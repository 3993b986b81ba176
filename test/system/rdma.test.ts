// interconnect.transport with real QEMU guests (TCG), Open MPI, UCX and Soft-RoCE (docs/passthrough.md,
// "MPI transports and which adapters keep them alive"):
//  - rdma with --quiesce failover: the guest agent creates rxe0 on symfab0r, an ipvlan over the failover
//    bond symfab0 (guest/src/rxe.ts says why not on the bond itself); the ring runs
//    across 3 VMs over UCX's rc_verbs on rxe0 (UCX's own report of the transport each endpoint uses,
//    libuct_ib mapped by every rank, rxe0's packet counters moving while the ring runs); `symrun migrate
//    vm2 --quiesce failover` moves vm2 while the ring runs (the same rxe0, still on the ipvlan, counts on at
//    the destination; the ring keeps iterating); `symrun migrate vm3 --quiesce freeze` is refused with
//    ESYM_TRANSPORT_ADAPTER, exit 2, nothing started; the checksum over every message is right at the end;
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

/** rxe0's packet counters in `vm`, the netdev it sits on (`rdma link show`) and, with the failover bond, the lower device of that ipvlan (sysfs) */
async function rxe(job: RingJob, vm: string): Promise<{ lower: string; sent: number; rcvd: number; netdev: string; state: string; raw: string }> {
  const r = await job.sym(['exec', vm, '--', 'sh', '-c', 'd=/sys/class/infiniband/rxe0/ports/1/hw_counters; echo sent=$(cat $d/sent_pkts) rcvd=$(cat $d/rcvd_pkts); rdma link show rxe0/1; for l in /sys/class/net/symfab0r/lower_*; do [ -e $l ] && echo lower=${l##*lower_}; done; ip -d link show dev symfab0r 2>&1 | grep -o "ipvlan.*"']);
  return {
    lower: /lower=(\S+)/.exec(r.stdout)?.[1] ?? '',
    sent: Number(/sent=(\d+)/.exec(r.stdout)?.[1] ?? -1), rcvd: Number(/rcvd=(\d+)/.exec(r.stdout)?.[1] ?? -1),
    netdev: /netdev (\S+)/.exec(r.stdout)?.[1] ?? '', state: /state (\S+)/.exec(r.stdout)?.[1] ?? '', raw: r.stdout + r.stderr,
  };
}

t.test('--transport rdma: the ring across 3 VMs over UCX rc_verbs on Soft-RoCE (rxe0 on an ipvlan over the failover bond), kept across a failover migration; freeze refused', async (t) => {
  const stopFile = path.join(work, 'stop-rdma');
  const job = await startRingJob({ cwd: work, symrunArgs: ['--config', 'ucx-info.yaml', '--local', '3', '--spares', '1', '--accel', 'tcg', '--transport', 'rdma', '--quiesce', 'failover'], stopFile });
  t.teardown(() => job.kill());
  const all = () => job.stdout() + job.stderr();

  t.match(all(), /UCX\s+INFO\s+ep_cfg\[\d+\]: tag\(rc_verbs\/rxe0:1\)/, 'UCX reports an endpoint that uses only rc_verbs on rxe0:1 (one to another VM)');
  t.notMatch(all(), /UCX\s+INFO\s+ep_cfg.*tcp\//, 'no endpoint uses UCX tcp');
  for (const vm of ['vm1', 'vm2', 'vm3']) {
    const m = await mapsIn(job, vm, 'libuct_ib\\.so');
    t.equal(m.ring, 1, `one ring rank in ${vm}: ${m.out}`);
    t.equal(m.mapping, 1, `the rank in ${vm} maps UCX's verbs transport (libuct_ib)`);
  }
  const bond = await job.sym(['exec', 'vm2', '--', 'cat', '/proc/net/bonding/symfab0']);
  t.match(bond.stdout, /Currently Active Slave: symfab0p/, `vm2's interconnect is the failover bond, passthrough NIC active: ${bond.stdout}${bond.stderr}`);
  const c0 = await rxe(job, 'vm2');
  t.equal(c0.netdev, 'symfab0r', `the agent made rxe0 on the ipvlan symfab0r: ${c0.raw}`);
  t.equal(c0.lower, 'symfab0', `symfab0r (the agent's ipvlan) sits on the failover bond symfab0: ${c0.raw}`);
  t.equal(c0.state, 'ACTIVE', 'rxe0 port 1 is ACTIVE');
  await job.stillRunning('reading rxe0 counters');
  const c1 = await rxe(job, 'vm2');
  t.ok(c1.sent > c0.sent && c1.rcvd > c0.rcvd, `vm2's rxe0 sends and receives while the ring runs (${c0.sent}/${c0.rcvd} -> ${c1.sent}/${c1.rcvd} packets)`);

  // failover: the passthrough NIC under the bond is unplugged and replugged, rxe0 and its QPs move in RAM
  const before = job.iterations();
  const f = await job.sym(['migrate', 'vm2', '--quiesce', 'failover', '--json']);
  t.equal(f.code, 0, `migrate vm2 --quiesce failover: ${f.stderr.slice(-2000)}`);
  const fr = JSON.parse(f.stdout || '{}');
  t.equal(fr.outcome, 'done', 'the failover migration of the rdma job is done');
  const atMove = job.iterations(); // vm2 runs on the destination now
  await job.until('ring iterations after the move', () => job.iterations() >= atMove + 200, 180_000);
  t.ok(job.iterations() >= atMove + 200, `the ring went on after the failover move (iteration ${before} before it, ${atMove} when it was done, ${job.iterations()} now)`);
  const c2 = await rxe(job, 'vm2');
  t.equal(c2.netdev, 'symfab0r', `rxe0 is still on the ipvlan on the destination: ${c2.raw}`);
  t.equal(c2.lower, 'symfab0', `still an ipvlan over the bond: ${c2.raw}`);
  t.equal(c2.state, 'ACTIVE', 'rxe0 port 1 is ACTIVE on the destination');
  t.ok(c2.sent > c1.sent && c2.rcvd > c1.rcvd, `the same rxe0 counts on (${c1.sent}/${c1.rcvd} -> ${c2.sent}/${c2.rcvd} packets: not a new device)`);
  await job.stillRunning('reading rxe0 counters on the destination');
  const c3 = await rxe(job, 'vm2');
  t.ok(c3.sent > c2.sent && c3.rcvd > c2.rcvd, `vm2's rxe0 sends and receives on the destination (${c2.sent}/${c2.rcvd} -> ${c3.sent}/${c3.rcvd})`);
  const bond2 = await job.sym(['exec', 'vm2', '--', 'cat', '/proc/net/bonding/symfab0']);
  t.match(bond2.stdout, /Currently Active Slave: symfab0p/, 'after the move the replugged NIC is the active slave again');

  // freeze would unplug the NIC rxe0 runs on: refused before anything is touched, the job goes on
  const vm3Host = (JSON.parse((await job.sym(['status', '--json'])).stdout || '{}') as { vms?: Array<{ name: string; host: string }> }).vms?.find((v) => v.name === 'vm3')?.host ?? 'unknown';
  const z = await job.sym(['migrate', 'vm3', '--quiesce', 'freeze']);
  t.equal(z.code, 2, `migrate vm3 --quiesce freeze exits 2: ${z.stdout}${z.stderr}`);
  t.match(z.stderr, /ESYM_TRANSPORT_ADAPTER/, 'with ESYM_TRANSPORT_ADAPTER');
  t.match(z.stderr, /--quiesce failover/, 'naming the adapter that works');
  t.notMatch(z.stderr, /\n\s+at .*\.js:\d+/, 'no stack trace');
  const st = await job.sym(['status', '--json']);
  t.equal(st.code, 0, st.stderr);
  const status = JSON.parse(st.stdout || '{}') as { migrations?: Array<{ vm: string }>; vms?: Array<{ name: string; host: string; state: string }> };
  t.same(status.migrations?.map((m) => m.vm), ['vm2'], 'no migration of vm3 was started (only the failover one of vm2 is on record)');
  t.match(status.vms?.find((v) => v.name === 'vm3'), { host: vm3Host }, 'vm3 is still on its host');
  await job.stillRunning('the refused freeze migration');

  const { touch, code } = await job.stop();
  t.equal(touch.code, 0, touch.stderr);
  t.equal(code, 0, job.stderr().slice(-3000));
  t.match(job.stdout(), /ring OK: ranks=3 /, 'the checksum over every message is right');
  t.notMatch(job.stderr(), /unhandled timeout error|UCX\s+ERROR/, 'UCX reported no error');
  t.notMatch(all(), /GID table change|error '[^']*' on rc_verbs/, 'the bond failover did not touch rxe0\'s GIDs (on the bond itself it did, and killed the QPs: guest/src/rxe.ts)');
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
