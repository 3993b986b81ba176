// Reactive restart on the real Slurm lab (3 VMs + 1 spare, `--no-kill`), and `symrun restart` in a new allocation:
//  1. a checkpoint, then node n2 powered off (link cut, everything killed): the job restarts every VM from
//     that checkpoint (vm2 on the spare n4) and the ring finishes with the right answer; job COMPLETED;
//  2. a node dies while a checkpoint is being written: the previous complete checkpoint is used;
//  3. a corrupted state file: `symrun checkpoints` says corrupt, `symrun restart --from` refuses it;
//  4. `symrun restart DIR` in a new allocation: the corrupt newest checkpoint is skipped, the one before
//     it is restored, the ring goes on from there and finishes; job COMPLETED.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { submitRingJob, waitRing, status, readOut, readEvents, symrunPath, untapEnv, jobEnded, endRing, type RingJob, type StatusJson } from '../fixtures/slurm-ring.js';

needRoot('the Slurm lab and the VMs need root');
for (const [c, p] of [['slurmctld', 'slurm-wlm'], ['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86']] as const) need(c, p);

type RestartStatus = StatusJson & { restarts?: { count: number; max: number; lostHosts: string[]; log: Array<{ hosts: string[]; why: string; from?: string; ms?: number; moved?: Array<{ vm: string; from: string; to: string }> }> } };

async function checkpoint(lab: SlurmLab, jobId: string): Promise<{ code: number | null; json: any; stderr: string }> {
  const r = await lab.exec('n1', [symrunPath, 'checkpoint', '--job', jobId, '--json'], { env: untapEnv(), timeoutMs: 300_000 });
  let json: any;
  try { json = JSON.parse(r.stdout); } catch { /* failed before a result */ }
  return { code: r.exitCode, json, stderr: r.stderr };
}

async function waitRestarted(lab: SlurmLab, job: RingJob, count: number, timeoutMs: number, ended: () => Promise<string | undefined>): Promise<RestartStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const why = await ended();
    if (why) throw new Error(`${why}; output:\n${readOut(job).slice(-4000)}`);
    const st = (await status(lab).catch(() => undefined)) as RestartStatus | undefined;
    if (st && (st.restarts?.count ?? 0) >= count && st.state === 'running') return st;
    if (Date.now() > deadline) throw new Error(`no restart ${count} within ${timeoutMs} ms: ${JSON.stringify(st?.restarts)}`);
    await sleep(500);
  }
}

type T = Parameters<Parameters<typeof t.test>[0]>[0];

async function finish(t: T, lab: SlurmLab, job: RingJob, ended: () => Promise<string | undefined>): Promise<string> {
  const itNow = await waitRing(job, 5_000, 0);
  await waitRing(job, 300_000, itNow + 100, ended);
  const st = await status(lab);
  const { job: j, out } = await endRing(lab, job, st.jobId);
  t.equal(j.state, 'COMPLETED', `batch job COMPLETED (output: ${out.slice(-2500)})`);
  t.match(out, /ring OK: ranks=3 /, 'ring OK: the right answer after the restart');
  return out;
}

