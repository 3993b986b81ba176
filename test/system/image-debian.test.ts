// Bring your own image (docs/images.md), end to end with real parts: a Debian root built by the
// documented command (`symrun image debian`: debootstrap --variant=minbase from the mirror this
// machine's apt uses, Open MPI from the same mirror, symrun's guest agent installed) boots under
// symrun from its qcow2 disk, runs an MPI ring and migrates mid-run; the same root without the agent
// fails with ESYM_IMAGE_NO_AGENT naming the disk and the fix, both before any boot (its side file says
// so) and at boot (no side file: the initrd says so and powers off); install-agent repairs a disk in
// place; and the site's read-only image cache is used before the user's own.
// The Debian disk is cached by its inputs under the symrun cache dir: the slow debootstrap runs once.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { need, needRoot, runSymrun } from '../fixtures/symrun-env.js';
import { startRingJob } from '../fixtures/ring-job.js';

need('debootstrap', 'debootstrap');
need('qemu-img', 'qemu-utils');
need('debugfs', 'e2fsprogs');
need('mpicc', 'libopenmpi-dev');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot('debootstrap chroots; symrun --local creates network namespaces');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-byo-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);

interface Built { disk: string; manifest: string; mirror: string; builtNow: { tree: boolean; disk: boolean }; ms: Record<string, number> }
const debian = async (args: string[]): Promise<Built> => {
  const r = await runSymrun(['image', 'debian', '--json', ...args], { cwd: work, timeoutMs: 1_200_000 });
  if (r.code !== 0) throw new Error(`symrun image debian ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Built;
};

let good: Built;
let broken: Built;

t.test('symrun image debian builds (or reuses) a Debian disk from apt\'s mirror, with and without the agent', async (t) => {
  good = await debian([]);
  t.comment(`with agent: ${JSON.stringify(good.ms)} built ${JSON.stringify(good.builtNow)}`);
  broken = await debian(['--no-agent']);
  t.comment(`without agent: ${JSON.stringify(broken.ms)} built ${JSON.stringify(broken.builtNow)}`);
  t.notOk(broken.builtNow.tree, 'both disks come from one debootstrap tree');
  const sources = execFileSync('sh', ['-c', 'cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true']).toString();
  t.ok(sources.includes(good.mirror), `the mirror ${good.mirror} is the one apt uses`);
  const m = JSON.parse(fs.readFileSync(good.manifest, 'utf8'));
  t.equal(m.agent, true);
  t.ok(m.files.includes('/usr/bin/mpirun.openmpi'), 'Open MPI from the mirror is in the root');
  t.equal(JSON.parse(fs.readFileSync(broken.manifest, 'utf8')).agent, false);
  t.equal(fs.readFileSync(good.disk).subarray(0, 4).toString('latin1'), 'QFI\xfb', 'qcow2');
});

t.test('an MPI job runs on the Debian image and survives a migration', async (t) => {
  const cfg = path.join(work, 'symrun.yaml');
  fs.writeFileSync(cfg, `image:\n  disk: ${good.disk}\n`);
  const stopFile = path.join(work, 'stop');
  const job = await startRingJob({ cwd: work, symrunArgs: ['--config', cfg, '--local', '2', '--spares', '1'], stopFile });
  t.teardown(() => job.kill());
  const os_ = await job.sym(['exec', 'vm2', '--', 'cat', '/etc/debian_version']);
  t.match(os_.stdout, /^12\./, `the guest is Debian: ${os_.stdout}${os_.stderr}`);
  const mpi = await job.sym(['exec', 'vm1', '--', 'dpkg-query', '-W', '-f', '${Version}', 'openmpi-bin']);
  t.match(mpi.stdout, /^\d/, `Open MPI is the image's own package: ${mpi.stdout}${mpi.stderr}`);
  const m = await job.sym(['migrate', 'vm2', '--json']);
  const res = JSON.parse(m.stdout);
  t.equal(m.code, 0, m.stderr);
  t.equal(res.outcome, 'done');
  t.comment(`migration of vm2 (qcow2 root, read-only on both hosts): ${JSON.stringify(res.phasesMs)}`);
  const st = JSON.parse((await job.sym(['status', '--json'])).stdout);
  t.equal(st.vms.find((v: { name: string }) => v.name === 'vm2').host, 'host3', 'vm2 moved to the spare');
  await job.stillRunning('migration of vm2');
  const { touch, code } = await job.stop();
  t.equal(touch.code, 0, `exec touch: ${touch.stdout}${touch.stderr}`);
  t.equal(code, 0, `symrun exit 0\n${job.stderr().slice(-3000)}`);
  t.match(job.stdout(), /ring OK: ranks=\d+ /, 'the checksum over every message is right');
});

