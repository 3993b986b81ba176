// The coordinator of one job: the Job (job.ts) and what the command line asks about jobs on this machine.
export { Job, type JobResult } from './job.js';
export { checkpointExclude } from './staging.js';
export type { JobOptions, VmState } from './context.js';
export { listJobs, listRecoverable, newJobId, type RecoveryState } from './rundir.js';
export { vmMac, STANDBY } from './interconnect.js';