t.test('reactive restart and symrun restart on the Slurm lab', async (t) => {
  const lab: SlurmLab = await startSlurmLab({ nodes: 4, name: `sr${process.pid.toString(36)}`.slice(0, 16), temporary: true });
  t.teardown(() => lab.stop());
  const ckptA = path.join(lab.workDir, 'ckpt-a');
  const ckptB = path.join(lab.workDir, 'ckpt-b');

  // ---- 1. node powered off after a checkpoint ----
  let firstCkpt = '';
  let secondCkpt = '';
  await t.test('n2 powered off -> every VM restored from the checkpoint, vm2 on the spare; ring OK', async (t) => {
    const job = await submitRingJob(lab, `a${process.pid}`, ['--spares', '1', '--checkpoint-dir', ckptA, '--keep', '3']);
    const ended = jobEnded(lab, job);
    await waitRing(job, 900_000, 100, ended);
    const st0 = await status(lab);
    const c1 = await checkpoint(lab, st0.jobId);
    t.equal(c1.code, 0, `checkpoint taken (${c1.stderr.slice(-500)})`);
    firstCkpt = c1.json?.name ?? '';
    t.ok(firstCkpt && fs.existsSync(path.join(ckptA, firstCkpt, 'manifest.json')), `complete checkpoint ${firstCkpt}`);
    const itAtCkpt = await waitRing(job, 5_000, 0);
    await waitRing(job, 120_000, itAtCkpt + 100, ended); // the job goes on past the checkpoint

    const crashAt = Date.now();
    await lab.crash('n2');
    const st = await waitRestarted(lab, job, 1, 300_000, ended);
    const rec = st.restarts!.log[0]!;
    t.same(st.restarts!.lostHosts, ['n2'], 'n2 lost');
    t.equal(rec.from, firstCkpt, 'restored from the checkpoint');
    t.same(rec.moved, [{ vm: 'vm2', from: 'n2', to: 'n4' }], 'vm2 restarted on the spare n4');
    t.same(st.vms.map((v) => [v.name, v.host]), [['vm1', 'n1'], ['vm2', 'n4'], ['vm3', 'n3']], 'survivors restored where they were');
    const ev = readEvents(job);
    const lost = ev.find((e) => e.kind === 'restart' && e.data?.action === 'host-lost');
    const done = ev.find((e) => e.kind === 'restart' && e.event === 'result');
    t.ok(lost && done, 'events: host-lost, restart phases, result');
    const detectMs = lost ? Date.parse(lost.ts) - crashAt : NaN;
    t.comment(`MEASURE crash -> host lost ${detectMs} ms (${rec.why}); restart ${rec.ms} ms; phases ${JSON.stringify(done?.data?.phases)}`);

    // one more checkpoint after the restart (on n1, n4, n3), then the ring finishes
    await waitRing(job, 120_000, itAtCkpt + 50, ended);
    const c2 = await checkpoint(lab, st.jobId);
    t.equal(c2.code, 0, 'a checkpoint after the restart');
    secondCkpt = c2.json?.name ?? '';
    await finish(t, lab, job, ended);
  });

  // ---- 2. a node dies while a checkpoint is being written ----
  await t.test('n3 dies during a checkpoint -> the previous complete one is used; ring OK', async (t) => {
    await lab.restart('n2');
    const job = await submitRingJob(lab, `b${process.pid}`, ['--spares', '1', '--checkpoint-dir', ckptB]);
    const ended = jobEnded(lab, job);
    await waitRing(job, 900_000, 100, ended);
    const st0 = await status(lab);
    const c1 = await checkpoint(lab, st0.jobId);
    t.equal(c1.code, 0, 'first checkpoint complete');
    const good = c1.json?.name;
    const before = readEvents(job).length;
    const second = checkpoint(lab, st0.jobId);
    // crash n3 as soon as the second checkpoint starts saving
    const deadline = Date.now() + 120_000;
    let saving = false;
    while (Date.now() < deadline && !saving) {
      saving = readEvents(job).slice(before).some((e) => e.kind === 'checkpoint' && e.phase === 'save' && e.event === 'begin');
      if (!saving) await sleep(25);
    }
    t.ok(saving, 'second checkpoint reached its save phase');
    await lab.crash('n3');
    const r2 = await second;
    t.not(r2.code, 0, `the checkpoint being written did not complete (exit ${r2.code})`);
    const st = await waitRestarted(lab, job, 1, 300_000, ended);
    const rec = st.restarts!.log[0]!;
    t.equal(rec.from, good, `restored from the previous complete checkpoint ${good}`);
    t.same(rec.moved, [{ vm: 'vm3', from: 'n3', to: 'n4' }], 'vm3 on the spare');
    const names = fs.readdirSync(ckptB);
    t.notOk(names.some((n) => n !== good && !n.includes('.tmp-') && fs.existsSync(path.join(ckptB, n, 'manifest.json'))), `no other complete checkpoint (${names.join(', ')})`);
    await finish(t, lab, job, ended);
  });

  // ---- 3. corrupted state file ----
  await t.test('a corrupted state file is refused', async (t) => {
    t.ok(secondCkpt, 'job 1 left a second checkpoint');
    const f = path.join(ckptA, secondCkpt, 'vm2.state');
    const fd = fs.openSync(f, 'r+');
    const size = fs.fstatSync(fd).size;
    fs.writeSync(fd, Buffer.from('CORRUPTED'), 0, 9, Math.floor(size / 2));
    fs.closeSync(fd);
    const ls = await lab.exec('n1', [symrunPath, 'checkpoints', ckptA], { env: untapEnv(), timeoutMs: 120_000 });
    t.match(ls.stdout, new RegExp(`${secondCkpt}\\s+corrupt`), `listed corrupt:\n${ls.stdout}`);
    const r = await lab.exec('n1', [symrunPath, 'restart', ckptA, '--from', secondCkpt, '--spares', '1'], { env: untapEnv(), timeoutMs: 120_000 });
    t.equal(r.exitCode, 2, 'refused: exit 2');
    t.match(r.stderr, /vm2\.state \(vm2\) sha256 .* does not match the manifest/, `says which file and why:\n${r.stderr}`);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });

  // ---- 4. symrun restart in a new allocation ----
  await t.test('symrun restart in a new allocation: newest (corrupt) skipped, the one before restored; ring OK', async (t) => {
    await lab.restart('n3');
    const work = path.join(lab.workDir, `restart-${process.pid}`);
    fs.mkdirSync(work, { recursive: true });
    const out = path.join(work, 'job.out');
    const events = path.join(work, 'events.jsonl');
    const script = ['#!/bin/bash', '#SBATCH -N 4 --no-kill', `#SBATCH -o ${out}`, 'unset NODE_OPTIONS', `cd ${work}`, `exec ${symrunPath} restart ${ckptA} --spares 1 --events ${events}`, ''].join('\n');
    const jobId = await lab.sbatch(script, { cwd: work, env: untapEnv() });
    // the stop file of job 1 is what the ring in the restored guests looks for
    const job1 = fs.readdirSync(lab.workDir).find((d) => d.startsWith('ring-a'))!;
    const job: RingJob = { jobId, work, out, events, stopFile: path.join(lab.workDir, job1, 'STOPFILE') };
    const ended = jobEnded(lab, job);
    const deadline = Date.now() + 600_000;
    while (!/restarted from|ring iteration/.test(readOut(job))) {
      const why = await ended();
      if (why || Date.now() > deadline) throw new Error(`${why ?? 'timeout'}: ${readOut(job).slice(-3000)}`);
      await sleep(500);
    }
    const text = readOut(job);
    t.match(text, new RegExp(`checkpoint ${secondCkpt} not used: corrupt`), 'the corrupt newest checkpoint was not used');
    t.match(text, new RegExp(`restarting job \\w+ from checkpoint ${firstCkpt}`), `restored from ${firstCkpt}`);
    const st = await status(lab);
    t.same(st.vms.map((v) => [v.name, v.host]), [['vm1', 'n1'], ['vm2', 'n2'], ['vm3', 'n3']], 'VMs on the new allocation\'s first nodes');
    const ev = readEvents(job).find((e) => e.kind === 'restart' && e.event === 'result');
    t.comment(`MEASURE symrun restart: restore ${ev?.ms} ms, phases ${JSON.stringify(ev?.data?.phases)}`);
    await finish(t, lab, job, ended);
  });
});
