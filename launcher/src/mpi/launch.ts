// Builds the mpirun command line run inside the first VM. Pure: no I/O.
// Open MPI 4.1 from Debian; remote orted are started through symrun-rsh (no sshd in the guests), and
// MPI traffic (btl tcp and the oob) is pinned to the passthrough interface.
import { SymError, EXIT } from '../errors.js';
import { DEFAULTS } from '../defaults.js';

export interface MpiVm { name: string; slots: number }
export interface MpiPlanInput {
  vms: MpiVm[];
  np?: number;
  /** mpirun --map-by (default "slot": ranks fill vm1's slots first); "slot:PE=C" binds each rank to C vCPUs (-c) */
  mapBy?: string;
  program: string;
  args: string[];
  cwd: string;
  ifName: string;
  tagOutput: boolean;
  mca: Record<string, string>;
  extraArgs: string[];
  rshAgent?: string;
}
export interface MpiPlan { argv: string[]; env: Record<string, string>; np: number; rankVm: string[] }

export function planMpi(p: MpiPlanInput): MpiPlan {
  const slots = p.vms.reduce((a, v) => a + v.slots, 0);
  const np = p.np ?? slots;
  if (!Number.isInteger(np) || np < 1) throw new SymError('ESYM_BAD_NP', { message: `-np must be a positive integer`, field: '-np', value: p.np, exitCode: EXIT.usage, fix: 'pass -np N with N >= 1' });
  if (np > slots) {
    throw new SymError('ESYM_BAD_NP', {
      message: `-np ${np} asks for more ranks than the ${slots} slots of ${p.vms.length} VMs`,
      field: '-np', value: np, exitCode: EXIT.usage,
      fix: `lower -np to ${slots}, raise the slots (ranks) per VM (--ntasks-per-node), or add VMs (-N / --local N)`,
    });
  }
  // by-slot mapping (with or without :PE=C): ranks fill vm1's slots first, then vm2's...
  const rankVm: string[] = [];
  for (const v of p.vms) for (let i = 0; i < v.slots && rankVm.length < np; i++) rankVm.push(v.name);
  const mca: Record<string, string> = {
    plm_rsh_agent: p.rshAgent ?? '/opt/symrun/bin/symrun-rsh',
    plm_rsh_no_tree_spawn: '1',
    btl: DEFAULTS.mpi.btl,
    btl_tcp_if_include: p.ifName,
    oob_tcp_if_include: p.ifName,
    ...p.mca,
  };
  const argv = ['mpirun', '-np', String(np), '--host', p.vms.map((v) => `${v.name}:${v.slots}`).join(','), '--map-by', p.mapBy ?? 'slot', '--wdir', p.cwd];
  for (const [k, v] of Object.entries(mca)) argv.push('--mca', k, v);
  if (p.tagOutput) argv.push('--tag-output');
  argv.push(...p.extraArgs, p.program, ...p.args);
  return {
    argv,
    np,
    rankVm,
    env: { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', HOME: '/root', PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' },
  };
}

/** Rewrites mpirun's "[1,R]<stdout>:" tags into "[vmX,R]<stdout>:" so each line names its VM. */
export function retagLine(line: string, rankVm: string[]): string {
  return line.replace(/^\[(\d+),(\d+)\]<(stdout|stderr)>:/, (m, _job, r: string, fd: string) => {
    const vm = rankVm[Number(r)];
    return vm ? `[${vm},${r}]<${fd}>:` : m;
  });
}

/** Line splitter for streamed output (keeps partial lines until their newline arrives). */
export class LineSplitter {
  private rest = '';
  push(chunk: string): string[] {
    const s = this.rest + chunk;
    const parts = s.split('\n');
    this.rest = parts.pop()!;
    return parts.map((l) => l + '\n');
  }
  flush(): string {
    const r = this.rest;
    this.rest = '';
    return r;
  }
}
