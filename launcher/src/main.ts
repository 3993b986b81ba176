// symrun command line. Everything after `--` is the application (or the command for `exec`).
import os from 'node:os';
import { Command, Option } from 'commander';
import { SymError, EXIT, renderError, isSymError } from './errors.js';
import { PROTOCOL_DEFAULTS } from './defaults.js';
import { loadConfig, describeConfig, configOrigin, type ConfigOverrides, type LoadConfigOptions } from './config/index.js';
import { resolvePlacement, describePlacement } from './coordinator/placement.js';
import { Job, listRecoverable } from './coordinator/job/index.js';
import { findJob, controlProxy } from './cli/jobref.js';
import { buildImage, resolveImage } from './image/index.js';
import { registerMigrate } from './cli/migrate.js';
import { registerCheckpoint } from './cli/checkpoint.js';
import { registerRestart } from './cli/restart.js';
import { registerWatchd } from './cli/watchd.js';
import { registerNode } from './cli/node.js';
import { registerNodeDevices } from './cli/node-devices.js';
import { runJob } from './cli/runjob.js';

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
  symrun migrate vm2 [--to h4] [--mode postcopy] live-migrate a VM of the running job
  symrun cancel vm2                              abort that migration (rolls back)
  symrun checkpoint [--dir DIR] [--keep N]       save every VM of the running job (docs/checkpoint.md)
  symrun checkpoints DIR                         list checkpoints: complete / incomplete / corrupt
  symrun restart DIR [--from NAME] --local 3     resume a job from its checkpoint (new allocation)

