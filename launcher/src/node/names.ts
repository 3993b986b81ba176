// Names, addresses and identifiers of a Slurm job's private network on a node (pure; unit-tested).
// The root node layer (prolog, symrun-noded, epilog) and the job's own processes compute the same
// names from the Slurm job id and the VM index; root never takes a name, path or address from the user:
// it derives them here and only checks what the user asks for against them.
//
//   per job, on every node of the allocation          per VM i of the job, on the node it runs on
//   bridge   sjb<J>   (no IP: guests reach only         tap      sjt<J>v<i>  (owned by the job's user)
//            their job's guests, never the node)        standby  sjf<J>v<i>  (failover adapter)
//   vxlan    sjx<J>   VNI vni(J), group group(J)        MAC      mac(J, i), standby mac(J, i) ^ 0x80
//
// Linux interface names are at most 15 characters: "sjt" + up to 10 digits (Slurm job ids are 32-bit)
// + "v" + the VM index leaves room for an index up to 9 only when J has 10 digits; ids that long with
// more VMs use a base-36 job tag (still unique: it is the same number in another base).
//
// VNI: 24 bits. Two running jobs on the same fabric must not share one: vni(J) = 1 + (J mod 16777213);
// two job ids collide only if they differ by a multiple of 16,777,213 (Slurm's MaxJobId default is
// 67,043,328: the site sets SYMRUN_VNI_BASE per cluster/partition if it runs that many at once).
// Multicast group (VXLAN flood-and-learn, no per-node FDB updates when a node joins): 239.<vni>.
// MACs: locally administered unicast (02:...), from J and i. They only need to be unique within the
// job: every job has its own L2 (bridge + VNI), guests of two jobs never share a segment.
import { SymError, EXIT } from '../errors.js';

export const MAX_IFNAME = 15;
/** VM indices a job may have (MACs carry 16 bits of it) */
export const MAX_VMS = 4096;

export function checkJobId(job: string, field = 'SLURM_JOB_ID'): string {
  if (typeof job !== 'string' || !/^[1-9][0-9]{0,9}$/.test(job) || Number(job) > 0xffffffff) {
    throw new SymError('ESYM_BAD_JOB_ID', { message: `a Slurm job id is a whole number of at most 10 digits, not ${JSON.stringify(job)}`, field, value: job, exitCode: EXIT.usage });
  }
  return job;
}

export function checkVmIndex(i: unknown): number {
  if (typeof i !== 'number' || !Number.isInteger(i) || i < 1 || i > MAX_VMS) {
    throw new SymError('ESYM_BAD_VM_INDEX', { message: `a VM index is a whole number from 1 to ${MAX_VMS}, not ${JSON.stringify(i)}`, field: 'vm', value: i, exitCode: EXIT.usage });
  }
  return i;
}

/** The job's tag in interface names: its decimal id, or base 36 if names would get too long. */
function tag(job: string, room: number): string {
  return job.length <= room ? job : Number(job).toString(36);
}

export function jobBridge(job: string): string { return `sjb${checkJobId(job)}`; }
export function jobVxlan(job: string): string { return `sjx${checkJobId(job)}`; }

function vmIf(prefix: string, job: string, i: number): string {
  checkJobId(job);
  checkVmIndex(i);
  const suffix = `v${i}`;
  const name = `${prefix}${tag(job, MAX_IFNAME - prefix.length - suffix.length)}${suffix}`;
  if (name.length > MAX_IFNAME) throw new SymError('ESYM_BAD_IFNAME', { message: `interface name ${name} is longer than ${MAX_IFNAME} characters`, value: name });
  return name;
}

export function vmTap(job: string, i: number): string { return vmIf('sjt', job, i); }
export function standbyTap(job: string, i: number): string { return vmIf('sjf', job, i); }

/** Every interface name this job may have on a node is one of these forms (the epilog's check). */
export function isJobInterface(name: string, job: string): boolean {
  checkJobId(job);
  if (name === jobBridge(job) || name === jobVxlan(job)) return true;
  const m = /^sj[tf]([0-9a-z]+)v([0-9]+)$/.exec(name);
  if (!m) return false;
  const i = Number(m[2]);
  if (!Number.isInteger(i) || i < 1 || i > MAX_VMS) return false;
  return vmIf(name.slice(0, 3), job, i) === name;
}

const VNI_SPACE = 16_777_213;
export function vni(job: string, base = 0): number {
  return 1 + ((Number(checkJobId(job)) + base) % VNI_SPACE);
}

export function vxlanGroup(job: string, base = 0): string {
  const v = vni(job, base);
  return `239.${(v >> 16) & 255}.${(v >> 8) & 255}.${v & 255}`;
}

const hex = (n: number) => n.toString(16).padStart(2, '0');

/** The MAC of VM i of job J (role standby: the failover adapter's virtio standby). */
export function vmMacFor(job: string, i: number, role: 'device' | 'standby' = 'device'): string {
  const j = Number(checkJobId(job));
  checkVmIndex(i);
  // 02 (locally administered, unicast) | 24 bits of the job | 16 bits of the index, bit 7 of byte 1 for standby
  const b1 = ((j >>> 16) & 0x7f) | (role === 'standby' ? 0x80 : 0);
  return ['02', hex(b1), hex((j >>> 8) & 255), hex(j & 255), hex((i >>> 8) & 255), hex(i & 255)].join(':');
}

/** Guest MTU on the job network: the underlay's minus the VXLAN encapsulation (50 bytes over IPv4). */
export function overlayMtu(underlayMtu: number): number {
  return underlayMtu - 50;
}
