// The QEMU command line of one VM. Source and destination of a migration use the same spec; only
// `incoming` differs (QEMU requires identical device sets and order on both sides).
import path from 'node:path';
import type { QemuVersion } from './qemu.js';
import { effectiveMemory } from './memory.js';
import type { VmSpec } from '../wire/vm.js';

export type { VmSpec } from '../wire/vm.js';

export const SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=allow,resourcecontrol=deny';

export interface VmPaths { qmpSocket: string; consoleLog: string; pidFile: string; stderrLog: string }

export function vmPaths(spec: Pick<VmSpec, 'name' | 'runDir'>): VmPaths {
  const p = (ext: string) => path.join(spec.runDir, `${spec.name}.${ext}`);
  return { qmpSocket: p('qmp'), consoleLog: p('console.log'), pidFile: p('pid'), stderrLog: p('stderr.log') };
}

/** QEMU -chardev/-device option values are comma-separated: a literal comma is written ",,". */
export function optEscape(v: string): string {
  return v.replace(/,/g, ',,');
}

/** Ids of the hot-plug root ports (rp1..rpN), in command-line order. */
export function rootPortIds(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `rp${i + 1}`);
}

export function qemuArgs(spec: VmSpec, qemu: { version: QemuVersion }): string[] {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(spec.name)) throw new RangeError(`VM name must be [A-Za-z0-9_.-]: ${spec.name}`);
  if (spec.rootPorts < 0 || spec.rootPorts > 30) throw new RangeError(`rootPorts must be 0..30, got ${spec.rootPorts}`);
  const paths = vmPaths(spec);
  const mem = effectiveMemory(spec.memoryMiB, spec.accel, qemu.version);
  const a: string[] = [
    '-name', `${spec.name},debug-threads=on`,
    '-machine', `${spec.machine}`,
    '-accel', spec.accel,
    '-m', mem.arg,
    '-smp', String(spec.cpus),
    '-nodefaults', '-no-user-config',
    '-display', 'none',
    '-nic', 'none',
    '-chardev', `socket,id=qmp0,path=${optEscape(paths.qmpSocket)},server=on,wait=off`,
    '-mon', 'chardev=qmp0,mode=control',
    '-chardev', `file,id=con0,path=${optEscape(paths.consoleLog)},append=on`,
    '-serial', 'chardev:con0',
    '-kernel', spec.kernel,
    '-initrd', spec.initrd,
    '-append', spec.append,
    '-drive', `file=${optEscape(spec.rootfs)},if=none,id=root0,format=${spec.rootFormat ?? 'raw'},readonly=on`,
    '-device', 'virtio-blk-pci,drive=root0,id=rootdisk0',
    '-device', 'virtio-serial-pci,id=vser0',
    '-chardev', `socket,id=agent0,path=${optEscape(spec.agentSocket)},server=on,wait=off`,
    // an id makes QEMU report the guest opening/closing the port (VSERPORT_CHANGE): the host syncs on it
    '-device', `virtserialport,bus=vser0.0,chardev=agent0,id=agentport0,name=${optEscape(spec.agentPortName)}`,
  ];
  rootPortIds(spec.rootPorts).forEach((id, i) => {
    a.push('-device', `pcie-root-port,id=${id},bus=pcie.0,chassis=${i + 1},slot=${i + 1}`);
  });
  if (spec.sandbox) a.push('-sandbox', SANDBOX);
  a.push('-pidfile', paths.pidFile);
  if (spec.incoming === 'defer') a.push('-incoming', 'defer');
  a.push(...spec.extraArgs);
  return a;
}
