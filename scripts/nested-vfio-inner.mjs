// Step `inner` of scripts/nested-vfio-lab, run by node inside the outer VM (as root, after
// `symrun node devices claim` bound a VF to vfio-pci): starts an inner QEMU with symrun's own VM command
// line (launcher/src/vm/args.ts: q35, pcie root ports, QMP socket), waits for the inner guest's shell, then
// symrun's hot-plug code (launcher/src/hotplug): plugVfio (device_add vfio-pci,host=VF,bus=rp1), the guest
// sees the VF and igbvf takes it, unplugDevice (device_del, wait for DEVICE_DELETED), quit.
//   node scripts/nested-vfio-inner.mjs VF QEMU_BINARY FIRMWARE_DIR KERNEL INITRD
// Prints `LAB ...` lines with the times measured.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, '..', 'dist', 'launcher', 'src');
const { qemuArgs, vmPaths } = await import(path.join(dist, 'vm', 'args.js'));
const { detectQemu } = await import(path.join(dist, 'vm', 'qemu.js'));
const { QmpClient } = await import(path.join(dist, 'qmp', 'client.js'));
const { plugVfio, unplugDevice } = await import(path.join(dist, 'hotplug', 'index.js'));

const [vf, binary, fw, kernel, initrd] = process.argv.slice(2);
if (!initrd) { console.error('usage: nested-vfio-inner.mjs VF QEMU_BINARY FIRMWARE_DIR KERNEL INITRD'); process.exit(2); }
const t0 = Date.now();
const s = (t = t0) => ((Date.now() - t) / 1000).toFixed(1);
const lab = (msg) => console.log(`LAB inner ${msg} [+${s()} s]`);

const runDir = '/tmp/inner';
fs.mkdirSync(runDir, { recursive: true });
const rootfs = path.join(runDir, 'empty.img');
fs.writeFileSync(rootfs, Buffer.alloc(1 << 20));
const spec = {
  name: 'inner1', runDir, accel: 'tcg', memoryMiB: Number(process.env.INNER_MEM ?? 256), cpus: 1, machine: 'q35',
  kernel, initrd, rootfs, append: 'console=ttyS0 quiet panic=-1', agentSocket: path.join(runDir, 'agent.sock'),
  agentPortName: 'org.symrun.agent', rootPorts: 2, extraArgs: ['-L', fw],
};
const qemu = await detectQemu(binary);
lab(`QEMU ${binary}: ${qemu.version.major}.${qemu.version.minor}.${qemu.version.micro}`);
const paths = vmPaths(spec);
const args = qemuArgs(spec, qemu);
const proc = spawn(binary, args, { stdio: ['ignore', 'ignore', fs.openSync(paths.stderrLog, 'w')] });
let exited = false;
proc.on('exit', (code, sig) => { exited = true; lab(`QEMU exited (code ${code}, signal ${sig})`); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const consoleText = () => { try { return fs.readFileSync(paths.consoleLog, 'utf8'); } catch { return ''; } };
async function waitConsole(re, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const m = consoleText().match(re);
    if (m) return m;
    if (exited) break;
    await sleep(500);
  }
  throw new Error(`${what}: not seen on the inner console within ${timeoutMs / 1000} s${exited ? ' (QEMU exited)' : ''}; stderr: ${fs.readFileSync(paths.stderrLog, 'utf8').trim().split('\n').slice(-3).join(' | ')}`);
}

let qmp;
let rc = 0;
try {
  for (let i = 0; !qmp; i++) {
    try { qmp = await QmpClient.connect(paths.qmpSocket); } catch (e) { if (i > 600 || exited) throw e; await sleep(200); }
  }
  lab('QMP connected');
  const up = await waitConsole(/INNER up uptime=([\d.]+)/, Number(process.env.INNER_BOOT_TIMEOUT ?? 900) * 1000, 'inner guest shell');
  lab(`inner guest at its shell (guest uptime ${up[1]} s)`);
  const tPlug = Date.now();
  const plugged = await plugVfio(qmp, { id: 'vf0', host: vf, bus: 'rp1' }, { timeoutMs: 120_000 });
  lab(`plugVfio device_add vfio-pci,host=${vf},bus=rp1: ${plugged.ms} ms`);
  const pci = await qmp.execute('query-pci');
  const dev = pci.flatMap((b) => b.devices.flatMap((d) => [d, ...(d.pci_bridge?.devices ?? [])])).find((d) => d.qdev_id === 'vf0');
  lab(`query-pci: vf0 ${dev ? `bus ${dev.bus} slot ${dev.slot} id ${dev.id.vendor.toString(16)}:${dev.id.device.toString(16)}` : 'NOT FOUND'}`);
  const seen = await waitConsole(/INNER pci-seen (\S+)/, 300_000, 'the VF in the inner guest');
  lab(`inner guest sees the VF at ${seen[1]} ${s(tPlug)} s after device_add`);
  try {
    const eth = await waitConsole(/INNER eth (\S+) mac (\S+) driver (\S+)/, 300_000, 'igbvf in the inner guest');
    lab(`inner guest: ${eth[3]} made ${eth[1]} with MAC ${eth[2]} (${s(tPlug)} s after device_add)`);
  } catch (e) { lab(`igbvf: ${e.message}`); }
  const tDel = Date.now();
  const un = await unplugDevice(qmp, 'vf0', { timeoutMs: 300_000 });
  lab(`unplugDevice device_del -> DEVICE_DELETED: ${un.ms ?? (Date.now() - tDel)} ms`);
  try {
    await waitConsole(/INNER pci-gone/, 120_000, 'the VF gone in the inner guest');
    lab(`inner guest: VF gone (${s(tDel)} s after device_del)`);
  } catch (e) { lab(e.message); }
} catch (e) {
  rc = 1;
  lab(`FAILED: ${e.message}`);
} finally {
  const tail = consoleText().split('\n').filter((l) => /INNER|vfio|igbvf|pci|Oops|BUG|panic/i.test(l)).slice(-25);
  for (const l of tail) console.log(`  inner console: ${l}`);
  try { if (qmp) { await qmp.execute('quit').catch(() => {}); await qmp.close(); } } catch { /* closing */ }
  for (let i = 0; i < 50 && !exited; i++) await sleep(200);
  if (!exited) proc.kill('SIGKILL');
  lab(`QEMU ended; total ${s()} s`);
}
process.exit(rc);