Exit status: the application's (first non-zero rank; 128+N for a signal); 127 if the program is
missing; 2 for bad usage or configuration; 3 for a missing part of the environment; 4 for a
failure of symrun itself.`;

/** Aliases normalizeArgs rewrites: mpirun's and srun's spellings of symrun's options. */
const ALIASES: Readonly<Record<string, string>> = {
  '-np': '--np',
  '--ntasks': '--np',
  '-npernode': '--ntasks-per-node',
  '--npernode': '--ntasks-per-node',
};

/**
 * mpirun/srun habits: -np N, --mca NAME VALUE, -n N, --ntasks N, -npernode/--npernode N (= --ntasks-per-node;
 * also as NAME=VALUE). -N/--nodes, --ntasks-per-node and -c/--cpus-per-task are symrun's own options.
 */
export function normalizeArgs(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (ALIASES[name]) out.push(eq > 0 ? `${ALIASES[name]}${a.slice(eq)}` : ALIASES[name]!);
    else if ((a === '--mca' || a === '-mca') && i + 2 < argv.length && !argv[i + 1]!.includes('=')) {
      out.push('--mca', `${argv[i + 1]}=${argv[i + 2]}`);
      i += 2;
    } else out.push(a);
  }
  return out;
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** The spelling of an option the user typed last (before `--`), e.g. '-c' or '--cpus-per-task'. */
export function typedAs(argv: readonly string[], spellings: readonly string[]): string | undefined {
  let found: string | undefined;
  for (const a of argv) {
    if (a === '--') break;
    for (const s of spellings) {
      const short = /^-[A-Za-z]$/.test(s);
      if (a === s || a.startsWith(`${s}=`) || (short && new RegExp(`^${s}[0-9]`).test(a))) found = s;
    }
  }
  return found;
}

/** What the user typed for the placement options, so errors name them as typed. */
function placementNames(argv: readonly string[]): NonNullable<LoadConfigOptions['optionNames']> {
  const typed = {
    np: typedAs(argv, ['-n', '-np', '--np', '--ntasks']),
    nodes: typedAs(argv, ['-N', '--nodes']),
    ntasksPerNode: typedAs(argv, ['--ntasks-per-node', '--npernode', '-npernode']),
    cpusPerTask: typedAs(argv, ['-c', '--cpus-per-task']),
  };
  return Object.fromEntries(Object.entries(typed).filter(([, v]) => v !== undefined));
}

/** -c was the short form of --config: a value that is no number gets a message saying what -c is now. */
function checkCpusPerTask(value: string | undefined, typed = '-c', always = false): void {
  if (value === undefined || (!always && /^\s*[0-9]+\s*$/.test(value))) return; // numbers: validated (>= 1) with the configuration
  throw new SymError('ESYM_USAGE', {
    message: `${typed === '-c' ? '-c is --cpus-per-task (as in srun), a whole number of vCPUs per rank' : `${typed} must be a whole number of vCPUs per rank (as srun -c)`}, not ${JSON.stringify(value)}; the configuration file is --config FILE (-C FILE)`,
    field: typed,
    value,
    fix: /\.ya?ml$|\//i.test(value) ? `symrun --config ${value} ...` : `${typed} N with N >= 1, e.g. ${typed} 2`,
    exitCode: EXIT.usage,
  });
}

interface RunFlags {
  config?: string; local?: string; spares?: string; accel?: string; image?: string; memory?: string; cpus?: string;
  np?: string; slotsPerVm?: string; nodes?: string; ntasksPerNode?: string; cpusPerTask?: string; tagOutput?: boolean; mca?: string[]; subnet?: string; quiet?: boolean; json?: boolean; events?: string; quiesce?: string; migrationTls?: string;
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
    slotsPerVm: f.slotsPerVm, nodes: f.nodes, ntasksPerNode: f.ntasksPerNode, cpusPerTask: f.cpusPerTask, tagOutput: f.tagOutput, mca: mca.length ? mca : undefined, subnet: f.subnet, quiesce: f.quiesce, migrationTls: f.migrationTls,
    checkpointInterval: f.checkpointInterval, checkpointDir: f.checkpointDir, keep: f.keep,
    maxRestarts: f.maxRestarts, restartFromStart: f.restartFromStart,
  };
}

async function runCommand(flags: RunFlags, app: string[], argv: readonly string[] = []): Promise<number> {
  const names = placementNames(argv);
  checkCpusPerTask(flags.cpusPerTask, names.cpusPerTask);
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

async function execCommand(vm: string, cmd: string[], flags: { job?: string; interactive?: boolean; tty?: boolean }): Promise<number> {
  if (!cmd.length) throw new SymError('ESYM_USAGE', { message: 'no command given', fix: 'symrun exec VM -- COMMAND [ARGS]', exitCode: EXIT.usage });
  const j = await findJob(flags.job);
  const peer = await j.connect();
  // the guests have the job's directory (staged), not the caller's: run there only if we are inside it
  const st = (await peer.call('status', {}, { timeoutMs: 10_000 })) as { cwd?: string };
  const here = process.cwd();
  const cwd = st.cwd && (here === st.cwd || here.startsWith(st.cwd.endsWith('/') ? st.cwd : `${st.cwd}/`)) ? here : undefined;
  const tty = !!flags.tty && !!process.stdin.isTTY;
  if (flags.tty && !tty) process.stderr.write('symrun: warning: -t ignored: stdin is not a terminal\n');
  const pty = tty ? { cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 } : undefined;
  const forwardStdin = !!flags.interactive || tty;
  let sid = '';
  let settled = false;
  const early: Array<[string, any]> = [];
  const onStdin = (d: Buffer) => peer.notify('exec.in', { sid, data: d.toString('base64') });
  const onStdinEnd = () => peer.notify('exec.in', { sid, eof: true });
  const onResize = () => peer.notify('exec.resize', { sid, cols: process.stdout.columns, rows: process.stdout.rows });
  let signalled = 0;
  // the first signal goes to the remote command; a second one ends symrun exec (the command may go on)
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signalled === 1) peer.notify('exec.signal', { sid, sig });
    else process.exit(128 + (os.constants.signals[sig] ?? 1));
  };
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  // restore the terminal and stop reading stdin, or the process would never exit
  const cleanup = () => {
    if (tty) try { process.stdin.setRawMode(false); } catch { /* stdin gone */ }
    process.stdin.off('data', onStdin);
    process.stdin.off('end', onStdinEnd);
    if (forwardStdin) process.stdin.pause();
    process.stdout.off('resize', onResize);
    for (const s of sigs) process.off(s, onSignal);
  };
  return new Promise<number>((resolve, reject) => {
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      cleanup();
      fn();
      peer.close();
    };
    peer.on('event', (name: string, d: any) => {
      if (!sid) { early.push([name, d]); return; }
      handle(name, d);
    });
    const handle = (name: string, d: any) => {
      // one control connection carries one exec; the coordinator can send output of a command that
      // fails at once (e.g. not found) before it knows the session id, with sid '' (see job.ts serveControl)
      if (d?.sid !== sid && d?.sid !== '') return;
      if (name === 'exec.out') (d.fd === 2 ? process.stderr : process.stdout).write(Buffer.from(d.data, 'base64'));
      if (name === 'exec.exit') finish(() => resolve(Number(d.status)));
    };
    peer.on('close', () => finish(() => reject(new SymError('ESYM_JOB_GONE', { message: `job ${j.id} ended during exec`, exitCode: EXIT.runtime }))));
    peer.call<{ sid: string }>('exec.start', { vm, argv: cmd, pty, cwd }).then((r) => {
      sid = r.sid;
      // without a terminal, Ctrl-C/SIGTERM go to the remote command (with one, the pty sends ^C itself)
      if (!tty) for (const s of sigs) process.on(s, onSignal);
      if (forwardStdin) {
        if (tty) process.stdin.setRawMode(true);
        process.stdin.on('data', onStdin);
        process.stdin.on('end', onStdinEnd);
        process.stdin.resume();
        if (tty) process.stdout.on('resize', onResize);
      } else peer.notify('exec.in', { sid, eof: true });
      for (const [n, d] of early.splice(0)) handle(n, d);
    }, (e) => finish(() => reject(isSymError(e) && e.code === 'ESYM_NO_VM' ? new SymError('ESYM_NO_VM', { message: e.message, field: 'VM', value: vm, fix: e.fix, exitCode: EXIT.usage }) : e)));
  });
}

export async function main(argv: string[]): Promise<number> {
  const dd = argv.indexOf('--');
  const left = normalizeArgs(dd >= 0 ? argv.slice(0, dd) : argv);
  const right = dd >= 0 ? argv.slice(dd + 1) : [];
  const json = left.includes('--json');
  let exit = 0;

  const program = new Command('symrun')
    .description('Run MPI jobs in VMs with passthrough interconnects; migrate, checkpoint and restart them')
    .usage('[options] -- PROGRAM [ARGS...]')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showSuggestionAfterError(true);
  program.addHelpText('after', EXAMPLES);

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
      .option('--mca <name=value>', 'Open MPI MCA parameter (also --mca NAME VALUE); repeatable', collect)
      .option('--subnet <cidr>', "private /24 for the job's network ('auto')")
      .option('--quiesce <adapter>', 'how migrations quiesce MPI traffic: freeze | failover (VMs get a standby NIC) | hooks')
      .option('--migration-tls <on|off>', 'encrypt migration streams with a per-migration key (default on; migration.tls)')
      .option('--events <file>', 'append every migration/checkpoint phase as a JSON line to FILE')
      .option('--checkpoint-dir <dir>', 'directory for checkpoints (symrun checkpoint; Slurm: a path all nodes share)')
      .option('--checkpoint-interval <time>', 'take a checkpoint this often while the job runs (e.g. 10m)')
      .option('--keep <n>', 'complete checkpoints of the job kept in --checkpoint-dir (0 = all)')
      .option('--max-restarts <n>', 'restarts from the last checkpoint after a node dies (default 3; 0 = never)')
      .option('--restart-from-start', 'a node dies before the first checkpoint: run the job again from the beginning')
      .option('-q, --quiet', 'no progress messages')
      .option('--json', 'print a JSON summary (job id, exit code, phase timings) on stderr at the end');

  runOpts(program.command('run', { isDefault: true, hidden: true }).usage('[options] -- PROGRAM [ARGS...]')).action(async (flags: RunFlags) => {
    if (!right.length) throw new SymError('ESYM_USAGE', { message: 'no program given', fix: 'symrun [options] -- PROGRAM [ARGS...]   (see symrun --help)', exitCode: EXIT.usage });
    exit = await runCommand(flags, right, dd >= 0 ? argv.slice(0, dd) : argv);
  });

  const image = program.command('image').description('build or inspect the guest image');
  image
    .command('build')
    .description('build (or reuse, content-addressed) the guest image')
    .option('--force', 'rebuild even if an image with the same hash exists')
    .option('--json', 'print the image description as JSON')
    .action(async (f: { force?: boolean; json?: boolean }) => {
      const info = await buildImage({ force: f.force, onProgress: f.json ? undefined : (s: string) => process.stderr.write(`symrun: image: ${s}\n`) });
      process.stdout.write(f.json ? JSON.stringify(info, null, 2) + '\n' : `${info.builtNow ? 'built' : 'reused'} image ${info.hash.slice(0, 12)} in ${info.dir}\n`);
    });
  image
    .command('info')
    .description('show the image a job would use')
    .option('-C, --config <file>', 'symrun.yaml to read (default: $SYMRUN_CONFIG)')
    .addOption(new Option('-c <value>').hideHelp())
    .option('--json')
    .action(async (f: { config?: string; json?: boolean; c?: string }) => {
      checkCpusPerTask(f.c, '-c', true);
      const cfg = loadConfig({ file: f.config });
      const info = await resolveImage(cfg.image);
      process.stdout.write(f.json ? JSON.stringify(info, null, 2) + '\n' : `image ${info.hash.slice(0, 12)}\n  kernel ${info.kernel} (${info.kernelVersion})\n  initrd ${info.initrd}\n  root   ${info.rootfs}\n`);
    });

  program
    .command('exec <vm>')
    .description('run a command in a guest of the running job: symrun exec VM -- CMD [ARGS]')
    .option('--job <id>', 'job id (default: the only running job)')
    .option('-i, --interactive', 'forward stdin')
    .option('-t, --tty', 'allocate a pseudo-terminal')
    .addHelpText('after', `
