// `symrun [run] [options] -- PROGRAM [ARGS...]`: the options of a run (mpirun's and srun's where they
// exist), the configuration they override, the placement, then the job runner.
import { Option, type Command } from 'commander';
import { SymError, EXIT } from '../errors.js';
import { loadConfig, configOrigin, type ConfigOverrides } from '../config/index.js';
import { resolvePlacement, describePlacement } from '../coordinator/placement.js';
import { runJob } from './runjob.js';
import { collect, placementNames, checkCpusPerTask } from './args.js';

interface RunFlags {
  config?: string; local?: string; spares?: string; accel?: string; image?: string; memory?: string; cpus?: string;
  np?: string; slotsPerVm?: string; nodes?: string; ntasksPerNode?: string; cpusPerTask?: string; tagOutput?: boolean; mpi?: string; mca?: string[]; subnet?: string; quiet?: boolean; json?: boolean; events?: string; quiesce?: string; migrationTls?: string; transport?: string;
  checkpointInterval?: string; checkpointDir?: string; keep?: string; maxRestarts?: string; restartFromStart?: boolean;
}

function overridesFrom(f: RunFlags): ConfigOverrides {
  const mca = (f.mca ?? []).map((kv) => {
    const i = kv.indexOf('=');
    if (i <= 0) throw new SymError('ESYM_USAGE', { message: `--mca needs a name and a value`, field: '--mca', value: kv, fix: '--mca NAME VALUE (or NAME=VALUE)', exitCode: EXIT.usage });
    return [kv.slice(0, i), kv.slice(i + 1)] as [string, string];
  });
  return {
    accel: f.accel, image: f.image, memory: f.memory, cpus: f.cpus, local: f.local, spares: f.spares, np: f.np,
    slotsPerVm: f.slotsPerVm, nodes: f.nodes, ntasksPerNode: f.ntasksPerNode, cpusPerTask: f.cpusPerTask, tagOutput: f.tagOutput, mpi: f.mpi, mca: mca.length ? mca : undefined, subnet: f.subnet, quiesce: f.quiesce, migrationTls: f.migrationTls, transport: f.transport,
    checkpointInterval: f.checkpointInterval, checkpointDir: f.checkpointDir, keep: f.keep,
    maxRestarts: f.maxRestarts, restartFromStart: f.restartFromStart,
  };
}

export async function runCommand(flags: RunFlags, app: string[], argv: readonly string[] = []): Promise<number> {
  const names = placementNames(argv);
  checkCpusPerTask(flags.cpusPerTask, names.cpusPerTask);
  if (flags.local !== undefined && /^\s*0+\s*$/.test(flags.local)) {
    // (local: 0 in a config file means "not local"; on the command line it can only be a mistake)
    throw new SymError('ESYM_USAGE', { message: '--local must be at least 1 (the number of hosts to emulate on this machine)', field: '--local', value: flags.local, fix: '--local N with N >= 1, or leave it out inside a Slurm allocation', exitCode: EXIT.usage });
  }
  const loaded = loadConfig({ file: flags.config, overrides: overridesFrom(flags), optionNames: names });
  // -N, -n, --ntasks-per-node, -c (and the allocation's SLURM_* defaults) -> VMs, slots, vCPUs: before any VM boots
  const placed = resolvePlacement(loaded, { env: process.env, origin: (p) => configOrigin(loaded, p) });
  const config = placed?.config ?? loaded;
  if (placed && !flags.quiet) {
    const asked = loaded.nodes !== undefined || loaded.mpi.ntasksPerNode !== undefined || loaded.mpi.cpusPerTask !== undefined;
    if (placed.placement.mode === 'slurm' || asked) process.stderr.write(`symrun: placement: ${describePlacement(placed.placement, placed.nodeNames)}\n`);
    for (const n of placed.placement.notes) process.stderr.write(`symrun: placement: ${n}\n`);
  }
  return runJob({ config, app, cwd: process.cwd(), quiet: flags.quiet, eventsFile: flags.events },
    flags.json ? (r) => ({ jobId: r.jobId, exitCode: r.exitCode, phasesMs: r.phases, firstOutputMs: r.firstOutputMs }) : undefined);
}

