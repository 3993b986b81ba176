// Is a Slurm job still there? For telling stale claims (their job ended without an epilog releasing them:
// a crashed node, an epilog that failed) from live ones. One `scontrol show job -o ID` per job.
//
// Answers of Slurm 22.05 (test/fixtures/slurm/job-*.txt, captured on the lab):
//   running / pending / completing job     exit 0, JobState=RUNNING | PENDING | … (COMPLETING is not final)
//   ended job still in slurmctld's memory  exit 0, JobState=COMPLETED | CANCELLED | FAILED | … (final)
//   job purged (MinJobAge) or never was    exit 1, "slurm_load_jobs error: Invalid job id specified"
//   controller down                        exit 1, "… Unable to contact slurm controller …": unknown
// Only "final state" and "invalid job id" make a claim stale; anything else is 'unknown', never 'gone'.
import { isJobFinished, parseJobs } from '../slurm/scontrol.js';
import type { Runner } from './runner.js';

export type JobLiveness = { job: string; state: 'live' | 'gone' | 'unknown'; detail: string };

/** Classify scontrol's answer for one job (pure). */
export function classifyJob(job: string, code: number, stdout: string, stderr: string): JobLiveness {
  if (code === 0) {
    let state: string | undefined;
    try {
      state = parseJobs(stdout).find((j) => j.jobId === job)?.state;
    } catch {
      state = undefined;
    }
    if (!state) return { job, state: 'unknown', detail: 'scontrol printed no record of the job' };
    return { job, state: isJobFinished(state) ? 'gone' : 'live', detail: `JobState=${state}` };
  }
  if (/Invalid job id specified/i.test(stderr)) return { job, state: 'gone', detail: 'slurmctld knows no such job' };
  return { job, state: 'unknown', detail: `scontrol exited ${code}: ${stderr.trim().split('\n')[0] ?? ''}` };
}

export async function jobLiveness(run: Runner, scontrol: string, job: string): Promise<JobLiveness> {
  const r = await run([scontrol, 'show', 'job', '-o', job]);
  return classifyJob(job, r.code, r.stdout, r.stderr);
}
