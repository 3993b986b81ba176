// The nftables rule set of one job on one node (pure; unit-tested): guests reach their own job's guests
// and nothing else, and each tap may only send its own VM's MAC and IPv4 address.
//
//   table bridge symrun_j<J>                 (one per job; replaced atomically on every change)
//     chain forward  (hook forward)  frames bridged between the job's ports (taps, the VXLAN)
//     chain input    (hook input)    frames to the bridge itself: from a tap, always dropped
//   from a tap of VM i:  ether type must be ip or arp (no IPv6, no VLAN tags, nothing else)
//                        ether saddr == mac(i); ip saddr == ip(i); arp sender == (mac(i), ip(i))
// The job bridge has no address and the VXLAN carries only this job's VNI, so the node's own stack
// (slurmd, NFS, the coordinator's port) and other jobs' guests are unreachable by construction; the
// rules stop a guest from impersonating another guest of the job, or sending anything but IPv4/ARP.
import { checkJobId } from './names.js';

export interface TapBinding { tap: string; mac: string; ip: string }

export function tableName(job: string): string { return `symrun_j${checkJobId(job)}`; }

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4 = /^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}$/;

/** The whole rule set, as an `nft -f -` transaction that replaces the job's table atomically. */
export function jobRuleset(job: string, taps: readonly TapBinding[]): string {
  const t = tableName(job);
  for (const b of taps) {
    // every value comes from names.ts or a check of the caller's request; refuse anything else here too
    if (!IFNAME.test(b.tap) || !MAC.test(b.mac) || !IPV4.test(b.ip)) throw new Error(`bad tap binding ${JSON.stringify(b)}`);
  }
  const fwd = taps.flatMap((b) => [
    `    iifname "${b.tap}" ether type != { ip, arp } drop`,
    `    iifname "${b.tap}" ether saddr != ${b.mac} drop`,
    `    iifname "${b.tap}" ether type ip ip saddr != ${b.ip} drop`,
    `    iifname "${b.tap}" ether type arp arp saddr ether != ${b.mac} drop`,
    `    iifname "${b.tap}" ether type arp arp saddr ip != ${b.ip} drop`,
  ]);
  const tapSet = taps.length ? `{ ${taps.map((b) => `"${b.tap}"`).join(', ')} }` : '';
  return [
    // add-then-delete makes the delete safe when the table does not exist yet; one transaction
    `table bridge ${t} {}`,
    `delete table bridge ${t}`,
    `table bridge ${t} {`,
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    ...fwd,
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    ...(tapSet ? [`    iifname ${tapSet} drop`] : []),
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Removes the job's table (the epilog; `nft -f -`; safe if it does not exist). */
export function dropRuleset(job: string): string {
  const t = tableName(job);
  return `table bridge ${t} {}\ndelete table bridge ${t}\n`;
}