/** `run` (the default command): argv is what came before `--`, app what came after. */
export function registerRun(program: Command, argv: readonly string[], app: string[], setExit: (n: number) => void): void {
  const runOpts = (c: Command) =>
    c
      .option('-C, --config <file>', 'symrun.yaml to read (default: $SYMRUN_CONFIG)')
      .option('--local <n>', 'emulate N hosts on this machine (network namespaces; needs root), one VM each')
      .option('-N, --nodes <n>', 'hosts that run VMs, one VM each (as srun -N; Slurm default: the allocation minus --spares, nodes beyond -N become spares; outside Slurm: --local N)')
      .option('--spares <n>', 'hosts held back as migration/restart targets')
      .addOption(new Option('--accel <accel>', 'VM accelerator').choices(['auto', 'kvm', 'tcg']))
      .option('--image <dir>', "guest image directory, or 'auto'")
      .option('--memory <size>', 'guest RAM per VM (e.g. 512M, 2G)')
      .option('--cpus <n>', 'vCPUs per VM (default: ranks per VM x -c, else 1)')
      .option('-n, --np <n>', 'number of MPI ranks (also -np, --ntasks; default: VMs x --ntasks-per-node, else every slot); without ranks per VM, each VM gets ceil(N / VMs) slots')
      .option('--ntasks-per-node <n>', 'ranks per VM (as srun; also --npernode); -n may not exceed VMs x this')
      .option('-c, --cpus-per-task <n>', 'vCPUs per rank (as srun -c): VMs get ranks per VM x N vCPUs, mpirun --map-by slot:PE=N (the config file is -C/--config)')
      .option('--slots-per-vm <n>', 'ranks per VM, the same as --ntasks-per-node (default: ceil(-n / VMs), else vCPUs per VM / -c)')
      .option('--tag-output', 'prefix each output line with [vm,rank]<stdout|stderr>:')
      .option('--mpi <impl>', 'MPI that launches the program: openmpi | mpich | auto (default: from its libraries; docs/mpi.md)')
      .option('--mca <name=value>', 'Open MPI MCA parameter (also --mca NAME VALUE); repeatable', collect)
      .option('--subnet <cidr>', "private /24 for the job's network ('auto')")
      .option('--quiesce <adapter>', 'how migrations quiesce MPI traffic: freeze | failover (VMs get a standby NIC) | hooks')
      .option('--transport <tcp|rdma>', 'MPI transport over the interconnect: tcp (Open MPI pinned to TCP, never UCX) | rdma (UCX over verbs; Soft-RoCE in local VMs) (interconnect.transport)')
      .option('--migration-tls <on|off>', 'encrypt migration streams with a per-migration key (default on; migration.tls)')
      .option('--events <file>', 'append every migration/checkpoint phase as a JSON line to FILE')
      .option('--checkpoint-dir <dir>', 'directory for checkpoints (symrun checkpoint; Slurm: a path all nodes share)')
      .option('--checkpoint-interval <time>', 'take a checkpoint this often while the job runs (e.g. 10m)')
      .option('--keep <n>', 'complete checkpoints of the job kept in --checkpoint-dir (0 = all)')
      .option('--max-restarts <n>', 'restarts from the last checkpoint after a node dies (default 3; 0 = never)')
      .option('--restart-from-start', 'a node dies before the first checkpoint: run the job again from the beginning')
      .option('-q, --quiet', 'no progress messages')
      .option('--json', 'print a JSON summary (job id, exit code, phase timings) on stderr at the end');

  runOpts(program.command('run', { isDefault: true, hidden: true }).usage('[options] -- PROGRAM [ARGS...]')
    .description('run PROGRAM as an MPI job in VMs, one per host (the default command: symrun [options] -- PROGRAM is the same)')).action(async (flags: RunFlags) => {
    if (!app.length) throw new SymError('ESYM_USAGE', { message: 'no program given', fix: 'symrun [options] -- PROGRAM [ARGS...]   (see symrun --help)', exitCode: EXIT.usage });
    setExit(await runCommand(flags, app, argv));
  });
}
