// Commands the host starts in the guest (ranks, exec, rsh targets): one session each, with stdout/stderr
// sent as sequenced frames (replayed after a move), stdin, a pseudo-terminal, signals to the group.
import fs from 'node:fs';
import os from 'node:os';
import { spawn, type ChildProcess } from 'node:child_process';
import type { ExecArgs } from '../protocol/index.js';
import type { SeqFrame } from './channel.js';
import { AgentError } from './util.js';
import { ensureJobCgroup, JOB_CGROUP } from './cgroup.js';

const OUT_CHUNK = 16 * 1024;

export interface Session {
  sid: string;
  child?: ChildProcess;
  pty?: { write(d: string): void; resize(c: number, r: number): void; kill(sig?: string): void; pid: number };
  pid: number;
  job: boolean;
}

export class Sessions {
  readonly all = new Map<string, Session>();
  constructor(private readonly sendSeq: (f: SeqFrame) => void) {}

  private emitOut(sid: string, fd: 1 | 2, data: Buffer): void {
    for (let off = 0; off < data.length; off += OUT_CHUNK) {
      this.sendSeq({ t: 'out', sid, fd, data: data.subarray(off, off + OUT_CHUNK).toString('base64') });
    }
  }

  /** pids of the job's sessions (the roots of the rank trees) */
  jobRoots(): number[] {
    return [...this.all.values()].filter((s) => s.job).map((s) => s.pid);
  }

  input(sid: string, data: string | undefined, eof: boolean | undefined): void {
    const s = this.all.get(sid);
    if (!s) return;
    if (data) {
      const b = Buffer.from(data, 'base64');
      if (s.pty) s.pty.write(b.toString('utf8'));
      else s.child?.stdin?.write(b);
    }
    if (eof) s.child?.stdin?.end();
  }

  resize(sid: string, cols: number, rows: number): void {
    this.all.get(sid)?.pty?.resize(cols, rows);
  }

  async start(a: ExecArgs): Promise<{ pid: number }> {
    if (this.all.has(a.sid)) throw new AgentError('EEXIST', `session ${a.sid} exists`);
    if (!Array.isArray(a.argv) || a.argv.length === 0 || !a.argv.every((s) => typeof s === 'string')) throw new AgentError('EINVAL', 'argv must be a non-empty string array');
    if (a.cwd !== undefined) {
      // spawn would report a missing cwd as the *program* not found (ENOENT, 127): say what is missing
      let dir = false;
      try { dir = fs.statSync(a.cwd).isDirectory(); } catch { /* missing */ }
      if (!dir) throw new AgentError('ENOENT', `working directory ${a.cwd} does not exist in ${os.hostname()}`);
    }
    const env = { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', HOME: '/root', ...(a.env ?? {}) };
    let argv = a.argv;
    if (a.job && ensureJobCgroup()) {
      // enter the job cgroup before exec, so every descendant (ranks, orted) is frozen with it
      argv = ['/bin/sh', '-c', `echo $$ > ${JOB_CGROUP}/cgroup.procs && exec "$0" "$@"`, ...argv];
    }
    if (a.pty) {
      const pty = await import('node-pty');
      const p = pty.spawn(argv[0]!, argv.slice(1), { name: 'xterm-256color', cols: a.pty.cols, rows: a.pty.rows, cwd: a.cwd || '/root', env });
      const s: Session = { sid: a.sid, pty: p, pid: p.pid, job: !!a.job };
      this.all.set(a.sid, s);
      p.onData((d: string) => this.emitOut(a.sid, 1, Buffer.from(d)));
      p.onExit(({ exitCode, signal }: { exitCode: number; signal?: number }) => {
        this.all.delete(a.sid);
        this.sendSeq({ t: 'exit', sid: a.sid, code: signal ? null : exitCode, signal: signal ? signalName(signal) : null });
      });
      return { pid: p.pid };
    }
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: a.cwd || '/',
      env,
      detached: true, // own process group: signals and freeze reach the whole tree
      stdio: [a.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      uid: a.uid,
      gid: a.gid,
    });
    const s: Session = { sid: a.sid, child, pid: child.pid ?? -1, job: !!a.job };
    this.all.set(a.sid, s);
    child.stdout!.on('data', (d: Buffer) => this.emitOut(a.sid, 1, d));
    child.stderr!.on('data', (d: Buffer) => this.emitOut(a.sid, 2, d));
    child.stdin?.on('error', () => {});
    let done = false;
    const finish = (code: number | null, signal: string | null): void => {
      if (done) return;
      done = true;
      this.all.delete(a.sid);
      this.sendSeq({ t: 'exit', sid: a.sid, code, signal });
    };
    child.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code === 'ENOENT' ? 127 : e.code === 'EACCES' ? 126 : 1;
      this.emitOut(a.sid, 2, Buffer.from(`symrun-agent: cannot execute ${argv[0]}: ${e.message}\n`));
      finish(code, null);
    });
    child.on('close', (code, signal) => finish(code, signal));
    return { pid: child.pid ?? -1 };
  }

  kill(sid: string, sig: string): void {
    const s = this.all.get(sid);
    if (!s) return;
    const signo = (os.constants.signals as Record<string, number>)[sig];
    if (signo === undefined) throw new AgentError('EINVAL', `unknown signal ${sig}`);
    if (s.pty) {
      s.pty.kill(sig);
      return;
    }
    try {
      process.kill(-s.pid, signo); // the whole process group
    } catch {
      try {
        process.kill(s.pid, signo);
      } catch {
        /* already gone */
      }
    }
  }
}

function signalName(n: number): string {
  for (const [k, v] of Object.entries(os.constants.signals)) if (v === n) return k;
  return `SIG${n}`;
}

