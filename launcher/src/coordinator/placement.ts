// Where the ranks go: the placement options users already type for srun and mpirun (-N, -n/-np,
// --ntasks-per-node, -c) mapped onto VMs, one VM per host. Pure: no I/O; the Slurm environment is
// passed in as data. The rules are documented in docs/placement.md; keep the two in step.
//
//   hosts that run VMs  -N (Slurm: at most allocation - spares; the rest become spares; local: = --local)
//   ranks per VM        --ntasks-per-node | --slots-per-vm | ceil(-n / VMs) | vCPUs / -c
//   ranks               -n | VMs x --ntasks-per-node | every slot (mpirun's default)
//   vCPUs per VM        --cpus | ranks per VM x -c | 1
//   mpirun              --map-by slot:PE=C when -c is given (each rank bound to C vCPUs)
import { SymError, EXIT } from '../errors.js';
import { DEFAULTS } from '../defaults.js';
import { MAX_CPUS, MAX_LOCAL } from '../config/schema.js';
import { expandCounts, parseSlurmEnv, type Env } from '../slurm/env.js';
import { expandHostlist } from '../slurm/hostlist.js';
import type { SymrunConfig } from '../config/types.js';

/** The most ranks per VM (the schema's limit of mpi.slotsPerVm and mpi.ntasksPerNode). */
export const MAX_SLOTS_PER_VM = 4096;

export type PlacementKey = 'local' | 'nodes' | 'np' | 'ntasksPerNode' | 'cpusPerTask' | 'cpus' | 'slotsPerVm' | 'spares';

/** How each input is named in errors unless PlacementInput.names says otherwise (the CLI spelling). */
export const PLACEMENT_OPTIONS: Readonly<Record<PlacementKey, string>> = {
  local: '--local',
  nodes: '-N',
  np: '-n',
  ntasksPerNode: '--ntasks-per-node',
  cpusPerTask: '-c',
  cpus: '--cpus',
  slotsPerVm: '--slots-per-vm',
  spares: '--spares',
};

/** Where a key of symrun.yaml lives, for resolvePlacement. */
const CONFIG_PATHS: Readonly<Record<PlacementKey, string>> = {
  local: 'local',
  nodes: 'nodes',
  np: 'mpi.np',
  ntasksPerNode: 'mpi.ntasksPerNode',
  cpusPerTask: 'mpi.cpusPerTask',
  cpus: 'vm.cpus',
  slotsPerVm: 'mpi.slotsPerVm',
  spares: 'spares',
};

type Value = number | string | undefined;

export interface PlacementInput {
  mode: 'local' | 'slurm';
  /**
   * Slurm: nodes of the allocation, spares included (default: SLURM_JOB_NUM_NODES / SLURM_NNODES /
   * the length of SLURM_JOB_NODELIST in `env`). Local: not used (the hosts are --local + --spares).
   */
  hosts?: number;
  /** what the user gave (command line or symrun.yaml); undefined = not given. Strings are checked. */
  local?: Value;
  nodes?: Value;
  np?: Value;
  ntasksPerNode?: Value;
  cpusPerTask?: Value;
  /** vCPUs per VM, only when given (--cpus or vm.cpus); otherwise defaultCpus or ranks per VM x -c */
  cpus?: Value;
  slotsPerVm?: Value;
  spares?: Value;
  /** Slurm mode: the allocation's environment, read like srun reads it inside sbatch (defaults only) */
  env?: Env;
  /** the allocation's node names in order (Slurm), to name the spares in notes */
  nodeNames?: readonly string[];
  /** how each given option is named in errors and notes (default PLACEMENT_OPTIONS) */
  names?: Partial<Record<PlacementKey, string>>;
  /** vCPUs per VM when neither --cpus nor -c says (default DEFAULTS.vm.cpus) */
  defaultCpus?: number;
}

export interface Placement {
  mode: 'local' | 'slurm';
  /** hosts that run a VM each: the first vmHosts hosts */
  vmHosts: number;
  /** hosts after them, held back as migration / restart targets */
  spares: number;
  /** total ranks; undefined = every slot (mpirun's default) */
  np: number | undefined;
  slotsPerVm: number;
  cpusPerVm: number;
  /** -c, else vCPUs per VM / ranks per VM (at least 1) */
  cpusPerRank: number;
  /** mpirun --map-by value when it is not the default `slot` */
  mapBy?: string;
  /** what the user should know (extra spares, values taken from the allocation, idle VMs) */
  notes: string[];
}

interface Given { value: number; field: string }

function placementError(field: string, value: unknown, message: string, fix: string): SymError {
  return new SymError('ESYM_PLACEMENT', { message, field, value, fix, exitCode: EXIT.usage });
}

