// The host-side device layer for passthrough (vfio / SR-IOV): see manager.ts for the claim and release
// protocol, docs/passthrough.md for what a site configures and what runs as root.
export { DeviceManager, type ClaimRequest, type ClaimResult, type ClaimedVf, type ReleaseResult, type Listing, type CheckResult, type ManagerDeps } from './manager.js';
export { ClaimStore, type Claim, type ClaimStage } from './claims.js';
export { loadNodeConfig, requireNodeIndex, NODE_CONFIG_FILE, type NodeConfig, type DevicePool } from './nodeconfig.js';
export { FsDeviceIO, type DeviceIO } from './sysfs.js';
export { execRunner, type Runner, type RunResult } from './runner.js';
export { vfMac, vfNodeGuid, vfPortGuid, decodeVfMac, type VfIdentity } from './identity.js';
export { discoverPfs, readPf, readVf, readFunction, type PfRecord, type VfRecord, type PciFunction } from './discover.js';
export { resolvePools, selectPool, type PoolVf } from './pools.js';
export { checkJobId, checkUid, checkSlots } from './inputs.js';
export { jobLiveness, classifyJob, type JobLiveness } from './jobstate.js';
