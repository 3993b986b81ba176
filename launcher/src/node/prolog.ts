// The Slurm prolog's work for a job that asks for symrun (root, on every node of the allocation: the
// prolog runs with PrologFlags=Alloc): the job's run directory (owned by the user, 0700), the job's
// private network (network.ts), the job's VFs if the node lends them (vfs.ts), written down first (record.ts). Everything from Slurm's own
// environment (slurmd sets SLURM_JOB_ID/UID/GID, not the user) and the node configuration.
import fs from 'node:fs';
import path from 'node:path';
import dns from 'node:dns/promises';
import { SymError, EXIT } from '../errors.js';
import type { NodeConfig } from './config.js';
import { checkJobId } from './names.js';
import { readRecord, writeRecord, proofDir, type JobRecord } from './record.js';
import { createJobNetwork } from './network.js';
import { tableName } from './nft.js';
import { ensureProofDir } from './proof.js';
import { claimJobVfs, realDeviceManager, type DeviceManagerFactory } from './vfs.js';

export interface SlurmJobEnv { job: string; uid: number; gid: number; user: string; node: string; comment: string }

/** The job as slurmd describes it to its prolog/epilog. */
export function jobEnv(env: NodeJS.ProcessEnv, cfg: NodeConfig): SlurmJobEnv {
  const job = checkJobId(String(env.SLURM_JOB_ID ?? env.SLURM_JOBID ?? ''));
  const num = (k: string) => {
    const v = env[k];
    if (!v || !/^[0-9]{1,10}$/.test(v)) throw new SymError('ESYM_BAD_SLURM_ENV', { message: `${k}=${JSON.stringify(v)} is not a number`, field: k, value: v, exitCode: EXIT.environment });
    return Number(v);
  };
  const node = cfg.nodeName ?? env.SLURMD_NODENAME ?? '';
  if (!/^[A-Za-z0-9_.-]{1,63}$/.test(node)) throw new SymError('ESYM_BAD_SLURM_ENV', { message: `SLURMD_NODENAME=${JSON.stringify(node)} is not a node name`, field: 'SLURMD_NODENAME', value: node, exitCode: EXIT.environment });
  return { job, uid: num('SLURM_JOB_UID'), gid: num('SLURM_JOB_GID'), user: String(env.SLURM_JOB_USER ?? ''), node, comment: String(env.SLURM_JOB_COMMENT ?? '') };
}

/** Does this job ask for symrun? (the site's choice: every job, or jobs whose --comment says so) */
export function wantsSymrun(cfg: NodeConfig, e: SlurmJobEnv): boolean {
  return cfg.prepare === 'all' || /(^|[^a-z0-9])symrun([^a-z0-9]|$)/i.test(e.comment);
}

export function jobRunDir(cfg: NodeConfig, job: string): string {
  return path.join(cfg.runtimeDir, `slurm-${checkJobId(job)}`);
}

/** This node's address on the underlay: SYMRUN_NODE_ADDR, else its name resolved (/etc/hosts, DNS). */
export async function nodeAddress(cfg: NodeConfig, node: string): Promise<string> {
  if (cfg.nodeAddr) return cfg.nodeAddr;
  try {
    return (await dns.lookup(node, { family: 4 })).address;
  } catch (e) {
    throw new SymError('ESYM_NODE_SETUP', { message: `cannot resolve this node's name ${node}: ${(e as Error).message}`, fix: 'set SYMRUN_NODE_ADDR in /etc/symrun/node.conf', exitCode: EXIT.environment });
  }
}

export interface PrologResult { prepared: boolean; record?: JobRecord; why?: string }

export async function prolog(cfg: NodeConfig, e: SlurmJobEnv, devices: DeviceManagerFactory = realDeviceManager): Promise<PrologResult> {
  if (!wantsSymrun(cfg, e)) return { prepared: false, why: `job ${e.job} does not ask for symrun (--comment=symrun)` };
  const rec: JobRecord = readRecord(cfg.stateDir, e.node, e.job) ?? {
    v: 1, job: e.job, uid: e.uid, gid: e.gid, user: e.user, node: e.node, createdAt: new Date().toISOString(),
    runDir: jobRunDir(cfg, e.job), attached: [], complete: false,
  };
  if (rec.uid !== e.uid) throw new SymError('ESYM_NODE_SETUP', { message: `job ${e.job} has a record on ${e.node} for uid ${rec.uid}, not ${e.uid}`, exitCode: EXIT.environment });
  writeRecord(cfg.stateDir, rec);
  ensureProofDir(proofDir(cfg.stateDir, e.node));
  // the run directory: root creates it in its own directory and hands it over (never follows a link)
  fs.mkdirSync(cfg.runtimeDir, { recursive: true, mode: 0o755 });
  const rt = fs.lstatSync(cfg.runtimeDir);
  if (!rt.isDirectory() || rt.uid !== 0 || (rt.mode & 0o022) !== 0) throw new SymError('ESYM_NODE_SETUP', { message: `${cfg.runtimeDir} must be a root-owned directory writable only by root`, exitCode: EXIT.environment });
  try { fs.mkdirSync(rec.runDir, { mode: 0o700 }); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; }
  const st = fs.lstatSync(rec.runDir);
  if (!st.isDirectory()) throw new SymError('ESYM_NODE_SETUP', { message: `${rec.runDir} exists and is not a directory`, exitCode: EXIT.environment });
  fs.chownSync(rec.runDir, e.uid, e.gid);
  fs.chmodSync(rec.runDir, 0o700);
  const local = await nodeAddress(cfg, e.node);
  rec.network = await createJobNetwork(cfg, e.job, local);
  rec.nftTable = tableName(e.job);
  // the job's VFs (node/vfs.ts): the device manager's claim files are their own record for the epilog
  if (cfg.vfSlots > 0) rec.vfs = await claimJobVfs(devices, e, cfg.vfSlots);
  rec.complete = true;
  writeRecord(cfg.stateDir, rec);
  return { prepared: true, record: rec };
}
