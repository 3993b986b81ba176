// Running a Job from the command line (`symrun -- app`, `symrun restart`, `symrun recover`): the first
// SIGINT/SIGTERM/SIGHUP stops the job and removes its VMs (teardown), a second one exits at once; the
// exit code is the job's. `start`: how the job begins (a run by default; recover takes one over).
import { SymError, isSymError } from '../errors.js';
import { Job, type JobOptions, type JobResult } from '../coordinator/job/index.js';

export async function runJob(opts: Omit<JobOptions, 'signal'>, summary?: (r: JobResult) => Record<string, unknown>, start: (job: Job) => Promise<JobResult> = (job) => job.run()): Promise<number> {
  const ac = new AbortController();
  let signals = 0;
  const onSig = (sig: NodeJS.Signals) => {
    if (++signals === 1) {
      process.stderr.write(`\nsymrun: ${sig}: stopping the job and removing its VMs (again to force)\n`);
      ac.abort(new SymError('ESYM_INTERRUPTED', { message: `interrupted by ${sig}`, exitCode: sig === 'SIGINT' ? 130 : 143 }));
    } else process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSig);
  const job = new Job({ ...opts, signal: ac.signal });
  try {
    const r = await start(job);
    if (summary) process.stderr.write(JSON.stringify(summary(r)) + '\n');
    return r.exitCode;
  } catch (e) {
    if (ac.signal.aborted && isSymError(ac.signal.reason)) {
      process.stderr.write(`symrun: stopped (${(ac.signal.reason as SymError).message}); nothing left behind\n`);
      return (ac.signal.reason as SymError).exitCode;
    }
    throw e;
  }
}
