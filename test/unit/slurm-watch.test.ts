// The Slurm node watcher (slurm/watch.ts) and the drain policy (coordinator/policy.ts), with a fake
// scontrol (captured lab output) and fake migrations.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../launcher/src/defaults.js';
import { NodeWatcher, type NodeChange } from '../../launcher/src/slurm/watch.js';
import { DrainPolicy, planMoves, type NodeInfo } from '../../launcher/src/coordinator/policy.js';
import { SymError } from '../../launcher/src/errors.js';
import type { OpEvent, OpResult } from '../../launcher/src/protocol/executor.js';
import { within } from '../fixtures/wait.js';

const fx = (f: string) => fs.readFileSync(path.join(repoRoot(), 'test', 'fixtures', 'slurm', f), 'utf8');
const line = (text: string, name: string) => text.split('\n').find((l) => l.startsWith(`NodeName=${name} `))!;
const idle = fx('nodes-idle.txt');
const setState = (l: string, state: string, reason?: string) => l.replace(/State=\S+/, `State=${state}`).replace(/ Reason=.*$/, '') + (reason ? ` Reason=${reason} [root@2026-11-22T03:40:00]` : '');

t.test('watcher: one batched call, only changes reported, baseline ok', async (t) => {
  const calls: string[][] = [];
  let text = idle;
  const seen: NodeChange[][] = [];
  const w = new NodeWatcher({ nodes: () => ['n1', 'n2', 'n3', 'n4'], run: async (names) => { calls.push(names); return text; }, onChange: (c) => seen.push(c) });
  t.same(await w.pollOnce(), [], 'all ok: nothing to report');
  text = idle.split('\n').map((l) => (l.startsWith('NodeName=n2 ') ? setState(l, 'MIXED+DRAIN', 'maint') : l)).join('\n');
  const ch = await w.pollOnce();
  t.equal(ch.length, 1);
  t.match(ch[0], { node: 'n2', condition: 'drain', previous: 'ok', state: 'MIXED+DRAIN', reason: 'maint' });
  t.same(await w.pollOnce(), [], 'unchanged: not reported again');
  t.equal(seen.length, 1);
  t.same(calls[0], ['n1', 'n2', 'n3', 'n4'], 'one call with every node');
  t.equal(w.stats.polls, 3);
  t.equal(w.condition('n2'), 'drain');
});

t.test('watcher: errors are counted and passed on, polling goes on', async (t) => {
  let n = 0;
  const errors: string[] = [];
  let fourth!: () => void;
  const fourPolls = new Promise<void>((r) => { fourth = r; });
  const w = new NodeWatcher({ nodes: () => ['n1'], intervalMs: 10, run: async () => { n++; if (n === 4) fourth(); if (n < 3) throw new Error('slurmctld down'); return line(idle, 'n1'); }, onChange: () => undefined, onError: (e) => errors.push(e.message) });
  w.start();
  await within(fourPolls, 5_000, 'a fourth poll'); // it began: the third (the first to succeed) has ended
  await w.stop();
  t.same(errors, ['slurmctld down', 'slurmctld down']);
  t.equal(w.stats.errors, 2);
});

const node = (condition: NodeInfo['condition'], state: string, reason?: string): NodeInfo => ({ condition, state, reason, since: '' });

t.test('planMoves: most urgent first, reason text', async (t) => {
  const nodes = new Map<string, NodeInfo>([['n1', node('drain', 'MIXED+DRAIN', 'maint')], ['n2', node('not-responding', 'MIXED+NOT_RESPONDING')], ['n3', node('ok', 'MIXED')], ['n5', node('reboot', 'MIXED+DRAIN+REBOOT_REQUESTED', 'Reboot ASAP')]]);
  const on: Record<string, string[]> = { n1: ['vm1'], n2: ['vm2'], n3: ['vm3'], n5: ['vm5'] };
  const plan = planMoves(nodes, (h) => on[h] ?? [], () => false);
  t.same(plan.map((c) => c.vm), ['vm2', 'vm5', 'vm1']);
  t.equal(plan[2]!.reason, 'node n1 DRAIN: maint');
  t.equal(plan[1]!.reason, 'node n5 DRAIN+REBOOT_REQUESTED: Reboot ASAP');
});

