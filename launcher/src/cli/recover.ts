// `symrun recover`: a new coordinator for a job whose symrun was killed while its host agents wait; and the
// hidden `control-proxy` that `--job <Slurm id>` starts on the batch host through srun (cli/jobref.ts).
import type { Command } from 'commander';
import { SymError, EXIT } from '../errors.js';
import { PROTOCOL_DEFAULTS } from '../defaults.js';
import { listRecoverable } from '../coordinator/job/index.js';
import { checkCarried } from '../coordinator/job/carry.js';
import { runJob } from './runjob.js';
import { controlProxy } from './jobref.js';

export function registerRecover(program: Command, setExit: (n: number) => void): void {
  program
    .command('recover')
    .description("take over a job whose symrun was killed: re-attach to its VMs, finish an interrupted migration from the journal, stream the job's output to the end")
    .option('--job <id>', 'job id (default: the only recoverable job)')
    .option('-q, --quiet', 'no progress messages')
    .option('--json', 'print a JSON summary on stderr at the end')
    .addHelpText('after', `
Host agents keep a job's VMs for ${PROTOCOL_DEFAULTS.agentGraceMs / 1000} s after its coordinator is gone; recover within that time.
Exit status: the application's, as for a run.`)
    .action(async (f: { job?: string; quiet?: boolean; json?: boolean }) => {
      const all = listRecoverable();
      const pick = f.job ? all.find((j) => j.id === f.job) : all.length === 1 ? all[0] : undefined;
      if (!pick) {
        throw new SymError('ESYM_NO_JOB', {
          message: f.job ? `job ${f.job} cannot be recovered (its coordinator runs, or it left no recovery record)` : all.length ? `${all.length} jobs can be recovered` : 'no job to recover on this machine',
          field: f.job ? '--job' : undefined, value: f.job,
          fix: all.length ? `pick one with --job ID (${all.map((j) => j.id).join(', ')})` : 'recover works for a --local job whose symrun died while its host agents still wait',
          exitCode: EXIT.usage,
        });
      }
      if (!pick.state) throw pick.problem;
      const st = pick.state;
      // as a run: Ctrl-C / SIGTERM stop the job and remove its VMs (files copied back first); events go
      // on into the job's --events file
      setExit(await runJob(
        { config: st.config, app: st.app, cwd: st.cwd, jobId: st.jobId, quiet: f.quiet, eventsFile: checkCarried(st.carry).carried?.eventsFile },
        f.json ? (r) => ({ jobId: r.jobId, exitCode: r.exitCode, phasesMs: r.phases }) : undefined,
        (job) => job.recover(st),
      ));
    });

  program
    .command('control-proxy', { hidden: true })
    .description('relay the control protocol of a job on this node over stdio (started by symrun --job through srun)')
    .requiredOption('--slurm-job <id>', 'the Slurm job id')
    .action(async (f: { slurmJob: string }) => { setExit(await controlProxy(f.slurmJob)); });

}
