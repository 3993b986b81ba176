// The job's recovery record (coordinator/job/job.ts saveRecovery, carried, carryFrom): what a running
// coordinator writes to recover.json and a successor (`symrun recover`) goes on with: the restarts used
// and their budget, the periodic checkpoint clock, how mpirun was launched, the MAC seed, the guests'
// prefix length, the events file. Run and recover set these up through the same function (carryFrom).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../launcher/src/config/load.js';
import { Job } from '../../launcher/src/coordinator/job/job.js';
import type { RecoveryState } from '../../launcher/src/coordinator/job/rundir.js';
import type { HostSet } from '../../launcher/src/coordinator/hosts.js';
import type { ImageInfo } from '../../launcher/src/image/index.js';

const quiet = () => new Writable({ write: (_c, _e, cb) => cb() });

function setup(t: { teardown(fn: () => void): void }, o: { restartFromStart: boolean }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'job-carry-'));
  const had = process.env.SYMRUN_RUNTIME_DIR;
  process.env.SYMRUN_RUNTIME_DIR = path.join(dir, 'run');
  t.teardown(() => { if (had === undefined) delete process.env.SYMRUN_RUNTIME_DIR; else process.env.SYMRUN_RUNTIME_DIR = had; fs.rmSync(dir, { recursive: true, force: true }); });
  const config = loadConfig({ env: {}, cwd: dir, overrides: { local: 2, spares: 1, checkpointDir: path.join(dir, 'ckpt'), checkpointInterval: '60s', maxRestarts: 3, restartFromStart: o.restartFromStart } });
  const job = new Job({ config, app: ['./ring', '100'], cwd: dir, quiet: true, stdout: quiet(), stderr: quiet(), eventsFile: path.join(dir, 'events.jsonl') });
  // what a run has once its agents are connected (saveRecovery records a local job only)
  job.agents.secret = 'c0ffee';
  job.cluster = { mode: 'local', coordinatorIp: '10.77.0.1', prefixLen: 24, hosts: ['h1', 'h2', 'h3'].map((name, i) => ({ name, ip: `10.77.0.${i + 2}`, bridge: 'br0' })) } as unknown as HostSet;
  job.image = { kernel: '/img/vmlinuz', initrd: '/img/initrd.img', rootfs: '/img/root.ext4' } as unknown as ImageInfo;
  job.vmHostCount = 2;
  fs.mkdirSync(job.runDir, { recursive: true });
  const record = () => JSON.parse(fs.readFileSync(path.join(job.runDir, 'recover.json'), 'utf8')) as RecoveryState;
  return { dir, config, job, record };
}

const launch = { vm: 'vm1', argv: ['mpirun', '-np', '2', './ring'], env: { OMPI_MCA_btl: 'tcp,self' }, rankVm: ['vm1', 'vm2'], stage: { abs: ['/opt/lib/libx.so'], cwd: ['ring'] } };

t.test('recover.json holds what the job carries on with, and a successor takes it over', async (t) => {
  const { job, record, dir } = setup(t, { restartFromStart: true });
  const fresh = job.carryFrom(undefined);
  t.same(fresh.restarts, { used: 0, max: 3, log: [] }, 'a run starts with its whole budget');
  // the job ran for a while: two restarts, restored from a checkpoint of an earlier job
  job.restarts.launch = launch;
  job.restarts.count = 2;
  job.restarts.log.push({ at: '2026-12-05T10:00:00.000Z', hosts: ['h2'], why: 'gone', from: 'ck1', ms: 800 }, { at: '2026-12-05T10:05:00.000Z', hosts: ['h1'], why: 'gone', from: 'ck2', ms: 900 });
  job.macSeed = 'j0ld01';
  job.prefixLenOverride = 20;
  job.saveRecovery();
  const st = record();
  t.ok(st.carry, 'the record carries the job\'s state');
  t.same(st.carry!.restarts, { used: 2, max: 3, log: job.restarts.log }, 'restarts used and the budget');
  t.equal(st.carry!.checkpointTimer?.intervalMs, 60_000, 'the checkpoint interval');
  t.ok(Math.abs(Date.parse(st.carry!.checkpointTimer!.since) - Date.now()) < 60_000, 'and when its clock started');
  t.same(st.carry!.launch, launch, 'how mpirun was launched (--restart-from-start launches it again)');
  t.equal(st.carry!.macSeed, 'j0ld01');
  t.equal(st.carry!.prefixLenOverride, 20);
  t.equal(st.carry!.eventsFile, path.join(dir, 'events.jsonl'));

  // the successor, as cli/recover.ts makes it from the record
  const next = new Job({ config: st.config, app: st.app, cwd: st.cwd, jobId: st.jobId, quiet: true, stdout: quiet(), stderr: quiet(), eventsFile: st.carry!.eventsFile });
  const plan = next.carryFrom(st.carry);
  t.equal(next.restarts.count, 2, 'restarts used are not reset');
  t.equal(next.restarts.max, 3);
  t.same(next.restarts.log, st.carry!.restarts.log, 'the restart log goes on');
  t.same(next.restarts.launch, launch);
  t.equal(next.macSeed, 'j0ld01', 'MACs and the checkpoints a restart may use: the original job\'s');
  t.equal(next.prefixLenOverride, 20);
  t.same(plan.timer, st.carry!.checkpointTimer, 'the periodic checkpoint clock is the dead coordinator\'s, not a new one');
  t.same(next.carried(), st.carry, 'and the successor records the same again');
});

t.test('without --restart-from-start the launch is not recorded (nothing would use it)', async (t) => {
  const { job, record } = setup(t, { restartFromStart: false });
  job.carryFrom(undefined);
  job.restarts.launch = launch;
  job.saveRecovery();
  t.equal(record().carry?.launch, undefined);
  t.equal(record().carry?.restarts.used, 0);
});
