// Soft-RoCE for interconnect.transport: rdma (launcher/src/mpi/transport.ts): an rxe device (kernel
// rdma_rxe) on the interconnect interface, so MPI uses verbs over it. Idempotent: net-config runs again
// after every move; with the failover bond the device (and the ranks' queue pairs, software objects in
// guest RAM) is still there; after a NIC replug (hooks) it is created again on the new NIC.
//
// With the failover bond, rxe does NOT sit on the bond itself but on an ipvlan (NAMEr, mode l2) on top of
// it, with its own address in 169.254.0.0/16. Measured (test/system/rdma.test.ts, first version): rxe on
// the bond dies at the failover quiesce, before the unplug. Every active-slave change of an active-backup
// bond raises NETDEV_BONDING_FAILOVER on the bond, and the kernel's RoCE GID management
// (drivers/infiniband/core/roce_gid_mgmt.c: bonding_event_ips_del_cmd, then add_cmd_upper_ips) deletes
// every GID of an RDMA port whose netdev is the bond and adds them again; UCX logs "IB Async event on
// rxe0: GID table change on port 1" three times, rxe's next send on the rc queue pairs fails while the
// GID is missing, the QP goes to error, and UCX aborts the rank ("error 'Input/output error' on
// rc_verbs/rxe0:1"). An ipvlan is not the bond: the GID filters skip it and (kernel 6.1) it does not
// pass NETDEV_BONDING_FAILOVER on to itself (macvlan and 802.1q vlans do), so its GIDs never change; its
// traffic still goes out through the bond's active slave (same MAC as the bond).
import fs from 'node:fs';
import { AgentError, execFileP, readSys, sleep } from './util.js';

interface RdmaLink { ifname: string; netdev?: string; state?: string }

async function links(): Promise<RdmaLink[]> {
  const { stdout } = await execFileP('rdma', ['-j', 'link', 'show'], { timeout: 15_000 });
  const t = String(stdout).trim();
  return t ? (JSON.parse(t) as RdmaLink[]) : [];
}

/** the ipvlan rxe sits on when the interconnect is the failover bond */
export const rxeIpvlanName = (bond: string) => `${bond.slice(0, 14)}r`;

/**
 * The ipvlan's address: 169.254.H/16 with H the host part of the interconnect address, so it is unique in
 * the job whenever the interconnect prefix is /16 or longer (every symrun subnet is).
 */
export function rxeIpvlanAddress(cidr: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (!m) throw new AgentError('EINVAL', `bad interconnect address ${cidr}`);
  const ip = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  const prefix = Number(m[5]);
  const host = prefix >= 32 ? 0 : ip & (prefix === 0 ? 0xffffffff : (0xffffffff >>> prefix));
  if (host < 1 || host > 0xfffe) throw new AgentError('EINVAL', `interconnect address ${cidr}: its host part does not fit 169.254.0.0/16 for the Soft-RoCE ipvlan (use a subnet of /16 or longer)`);
  return `169.254.${host >> 8}.${host & 255}/16`;
}

async function ensureIpvlan(bond: string, address: string): Promise<string> {
  const name = rxeIpvlanName(bond);
  try {
    await execFileP('modprobe', ['ipvlan'], { timeout: 30_000 });
  } catch (e) {
    throw new AgentError('ENODEV', `modprobe ipvlan failed (it is in IMAGE_DEFAULTS.rootModules): ${String((e as { stderr?: string }).stderr ?? (e as Error).message).trim()}`);
  }
  if (!fs.existsSync(`/sys/class/net/${name}`)) await execFileP('ip', ['link', 'add', name, 'link', bond, 'type', 'ipvlan', 'mode', 'l2'], { timeout: 15_000 });
  await execFileP('ip', ['addr', 'replace', address, 'dev', name], { timeout: 15_000 });
  await execFileP('ip', ['link', 'set', 'dev', name, 'up'], { timeout: 15_000 });
  return name;
}

/**
 * rxe device `dev` on the interconnect interface `iface` (with the failover bond: on its ipvlan, see the
 * top of this file; `address` is the interconnect address, e.g. 10.77.0.12/24), port 1 ACTIVE; returns
 * the netdev it is on.
 */
export async function ensureRxe(dev: string, iface: string, address?: string, waitMs = 15_000): Promise<{ device: string; netdev: string; created: boolean }> {
  if (!/^[A-Za-z0-9_]{1,20}$/.test(dev)) throw new AgentError('EINVAL', `bad rdma device name ${dev}`);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(iface)) throw new AgentError('EINVAL', `bad interface name ${iface}`);
  const bond = fs.existsSync(`/sys/class/net/${iface}/bonding`);
  if (bond && !address) throw new AgentError('EINVAL', `${iface} is a failover bond: the Soft-RoCE ipvlan needs the interconnect address`);
  const netdev = bond ? await ensureIpvlan(iface, rxeIpvlanAddress(address!)) : iface;
  // crc32_generic first: rdma_rxe allocates the crypto API's "crc32" (the ICRC of every RoCE packet) when
  // a device is added, not when it loads. That is a soft dependency modules.dep does not list, and the
  // kernel's own request for "crypto-crc32" finds no alias in the guest, so without it the add fails with
  // ENOENT ("rdma_rxe: failed to init crc32 algorithm err:-2" in dmesg).
  for (const mod of ['crc32_generic', 'rdma_rxe']) {
    try {
      await execFileP('modprobe', [mod], { timeout: 30_000 });
    } catch (e) {
      throw new AgentError('ENODEV', `modprobe ${mod} failed (the guest image has no ${mod} module? it is in IMAGE_DEFAULTS.rootModules): ${String((e as { stderr?: string }).stderr ?? (e as Error).message).trim()}`);
    }
  }
  let created = false;
  const cur = (await links()).find((l) => l.ifname === dev);
  if (cur?.netdev !== netdev) {
    if (cur) await execFileP('rdma', ['link', 'delete', dev], { timeout: 15_000 });
    try {
      await execFileP('rdma', ['link', 'add', dev, 'type', 'rxe', 'netdev', netdev], { timeout: 15_000 });
    } catch (e) {
      throw new AgentError('EIO', `rdma link add ${dev} type rxe netdev ${netdev}: ${String((e as { stderr?: string }).stderr ?? (e as Error).message).trim()}`);
    }
    created = true;
  }
  const stateFile = `/sys/class/infiniband/${dev}/ports/1/state`;
  const deadline = Date.now() + waitMs;
  while (!/ACTIVE/.test(readSys(stateFile))) {
    if (Date.now() > deadline) throw new AgentError('ETIMEDOUT', `${dev} on ${netdev} is not ACTIVE after ${waitMs} ms (state: ${readSys(stateFile) || 'no device'})`);
    await sleep(50);
  }
  if (!fs.existsSync('/dev/infiniband')) throw new AgentError('ENODEV', `${dev} exists but /dev/infiniband does not (ib_uverbs not loaded?)`);
  return { device: dev, netdev, created };
}
