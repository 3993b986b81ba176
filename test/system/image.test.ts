// Guest image: build (or reuse) the real image, check its files, boot it once under QEMU TCG and see
// node and Open MPI run inside and the agent loop start; then prove a missing root disk powers off.
import t from 'tap';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildImage, imageFiles, resolveImage, ImageInfo } from '../../launcher/src/image/index.js';

const QEMU = 'qemu-system-x86_64';
const BOOT_DEADLINE_MS = 120_000;

function need(bin: string): void {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`]);
  if (r.status !== 0) throw new Error(`${bin} is not installed; install the host packages with \`bash scripts/setup\``);
}

function startQemu(info: ImageInfo, dir: string, append: string, withDisk = true): { child: ChildProcess; log: string; exited: Promise<number | null> } {
  const log = path.join(dir, 'console.log');
  const sock = path.join(dir, 'agent.sock');
  const args = [
    '-accel', 'tcg', '-M', 'q35', '-m', '512', '-nodefaults', '-no-user-config', '-display', 'none', '-nic', 'none',
    '-kernel', info.kernel, '-initrd', info.initrd, '-append', append,
    ...(withDisk ? ['-drive', `file=${info.rootfs},if=none,id=root,format=raw,readonly=on`, '-device', 'virtio-blk-pci,drive=root'] : []),
    '-serial', `file:${log}`,
    '-device', 'virtio-serial-pci',
    '-chardev', `socket,id=a0,path=${sock},server=on,wait=off`,
    '-device', 'virtserialport,chardev=a0,name=org.symrun.agent.0',
  ];
  const child = spawn(QEMU, args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => {
    if (code) process.stderr.write(`qemu exited ${code}: ${stderr}\n`);
    resolve(code);
  }));
  return { child, log, exited };
}

function killGroup(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
}

/** Poll the console log until every pattern matched (returns elapsed ms) or the deadline passes. */
async function waitLog(log: string, patterns: RegExp[], deadlineMs: number, exited?: Promise<unknown>): Promise<{ ms: number; text: string; missing: RegExp[] }> {
  const t0 = Date.now();
  let done = false;
  void exited?.then(() => { done = true; });
  for (;;) {
    let text = '';
    try { text = fs.readFileSync(log, 'utf8'); } catch { /* not yet */ }
    const missing = patterns.filter((p) => !p.test(text));
    if (!missing.length || Date.now() - t0 > deadlineMs || done) return { ms: Date.now() - t0, text, missing };
    await new Promise((r) => setTimeout(r, 250));
  }
}

let info: ImageInfo;

t.test('build or reuse the image', async (t) => {
  need('mke2fs'); need('cpio'); need('ldconfig'); need('busybox');
  const steps: string[] = [];
  const t0 = Date.now();
  info = await buildImage({ onProgress: (s) => { steps.push(s); t.comment(s); } });
  const ms = Date.now() - t0;
  t.comment(`image ${info.builtNow ? 'built' : 'reused'} in ${ms} ms: ${info.dir}`);
  for (const f of [info.kernel, info.initrd, info.rootfs, info.manifestPath]) t.ok(fs.statSync(f).size > 0, `${path.basename(f)} exists`);
  t.equal(path.basename(info.dir), info.hash);
  t.match(info.kernelVersion, /^\d+\.\d+/);

  const manifest = JSON.parse(fs.readFileSync(info.manifestPath, 'utf8'));
  t.equal(manifest.format, 1);
  t.equal(manifest.hash, info.hash);
  t.equal(manifest.kernelVersion, info.kernelVersion);
  for (const f of ['/usr/bin/node', '/usr/bin/mpirun', '/etc/ld.so.cache', '/opt/symrun/bin/symrun-rsh']) t.ok(manifest.files.includes(f), `manifest lists ${f}`);
  const files = await imageFiles(info);
  for (const f of ['/usr/bin/node', '/bin/sh', '/sbin/init', '/usr/bin/orted']) t.ok(files.has(f), `imageFiles has ${f}`);
  if (manifest.build) t.comment(`sizes: ${JSON.stringify(manifest.build.sizes)}; build ${manifest.build.totalMs} ms`);

  // a second call hits the cache and is quick
  const t1 = Date.now();
  const again = await buildImage();
  const hitMs = Date.now() - t1;
  t.equal(again.dir, info.dir);
  t.equal(again.builtNow, false);
  t.ok(hitMs < 1500, `cache hit took ${hitMs} ms`);
  t.same(await resolveImage(info.dir), { ...info, builtNow: false }, 'the directory resolves to the same image');
});

t.test('boot under QEMU TCG: node and Open MPI run, the agent starts', async (t) => {
  need(QEMU);
  t.ok(info, 'image was built');
  if (!info) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-imgboot-'));
  const q = startQemu(info, dir, 'console=ttyS0 root=/dev/vda ro panic=-1 symrun.hostname=imgtest symrun.debug=1');
  t.teardown(() => { killGroup(q.child); fs.rmSync(dir, { recursive: true, force: true }); });
  const r = await waitLog(q.log, [/symrun-init: starting agent/, /node --version: v20\./, /Open MPI/], BOOT_DEADLINE_MS, q.exited);
  t.comment(`boot to "starting agent": ${r.ms} ms`);
  t.same(r.missing.map(String), [], 'all console lines seen');
  t.match(r.text, /symrun-init: hostname imgtest/);
  t.match(r.text, /symrun-init: root: \S+ \/ overlay /, 'root is the overlay');
  t.match(r.text, /modprobe -D bonding: .*bonding\.ko/, 'busybox modprobe reads the shipped modules.dep');
  t.match(r.text, /symrun-init: node-pty: pty-ok exit 0/, 'node-pty loads and spawns on a pty in the guest');
  t.notMatch(r.text, /symrun-initrd: (FATAL|warning)/);
  if (r.missing.length) t.comment(r.text.split('\n').slice(-40).join('\n'));
  killGroup(q.child);
  await q.exited;
});

t.test('no root disk: the initrd says why and powers off', async (t) => {
  need(QEMU);
  if (!info) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-imgboot-'));
  const q = startQemu(info, dir, 'console=ttyS0 root=/dev/vda ro panic=-1 symrun.rootwait=2', false);
  t.teardown(() => { killGroup(q.child); fs.rmSync(dir, { recursive: true, force: true }); });
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const exited = await Promise.race([q.exited.then(() => true), new Promise<boolean>((r) => { timer = setTimeout(() => r(false), BOOT_DEADLINE_MS); })]);
  clearTimeout(timer);
  t.comment(`boot to power-off: ${Date.now() - t0} ms`);
  const text = fs.readFileSync(q.log, 'utf8');
  t.ok(exited, 'QEMU exited by itself (guest powered off)');
  t.match(text, /symrun-initrd: FATAL: root device \/dev\/vda did not appear/);
  t.match(text, /symrun-initrd: powering off/);
});
