// Interfaces as the guest sees them, and `ip` driven in one process per change, started ahead (the ranks
// may be frozen while it runs: warm-ip.ts says what that saves). Values from the host are checked before use.
import fs from 'node:fs';
import type { InterfaceReport } from '../protocol/index.js';
import { AgentError, execFileP, readSys } from './util.js';
import { WarmIp } from './warm-ip.js';

/**
 * Can the interface send? It is up (IFF_UP) and has carrier. Not operstate: the kernel updates
 * operstate from its linkwatch work, which runs at most once a second for non-urgent events, so a
 * hot-plugged NIC whose carrier came up at probe reads "down" for up to a second after `ip link set up`
 * while it already sends (its qdisc is activated at open when carrier is on; a qdisc still waiting for
 * carrier makes the event urgent). Measured under TCG: 650-780 ms of operstate wait per migration.
 */
export function canSend(name: string, sysNet = '/sys/class/net'): boolean {
  const flags = Number.parseInt(readSys(`${sysNet}/${name}/flags`), 16);
  return readSys(`${sysNet}/${name}/operstate`) === 'up' || (Number.isFinite(flags) && (flags & 1) === 1 && readSys(`${sysNet}/${name}/carrier`) === '1');
}

export async function interfaces(): Promise<InterfaceReport[]> {
  const out: InterfaceReport[] = [];
  let addrs: Record<string, string[]> = {};
  try {
    const { stdout } = await execFileP('ip', ['-j', 'addr', 'show']);
    for (const i of JSON.parse(stdout) as Array<{ ifname: string; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }>) {
      addrs[i.ifname] = (i.addr_info ?? []).filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`);
    }
  } catch {
    addrs = {};
  }
  for (const name of fs.readdirSync('/sys/class/net')) {
    out.push({ name, mac: readSys(`/sys/class/net/${name}/address`), up: readSys(`/sys/class/net/${name}/operstate`) === 'up', addresses: addrs[name] ?? [] });
  }
  return out;
}

export /** The report of interface NAME from `ip -json addr show` output (`shown`), sysfs for the rest. */
async function reportOf(name: string, shown: string): Promise<InterfaceReport> {
  // (an `ip` whose batch mode prints `addr show` without addresses: ask once more, the slow way)
  const addresses = inetAddrs(shown).get(name) ?? (await interfaces()).find((i) => i.name === name)?.addresses;
  if (!addresses || !fs.existsSync(`/sys/class/net/${name}`)) throw new AgentError('ENODEV', `interface ${name} vanished`);
  return { name, mac: readSys(`/sys/class/net/${name}/address`), up: canSend(name), addresses };
}

export /** An MTU from the host (checked: a guest applies only a sane value). */
function checkMtu(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 576 || v > 65520) throw new AgentError('EINVAL', `bad MTU ${JSON.stringify(v)}`);
  return v;
}

/** The agent's pool of `ip` processes started ahead (warm-ip.ts); the agent fills it once it is up. */
export const ipPool = new WarmIp();

/** `ip -json -batch -`: the commands in one process (it stops at the first that fails); its JSON output.
 * The process was started ahead when the pool has one waiting, so no exec is paid while ranks are frozen. */
export function ipBatch(cmds: string[]): Promise<string> {
  return ipPool.batch(cmds);
}

/** inet addresses per interface from `ip -json addr show` output (one JSON array per show command). */
export function inetAddrs(json: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of json.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('[')) continue;
    for (const i of JSON.parse(t) as Array<{ ifname: string; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }>) {
      if (i.addr_info) out.set(i.ifname, i.addr_info.filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`));
    }
  }
  return out;
}

