// SLURM_* environment codec (launcher/src/slurm/env.ts) on environments captured from batch scripts,
// steps and a prolog on the Slurm 22.05.8 lab cluster: test/fixtures/slurm/env-*.txt.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../launcher/src/defaults.js';
import { SymError } from '../../launcher/src/errors.js';
import { expandCounts, inSlurmJob, parseSlurmEnv, type Env } from '../../launcher/src/slurm/env.js';

function envFixture(f: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(repoRoot(), 'test/fixtures/slurm', f), 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
  }
  return env;
}

function thrown(fn: () => unknown): SymError | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof SymError) return e;
    throw e;
  }
  return undefined;
}

t.test('batch script of sbatch -N3 -n5', async (t) => {
  const a = parseSlurmEnv(envFixture('env-batch-N3-n5.txt'));
  t.equal(a.jobId, '3');
  t.same(a.nodeList, ['n1', 'n2', 'n3']);
  t.equal(a.numNodes, 3);
  t.equal(a.numTasks, 5);
  t.same(a.tasksPerNode, [2, 2, 1], 'SLURM_TASKS_PER_NODE=2(x2),1');
  t.same(a.cpusPerNode, [2, 2, 1]);
  t.equal(a.ntasksPerNode, undefined, 'only set with --ntasks-per-node');
  t.equal(a.cpusPerTask, undefined, 'only set with -c');
  t.equal(a.nodeName, 'n1');
  t.equal(a.clusterName, 'lab');
  t.equal(a.partition, 'lab');
  t.equal(a.stepId, undefined, 'a batch script is no step');
  t.equal(a.submitDir, '/run/symrun-slurmlab/lab/work');
});

t.test('a task of that job (srun)', async (t) => {
  const a = parseSlurmEnv(envFixture('env-step-N3-n5-rank4.txt'));
  t.equal(a.stepId, '0');
  t.equal(a.nodeName, 'n3');
  t.same(a.tasksPerNode, [2, 2, 1]);
});

t.test('sbatch -N2 --ntasks-per-node=2 -c 1', async (t) => {
  const a = parseSlurmEnv(envFixture('env-batch-N2-ntasks-per-node2-c1.txt'));
  t.same(a.nodeList, ['n1', 'n2']);
  t.equal(a.numTasks, 4);
  t.equal(a.ntasksPerNode, 2);
  t.equal(a.cpusPerTask, 1);
  t.same(a.tasksPerNode, [2, 2]);
  const s = parseSlurmEnv(envFixture('env-step-N2-ntasks-per-node2-c1-rank3.txt'));
  t.equal(s.nodeName, 'n2');
});

t.test('sbatch -N1: no task count variables at all', async (t) => {
  const a = parseSlurmEnv(envFixture('env-batch-N1.txt'));
  t.same(a.nodeList, ['n1']);
  t.equal(a.numNodes, 1);
  t.equal(a.numTasks, undefined);
});

t.test('a node prolog sees SLURM_NODELIST, not SLURM_JOB_NODELIST', async (t) => {
  const env = envFixture('env-prolog-N3.txt');
  t.equal(env.SLURM_JOB_NODELIST, undefined, 'as measured on Slurm 22.05 (docs/lab-notes.md)');
  const a = parseSlurmEnv(env);
  t.same(a.nodeList, ['n1', 'n2', 'n3']);
  t.equal(a.numNodes, 3, 'from SLURM_JOB_NUM_NODES');
  t.same(a.cpusPerNode, [2, 2, 1]);
});

t.test('outside a job, and broken environments', async (t) => {
  t.notOk(inSlurmJob({}));
  t.ok(inSlurmJob({ SLURM_JOB_ID: '7' }));
  const out = thrown(() => parseSlurmEnv({}));
  t.equal(out?.code, 'ESYM_NOT_IN_SLURM');
  t.equal(out?.field, 'SLURM_JOB_ID');
  t.ok(out?.fix);
  const base: Env = { SLURM_JOB_ID: '9', SLURM_JOB_NODELIST: 'n[1-2]', SLURM_NNODES: '2' };
  t.same(parseSlurmEnv(base).nodeList, ['n1', 'n2']);
  const cases: Array<[Env, string, string]> = [
    [{ ...base, SLURM_NNODES: '3' }, 'SLURM_NNODES', 'count contradicts the list'],
    [{ ...base, SLURM_JOB_NODELIST: 'n[2-1]' }, 'SLURM_JOB_NODELIST', 'bad hostlist'],
    [{ ...base, SLURM_JOB_NODELIST: '' }, 'SLURM_JOB_NODELIST', 'empty list'],
    [{ ...base, SLURM_NTASKS: 'x' }, 'SLURM_NTASKS', 'not a number'],
    [{ ...base, SLURM_CPUS_PER_TASK: '0' }, 'SLURM_CPUS_PER_TASK', 'zero'],
    [{ ...base, SLURM_TASKS_PER_NODE: '2(x3)' }, 'SLURM_TASKS_PER_NODE', 'counts for 3 nodes, 2 allocated'],
    [{ ...base, SLURM_TASKS_PER_NODE: '2(3)' }, 'SLURM_TASKS_PER_NODE', 'malformed repeat'],
    [{ ...base, SLURM_JOB_ID: 'abc' }, 'SLURM_JOB_ID', 'not a job id'],
  ];
  for (const [env, field, why] of cases) {
    const e = thrown(() => parseSlurmEnv(env));
    t.ok(e, why);
    t.equal(e?.field, field, `${why}: field`);
    t.ok(e?.fix, `${why}: fix`);
  }
});

t.test('expandCounts', async (t) => {
  t.same(expandCounts('2(x3),1'), [2, 2, 2, 1]);
  t.same(expandCounts('4'), [4]);
  t.same(expandCounts('1(x2),3,2(x1)'), [1, 1, 3, 2]);
});

function code(e: unknown): string | undefined {
  return e instanceof SymError ? e.code : undefined;
}
function caught(fn: () => unknown): unknown {
  try { fn(); } catch (e) { return e; }
  return undefined;
}

t.test('slurm env: regression: many repeat groups are refused, not expanded (found by fast-check)', async (t) => {
  const e = caught(() => expandCounts(Array(40).fill('1(x1000000)').join(',')));
  t.equal(code(e), 'ESYM_BAD_SLURM_ENV', 'SLURM_TASKS_PER_NODE adding up to 40 million entries');
  const e2 = caught(() => parseSlurmEnv({ SLURM_JOB_ID: '1', SLURM_JOB_NODELIST: 'n1', SLURM_NTASKS_PER_NODE: '1(x1000000)' }));
  t.ok(e2 === undefined || code(e2) === 'ESYM_BAD_SLURM_ENV', 'SLURM_NTASKS_PER_NODE=1(x1000000) is no RangeError');
  t.equal(code(caught(() => parseSlurmEnv({ SLURM_JOB_ID: '1', SLURM_JOB_NODELIST: 'n1', SLURM_NTASKS: '99999999999999999999999' }))), 'ESYM_BAD_SLURM_ENV', 'unsafe integer');
});
