// Small child-process helpers for the image builder (host tools: ldd, dpkg, mke2fs, cpio, ldconfig).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { SymError, EXIT } from '../errors.js';
import { signalGroup } from '../util/children.js';

export interface RunResult { stdout: string; stderr: string; code: number }

export interface RunOpts {
  cwd?: string;
  signal?: AbortSignal;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  /** do not throw on a non-zero exit */
  allowFail?: boolean;
  /** write stdout here instead of buffering it */
  stdoutFile?: string;
}

export function abortError(signal?: AbortSignal): SymError {
  return new SymError('ESYM_IMAGE_ABORTED', {
    message: 'guest image build was cancelled',
    cause: signal?.reason,
    exitCode: EXIT.runtime,
  });
}

export function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError(signal);
}

/**
 * The PATH host tools are looked up in: the caller's, then the system directories. An ordinary user's
 * PATH usually has no /sbin, where Debian keeps ldconfig and mke2fs.
 */
export function toolPath(p: string | undefined): string {
  const sys = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  const have = (p ?? '').split(':').filter(Boolean);
  return [...have, ...sys.filter((d) => !have.includes(d))].join(':');
}

/** Run a host command; stdout/stderr are collected. Missing binaries become ESYM_IMAGE_HOST_TOOL. */
export function run(cmd: string, args: readonly string[], opts: RunOpts = {}): Promise<RunResult> {
  checkAbort(opts.signal);
  return new Promise((resolve, reject) => {
    const out = opts.stdoutFile ? fs.createWriteStream(opts.stdoutFile) : undefined;
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? { ...process.env, PATH: toolPath(process.env.PATH), LC_ALL: 'C' },
      stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true, // own process group: an abort kills the whole tool
    });
    const so: Buffer[] = [];
    const se: Buffer[] = [];
    let seLen = 0;
    if (out) child.stdout!.pipe(out); else child.stdout!.on('data', (b: Buffer) => so.push(b));
    child.stderr!.on('data', (b: Buffer) => { if (seLen < 1 << 20) { se.push(b); seLen += b.length; } });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    const onAbort = () => signalGroup(child.pid, 'SIGKILL');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e: NodeJS.ErrnoException) => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (e.code === 'ENOENT') {
        reject(new SymError('ESYM_IMAGE_HOST_TOOL', {
          message: `the image builder needs \`${cmd}\`, which is not installed on this host`,
          fix: 'install the host packages with `bash scripts/setup`',
          value: cmd,
          exitCode: EXIT.environment,
        }));
      } else reject(e);
    });
    child.on('close', async (code, sig) => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (out) await new Promise<void>((r) => { if (out.writableFinished) r(); else out.on('finish', () => r()); });
      if (opts.signal?.aborted) return reject(abortError(opts.signal));
      const res = { stdout: Buffer.concat(so).toString('utf8'), stderr: Buffer.concat(se).toString('utf8'), code: code ?? 128 };
      if ((code !== 0 || sig) && !opts.allowFail) {
        reject(new SymError('ESYM_IMAGE_BUILD', {
          message: `guest image build step failed: ${cmd} ${args.slice(0, 6).join(' ')}${args.length > 6 ? ' ...' : ''} exited ${sig ?? code}`,
          fix: 'see the tool output in details; `bash scripts/setup` installs the host packages the builder needs',
          details: { command: [cmd, ...args].join(' ').slice(0, 2000), stderr: res.stderr.slice(-4000) },
          exitCode: EXIT.runtime,
        }));
      } else resolve(res);
    });
  });
}

/** Run fn over items with at most `n` in flight. */
export async function mapLimit<T, R>(items: readonly T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const res: R[] = new Array(items.length);
  let i = 0;
  const worker = async () => {
    while (i < items.length) {
      const k = i++;
      res[k] = await fn(items[k]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return res;
}
