// guest/src/warm-ip.ts against a fake `ip` (a shell script that records when it started and echoes each
// batch command as a JSON line). The case that matters: the process serving a batch was started BEFORE
// the batch was asked for (so a reconfigure while ranks are frozen pays no exec), and its replacement
// is NOT started at once (that fork would compete with the reconfigure for the guest's CPU).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { WarmIp, type WarmIpOptions } from '../../guest/src/warm-ip.js';
import { AgentError } from '../../guest/src/util.js';

const FAKE = `#!/bin/bash
# fake ip: "-json -batch -" expected; prints one JSON array per command
[ "$*" = "-json -batch -" ] || { echo "fake ip: bad args $*" >&2; exit 2; }
started=$(date +%s%3N)
while IFS= read -r line; do
  case "$line" in
    fail*) echo "RTNETLINK answers: Operation not permitted" >&2; echo "Command failed -:1" >&2; exit 1 ;;
    hang*) exec sleep 30 ;;
  esac
  printf '[{"cmd":"%s","pid":%d,"started":%s}]\\n' "$line" $$ "$started"
done
exit 0
`;

function fakeIp(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warm-ip-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const p = path.join(dir, 'ip');
  fs.writeFileSync(p, FAKE, { mode: 0o755 });
  return p;
}

interface Line {
  cmd: string;
  pid: number;
  started: number;
}
const lines = (out: string): Line[] => out.trim().split('\n').map((l) => (JSON.parse(l) as Line[])[0]!);

/** a pool whose spawned children the test can see */
function pool(t: { teardown(fn: () => void): void }, o: WarmIpOptions = {}): { p: WarmIp; children: ChildProcess[] } {
  const children: ChildProcess[] = [];
  const p = new WarmIp({
    ip: fakeIp(t),
    refillMs: 60_000,
    ...o,
    spawn: (cmd: string, args: string[], opts: SpawnOptions) => {
      const c = spawn(cmd, args, opts);
      children.push(c);
      return c;
    },
  });
  t.teardown(() => {
    p.close();
    for (const c of children) c.kill('SIGKILL');
  });
  return { p, children };
}

/** the error a batch rejects with (undefined if it resolved) */
const rejection = (p: Promise<string>): Promise<unknown> => p.then(() => undefined, (err: unknown) => err);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(10);
  return cond();
}

t.test('a batch is served by a process started before it was asked for', async (t) => {
  const { p, children } = pool(t);
  p.fill();
  t.equal(children.length, 2, 'fill starts the pool size (2)');
  t.equal(p.waiting, 2);
  await sleep(300); // let the fakes get past their exec and take their start time
  const asked = Date.now();
  const out = lines(await p.batch(['link set dev eth1 up', 'addr show dev eth1']));
  t.same(out.map((l) => l.cmd), ['link set dev eth1 up', 'addr show dev eth1'], 'every command, in order, one process');
  t.equal(out[0]!.pid, out[1]!.pid);
  t.ok(out[0]!.started < asked, `the serving process started ${asked - out[0]!.started} ms before the call`);
  t.ok(children.slice(0, 2).some((c) => c.pid === out[0]!.pid), 'it is one of the processes fill started');
  t.same(p.served, { warm: 1, cold: 0 });
});

t.test('the replacement is started refillMs after the take, not at once', async (t) => {
  const { p, children } = pool(t, { refillMs: 200 });
  p.fill();
  await p.batch(['addr show dev lo']);
  t.equal(children.length, 2, 'no process started by the batch itself');
  t.equal(p.waiting, 1);
  t.ok(await until(() => p.waiting === 2), 'refilled to 2 later');
  t.equal(children.length, 3);
});

t.test('each process serves one batch: two batches, two processes, both started ahead', async (t) => {
  const { p } = pool(t);
  p.fill();
  await sleep(300);
  const asked = Date.now();
  const [a, b] = await Promise.all([p.batch(['addr show dev a']), p.batch(['addr show dev b'])]);
  const la = lines(a)[0]!;
  const lb = lines(b)[0]!;
  t.not(la.pid, lb.pid);
  t.equal(la.cmd, 'addr show dev a');
  t.equal(lb.cmd, 'addr show dev b');
  t.ok(la.started < asked && lb.started < asked, 'both started before the calls');
  t.same(p.served, { warm: 2, cold: 0 });
});

t.test('an empty pool starts one at call time (as before the pool)', async (t) => {
  const { p, children } = pool(t);
  const out = lines(await p.batch(['addr show dev lo']));
  t.equal(out[0]!.cmd, 'addr show dev lo');
  t.equal(children.length, 1);
  t.same(p.served, { warm: 0, cold: 1 });
});

t.test('a waiting process that died is skipped, not handed a batch', async (t) => {
  const { p, children } = pool(t);
  p.fill();
  const dead = children[0]!;
  dead.kill('SIGKILL');
  await until(() => dead.exitCode !== null || dead.signalCode !== null);
  const out = lines(await p.batch(['addr show dev lo']));
  t.equal(out[0]!.pid, children[1]!.pid, 'served by the live one');
  t.same(p.served, { warm: 1, cold: 0 });
  const again = lines(await p.batch(['addr show dev lo']));
  t.equal(again[0]!.cmd, 'addr show dev lo', 'with none left alive, one is started at call time');
  t.same(p.served, { warm: 1, cold: 1 });
});

t.test('a failing command: EIO with what ip said and the commands', async (t) => {
  const { p } = pool(t);
  p.fill();
  const e = await rejection(p.batch(['addr flush dev eth1', 'fail here', 'link set dev eth1 up']));
  t.ok(e instanceof AgentError);
  t.equal((e as AgentError).code, 'EIO');
  t.match((e as AgentError).message, /Operation not permitted/);
  t.match((e as AgentError).message, /commands: addr flush dev eth1; fail here; link set dev eth1 up/);
});

t.test('a batch that hangs is killed after timeoutMs and reported', async (t) => {
  const { p } = pool(t, { timeoutMs: 300 });
  p.fill();
  const e = await rejection(p.batch(['hang']));
  t.ok(e instanceof AgentError);
  t.equal((e as AgentError).code, 'ETIMEDOUT');
  t.match((e as AgentError).message, /no answer within 300 ms, killed \(commands: hang\)/);
});

t.test('an ip that cannot be started: EIO, and the pool stays usable', async (t) => {
  const p = new WarmIp({ ip: '/nonexistent/ip', refillMs: 60_000 });
  t.teardown(() => p.close());
  p.fill();
  const e = await rejection(p.batch(['addr show']));
  t.ok(e instanceof AgentError);
  t.equal((e as AgentError).code, 'EIO');
  t.match((e as AgentError).message, /ENOENT/);
});

t.test('close kills the waiting processes and starts no more', async (t) => {
  const { p, children } = pool(t, { refillMs: 50 });
  p.fill();
  p.close();
  t.ok(await until(() => children.every((c) => c.signalCode !== null || c.exitCode !== null)), 'all waiting processes gone');
  p.fill();
  await sleep(150);
  t.equal(children.length, 2, 'none started after close');
});
