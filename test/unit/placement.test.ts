// Placement (launcher/src/coordinator/placement.ts): srun's and mpirun's -N, -n, --ntasks-per-node, -c
// mapped onto VMs, with the allocation's SLURM_* variables as defaults (captured in test/fixtures/slurm).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { planPlacement, resolvePlacement, describePlacement, type PlacementInput } from '../../launcher/src/coordinator/placement.js';
import { loadConfig, configOrigin } from '../../launcher/src/config/index.js';
import { SymError } from '../../launcher/src/errors.js';
import { repoRoot } from '../../launcher/src/defaults.js';
import { yamlFile } from '../fixtures/config/helpers.js';

function envFixture(f: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(repoRoot(), 'test/fixtures/slurm', f), 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
  }
  return env;
}

function thrown(fn: () => unknown): SymError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SymError) return e;
    throw e;
  }
  throw new Error('expected a SymError, none was thrown');
}

/** An error in the house style: stable code, exit 2, names the field and the value, says what to do. */
function usageError(t: any, e: SymError, code: string, field: string, value: unknown, msg: RegExp): void {
  t.equal(e.code, code, `${field}: code`);
  t.equal(e.exitCode, 2, `${field}: exit 2 (usage)`);
  t.equal(e.field, field, `${field}: field`);
  t.same(e.value, value, `${field}: value`);
  t.match(e.message, field, `${field}: the message names the field`);
  t.match(e.message, String(value), `${field}: the message names the value`);
  t.match(e.message, msg, `${field}: message`);
  t.ok(e.fix && e.fix.length > 10, `${field}: a fix`);
}

const slurm = (o: Partial<PlacementInput>): PlacementInput => ({ mode: 'slurm', hosts: 4, ...o });

t.test('local mode: --local N exactly as before (one VM per host, slots = vCPUs, every slot a rank)', async (t) => {
  t.same(planPlacement({ mode: 'local', local: 3 }), { mode: 'local', vmHosts: 3, spares: 0, np: undefined, slotsPerVm: 1, cpusPerVm: 1, cpusPerRank: 1, notes: [] });
  const p = planPlacement({ mode: 'local', local: '3', spares: '1', cpus: 2 });
  t.same([p.vmHosts, p.spares, p.slotsPerVm, p.cpusPerVm, p.np, p.mapBy], [3, 1, 2, 2, undefined, undefined]);
  t.equal(planPlacement({ mode: 'local', local: 2, np: 2 }).np, 2, 'hpcc test: --local 2 -np 2');
  t.same(planPlacement({ mode: 'local', local: 3, np: 6, slotsPerVm: 2 }).slotsPerVm, 2, 'examples/local/symrun.yaml');
  t.equal(planPlacement({ mode: 'local', local: 3, defaultCpus: 4 }).slotsPerVm, 4, 'slots default to the vCPUs of vm.cpus');
});

t.test('local mode: -N is --local; both must agree', async (t) => {
  t.equal(planPlacement({ mode: 'local', nodes: 3, spares: 1 }).vmHosts, 3);
  t.equal(planPlacement({ mode: 'local', nodes: 3, local: 3 }).vmHosts, 3, 'equal: fine');
  usageError(t, thrown(() => planPlacement({ mode: 'local', nodes: 2, local: 3 })), 'ESYM_PLACEMENT', '-N', 2, /disagree/);
  usageError(t, thrown(() => planPlacement({ mode: 'local', nodes: 65 })), 'ESYM_PLACEMENT', '-N', 65, /more emulated hosts/);
});

t.test('Slurm: -N defaults to the allocation minus spares; fewer nodes make more spares (a note names them)', async (t) => {
  const d = planPlacement(slurm({ hosts: 4, spares: 1 }));
  t.same([d.vmHosts, d.spares, d.notes], [3, 1, []]);
  const p = planPlacement(slurm({ hosts: 4, spares: 1, nodes: 2, nodeNames: ['n1', 'n2', 'n3', 'n4'] }));
  t.same([p.vmHosts, p.spares], [2, 2]);
  t.equal(p.notes.length, 1);
  t.match(p.notes[0], /-N 2: 1 more node of the 4 in the allocation runs no VM and becomes a spare too \(n3\): 2 spares in all/);
  t.equal(planPlacement(slurm({ hosts: 3, spares: 1, nodes: 2 })).notes.length, 0, '-N = allocation - spares: nothing to say');
});

