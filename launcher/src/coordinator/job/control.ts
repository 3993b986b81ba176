// The job's control socket (runDir/control.sock, mode 0600 in a 0700 directory): what `symrun status`,
// `exec`, `migrate`, `cancel` and `checkpoint` ask of the running job. Output of an exec is streamed
// back on the same connection; a client that goes away hangs up its commands (SIGHUP).
// A client must prove the job's control key (runDir/control.key, mode 0600, new for every coordinator,
// written before the socket exists) in the channel's handshake, and the job proves it back; the
// connection is sealed from then on (agent/channel.ts, docs/channels.md).
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { SymError, EXIT } from '../../errors.js';
import { serveUnix, type RpcPeer } from '../../agent/channel.js';
import type { ExecHandle } from '../../agent/guest.js';
import type { Migrations } from '../migrate.js';
import type { Checkpoints } from '../checkpoint.js';
import { notifier, onEvents, serve } from '../../agent/typed.js';
import { CONTROL_CLIENT_EVENTS, CONTROL_PARAMS, type ControlClientEvents, type ControlJobEvents, type ControlMethods, type JobStatus } from '../../wire/control.js';
import type { EventSink } from './events.js';
import type { JobContext } from './context.js';

export interface ControlDeps {
  status(): JobStatus;
  migrations: Migrations;
  checkpoints: Checkpoints;
  events: EventSink;
}

export const CONTROL_KEY_FILE = 'control.key';

/** A new control key in runDir/control.key (mode 0600 from its creation; a dead coordinator's is replaced). */
export function writeControlKey(runDir: string): string {
  const file = path.join(runDir, CONTROL_KEY_FILE);
  const key = crypto.randomBytes(32).toString('hex');
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, key + '\n', { mode: 0o600, flag: 'wx' });
  return key;
}

/** The control key of the job whose run directory is `runDir` (a client: `symrun status`, the proxy). */
export function readControlKey(runDir: string): string {
  const file = path.join(runDir, CONTROL_KEY_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SymError('ESYM_CONTROL_KEY', {
      message: `cannot read the job's control key ${file}: ${code === 'EACCES' ? 'permission denied' : code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
      field: 'control key', value: file,
      fix: code === 'EACCES' ? 'only the job\'s owner (and root) can talk to a job: run this as its owner' : 'the job was started by an older symrun (no key), or is ending: check `symrun status` with the symrun that started it',
      exitCode: EXIT.usage,
    });
  }
  const key = text.trim();
  if (!/^[0-9a-f]{64}$/.test(key)) {
    throw new SymError('ESYM_CONTROL_KEY', { message: `the job's control key ${file} is not 64 hex digits`, field: 'control key', value: file, fix: 'the file was changed; restart the job\'s coordinator (`symrun recover`) to write a new one', exitCode: EXIT.usage });
  }
  return key;
}

/** Serve the control socket of `job` until teardown. */
export async function serveControl(job: JobContext, deps: ControlDeps): Promise<void> {
  const sock = path.join(job.runDir, 'control.sock');
  fs.rmSync(sock, { force: true }); // a dead coordinator's (symrun recover)
  const secret = writeControlKey(job.runDir); // before the socket: a listed job always has its key
  const server = await serveUnix(sock, {
    secret,
    onPeer: (p) => attach(job, deps, p),
    onRefused: (e) => job.err.write(`symrun: warning: refused a control client: ${e.message}\n`),
  });
  job.onCleanup('control socket', () => server.close());
}

function attach(job: JobContext, deps: ControlDeps, p: RpcPeer): void {
  const execs = new Map<string, ExecHandle>();
  const ev = notifier<ControlJobEvents>(p);
  const s = serve<ControlMethods>(p, CONTROL_PARAMS, `job ${job.id}`);
  s.handle('status', () => deps.status());
  s.handle('events.subscribe', () => { deps.events.subscribe(p); return {}; });
  s.handle('migrate', async (a) => {
    if (job.state !== 'running') throw new SymError('ESYM_JOB_STATE', { message: `job ${job.id} is ${job.state}; VMs can be migrated while the job runs`, fix: 'wait until `symrun status` shows the job running' });
    deps.events.subscribe(p);
    const { op, done } = deps.migrations.migrate(a);
    if (!a.wait) return { op };
    return { op, result: await done };
  });
  s.handle('cancel', (a) => deps.migrations.cancel(a.vm));
  s.handle('checkpoint', (a) => { deps.events.subscribe(p); return deps.checkpoints.request(a); });
  s.handle('exec.start', async (a) => {
    const vm = job.vms.get(a.vm);
    if (!vm) throw new SymError('ESYM_NO_VM', { message: `no VM named ${a.vm} in job ${job.id}`, fix: `VMs: ${[...job.vms.keys()].join(', ')}` });
    // output can arrive before exec() returns the session id: hold it until then
    let sid = '';
    const early: Array<[1 | 2, Buffer]> = [];
    const out = (fd: 1 | 2) => (d: Buffer) => (sid ? ev.notify('exec.out', { sid, fd, data: d.toString('base64') }) : early.push([fd, d]));
    const h = await vm.client.exec({ argv: a.argv, pty: a.pty, cwd: a.cwd, stdin: true }, { onStdout: out(1), onStderr: out(2) });
    sid = h.sid;
    for (const [fd, d] of early) ev.notify('exec.out', { sid, fd, data: d.toString('base64') });
    execs.set(h.sid, h);
    void h.done.then((r) => { execs.delete(h.sid); ev.notify('exec.exit', { sid: h.sid, status: r.status }); });
    return { sid: h.sid };
  });
  onEvents<ControlClientEvents>(p, CONTROL_CLIENT_EVENTS, (ev) => {
    const h = execs.get(ev.data.sid);
    if (!h) return;
    switch (ev.name) {
      case 'exec.in':
        if (typeof ev.data.data === 'string') h.write(Buffer.from(ev.data.data, 'base64'));
        if (ev.data.eof === true) h.end();
        break;
      case 'exec.resize': h.resize(ev.data.cols, ev.data.rows); break;
      case 'exec.signal': h.signal(ev.data.sig); break;
    }
  });
  p.on('close', () => {
    deps.events.unsubscribe(p);
    for (const h of execs.values()) h.signal('SIGHUP');
    execs.clear();
  });
  p.start();
}