t.test('policy: migrates to spares, says when none is left, not before the job runs, no move back', async (t) => {
  const hostOf: Record<string, string> = { vm1: 'n1', vm2: 'n2', vm3: 'n3' };
  let spares = 1;
  let running = false;
  const started: Array<{ vm: string; reason: string }> = [];
  const events: OpEvent[] = [];
  const said: string[] = [];
  const resolvers: Array<(r: OpResult) => void> = [];
  const dones: Array<Promise<OpResult>> = [];
  const p = new DrainPolicy({
    vmsOn: (h) => Object.keys(hostOf).filter((v) => hostOf[v] === h),
    isMigrating: (vm) => started.some((s) => s.vm === vm) && resolvers.length > 0,
    canMigrate: () => running,
    migrate: (req) => {
      if (spares === 0) throw new SymError('ESYM_NO_SPARE', { message: 'no free host' });
      spares--;
      started.push(req);
      const done = new Promise<OpResult>((r) => resolvers.push(r));
      dones.push(done);
      return { op: `m${started.length}`, done };
    },
    event: (e) => events.push(e),
    say: (m) => said.push(m),
  });
  const ch = (n: string, condition: NodeChange['condition'], state: string, reason?: string): NodeChange => ({ node: n, condition, previous: 'ok', state, reason, seenAt: Date.now() });
  p.onChanges([ch('n2', 'drain', 'MIXED+DRAIN', 'maint'), ch('n3', 'fail', 'MIXED+FAIL', 'disk')]);
  t.same(started, [], 'nothing before the job runs');
  t.ok(p.unusable('n2') && p.unusable('n3') && !p.unusable('n1'));
  running = true;
  p.evaluate();
  t.same(started, [{ vm: 'vm3', reason: 'node n3 FAIL: disk' }], 'fail first, one spare');
  t.match(said.join('\n'), /node n2 DRAIN: maint: no spare left to move vm2/);
  t.ok(events.some((e) => e.data?.action === 'no-spare' && e.data?.vm === 'vm2'), 'no-spare event');
  p.evaluate();
  t.equal(said.filter((s) => /no spare/.test(s)).length, 1, 'said once');
  hostOf.vm3 = 'n4';
  resolvers.shift()!({ op: 'm1', outcome: 'done', leftovers: [], phasesMs: {}, totalMs: 1 } as unknown as OpResult);
  await dones[0]; // after the policy's own handler of that outcome (registered first, so run first)
  p.onChanges([{ ...ch('n3', 'ok', 'MIXED'), previous: 'fail' }]);
  t.equal(hostOf.vm3, 'n4', 'undrain does not move back');
  t.equal(started.length, 1, 'vm2 still waits (no spare: n3 is free now but the fake has none)');
  p.evaluate();
  t.equal(started.length, 1, 'evaluating again does not retry a VM that waits for a spare');
  spares = 1;
  p.hostsChanged(); // a node joined the allocation
  t.same(started[1], { vm: 'vm2', reason: 'node n2 DRAIN: maint' }, 'a host joining: the waiting VM moves');
});

t.test('policy: a VM moved off successfully can be moved again by later incidents (drain, drain, drain)', async (t) => {
  const hostOf: Record<string, string> = { vm2: 'n2' };
  const nodes = ['n2', 'n4'];
  const started: string[] = [];
  let lastDone: Promise<OpResult> = Promise.resolve({} as OpResult);
  const p = new DrainPolicy({
    vmsOn: (h) => Object.keys(hostOf).filter((v) => hostOf[v] === h),
    isMigrating: () => false,
    canMigrate: () => true,
    migrate: (req) => {
      started.push(`${req.vm}@${hostOf[req.vm]}`);
      const to = nodes.find((n) => n !== hostOf[req.vm])!;
      hostOf[req.vm] = to;
      lastDone = Promise.resolve({ op: `m${started.length}`, outcome: 'done', leftovers: [], phasesMs: {}, totalMs: 1 } as unknown as OpResult);
      return { op: `m${started.length}`, done: lastDone };
    },
    event: () => undefined,
    say: () => undefined,
  });
  const ch = (n: string, condition: NodeChange['condition'], previous: NodeChange['condition']): NodeChange => ({ node: n, condition, previous, state: condition === 'ok' ? 'MIXED' : 'MIXED+DRAIN', seenAt: Date.now() });
  for (let i = 0; i < 3; i++) {
    const from = hostOf.vm2!;
    p.onChanges([ch(from, 'drain', 'ok')]);
    await lastDone; // the policy has taken the outcome of the move it started (its handler runs first)
    p.onChanges([ch(from, 'ok', 'drain')]); // resumed: a spare again
  }
  t.same(started, ['vm2@n2', 'vm2@n4', 'vm2@n2'], 'three drains, three moves');
});
