// `symrun restart DIR [--from NAME] -- [PROGRAM ARGS]`: resume a job from one of its checkpoints in a new
// allocation (or with --local N on this machine). The checkpoint is verified (sha256 of every state file)
// before anything boots; an incomplete or corrupt one is refused. The VMs get the checkpoint's
// configuration (memory, vCPUs, devices, addresses); this invocation only says where they run.
import fs from 'node:fs';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { SymError, EXIT } from '../errors.js';
import { loadConfig, type ConfigOverrides } from '../config/index.js';
import type { SymrunConfig } from '../config/types.js';
import { CONFIG_DEFAULTS } from '../config/schema.js';
import { runJob } from './runjob.js';
import { pickCheckpoint } from '../coordinator/restart.js';

export const RESTART_HELP = `
DIR is a checkpoint directory (--checkpoint-dir of the job). Without --from, the newest complete
checkpoint in it whose files verify is used; --from names one (symrun checkpoints DIR lists them).
The job goes on from the moment the checkpoint was taken: its output since then comes again. New
checkpoints of the restarted job go to DIR too (--checkpoint-dir to change).

Examples:
  symrun restart /shared/ckpt                        inside sbatch/salloc: one VM per node, the rest spares
  symrun restart /shared/ckpt --from 3fa2c1-20261122T081500123Z --spares 1
  symrun restart /var/tmp/ckpt --local 3             on this machine (3 emulated hosts, one VM each)
  symrun restart /shared/ckpt -- ./ring 2000         checks that the checkpoint is of this command

Exit status: the application's, as for a run; 2 bad usage or a checkpoint that cannot be used
(incomplete, corrupt, of another command); 3 missing environment (e.g. the guest image); 4 symrun failed.`;

interface RestartFlags {
  from?: string; config?: string; local?: string; spares?: string; accel?: string; events?: string;
  checkpointDir?: string; checkpointInterval?: string; keep?: string; maxRestarts?: string; restartFromStart?: boolean;
  quiet?: boolean; json?: boolean;
}

export function registerRestart(program: Command, app: string[], setExit: (n: number) => void): void {
  program
    .command('restart <dir>')
    .description('resume a job from a checkpoint (in a new allocation, or --local N): every VM restored, devices plugged back, the MPI job goes on')
    .usage('DIR [options] [-- PROGRAM ARGS]')
    .option('--from <name>', 'the checkpoint to use (default: the newest complete one)')
    .option('-C, --config <file>', 'symrun.yaml for the site settings (bridge, Slurm polling); the VMs keep the checkpoint\'s')
    .option('--local <n>', 'emulate N hosts on this machine (N >= the checkpoint\'s VMs; needs root)')
    .option('--spares <n>', 'hosts held back as migration/restart targets')
    .addOption(new Option('--accel <accel>', 'VM accelerator').choices(['auto', 'kvm', 'tcg']))
    .option('--events <file>', 'append every restart/migration/checkpoint phase as a JSON line to FILE')
    .option('--checkpoint-dir <dir>', 'where the restarted job writes new checkpoints (default: DIR)')
    .option('--checkpoint-interval <time>', 'take a checkpoint this often (default: as the job had it)')
    .option('--keep <n>', 'complete checkpoints of the job kept (default: as the job had it)')
    .option('--max-restarts <n>', 'restarts after a node dies (default: as the job had it)')
    .option('-q, --quiet', 'no progress messages')
    .option('--json', 'print a JSON summary (job id, exit code, phase timings) on stderr at the end')
    .addHelpText('after', RESTART_HELP)
    .action(async (dir: string, f: RestartFlags) => {
      setExit(await restartCommand(dir, f, app));
    });
}

