// The SymVirt state machine (pure) and its executor with fake ports.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MIGRATION, MIGRATION_FORWARD as FORWARD, type MigrationState as MachineState, type MigrationPhase as Phase, type MigrationForward, type MigrationRollback } from '../../launcher/src/protocol/migration.js';
import type { ProtocolEvent } from '../../launcher/src/protocol/machine.js';
import { Executor, type Ports } from '../../launcher/src/protocol/executor.js';

type MachineEvent = ProtocolEvent<Phase>;
type PhasePorts = Ports<MigrationForward | MigrationRollback>;
const { step, initialState, replay } = MIGRATION;
import { FileJournal, readJournal } from '../../launcher/src/protocol/journal.js';
import { within } from '../fixtures/wait.js';

/** Drive the machine: every `run` effect is answered by outcome(phase) until a terminal state. */
function drive(outcome: (phase: Phase, attempt: number) => 'ok' | string, opts: { cancelAt?: Phase } = {}): { phases: Phase[]; state: MachineState; aborts: Phase[] } {
  let s = initialState();
  const phases: Phase[] = [];
  const aborts: Phase[] = [];
  let queue: MachineEvent[] = [{ type: 'start' }];
  for (let guard = 0; queue.length && guard < 100; guard++) {
    const ev = queue.shift()!;
    const r = step(s, ev);
    s = r.state;
    for (const e of r.effects) {
      if (e.kind === 'abort') aborts.push(e.phase);
      if (e.kind !== 'run') continue;
      phases.push(e.phase);
      if (opts.cancelAt === e.phase) {
        const c = step(s, { type: 'cancel' });
        s = c.state;
        for (const x of c.effects) if (x.kind === 'abort') aborts.push(x.phase);
        queue.push({ type: 'fail', phase: e.phase, message: 'aborted' });
        continue;
      }
      const o = outcome(e.phase, s.attempt);
      queue.push(o === 'ok' ? { type: 'ok', phase: e.phase } : { type: 'fail', phase: e.phase, message: o });
    }
  }
  return { phases, state: s, aborts };
}

t.test('happy path runs every forward phase once, in order', async (t) => {
  const r = drive(() => 'ok');
  t.same(r.phases, [...FORWARD]);
  t.equal(r.state.phase, 'done');
  t.same(r.state.leftovers, []);
});

t.test('a failure before finish rolls back exactly what was started, in reverse dependency order', async (t) => {
  const expect: Record<string, string[]> = {
    prepare: ['rb-dst-stop'],
    quiesce: ['rb-dst-stop', 'rb-resume'],
    unplug: ['rb-dst-stop', 'rb-replug', 'rb-reconfigure', 'rb-resume'],
    perform: ['rb-cancel', 'rb-dst-stop', 'rb-replug', 'rb-reconfigure', 'rb-resume'],
  };
  for (const [failAt, rb] of Object.entries(expect)) {
    const r = drive((p) => (p === failAt ? `boom in ${p}` : 'ok'));
    const upTo = FORWARD.slice(0, FORWARD.indexOf(failAt as (typeof FORWARD)[number]) + 1);
    t.same(r.phases, [...upTo, ...rb], `fail at ${failAt}`);
    t.equal(r.state.phase, 'rolled-back', `fail at ${failAt} ends rolled back`);
    t.same(r.state.error, { phase: failAt, message: `boom in ${failAt}`, code: undefined }, 'first error kept');
  }
});

t.test('a failing rollback step is recorded and the rollback goes on', async (t) => {
  const r = drive((p) => (p === 'perform' ? 'dst died' : p === 'rb-replug' ? 'device_add refused' : 'ok'));
  t.same(r.phases.slice(-5), ['rb-cancel', 'rb-dst-stop', 'rb-replug', 'rb-reconfigure', 'rb-resume']);
  t.equal(r.state.phase, 'rollback-failed');
  t.same(r.state.leftovers, [{ phase: 'rb-replug', message: 'device_add refused' }]);
  t.equal(r.state.error?.message, 'dst died', 'the first error wins');
});

t.test('cancel during perform aborts it and rolls back', async (t) => {
  const r = drive(() => 'ok', { cancelAt: 'perform' });
  t.same(r.aborts, ['perform']);
  t.same(r.phases, ['prepare', 'quiesce', 'unplug', 'perform', 'rb-cancel', 'rb-dst-stop', 'rb-replug', 'rb-reconfigure', 'rb-resume']);
  t.equal(r.state.phase, 'rolled-back');
  t.equal(r.state.error?.code, 'ESYM_CANCELLED');
});

t.test('a step that completes although a cancel was requested still rolls back', async (t) => {
  let s = step(initialState(), { type: 'start' }).state; // prepare
  s = step(s, { type: 'ok', phase: 'prepare' }).state; // quiesce
  const c = step(s, { type: 'cancel' });
  t.same(c.effects, [{ kind: 'abort', phase: 'quiesce' }]);
  const r = step(c.state, { type: 'ok', phase: 'quiesce' });
  t.same(r.effects, [{ kind: 'run', phase: 'rb-dst-stop' }]);
});

t.test('cancel after finish is refused (the VM already runs on the destination)', async (t) => {
  let s = initialState();
  for (const e of [{ type: 'start' }, ...FORWARD.slice(0, 4).map((p) => ({ type: 'ok', phase: p }))] as MachineEvent[]) s = step(s, e).state;
  t.equal(s.phase, 'finish');
  const c = step(s, { type: 'cancel' });
  t.equal(c.state.cancelled, false);
  t.same(c.effects, []);
});

