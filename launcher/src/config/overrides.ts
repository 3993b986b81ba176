// CLI options over the file: which option sets which config path, merged into the raw object with
// the origin of every path remembered (errors name the option as the user typed it).
import { type Seg, getAt, isPlainObject } from './problems.js';

export interface ConfigOverrides {
  accel?: string;
  image?: string;
  memory?: string;
  cpus?: string | number;
  local?: string | number;
  spares?: string | number;
  np?: string | number;
  slotsPerVm?: string | number;
  nodes?: string | number;
  ntasksPerNode?: string | number;
  cpusPerTask?: string | number;
  tagOutput?: boolean;
  mpi?: string;
  mca?: Array<[string, string]>;
  hosts?: string[];
  subnet?: string;
  quiesce?: string;
  migrationTls?: string;
  transport?: string;
  checkpointDir?: string;
  checkpointInterval?: string | number;
  keep?: string | number;
  maxRestarts?: string | number;
  restartFromStart?: boolean;
}

/** The CLI option that sets each override; used to name the option in errors. */
export const OVERRIDE_OPTIONS: Readonly<Record<keyof ConfigOverrides, string>> = {
  accel: '--accel',
  image: '--image',
  memory: '--memory',
  cpus: '--cpus',
  local: '--local',
  spares: '--spares',
  np: '-np',
  slotsPerVm: '--slots-per-vm',
  nodes: '-N',
  ntasksPerNode: '--ntasks-per-node',
  cpusPerTask: '--cpus-per-task',
  tagOutput: '--tag-output',
  mpi: '--mpi',
  mca: '--mca',
  hosts: '--hosts',
  subnet: '--subnet',
  quiesce: '--quiesce',
  migrationTls: '--migration-tls',
  transport: '--transport',
  checkpointDir: '--checkpoint-dir',
  checkpointInterval: '--checkpoint-interval',
  keep: '--keep',
  maxRestarts: '--max-restarts',
  restartFromStart: '--restart-from-start',
};

/** Where each override lands in the YAML shape. */
export const OVERRIDE_PATHS: Readonly<Record<keyof ConfigOverrides, readonly string[]>> = {
  accel: ['accel'],
  image: ['image'],
  memory: ['vm', 'memory'],
  cpus: ['vm', 'cpus'],
  local: ['local'],
  spares: ['spares'],
  np: ['mpi', 'np'],
  slotsPerVm: ['mpi', 'slotsPerVm'],
  nodes: ['nodes'],
  ntasksPerNode: ['mpi', 'ntasksPerNode'],
  cpusPerTask: ['mpi', 'cpusPerTask'],
  tagOutput: ['mpi', 'tagOutput'],
  mpi: ['mpi', 'implementation'],
  mca: ['mpi', 'mca'],
  hosts: ['hosts'],
  subnet: ['network', 'subnet'],
  quiesce: ['migration', 'quiesce'],
  migrationTls: ['migration', 'tls'],
  transport: ['interconnect', 'transport'],
  checkpointDir: ['checkpoint', 'dir'],
  checkpointInterval: ['checkpoint', 'interval'],
  keep: ['checkpoint', 'keep'],
  maxRestarts: ['checkpoint', 'maxRestarts'],
  restartFromStart: ['checkpoint', 'restartFromStart'],
};

export const INTEGER_OVERRIDES: ReadonlySet<keyof ConfigOverrides> = new Set(['cpus', 'local', 'spares', 'np', 'slotsPerVm', 'nodes', 'ntasksPerNode', 'cpusPerTask', 'keep', 'maxRestarts']);



export function toIntIfNumeric(v: string | number): string | number {
  if (typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v)) return Number(v);
  return v;
}

export function setAt(obj: Record<string, unknown>, p: readonly string[], value: unknown): void {
  let cur = obj;
  for (const seg of p.slice(0, -1)) {
    if (!isPlainObject(cur[seg])) cur[seg] = {};
    cur = cur[seg] as Record<string, unknown>;
  }
  cur[p[p.length - 1]!] = value;
}

/** Merge overrides into raw (mutates); returns path-prefix -> option name. */
export function applyOverrides(
  raw: Record<string, unknown>,
  ov: ConfigOverrides,
  names: Record<keyof ConfigOverrides, string>,
): Map<string, string> {
  const origin = new Map<string, string>();
  for (const key of Object.keys(OVERRIDE_PATHS) as Array<keyof ConfigOverrides>) {
    let v: unknown = ov[key];
    if (v === undefined) continue;
    const p = OVERRIDE_PATHS[key];
    if (key === 'mca') {
      const pairs = v as Array<[string, string]>;
      const cur = getAt(raw, p);
      const mca: Record<string, unknown> = isPlainObject(cur) ? { ...cur } : {};
      for (const [name, value] of pairs) {
        mca[name] = value;
        origin.set(JSON.stringify([...p, name]), names.mca);
      }
      setAt(raw, p, mca);
      continue;
    }
    if (key === 'hosts') {
      v = (v as string[]).flatMap((h) => String(h).split(',')).map((h) => h.trim()).filter((h) => h !== '');
    } else if (INTEGER_OVERRIDES.has(key)) {
      v = toIntIfNumeric(v as string | number);
    }
    setAt(raw, p, v);
    origin.set(JSON.stringify(p), names[key]);
  }
  return origin;
}

export function optionFor(origin: Map<string, string>, p: readonly Seg[]): string | undefined {
  for (let n = p.length; n > 0; n--) {
    const o = origin.get(JSON.stringify(p.slice(0, n)));
    if (o) return o;
  }
  return undefined;
}