async function restartCommand(dirArg: string, f: RestartFlags, app: string[]): Promise<number> {
  const root = path.resolve(dirArg);
  if (!fs.existsSync(root)) throw new SymError('ESYM_CKPT_DIR', { message: `no such checkpoint directory: ${dirArg}`, field: 'DIR', value: dirArg, fix: 'give the --checkpoint-dir of the job (symrun checkpoints DIR lists what is in it)', exitCode: EXIT.usage });
  // the site settings and this invocation's options, validated like a run's
  const ov: ConfigOverrides = { local: f.local, spares: f.spares, accel: f.accel, checkpointDir: f.checkpointDir, checkpointInterval: f.checkpointInterval, keep: f.keep, maxRestarts: f.maxRestarts };
  const site = loadConfig({ file: f.config, overrides: ov });
  if (!f.quiet) process.stderr.write(`symrun: verifying checkpoint${f.from ? ` ${f.from}` : 's'} in ${root} (sha256 of every state file)\n`);
  const picked = await pickCheckpoint(root, { from: f.from });
  for (const r of picked.refused) process.stderr.write(`symrun: checkpoint ${r.name} not used: ${r.reason}\n`);
  const m = picked.manifest;
  if (app.length && JSON.stringify(app) !== JSON.stringify(m.command.app)) {
    throw new SymError('ESYM_RESTART_APP', {
      message: `checkpoint ${m.name} is of \`${m.command.app.join(' ')}\`, not \`${app.join(' ')}\``,
      field: 'PROGRAM', value: app.join(' '),
      fix: `leave the program out (the checkpoint knows it), or pick a checkpoint of this command with --from (symrun checkpoints ${root})`,
      exitCode: EXIT.usage,
    });
  }
  const base = m.config as SymrunConfig | undefined;
  if (!base || typeof base !== 'object' || !base.vm) throw new SymError('ESYM_CKPT_OLD', { message: `checkpoint ${m.name} has no job configuration`, fix: 'restart from a checkpoint taken by this version', exitCode: EXIT.usage });
  const local = f.local !== undefined ? site.local : 0;
  if (local && local < m.vms.length) {
    throw new SymError('ESYM_USAGE', { message: `checkpoint ${m.name} has ${m.vms.length} VMs; --local ${local} gives fewer hosts`, field: '--local', value: f.local, fix: `--local ${m.vms.length} (one VM per host; --spares N for spares)`, exitCode: EXIT.usage });
  }
  const ck = base.checkpoint ?? { keep: CONFIG_DEFAULTS.checkpointKeep };
  const config: SymrunConfig = {
    ...base,
    source: `checkpoint ${m.name}${f.config ? ` + ${site.source}` : ''}`,
    accel: f.accel !== undefined ? site.accel : base.accel,
    local: local ? m.vms.length : 0,
    spares: f.spares !== undefined ? site.spares : local ? local - m.vms.length : base.spares,
    network: { ...base.network, ...(site.network.bridge ? { bridge: site.network.bridge } : {}) },
    slurm: site.slurm,
    checkpoint: {
      ...ck,
      dir: f.checkpointDir !== undefined ? site.checkpoint.dir : root,
      ...(f.checkpointInterval !== undefined ? { intervalMs: site.checkpoint.intervalMs } : {}),
      keep: f.keep !== undefined ? site.checkpoint.keep : ck.keep,
      maxRestarts: f.maxRestarts !== undefined ? site.checkpoint.maxRestarts : ck.maxRestarts ?? CONFIG_DEFAULTS.maxRestarts,
      restartFromStart: false, // the beginning is not this job's any more
    },
  };
  const cwd = fs.existsSync(m.command.cwd) ? m.command.cwd : process.cwd();
  if (cwd !== m.command.cwd) {
    process.stderr.write(`symrun: the job's directory ${m.command.cwd} is not on this machine: files the job writes come back to ${cwd}\n`);
  }

  return runJob({ config, app: m.command.app, cwd, quiet: f.quiet, eventsFile: f.events, restore: picked },
    f.json ? (r) => ({ jobId: r.jobId, restartedFrom: { job: m.jobId, checkpoint: m.name, dir: picked.dir }, exitCode: r.exitCode, phasesMs: r.phases }) : undefined);
}
