// A tiny fake kernel over a fake sysfs tree (test/fixtures/sysfs/build.ts): reads go to the files as they
// are (through the real FsDeviceIO), writes to the PCI core's attributes do what Linux does with them
// (drivers/pci/pci-sysfs.c, pci-driver.c, drivers/base/bus.c):
//   devices/A/driver_override        set ("(null)" when the value is empty / a lone newline)
//   drivers/D/unbind  <- A            A must be bound to D (else ENODEV); unbinds it
//   devices/A/driver/unbind <- A      the same through the device's driver link
//   drivers/D/bind    <- A            A must be unbound (EBUSY) and D must match A: driver_override if set,
//                                     else its native driver (ENODEV)
//   drivers_probe     <- A            if A is unbound: binds driver_override if set, else the native
//                                     driver, if that driver is registered; vfio-pci binds only a device
//                                     with an IOMMU group (as vfio_pci_probe: -EINVAL without one)
// Binding vfio-pci creates dev/vfio/<group> (root, 0600) when it is the group's first vfio-pci device;
// unbinding the last one removes it. Binding the native driver brings the device's net/ and infiniband/
// entries back; unbinding it removes them. Any other write is refused (EPERM), so a test sees every write
// the device layer tries. Every write is appended to .fake/writes.log ({pid, file, data} JSON lines), so
// tests can assert the exact sequence, across processes too.
// Owners of dev/vfio nodes live in .fake/owners/<group> ("uid gid mode"): chown needs no root here.
import fs from 'node:fs';
import path from 'node:path';
import { FsDeviceIO, type NodeOwner } from '../../launcher/src/device/sysfs.js';
import { addInterfaces, deviceDir, relLink, type FakeDeviceState } from '../fixtures/sysfs/build.js';

const BUS = 'sys/bus/pci';

function errno(code: string, msg: string): Error {
  return Object.assign(new Error(`${code}: ${msg}`), { code });
}

export interface WriteRecord { pid: number; file: string; data: string }

export class FakeKernelIO extends FsDeviceIO {
  /** extra hook: called before each write is applied (a test can throw to simulate a kernel error) */
  beforeWrite?: (file: string, data: string) => void;

  private state(): Record<string, FakeDeviceState> {
    return JSON.parse(fs.readFileSync(path.join(this.root, '.fake/devices.json'), 'utf8')) as Record<string, FakeDeviceState>;
  }

  private driverOf(a: string): string | undefined {
    const t = this.readlink(`${BUS}/devices/${a}/driver`);
    return t ? path.basename(t) : undefined;
  }

  private overrideOf(a: string): string | undefined {
    const v = (this.read(`${BUS}/devices/${a}/driver_override`) ?? '').trim();
    return v === '' || v === '(null)' ? undefined : v;
  }

  private setFile(rel: string, text: string): void {
    fs.writeFileSync(path.join(this.root, rel), text);
  }

  private bind(a: string, d: string): void {
    const dir = deviceDir(a);
    relLink(this.root, `${dir}/driver`, `${BUS}/drivers/${d}`);
    relLink(this.root, `${BUS}/drivers/${d}/${a}`, dir);
    const st = this.state()[a];
    if (d === 'vfio-pci') {
      const node = path.join(this.root, `dev/vfio/${st!.group}`);
      if (!fs.existsSync(node)) {
        fs.mkdirSync(path.dirname(node), { recursive: true });
        fs.writeFileSync(node, '');
        fs.rmSync(path.join(this.root, `.fake/owners/${st!.group}`), { force: true });
      }
    } else if (st && d === st.native) {
      addInterfaces(this.root, a, st);
    }
  }

  private unbind(a: string, d: string): void {
    const dir = deviceDir(a);
    fs.rmSync(path.join(this.root, `${dir}/driver`), { force: true });
    fs.rmSync(path.join(this.root, `${BUS}/drivers/${d}/${a}`), { force: true });
    fs.rmSync(path.join(this.root, `${dir}/net`), { recursive: true, force: true });
    fs.rmSync(path.join(this.root, `${dir}/infiniband`), { recursive: true, force: true });
    const g = this.state()[a]?.group;
    if (d === 'vfio-pci' && g !== undefined) {
      const still = this.list(`sys/kernel/iommu_groups/${g}/devices`).some((m) => this.driverOf(m) === 'vfio-pci');
      if (!still) {
        fs.rmSync(path.join(this.root, `dev/vfio/${g}`), { force: true });
        fs.rmSync(path.join(this.root, `.fake/owners/${g}`), { force: true });
      }
    }
  }

  private matches(a: string, d: string): boolean {
    const o = this.overrideOf(a);
    if (o !== undefined) return o === d;
    return this.state()[a]?.native === d;
  }

