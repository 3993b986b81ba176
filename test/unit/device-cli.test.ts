// `symrun node devices …`: the command functions with a fake node (fake kernel, recorded commands), and
// the real wiring through main() for what reads only.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { devicesCheck, devicesClaim, devicesList, devicesRelease, type NodeDevicesDeps } from '../../launcher/src/cli/node-devices.js';
import { main } from '../../launcher/src/main.js';
import { readFunction } from '../../launcher/src/device/discover.js';
import { bench, type Bench } from '../fixtures/sysfs/harness.js';
import { ethernetNode } from '../fixtures/sysfs/machines.js';
import { FakeKernelIO } from '../fakes/fake-kernel.js';

function cli(t: { teardown(fn: () => void): void }, euid = 0): { b: Bench; deps: NodeDevicesDeps; out: string[] } {
  const b = bench(t, ethernetNode(), { fabric: { pfs: ['0000:3b:00.0'] } });
  const cfgFile = path.join(b.root, 'node.yaml');
  fs.writeFileSync(cfgFile, `node: { name: n7, index: 7 }\ndevices:\n  root: ${b.root}\n  stateDir: ${b.stateDir}\n  pools:\n    fabric: { pfs: ["0000:3b:00.0"] }\n`, { mode: 0o644 });
  b.runner
    .on((a) => a[0] === '/usr/bin/getent' && a[2] === '1001', { code: 0, stdout: 'alice:x:1001:1001::/home/alice:/bin/bash\n' })
    .on((a) => a[0] === '/usr/bin/getent', { code: 2 })
    .on((a) => a[0] === '/usr/bin/scontrol' && a[4] === '4711', { code: 1, stderr: 'slurm_load_jobs error: Invalid job id specified\n' });
  const out: string[] = [];
  const deps: NodeDevicesDeps = { env: { SYMRUN_NODE_CONFIG: cfgFile }, euid, run: b.runner.run, io: (cfg) => new FakeKernelIO(cfg.devices.root), out: (s) => out.push(s) };
  return { b, deps, out };
}

t.test('claim --json prints what it did; release --json undoes it', async (t) => {
  const { b, deps, out } = cli(t);
  t.equal(await devicesClaim({ job: '4711', uid: '1001', slots: '2', json: true }, deps), 0);
  const r = JSON.parse(out.join(''));
  t.same(r.claimed.map((c: { pci: string; slot: number; vfioDevice: string }) => [c.pci, c.slot, c.vfioDevice]), [['0000:3b:02.0', 0, '/dev/vfio/31'], ['0000:3b:02.1', 1, '/dev/vfio/32']]);
  t.same([r.job, r.uid, r.gid, r.node, r.nodeIndex], ['4711', 1001, 1001, 'n7', 7]);
  t.match(r.claimed[0].actions, ['claimed 0000:3b:02.0 (slot 0) in ' + b.stateDir, /ip link set dev ens1f0 vf 0 mac c2:/, /spoofchk on/, /trust off/, /driver_override/, /unbind/, /drivers_probe/, 'chown 1001:1001 /dev/vfio/31; chmod 0600 /dev/vfio/31']);
  t.same(b.runner.calls[0], ['/usr/bin/getent', 'passwd', '1001'], 'the uid was looked up first');
  out.length = 0;
  t.equal(await devicesList({ stale: true }, deps), 0);
  t.match(out.join(''), /fabric\s+0000:3b:02\.0\s+0000:3b:00\.0\s+0 ethernet\s+vfio-pci\s+31\s+1\s+job 4711 uid 1001 slot 0 ready c2:\S+ STALE \(slurmctld knows no such job\)/);
  t.match(out.join(''), /0000:3b:02\.2 .* free/);
  out.length = 0;
  t.equal(await devicesCheck({ json: true }, deps), 1, 'stale claims are a node problem');
  t.match(JSON.parse(out.join('')).problems, [/stale claim: 0000:3b:02\.0 by job 4711/, /stale claim: 0000:3b:02\.1 by job 4711/]);
  out.length = 0;
  t.equal(await devicesRelease({ job: '4711', json: true }, deps), 0);
  const rel = JSON.parse(out.join(''));
  t.same(rel.released.map((x: { pci: string }) => x.pci), ['0000:3b:02.0', '0000:3b:02.1']);
  t.same(rel.removed, []);
  t.equal(readFunction(b.io, '0000:3b:02.0')!.driver, 'iavf');
  out.length = 0;
  t.equal(await devicesCheck({ slurm: false }, deps), 0);
  t.equal(out.join(''), 'ok: 4 VFs free, 0 claimed\n');
});

