// Live migration of a running MPI job with real QEMU, Open MPI and namespaces: 3 VMs + 1 spare host,
// an iterative ring whose checksum fails on any lost, duplicated or corrupted message. While it runs:
// faults in several phases (each must roll back, the job keeps running), a cancel during the
// transfer, a destination that refuses the device (return trip), then two real moves (including
// the VM that runs mpirun). The job must end with the right checksum and exit 0.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { startRingJob } from '../fixtures/ring-job.js';

need('mpicc', 'libopenmpi-dev');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-mig-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
const events = path.join(work, 'events.jsonl');
const stopFile = path.join(work, 'stop');

t.test('a running job survives faults, a cancel, a refused device and two migrations', async (t) => {
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', '3', '--spares', '1', '--events', events], stopFile });
  t.teardown(() => job.kill());
  const { sym, stillRunning } = job;
  const status = async () => JSON.parse((await sym(['status', '--json'])).stdout) as { vms: Array<{ name: string; host: string; migrating?: string }>; hosts: Array<{ name: string; role: string }> };
  const hostOf = async (vm: string) => (await status()).vms.find((v) => v.name === vm)!.host;
  const migrate = async (args: string[]) => {
    const r = await sym(['migrate', ...args, '--json']);
    let res: any;
    try { res = JSON.parse(r.stdout); } catch { throw new Error(`migrate ${args.join(' ')}: no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`); }
    return { code: r.code, res, stderr: r.stderr };
  };

  t.equal(await hostOf('vm2'), 'host2');

  await t.test('destination QEMU killed during the transfer: rolled back', async (t) => {
    const m = await migrate(['vm2', '--fault', 'kill-dst-qemu@perform']);
    t.equal(m.code, 5, 'exit 5: rolled back');
    t.equal(m.res.outcome, 'rolled-back');
    t.equal(m.res.error.phase, 'perform');
    t.same(m.res.leftovers, []);
    t.equal(await hostOf('vm2'), 'host2', 'vm2 still on its source');
    await stillRunning('kill-dst-qemu');
  });

  await t.test('a guest agent that does not answer quiesce: rolled back, nobody stays frozen', async (t) => {
    const m = await migrate(['vm2', '--fault', 'guest-stall@quiesce']);
    t.equal(m.code, 5);
    t.equal(m.res.outcome, 'rolled-back');
    t.equal(m.res.error.phase, 'quiesce');
    t.match(m.res.error.message, /no answer/);
    await stillRunning('guest-stall');
  });

  await t.test('symrun cancel during the transfer: rolled back', async (t) => {
    const bg = sym(['migrate', 'vm2', '--bandwidth', '2M', '--json']);
    let performSeen = false;
    const end = Date.now() + 120_000;
    while (!performSeen && Date.now() < end) {
      performSeen = (await status()).vms.find((v) => v.name === 'vm2')?.migrating === 'perform';
      if (!performSeen) await new Promise((r) => setTimeout(r, 200));
    }
    t.ok(performSeen, 'migration reached perform');
    const c = await sym(['cancel', 'vm2']);
    t.equal(c.code, 0, `cancel accepted: ${c.stdout}${c.stderr}`);
    const r = await bg;
    const res = JSON.parse(r.stdout);
    t.equal(r.code, 5);
    t.equal(res.outcome, 'rolled-back');
    t.equal(res.error.code, 'ESYM_CANCELLED');
    t.equal(await hostOf('vm2'), 'host2');
    await stillRunning('cancel');
  });

  await t.test('the destination refuses device_add: the VM goes back to its source', async (t) => {
    const m = await migrate(['vm2', '--fault', 'refuse-device-add@dst']);
    t.equal(m.code, 5, 'exit 5: the VM is back where it was');
    t.equal(m.res.outcome, 'rolled-back');
    t.equal(m.res.error.phase, 'replug');
    t.match(m.res.error.message, /rp-fault-injected|not found/i, 'the refusal is QEMU\'s own');
    t.equal(m.res.returnTrip?.outcome, 'done', 'return trip done');
    t.equal(await hostOf('vm2'), 'host2');
    await stillRunning('refused device');
  });

  await t.test('vm2 moves to the spare', async (t) => {
    const m = await migrate(['vm2']);
    t.equal(m.code, 0, m.stderr);
    t.equal(m.res.outcome, 'done');
    for (const p of ['prepare', 'quiesce', 'unplug', 'perform', 'finish', 'replug', 'reconfigure', 'resume', 'confirm']) t.ok(m.res.phasesMs[p] !== undefined, `phase ${p} timed`);
    const perf = m.res.events.find((e: any) => e.phase === 'perform' && e.event === 'end');
    t.ok(perf.data.transferredBytes > 0, 'QEMU figures in the perform event');
    const st = await status();
    t.equal(st.vms.find((v) => v.name === 'vm2')!.host, 'host4');
    t.equal(st.hosts.find((h) => h.name === 'host2')!.role, 'spare', 'the source host is free again');
    await stillRunning('migration of vm2');
  });

  await t.test('vm1 (where mpirun runs) moves to the freed host', async (t) => {
    const m = await migrate(['vm1', '--to', 'host2', '--mode', 'stop-copy']);
    t.equal(m.code, 0, m.stderr);
    t.equal(await hostOf('vm1'), 'host2');
    await stillRunning('migration of vm1');
  });

  await t.test('vm3 moves by postcopy within a deadline', async (t) => {
    const m = await migrate(['vm3', '--mode', 'postcopy', '--deadline', '120s']);
    t.equal(m.code, 0, m.stderr);
    t.equal(m.res.outcome, 'done');
    t.equal(await hostOf('vm3'), 'host1', 'the one free host');
    const text = await sym(['status']);
    t.match(text.stdout, /migration \w+: vm3 host3 -> host1: done in \d+ ms/, 'status lists past migrations');
    await stillRunning('postcopy migration of vm3');
  });

  await t.test('bad requests name the field', async (t) => {
    const a = await sym(['migrate', 'vm9']);
    t.equal(a.code, 2);
    t.match(a.stderr, /no VM named vm9/);
    const b = await sym(['migrate', 'vm3', '--to', 'host2']);
    t.equal(b.code, 2);
    t.match(b.stderr, /host2 already runs a VM/);
    t.match(b.stderr, /--to/, 'the option is named');
    const c = await sym(['migrate', 'vm3', '--mode', 'teleport']);
    t.equal(c.code, 2);
    t.match(c.stderr, /--mode/);
  });

  // end the ring: the stop file must appear inside vm1 (the guests have a copy of the directory)
  const { touch, code } = await job.stop();
  t.equal(touch.code, 0, `exec touch: ${touch.stdout}${touch.stderr}`);
  t.equal(code, 0, `symrun exit 0\n${job.stderr().slice(-3000)}`);
  t.match(job.stdout(), /ring OK: ranks=3 /, 'the checksum over every message is right');

  const evs = fs.readFileSync(events, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const results = evs.filter((e) => e.event === 'result').map((e) => e.data.outcome);
  t.same(results.filter((o) => o === 'done').length >= 3, true, 'three successful moves recorded (incl. the return trip)');
  t.ok(evs.every((e) => typeof e.ts === 'string' && e.op && e.phase), 'every event has a timestamp, op and phase');
});
