// What Slurm says about a job, as root sees it (scontrol from the node configuration): its owner, its
// state and its nodes. The node helper trusts a caller's claim about a job only if Slurm agrees.
import { SymError, EXIT } from '../errors.js';
import { parseJobs } from '../slurm/scontrol.js';
import type { NodeConfig } from './config.js';
import { sys } from './sys.js';

export interface JobFacts { job: string; uid: number; user: string; state: string; nodes: string[] }

/** "alice(1001)" -> { user: alice, uid: 1001 } */
export function parseUserId(s: string | undefined): { user: string; uid: number } | undefined {
  const m = /^([^()\s]*)\((\d+)\)$/.exec(s ?? '');
  return m ? { user: m[1]!, uid: Number(m[2]) } : undefined;
}

export async function jobFacts(cfg: NodeConfig, job: string): Promise<JobFacts> {
  const r = await sys(cfg.scontrol, ['show', 'job', '-o', job], { timeoutMs: 15_000 });
  const j = r.ok ? parseJobs(r.stdout)[0] : undefined;
  const owner = parseUserId(j?.fields.UserId);
  if (!j || !owner || j.jobId !== job) {
    throw new SymError('ESYM_NODE_DENIED', { message: `Slurm does not know job ${job}${r.ok ? '' : `: ${r.stderr.trim()}`}`, field: 'job', value: job, exitCode: EXIT.usage });
  }
  return { job, uid: owner.uid, user: owner.user, state: j.state, nodes: j.nodeList };
}
