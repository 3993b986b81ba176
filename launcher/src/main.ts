// symrun command line: the composition root. One file per command in cli/; everything after `--` is the
// application (or the command for `exec`).
import { Command } from 'commander';
import { EXIT, renderError, isSymError } from './errors.js';
import { findJob } from './cli/jobref.js';
import { normalizeArgs } from './cli/args.js';
import { registerRun } from './cli/run.js';
import { registerExec } from './cli/exec.js';
import { registerStatus } from './cli/status.js';
import { registerRecover } from './cli/recover.js';
import { registerImage, registerConfig } from './cli/image.js';
import { registerMigrate } from './cli/migrate.js';
import { registerCheckpoint } from './cli/checkpoint.js';
import { registerRestart } from './cli/restart.js';
import { registerWatchd } from './cli/watchd.js';
import { registerNode } from './cli/node.js';
import { registerNodeDevices } from './cli/node-devices.js';
import { registerReport } from './cli/report.js';

export { normalizeArgs, typedAs } from './cli/args.js';

const EXAMPLES = `
Examples:
  symrun --local 3 -- ./ring 200                 3 emulated hosts, one VM each, ranks spread over them
  symrun --local 3 -np 6 --tag-output -- ./app   6 ranks, output lines prefixed with [vm,rank]
  symrun --config symrun.yaml -- ./app           configured from YAML (see docs/config.md; -C FILE)
  symrun -N 2 --ntasks-per-node 4 -c 2 -- ./app  in sbatch: VMs on 2 nodes, 4 ranks each, 2 vCPUs per rank
                                                 (srun's placement options; docs/placement.md)
  symrun --local 2 --mca btl_tcp_eager_limit 65536 -- hpcc
  symrun run --help                              every option of a run
  symrun image build                             build (or reuse) the guest image
  symrun exec vm1 -- ip addr                     run a command in a guest of the running job
  symrun exec -it vm2 -- sh                      interactive shell in a guest
  symrun status --json                           the running job: hosts, VMs, phases
  symrun --local 3 --spares 1 -- ./app           a spare host to migrate to
  symrun migrate vm2 [--to h4]                   live-migrate a VM of the running job
  symrun cancel vm2                              abort that migration (rolls back)
  symrun checkpoint [--dir DIR] [--keep N]       save every VM of the running job (docs/checkpoint.md)
  symrun checkpoints DIR                         list checkpoints: complete / incomplete / corrupt
  symrun restart DIR [--from NAME] --local 3     resume a job from its checkpoint (new allocation)
  symrun report ev.jsonl [-o timeline.svg]       a job's --events as a timeline picture and a summary

Exit status: the application's (first non-zero rank; 128+N for a signal); 127 if the program is
missing; 2 for bad usage or configuration; 3 for a missing part of the environment; 4 for a
failure of symrun itself.`;

/**
 * The whole command tree (every command, option, help text); nothing runs until it parses. `argv`: the
 * arguments before `--`, `right`: after it; `setExit` receives a command's exit status. The man pages
 * are rendered from this tree too (cli/manpage.ts, scripts/gen-manpage.mjs).
 */
export function buildProgram(argv: readonly string[] = [], right: string[] = [], setExit: (n: number) => void = () => {}): Command {
  const program = new Command('symrun')
    .description('Run MPI jobs in VMs with passthrough interconnects; migrate, checkpoint and restart them')
    .usage('[options] -- PROGRAM [ARGS...]')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showSuggestionAfterError(true);
  program.addHelpText('after', EXAMPLES);

  registerRun(program, argv, right, setExit);
  registerImage(program);
  registerExec(program, right, setExit);
  registerStatus(program);
  registerMigrate(program, findJob, setExit);
  registerCheckpoint(program, findJob, setExit);
  registerRestart(program, right, setExit);
  registerWatchd(program, setExit);
  registerNode(program, setExit);
  registerNodeDevices(program, setExit);
  registerRecover(program, setExit);
  registerConfig(program);
  registerReport(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const dd = argv.indexOf('--');
  const left = normalizeArgs(dd >= 0 ? argv.slice(0, dd) : argv);
  const right = dd >= 0 ? argv.slice(dd + 1) : [];
  const json = left.includes('--json');
  let exit = 0;
  const program = buildProgram(dd >= 0 ? argv.slice(0, dd) : argv, right, (n) => { exit = n; });

  try {
    await program.parseAsync(left, { from: 'user' });
  } catch (e) {
    const ce = e as { code?: string; exitCode?: number };
    if (ce.code === 'commander.helpDisplayed' || ce.code === 'commander.version' || ce.code === 'commander.help') return 0;
    if (typeof ce.code === 'string' && ce.code.startsWith('commander.')) return EXIT.usage; // commander already printed the reason
    process.stderr.write(renderError(e, { json, debug: !!process.env.SYMRUN_DEBUG }) + '\n');
    return isSymError(e) ? e.exitCode : EXIT.runtime;
  }
  return exit;
}