t.test('Slurm: -N larger than the allocation minus spares, and spares eating the allocation, are errors', async (t) => {
  const e = thrown(() => planPlacement(slurm({ hosts: 3, spares: 1, nodes: 3 })));
  usageError(t, e, 'ESYM_PLACEMENT', '-N', 3, /3 nodes minus --spares 1 leaves 2/);
  t.match(e.fix!, /-N 2 or less/);
  t.match(e.fix!, /sbatch -N 4/);
  usageError(t, thrown(() => planPlacement(slurm({ hosts: 2, spares: 2 }))), 'ESYM_PLACEMENT', '--spares', 2, /none is left to run a VM/);
});

t.test('--ntasks-per-node K: K slots per VM; without -n, np = VMs x K', async (t) => {
  const p = planPlacement(slurm({ hosts: 3, spares: 1, nodes: 2, ntasksPerNode: 2 }));
  t.same([p.vmHosts, p.slotsPerVm, p.np, p.cpusPerVm], [2, 2, 4, 1]);
  const q = planPlacement(slurm({ hosts: 2, ntasksPerNode: 4, np: 6 }));
  t.same([q.slotsPerVm, q.np], [4, 6], '-n below VMs x K: fine');
  t.equal(planPlacement(slurm({ hosts: 2, ntasksPerNode: 2, slotsPerVm: 2 })).slotsPerVm, 2, 'the same number twice: fine');
  usageError(t, thrown(() => planPlacement(slurm({ hosts: 2, ntasksPerNode: 2, slotsPerVm: 3 }))), 'ESYM_PLACEMENT', '--slots-per-vm', 3, /disagree/);
});

t.test('-n N alone: ceil(N / VMs) slots per VM, mpirun fills vm1 first (idle VMs are noted)', async (t) => {
  const p = planPlacement(slurm({ hosts: 2, np: 3 }));
  t.same([p.vmHosts, p.slotsPerVm, p.np, p.cpusPerVm, p.mapBy], [2, 2, 3, 1, undefined]);
  t.same(p.notes, []);
  const q = planPlacement(slurm({ hosts: 3, np: 2 }));
  t.same([q.slotsPerVm, q.np], [1, 2]);
  t.match(q.notes.join('\n'), /2 ranks at 1 per VM fill 2 of 3 VMs .*vm3 runs no rank/);
  t.equal(planPlacement({ mode: 'local', local: 3, np: 6 }).slotsPerVm, 2, 'README: --local 3 -np 6 (was an error: 3 slots)');
});

t.test('-n larger than slots x VMs with ranks per VM given: an error (no oversubscription)', async (t) => {
  const e = thrown(() => planPlacement(slurm({ hosts: 2, ntasksPerNode: 2, np: 5 })));
  usageError(t, e, 'ESYM_PLACEMENT', '-n', 5, /more ranks than the 4 slots of 2 VMs \(--ntasks-per-node 2 per VM\)/);
  t.match(e.fix!, /lower -n to 4/);
  usageError(t, thrown(() => planPlacement({ mode: 'local', local: 2, slotsPerVm: 1, np: 3 })), 'ESYM_PLACEMENT', '-n', 3, /2 slots of 2 VMs/);
});

t.test('-c C: vCPUs per VM = slots x C, mpirun --map-by slot:PE=C', async (t) => {
  const p = planPlacement(slurm({ hosts: 3, spares: 1, nodes: 2, ntasksPerNode: 2, cpusPerTask: 1 }));
  t.same([p.slotsPerVm, p.np, p.cpusPerVm, p.cpusPerRank, p.mapBy], [2, 4, 2, 1, 'slot:PE=1']);
  const q = planPlacement(slurm({ hosts: 2, ntasksPerNode: 4, cpusPerTask: 2 }));
  t.same([q.cpusPerVm, q.cpusPerRank, q.mapBy], [8, 2, 'slot:PE=2']);
  const r = planPlacement({ mode: 'local', local: 2, cpusPerTask: 2 });
  t.same([r.slotsPerVm, r.cpusPerVm], [1, 2], '-c alone: one rank per VM (as srun -N 2 -c 2), 2 vCPUs');
  const s = planPlacement({ mode: 'local', local: 2, cpus: 8, cpusPerTask: 2 });
  t.same([s.slotsPerVm, s.cpusPerVm], [4, 8], 'with --cpus: slots = vCPUs / C');
  t.equal(planPlacement({ mode: 'local', local: 2, cpus: 6, cpusPerTask: 2, ntasksPerNode: 2 }).cpusPerVm, 6, '--cpus above slots x C: kept');
  t.equal(planPlacement({ mode: 'local', local: 2, cpus: 4, ntasksPerNode: 2 }).cpusPerRank, 2, 'without -c: vCPUs / slots');
});

