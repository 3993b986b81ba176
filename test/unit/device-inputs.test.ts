// What the root-side commands accept: job ids, uids (through getent), slot counts; and whether a job
// still exists (scontrol, on output recorded from the Slurm 22.05.8 lab: test/fixtures/slurm/).
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../launcher/src/defaults.js';
import { checkJobId, checkSlots, checkUid, parsePasswdLine } from '../../launcher/src/device/inputs.js';
import { classifyJob, jobLiveness } from '../../launcher/src/device/jobstate.js';
import { execRunner } from '../../launcher/src/device/runner.js';
import { RecordingRunner } from '../fakes/fake-kernel.js';

const fixture = (f: string) => fs.readFileSync(path.join(repoRoot(), 'test/fixtures/slurm', f), 'utf8');

t.test('job ids: digits only', async (t) => {
  t.equal(checkJobId('4711'), '4711');
  t.equal(checkJobId('4294967295'), '4294967295');
  for (const bad of ['', '0', '007', '12;rm -rf /', '12 ', '-1', '4294967296', '1e3', '../1', '12345678901', undefined]) {
    t.throws(() => checkJobId(bad), { code: 'ESYM_DEVICE_ARGS', field: '--job', fix: /SLURM_JOB_ID/ }, JSON.stringify(bad));
  }
});

t.test('slots: 1..64', async (t) => {
  t.same([checkSlots('1'), checkSlots('64')], [1, 64]);
  for (const bad of ['0', '65', '1.5', 'two', '', undefined]) t.throws(() => checkSlots(bad), { code: 'ESYM_DEVICE_ARGS', field: '--slots' }, String(bad));
});

t.test('uids: a number of a user the node knows (getent passwd)', async (t) => {
  const r = new RecordingRunner()
    .on((a) => a[2] === '1001', { code: 0, stdout: 'alice:x:1001:1002:Alice:/home/alice:/bin/bash\n' })
    .on((a) => a[2] === '1003', { code: 0, stdout: 'bob:x:1004:1004::/home/bob:/bin/sh\n' })
    .on((a) => a[2] === '1005', { code: 1, stderr: 'getent: cannot contact ldap\n' })
    .on(() => true, { code: 2 });
  t.same(await checkUid('1001', r.run, '/usr/bin/getent'), { name: 'alice', uid: 1001, gid: 1002 });
  t.same(r.calls[0], ['/usr/bin/getent', 'passwd', '1001']);
  await t.rejects(checkUid('4242', r.run, '/usr/bin/getent'), { code: 'ESYM_DEVICE_ARGS', message: '--uid: no user has uid 4242 on this node' });
  await t.rejects(checkUid('1003', r.run, '/usr/bin/getent'), { code: 'ESYM_DEVICE_USERDB' }, 'an answer for another uid is not trusted');
  await t.rejects(checkUid('1005', r.run, '/usr/bin/getent'), { code: 'ESYM_DEVICE_USERDB', message: /exited 1: getent: cannot contact ldap/ });
  const before = r.calls.length;
  for (const bad of ['alice', '-1', '1001 ', '01001', '4294967295', '$(id)']) {
    await t.rejects(checkUid(bad, r.run, '/usr/bin/getent'), { code: 'ESYM_DEVICE_ARGS', field: '--uid' }, bad);
  }
  t.equal(r.calls.length, before, 'a malformed uid never reaches getent');
  t.same(parsePasswdLine('root:x:0:0:root:/root:/bin/bash'), { name: 'root', uid: 0, gid: 0 });
  t.equal(parsePasswdLine('broken:x:0'), undefined);
});

t.test('uids on this machine through the real getent (root exists, uid 4294967294 does not)', async (t) => {
  t.same(await checkUid('0', execRunner, '/usr/bin/getent'), { name: 'root', uid: 0, gid: 0 });
  await t.rejects(checkUid('4294967294', execRunner, '/usr/bin/getent'), { code: 'ESYM_DEVICE_ARGS' });
  const missing = await execRunner(['/nonexistent/getent', 'passwd', '0']);
  t.equal(missing.code, -1);
  t.match(missing.stderr, /ENOENT/);
  t.same(await execRunner(['getent', 'passwd', '0']), { code: -1, stdout: '', stderr: 'not an absolute path: getent' }, 'never through PATH');
});

t.test('job liveness from scontrol\'s answers', async (t) => {
  t.same(classifyJob('1', 0, fixture('job-running.txt'), ''), { job: '1', state: 'live', detail: 'JobState=RUNNING' });
  t.same(classifyJob('3', 0, fixture('job-completed.txt'), ''), { job: '3', state: 'gone', detail: 'JobState=COMPLETED' });
  t.equal(classifyJob('2', 0, fixture('job-pending-held.txt'), '').state, 'live');
  t.same(classifyJob('424242', 1, '', fixture('job-invalid-id.stderr.txt')), { job: '424242', state: 'gone', detail: 'slurmctld knows no such job' });
  t.equal(classifyJob('1', 1, '', 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n').state, 'unknown', 'a controller that does not answer is no proof');
  t.equal(classifyJob('9', 0, fixture('job-running.txt'), '').state, 'unknown', 'a record of another job is no answer');
  const r = new RecordingRunner().on(() => true, { code: 1, stderr: fixture('job-invalid-id.stderr.txt') });
  t.equal((await jobLiveness(r.run, '/usr/bin/scontrol', '77')).state, 'gone');
  t.same(r.calls, [['/usr/bin/scontrol', 'show', 'job', '-o', '77']]);
});
