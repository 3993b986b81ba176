// recover.json checked before `symrun recover` acts on it (coordinator/job/recovery-check.ts): a record as
// a coordinator writes it passes unchanged; each damaged field is refused with ESYM_RECOVER naming the
// field and the value (not a TypeError from deep inside the take-over); listRecoverable lists a damaged
// record with its problem instead of dropping it.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkRecoveryState } from '../../launcher/src/coordinator/job/recovery-check.js';
import { listRecoverable } from '../../launcher/src/coordinator/job/rundir.js';
import { SymError } from '../../launcher/src/errors.js';

/** what saveRecovery writes for a --local 2 --spares 1 job (shapes as recorded by a real run) */
function record(): Record<string, any> {
  return {
    v: 1, jobId: 'j3fa21', secret: '9f1c0a7be2d4', channel: { host: '198.18.0.1', port: 41235 }, accel: 'tcg',
    image: { hash: 'ab'.repeat(32), dir: '/root/.cache/symrun/images/abab', kernel: '/root/.cache/symrun/images/abab/vmlinuz', initrd: '/root/.cache/symrun/images/abab/initrd.img', rootfs: '/root/.cache/symrun/images/abab/rootfs.img', kernelVersion: '6.1.0-28-amd64', manifestPath: '/root/.cache/symrun/images/abab/manifest.json', builtNow: false },
    config: { vm: { memoryMiB: 512 }, migration: { quiesce: 'freeze' } },
    app: ['./ring', '100'], cwd: '/home/u/job',
    hosts: [{ name: 'host1', ip: '198.18.0.2', bridge: 'symbr0' }, { name: 'host2', ip: '198.18.0.3', bridge: 'symbr0' }, { name: 'host3', ip: '198.18.0.4', bridge: 'symbr0' }],
    prefixLen: 24, vmHostCount: 2,
    vms: [{ name: 'vm1', index: 1, host: 'host1', mac: '52:54:00:12:34:01', ip: '198.18.3.101', tap: 'symtap1' }, { name: 'vm2', index: 2, host: 'host2', mac: '52:54:00:12:34:02', ip: '198.18.3.102', tap: 'symtap2' }],
    mpirun: { vm: 'vm1', sid: 's412x3', rankVm: ['vm1', 'vm2'] },
    rsh: [{ rid: 'r377-1', from: 'vm1', to: 'vm2', sid: 's388x2' }],
    lostHosts: [],
    carry: { restarts: { used: 0, max: 1, log: [] }, macSeed: 'j3fa21' },
  };
}

function refused(t: any, raw: unknown, field: string, dirId = 'j3fa21'): void {
  try {
    checkRecoveryState(raw, dirId);
    t.fail(`${field}: accepted`);
  } catch (e) {
    t.ok(e instanceof SymError, `${field}: a SymError, not ${(e as Error).name}`);
    t.equal((e as SymError).code, 'ESYM_RECOVER');
    t.equal((e as SymError).field, field, `names ${field}`);
    t.match((e as SymError).message, new RegExp(`^recover\\.json: ${field.replace(/[[\].]/g, '\\$&')} `));
    t.ok((e as SymError).fix, 'and says what to do');
  }
}

const damaged = (f: (r: Record<string, any>) => void) => {
  const r = record();
  f(r);
  return r;
};

t.test('a record as written passes, unchanged', async (t) => {
  const r = record();
  t.equal(checkRecoveryState(r, 'j3fa21'), r);
  const { mpirun: _m, lostHosts: _l, carry: _c, ...older } = r; // optional parts missing (an older symrun)
  t.equal(checkRecoveryState(older, 'j3fa21'), older);
});