  private probe(a: string, d: string): void {
    if (!this.exists(`${BUS}/drivers/${d}`)) return; // no such driver registered: stays unbound
    if (d === 'vfio-pci' && this.state()[a]?.group === undefined) return; // vfio_pci_probe: -EINVAL
    this.bind(a, d);
  }

  override write(rel: string, data: string): void {
    this.beforeWrite?.(rel, data);
    fs.appendFileSync(path.join(this.root, '.fake/writes.log'), JSON.stringify({ pid: process.pid, file: rel, data } satisfies WriteRecord) + '\n');
    const value = data.replace(/\n$/, '');
    let m: RegExpExecArray | null;
    if ((m = /^sys\/bus\/pci\/devices\/([^/]+)\/driver_override$/.exec(rel))) {
      if (!this.exists(`${BUS}/devices/${m[1]}`)) throw errno('ENOENT', rel);
      this.setFile(`${deviceDir(m[1]!)}/driver_override`, `${value === '' ? '(null)' : value}\n`);
      return;
    }
    if ((m = /^sys\/bus\/pci\/devices\/([^/]+)\/driver\/unbind$/.exec(rel))) {
      const d = this.driverOf(m[1]!);
      if (!d) throw errno('ENOENT', `${rel} (not bound)`);
      if (this.driverOf(value) !== d) throw errno('ENODEV', rel);
      this.unbind(value, d);
      return;
    }
    if ((m = /^sys\/bus\/pci\/drivers\/([^/]+)\/(bind|unbind)$/.exec(rel))) {
      const d = m[1]!;
      if (!this.exists(`${BUS}/drivers/${d}`)) throw errno('ENOENT', rel);
      if (!this.exists(`${BUS}/devices/${value}`)) throw errno('ENODEV', rel);
      if (m[2] === 'unbind') {
        if (this.driverOf(value) !== d) throw errno('ENODEV', rel);
        this.unbind(value, d);
      } else {
        if (this.driverOf(value)) throw errno('EBUSY', rel);
        if (!this.matches(value, d)) throw errno('ENODEV', rel);
        this.probe(value, d);
        if (this.driverOf(value) !== d) throw errno('EINVAL', rel);
      }
      return;
    }
    if (rel === `${BUS}/drivers_probe`) {
      if (!this.exists(`${BUS}/devices/${value}`)) throw errno('ENODEV', rel);
      if (this.driverOf(value)) return;
      const d = this.overrideOf(value) ?? this.state()[value]?.native;
      if (d) this.probe(value, d);
      return;
    }
    throw errno('EPERM', `fake kernel: a write to ${rel} is not emulated`);
  }

  override owner(rel: string): NodeOwner | undefined {
    const m = /^dev\/vfio\/([0-9]+)$/.exec(rel);
    if (!m) return super.owner(rel);
    if (!this.exists(rel)) return undefined;
    const f = path.join(this.root, `.fake/owners/${m[1]}`);
    const [uid, gid, mode] = (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '0 0 600').trim().split(' ');
    return { uid: Number(uid), gid: Number(gid), mode: parseInt(mode!, 8) };
  }

  override setOwner(rel: string, uid: number, gid: number, mode: number): void {
    const m = /^dev\/vfio\/([0-9]+)$/.exec(rel);
    if (!m) throw errno('EPERM', `fake kernel: chown of ${rel} is not emulated`);
    if (!this.exists(rel)) throw errno('ENOENT', rel);
    const f = path.join(this.root, `.fake/owners/${m[1]}`);
    fs.writeFileSync(`${f}.${process.pid}`, `${uid} ${gid} ${mode.toString(8)}\n`);
    fs.renameSync(`${f}.${process.pid}`, f);
    fs.appendFileSync(path.join(this.root, '.fake/writes.log'), JSON.stringify({ pid: process.pid, file: rel, data: `chown ${uid}:${gid} chmod ${mode.toString(8)}` }) + '\n');
  }

  /** Every write so far (all processes), in order. */
  writes(): WriteRecord[] {
    const f = path.join(this.root, '.fake/writes.log');
    if (!fs.existsSync(f)) return [];
    return fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as WriteRecord);
  }
}

/** A Runner that records every command and answers from a table (default: exit 0, no output). */
export class RecordingRunner {
  readonly calls: string[][] = [];
  answers: Array<{ match: (argv: readonly string[]) => boolean; result: { code: number; stdout?: string; stderr?: string } }> = [];

  readonly run = async (argv: readonly string[]) => {
    this.calls.push([...argv]);
    const a = this.answers.find((x) => x.match(argv));
    return { code: a?.result.code ?? 0, stdout: a?.result.stdout ?? '', stderr: a?.result.stderr ?? '' };
  };

  on(match: (argv: readonly string[]) => boolean, result: { code: number; stdout?: string; stderr?: string }): this {
    this.answers.push({ match, result });
    return this;
  }
}
