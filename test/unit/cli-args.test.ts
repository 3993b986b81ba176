// The command line (launcher/src/main.ts): mpirun's and srun's spellings, -c = --cpus-per-task,
// -C = --config, and placement errors before anything starts.
import t from 'tap';
import { normalizeArgs, typedAs, main } from '../../launcher/src/main.js';
import { loadConfig } from '../../launcher/src/config/index.js';
import { checkExtraArgs } from '../../launcher/src/coordinator/hosts.js';

/** Run main(argv) and collect what it writes on stderr. */
async function run(argv: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stderr: string }> {
  const write = process.stderr.write;
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) { saved[k] = process.env[k]; if (v === undefined) delete process.env[k]; else process.env[k] = v; }
  let stderr = '';
  process.stderr.write = ((s: string | Uint8Array) => { stderr += String(s); return true; }) as typeof process.stderr.write;
  try {
    return { code: await main(argv), stderr };
  } finally {
    process.stderr.write = write;
    for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
  }
}

const noSlurm = { SLURM_JOB_ID: undefined, SLURM_JOBID: undefined, SYMRUN_CONFIG: undefined };

t.test('normalizeArgs: -np, --ntasks, -npernode/--npernode, --mca NAME VALUE', async (t) => {
  t.same(normalizeArgs(['-np', '4']), ['--np', '4']);
  t.same(normalizeArgs(['--ntasks', '4', '--ntasks=5']), ['--np', '4', '--np=5']);
  t.same(normalizeArgs(['-npernode', '2', '--npernode=3']), ['--ntasks-per-node', '2', '--ntasks-per-node=3']);
  t.same(normalizeArgs(['--mca', 'btl', 'self,tcp']), ['--mca', 'btl=self,tcp']);
  t.same(normalizeArgs(['-N', '2', '--nodes=2', '-n', '3', '--ntasks-per-node', '2', '-c', '1', '--cpus-per-task=1']),
    ['-N', '2', '--nodes=2', '-n', '3', '--ntasks-per-node', '2', '-c', '1', '--cpus-per-task=1'], "symrun's own options pass through");
});

t.test('typedAs: the spelling the user typed last', async (t) => {
  t.equal(typedAs(['-c', '2'], ['-c', '--cpus-per-task']), '-c');
  t.equal(typedAs(['--cpus-per-task=2'], ['-c', '--cpus-per-task']), '--cpus-per-task');
  t.equal(typedAs(['-c2'], ['-c', '--cpus-per-task']), '-c');
  t.equal(typedAs(['-np', '4'], ['-n', '-np', '--np', '--ntasks']), '-np', '-np is not -n');
  t.equal(typedAs(['-n4', '--local', '2'], ['-n', '-np']), '-n');
  t.equal(typedAs(['--', '-c', 'x'], ['-c']), undefined, 'not after --');
});

t.test('-c is --cpus-per-task: a file name gets a message pointing at --config / -C', async (t) => {
  const r = await run(['-c', 'symrun.yaml', '--', 'true'], noSlurm);
  t.equal(r.code, 2);
  t.match(r.stderr, /-c is --cpus-per-task \(as in srun\).*not "symrun\.yaml"; the configuration file is --config FILE \(-C FILE\)/);
  t.match(r.stderr, /field: -c/);
  t.match(r.stderr, /fix:\s+symrun --config symrun\.yaml/);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  const long = await run(['--cpus-per-task', 'two', '--', 'true'], noSlurm);
  t.equal(long.code, 2);
  t.match(long.stderr, /--cpus-per-task must be a whole number of vCPUs per rank/);
  const cfg = await run(['config', '-c', 'x.yaml'], noSlurm);
  t.equal(cfg.code, 2);
  t.match(cfg.stderr, /-c is --cpus-per-task/);
  const missing = await run(['-C', '/nonexistent/symrun.yaml', '--', 'true'], noSlurm);
  t.match(missing.stderr, /config file not found: \/nonexistent\/symrun\.yaml/, '-C is --config');
});

t.test('placement errors stop symrun before anything starts (exit 2, option as typed)', async (t) => {
  const a = await run(['-N', '2', '--local', '3', '--', 'true'], noSlurm);
  t.equal(a.code, 2);
  t.match(a.stderr, /-N 2 and --local 3 disagree/);
  const slurm = { ...noSlurm, SLURM_JOB_ID: '9', SLURM_JOB_NODELIST: 'n[1-3]', SLURM_JOB_NUM_NODES: '3', SLURM_NNODES: '3' };
  const b = await run(['--spares', '1', '--nodes', '3', '--', 'true'], slurm);
  t.equal(b.code, 2);
  t.match(b.stderr, /--nodes 3 asks for more nodes than the allocation has for VMs: 3 nodes minus --spares 1 leaves 2/);
  const c = await run(['--ntasks', '5', '--npernode', '1', '--', 'true'], slurm);
  t.equal(c.code, 2);
  t.match(c.stderr, /--ntasks 5 asks for more ranks than the 3 slots of 3 VMs \(--npernode 1 per VM\)/);
  const d = await run(['-np', '7', '--npernode', '2', '--', 'true'], slurm);
  t.match(d.stderr, /-np 7 asks for more ranks than the 6 slots of 3 VMs \(--npernode 2 per VM\)/);
});

t.test('--local 0 is a usage error naming --local (it was once taken for "not given": exit 4)', async (t) => {
  const r = await run(['--local', '0', '--', 'true'], noSlurm);
  t.equal(r.code, 2);
  t.match(r.stderr, /--local must be at least 1/);
  t.match(r.stderr, /field: --local/);
});

t.test('vm.extraArgs on a site node: refused naming the field unless node.conf allows them', async (t) => {
  const base = loadConfig({ overrides: { local: 1 } });
  const withArgs = { ...base, vm: { ...base.vm, extraArgs: ['-monitor', 'stdio'] } };
  t.throws(() => checkExtraArgs(withArgs, false), { code: 'ESYM_EXTRA_ARGS', field: 'vm.extraArgs', value: '-monitor stdio', exitCode: 2 });
  t.doesNotThrow(() => checkExtraArgs(withArgs, true), 'the site allows them');
  t.doesNotThrow(() => checkExtraArgs(base, false), 'none given: nothing to refuse');
});