t.test('each damaged field is refused and named', async (t) => {
  refused(t, null, 'the record');
  refused(t, [record()], 'the record');
  refused(t, damaged((r) => (r.v = 2)), 'v');
  refused(t, damaged((r) => (r.jobId = 'j3fa22')), 'jobId'); // not the run directory's
  refused(t, damaged((r) => (r.jobId = '../etc')), 'jobId');
  refused(t, damaged((r) => (r.secret = '')), 'secret');
  refused(t, damaged((r) => (r.channel = '198.18.0.1:41235')), 'channel');
  refused(t, damaged((r) => (r.channel.host = 'evil.example.com')), 'channel.host');
  refused(t, damaged((r) => (r.channel.port = 70000)), 'channel.port');
  refused(t, damaged((r) => (r.accel = 'hvf')), 'accel');
  refused(t, damaged((r) => delete r.image), 'image');
  refused(t, damaged((r) => (r.image.kernel = 'vmlinuz')), 'image.kernel');
  refused(t, damaged((r) => (r.config = 'symrun.yaml')), 'config');
  refused(t, damaged((r) => (r.app = [])), 'app');
  refused(t, damaged((r) => (r.app = ['./ring', 7])), 'app[1]');
  refused(t, damaged((r) => delete r.cwd), 'cwd');
  refused(t, damaged((r) => (r.hosts = [])), 'hosts');
  refused(t, damaged((r) => (r.hosts[1].ip = '198.18.0.300')), 'hosts[1].ip');
  refused(t, damaged((r) => (r.hosts[0].bridge = 'br0; reboot')), 'hosts[0].bridge');
  refused(t, damaged((r) => (r.prefixLen = 33)), 'prefixLen');
  refused(t, damaged((r) => (r.vmHostCount = 4)), 'vmHostCount');
  refused(t, damaged((r) => (r.vms = {})), 'vms');
  refused(t, damaged((r) => (r.vms[1].host = 'host9')), 'vms[1].host');
  refused(t, damaged((r) => (r.vms[0].mac = '52:54:00:12:34')), 'vms[0].mac');
  refused(t, damaged((r) => (r.vms[0].tap = '../tap')), 'vms[0].tap');
  refused(t, damaged((r) => (r.vms[0].index = -1)), 'vms[0].index');
  refused(t, damaged((r) => (r.mpirun.vm = 'vm7')), 'mpirun.vm');
  refused(t, damaged((r) => (r.mpirun.rankVm = 'vm1')), 'mpirun.rankVm');
  refused(t, damaged((r) => (r.rsh[0].sid = null)), 'rsh[0].sid');
  refused(t, damaged((r) => (r.lostHosts = ['host4'])), 'lostHosts[0]');
});

t.test('a long value is shortened in the message', async (t) => {
  try {
    checkRecoveryState(damaged((r) => (r.secret = 5)), 'j3fa21');
  } catch (e) {
    t.match((e as SymError).message, /secret must be a non-empty string \(it is 5\)/);
  }
  try {
    checkRecoveryState(damaged((r) => (r.channel.host = 'x'.repeat(500))), 'j3fa21');
  } catch (e) {
    t.ok((e as SymError).message.length < 200, 'message stays short');
    t.match((e as SymError).message, /\.\.\.\)$/);
  }
});

t.test('listRecoverable: a damaged record is listed with its problem, a good one with its state', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'recov-'));
  const had = process.env.SYMRUN_RUNTIME_DIR;
  process.env.SYMRUN_RUNTIME_DIR = root;
  t.teardown(() => {
    if (had === undefined) delete process.env.SYMRUN_RUNTIME_DIR;
    else process.env.SYMRUN_RUNTIME_DIR = had;
    fs.rmSync(root, { recursive: true, force: true });
  });
  // an owner that is gone (pid 2^22 - 1 is above any pid_max default in use here)
  const dead = JSON.stringify({ pid: 4194303, pidStartTime: '1', startedAt: new Date().toISOString(), app: ['./ring'], cwd: '/' });
  const put = (id: string, rec: string) => {
    fs.mkdirSync(path.join(root, id), { recursive: true });
    fs.writeFileSync(path.join(root, id, 'owner.json'), dead);
    fs.writeFileSync(path.join(root, id, 'recover.json'), rec);
  };
  put('j3fa21', JSON.stringify(record()));
  put('j00bad', JSON.stringify(damaged((r) => (r.jobId = 'j00bad') && (r.vms[0].ip = 'nope'))));
  put('j0trun', '{"v":1,"jobId":"j0tr');
  const got = new Map(listRecoverable().map((r) => [r.id, r]));
  t.same([...got.keys()].sort(), ['j00bad', 'j0trun', 'j3fa21']);
  t.equal(got.get('j3fa21')!.state?.jobId, 'j3fa21');
  t.equal(got.get('j00bad')!.problem?.field, 'vms[0].ip');
  t.match(got.get('j00bad')!.problem?.message, /recover\.json: vms\[0\]\.ip must be an IPv4 address \(it is "nope"\)/);
  t.equal(got.get('j0trun')!.problem?.code, 'ESYM_RECOVER');
  t.match(got.get('j0trun')!.problem?.message, /is not JSON/);
});
