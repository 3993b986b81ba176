// `ip -json -batch -` processes started ahead, so a change made while the ranks are frozen pays no exec.
//
// Why: reconfigure's `ip` batch runs while ranks are frozen, and a process started at call time adds its
// fork+exec and start-up to it. Measured inside a TCG guest: a one-command batch took 64-89 ms from a
// process started at call time and 40-55 ms from one started ahead (~30 ms saved per batch). The rest of
// reconfigure's `ip` step (~0.2 s) is the commands themselves, chiefly the hot-plugged NIC's bring-up.
// `ip -batch -` opens its netlink socket before reading stdin and runs commands as they arrive, so a
// process started earlier and left waiting serves a batch as a freshly started one would, minus the start.
//
// Each process serves exactly one batch (stdin is closed after the commands; its exit status is the
// batch's), so nothing `ip` caches (the interface name -> index map) outlives a batch: a NIC that appears
// or is renamed after the process started is looked up afresh. A pooled process is only taken while it
// is still alive; one that died while waiting is dropped and another used (or one started at call time,
// as before). The pool is refilled `refillMs` after a batch was taken, not at once: the fork would
// otherwise compete for the guest's CPU with the reconfiguration the ranks are waiting for.
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { AgentError } from './util.js';

export type Spawner = (cmd: string, args: string[], opts: SpawnOptions) => ChildProcess;

export interface WarmIpOptions {
  /** processes kept waiting (reconfigure of a bond takes up to 3 batches in a row) */
  size?: number;
  /** wait after a batch was taken before starting its replacement */
  refillMs?: number;
  /** a batch that has not finished this long after its commands were written is killed */
  timeoutMs?: number;
  /** the `ip` binary */
  ip?: string;
  spawn?: Spawner;
}

interface ProcState {
  out: string;
  err: string;
  closed: boolean;
  spawnError?: Error;
}

export class WarmIp {
  private readonly state = new WeakMap<ChildProcess, ProcState>();
  private readonly ready: ChildProcess[] = [];
  private readonly size: number;
  private readonly refillMs: number;
  private readonly timeoutMs: number;
  private readonly ip: string;
  private readonly spawnFn: Spawner;
  private refillTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** batches served by a process started ahead / by one started at call time (for tests and logs) */
  readonly served = { warm: 0, cold: 0 };

  constructor(o: WarmIpOptions = {}) {
    this.size = o.size ?? 2;
    this.refillMs = o.refillMs ?? 1000;
    this.timeoutMs = o.timeoutMs ?? 15_000;
    this.ip = o.ip ?? 'ip';
    this.spawnFn = o.spawn ?? nodeSpawn;
  }

  /** Start processes until `size` are waiting. */
  fill(): void {
    if (this.closed) return;
    this.prune();
    while (this.ready.length < this.size) {
      const c = this.start();
      if (!c) break;
      this.ready.push(c);
    }
  }

  /** Run CMDS in one `ip -json -batch -` (it stops at the first that fails); its JSON output. */
  batch(cmds: string[]): Promise<string> {
    this.prune();
    let child = this.ready.shift();
    if (child) this.served.warm++;
    else {
      child = this.start();
      this.served.cold++;
    }
    this.scheduleRefill();
    if (!child) return Promise.reject(new AgentError('EIO', `ip: could not start ${this.ip} (commands: ${cmds.join('; ')})`));
    return this.run(child, cmds);
  }

  /** Kill every waiting process and start no more. */
  close(): void {
    this.closed = true;
    if (this.refillTimer) clearTimeout(this.refillTimer);
    for (const c of this.ready.splice(0)) c.kill('SIGKILL');
  }

  /** how many are waiting now */
  get waiting(): number {
    this.prune();
    return this.ready.length;
  }

  private start(): ChildProcess | undefined {
    let c: ChildProcess;
    try {
      c = this.spawnFn(this.ip, ['-json', '-batch', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch {
      return undefined;
    }
    const st: ProcState = { out: '', err: '', closed: false };
    this.state.set(c, st);
    c.stdout!.setEncoding('utf8');
    c.stderr!.setEncoding('utf8');
    c.stdout!.on('data', (d: string) => (st.out += d));
    c.stderr!.on('data', (d: string) => (st.err += d));
    c.on('error', (e) => (st.spawnError = e));
    c.on('close', () => (st.closed = true));
    c.stdin!.on('error', () => undefined); // EPIPE from a process that died: reported by its exit
    // a waiting process must not keep the agent alive on its own
    c.unref();
    return c;
  }

  private prune(): void {
    for (let i = this.ready.length - 1; i >= 0; i--) {
      const c = this.ready[i]!;
      const st = this.state.get(c)!;
      if (c.exitCode !== null || c.signalCode !== null || st.closed || st.spawnError) this.ready.splice(i, 1);
    }
  }

  private scheduleRefill(): void {
    if (this.closed || this.refillTimer) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      this.fill();
    }, this.refillMs);
    this.refillTimer.unref();
  }

  private run(c: ChildProcess, cmds: string[]): Promise<string> {
    const st = this.state.get(c)!;
    return new Promise((resolve, reject) => {
      const what = `(commands: ${cmds.join('; ')})`;
      let settled = false;
      const done = (code: number | null, signal: NodeJS.Signals | null, timedOut = false) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (timedOut) reject(new AgentError('ETIMEDOUT', `ip: no answer within ${this.timeoutMs} ms, killed ${what}`));
        else if (st.spawnError) reject(new AgentError('EIO', `ip: ${st.spawnError.message} ${what}`));
        else if (code === 0) resolve(st.out);
        else reject(new AgentError('EIO', `ip: ${st.err.trim() || (signal ? `killed by ${signal}` : `exit ${code}`)} ${what}`));
      };
      // a hung batch is killed and answered at once (not at 'close': a child of it could hold stdout)
      const timer = setTimeout(() => {
        c.kill('SIGKILL');
        done(null, 'SIGKILL', true);
      }, this.timeoutMs);
      // 'close' comes after stdout/stderr are drained; one that already came (a process that died
      // between prune and here) is answered from the recorded state
      if (st.closed) return done(c.exitCode, c.signalCode);
      c.once('close', done);
      c.stdin!.end(cmds.join('\n') + '\n');
    });
  }
}
