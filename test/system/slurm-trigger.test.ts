// slurm-plugins/trigger as a permanent `strigger --down` program on the lab: crash two nodes (one a
// --no-kill job's non-batch node, one a default job's batch host) and check the trigger records one
// event per node with what it could still see; prints the DOWN -> trigger delay. No VMs.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from '../../launcher/src/defaults.js';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { need, needRoot } from '../fixtures/symrun-env.js';

needRoot('the Slurm lab needs root');
need('slurmctld', 'slurm-wlm');

t.test('strigger --down runs symrun-trigger: one event per DOWN node, with the jobs it still sees', async (t) => {
  const dir = fs.mkdtempSync('/var/tmp/symrun-trig-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const events = path.join(dir, 'node-events.jsonl');
  const wrapper = path.join(dir, 'trigger');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec 2>>${dir}/trigger.log\nSYMRUN_TRIGGER_LOG=${events} exec ${path.join(repoRoot(), 'slurm-plugins', 'trigger', 'symrun-trigger')} "$@"\n`, { mode: 0o755 });

  const lab: SlurmLab = await startSlurmLab({ nodes: 4, name: `st${process.pid.toString(36)}`.slice(0, 16), temporary: true });
  t.teardown(() => lab.stop());
  const set = await lab.client(['strigger', '--set', '--node', '--down', '--flags=PERM', `--program=${wrapper}`]);
  t.ok(set.ok, `strigger --set (${set.stderr.trim()})`);
  const list = await lab.client(['strigger', '--get']);
  t.match(list.stdout, /down/, `trigger listed: ${list.stdout.trim().split('\n').slice(-1)[0]}`);

  const a = await lab.sbatch('#!/bin/sh\nsleep 600\n', { args: ['-N2', '-w', 'n1,n2', '--no-kill', '-J', 'nokill', '-o', '/dev/null'] });
  const b = await lab.sbatch('#!/bin/sh\nsleep 600\n', { args: ['-N2', '-w', 'n3,n4', '-J', 'default', '-o', '/dev/null'] });
  await lab.waitJob(a, ['RUNNING'], 30_000);
  await lab.waitJob(b, ['RUNNING'], 30_000);

  const crashAt = Date.now();
  await Promise.all([lab.crash('n2'), lab.crash('n3')]);
  const downAt: Record<string, number> = {};
  await Promise.all(['n2', 'n3'].map(async (n) => { await lab.waitNodeState(n, /^DOWN/, 60_000); downAt[n] = Date.now(); }));

  type Ev = { ts: string; node: string; state: string; reason: string; jobId: string | null; jobName?: string; batchHost?: boolean };
  let evs: Ev[] = [];
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    try { evs = fs.readFileSync(events, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Ev); } catch { evs = []; }
    if (['n2', 'n3'].every((n) => evs.some((e) => e.node === n))) break;
    await sleep(250);
  }
  for (const n of ['n2', 'n3']) {
    const mine = evs.filter((e) => e.node === n);
    t.ok(mine.length > 0, `${n}: event recorded (${JSON.stringify(mine)})`);
    if (mine[0]) {
      t.match(mine[0].state, /DOWN/, `${n}: state ${mine[0].state}`);
      t.comment(`MEASURE ${n}: crash -> DOWN ${downAt[n]! - crashAt} ms; DOWN -> trigger event ${Date.parse(mine[0].ts) - downAt[n]!} ms; jobs seen: ${mine.map((e) => `${e.jobId ?? 'none'}${e.batchHost ? ' (batch host)' : ''}`).join(', ')}`);
    }
  }
  const ja = await lab.showJob(a);
  const jb = await lab.showJob(b).catch(() => undefined);
  t.comment(`after the crash: job ${a} (--no-kill) ${ja.state} nodes ${ja.nodeList.join(',')}; job ${b} (default) ${jb?.state ?? '?'} (${jb?.reason ?? ''})`);
  t.comment(`trigger log:\n${fs.existsSync(path.join(dir, 'trigger.log')) ? fs.readFileSync(path.join(dir, 'trigger.log'), 'utf8').trim() : '(none)'}`);
  await lab.client(['scancel', a, b]);
});