t.test('after finish: retry once, then go on (resume always runs) and end degraded', async (t) => {
  const r = drive((p) => (p === 'replug' ? 'device_add refused' : 'ok'));
  t.same(r.phases, ['prepare', 'quiesce', 'unplug', 'perform', 'finish', 'replug', 'replug', 'reconfigure', 'resume', 'confirm']);
  t.equal(r.state.phase, 'degraded');
  t.same(r.state.leftovers, [{ phase: 'replug', message: 'device_add refused' }]);
  const ok2 = drive((p, attempt) => (p === 'replug' && attempt === 0 ? 'transient' : 'ok'));
  t.equal(ok2.state.phase, 'done', 'a transient failure that succeeds on retry ends done');
});

t.test('stale outcomes (of a phase no longer current) are ignored', async (t) => {
  const s = step(initialState(), { type: 'start' }).state;
  const r = step(s, { type: 'ok', phase: 'perform' });
  t.equal(r.state, s);
  t.same(r.effects, []);
});

t.test('replay of journaled events rebuilds the state', async (t) => {
  const evs: MachineEvent[] = [{ type: 'start' }, { type: 'ok', phase: 'prepare' }, { type: 'ok', phase: 'quiesce' }, { type: 'ok', phase: 'unplug' }];
  const s = replay(evs);
  t.equal(s.phase, 'perform');
  t.same(s.marks, { prepared: true, quiesced: true, unplugged: true, performing: true, finished: false });
});

function fakePorts(calls: string[], fail: Partial<Record<string, string>> = {}, hold?: { phase: string; release: Promise<void>; entered?: () => void }): PhasePorts {
  const mk = (p: string) => async (signal: AbortSignal) => {
    calls.push(p);
    if (hold?.phase === p) {
      hold.entered?.();
      await Promise.race([hold.release, new Promise((_, rej) => signal.addEventListener('abort', () => rej(signal.reason), { once: true }))]);
    }
    if (fail[p]) throw Object.assign(new Error(fail[p]), { code: 'ESYM_TEST' });
    return { phase: p };
  };
  return Object.fromEntries(['prepare', 'quiesce', 'unplug', 'perform', 'finish', 'replug', 'reconfigure', 'resume', 'confirm', 'rb-cancel', 'rb-dst-stop', 'rb-replug', 'rb-reconfigure', 'rb-resume'].map((p) => [p, mk(p)])) as unknown as PhasePorts;
}

t.test('executor: journal is written before each phase runs; events carry durations', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mig-exec-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'journal.jsonl');
  const calls: string[] = [];
  const journal = new FileJournal(file);
  const order: string[] = [];
  const j = { write: async (r: Parameters<FileJournal['write']>[0]) => { order.push(`journal:${r.phase}`); await journal.write(r); } };
  const ports = fakePorts(calls);
  for (const k of Object.keys(ports) as Array<keyof PhasePorts>) {
    const f = ports[k];
    ports[k] = async (s) => { order.push(`run:${k}`); return f(s); };
  }
  const events: string[] = [];
  const ex = new Executor({ op: 'm1', machine: MIGRATION, ports, journal: j, onEvent: (e) => events.push(`${e.phase}:${e.event}`) });
  const r = await ex.start();
  t.equal(r.outcome, 'done');
  t.same(calls, [...FORWARD]);
  for (const p of FORWARD) t.ok(order.indexOf(`journal:${p}`) < order.indexOf(`run:${p}`), `journal before ${p}`);
  t.ok(events.includes('perform:begin') && events.includes('perform:end') && events.includes('done:result'));
  const last = readJournal(file).get('m1')!;
  t.equal(last.phase, 'done', 'the last journal record is the outcome');
});

t.test('executor: cancel aborts the running step through its signal and rolls back', async (t) => {
  const calls: string[] = [];
  let release!: () => void;
  let entered!: () => void;
  const inPerform = new Promise<void>((r) => (entered = r));
  const ex = new Executor({ op: 'm2', machine: MIGRATION, ports: fakePorts(calls, {}, { phase: 'perform', release: new Promise<void>((r) => (release = r)), entered }) });
  const done = ex.start();
  await within(inPerform, 5_000, 'the perform step');
  t.equal(ex.cancel(), true, 'cancel accepted');
  t.equal(ex.cancel(), false, 'a second cancel is a no-op');
  const r = await done;
  release();
  t.equal(r.outcome, 'rolled-back');
  t.same(calls, ['prepare', 'quiesce', 'unplug', 'perform', 'rb-cancel', 'rb-dst-stop', 'rb-replug', 'rb-reconfigure', 'rb-resume']);
  t.equal(r.error?.code, 'ESYM_CANCELLED');
});

t.test('executor: a failed rollback reports the leftovers', async (t) => {
  const calls: string[] = [];
  const ex = new Executor({ op: 'm3', machine: MIGRATION, ports: fakePorts(calls, { perform: 'destination QEMU died', 'rb-resume': 'vm3 agent gone' }) });
  const r = await ex.start();
  t.equal(r.outcome, 'rollback-failed');
  t.same(r.leftovers, [{ phase: 'rb-resume', message: 'vm3 agent gone' }]);
  t.equal(r.error?.message, 'destination QEMU died');
});

t.test('journal reader ignores a torn last line', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mig-journal-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'j.jsonl');
  const j = new FileJournal(file);
  await j.write({ op: 'a', kind: 'migrate', phase: 'new', state: initialState(), params: { vm: 'vm2' } });
  await j.write({ op: 'a', kind: 'migrate', phase: 'perform', state: replay([{ type: 'start' }]) });
  fs.appendFileSync(file, '{"op":"a","kind":"migrate","pha');
  const r = readJournal(file).get('a')!;
  t.equal(r.phase, 'perform');
  t.same(r.params, { vm: 'vm2' }, 'params of the first record are kept');
});
