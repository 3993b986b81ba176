// Coordinated checkpoints of a running MPI job with real QEMU, Open MPI and namespaces: 3 VMs running
// an iterative ring whose checksum fails on any lost, duplicated or corrupted message. While it runs:
// two checkpoints with --keep 1 (one complete checkpoint remains, 3 state files whose sha256 match),
// a checkpoint into a 16 MiB tmpfs (refused for lack of space, rolled back: the job runs on and the
// previous checkpoint is intact), and `symrun checkpoints` on a hand-corrupted copy and an abandoned
// temp dir. The ring must go on after each and end with the right checksum.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot, runSymrun } from '../fixtures/symrun-env.js';
import { startRingJob } from '../fixtures/ring-job.js';

need('mpicc', 'libopenmpi-dev');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-ckpt-'));
const ckptRoot = path.join(work, 'ckpt');
const tiny = path.join(work, 'tiny');
fs.mkdirSync(tiny);
// mounted before the job starts, so every host agent's mount namespace sees it
execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', tiny]);
t.teardown(() => {
  try { execFileSync('umount', [tiny]); } catch { /* not mounted */ }
  fs.rmSync(work, { recursive: true, force: true });
});
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
const events = path.join(work, 'events.jsonl');
const stopFile = path.join(work, 'stop');

const sha256 = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