function envError(name: string, value: string | undefined, why: string): SymError {
  return new SymError('ESYM_BAD_SLURM_ENV', {
    message: `${name}=${value ?? ''} ${why}`,
    field: name,
    value,
    fix: 'run symrun in the batch script of sbatch (or inside salloc) and do not override SLURM_* variables; symrun options override them',
    exitCode: EXIT.environment,
  });
}

const plural = (n: number, word: string, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;

/** A whole number >= min from the command line (a string), symrun.yaml or code; undefined stays undefined. */
function wholeNumber(v: Value, field: string, min: number, max?: number): Given | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : /^\s*[0-9]+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < min || (max !== undefined && n > max)) {
    throw placementError(
      field, v,
      `${field} must be a whole number${max !== undefined ? ` from ${min} to ${max}` : ` of at least ${min}`}, not ${JSON.stringify(v)}`,
      `give ${field} N with N a whole number${max !== undefined ? ` from ${min} to ${max}` : ` >= ${min}`} (see docs/placement.md)`,
    );
  }
  return { value: n, field };
}

function envNumber(env: Env, name: string): Given | undefined {
  const v = env[name];
  if (v === undefined || v.trim() === '') return undefined;
  if (!/^\s*[0-9]+\s*$/.test(v) || Number(v) < 1) throw envError(name, v, 'is not a whole number of at least 1');
  return { value: Number(v), field: name };
}

/** SLURM_NTASKS_PER_NODE: "2", or compressed like "2(x3)" (then every node must have the same count). */
function envPerNode(env: Env): { given?: Given; note?: string } {
  const name = 'SLURM_NTASKS_PER_NODE';
  const v = env[name];
  if (v === undefined || v.trim() === '') return {};
  const counts = expandCounts(v, name);
  if (counts.some((c) => c < 1)) throw envError(name, v, 'has a count below 1');
  const max = Math.max(...counts);
  if (counts.every((c) => c === max)) return { given: { value: max, field: name } };
  return { given: { value: max, field: name }, note: `${name}=${v} differs between nodes: every VM gets ${max} slots (the largest count)` };
}

function allocationSize(env: Env): number | undefined {
  const n = envNumber(env, 'SLURM_JOB_NUM_NODES') ?? envNumber(env, 'SLURM_NNODES');
  if (n) return n.value;
  const list = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
  return list ? expandHostlist(list, { field: env.SLURM_JOB_NODELIST !== undefined ? 'SLURM_JOB_NODELIST' : 'SLURM_NODELIST' }).length : undefined;
}

