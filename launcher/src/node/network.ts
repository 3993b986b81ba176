// The job's private L2 network on this node (root): a bridge with no address, joined to the job's other
// nodes by a VXLAN (its own VNI and multicast group, on the node's underlay), and the VMs' taps owned by
// the job's user, each bound to its VM's MAC and IP by the job's nftables table (nft.ts). Every name and
// address comes from names.ts; every command from sys.ts (absolute tools, empty environment).
import { SymError, EXIT } from '../errors.js';
import type { NodeConfig } from './config.js';
import { jobBridge, jobVxlan, vni, vxlanGroup, overlayMtu } from './names.js';
import { dropRuleset, jobRuleset, tableName } from './nft.js';
import { sys, sysOk } from './sys.js';
import type { AttachedVm, JobRecord } from './record.js';

/** The device that carries `addr` on this node, and its MTU. */
export async function underlay(cfg: NodeConfig, addr: string): Promise<{ dev: string; mtu: number }> {
  const out = await sysOk(cfg.ip, ['-j', '-4', 'addr', 'show'], 'listing the node\'s addresses');
  const links = JSON.parse(out || '[]') as Array<{ ifname: string; mtu?: number; addr_info?: Array<{ local?: string }> }>;
  const l = cfg.overlayDev ? links.find((x) => x.ifname === cfg.overlayDev) : links.find((x) => x.addr_info?.some((a) => a.local === addr));
  if (!l) {
    throw new SymError('ESYM_NODE_SETUP', {
      message: cfg.overlayDev ? `SYMRUN_OVERLAY_DEV=${cfg.overlayDev} has no IPv4 address on this node` : `no device of this node carries its address ${addr}`,
      fix: 'set SYMRUN_OVERLAY_DEV (the device of the node network) and SYMRUN_NODE_ADDR in /etc/symrun/node.conf',
      exitCode: EXIT.environment,
    });
  }
  return { dev: l.ifname, mtu: l.mtu ?? 1500 };
}

/** Create the job's bridge and VXLAN (idempotent: the prolog may run again after a requeue). */
export async function createJobNetwork(cfg: NodeConfig, job: string, local: string): Promise<NonNullable<JobRecord['network']>> {
  const u = await underlay(cfg, local);
  const net = { bridge: jobBridge(job), vxlan: jobVxlan(job), vni: vni(job, cfg.vniBase), group: vxlanGroup(job, cfg.vniBase), dev: u.dev, local, port: cfg.vxlanPort, mtu: overlayMtu(u.mtu) };
  const r = await sys(cfg.ip, ['-force', '-batch', '-'], {
    input: [
      `link add ${net.bridge} type bridge stp_state 0 forward_delay 0`,
      `link set dev ${net.bridge} mtu ${net.mtu} addrgenmode none`,
      `link add ${net.vxlan} type vxlan id ${net.vni} group ${net.group} dev ${net.dev} local ${local} dstport ${net.port} ttl 4`,
      `link set dev ${net.vxlan} mtu ${net.mtu} master ${net.bridge} up`,
      `link set dev ${net.bridge} up`,
    ].join('\n') + '\n',
  });
  // a re-run finds them made already ("File exists"); anything else is a failure
  const errs = r.stderr.split('\n').filter((l) => l.trim() && !/File exists|Command failed/.test(l));
  if (errs.length) throw new SymError('ESYM_NODE_SETUP', { message: `job ${job}: could not create its network (${net.bridge}, ${net.vxlan} on ${net.dev}): ${errs.slice(0, 3).join('; ')}`, exitCode: EXIT.environment });
  await applyRules(cfg, job, []);
  return net;
}

/** The job's nftables table, for the VMs attached now (replaced atomically). */
export async function applyRules(cfg: NodeConfig, job: string, attached: readonly AttachedVm[]): Promise<void> {
  const taps = attached.flatMap((a) => [{ tap: a.tap, mac: a.mac, ip: a.ip }, ...(a.standby ? [{ tap: a.standby.tap, mac: a.standby.mac, ip: a.ip }] : [])]);
  await sysOk(cfg.nft, ['-f', '-'], `job ${job}: loading its nftables table ${tableName(job)}`, { input: jobRuleset(job, taps) });
}

/** A tap owned by `uid` on the job's bridge, its MTU the job's (idempotent). */
export async function createTap(cfg: NodeConfig, rec: JobRecord, tap: string): Promise<void> {
  const net = rec.network!;
  const r = await sys(cfg.ip, ['-force', '-batch', '-'], {
    input: [`tuntap add dev ${tap} mode tap user ${rec.uid} group ${rec.gid}`, `link set dev ${tap} mtu ${net.mtu} master ${net.bridge} up`].join('\n') + '\n',
  });
  const errs = r.stderr.split('\n').filter((l) => l.trim() && !/Device or resource busy|Command failed/.test(l));
  if (errs.length) throw new SymError('ESYM_NODE_SETUP', { message: `job ${rec.job}: could not create tap ${tap}: ${errs.slice(0, 3).join('; ')}`, exitCode: EXIT.environment });
}

export async function deleteLink(cfg: NodeConfig, name: string): Promise<void> {
  await sys(cfg.ip, ['link', 'del', 'dev', name]);
}

/** Everything of the job's network the record lists: taps, VXLAN, bridge, table. */
export async function destroyJobNetwork(cfg: NodeConfig, rec: JobRecord): Promise<string[]> {
  const gone: string[] = [];
  for (const a of rec.attached) for (const t of [a.tap, a.standby?.tap]) if (t) { await deleteLink(cfg, t); gone.push(t); }
  if (rec.network) for (const l of [rec.network.vxlan, rec.network.bridge]) { await deleteLink(cfg, l); gone.push(l); }
  await sys(cfg.nft, ['-f', '-'], { input: dropRuleset(rec.job) });
  gone.push(`nft table bridge ${tableName(rec.job)}`);
  return gone;
}
