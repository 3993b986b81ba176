// A job's view of the root node layer (user side): is this Slurm job prepared on this node, and what
// did root make for it (the record: run directory, bridge, MTU). Read-only: the record is root's.
import { readNodeConfig, type NodeConfig } from './config.js';
import { readRecord, helperSocket, type JobRecord } from './record.js';

export interface NodeLayer {
  job: string;
  node: string;
  cfg: NodeConfig;
  record: JobRecord;
  /** the node helper's socket on THIS node */
  socket: string;
}

/** The node layer of Slurm job `job` on node `node`, if the prolog prepared it (else undefined). */
export function nodeLayer(job: string, node: string, cfg: NodeConfig = readNodeConfig()): NodeLayer | undefined {
  const record = readRecord(cfg.stateDir, node, job);
  if (!record || !record.complete || !record.network) return undefined;
  return { job, node, cfg, record, socket: helperSocket(cfg.stateDir, node) };
}