/** Decide hosts, spares, ranks, slots and vCPUs from the placement options. Throws ESYM_PLACEMENT (exit 2). */
export function planPlacement(input: PlacementInput): Placement {
  const names: Record<PlacementKey, string> = { ...PLACEMENT_OPTIONS, ...(input.names ?? {}) };
  const notes: string[] = [];
  const opt = (k: PlacementKey, min = 1, max?: number) => wholeNumber(input[k], names[k], min, max);

  const local = input.local === 0 ? undefined : opt('local', 1, MAX_LOCAL);
  const nodes = opt('nodes');
  const sparesGiven = opt('spares', 0);
  let spares = sparesGiven?.value ?? 0;
  const sparesField = names.spares;

  // ---- hosts that run VMs, and spares
  let vmHosts: number;
  let hosts: number;
  if (input.mode === 'local') {
    if (local && nodes && local.value !== nodes.value) {
      throw placementError(
        nodes.field, nodes.value,
        `${nodes.field} ${nodes.value} and ${local.field} ${local.value} disagree: in local mode both are the number of emulated hosts that run VMs`,
        `give only one of them (${local.field} ${local.value}, or ${nodes.field} ${nodes.value})`,
      );
    }
    const n = local ?? nodes;
    if (!n) {
      throw placementError(names.local, input.local, 'local mode needs the number of emulated hosts', `give ${names.local} N (or ${names.nodes} N)`);
    }
    if (n.value > MAX_LOCAL) {
      throw placementError(n.field, n.value, `${n.field} ${n.value} asks for more emulated hosts than local mode runs (${MAX_LOCAL})`, `use ${n.field} ${MAX_LOCAL} or less, or run in a Slurm allocation`);
    }
    vmHosts = n.value;
    hosts = vmHosts + spares;
  } else {
    const fromEnv = input.hosts === undefined ? allocationSize(input.env ?? {}) : undefined;
    if (input.hosts === undefined && fromEnv === undefined) {
      throw new SymError('ESYM_NOT_IN_SLURM', {
        message: 'Slurm mode needs the allocation, but SLURM_JOB_NUM_NODES and SLURM_JOB_NODELIST are not set',
        field: 'SLURM_JOB_NUM_NODES',
        fix: 'run symrun in the batch script of sbatch (or inside salloc), or pass --local N to run without Slurm',
        exitCode: EXIT.usage,
      });
    }
    hosts = wholeNumber(input.hosts ?? fromEnv, 'allocation nodes', 1)!.value;
    const avail = hosts - spares;
    if (avail < 1) {
      throw placementError(
        sparesField, spares,
        `the allocation has ${plural(hosts, 'node')}; with ${sparesField} ${spares} none is left to run a VM`,
        `allocate more nodes (sbatch -N ${spares + 1} or more) or pass fewer ${sparesField}`,
      );
    }
    if (nodes) {
      if (nodes.value > avail) {
        throw placementError(
          nodes.field, nodes.value,
          `${nodes.field} ${nodes.value} asks for more nodes than the allocation has for VMs: ${plural(hosts, 'node')} minus ${sparesField} ${spares} leaves ${avail}`,
          `use ${nodes.field} ${avail} or less, pass fewer ${sparesField}, or allocate ${nodes.value + spares} nodes (sbatch -N ${nodes.value + spares})`,
        );
      }
      vmHosts = nodes.value;
      if (nodes.value < avail) {
        const extra = avail - nodes.value;
        spares += extra;
        const extraNames = input.nodeNames && input.nodeNames.length === hosts ? ` (${input.nodeNames.slice(nodes.value, avail).join(', ')})` : '';
        notes.push(
          `${nodes.field} ${nodes.value}: ${plural(extra, 'more node')} of the ${hosts} in the allocation run${extra === 1 ? 's' : ''} no VM and ` +
            `${extra === 1 ? 'becomes a spare' : 'become spares'} too${extraNames}: ${plural(spares, 'spare')} in all`,
        );
      }
    } else vmHosts = avail;
  }

  // ---- the allocation's task layout (Slurm mode: defaults, like srun inside sbatch)
  let np = opt('np');
  let perNode = opt('ntasksPerNode', 1, MAX_SLOTS_PER_VM);
  const slotsGiven = opt('slotsPerVm', 1, MAX_SLOTS_PER_VM);
  let cpusPerTask = opt('cpusPerTask', 1, MAX_CPUS);
  const cpusGiven = opt('cpus', 1, MAX_CPUS);
  if (input.mode === 'slurm' && input.env) {
    const env = input.env;
    const envTasks = envNumber(env, 'SLURM_NTASKS') ?? envNumber(env, 'SLURM_NPROCS');
    const envK = envPerNode(env);
    if (!np && !perNode && !slotsGiven) {
      if (envK.given) {
        perNode = envK.given;
        if (envK.note) notes.push(envK.note);
        // SLURM_NTASKS = nodes x per-node is what Slurm derives from --ntasks-per-node alone: not a -n of its own
        if (envTasks && envTasks.value !== hosts * envK.given.value) np = envTasks;
      } else if (envTasks) np = envTasks;
      const used: string[] = [];
      if (perNode) used.push(`${perNode.field}=${env[perNode.field]} (--ntasks-per-node)`);
      if (np) used.push(`${np.field}=${np.value} (-n)`);
      if (used.length) notes.push(`ranks from the allocation: ${used.join(', ')}`);
    } else if (envTasks || envK.given) {
      const given = [np, perNode, slotsGiven].filter((g): g is Given => !!g).map((g) => g.field);
      const ignored = [envTasks?.field, envK.given?.field].filter(Boolean).join(' and ');
      notes.push(`${given.join(', ')} given: ${ignored} of the allocation not used`);
    }
    if (!cpusPerTask) {
      const c = envNumber(env, 'SLURM_CPUS_PER_TASK');
      if (c) {
        if (c.value > MAX_CPUS) throw envError(c.field, String(c.value), `is more than the ${MAX_CPUS} vCPUs a VM can have`);
        cpusPerTask = c;
      }
    }
  }

  // ---- ranks per VM (slots)
  if (perNode && slotsGiven && perNode.value !== slotsGiven.value) {
    throw placementError(
      slotsGiven.field, slotsGiven.value,
      `${slotsGiven.field} ${slotsGiven.value} and ${perNode.field} ${perNode.value} disagree: both are the ranks per VM`,
      `give only one of them (${perNode.field} ${perNode.value}, or ${slotsGiven.field} ${slotsGiven.value})`,
    );
  }
  const C = cpusPerTask?.value ?? 1;
  const defaultCpus = input.defaultCpus ?? DEFAULTS.vm.cpus;
  let slotsPerVm: number;
  const fixed = perNode ?? slotsGiven; // ranks per VM given explicitly
  if (fixed) slotsPerVm = fixed.value;
  else if (np) slotsPerVm = Math.ceil(np.value / vmHosts); // mpirun fills VMs in order
  else if (cpusGiven) {
    if (cpusPerTask && cpusGiven.value < C) {
      throw placementError(
        cpusGiven.field, cpusGiven.value,
        `${cpusGiven.field} ${cpusGiven.value} gives a VM fewer vCPUs than one rank needs (${cpusPerTask.field} ${C})`,
        `raise ${cpusGiven.field} to ${C} or more, or leave it out (VMs then get ranks per VM x ${cpusPerTask.field} vCPUs)`,
      );
    }
    slotsPerVm = Math.floor(cpusGiven.value / C);
  } else slotsPerVm = Math.max(1, Math.floor(defaultCpus / C));
  if (slotsPerVm > MAX_SLOTS_PER_VM) {
    throw placementError(np!.field, np!.value, `${np!.field} ${np!.value} over ${plural(vmHosts, 'VM')} is more than ${MAX_SLOTS_PER_VM} ranks per VM`, `lower ${np!.field}, or run on more nodes (${names.nodes})`);
  }

  // ---- ranks
  let ranks: number | undefined;
  if (np) {
    const cap = slotsPerVm * vmHosts;
    if (np.value > cap) {
      // only with ranks per VM given: mpirun refuses to oversubscribe slots, and so does symrun
      throw placementError(
        np.field, np.value,
        `${np.field} ${np.value} asks for more ranks than the ${cap} slots of ${plural(vmHosts, 'VM')} (${fixed!.field} ${slotsPerVm} per VM); symrun does not oversubscribe`,
        `lower ${np.field} to ${cap}, raise ${fixed!.field} to ${Math.ceil(np.value / vmHosts)}, or leave ${fixed!.field} out (VMs then get ceil(${np.field} / VMs) slots)`,
      );
    }
    ranks = np.value;
  } else if (perNode) ranks = vmHosts * slotsPerVm;
  const total = ranks ?? vmHosts * slotsPerVm;
  const busy = Math.ceil(total / slotsPerVm);
  if (busy < vmHosts) {
    notes.push(`${plural(total, 'rank')} at ${slotsPerVm} per VM fill ${busy} of ${vmHosts} VMs (mpirun fills vm1 first): ${busy + 1 === vmHosts ? `vm${vmHosts} runs` : `vm${busy + 1}..vm${vmHosts} run`} no rank`);
  }

  // ---- vCPUs
  let cpusPerVm: number;
  if (cpusGiven) {
    cpusPerVm = cpusGiven.value;
    if (cpusPerTask && cpusPerVm < slotsPerVm * C) {
      throw placementError(
        cpusGiven.field, cpusGiven.value,
        `${cpusGiven.field} ${cpusGiven.value} is fewer vCPUs than ${plural(slotsPerVm, 'rank')} per VM x ${cpusPerTask.field} ${C} = ${slotsPerVm * C}; mpirun --map-by slot:PE=${C} would refuse to start`,
        `raise ${cpusGiven.field} to ${slotsPerVm * C}, leave it out (VMs then get ${slotsPerVm * C} vCPUs), or lower ${cpusPerTask.field} or the ranks per VM`,
      );
    }
  } else if (cpusPerTask) {
    cpusPerVm = slotsPerVm * C;
    if (cpusPerVm > MAX_CPUS) {
      throw placementError(
        cpusPerTask.field, C,
        `${plural(slotsPerVm, 'rank')} per VM x ${cpusPerTask.field} ${C} = ${cpusPerVm} vCPUs, more than a VM can have (${MAX_CPUS})`,
        `lower ${cpusPerTask.field} or the ranks per VM (run on more nodes with ${names.nodes})`,
      );
    }
  } else cpusPerVm = defaultCpus;

  return {
    mode: input.mode,
    vmHosts,
    spares,
    np: ranks,
    slotsPerVm,
    cpusPerVm,
    cpusPerRank: cpusPerTask ? C : Math.max(1, Math.floor(cpusPerVm / slotsPerVm)),
    ...(cpusPerTask ? { mapBy: `slot:PE=${C}` } : {}),
    notes,
  };
}

