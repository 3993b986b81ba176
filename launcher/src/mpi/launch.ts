// Builds the MPI launcher's command line run inside the first VM. Pure: no I/O.
// Open MPI 4.1 from Debian: mpirun; remote orted are started through symrun-rsh (no sshd in the guests),
// and MPI traffic is pinned to the passthrough interface: the oob always, the ranks by transport
// (mpi/transport.ts: tcp = pml ob1 with btl tcp on that interface, never UCX; rdma = pml ucx over verbs).
// MPICH 4.0 from Debian: Hydra's mpiexec.hydra with the rsh launcher pointed at symrun-rsh (remote
// hydra_pmi_proxy started the same way); -iface pins Hydra's control connections, UCX_NET_DEVICES the
// ranks' traffic (Debian's MPICH is ch4:ucx). Which one a program needs: mpi/detect.ts, docs/mpi.md.
import { SymError, EXIT } from '../errors.js';
import { DEFAULTS } from '../defaults.js';
import { FINALIZE_SHIM, type MpiImpl } from './detect.js';
import { type Transport, openMpiTransport, checkTransportMca } from './transport.js';

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
  /** the MPI the program is linked against (default openmpi) */
  implementation?: MpiImpl;
  /** where `mpi.mca` / `--mca` came from, for the error when they are given to an MPICH program */
  mcaOrigin?: string;
  /** interconnect.transport (default tcp) */
  transport?: Transport;
  /** rdma: UCX_NET_DEVICES (Soft-RoCE: rxe0:1); unset lets UCX pick the HCA */
  ucxDevice?: string;
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
  if (p.implementation === 'mpich') return planMpich(p, np, rankVm);
  const transport = p.transport ?? 'tcp';
  checkTransportMca(transport, p.mca, p.mcaOrigin);
  const tr = openMpiTransport(transport, p.ucxDevice);
  const mca: Record<string, string> = {
    plm_rsh_agent: p.rshAgent ?? '/opt/symrun/bin/symrun-rsh',
    plm_rsh_no_tree_spawn: '1',
    btl: DEFAULTS.mpi.btl,
    ...tr.mca,
    btl_tcp_if_include: p.ifName,
    oob_tcp_if_include: p.ifName,
    ...p.mca,
  };
  const argv = ['mpirun', '-np', String(np), '--host', p.vms.map((v) => `${v.name}:${v.slots}`).join(','), '--map-by', p.mapBy ?? 'slot', '--wdir', p.cwd];
  for (const [k, v] of Object.entries(mca)) argv.push('--mca', k, v);
  // remote ranks do not inherit mpirun's environment: -x hands them UCX's settings
  for (const [k, v] of Object.entries(tr.env)) argv.push('-x', `${k}=${v}`);
  if (p.tagOutput) argv.push('--tag-output');
  argv.push(...p.extraArgs, p.program, ...p.args);
  return {
    argv,
    np,
    rankVm,
    env: { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', HOME: '/root', PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' },
  };
}

/** Guest path of Hydra's launcher (Debian's mpich package; mpiexec.mpich is a link to it). */
export const HYDRA = '/usr/bin/mpiexec.hydra';

/** Preloaded into every MPICH rank (defined with the image's launcher files: mpi/detect.ts). */
export { FINALIZE_SHIM };

/**
 * Hydra (MPICH): `-hosts vm1:S,vm2:S` fills vm1's slots first, as Open MPI's --map-by slot does; the
 * environment of mpiexec reaches every rank (Hydra's default -genvall), and `-genv LD_PRELOAD` adds
 * FINALIZE_SHIM to the ranks' environment. Output tags (--tag-output):
 * `[1,R]<out>:`, rewritten by retagLine like Open MPI's.
 */
function planMpich(p: MpiPlanInput, np: number, rankVm: string[]): MpiPlan {
  checkMpiOptions('mpich', p.mca, p.program, p.mcaOrigin);
  checkMpiTransport('mpich', p.transport ?? 'tcp', p.program);
  const argv = [HYDRA, '-launcher', 'rsh', '-launcher-exec', p.rshAgent ?? '/opt/symrun/bin/symrun-rsh',
    '-hosts', p.vms.map((v) => `${v.name}:${v.slots}`).join(','), '-n', String(np), '-wdir', p.cwd, '-iface', p.ifName,
    // to the ranks only (not to mpiexec or the proxies)
    '-genv', 'LD_PRELOAD', FINALIZE_SHIM];
  const pe = /^slot:PE=(\d+)$/.exec(p.mapBy ?? '');
  if (pe) argv.push('-bind-to', `core:${pe[1]}`);
  if (p.tagOutput) argv.push('-prepend-pattern', '[1,%r]<out>:');
  argv.push(...p.extraArgs, p.program, ...p.args);
  return {
    argv,
    np,
    rankVm,
    env: { HOME: '/root', PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', UCX_NET_DEVICES: p.ifName, UCX_TLS: 'tcp,self,sm' },
  };
}

/** Options of one MPI given to a program of the other: refused (the job calls this before any VM boots). */
export function checkMpiOptions(impl: MpiImpl, mca: Record<string, string>, program: string, origin = 'mpi.mca'): void {
  const names = Object.keys(mca);
  if (impl === 'mpich' && names.length) {
    throw new SymError('ESYM_MPI_MISMATCH', {
      message: `${program} is an MPICH program; MCA parameters (${names.join(', ')}) are Open MPI's and MPICH ignores them`,
      field: origin, value: names.join(','), exitCode: EXIT.usage,
      fix: 'leave out --mca / mpi.mca; give MPICH settings as environment with mpi.extraArgs: ["-genv", "NAME", "VALUE"]',
    });
  }
}

/** interconnect.transport: rdma is built for Open MPI only (MPICH over UCX verbs is not wired up or tested). */
export function checkMpiTransport(impl: MpiImpl, transport: Transport, program: string): void {
  if (impl !== 'mpich' || transport !== 'rdma') return;
  throw new SymError('ESYM_TRANSPORT_UNSUPPORTED', {
    message: `${program} is an MPICH program; interconnect.transport: rdma is supported for Open MPI programs only (MPICH runs over UCX's tcp transport)`,
    field: 'interconnect.transport (--transport)', value: transport, exitCode: EXIT.usage,
    fix: 'use --transport tcp for MPICH programs, or build the program with Open MPI (mpicc) for RDMA',
  });
}

/**
 * Rewrites mpirun's "[1,R]<stdout>:" tags (and Hydra's "[1,R]<out>:", from the stream it came on) into
 * "[vmX,R]<stdout>:" so each line names its VM.
 */
export function retagLine(line: string, rankVm: string[], stream: 'stdout' | 'stderr' = 'stdout'): string {
  return line.replace(/^\[(\d+),(\d+)\]<(stdout|stderr|out)>:/, (m, _job, r: string, fd: string) => {
    const vm = rankVm[Number(r)];
    return vm ? `[${vm},${r}]<${fd === 'out' ? stream : fd}>:` : m;
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
