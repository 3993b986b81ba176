// net-config for a plain interconnect NIC: find the NIC the host plugged (by its MAC; an IPoIB VF by its
// port GUID; a VF whose identity nobody set as the one interface that is not virtio), give it the job's
// name and address (one `ip` process), bring it up, announce it (gratuitous ARP) after a move.
import fs from 'node:fs';
import path from 'node:path';
import type { NetConfigArgs, InterfaceReport } from '../protocol/index.js';
import { AgentError, execFileP, log, readSys, sleep } from './util.js';
import { canSend, checkMtu, ipBatch, reportOf } from './iface.js';

const GUID_RE = /^([0-9a-f]{2}:){7}[0-9a-f]{2}$/;

/**
 * The interface net-config means, in `sysNet` (/sys/class/net): by MAC; by IPoIB port GUID (an IPoIB
 * address is 20 bytes: 4 of flags and QPN, 8 of subnet prefix, 8 of port GUID); or, for `passthrough`,
 * the one interface backed by a PCI function that is not driven by virtio (the agent's channel is
 * virtio-serial, a failover standby is virtio-net, so the VF is the only other one). Undefined: none
 * (yet); two candidates for `passthrough` is an error (the guest cannot know which one is meant).
 */
export function findInterface(sysNet: string, a: Pick<NetConfigArgs, 'mac' | 'find' | 'guid'>): string | undefined {
  const names = fs.readdirSync(sysNet);
  const find = a.find ?? 'mac';
  if (find === 'mac') return names.find((n) => readSys(`${sysNet}/${n}/address`) === a.mac.toLowerCase());
  if (find === 'guid') {
    const guid = String(a.guid).toLowerCase();
    return names.find((n) => { const ad = readSys(`${sysNet}/${n}/address`); return ad.length === 59 && ad.slice(36) === guid; });
  }
  const pci = names.filter((n) => {
    let drv = '';
    try { drv = path.basename(fs.readlinkSync(`${sysNet}/${n}/device/driver`)); } catch { return false; }
    let sub = '';
    try { sub = path.basename(fs.readlinkSync(`${sysNet}/${n}/device/subsystem`)); } catch { /* older kernels */ }
    return drv !== 'virtio_net' && sub !== 'virtio' && !fs.existsSync(`${sysNet}/${n}/bonding`);
  });
  if (pci.length > 1) throw new AgentError('EINVAL', `more than one passthrough interface (${pci.join(', ')}): the host must say which one (by MAC or GUID)`);
  return pci[0];
}

let driversLoaded: Promise<void> | undefined;

/**
 * The VF drivers an image for vfio jobs carries (/etc/symrun-passthrough-modules, written by the image
 * builder), loaded once, before the first lookup of a passed-through device: the guest has no udev to
 * load a driver for a hot-plugged function, and a driver loaded first binds every function it matches
 * as it appears. A driver that fails to load is logged (the lookup then says what is missing).
 */
export function loadPassthroughDrivers(list = '/etc/symrun-passthrough-modules'): Promise<void> {
  driversLoaded ??= (async () => {
    const names = readSys(list).split('\n').filter((n) => /^[a-z0-9_-]{1,64}$/.test(n));
    for (const n of names) await execFileP('modprobe', [n]).catch((e: Error) => log(`modprobe ${n}: ${e.message}`));
  })();
  return driversLoaded;
}

export async function netConfig(a: NetConfigArgs): Promise<InterfaceReport> {
  const mac = String(a.mac).toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac)) throw new AgentError('EINVAL', `bad MAC ${a.mac}`);
  if (a.find !== undefined && a.find !== 'mac' && a.find !== 'guid' && a.find !== 'passthrough') throw new AgentError('EINVAL', `bad find ${String(a.find)}`);
  if (a.find === 'guid' && !GUID_RE.test(String(a.guid).toLowerCase())) throw new AgentError('EINVAL', `bad GUID ${a.guid}`);
  const what = a.find === 'guid' ? `port GUID ${a.guid}` : a.find === 'passthrough' ? 'a passthrough (non-virtio) interface' : `MAC ${mac}`;
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(a.name)) throw new AgentError('EINVAL', `bad interface name ${a.name}`);
  if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(a.address)) throw new AgentError('EINVAL', `bad address ${a.address}`);
  const mtu = checkMtu(a.mtu);
  if (a.find !== undefined) await loadPassthroughDrivers(); // only a passed-through device is found other than by the NIC's MAC
  const t0 = Date.now();
  const deadline = t0 + (a.waitMs ?? 10_000);
  let cur: string | undefined;
  for (;;) {
    cur = findInterface('/sys/class/net', a);
    if (cur || Date.now() > deadline) break;
    await sleep(50);
  }
  if (!cur) throw new AgentError('ENODEV', `no interface with ${what} appeared within ${a.waitMs ?? 10_000} ms`);
  // one `ip` process for the whole change (rename, address, up) and the report: under TCG every exec
  // costs ~0.1 s, and the ranks are frozen while this runs (six execs before: ~0.6 s)
  const cmds = [
    ...(cur !== a.name ? [`link set dev ${cur} down`, `link set dev ${cur} name ${a.name}`] : []),
    `addr flush dev ${a.name}`,
    `addr add ${a.address} dev ${a.name}`,
    ...(mtu ? [`link set dev ${a.name} mtu ${mtu}`] : []),
    `link set dev ${a.name} up`,
    `addr show dev ${a.name}`,
  ];
  const t1 = Date.now();
  const shown = await ipBatch(cmds);
  const t2 = Date.now();
  const upDeadline = t2 + 10_000;
  while (!canSend(a.name) && Date.now() < upDeadline) await sleep(10);
  const timing = { appearMs: t1 - t0, ipMs: t2 - t1, upMs: Date.now() - t2 };
  if (a.announce) {
    const ip = a.address.split('/')[0]!;
    // gratuitous ARP so the switches learn where the MAC lives now (the MAC itself never changes, so
    // the peers' ARP caches stay right). Sent in the background: arping -c 2 takes a second, and
    // every millisecond here is time the ranks stay frozen.
    void execFileP('arping', ['-U', '-c', '2', '-I', a.name, ip]).catch(() => execFileP('busybox', ['arping', '-U', '-c', '2', '-I', a.name, ip]).catch(() => undefined));
  }
  return { ...(await reportOf(a.name, shown)), timing };
}

