// The one protocol engine (protocol/machine.ts) over its three tables: rules every protocol shares.
import t from 'tap';
import { machine, TERMINALS, type Machine, type ProtocolEvent } from '../../launcher/src/protocol/machine.js';
import { MIGRATION } from '../../launcher/src/protocol/migration.js';
import { CHECKPOINT } from '../../launcher/src/protocol/checkpoint.js';
import { RESTART } from '../../launcher/src/protocol/restart.js';
import { Executor, type Ports } from '../../launcher/src/protocol/executor.js';

// eslint-style any: the three machines have different phase types; the rules are checked on each
const ALL = [MIGRATION, CHECKPOINT, RESTART] as unknown as Array<Machine<string, string, string>>;

/** Run to the end: the phase `failAt` fails (attempt after attempt), every other one succeeds. */
function runTo(m: Machine<string, string, string>, failAt?: string): { phases: string[]; end: string; leftovers: number } {
  let s = m.initialState();
  const phases: string[] = [];
  const q: Array<ProtocolEvent<string>> = [{ type: 'start' }];
  for (let guard = 0; q.length && guard < 200; guard++) {
    const r = m.step(s, q.shift()!);
    s = r.state;
    for (const e of r.effects) if (e.kind === 'run') { phases.push(e.phase); q.push(e.phase === failAt ? { type: 'fail', phase: e.phase, message: 'x' } : { type: 'ok', phase: e.phase }); }
  }
  return { phases, end: s.phase, leftovers: s.leftovers.length };
}

t.test('every protocol: every phase has a recovery action, and every run reaches a terminal phase', async (t) => {
  for (const m of ALL) {
    const p = m.protocol;
    for (const ph of [...p.forward, ...p.rollback]) t.ok(['rollback', 'rerun', 'from-start'].includes(m.recoveryFor(ph)!), `${p.kind}: ${ph} has a recovery action`);
    t.equal(m.recoveryFor('new'), undefined);
    t.equal(runTo(m).end, 'done', `${p.kind}: happy path ends done`);
    for (const f of [...p.forward, ...p.rollback]) {
      const r = runTo(m, f);
      t.ok((TERMINALS as readonly string[]).includes(r.end), `${p.kind}: failing ${f} ends in a terminal phase (${r.end})`);
      t.ok(r.phases.length < 60, `${p.kind}: failing ${f} does not loop`);
    }
  }
});

t.test('a protocol without rollback (restart) ends failed at the first failure', async (t) => {
  const r = runTo(RESTART as unknown as Machine<string, string, string>, 'replug');
  t.same(r.phases, ['stop', 'restore', 'cont', 'replug']);
  t.equal(r.end, 'failed');
});

t.test('point of no return: a cancel is refused after it, and failures go forward (degraded)', async (t) => {
  const m = MIGRATION;
  let s = m.initialState();
  for (const e of [{ type: 'start' }, ...['prepare', 'quiesce', 'unplug', 'perform'].map((phase) => ({ type: 'ok', phase }))] as Array<ProtocolEvent<never>>) s = m.step(s, e).state;
  t.equal(s.phase, 'finish');
  t.same(m.step(s, { type: 'cancel' }).effects, [], 'no cancel once finished');
  const r = runTo(m as unknown as Machine<string, string, string>, 'confirm');
  t.equal(r.end, 'degraded', 'a confirm that keeps failing leaves the migration degraded');
});

t.test('executor.recover: rerun, rollback and from-start as the table says', async (t) => {
  type P = 'a' | 'b' | 'rb-a';
  const proto = machine<'a' | 'b', 'rb-a', 'started'>({
    kind: 'test', forward: ['a', 'b'], table: { a: { next: 'b', mark: 'started', retry: 0 }, b: { next: 'done', retry: 0 } },
    rollback: ['rb-a'], rb: { 'rb-a': { needs: 'started' } }, marks: ['started'],
    recovery: { a: 'from-start', b: 'rollback', 'rb-a': 'rerun' },
  });
  const calls: string[] = [];
  const ports: Ports<P> = { a: async () => { calls.push("a"); }, b: async () => { calls.push("b"); }, "rb-a": async () => { calls.push("rb-a"); } };
  const at = (phase: 'a' | 'b' | 'rb-a') => ({ ...proto.initialState(), phase, marks: { started: true } });

  const rerun = await new Executor({ op: 'x1', machine: proto, ports, from: at('rb-a') }).recover('died');
  t.same(calls.splice(0), ['rb-a'], 'rerun: the rollback step runs again');
  t.equal(rerun.outcome, 'rolled-back');

  const rb = await new Executor({ op: 'x2', machine: proto, ports, from: at('b') }).recover('died');
  t.same(calls.splice(0), ['rb-a'], 'rollback: b is taken as failed, the rollback runs');
  t.equal(rb.outcome, 'rolled-back');
  t.equal(rb.error?.code, 'ESYM_COORDINATOR_RESTART');

  const fresh = await new Executor({ op: 'x3', machine: proto, ports, from: at('a') }).recover('died');
  t.same(calls.splice(0), ['a', 'b'], 'from-start: the protocol begins again');
  t.equal(fresh.outcome, 'done');
});
