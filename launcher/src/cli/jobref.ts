// Which job a command (status, exec, migrate, cancel, checkpoint) talks to, and how to reach it:
//   - a job on this machine (its run directory here): its control socket, directly;
//   - a Slurm job id of a job running elsewhere (the login node, another node): through Slurm, as its
//     owner: `srun --jobid J --overlap` starts `symrun control-proxy` on the job's batch host, which
//     opens the job's control socket there and relays the control protocol over srun's stdio. Slurm
//     authenticates the caller (munge) and refuses another user's job; symrun says so first, by name.
// Either way the control socket is opened with the job's control key (runDir/control.key, readable by
// the job's owner only), proven in the channel's handshake: the proxy does that on the batch host, and
// relays the messages unsealed over srun's stdio (Slurm's own connection, as the same user).
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { Duplex } from 'node:stream';
import { SymError, EXIT } from '../errors.js';
import { connectUnix, RpcPeer } from '../agent/channel.js';
import { listJobs } from '../coordinator/job/index.js';
import { readControlKey } from '../coordinator/job/control.js';
import { slurmCommand } from '../coordinator/hosts.js';

export interface JobRef {
  id: string;
  /** where it runs: 'here' (its control socket on this machine) or the Slurm batch host */
  where: string;
  connect(): Promise<RpcPeer>;
}

/** The job's control socket, with the key next to it. */
const openControl = (control: string) => connectUnix(control, { secret: readControlKey(path.dirname(control)) });
const local = (j: { id: string; control: string }): JobRef => ({ id: j.id, where: 'here', connect: async () => openControl(j.control) });

/** The job `id` (symrun's id, or a Slurm job id), or the only running job on this machine. */
export async function findJob(id?: string): Promise<JobRef> {
  const jobs = listJobs();
  if (id) {
    const j = jobs.find((x) => x.id === id || x.id === `slurm-${id}`);
    if (j) return local(j);
    if (/^[1-9][0-9]{0,9}$/.test(id)) return remoteJob(id);
    throw new SymError('ESYM_NO_JOB', { message: `no running symrun job ${id} on this machine`, field: '--job', value: id, fix: jobs.length ? `running jobs: ${jobs.map((x) => x.id).join(', ')}; or give a Slurm job id` : 'start one with `symrun --local N -- ./app`, or give the Slurm job id of a running symrun job', exitCode: EXIT.usage });
  }
  if (jobs.length === 1) return local(jobs[0]!);
  if (jobs.length === 0) throw new SymError('ESYM_NO_JOB', { message: 'no running symrun job found on this machine', fix: 'start one with `symrun --local N -- ./app`, or pass --job ID (symrun\'s or Slurm\'s job id)', exitCode: EXIT.usage });
  throw new SymError('ESYM_NO_JOB', { message: `${jobs.length} symrun jobs are running`, field: '--job', fix: `pick one with --job ID (${jobs.map((x) => x.id).join(', ')})`, exitCode: EXIT.usage });
}

/** A Slurm job running elsewhere: whose it is and where its batch script runs (squeue), then srun. */
async function remoteJob(slurmId: string): Promise<JobRef> {
  let line = '';
  try {
    line = (await slurmCommand(['squeue', '-h', '-j', slurmId, '-o', '%u|%B|%T'], 15_000)).trim().split('\n')[0] ?? '';
  } catch (e) {
    throw new SymError('ESYM_NO_JOB', { message: `no symrun job ${slurmId} on this machine, and Slurm cannot say where it runs: ${(e as Error).message}`, field: '--job', value: slurmId, exitCode: EXIT.usage });
  }
  const [user, batchHost, state] = line.split('|');
  if (!user || !batchHost) throw new SymError('ESYM_NO_JOB', { message: `Slurm has no running job ${slurmId}`, field: '--job', value: slurmId, fix: 'squeue -u $USER lists your jobs', exitCode: EXIT.usage });
  const me = os.userInfo().username;
  if (user !== me && process.getuid?.() !== 0) {
    throw new SymError('ESYM_NODE_DENIED', { message: `job ${slurmId} is ${user}'s: only its owner can look at or control it`, field: '--job', value: slurmId, fix: 'give one of your own jobs (squeue -u $USER)', exitCode: EXIT.usage });
  }
  if (state !== 'RUNNING') throw new SymError('ESYM_JOB_STATE', { message: `Slurm job ${slurmId} is ${state}, not RUNNING`, field: '--job', value: slurmId, exitCode: EXIT.usage });
  return {
    id: slurmId,
    where: batchHost,
    connect: () => viaSrun(slurmId, batchHost),
  };
}

function symrunBin(): string {
  return path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..', '..', 'bin', 'symrun');
}

/** The control protocol over `srun --jobid J --overlap ... symrun control-proxy` (stdio). */
function viaSrun(slurmId: string, host: string): Promise<RpcPeer> {
  return new Promise((resolve, reject) => {
    const argv = ['--jobid', slurmId, '--overlap', '-N1', '-n1', '-w', host, '--quiet', '--job-name=symrun-control', symrunBin(), 'control-proxy', '--slurm-job', slurmId];
    const c = spawn('srun', argv, { stdio: ['pipe', 'pipe', 'pipe'], env: process.env });
    let err = '';
    c.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-4000); });
    const duplex = Duplex.from({ readable: c.stdout!, writable: c.stdin! });
    const peer = new RpcPeer(duplex);
    peer.name = `job ${slurmId} on ${host}`;
    c.once('error', (e) => reject(new SymError('ESYM_SLURM_COMMAND', { message: `srun not found: ${e.message}`, fix: 'run this on a node or login node with the Slurm client commands', exitCode: EXIT.environment })));
    c.once('exit', (code) => {
      if (!ready) reject(new SymError(/denied|Invalid job/i.test(err) ? 'ESYM_NODE_DENIED' : 'ESYM_JOB_UNREACHABLE', { message: `cannot reach job ${slurmId} on ${host} through Slurm (srun exit ${code}): ${err.trim().split('\n').slice(-2).join('; ')}`, field: '--job', value: slurmId, exitCode: /denied|Invalid job/i.test(err) ? EXIT.usage : EXIT.runtime }));
    });
    peer.on('close', () => c.kill('SIGTERM'));
    let ready = false;
    // the proxy says it has opened the job's control socket before anything else
    peer.once('event', (name: string) => {
      if (name === 'proxy.ready') { ready = true; resolve(peer); }
    });
    peer.start();
  });
}

/**
 * `symrun control-proxy --slurm-job J` (started by viaSrun on the batch host, as the job's owner):
 * open the job's control socket here and relay the control protocol over stdin/stdout.
 */
export async function controlProxy(slurmId: string): Promise<number> {
  const j = listJobs().find((x) => x.id === `slurm-${slurmId}`);
  if (!j || !fs.existsSync(j.control)) throw new SymError('ESYM_NO_JOB', { message: `no symrun job of Slurm job ${slurmId} on ${os.hostname()}`, exitCode: EXIT.usage });
  const job = await openControl(j.control);
  const out = new RpcPeer(Duplex.from({ readable: process.stdin, writable: process.stdout }));
  out.relayTo((m) => job.send(m));
  job.relayTo((m) => out.send(m));
  out.notify('proxy.ready', {});
  await new Promise<void>((resolve) => { job.on('close', () => resolve()); out.on('close', () => resolve()); });
  job.close();
  return 0;
}
