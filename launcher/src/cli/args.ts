// The command line's own conventions: mpirun's and srun's spellings rewritten to symrun's, the spelling a
// user typed (so errors name it), and -c, which was once --config and is now srun's --cpus-per-task.
import { SymError, EXIT } from '../errors.js';
import type { LoadConfigOptions } from '../config/index.js';

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

export function collect(v: string, prev: string[] = []): string[] {
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
export function placementNames(argv: readonly string[]): NonNullable<LoadConfigOptions['optionNames']> {
  const typed = {
    np: typedAs(argv, ['-n', '-np', '--np', '--ntasks']),
    nodes: typedAs(argv, ['-N', '--nodes']),
    ntasksPerNode: typedAs(argv, ['--ntasks-per-node', '--npernode', '-npernode']),
    cpusPerTask: typedAs(argv, ['-c', '--cpus-per-task']),
  };
  return Object.fromEntries(Object.entries(typed).filter(([, v]) => v !== undefined));
}

/** -c was the short form of --config: a value that is no number gets a message saying what -c is now. */
export function checkCpusPerTask(value: string | undefined, typed = '-c', always = false): void {
  if (value === undefined || (!always && /^\s*[0-9]+\s*$/.test(value))) return; // numbers: validated (>= 1) with the configuration
  throw new SymError('ESYM_USAGE', {
    message: `${typed === '-c' ? '-c is --cpus-per-task (as in srun), a whole number of vCPUs per rank' : `${typed} must be a whole number of vCPUs per rank (as srun -c)`}, not ${JSON.stringify(value)}; the configuration file is --config FILE (-C FILE)`,
    field: typed,
    value,
    fix: /\.ya?ml$|\//i.test(value) ? `symrun --config ${value} ...` : `${typed} N with N >= 1, e.g. ${typed} 2`,
    exitCode: EXIT.usage,
  });
}

