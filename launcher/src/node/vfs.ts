// The job's VFs in the root node layer: the prolog claims SYMRUN_VF_SLOTS VFs of this node for the job
// (the device manager, device/manager.ts: claim -> MAC/GUIDs through the PF -> vfio-pci -> /dev/vfio/N
// to the job's user) and writes what it got into the job record (`vfs`), where the job's host agent
// finds them and offers them first to the job's VMs (device/job-vfs.ts); the epilog releases exactly
// that job's claims, after the job's processes are gone (a QEMU still holding /dev/vfio/N would make
// the release refuse).
//
// The claim store of the device manager is its own write-ahead record (one file per claim, named by
// the job), so an epilog after a prolog that died half-way releases what was claimed even though the
// job record never listed it: release works by job id, never from the record's list.
//
// Which VFs and how: /etc/symrun/node.yaml (SYMRUN_NODE_CONFIG names another file; pools, state
// directory, binaries: device/nodeconfig.ts). How many per job: SYMRUN_VF_SLOTS in node.conf
// (config.ts; 0, the default, means the node layer claims none: a job then needs
// interconnect.addresses / interconnect.pool, docs/passthrough.md).
import { DeviceManager, type ClaimResult, type ReleaseResult } from '../device/manager.js';
import { loadNodeConfig } from '../device/nodeconfig.js';
import { execRunner } from '../device/runner.js';
import { FsDeviceIO } from '../device/sysfs.js';
import type { JobRecord } from './record.js';

/** Makes the device manager (a test hands one on a fake sysfs tree). */
export type DeviceManagerFactory = () => DeviceManager;

export const realDeviceManager: DeviceManagerFactory = () => {
  const cfg = loadNodeConfig({ env: process.env });
  return new DeviceManager({ cfg, io: new FsDeviceIO(cfg.devices.root), run: execRunner });
};

/** What the job record keeps of a claim: what the host agent and the guest need to find the VF. */
export function recordVfs(r: ClaimResult): NonNullable<JobRecord['vfs']> {
  return r.claimed.map((c) => ({
    pci: c.pci,
    type: c.type,
    ...(c.mac ? { mac: c.mac } : {}),
    ...(c.portGuid ? { portGuid: c.portGuid } : {}),
  }));
}

/** Claim `slots` VFs for the job (all or nothing: a failed claim was rolled back by the manager). */
export async function claimJobVfs(make: DeviceManagerFactory, job: { job: string; uid: number; gid: number }, slots: number): Promise<NonNullable<JobRecord['vfs']>> {
  const r = await make().claim({ job: job.job, uid: job.uid, gid: job.gid, slots });
  return recordVfs(r);
}

/** Release the job's claims on this node; what could not be given back, one line each (the epilog reports it). */
export async function releaseJobVfs(make: DeviceManagerFactory, job: string): Promise<{ released: string[]; problems: string[] }> {
  let r: ReleaseResult;
  try {
    r = await make().release(job);
  } catch (e) {
    return { released: [], problems: [`VFs of job ${job}: ${(e as Error).message}`] };
  }
  return {
    released: r.released.map((v) => v.pci),
    problems: r.left.map((l) => `VF ${l.pci} of job ${job} still claimed: ${l.reason} (fix: ${l.fix})`),
  };
}
