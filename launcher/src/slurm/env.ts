// The allocation a batch script / step sees, from SLURM_* environment variables: a pure codec.
//
// Names as set by Slurm 22.05 (man sbatch "OUTPUT ENVIRONMENT VARIABLES"; captured in
// test/fixtures/slurm/env-*.txt). Fallbacks: node prologs see SLURM_NODELIST, not SLURM_JOB_NODELIST
// (docs/lab-notes.md; test/fixtures/slurm/env-prolog-N3.txt); SLURM_NNODES and SLURM_JOB_NUM_NODES are the same number.
// CAUTION (measured): after a node of a `--no-kill` job fails, SLURM_JOB_NODELIST stays stale; ask
// `scontrol show job` (parseJobs) for the current node list.
import { SymError, EXIT } from '../errors.js';
import { expandHostlist, MAX_HOSTLIST_NAMES } from './hostlist.js';

export interface SlurmAllocation {
  jobId: string;
  /** expanded SLURM_JOB_NODELIST (or SLURM_NODELIST) */
  nodeList: string[];
  /** SLURM_NNODES / SLURM_JOB_NUM_NODES (= nodeList.length) */
  numNodes: number;
  /** SLURM_NTASKS (only with -n / --ntasks-per-node) */
  numTasks?: number;
  /** SLURM_NTASKS_PER_NODE (only with --ntasks-per-node); of a compressed list ("2(x3)") the largest count */
  ntasksPerNode?: number;
  /** SLURM_CPUS_PER_TASK (only with -c) */
  cpusPerTask?: number;
  /** SLURM_TASKS_PER_NODE expanded to one count per node ("2(x3),1" → [2,2,2,1]) */
  tasksPerNode?: number[];
  /** SLURM_JOB_CPUS_PER_NODE expanded to one count per node */
  cpusPerNode?: number[];
  /** SLURM_STEP_ID when inside a step */
  stepId?: string;
  /** SLURMD_NODENAME: the node this process runs on */
  nodeName?: string;
  clusterName?: string;
  partition?: string;
  submitDir?: string;
}

export type Env = Readonly<Record<string, string | undefined>>;

function badEnv(name: string, value: string | undefined, why: string, fix?: string): SymError {
  return new SymError('ESYM_BAD_SLURM_ENV', {
    message: `${name} ${why}`,
    field: name,
    value,
    fix: fix ?? 'run symrun inside a Slurm allocation (sbatch / salloc) and do not override SLURM_* variables',
    exitCode: EXIT.environment,
  });
}

function posInt(env: Env, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (!/^[0-9]+$/.test(v.trim()) || Number(v) < 1) throw badEnv(name, v, 'must be a whole number of at least 1');
  if (!Number.isSafeInteger(Number(v.trim()))) throw badEnv(name, v, `is too large (at most ${Number.MAX_SAFE_INTEGER})`);
  return Number(v.trim());
}

/**
 * Expand Slurm's compressed count lists: "2(x3),1" → [2,2,2,1] (SLURM_TASKS_PER_NODE,
 * SLURM_JOB_CPUS_PER_NODE).
 */
export function expandCounts(value: string, name = 'SLURM_TASKS_PER_NODE'): number[] {
  const out: number[] = [];
  for (const part of value.split(',')) {
    const m = /^\s*([0-9]+)(?:\(x([0-9]+)\))?\s*$/.exec(part);
    if (!m) throw badEnv(name, value, `has "${part}", expected counts like "2(x3),1"`);
    const n = Number(m[1]);
    const times = m[2] === undefined ? 1 : Number(m[2]);
    if (times < 1 || times > 1_000_000) throw badEnv(name, value, `has a bad repeat count in "${part}"`);
    if (out.length + times > MAX_HOSTLIST_NAMES) {
      throw badEnv(name, value, `expands to more than ${MAX_HOSTLIST_NAMES} entries (one per node)`, 'check the repeat counts "(xN)" for a typo; there is one entry per node of the job');
    }
    for (let i = 0; i < times; i++) out.push(n);
  }
  return out;
}