/** One line for the job's log: "2 VMs on n1, n2, 2 ranks each (4), 1 vCPU per rank (2 per VM); spare: n3". */
export function describePlacement(p: Placement, nodeNames?: readonly string[]): string {
  const named = nodeNames && nodeNames.length >= p.vmHosts + p.spares;
  const vmPart = `${plural(p.vmHosts, 'VM')}${named ? ` on ${nodeNames.slice(0, p.vmHosts).join(', ')}` : ''}`;
  const total = p.np ?? p.vmHosts * p.slotsPerVm;
  const rankPart = `${plural(total, 'rank')} (${p.slotsPerVm} per VM)`;
  const cpuPart = `${plural(p.cpusPerVm, 'vCPU')} per VM${p.mapBy ? `, ${plural(p.cpusPerRank, 'vCPU')} bound to each rank (--map-by ${p.mapBy})` : ''}`;
  const sparePart = p.spares ? `; ${p.spares === 1 ? 'spare' : 'spares'}: ${named ? nodeNames.slice(p.vmHosts, p.vmHosts + p.spares).join(', ') : p.spares}` : '';
  return `${vmPart}, ${rankPart}, ${cpuPart}${sparePart}`;
}

export interface ResolvedPlacement {
  /** the configuration with the plan written in: local/nodes, spares, vm.cpus, mpi.slotsPerVm, mpi.np, mpi.cpusPerTask */
  config: SymrunConfig;
  placement: Placement;
  /** the allocation's node names (Slurm mode), for describePlacement */
  nodeNames?: string[];
}

