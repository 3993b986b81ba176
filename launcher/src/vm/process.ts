// One QEMU process: spawn in its own process group, connect QMP, stop politely then by force.
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { SymError } from '../errors.js';
import { DEFAULTS } from '../defaults.js';
import { QmpClient } from '../qmp/client.js';
import { detectQemu, qemuMissingError, QEMU_BINARY, type QemuInfo } from './qemu.js';
import { qemuArgs, vmPaths, type VmSpec } from './args.js';
import { signalGroup, stopGroup } from '../util/children.js';

export interface VmExit { code: number | null; signal: NodeJS.Signals | null }

export interface VmProcess {
  name: string;
  pid: number;
  qmp: QmpClient;
  exited: Promise<VmExit>;
  consoleLog: string;
  /** QEMU stderr is copied here */
  stderrLog: string;
  args: string[];
  qemu: QemuInfo;
  /** QMP quit -> SIGTERM to the group after graceMs -> SIGKILL after another graceMs; idempotent */
  stop(opts?: { graceMs?: number }): Promise<VmExit>;
}

export interface StartVmOptions {
  signal?: AbortSignal;
  qemuBinary?: string;
  /** QEMU info if already detected (skips `--version`) */
  qemu?: QemuInfo;
  /** deadline for QEMU to create its QMP socket and negotiate (default DEFAULTS.qmp.connectTimeoutMs) */
  connectTimeoutMs?: number;
  /** use this argument vector instead of qemuArgs(spec) (tests, special cases); QMP must be at vmPaths(spec).qmpSocket */
  argsOverride?: string[];
}

const qemuCache = new Map<string, Promise<QemuInfo>>();
function cachedDetect(binary: string): Promise<QemuInfo> {
  let p = qemuCache.get(binary);
  if (!p) {
    p = detectQemu(binary);
    p.catch(() => qemuCache.delete(binary));
    qemuCache.set(binary, p);
  }
  return p;
}

const PERL = '/usr/bin/perl';
const BLOCK_TERM = 'use POSIX; sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGTERM)) or die "sigprocmask: $!"; exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n"';

function delay(ms: number): Promise<void> { return new Promise((r) => setTimeout(r, ms)); }

export async function startVm(spec: VmSpec, opts: StartVmOptions = {}): Promise<VmProcess> {
  const binary = opts.qemuBinary ?? QEMU_BINARY;
  const qemu = opts.qemu ?? await cachedDetect(binary);
  const args = opts.argsOverride ?? qemuArgs(spec, qemu);
  const paths = vmPaths(spec);
  fs.mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
  for (const f of [paths.qmpSocket, paths.pidFile]) fs.rmSync(f, { force: true });
  if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new SymError('ESYM_ABORTED', { message: `start of VM ${spec.name} cancelled` });

  const stderrFd = fs.openSync(paths.stderrLog, 'a');
  // SIGTERM blocked across exec (libuv's spawn unblocks every signal, so a tiny perl exec does it;
  // perl-base is part of every Debian system; without perl QEMU starts as is)
  const [file, argv] = spec.holdTerm && fs.existsSync(PERL) ? [PERL, ['-e', BLOCK_TERM, qemu.binary, ...args]] : [qemu.binary, args];
  const child = spawn(file, argv, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderrTail = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderrTail = (stderrTail + d.toString('utf8')).slice(-4096);
    try { fs.writeSync(stderrFd, d); } catch { /* disk full: keep the tail */ }
  });

  let spawnError: Error | undefined;
  const exited = new Promise<VmExit>((resolve) => {
    child.on('error', (e) => { spawnError = e; resolve({ code: null, signal: null }); });
    child.on('close', (code, signal) => { try { fs.closeSync(stderrFd); } catch { /* closed */ } resolve({ code, signal }); });
  });
  let isGone = false;
  void exited.then(() => { isGone = true; });

  // Connect QMP, but give up as soon as QEMU exits or the caller aborts.
  const connectAbort = new AbortController();
  const onCallerAbort = () => connectAbort.abort(opts.signal!.reason);
  opts.signal?.addEventListener('abort', onCallerAbort, { once: true });
  void exited.then(() => connectAbort.abort(new Error('QEMU exited')));

  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: opts.connectTimeoutMs ?? DEFAULTS.qmp.connectTimeoutMs, signal: connectAbort.signal });
  } catch (e) {
    if (!isGone) signalGroup(child.pid, 'SIGKILL');
    const ex = await exited;
    opts.signal?.removeEventListener('abort', onCallerAbort);
    if (spawnError && (spawnError as NodeJS.ErrnoException).code === 'ENOENT') throw qemuMissingError(qemu.binary, spawnError);
    if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new SymError('ESYM_ABORTED', { message: `start of VM ${spec.name} cancelled` });
    // give the stderr pipe a moment to drain
    await delay(20);
    const tail = stderrTail.trim().split('\n').slice(-8).join('\n');
    throw new SymError('ESYM_QEMU_START', {
      message: `QEMU for VM ${spec.name} ${ex.code !== null || ex.signal ? `exited during start (${ex.signal ?? `status ${ex.code}`})` : 'did not start'}${tail ? `:\n${tail}` : ''}`,
      fix: `check the QEMU arguments and the files they name; full stderr: ${paths.stderrLog}`,
      details: { vm: spec.name, exit: ex, stderrTail: tail, args, spawnError: spawnError?.message },
      cause: e,
    });
  }
  opts.signal?.removeEventListener('abort', onCallerAbort);

  const pid = child.pid!;
  let stopping: Promise<VmExit> | undefined;
  const stop = (o: { graceMs?: number } = {}): Promise<VmExit> => {
    if (stopping) return stopping;
    const graceMs = o.graceMs ?? DEFAULTS.teardown.stopGraceMs;
    stopping = (async () => {
      if (!isGone) {
        // QMP quit (QEMU may close first), then SIGTERM, then SIGKILL to the group
        await stopGroup(pid, exited, { polite: qmp.state === 'ready' ? () => qmp.execute('quit', undefined, { timeoutMs: Math.min(graceMs, 2000) }) : undefined, graceMs });
      }
      const ex = await exited;
      await qmp.close();
      return ex;
    })();
    return stopping;
  };

  return { name: spec.name, pid, qmp, exited, consoleLog: paths.consoleLog, stderrLog: paths.stderrLog, args, qemu, stop };
}
