// The checkpoint state machine (pure) and the shared executor running it with fake ports.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHECKPOINT, CKPT_FORWARD, type CkptState, type CkptPhase, type CkptForward, type CkptRollback } from '../../launcher/src/protocol/checkpoint.js';
import type { ProtocolEvent } from '../../launcher/src/protocol/machine.js';

type CkptEvent = ProtocolEvent<CkptPhase>;
type CkptRunPhase = CkptForward | CkptRollback;
const { step: ckptStep, initialState: ckptInitialState, replay: ckptReplay } = CHECKPOINT;
import { Executor, type Ports } from '../../launcher/src/protocol/executor.js';
import { FileJournal, readJournal } from '../../launcher/src/protocol/journal.js';

function drive(outcome: (phase: CkptPhase, attempt: number) => 'ok' | string, opts: { cancelAt?: CkptPhase } = {}): { phases: CkptPhase[]; state: CkptState; aborts: CkptPhase[] } {
  let s = ckptInitialState();
  const phases: CkptPhase[] = [];
  const aborts: CkptPhase[] = [];
  const queue: CkptEvent[] = [{ type: 'start' }];
  for (let guard = 0; queue.length && guard < 100; guard++) {
    const r = ckptStep(s, queue.shift()!);
    s = r.state;
    for (const e of r.effects) {
      if (e.kind === 'abort') aborts.push(e.phase);
      if (e.kind !== 'run') continue;
      phases.push(e.phase);
      if (opts.cancelAt === e.phase) {
        const c = ckptStep(s, { type: 'cancel' });
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

t.test('happy path: every forward phase once, in order', async (t) => {
  const r = drive(() => 'ok');
  t.same(r.phases, [...CKPT_FORWARD]);
  t.equal(r.state.phase, 'done');
  t.same(r.state.leftovers, []);
});

t.test('a failure before commit undoes exactly what was started and not yet undone', async (t) => {
  const expect: Record<string, string[]> = {
    prepare: ['rb-discard'],
    quiesce: ['rb-resume', 'rb-discard'],
    unplug: ['rb-replug', 'rb-reconfigure', 'rb-resume', 'rb-discard'],
    save: ['rb-cont', 'rb-replug', 'rb-reconfigure', 'rb-resume', 'rb-discard'],
    cont: ['rb-cont', 'rb-replug', 'rb-reconfigure', 'rb-resume', 'rb-discard'],
    commit: ['rb-discard'],
  };
  for (const [failAt, rb] of Object.entries(expect)) {
    const r = drive((p) => (p === failAt ? `boom in ${p}` : 'ok'));
    const upTo = CKPT_FORWARD.slice(0, CKPT_FORWARD.indexOf(failAt as (typeof CKPT_FORWARD)[number]) + 1);
    t.same(r.phases, [...upTo, ...rb], `fail at ${failAt}`);
    t.equal(r.state.phase, 'rolled-back');
    t.same(r.state.error, { phase: failAt, message: `boom in ${failAt}`, code: undefined }, 'first error kept');
  }
});

t.test('replug / reconfigure / resume are retried once, then rolled back (VMs already run: no rb-cont)', async (t) => {
  const ok = drive((p, attempt) => (p === 'replug' && attempt === 0 ? 'transient' : 'ok'));
  t.equal(ok.state.phase, 'done', 'a transient failure that succeeds on retry ends done');
  t.notOk(ok.state.error, 'a retried success leaves no error');
  const r = drive((p) => (p === 'reconfigure' ? 'no link' : 'ok'));
  t.same(r.phases, ['prepare', 'quiesce', 'unplug', 'save', 'cont', 'replug', 'reconfigure', 'reconfigure', 'rb-reconfigure', 'rb-resume', 'rb-discard']);
  t.equal(r.state.phase, 'rolled-back');
  const s = drive((p) => (p === 'resume' ? 'agent gone' : 'ok'));
  t.same(s.phases.slice(-3), ['resume', 'rb-resume', 'rb-discard']);
});

t.test('a failing rollback step is a leftover; the rollback goes on', async (t) => {
  const r = drive((p) => (p === 'save' ? 'disk full' : p === 'rb-replug' ? 'device_add refused' : 'ok'));
  t.same(r.phases.slice(-5), ['rb-cont', 'rb-replug', 'rb-reconfigure', 'rb-resume', 'rb-discard']);
  t.equal(r.state.phase, 'rollback-failed');
  t.same(r.state.leftovers, [{ phase: 'rb-replug', message: 'device_add refused' }]);
  t.equal(r.state.error?.message, 'disk full', 'the first error wins');
});

t.test('cancel during save aborts it and rolls back; cancel during commit is refused', async (t) => {
  const r = drive(() => 'ok', { cancelAt: 'save' });
  t.same(r.aborts, ['save']);
  t.same(r.phases, ['prepare', 'quiesce', 'unplug', 'save', 'rb-cont', 'rb-replug', 'rb-reconfigure', 'rb-resume', 'rb-discard']);
  t.equal(r.state.error?.code, 'ESYM_CANCELLED');
  let s = ckptInitialState();
  for (const e of [{ type: 'start' }, ...CKPT_FORWARD.slice(0, 8).map((p) => ({ type: 'ok', phase: p }))] as CkptEvent[]) s = ckptStep(s, e).state;
  t.equal(s.phase, 'commit');
  const c = ckptStep(s, { type: 'cancel' });
  t.equal(c.state.cancelled, false);
  t.same(c.effects, []);
});

t.test('stale outcomes are ignored; replay rebuilds the state', async (t) => {
  const s = ckptStep(ckptInitialState(), { type: 'start' }).state;
  t.equal(ckptStep(s, { type: 'ok', phase: 'save' }).state, s);
  const r = ckptReplay([{ type: 'start' }, { type: 'ok', phase: 'prepare' }, { type: 'ok', phase: 'quiesce' }, { type: 'ok', phase: 'unplug' }, { type: 'ok', phase: 'save' }]);
  t.equal(r.phase, 'cont');
  t.same(r.marks, { prepared: true, quiesced: true, unplugged: true, saving: true, committing: false, contDone: false, replugDone: false, reconfigureDone: false, resumeDone: false });
});

function fakePorts(calls: string[], fail: Partial<Record<string, string>> = {}): Ports<CkptRunPhase> {
  const all = [...CKPT_FORWARD, 'rb-cont', 'rb-replug', 'rb-reconfigure', 'rb-resume', 'rb-discard'];
  return Object.fromEntries(all.map((p) => [p, async () => {
    calls.push(p);
    if (fail[p]) throw Object.assign(new Error(fail[p]), { code: 'ESYM_TEST' });
    return { phase: p };
  }])) as unknown as Ports<CkptRunPhase>;
}

t.test('the migration executor runs the checkpoint table: journal first, events, rollback', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-exec-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'journal.jsonl');
  const journal = new FileJournal(file);
  const calls: string[] = [];
  const events: string[] = [];
  const ex = new Executor({ op: 'c1', machine: CHECKPOINT, ports: fakePorts(calls), journal, onEvent: (e) => events.push(`${e.phase}:${e.event}`) });
  const r = await ex.start();
  t.equal(r.outcome, 'done');
  t.same(calls, [...CKPT_FORWARD]);
  t.ok(events.includes('save:begin') && events.includes('save:end') && events.includes('done:result'));
  t.equal(readJournal(file).get('c1')!.phase, 'done');

  const calls2: string[] = [];
  const ex2 = new Executor({ op: 'c2', machine: CHECKPOINT, ports: fakePorts(calls2, { save: 'No space left on device' }) });
  const r2 = await ex2.start();
  t.equal(r2.outcome, 'rolled-back');
  t.equal(r2.error?.phase, 'save');
  t.same(calls2, ['prepare', 'quiesce', 'unplug', 'save', 'rb-cont', 'rb-replug', 'rb-reconfigure', 'rb-resume', 'rb-discard']);
});
