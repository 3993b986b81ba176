// The coordinator of one job: the Job (job.ts) and what the command line asks about jobs on this machine.
export { Job, checkpointExclude, type JobResult } from './job.js';
export type { JobOptions, VmState } from './context.js';
export { listJobs, listRecoverable, newJobId, type RecoveryState } from './rundir.js';
export { vmMac, STANDBY } from './interconnect.js';
