// scontrol output codec (launcher/src/slurm/scontrol.ts) on output captured from the Slurm 22.05.8 lab
// cluster (test/cluster/slurm.ts) on this machine: test/fixtures/slurm/{node,nodes,job,sinfo}-*.txt.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../launcher/src/defaults.js';
import { SymError } from '../../launcher/src/errors.js';
import {
  isJobFinished, nodeCondition, parseJobs, parseKeyValues, parseNodeRecord, parseNodes, parseNodeState,
  type NodeCondition,
} from '../../launcher/src/slurm/scontrol.js';

const fixture = (f: string) => fs.readFileSync(path.join(repoRoot(), 'test/fixtures/slurm', f), 'utf8');

t.test('four idle nodes', async (t) => {
  const nodes = parseNodes(fixture('nodes-idle.txt'));
  t.same(nodes.map((n) => n.name), ['n1', 'n2', 'n3', 'n4']);
  for (const [i, n] of nodes.entries()) {
    t.equal(n.state, 'IDLE');
    t.equal(n.baseState, 'IDLE');
    t.same(n.flags, []);
    t.equal(n.reason, undefined);
    t.equal(n.addr, `198.19.200.${11 + i}`);
    t.equal(n.hostname, n.name);
    t.equal(n.cpuTot, 2);
    t.equal(n.cpuAlloc, 0);
    t.same(n.partitions, ['lab']);
    t.equal(nodeCondition(n), 'ok');
  }
  t.match(nodes[0]!.fields.OS, /^Linux \S+ #1 SMP/, 'a value with spaces (OS=) stays whole');
  t.equal(nodes[0]!.fields.RealMemory, '1024', 'the pair after the spaced value is intact');
  t.equal(nodes[0]!.fields.AvailableFeatures, '(null)');
});

t.test('drain of a node running a job: MIXED+DRAIN with its reason', async (t) => {
  const nodes = parseNodes(fixture('nodes-mixed-drain.txt'));
  const n2 = nodes.find((n) => n.name === 'n2')!;
  t.equal(n2.state, 'MIXED+DRAIN');
  t.equal(n2.baseState, 'MIXED');
  t.same(n2.flags, ['DRAIN']);
  t.equal(n2.reason, 'symrun test: drain n2');
  t.equal(n2.reasonUser, 'root');
  t.match(n2.reasonTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
  t.equal(nodeCondition(n2), 'drain');
  t.same(nodes.map((n) => nodeCondition(n)), ['ok', 'drain', 'ok', 'ok']);
  t.equal(n2.cpuAlloc, 1);
});

t.test('multi-line output (no -o) parses like -o', async (t) => {
  const [multi] = parseNodes(fixture('node-mixed-drain-multiline.txt'));
  const one = parseNodes(fixture('nodes-mixed-drain.txt')).find((n) => n.name === 'n2')!;
  t.equal(multi!.state, one.state);
  t.equal(multi!.reason, one.reason);
  t.equal(multi!.addr, one.addr);
  t.match(multi!.fields.OS, /^Linux \S+ #1 SMP PREEMPT_DYNAMIC @0$/);
  const [alloc] = parseNodes(fixture('node-allocated-drain-multiline.txt'));
  t.equal(alloc!.state, 'ALLOCATED+DRAIN');
  t.equal(alloc!.reason, 'symrun: drain n2 for maintenance a=b [x]', 'a reason may contain "a=b" and brackets');
  t.equal(alloc!.fields.Reason, alloc!.reason);
  t.equal(nodeCondition(alloc!), 'drain');
});

t.test('every captured node state and what it means', async (t) => {
  const cases: Array<[string, string, string, string[], NodeCondition, string | undefined]> = [
    ['node-idle-drain.txt', 'IDLE+DRAIN', 'IDLE', ['DRAIN'], 'drain', 'idle drain'],
    ['node-alloc-fail.txt', 'ALLOCATED+FAIL', 'ALLOCATED', ['FAIL'], 'fail', 'disk failing'],
    ['node-mixed-reboot-asap.txt', 'MIXED+DRAIN+REBOOT_REQUESTED', 'MIXED', ['DRAIN', 'REBOOT_REQUESTED'], 'reboot', 'kernel update'],
    ['node-reboot-asap.txt', 'DOWN+DRAIN+REBOOT_ISSUED', 'DOWN', ['DRAIN', 'REBOOT_ISSUED'], 'down', 'kernel update : reboot issued'],
    ['node-crash-0s-allocated.txt', 'ALLOCATED', 'ALLOCATED', [], 'ok', undefined],
    ['node-crash-7s-allocated-not-responding.txt', 'ALLOCATED+NOT_RESPONDING', 'ALLOCATED', ['NOT_RESPONDING'], 'not-responding', undefined],
    ['node-crash-15s-down-not-responding.txt', 'DOWN+NOT_RESPONDING', 'DOWN', ['NOT_RESPONDING'], 'down', 'Not responding'],
    ['node-idle-not-responding.txt', 'IDLE+NOT_RESPONDING', 'IDLE', ['NOT_RESPONDING'], 'not-responding', undefined],
    ['node-admin-down.txt', 'DOWN', 'DOWN', [], 'down', 'admin down'],
  ];
  for (const [file, state, base, flags, cond, reason] of cases) {
    const nodes = parseNodes(fixture(file));
    t.equal(nodes.length, 1, file);
    const n = nodes[0]!;
    t.equal(n.state, state, `${file}: state`);
    t.equal(n.baseState, base, `${file}: base`);
    t.same(n.flags, flags, `${file}: flags`);
    t.equal(nodeCondition(n), cond, `${file}: condition`);
    t.equal(nodeCondition(n.state), cond, `${file}: condition from the state string`);
    t.equal(n.reason, reason, `${file}: reason`);
  }
  const reboot = parseNodes(fixture('node-reboot-asap.txt'))[0]!;
  t.equal(reboot.fields.NextState, 'RESUME', 'NextState is not mistaken for State');
});

t.test('sinfo names of the same moments map to the same conditions', async (t) => {
  for (const [sinfoFile, scontrolFile] of [['sinfo-mixed-drain.txt', 'nodes-mixed-drain.txt'], ['sinfo-allocated-drain.txt', 'nodes-allocated-drain.txt']]) {
    const nodes = parseNodes(fixture(scontrolFile!));
    for (const line of fixture(sinfoFile!).trim().split('\n')) {
      const [name, long, short] = line.split('|');
      const want = nodeCondition(nodes.find((n) => n.name === name)!);
      t.equal(nodeCondition(long!), want, `${sinfoFile} ${name} ${long}`);
      t.equal(nodeCondition(short!), want, `${sinfoFile} ${name} ${short}`);
    }
  }
  // sinfo lines captured next to the scontrol states above
  const want: Record<string, NodeCondition> = {
    drained: 'drain', failing: 'fail', 'reboot^': 'reboot', allocated: 'ok', 'allocated*': 'not-responding',
    'down*': 'down', 'idle*': 'not-responding', down: 'down', 'draining@': 'reboot',
  };
  for (const line of fixture('sinfo-states.txt').trim().split('\n')) {
    const long = line.split('|')[1]!;
    t.equal(nodeCondition(long), want[long], `sinfo ${long}`);
  }
});

t.test('parseNodeState forms', async (t) => {
  t.same(parseNodeState('MIXED+DRAIN'), { base: 'MIXED', flags: ['DRAIN'] });
  t.same(parseNodeState('IDLE*'), { base: 'IDLE', flags: ['NOT_RESPONDING'] });
  t.same(parseNodeState('down*'), { base: 'DOWN', flags: ['NOT_RESPONDING'] });
  t.same(parseNodeState('drained'), { base: 'IDLE', flags: ['DRAIN'] });
  t.same(parseNodeState('draining'), { base: 'ALLOCATED', flags: ['DRAIN'] });
  t.same(parseNodeState('idle~'), { base: 'IDLE', flags: ['POWERED_DOWN'] });
  t.same(parseNodeState('mix@'), { base: 'MIXED', flags: ['REBOOT_REQUESTED'] });
  t.same(parseNodeState('idle*~'), { base: 'IDLE', flags: ['NOT_RESPONDING', 'POWERED_DOWN'] });
  t.same(parseNodeState(''), { base: 'UNKNOWN', flags: [] });
});

t.test('nodeCondition precedence', async (t) => {
  const c = (s: string) => nodeCondition(s);
  t.equal(c('IDLE'), 'ok');
  t.equal(c('ALLOCATED+COMPLETING'), 'ok');
  t.equal(c('MIXED+RESERVED'), 'ok');
  t.equal(c('IDLE+MAINTENANCE'), 'ok');
  t.equal(c('IDLE+PLANNED'), 'ok');
  t.equal(c('MIXED+DRAIN'), 'drain');
  t.equal(c('IDLE+POWER_DOWN'), 'drain', 'pending power down waits like a drain');
  t.equal(c('MIXED+DRAIN+REBOOT_REQUESTED'), 'reboot', 'reboot ASAP also sets DRAIN: reboot wins');
  t.equal(c('MIXED+DRAIN+FAIL'), 'fail');
  t.equal(c('IDLE+INVALID_REG'), 'fail');
  t.equal(c('ERROR'), 'fail');
  t.equal(c('MIXED+DRAIN+NOT_RESPONDING'), 'not-responding', 'liveness before admin intent');
  t.equal(c('UNKNOWN'), 'not-responding');
  t.equal(c('DOWN+DRAIN+NOT_RESPONDING'), 'down');
  t.equal(c('IDLE+POWERED_DOWN'), 'down');
  t.equal(c('FUTURE'), 'down');
});

t.test('a Reason followed by other fields, and odd records', async (t) => {
  const n = parseNodeRecord('NodeName=x1 State=IDLE+DRAIN NodeAddr=10.0.0.1 Reason=bad DIMM [ops@2024-01-02T03:04:05] Comment=rack 7 Extra=(null)');
  t.equal(n.reason, 'bad DIMM');
  t.equal(n.reasonUser, 'ops');
  t.equal(n.fields.Comment, 'rack 7');
  t.equal(n.fields.Extra, '(null)');
  const noTrailer = parseNodeRecord('NodeName=x2 State=DOWN Reason=gone away');
  t.equal(noTrailer.reason, 'gone away');
  t.same(parseNodes(''), []);
  t.same(parseNodes('No nodes in the system\n'), []);
  let e: unknown;
  try {
    parseNodeRecord('NodeName=x3 Arch=x86_64');
  } catch (err) {
    e = err;
  }
  t.ok(e instanceof SymError && e.code === 'ESYM_SLURM_OUTPUT', 'a node without State is an error');
  t.same(parseKeyValues('A=1 B=two words C:D=x/y E/F=* G=').map, { A: '1', B: 'two words', 'C:D': 'x/y', 'E/F': '*', G: '' });
});

t.test('jobs', async (t) => {
  const [run] = parseJobs(fixture('job-running.txt'));
  t.equal(run!.jobId, '1');
  t.equal(run!.name, 'my env job', 'a job name with spaces');
  t.equal(run!.state, 'RUNNING');
  t.same(run!.nodeList, ['n1', 'n2', 'n3']);
  t.equal(run!.numNodes, 3);
  t.equal(run!.numTasks, 6);
  t.equal(run!.numCpus, 6);
  t.equal(run!.cpusPerTask, 1);
  t.equal(run!.batchHost, 'n1');
  t.equal(run!.workDir, '/run/symrun-slurmlab/lab/work');
  t.same(run!.exitCode, { status: 0, signal: 0 });
  t.match(run!.fields['AllocNode:Sid'], /^ctl:\d+$/, 'keys may contain ":"');
  t.notOk(isJobFinished(run!.state));

  const [multi] = parseJobs(fixture('job-running-multiline.txt'));
  t.same(multi!.nodeList, run!.nodeList, 'multi-line job output parses like -o');
  t.equal(multi!.name, run!.name);

  const [lost] = parseJobs(fixture('job-after-node-loss.txt'));
  t.equal(lost!.state, 'RUNNING', '--no-kill job survives a node failure');
  t.same(lost!.nodeList, ['n1', 'n2'], 'the dead node left the job');
  t.equal(lost!.numNodes, 2);

  const [held] = parseJobs(fixture('job-pending-held.txt'));
  t.equal(held!.state, 'PENDING');
  t.equal(held!.reason, 'JobHeldUser');
  t.same(held!.nodeList, []);
  t.equal(held!.numNodes, 2, 'NumNodes=2-2 → 2');

  const [done] = parseJobs(fixture('job-completed.txt'));
  t.equal(done!.state, 'COMPLETED');
  t.same(done!.nodeList, ['n1', 'n3']);
  t.ok(isJobFinished(done!.state));

  const [failed] = parseJobs(fixture('job-failed.txt'));
  t.equal(failed!.state, 'FAILED');
  t.same(failed!.exitCode, { status: 3, signal: 0 });
  t.equal(failed!.reason, 'NonZeroExitCode');

  const [cancelled] = parseJobs(fixture('job-cancelled.txt'));
  t.equal(cancelled!.state, 'CANCELLED');
  t.ok(isJobFinished('cancelled'));
  t.same(parseJobs(''), []);
});