t.test('-c contradictions: --cpus below slots x C, --cpus below C, slots x C above the VM limit', async (t) => {
  const e = thrown(() => planPlacement(slurm({ hosts: 2, ntasksPerNode: 2, cpusPerTask: 2, cpus: 3 })));
  usageError(t, e, 'ESYM_PLACEMENT', '--cpus', 3, /fewer vCPUs than 2 ranks per VM x -c 2 = 4/);
  t.match(e.fix!, /raise --cpus to 4/);
  usageError(t, thrown(() => planPlacement({ mode: 'local', local: 1, cpus: 1, cpusPerTask: 2 })), 'ESYM_PLACEMENT', '--cpus', 1, /fewer vCPUs than one rank needs/);
  usageError(t, thrown(() => planPlacement(slurm({ hosts: 1, ntasksPerNode: 64, cpusPerTask: 8 }))), 'ESYM_PLACEMENT', '-c', 8, /512 vCPUs, more than a VM can have \(256\)/);
});

t.test('values that are not positive whole numbers are errors naming the option and the value', async (t) => {
  const cases: Array<[Partial<PlacementInput>, string, unknown]> = [
    [{ nodes: '1.5' }, '-N', '1.5'],
    [{ nodes: 0 }, '-N', 0],
    [{ np: 'four' }, '-n', 'four'],
    [{ np: 2.5 }, '-n', 2.5],
    [{ ntasksPerNode: '-1' }, '--ntasks-per-node', '-1'],
    [{ cpusPerTask: 'x.yaml' }, '-c', 'x.yaml'],
    [{ cpusPerTask: 300 }, '-c', 300],
    [{ cpus: '0' }, '--cpus', '0'],
    [{ slotsPerVm: '' }, '--slots-per-vm', ''],
    [{ spares: -1 }, '--spares', -1],
  ];
  for (const [o, field, value] of cases) {
    const e = thrown(() => planPlacement(slurm(o)));
    t.equal(e.code, 'ESYM_PLACEMENT', JSON.stringify(o));
    t.equal(e.field, field, JSON.stringify(o));
    t.same(e.value, value, JSON.stringify(o));
    t.match(e.message, `${field} must be a whole number`, JSON.stringify(o));
    t.match(e.message, JSON.stringify(value), JSON.stringify(o));
    t.equal(e.exitCode, 2);
  }
  const named = thrown(() => planPlacement(slurm({ nodes: 9, names: { nodes: 'nodes' } })));
  t.equal(named.field, 'nodes', 'a key from symrun.yaml is named as the key');
  t.match(named.message, /^nodes 9 asks/);
});

t.test('Slurm environment as defaults, as srun reads it inside sbatch', async (t) => {
  // sbatch -N3 -n5: SLURM_NTASKS=5, no per-node count
  const a = planPlacement({ mode: 'slurm', env: envFixture('env-batch-N3-n5.txt') });
  t.same([a.vmHosts, a.slotsPerVm, a.np, a.cpusPerVm, a.mapBy], [3, 2, 5, 1, undefined], 'hosts from SLURM_JOB_NUM_NODES, -n from SLURM_NTASKS');
  t.match(a.notes.join('\n'), /ranks from the allocation: SLURM_NTASKS=5 \(-n\)/);
  // sbatch -N2 --ntasks-per-node=2 -c 1: SLURM_NTASKS=4 is derived (2 x 2), not a -n of its own
  const b = planPlacement({ mode: 'slurm', env: envFixture('env-batch-N2-ntasks-per-node2-c1.txt'), spares: 1 });
  t.same([b.vmHosts, b.slotsPerVm, b.np, b.cpusPerVm, b.mapBy], [1, 2, 2, 2, 'slot:PE=1'], 'per node from SLURM_NTASKS_PER_NODE, -c from SLURM_CPUS_PER_TASK; np follows the VMs');
  // sbatch -N1: no task variables at all
  const c = planPlacement({ mode: 'slurm', env: envFixture('env-batch-N1.txt') });
  t.same([c.vmHosts, c.slotsPerVm, c.np, c.notes], [1, 1, undefined, []]);
  // an explicit -n beside --ntasks-per-node stays
  const d = planPlacement({ mode: 'slurm', env: { SLURM_JOB_NUM_NODES: '3', SLURM_NTASKS: '5', SLURM_NTASKS_PER_NODE: '2' } });
  t.same([d.slotsPerVm, d.np], [2, 5]);
  // compressed SLURM_NTASKS_PER_NODE
  const e = planPlacement({ mode: 'slurm', env: { SLURM_JOB_NODELIST: 'n[1-3]', SLURM_NTASKS_PER_NODE: '2(x3)' } });
  t.same([e.vmHosts, e.slotsPerVm, e.np], [3, 2, 6], 'hosts from SLURM_JOB_NODELIST; "2(x3)" = 2 per node');
  const f = planPlacement({ mode: 'slurm', env: { SLURM_JOB_NUM_NODES: '3', SLURM_NTASKS_PER_NODE: '2(x2),1', SLURM_NTASKS: '5' } });
  t.same([f.slotsPerVm, f.np], [2, 5]);
  t.match(f.notes.join('\n'), /differs between nodes: every VM gets 2 slots/);
  t.same(planPlacement({ mode: 'slurm', env: { SLURM_JOB_NUM_NODES: '2', SLURM_NPROCS: '3' } }).np, 3, 'SLURM_NPROCS when SLURM_NTASKS is missing');
  t.same(planPlacement({ mode: 'local', local: 2, env: { SLURM_NTASKS: '7', SLURM_CPUS_PER_TASK: '4' } }).np, undefined, 'local mode ignores the allocation');
});