The command runs in the guest in the current directory if that is (inside) the job's directory, else in /.
Exit status: the command's (128+N for a signal; 127 if not found); 2 if no job is running, --job names
none, or VM is not a VM of the job; 4 if the job ends (or cannot be reached) during exec.`)
    .action(async (vm: string, f: { job?: string; interactive?: boolean; tty?: boolean }) => {
      exit = await execCommand(vm, right, f);
    });

  program
    .command('status')
    .description('hosts, VMs and phase of the running job')
    .option('--job <id>', 'job id (default: the only running job)')
    .option('--json', 'stable JSON output')
    .addHelpText('after', `
Exit status: 0; 2 if no job is running on this machine, --job names none, or several run and --job is
missing (error code ESYM_NO_JOB, as JSON on stderr with --json); 4 if the job cannot be reached.`)
    .action(async (f: { job?: string; json?: boolean }) => {
      const j = await findJob(f.job);
      const peer = await j.connect();
      const s = (await peer.call('status', {}, { timeoutMs: 10_000 })) as { jobId: string; state: string; vms: Array<Record<string, string>>; hosts: Array<Record<string, unknown>> };
      peer.close();
      if (f.json) process.stdout.write(JSON.stringify(s, null, 2) + '\n');
      else {
        process.stdout.write(`job ${s.jobId}: ${s.state}\n`);
        process.stdout.write(`  ${'VM'.padEnd(6)} ${'HOST'.padEnd(8)} ${'IP'.padEnd(16)} ${'STATE'.padEnd(9)} AGENT\n`);
        for (const v of s.vms) process.stdout.write(`  ${v.name!.padEnd(6)} ${v.host!.padEnd(8)} ${v.ip!.padEnd(16)} ${v.state!.padEnd(9)} ${v.agent}\n`);
        const spares = s.hosts.filter((h) => h.role === 'spare').map((h) => h.name);
        if (spares.length) process.stdout.write(`  spare hosts: ${spares.join(', ')}\n`);
        const migs = (s as { migrations?: Array<{ op: string; vm: string; from: string; to: string; phase: string; reason?: string; result?: { outcome: string; totalMs: number } }> }).migrations ?? [];
        for (const m of migs) {
          process.stdout.write(`  migration ${m.op}: ${m.vm} ${m.from} -> ${m.to}: ${m.result ? `${m.result.outcome} in ${m.result.totalMs} ms` : m.phase}${m.reason ? ` (${m.reason})` : ''}\n`);
        }
        const lost = s.hosts.filter((h) => h.role === 'lost').map((h) => h.name);
        if (lost.length) process.stdout.write(`  lost hosts: ${lost.join(', ')}\n`);
        const rs = (s as { restarts?: { count: number; max: number; log: Array<{ at: string; hosts: string[]; from?: string; ms?: number; moved?: Array<{ vm: string; to: string }> }> } }).restarts;
        for (const [i, r] of (rs?.log ?? []).entries()) {
          process.stdout.write(`  restart ${i + 1}/${rs!.max}: ${r.hosts.join(', ')} lost at ${r.at}; ${r.from ? `from checkpoint ${r.from}` : 'from the beginning'}${r.moved?.length ? `, ${r.moved.map((m) => `${m.vm} on ${m.to}`).join(', ')}` : ''}${r.ms !== undefined ? ` (${r.ms} ms)` : ' (in progress)'}\n`);
        }
      }
    });

  registerMigrate(program, findJob, (n) => { exit = n; });
  registerCheckpoint(program, findJob, (n) => { exit = n; });
  registerRestart(program, right, (n) => { exit = n; });
  registerWatchd(program, (n) => { exit = n; });
  registerNode(program, (n) => { exit = n; });
  registerNodeDevices(program, (n) => { exit = n; });

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
      const st = pick.state;
      const job = new Job({ config: st.config, app: st.app, cwd: st.cwd, jobId: st.jobId, quiet: f.quiet });
      const r = await job.recover(st);
      if (f.json) process.stderr.write(JSON.stringify({ jobId: r.jobId, exitCode: r.exitCode, phasesMs: r.phases }) + '\n');
      exit = r.exitCode;
    });

  program
    .command('control-proxy', { hidden: true })
    .description('relay the control protocol of a job on this node over stdio (started by symrun --job through srun)')
    .requiredOption('--slurm-job <id>', 'the Slurm job id')
    .action(async (f: { slurmJob: string }) => { exit = await controlProxy(f.slurmJob); });

  program
    .command('config')
    .description('show the resolved configuration')
    .option('-C, --config <file>', 'symrun.yaml to read (default: $SYMRUN_CONFIG)')
    .addOption(new Option('-c <value>').hideHelp())
    .option('--json')
    .action((f: { config?: string; json?: boolean; c?: string }) => {
      checkCpusPerTask(f.c, '-c', true);
      const cfg = loadConfig({ file: f.config });
      process.stdout.write(f.json ? JSON.stringify(cfg, null, 2) + '\n' : describeConfig(cfg) + '\n');
    });

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