t.test('checkpoints of a running job: keep 1, verified files, out of space, corrupt copies', async (t) => {
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', '3', '--checkpoint-dir', ckptRoot, '--keep', '1', '--events', events], stopFile });
  t.teardown(() => job.kill());
  const { sym, stillRunning } = job;
  const checkpoint = async (args: string[] = []) => {
    const r = await sym(['checkpoint', ...args, '--json'], 600_000);
    let res: any;
    try { res = JSON.parse(r.stdout); } catch { throw new Error(`checkpoint ${args.join(' ')}: no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`); }
    return { code: r.code, res, stderr: r.stderr };
  };
  const list = async (dir: string) => {
    const r = await runSymrun(['checkpoints', dir, '--json'], { cwd: work, timeoutMs: 120_000 });
    t.equal(r.code, 0, `symrun checkpoints exit 0: ${r.stderr}`);
    return JSON.parse(r.stdout) as Array<{ name: string; dir: string; status: string; reason?: string; vms?: string[]; jobId?: string; sizeBytes: number }>;
  };

  let first = '';
  let second = '';
  await t.test('first checkpoint', async (t) => {
    const c = await checkpoint();
    t.equal(c.code, 0, c.stderr);
    t.equal(c.res.outcome, 'done');
    t.equal(c.res.vms.length, 3, 'three VM state files');
    for (const p of ['prepare', 'quiesce', 'unplug', 'save', 'cont', 'replug', 'reconfigure', 'resume', 'commit']) t.ok(c.res.phasesMs[p] !== undefined, `phase ${p} timed`);
    t.ok(c.res.frozenMs > 0, `ranks frozen ${c.res.frozenMs} ms`);
    first = c.res.name;
    t.ok(fs.existsSync(path.join(ckptRoot, first, 'manifest.json')));
    t.comment(`checkpoint 1: total ${c.res.totalMs} ms, save ${c.res.phasesMs.save} ms, frozen ${c.res.frozenMs} ms, ${c.res.sizeBytes} bytes`);
    await stillRunning('first checkpoint');
  });

  await t.test('second checkpoint with --keep 1: only it remains, and it verifies', async (t) => {
    const c = await checkpoint();
    t.equal(c.code, 0, c.stderr);
    t.equal(c.res.outcome, 'done');
    second = c.res.name;
    t.not(second, first);
    t.same(c.res.pruned, [first], 'the first checkpoint was removed after the second was complete');
    t.comment(`checkpoint 2: total ${c.res.totalMs} ms, save ${c.res.phasesMs.save} ms, frozen ${c.res.frozenMs} ms, ${c.res.sizeBytes} bytes`);
    const l = await list(ckptRoot);
    t.equal(l.length, 1, 'one checkpoint listed');
    t.equal(l[0]!.name, second);
    t.equal(l[0]!.status, 'complete');
    t.same(l[0]!.vms, ['vm1', 'vm2', 'vm3']);
    const m = JSON.parse(fs.readFileSync(path.join(ckptRoot, second, 'manifest.json'), 'utf8'));
    t.equal(m.format, 'symrun-checkpoint');
    t.equal(m.formatVersion, 1);
    t.equal(m.jobId, job.id);
    t.equal(m.vms.length, 3);
    for (const v of m.vms) {
      const f = path.join(ckptRoot, second, v.file);
      t.equal(fs.statSync(f).size, v.size, `${v.file} size`);
      t.equal(sha256(f), v.sha256, `${v.file} sha256`);
      t.notOk(v.qemuArgs.some((a: string) => a.includes('symfab0') || a.includes('vfio-pci')), `${v.name}: restore command line has no interconnect device`);
      t.ok(v.device.mac && v.network.address, `${v.name}: device and network recorded`);
    }
    t.ok(m.image.hash && m.command.app[0] === './ring', 'image hash and command line recorded');
    await stillRunning('second checkpoint');
  });

  await t.test('a checkpoint into a 16 MiB tmpfs is refused for lack of space; nothing changes', async (t) => {
    const c = await checkpoint(['--dir', tiny]);
    t.equal(c.code, 5, 'exit 5: not taken, rolled back');
    t.equal(c.res.outcome, 'rolled-back');
    t.equal(c.res.error.code, 'ESYM_CKPT_NO_SPACE');
    t.match(c.res.error.message, /not enough disk space .* in .*tiny.*needed.*free/);
    const text = await sym(['checkpoint', '--dir', tiny]);
    t.equal(text.code, 5);
    t.match(text.stderr, /not enough disk space/, 'the message says why');
    t.match(text.stderr, /the job runs on as before/);
    t.same(fs.readdirSync(tiny), [], 'nothing left in the tiny directory');
    const l = await list(ckptRoot);
    t.equal(l.length, 1);
    t.equal(l[0]!.name, second);
    t.equal(l[0]!.status, 'complete', 'the previous checkpoint is intact');
    await stillRunning('refused checkpoint');
  });

  await t.test('symrun checkpoints reports a corrupted copy and an abandoned temp dir', async (t) => {
    const copy = path.join(ckptRoot, 'copy-corrupt');
    fs.cpSync(path.join(ckptRoot, second), copy, { recursive: true });
    const f = path.join(copy, 'vm2.state');
    const fd = fs.openSync(f, 'r+');
    const size = fs.fstatSync(fd).size;
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, Math.floor(size / 2));
    b[0] = b[0]! ^ 0xff;
    fs.writeSync(fd, b, 0, 1, Math.floor(size / 2));
    fs.closeSync(fd);
    fs.mkdirSync(path.join(ckptRoot, `${job.id}-20000101T000000000Z.tmp-abcdef`));
    const l = await list(ckptRoot);
    const by = (n: string) => l.find((e) => e.name === n);
    t.equal(by('copy-corrupt')?.status, 'corrupt');
    t.match(by('copy-corrupt')?.reason, /vm2\.state.*sha256/);
    t.equal(by(`${job.id}-20000101T000000000Z.tmp-abcdef`)?.status, 'incomplete');
    t.equal(by(second)?.status, 'complete');
    const text = await runSymrun(['checkpoints', ckptRoot], { cwd: work, timeoutMs: 120_000 });
    t.match(text.stdout, /copy-corrupt\s+corrupt/);
    fs.rmSync(copy, { recursive: true, force: true });
  });

  const { touch, code } = await job.stop();
  t.equal(touch.code, 0, `exec touch: ${touch.stdout}${touch.stderr}`);
  t.equal(code, 0, `symrun exit 0\n${job.stderr().slice(-3000)}`);
  t.match(job.stdout(), /ring OK: ranks=3 /, 'the checksum over every message is right');
  const evs = fs.readFileSync(events, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const results = evs.filter((e) => e.kind === 'checkpoint' && e.event === 'result').map((e) => e.data.outcome);
  t.same(results, ['done', 'done', 'rolled-back', 'rolled-back'], 'every checkpoint recorded with its outcome');
});
