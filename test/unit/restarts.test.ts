// Reactive restarts (coordinator/job/restarts.ts): the run loop (supervise) wakes up when a host with
// VMs is lost while mpirun runs, and restarts the job within the --max-restarts budget. A recovered
// coordinator resumes the budget its predecessor left (resume): it does not start counting from zero.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../launcher/src/config/load.js';
import { Restarts, type RestartDeps, type RestartLogEntry } from '../../launcher/src/coordinator/job/restarts.js';
import type { JobContext, VmState } from '../../launcher/src/coordinator/job/context.js';
import type { SymError } from '../../launcher/src/errors.js';

/** A job of 2 VMs on h1, h2 with the spare h3, mpirun running (never ends by itself), checkpoints in an empty directory. */
function rig(t: { teardown(fn: () => void): void }, maxRestarts: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'restarts-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({ env: {}, cwd: dir, overrides: { checkpointDir: path.join(dir, 'ckpt'), maxRestarts } });
  fs.mkdirSync(config.checkpoint.dir!);
  const said: string[] = [];
  const vms = new Map<string, VmState>();
  for (const [i, h] of ['h1', 'h2'].entries()) {
    vms.set(`vm${i + 1}`, { name: `vm${i + 1}`, index: i + 1, host: h, mac: '', ip: '', tap: '', state: 'running', client: { detach: () => undefined } as unknown as VmState['client'] });
  }
  const job = {
    id: 'j1', runDir: dir, opts: { config, app: ['./ring'], cwd: dir }, config, vms, lostHosts: new Set<string>(), macSeed: 'j1', state: 'running',
    say: (m: string) => said.push(m), event: () => undefined, phase: <T>(_n: string, fn: () => Promise<T>) => fn(), onCleanup: () => undefined, saveRecovery: () => undefined,
  } as unknown as JobContext;
  const deps = {
    agents: { drop: () => undefined, probe: async () => undefined },
    migrations: { list: () => [] },
    checkpoints: { active: () => undefined },
    access: { hosts: () => ['h1', 'h2', 'h3'].map((name) => ({ name, usable: !job.lostHosts.has(name) })) },
    checkAllocation: async () => undefined,
    evaluatePolicy: () => undefined,
  } as unknown as RestartDeps;
  return { job, restarts: new Restarts(job, deps), said };
}

const never = () => new Promise<number>(() => undefined);
const earlier: RestartLogEntry = { at: '2026-12-05T10:00:00.000Z', hosts: ['h4'], why: 'its host agent\'s connection closed', from: 'ck1', ms: 900 };

t.test('a fresh job: 0 of --max-restarts used', async (t) => {
  const { restarts } = rig(t, 3);
  t.equal(restarts.count, 0);
  t.equal(restarts.max, 3, 'the budget is --max-restarts');
});

t.test('a recovered job with its whole budget used: a loss ends it (no fourth restart)', async (t) => {
  const { restarts } = rig(t, 3);
  restarts.resume({ used: 3, max: 3, log: [earlier, earlier, earlier] });
  const ran = restarts.supervise(never());
  restarts.hostLost('h1', 'its host agent\'s connection closed');
  const e = await ran.then(() => undefined, (x: SymError) => x);
  t.equal(e?.code, 'ESYM_RESTART_LIMIT', 'the successor refuses: the dead coordinator had used them all');
  t.match(e?.message, /all 3 restarts \(--max-restarts\) are used up/);
  t.equal(restarts.count, 3, 'none counted beyond the budget');
});

t.test('a recovered job with budget left: the loss is handled as a restart, counted on from where it was', async (t) => {
  const { restarts, job } = rig(t, 3);
  restarts.resume({ used: 2, max: 3, log: [earlier, earlier] });
  const ran = restarts.supervise(never());
  restarts.hostLost('h2', 'its host agent has not answered for 6.1 s');
  // no checkpoint in the directory (and no --restart-from-start): the restart itself fails, after it was counted
  const e = await ran.then(() => undefined, (x: SymError) => x);
  t.equal(e?.code, 'ESYM_NO_CHECKPOINT', 'the supervised mpirun is restarted (the budget allowed it)');
  t.equal(restarts.count, 3, 'the third restart of three');
  t.same(restarts.log.map((l) => l.hosts), [['h4'], ['h4'], ['h2']], 'the log goes on after the dead coordinator\'s entries');
  t.ok(job.lostHosts.has('h2'));
});

t.test('the budget a recovered job resumes wins over a config it was not started with', async (t) => {
  const { restarts } = rig(t, 5);
  restarts.resume({ used: 1, max: 1, log: [earlier] });
  const ran = restarts.supervise(never());
  restarts.hostLost('h1', 'gone');
  const e = await ran.then(() => undefined, (x: SymError) => x);
  t.equal(e?.code, 'ESYM_RESTART_LIMIT');
  t.match(e?.message, /all 1 restarts/);
});