t.test('inputs are checked before anything is touched; claim and release need root', async (t) => {
  const { b, deps } = cli(t);
  const bad: Array<[Record<string, string>, string, string]> = [
    [{ job: '47 11', uid: '1001', slots: '1' }, 'ESYM_DEVICE_ARGS', '--job'],
    [{ job: '4711', uid: 'alice', slots: '1' }, 'ESYM_DEVICE_ARGS', '--uid'],
    [{ job: '4711', uid: '4242', slots: '1' }, 'ESYM_DEVICE_ARGS', '--uid'],
    [{ job: '4711', uid: '1001', slots: '0' }, 'ESYM_DEVICE_ARGS', '--slots'],
    [{ job: '4711', uid: '1001', slots: '1', pool: '0000:3b:0a.0' }, 'ESYM_DEVICE_NOT_IN_POOL', '--pool'],
    [{ job: '4711', uid: '1001', slots: '1', pool: '/sys/bus/pci/devices/0000:3b:02.0' }, 'ESYM_DEVICE_NOT_IN_POOL', '--pool'],
    [{ job: '4711', uid: '1001', slots: '1', pool: 'ib' }, 'ESYM_DEVICE_NOT_IN_POOL', '--pool'],
  ];
  for (const [f, code, field] of bad) await t.rejects(devicesClaim(f, deps), { code, field }, JSON.stringify(f));
  await t.rejects(devicesRelease({ job: '4711', pci: '3b:02.0' }, deps), { code: 'ESYM_DEVICE_ARGS', field: '--pci', fix: 'write it as 0000:3b:02.0' });
  const user = { ...deps, euid: 1001 };
  await t.rejects(devicesClaim({ job: '4711', uid: '1001', slots: '1' }, user), { code: 'ESYM_NEEDS_ROOT', exitCode: 3 });
  await t.rejects(devicesRelease({ job: '4711' }, user), { code: 'ESYM_NEEDS_ROOT' });
  t.equal(await devicesList({ json: true }, user), 0, 'list is for everyone');
  t.same(b.io.writes(), [], 'nothing was written');
  t.notOk(fs.existsSync(path.join(b.stateDir, 'vf')) && fs.readdirSync(path.join(b.stateDir, 'vf')).length, 'no claim');
});

t.test('--pool narrows the choice to configured VFs', async (t) => {
  const { deps, out } = cli(t);
  t.equal(await devicesClaim({ job: '5', uid: '1001', slots: '1', pool: '0000:3b:02.2,0000:3b:02.3' }, deps), 0);
  t.match(out.join(''), /^claimed 0000:3b:02\.2 \(ethernet VF 2 of 0000:3b:00\.0\/ens1f0\) for job 5: slot 0, mac c2:\S+, \/dev\/vfio\/33 owned by uid 1001, NUMA node 1\n$/);
});

t.test('a release that leaves a claim exits 4 and says why', async (t) => {
  const { b, deps, out } = cli(t);
  await devicesClaim({ job: '6', uid: '1001', slots: '1' }, deps);
  fs.mkdirSync(path.join(b.root, 'proc/999/fd'), { recursive: true });
  fs.symlinkSync('/dev/vfio/31', path.join(b.root, 'proc/999/fd/5'));
  out.length = 0;
  t.equal(await devicesRelease({ job: '6' }, deps), 4);
  t.match(out.join(''), /^LEFT 0000:3b:02\.0 of job 6: \/dev\/vfio\/31 is still held open by pid 999 \(stop the job's QEMU first/);
});

t.test('through main(): list --json reads the node; bad input is exit 2 with a JSON error', async (t) => {
  const { b } = cli(t);
  const saved = { cfg: process.env.SYMRUN_NODE_CONFIG, out: process.stdout.write, err: process.stderr.write };
  const outs: string[] = [];
  const errs: string[] = [];
  process.env.SYMRUN_NODE_CONFIG = path.join(b.root, 'node.yaml');
  process.stdout.write = ((s: string) => { outs.push(String(s)); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => { errs.push(String(s)); return true; }) as typeof process.stderr.write;
  let list: number, claim: number, unknown: number;
  try {
    list = await main(['node', 'devices', 'list', '--json']);
    claim = await main(['node', 'devices', 'claim', '--job', '1', '--uid', '0', '--slots', 'x', '--json']);
    unknown = await main(['node', 'devices', 'claim', '--job', '1', '--uid', '0', '--slots', '1', '--sysfs', '/tmp']);
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
    if (saved.cfg === undefined) delete process.env.SYMRUN_NODE_CONFIG; else process.env.SYMRUN_NODE_CONFIG = saved.cfg;
  }
  t.equal(list, 0);
  const l = JSON.parse(outs.join(''));
  t.same(l.vfs.map((v: { pci: string; driver: string }) => [v.pci, v.driver]), [['0000:3b:02.0', 'iavf'], ['0000:3b:02.1', 'iavf'], ['0000:3b:02.2', 'iavf'], ['0000:3b:02.3', 'iavf']]);
  t.equal(claim, 2);
  t.match(JSON.parse(errs[0]!), { error: { code: 'ESYM_DEVICE_ARGS', field: '--slots', value: 'x' } });
  t.equal(unknown, 2, 'no option takes a path');
  t.match(errs.join(''), /unknown option '--sysfs'/);
});