t.test('command-line options win over the environment', async (t) => {
  const env = { SLURM_JOB_NUM_NODES: '3', SLURM_NTASKS: '6', SLURM_NTASKS_PER_NODE: '2', SLURM_CPUS_PER_TASK: '2' };
  const a = planPlacement({ mode: 'slurm', env, ntasksPerNode: 1, cpusPerTask: 1 });
  t.same([a.slotsPerVm, a.np, a.cpusPerVm, a.mapBy], [1, 3, 1, 'slot:PE=1']);
  t.match(a.notes.join('\n'), /--ntasks-per-node given: SLURM_NTASKS and SLURM_NTASKS_PER_NODE of the allocation not used/);
  const b = planPlacement({ mode: 'slurm', env, np: 4 });
  t.same([b.slotsPerVm, b.np, b.cpusPerVm], [2, 4, 4], '-n on the line: per-node count of the allocation not used; -c 2 from it still is');
  const c = planPlacement({ mode: 'slurm', env, nodes: 2 });
  t.same([c.vmHosts, c.spares, c.slotsPerVm, c.np], [2, 1, 2, 4], '-N 2 in a -N3 --ntasks-per-node=2 allocation: 2 VMs x 2');
  t.equal(planPlacement({ mode: 'slurm', env, hosts: 5 }).vmHosts, 5, 'the hosts the job really got win over SLURM_JOB_NUM_NODES');
});

t.test('a broken allocation environment is an error naming the variable', async (t) => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ SLURM_JOB_NUM_NODES: '2', SLURM_NTASKS: 'many' }, 'SLURM_NTASKS'],
    [{ SLURM_JOB_NUM_NODES: '2', SLURM_CPUS_PER_TASK: '0' }, 'SLURM_CPUS_PER_TASK'],
    [{ SLURM_JOB_NUM_NODES: '2', SLURM_NTASKS_PER_NODE: '2(3)' }, 'SLURM_NTASKS_PER_NODE'],
    [{ SLURM_JOB_NUM_NODES: 'x' }, 'SLURM_JOB_NUM_NODES'],
  ];
  for (const [env, field] of cases) {
    const e = thrown(() => planPlacement({ mode: 'slurm', env }));
    t.equal(e.code, 'ESYM_BAD_SLURM_ENV', field);
    t.equal(e.field, field);
    t.match(e.message, field);
    t.match(e.message, env[field]!);
    t.ok(e.fix);
  }
  const none = thrown(() => planPlacement({ mode: 'slurm', env: {} }));
  t.equal(none.code, 'ESYM_NOT_IN_SLURM');
});

t.test('describePlacement: one line for the job log', async (t) => {
  const p = planPlacement(slurm({ hosts: 3, spares: 1, nodes: 2, ntasksPerNode: 2, cpusPerTask: 1 }));
  t.equal(describePlacement(p, ['n1', 'n2', 'n3']), '2 VMs on n1, n2, 4 ranks (2 per VM), 2 vCPUs per VM, 1 vCPU bound to each rank (--map-by slot:PE=1); spare: n3');
  t.equal(describePlacement(planPlacement({ mode: 'local', local: 1 })), '1 VM, 1 rank (1 per VM), 1 vCPU per VM');
});

const env3 = { SLURM_JOB_ID: '7', SLURM_JOB_NODELIST: 'n[1-3]', SLURM_JOB_NUM_NODES: '3' };

