// The guest agent's parts on their own, against a recording sink instead of the virtio-serial port:
// sessions (output and exit as sequenced frames, a missing program and a missing directory reported
// as such, signals to the process group), the rsh relay (a request becomes an `rsh` frame; output
// and exit reach the client; a malformed request is refused), and the quiesce ticket (a quiesce that
// a resume overtook freezes nothing). Nothing here touches the host's cgroups: no session is a job's.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Sessions } from '../../guest/src/sessions.js';
import { RshRelay } from '../../guest/src/rsh-relay.js';
import { Quiescer } from '../../guest/src/quiesce.js';
import type { SeqFrame } from '../../guest/src/channel.js';
import { Pulse, within } from '../fixtures/wait.js';

function recorder() {
  const frames: SeqFrame[] = [];
  const pulse = new Pulse();
  return { frames, pulse, send: (f: SeqFrame) => { frames.push(f); pulse.beat(); } };
}
type Exit = Extract<SeqFrame, { t: 'exit' }>;
const exitOf = (frames: SeqFrame[], sid: string) => frames.find((f): f is Exit => f.t === 'exit' && f.sid === sid);
const outOf = (frames: SeqFrame[], sid: string, fd: 1 | 2) =>
  frames.filter((f): f is Extract<SeqFrame, { t: 'out' }> => f.t === 'out' && f.sid === sid && f.fd === fd).map((f) => Buffer.from(f.data, 'base64').toString()).join('');

t.test('sessions: output in chunks, exit status, stdin, missing program / directory', async (t) => {
  const r = recorder();
  const s = new Sessions(r.send);
  await s.start({ sid: 'a', argv: ['/bin/sh', '-c', 'head -c 40000 /dev/zero | tr "\\0" x; echo err >&2; exit 3'] });
  await r.pulse.until(() => !!exitOf(r.frames, 'a'), 'exit of a');
  t.equal(outOf(r.frames, 'a', 1).length, 40000, 'every byte of stdout');
  t.ok(r.frames.filter((f) => f.t === 'out' && f.sid === 'a' && f.fd === 1).length >= 3, 'stdout in 16 KiB chunks');
  t.equal(outOf(r.frames, 'a', 2), 'err\n');
  t.same(exitOf(r.frames, 'a'), { t: 'exit', sid: 'a', code: 3, signal: null });
  t.equal(s.all.size, 0, 'an ended session is forgotten');

  await s.start({ sid: 'b', argv: ['/bin/cat'], stdin: true });
  s.input('b', Buffer.from('hello\n').toString('base64'), false);
  s.input('b', undefined, true);
  await r.pulse.until(() => !!exitOf(r.frames, 'b'), 'exit of b');
  t.equal(outOf(r.frames, 'b', 1), 'hello\n', 'stdin reaches the command');

  await s.start({ sid: 'c', argv: ['/nonexistent/program'] });
  await r.pulse.until(() => !!exitOf(r.frames, 'c'), 'exit of c');
  t.equal(exitOf(r.frames, 'c')!.code, 127, 'a missing program exits 127, as a shell says');
  t.match(outOf(r.frames, 'c', 2), /cannot execute \/nonexistent\/program/);

  await t.rejects(s.start({ sid: 'd', argv: ['/bin/true'], cwd: '/nonexistent-dir' }), { code: 'ENOENT', message: /working directory \/nonexistent-dir does not exist/ });
  await t.rejects(s.start({ sid: 'e', argv: [] }), { code: 'EINVAL' });
  await s.start({ sid: 'f', argv: ['/bin/sleep', '30'] });
  await t.rejects(s.start({ sid: 'f', argv: ['/bin/true'] }), { code: 'EEXIST' });
  t.throws(() => s.kill('f', 'SIGNOPE'), { code: 'EINVAL' }, 'an unknown signal name is refused');
  s.kill('f', 'SIGKILL');
  await r.pulse.until(() => !!exitOf(r.frames, 'f'), 'exit of f');
});