t.test('an image without the agent fails with ESYM_IMAGE_NO_AGENT naming the disk and the fix', async (t) => {
  // its side file says so: before any VM boots
  const pre = await runSymrun(['--local', '1', '--image', broken.disk, '--', '/bin/true'], { cwd: work, timeoutMs: 300_000 });
  t.equal(pre.code, 2, pre.stderr);
  t.match(pre.stderr, /ESYM_IMAGE_NO_AGENT/);
  t.match(pre.stderr, broken.disk);
  t.match(pre.stderr, `symrun image install-agent ${broken.disk}`);
  t.comment(`refused before boot in ${pre.ms} ms`);
  // no side file: the VM boots, the initrd finds no agent and powers off, symrun says why at once
  const bare = path.join(work, 'bare.qcow2');
  fs.symlinkSync(broken.disk, bare);
  const boot = await runSymrun(['--local', '1', '--image', bare, '--', '/bin/true'], { cwd: work, timeoutMs: 600_000 });
  t.equal(boot.code, 2, boot.stderr);
  t.match(boot.stderr, /ESYM_IMAGE_NO_AGENT/);
  t.match(boot.stderr, bare);
  t.match(boot.stderr, `symrun image install-agent ${bare}`);
  t.notMatch(boot.stderr, /ESYM_GUEST_TIMEOUT|did not answer within/, 'not the boot timeout');
  t.comment(`refused at boot in ${boot.ms} ms`);
});

t.test('symrun image install-agent DISK installs the agent into a disk in place', async (t) => {
  const copy = path.join(work, 'fixme.qcow2');
  fs.copyFileSync(broken.disk, copy);
  const r = await runSymrun(['image', 'install-agent', copy], { cwd: work, timeoutMs: 600_000 });
  t.equal(r.code, 0, r.stderr);
  t.equal(JSON.parse(fs.readFileSync(`${copy}.symrun.json`, 'utf8')).agent, true);
  const raw = path.join(work, 'fixme.raw');
  execFileSync('qemu-img', ['convert', '-O', 'raw', copy, raw]);
  const ls = execFileSync('debugfs', ['-R', 'stat /opt/symrun/dist/guest/src/agent.js', raw], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  t.match(ls, /Type: regular/, 'the agent is in the disk');
  const init = execFileSync('debugfs', ['-R', 'stat /usr/sbin/init', raw], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  t.match(init, /Type: symlink/, '/sbin/init starts symrun\'s init');
});

t.test('the site image cache is looked up before the user\'s own', async (t) => {
  const b = await runSymrun(['image', 'build', '--json'], { cwd: work, timeoutMs: 1_200_000 });
  t.equal(b.code, 0, b.stderr);
  const def = JSON.parse(b.stdout) as { hash: string; dir: string };
  const site = path.join(work, 'site-images');
  fs.mkdirSync(site);
  fs.symlinkSync(def.dir, path.join(site, def.hash));
  const conf = path.join(work, 'node.conf');
  fs.writeFileSync(conf, `SYMRUN_SITE_IMAGES=${site}\n`, { mode: 0o644 });
  const userCache = path.join(work, 'user-cache');
  const r = await runSymrun(['image', 'info', '--json'], { cwd: work, timeoutMs: 300_000, extraEnv: { SYMRUN_NODE_CONF: conf, SYMRUN_CACHE_DIR: userCache } });
  t.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  t.equal(info.site, true);
  t.equal(info.dir, path.join(site, def.hash));
  t.notOk(fs.existsSync(path.join(userCache, 'images', def.hash)), 'nothing built in the user\'s cache');
});