t.test('resolvePlacement writes the plan into the configuration; planning it again gives the same', async (t) => {
  const cfg = loadConfig({ env: {}, overrides: { spares: 1, nodes: '2', ntasksPerNode: '2', cpusPerTask: '1' } });
  const r = resolvePlacement(cfg, { env: env3, origin: (p) => configOrigin(cfg, p) })!;
  t.same(r.nodeNames, ['n1', 'n2', 'n3']);
  t.same([r.config.nodes, r.config.spares, r.config.local, r.config.vm.cpus, r.config.mpi.slotsPerVm, r.config.mpi.np, r.config.mpi.cpusPerTask], [2, 1, 0, 2, 2, 4, 1]);
  t.equal(cfg.vm.cpus, 1, 'the loaded config is not changed');
  const c = r.config;
  const again = planPlacement({ mode: 'slurm', hosts: 3, nodes: c.nodes, spares: c.spares, np: c.mpi.np, ntasksPerNode: c.mpi.ntasksPerNode, slotsPerVm: c.mpi.slotsPerVm, cpusPerTask: c.mpi.cpusPerTask, cpus: c.vm.cpus });
  t.same([again.vmHosts, again.spares, again.slotsPerVm, again.np, again.cpusPerVm, again.mapBy], [2, 1, 2, 4, 2, 'slot:PE=1'], 'as coordinator/job.ts plans it');
  // SLURM_* defaults land in the config too
  const fromEnv = resolvePlacement(loadConfig({ env: {} }), { env: { ...envFixture('env-batch-N3-n5.txt') } })!;
  t.same([fromEnv.config.mpi.np, fromEnv.config.mpi.slotsPerVm], [5, 2]);
});

t.test('resolvePlacement: vm.cpus given in symrun.yaml counts as --cpus; errors name the key', async (t) => {
  const file = yamlFile('vm: { cpus: 3 }\nmpi: { ntasksPerNode: 2, cpusPerTask: 2 }\n');
  const cfg = loadConfig({ file, env: {} });
  t.equal(configOrigin(cfg, 'vm.cpus'), 'vm.cpus');
  t.equal(configOrigin(cfg, 'mpi.np'), undefined, 'defaults have no origin');
  const e = thrown(() => resolvePlacement(cfg, { env: env3, origin: (p) => configOrigin(cfg, p) }));
  t.equal(e.field, 'vm.cpus');
  t.match(e.message, /^vm\.cpus 3 is fewer vCPUs than 2 ranks per VM x mpi\.cpusPerTask 2 = 4/);
  const cli = loadConfig({ file, env: {}, overrides: { cpus: '8' } });
  t.equal(configOrigin(cli, 'vm.cpus'), '--cpus', 'the option wins');
  t.equal(resolvePlacement(cli, { env: env3, origin: (p) => configOrigin(cli, p) })!.config.vm.cpus, 8);
  const dflt = loadConfig({ file: yamlFile('mpi: { ntasksPerNode: 2, cpusPerTask: 2 }\n'), env: {} });
  t.equal(resolvePlacement(dflt, { env: env3, origin: (p) => configOrigin(dflt, p) })!.config.vm.cpus, 4, 'vm.cpus not given: slots x C');
});

t.test('resolvePlacement: mode from --local, the allocation, or -N alone (= --local N)', async (t) => {
  t.equal(resolvePlacement(loadConfig({ env: {} }), { env: {} }), undefined, 'nowhere to run: left to the job (ESYM_NO_HOSTS)');
  const local = resolvePlacement(loadConfig({ env: {}, overrides: { nodes: 3 } }), { env: {} })!;
  t.same([local.placement.mode, local.config.local, local.placement.vmHosts], ['local', 3, 3]);
  t.match(local.placement.notes[0], /not inside a Slurm allocation: -N 3 emulates 3 hosts on this machine \(as --local 3\)/);
  const inAlloc = resolvePlacement(loadConfig({ env: {}, overrides: { local: 2 } }), { env: env3 })!;
  t.same([inAlloc.placement.mode, inAlloc.config.local, inAlloc.config.nodes], ['local', 2, undefined], '--local wins inside an allocation, as before');
  const s = resolvePlacement(loadConfig({ env: {}, overrides: { spares: 1 } }), { env: env3 })!;
  t.same([s.placement.mode, s.config.nodes, s.config.spares, s.config.vm.cpus, s.config.mpi.slotsPerVm, s.config.mpi.np], ['slurm', 2, 1, 1, 1, undefined], 'defaults: as before');
});