/**
 * Plan a loaded configuration before the job starts (VM sizes must be known before any VM boots) and
 * write the result into a copy of it, so that planning it again (coordinator/job.ts does, with the
 * hosts it really got) gives the same answer. Returns undefined when neither --local/-N nor a Slurm
 * allocation says where to run (the job then reports that, as before).
 * `origin(path)` names where a key came from: the CLI option, the dotted key (symrun.yaml), or
 * undefined for a default (config/load.ts configOrigin).
 */
export function resolvePlacement(cfg: SymrunConfig, opts: { env?: Env; origin?: (path: string) => string | undefined } = {}): ResolvedPlacement | undefined {
  const env = opts.env ?? {};
  const origin = opts.origin ?? (() => undefined);
  const inSlurm = Boolean(env.SLURM_JOB_ID || env.SLURM_JOBID);
  const mode: 'local' | 'slurm' | undefined = cfg.local >= 1 ? 'local' : inSlurm ? 'slurm' : cfg.nodes !== undefined ? 'local' : undefined;
  if (!mode) return undefined;
  const names: Partial<Record<PlacementKey, string>> = {};
  for (const k of Object.keys(CONFIG_PATHS) as PlacementKey[]) {
    const o = origin(CONFIG_PATHS[k]);
    if (o) names[k] = o;
  }
  let nodeNames: string[] | undefined;
  let hosts: number | undefined;
  if (mode === 'slurm') {
    const alloc = parseSlurmEnv(env);
    nodeNames = alloc.nodeList;
    hosts = alloc.numNodes;
  }
  const placement = planPlacement({
    mode,
    hosts,
    nodeNames,
    env: mode === 'slurm' ? env : undefined,
    local: cfg.local >= 1 ? cfg.local : undefined,
    nodes: cfg.nodes,
    np: cfg.mpi.np,
    ntasksPerNode: cfg.mpi.ntasksPerNode,
    slotsPerVm: cfg.mpi.slotsPerVm,
    cpusPerTask: cfg.mpi.cpusPerTask,
    cpus: origin(CONFIG_PATHS.cpus) !== undefined ? cfg.vm.cpus : undefined,
    defaultCpus: cfg.vm.cpus,
    spares: cfg.spares,
    names,
  });
  if (mode === 'local' && cfg.local < 1) {
    placement.notes.unshift(`not inside a Slurm allocation: ${names.nodes ?? PLACEMENT_OPTIONS.nodes} ${placement.vmHosts} emulates ${plural(placement.vmHosts, 'host')} on this machine (as --local ${placement.vmHosts})`);
  }
  const C = placement.mapBy ? placement.cpusPerRank : undefined;
  const config: SymrunConfig = {
    ...cfg,
    local: mode === 'local' ? placement.vmHosts : cfg.local,
    ...(mode === 'slurm' ? { nodes: placement.vmHosts } : {}),
    spares: placement.spares,
    vm: { ...cfg.vm, cpus: placement.cpusPerVm },
    mpi: {
      ...cfg.mpi,
      slotsPerVm: placement.slotsPerVm,
      ...(placement.np !== undefined ? { np: placement.np } : {}),
      ...(C !== undefined ? { cpusPerTask: C } : {}),
    },
  };
  return { config, placement, nodeNames };
}
