// `symrun exec VM -- CMD [ARGS]`: a command in a guest of the running job, over the control socket, with
// stdin, a pseudo-terminal (-t), window size and signals forwarded.
import os from 'node:os';
import type { Command } from 'commander';
import { SymError, EXIT, isSymError } from '../errors.js';
import { findJob } from './jobref.js';
import { callerOf, notifier, onEvents } from '../agent/typed.js';
import { CONTROL_JOB_EVENTS, type ControlClientEvents, type ControlJobEvents, type ControlMethods } from '../wire/control.js';
import type { EventOf } from '../wire/rpc.js';

async function execCommand(vm: string, cmd: string[], flags: { job?: string; interactive?: boolean; tty?: boolean }): Promise<number> {
  if (!cmd.length) throw new SymError('ESYM_USAGE', { message: 'no command given', fix: 'symrun exec VM -- COMMAND [ARGS]', exitCode: EXIT.usage });
  const j = await findJob(flags.job);
  const peer = await j.connect();
  // the guests have the job's directory (staged), not the caller's: run there only if we are inside it
  const job = callerOf<ControlMethods>(peer);
  const ev = notifier<ControlClientEvents>(peer);
  const st = await job.call('status', {}, { timeoutMs: 10_000 });
  const here = process.cwd();
  const cwd = st.cwd && (here === st.cwd || here.startsWith(st.cwd.endsWith('/') ? st.cwd : `${st.cwd}/`)) ? here : undefined;
  const tty = !!flags.tty && !!process.stdin.isTTY;
  if (flags.tty && !tty) process.stderr.write('symrun: warning: -t ignored: stdin is not a terminal\n');
  const pty = tty ? { cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 } : undefined;
  const forwardStdin = !!flags.interactive || tty;
  let sid = '';
  let settled = false;
  const early: Array<EventOf<ControlJobEvents>> = [];
  const onStdin = (d: Buffer) => ev.notify('exec.in', { sid, data: d.toString('base64') });
  const onStdinEnd = () => ev.notify('exec.in', { sid, eof: true });
  const onResize = () => ev.notify('exec.resize', { sid, cols: process.stdout.columns, rows: process.stdout.rows });
  let signalled = 0;
  // the first signal goes to the remote command; a second one ends symrun exec (the command may go on)
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signalled === 1) ev.notify('exec.signal', { sid, sig });
    else process.exit(128 + (os.constants.signals[sig] ?? 1));
  };
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  // restore the terminal and stop reading stdin, or the process would never exit
  const cleanup = () => {
    if (tty) try { process.stdin.setRawMode(false); } catch { /* stdin gone */ }
    process.stdin.off('data', onStdin);
    process.stdin.off('end', onStdinEnd);
    if (forwardStdin) process.stdin.pause();
    process.stdout.off('resize', onResize);
    for (const s of sigs) process.off(s, onSignal);
  };
  return new Promise<number>((resolve, reject) => {
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      cleanup();
      fn();
      peer.close();
    };
    onEvents<ControlJobEvents>(peer, CONTROL_JOB_EVENTS, (ev) => {
      if (!sid) { early.push(ev); return; }
      handle(ev);
    });
    const handle = (ev: EventOf<ControlJobEvents>) => {
      if (ev.name === 'op.event') return;
      // one control connection carries one exec; the coordinator can send output of a command that
      // fails at once (e.g. not found) before it knows the session id, with sid '' (see job/control.ts)
      if (ev.data.sid !== sid && ev.data.sid !== '') return;
      if (ev.name === 'exec.out') (ev.data.fd === 2 ? process.stderr : process.stdout).write(Buffer.from(ev.data.data, 'base64'));
      else finish(() => resolve(ev.data.status));
    };
    peer.on('close', () => finish(() => reject(new SymError('ESYM_JOB_GONE', { message: `job ${j.id} ended during exec`, exitCode: EXIT.runtime }))));
    job.call('exec.start', { vm, argv: cmd, pty, cwd }).then((r) => {
      sid = r.sid;
      // without a terminal, Ctrl-C/SIGTERM go to the remote command (with one, the pty sends ^C itself)
      if (!tty) for (const s of sigs) process.on(s, onSignal);
      if (forwardStdin) {
        if (tty) process.stdin.setRawMode(true);
        process.stdin.on('data', onStdin);
        process.stdin.on('end', onStdinEnd);
        process.stdin.resume();
        if (tty) process.stdout.on('resize', onResize);
      } else ev.notify('exec.in', { sid, eof: true });
      for (const ev of early.splice(0)) handle(ev);
    }, (e) => finish(() => reject(isSymError(e) && e.code === 'ESYM_NO_VM' ? new SymError('ESYM_NO_VM', { message: e.message, field: 'VM', value: vm, fix: e.fix, exitCode: EXIT.usage }) : e)));
  });
}

export function registerExec(program: Command, cmd: string[], setExit: (n: number) => void): void {
  program
    .command('exec <vm>')
    .description('run a command in a guest of the running job: symrun exec VM -- CMD [ARGS]')
    .option('--job <id>', 'job id (default: the only running job)')
    .option('-i, --interactive', 'forward stdin')
    .option('-t, --tty', 'allocate a pseudo-terminal')
    .addHelpText('after', `
The command runs in the guest in the current directory if that is (inside) the job's directory, else in /.
Exit status: the command's (128+N for a signal; 127 if not found); 2 if no job is running, --job names
none, or VM is not a VM of the job; 4 if the job ends (or cannot be reached) during exec.`)
    .action(async (vm: string, f: { job?: string; interactive?: boolean; tty?: boolean }) => {
      setExit(await execCommand(vm, cmd, f));
    });

}