t.test('sessions: a signal reaches the whole process group', async (t) => {
  const r = recorder();
  const s = new Sessions(r.send);
  // the shell waits for a child: both must end on one SIGTERM to the session
  await s.start({ sid: 'g', argv: ['/bin/sh', '-c', 'sleep 30 & echo $!; wait'] });
  await r.pulse.until(() => /\d+\n/.test(outOf(r.frames, 'g', 1)), 'the child pid');
  const child = Number(outOf(r.frames, 'g', 1).trim());
  s.kill('g', 'SIGTERM');
  await r.pulse.until(() => !!exitOf(r.frames, 'g'), 'exit of g');
  t.equal(exitOf(r.frames, 'g')!.signal, 'SIGTERM');
  await within((async () => { while (fs.existsSync(`/proc/${child}`) && !/\) Z /.test(fs.readFileSync(`/proc/${child}/stat`, 'utf8'))) await new Promise((res) => setImmediate(res)); })(), 5000, 'the grandchild to end');
  t.pass('the grandchild got the signal too');
});

t.test('rsh relay: request -> rsh frame; output and exit back to the client; bad request refused', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rsh-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = recorder();
  const relay = new RshRelay(path.join(dir, 'rsh.sock'), r.send);
  const srv = relay.start();
  t.teardown(() => srv.close());
  await within(new Promise((res) => srv.once('listening', res)), 5000, 'the relay to listen');
  t.equal(fs.statSync(path.join(dir, 'rsh.sock')).mode & 0o777, 0o600, 'socket mode 0600');

  const client = net.createConnection(path.join(dir, 'rsh.sock'));
  let got = '';
  client.on('data', (d) => { got += d.toString(); });
  const closed = new Promise((res) => client.on('close', res));
  client.write(JSON.stringify({ host: 'vm2', argv: ['orted', '-mca', 'x'] }) + '\n');
  await r.pulse.until(() => r.frames.some((f) => f.t === 'rsh'), 'the rsh frame');
  const req = r.frames.find((f): f is Extract<SeqFrame, { t: 'rsh' }> => f.t === 'rsh')!;
  t.same({ host: req.host, argv: req.argv }, { host: 'vm2', argv: ['orted', '-mca', 'x'] });
  relay.out(req.rid, 1, Buffer.from('hi').toString('base64'));
  relay.exit(req.rid, 7);
  await within(closed, 5000, 'the client to be closed');
  t.same(got.trim().split('\n').map((l) => JSON.parse(l)), [{ fd: 1, data: 'aGk=' }, { code: 7 }]);

  const bad = net.createConnection(path.join(dir, 'rsh.sock'));
  let badGot = '';
  bad.on('data', (d) => { badGot += d.toString(); });
  const badClosed = new Promise((res) => bad.on('close', res));
  bad.write('not json\n');
  await within(badClosed, 5000, 'the bad client to be closed');
  t.same(JSON.parse(badGot), { code: 255, error: 'bad request' });
  t.equal(r.frames.filter((f) => f.t === 'rsh').length, 1, 'no frame for a bad request');
});

t.test('quiesce: a quiesce overtaken by a resume freezes nothing; hooks run the command', async (t) => {
  const q = new Quiescer(() => []);
  const late = q.quiesce({ adapter: 'hooks', stallMs: 50, command: 'exit 9' });
  await q.resume({ adapter: 'hooks' });
  await t.rejects(late, { code: 'ECANCELED' }, 'the stalled quiesce sees it was overtaken');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hooks-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  t.same(await q.quiesce({ adapter: 'hooks', command: `touch ${dir}/q` }), { adapter: 'hooks', frozen: 0 });
  t.ok(fs.existsSync(`${dir}/q`), 'the hook ran');
  await t.rejects(q.quiesce({ adapter: 'nope' as 'hooks' }), { code: 'EINVAL' });
});
