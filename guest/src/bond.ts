// The failover adapter's bond (see the comment below): net-config of the bond and the switch to the
// standby before the passthrough NIC is unplugged.
import fs from 'node:fs';
import type { NetConfigArgs, InterfaceReport } from '../protocol/index.js';
import { AgentError, execFileP, readSys, sleep } from './util.js';
import { checkMtu, ipBatch, reportOf } from './iface.js';

// The interconnect name (e.g. symfab0) is an active-backup bond; its slaves are the passthrough NIC
// (NAMEp, primary) and the virtio standby (NAMEs), which migrates with the VM. Quiesce makes the
// standby active, so the unplug of the primary does not interrupt traffic; after the replug the new
// NIC is enslaved and, being the primary, active again. Ranks never stop.
const bondDir = (bond: string) => `/sys/class/net/${bond}/bonding`;
const slaveName = (bond: string, role: 'p' | 's') => `${bond.slice(0, 14)}${role}`;

async function waitIface(pred: (n: string) => boolean, what: string, waitMs: number): Promise<string> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const hit = fs.readdirSync('/sys/class/net').find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) throw new AgentError('ENODEV', `${what} did not appear within ${waitMs} ms`);
    await sleep(50);
  }
}

/** A NIC with this MAC that is not (yet) part of the bond (enslaved NICs carry the bond's MAC). */
function freeNicWithMac(n: string, mac: string, bond: string): boolean {
  return n !== bond && readSys(`/sys/class/net/${n}/address`) === mac && !fs.existsSync(`/sys/class/net/${n}/master`) && !fs.existsSync(`/sys/class/net/${n}/bonding`);
}

async function enslave(bond: string, cur: string, name: string): Promise<void> {
  await ipBatch([`link set dev ${cur} down`, ...(cur !== name ? [`link set dev ${cur} name ${name}`] : [])]);
  fs.writeFileSync(`${bondDir(bond)}/slaves`, `+${name}`);
}

export async function bondConfig(a: NetConfigArgs & { standbyMac: string }): Promise<InterfaceReport> {
  const bond = a.name;
  const mac = a.mac.toLowerCase();
  const sbMac = a.standbyMac.toLowerCase();
  const waitMs = a.waitMs ?? 10_000;
  const prim = slaveName(bond, 'p');
  const stby = slaveName(bond, 's');
  if (!fs.existsSync(bondDir(bond))) {
    await execFileP('modprobe', ['bonding', 'max_bonds=0']).catch(() => undefined);
    fs.writeFileSync('/sys/class/net/bonding_masters', `+${bond}`);
    fs.writeFileSync(`${bondDir(bond)}/mode`, 'active-backup');
    fs.writeFileSync(`${bondDir(bond)}/miimon`, '50');
    await ipBatch([`addr flush dev ${bond}`, `addr add ${a.address} dev ${bond}`, `link set dev ${bond} up`]);
  }
  const t0 = Date.now();
  const slaves = () => readSys(`${bondDir(bond)}/slaves`).split(/\s+/).filter(Boolean);
  if (!slaves().includes(stby)) await enslave(bond, await waitIface((n) => freeNicWithMac(n, sbMac, bond) || n === stby, `standby NIC ${sbMac}`, waitMs), stby);
  if (!slaves().includes(prim)) {
    // the passthrough NIC: at boot, or freshly hot-plugged after a migration
    const cur = await waitIface((n) => freeNicWithMac(n, mac, bond), `NIC with MAC ${mac}`, waitMs);
    await enslave(bond, cur, prim);
  }
  fs.writeFileSync(`${bondDir(bond)}/primary`, prim);
  const mtu = checkMtu(a.mtu);
  const t1 = Date.now();
  const shown = await ipBatch([`addr replace ${a.address} dev ${bond}`, ...(mtu ? [`link set dev ${bond} mtu ${mtu}`] : []), `addr show dev ${bond}`]);
  const t2 = Date.now();
  const deadline = t2 + 10_000;
  while (readSys(`${bondDir(bond)}/active_slave`) !== prim && Date.now() < deadline) {
    fs.writeFileSync(`${bondDir(bond)}/active_slave`, prim);
    await sleep(50);
  }
  const timing = { appearMs: t1 - t0, ipMs: t2 - t1, upMs: Date.now() - t2 };
  if (a.announce) void execFileP('arping', ['-U', '-c', '2', '-I', bond, a.address.split('/')[0]!]).catch(() => undefined);
  return { ...(await reportOf(bond, shown)), timing };
}

/** failover quiesce: traffic to the standby before the primary is unplugged. */
export async function failoverToStandby(bond: string): Promise<void> {
  if (!fs.existsSync(bondDir(bond))) throw new AgentError('EINVAL', `no failover bond ${bond} in this VM: start the job with migration.quiesce: failover`);
  const stby = slaveName(bond, 's');
  const deadline = Date.now() + 10_000;
  while (readSys(`${bondDir(bond)}/active_slave`) !== stby) {
    if (Date.now() > deadline) throw new AgentError('ETIMEDOUT', `bond ${bond} did not switch to ${stby}`);
    fs.writeFileSync(`${bondDir(bond)}/active_slave`, stby);
    await sleep(20);
  }
}

