// Slurm: pure codecs (hostlists, scontrol output, SLURM_* environment). No I/O here.
export { expandHostlist, compressHostlist, MAX_HOSTLIST_NAMES, type HostlistOpts } from './hostlist.js';
export {
  parseNodes, parseNodeRecord, parseNodeState, nodeCondition, parseJobs, parseJobRecord, parseKeyValues, splitRecords,
  isJobFinished, JOB_FINAL_STATES, NODE_BASE_STATES, NODE_STATE_FLAGS, NODE_STATE_SUFFIXES,
  type SlurmNode, type SlurmJob, type NodeState, type NodeCondition,
} from './scontrol.js';
export { parseSlurmEnv, expandCounts, inSlurmJob, type SlurmAllocation, type Env } from './env.js';
