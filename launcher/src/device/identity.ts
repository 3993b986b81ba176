// The MAC address of an Ethernet VF and the node/port GUIDs of an InfiniBand VF: a pure function of
// (Slurm job id, node index, slot). No I/O, no hashing, no randomness.
//
// Why no hash: a hash of the job id cannot promise that two running jobs never collide (16 bits of a hash,
// as the emulated NICs use, collide with 50 % probability at about 300 concurrent VMs). An injective
// bit layout can.
//
// MAC (48 bits) — 11 aaaa 10 | jjjjjjjj ... : the first octet is 0b11xxxx10:
//   bit 0 (I/G) = 0: unicast; bit 1 (U/L) = 1: locally administered, so no vendor-assigned (OUI) MAC of
//   any real NIC can be equal; bits 7..6 = 11 keep the range apart from the MACs symrun itself uses for
//   emulated NICs and local mode (52:54:…, 02:53:…, 02:54:…, first octets 0x52 and 0x02, whose bits 7..6
//   are 01 and 00). The remaining 4 + 40 = 44 bits hold, most significant first:
//     job   26 bits  the Slurm job id; Slurm keeps local job ids below 2^26 (MaxJobId <= 0x03FF0000,
//                    slurm.conf(5); the 6 bits above are a federation's cluster id)
//     node  12 bits  the node's index in the cluster, 0..4095 (node config `node.index`)
//     slot   6 bits  the job's VF slot on this node, 0..63 (the claim store hands out each slot once)
// GUID (64 bits) — 0xC2 | kind 1 bit | job 32 bits | node 12 bits | slot 6 bits | 0 (5 bits):
//   the same U/L = 1 rule keeps it apart from every vendor GUID (IEEE OUIs have U/L = 0); kind is 0 for
//   the node GUID and 1 for the port GUID; a GUID has room for the whole 32-bit job id (federation ok).
//
// Collision argument: both layouts are injective on job < 2^26 (MAC) or < 2^32 (GUID), node < 4096,
// slot < 64 (distinct tuples give distinct bit strings, the fixed bits are the same for all). Two live VFs
// on the fabric therefore share a MAC/GUID only if they share (job, node, slot). They cannot: node indexes
// are unique in the cluster (a site rule, node config), a Slurm job id names one running job at a time,
// and on one node the claim store creates the slot file <job>.<slot> with link(2), which fails if it
// exists, so a slot is held by one claim at a time. A VF released and claimed again by the same job on the
// same node may get the same slot, and then the same MAC: that is the same VM slot again, not a collision.
// Consequence: the MAC follows the node; a VM that moves to another node gets a VF with another MAC, so the
// guest must be told its new MAC when it is reconfigured after the move.
import { SymError, EXIT } from '../errors.js';

export const JOB_BITS_MAC = 26;
export const NODE_BITS = 12;
export const SLOT_BITS = 6;
export const MAX_JOB_MAC = 2 ** JOB_BITS_MAC - 1;
export const MAX_JOB = 2 ** 32 - 1;
export const MAX_NODE_INDEX = 2 ** NODE_BITS - 1;
export const MAX_SLOT = 2 ** SLOT_BITS - 1;

export interface VfIdentity {
  /** Slurm job id */
  job: number;
  /** the node's index in the cluster (0..4095) */
  node: number;
  /** the job's VF slot on this node (0..63) */
  slot: number;
}

function range(what: string, v: number, max: number, fix: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new SymError('ESYM_DEVICE_IDENTITY', { message: `${what} ${v} is outside 0..${max}, the range the VF address scheme encodes`, field: what, value: v, fix, exitCode: EXIT.usage });
  }
}

function checkCommon(id: VfIdentity): void {
  range('node index', id.node, MAX_NODE_INDEX, `set node.index in the node config to a number 0..${MAX_NODE_INDEX} unique in the cluster`);
  range('slot', id.slot, MAX_SLOT, `a job can hold at most ${MAX_SLOT + 1} VFs on one node`);
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0');

/** The VF MAC for (job, node, slot), e.g. c2:00:00:0c:00:40 for job 3, node 1, slot 0. */
export function vfMac(id: VfIdentity): string {
  checkCommon(id);
  range('Slurm job id', id.job, MAX_JOB_MAC,
    `Ethernet VF MACs encode job ids below 2^${JOB_BITS_MAC} (Slurm's own limit for local job ids); federated job ids are not supported for Ethernet VFs`);
  // 44 bits: beyond 2^32, so BigInt
  const v = (BigInt(id.job) << BigInt(NODE_BITS + SLOT_BITS)) | (BigInt(id.node) << BigInt(SLOT_BITS)) | BigInt(id.slot);
  const first = 0xc2 | (Number(v >> 40n) << 2);
  const bytes = [first];
  for (let i = 4; i >= 0; i--) bytes.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return bytes.map(hex2).join(':');
}

function guid(id: VfIdentity, kind: 0 | 1): string {
  checkCommon(id);
  range('Slurm job id', id.job, MAX_JOB, 'Slurm job ids are 32-bit numbers');
  let v = 0xc2n;
  v = (v << 1n) | BigInt(kind);
  v = (v << 32n) | BigInt(id.job);
  v = (v << BigInt(NODE_BITS)) | BigInt(id.node);
  v = (v << BigInt(SLOT_BITS)) | BigInt(id.slot);
  v <<= 5n;
  const bytes: string[] = [];
  for (let i = 7; i >= 0; i--) bytes.push(hex2(Number((v >> BigInt(8 * i)) & 0xffn)));
  return bytes.join(':');
}

/** The node GUID of an InfiniBand VF (ip link … vf N node_guid G). */
export function vfNodeGuid(id: VfIdentity): string {
  return guid(id, 0);
}

/** The port GUID of an InfiniBand VF (ip link … vf N port_guid G); differs from the node GUID in one bit. */
export function vfPortGuid(id: VfIdentity): string {
  return guid(id, 1);
}

/** Inverse of vfMac (for tests, `symrun node devices list` and checking a claim). */
export function decodeVfMac(mac: string): VfIdentity | undefined {
  const m = /^([0-9a-f]{2})(?::([0-9a-f]{2})){5}$/.exec(mac);
  if (!m) return undefined;
  const b = mac.split(':').map((x) => parseInt(x, 16));
  if ((b[0]! & 0xc3) !== 0xc2) return undefined;
  let v = BigInt((b[0]! >> 2) & 0xf);
  for (let i = 1; i < 6; i++) v = (v << 8n) | BigInt(b[i]!);
  return {
    job: Number(v >> BigInt(NODE_BITS + SLOT_BITS)),
    node: Number((v >> BigInt(SLOT_BITS)) & BigInt(MAX_NODE_INDEX)),
    slot: Number(v & BigInt(MAX_SLOT)),
  };
}
