// net-config for a plain interconnect NIC: find the NIC the host plugged by its MAC, give it the job's
// name and address (one `ip` process), bring it up, announce it (gratuitous ARP) after a move.
import fs from 'node:fs';
import type { NetConfigArgs, InterfaceReport } from '../protocol/index.js';
import { AgentError, execFileP, readSys, sleep } from './util.js';
import { checkMtu, ipBatch, reportOf } from './iface.js';

export async function netConfig(a: NetConfigArgs): Promise<InterfaceReport> {
  const mac = String(a.mac).toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac)) throw new AgentError('EINVAL', `bad MAC ${a.mac}`);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(a.name)) throw new AgentError('EINVAL', `bad interface name ${a.name}`);
  if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(a.address)) throw new AgentError('EINVAL', `bad address ${a.address}`);
  const mtu = checkMtu(a.mtu);
  const deadline = Date.now() + (a.waitMs ?? 10_000);
  let cur: string | undefined;
  for (;;) {
    cur = fs.readdirSync('/sys/class/net').find((n) => readSys(`/sys/class/net/${n}/address`) === mac);
    if (cur || Date.now() > deadline) break;
    await sleep(50);
  }
  if (!cur) throw new AgentError('ENODEV', `no interface with MAC ${mac} appeared within ${a.waitMs ?? 10_000} ms`);
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
  const shown = await ipBatch(cmds);
  const upDeadline = Date.now() + 10_000;
  while (readSys(`/sys/class/net/${a.name}/operstate`) !== 'up' && Date.now() < upDeadline) await sleep(20);
  if (a.announce) {
    const ip = a.address.split('/')[0]!;
    // gratuitous ARP so the switches learn where the MAC lives now (the MAC itself never changes, so
    // the peers' ARP caches stay right). Sent in the background: arping -c 2 takes a second, and
    // every millisecond here is time the ranks stay frozen.
    void execFileP('arping', ['-U', '-c', '2', '-I', a.name, ip]).catch(() => execFileP('busybox', ['arping', '-U', '-c', '2', '-I', a.name, ip]).catch(() => undefined));
  }
  return reportOf(a.name, shown);
}

