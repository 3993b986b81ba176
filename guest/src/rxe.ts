// Soft-RoCE for interconnect.transport: rdma (launcher/src/mpi/transport.ts): an rxe device (kernel
// rdma_rxe) on the interconnect interface, so MPI uses verbs over it. Idempotent: net-config runs again
// after every move; on the failover bond the device (and the ranks' queue pairs, software objects in guest
// RAM) is still there, after a NIC replug (hooks) it is created again on the new NIC.
import fs from 'node:fs';
import { AgentError, execFileP, readSys, sleep } from './util.js';

interface RdmaLink { ifname: string; netdev?: string; state?: string }

async function links(): Promise<RdmaLink[]> {
  const { stdout } = await execFileP('rdma', ['-j', 'link', 'show'], { timeout: 15_000 });
  const t = String(stdout).trim();
  return t ? (JSON.parse(t) as RdmaLink[]) : [];
}

/** rxe device `dev` bound to `netdev`, port 1 ACTIVE; returns the netdev it is on. */
export async function ensureRxe(dev: string, netdev: string, waitMs = 15_000): Promise<{ device: string; netdev: string; created: boolean }> {
  if (!/^[A-Za-z0-9_]{1,20}$/.test(dev)) throw new AgentError('EINVAL', `bad rdma device name ${dev}`);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(netdev)) throw new AgentError('EINVAL', `bad interface name ${netdev}`);
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