/** True when the environment is that of a Slurm job (batch script, salloc shell or step). */
export function inSlurmJob(env: Env = process.env): boolean {
  return Boolean(env.SLURM_JOB_ID || env.SLURM_JOBID);
}

/**
 * Read the allocation from SLURM_* variables. Throws ESYM_NOT_IN_SLURM outside a job,
 * ESYM_BAD_SLURM_ENV when the variables contradict each other or are malformed.
 */
export function parseSlurmEnv(env: Env = process.env): SlurmAllocation {
  const jobId = env.SLURM_JOB_ID || env.SLURM_JOBID;
  if (!jobId) {
    throw new SymError('ESYM_NOT_IN_SLURM', {
      message: 'not inside a Slurm job: SLURM_JOB_ID is not set',
      field: 'SLURM_JOB_ID',
      fix: 'submit the job with sbatch (or run inside salloc); use --local N to run without Slurm',
      exitCode: EXIT.usage,
    });
  }
  if (!/^[0-9]+(_[0-9]+)?$/.test(jobId)) throw badEnv('SLURM_JOB_ID', jobId, 'is not a job id');
  const listName = env.SLURM_JOB_NODELIST !== undefined ? 'SLURM_JOB_NODELIST' : 'SLURM_NODELIST';
  const listValue = env[listName];
  if (listValue === undefined || listValue.trim() === '') throw badEnv(listName, listValue, 'is not set or empty');
  const nodeList = expandHostlist(listValue, { field: listName });
  if (nodeList.length === 0) throw badEnv(listName, listValue, 'names no node');
  const nnName = env.SLURM_NNODES !== undefined ? 'SLURM_NNODES' : 'SLURM_JOB_NUM_NODES';
  const numNodes = posInt(env, nnName) ?? nodeList.length;
  if (numNodes !== nodeList.length) {
    throw badEnv(nnName, env[nnName], `says ${numNodes} nodes but ${listName}=${listValue} names ${nodeList.length}`);
  }
  const alloc: SlurmAllocation = { jobId, nodeList, numNodes };
  const numTasks = posInt(env, 'SLURM_NTASKS') ?? posInt(env, 'SLURM_NPROCS');
  if (numTasks !== undefined) alloc.numTasks = numTasks;
  const ntpnRaw = env.SLURM_NTASKS_PER_NODE;
  if (ntpnRaw !== undefined && ntpnRaw.trim() !== '') {
    // normally one number; accepted compressed too ("2(x3)"), like SLURM_TASKS_PER_NODE
    const counts = expandCounts(ntpnRaw, 'SLURM_NTASKS_PER_NODE');
    if (counts.some((c) => c < 1)) throw badEnv('SLURM_NTASKS_PER_NODE', ntpnRaw, 'must be a whole number of at least 1');
    alloc.ntasksPerNode = counts.reduce((a, b) => Math.max(a, b), 0);
  }
  const cpt = posInt(env, 'SLURM_CPUS_PER_TASK');
  if (cpt !== undefined) alloc.cpusPerTask = cpt;
  for (const [name, key] of [['SLURM_TASKS_PER_NODE', 'tasksPerNode'], ['SLURM_JOB_CPUS_PER_NODE', 'cpusPerNode']] as const) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    const counts = expandCounts(v, name);
    if (counts.length !== nodeList.length) {
      throw badEnv(name, v, `has ${counts.length} entries for ${nodeList.length} nodes (${listName}=${listValue})`);
    }
    alloc[key] = counts;
  }
  if (env.SLURM_STEP_ID) alloc.stepId = env.SLURM_STEP_ID;
  if (env.SLURMD_NODENAME) alloc.nodeName = env.SLURMD_NODENAME;
  if (env.SLURM_CLUSTER_NAME) alloc.clusterName = env.SLURM_CLUSTER_NAME;
  if (env.SLURM_JOB_PARTITION) alloc.partition = env.SLURM_JOB_PARTITION;
  if (env.SLURM_SUBMIT_DIR) alloc.submitDir = env.SLURM_SUBMIT_DIR;
  return alloc;
}
