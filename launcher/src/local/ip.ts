// Thin wrapper around iproute2 `ip` for local mode. Few spawns: whole setups go through `ip -batch -`.
import { execa } from 'execa';
import { SymError, EXIT } from '../errors.js';

export interface IpResult {
  ok: boolean;
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
}

export interface RunOpts {
  signal?: AbortSignal;
  input?: string;
}

export function missingTool(tool: string, pkg: string, cause?: unknown): SymError {
  return new SymError('ESYM_MISSING_TOOL', {
    message: `symrun --local needs the \`${tool}\` command, which is not installed or not on PATH`,
    field: '--local',
    fix: `install ${pkg} (Debian/Ubuntu: apt-get install ${pkg}; RHEL/Fedora: dnf install ${pkg})`,
    exitCode: EXIT.environment,
    cause,
  });
}

/** Run a command; never throws for a non-zero exit (see ok/stderr), throws SymError if the tool is missing. */
export async function run(file: string, args: readonly string[], opts: RunOpts = {}): Promise<IpResult> {
  const r = await execa(file, args, {
    reject: false,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : undefined,
    cancelSignal: opts.signal,
    stripFinalNewline: true,
    env: { LC_ALL: 'C' },
  });
  if (r.code === 'ENOENT' || (r.failed && r.exitCode === undefined && /ENOENT/.test(r.message ?? ''))) {
    throw missingTool(file, file === 'ip' ? 'iproute2' : file === 'sysctl' ? 'procps' : file, r);
  }
  if (r.isCanceled && opts.signal?.aborted) throw opts.signal.reason;
  return { ok: !r.failed && r.exitCode === 0, exitCode: r.exitCode, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

/** `ip [-n NS] args...` */
export function ip(args: readonly string[], opts: RunOpts & { netns?: string } = {}): Promise<IpResult> {
  const pre = opts.netns ? ['-n', opts.netns] : [];
  return run('ip', [...pre, ...args], opts);
}

/** `ip [-n NS] [-force] -batch -` fed with the given command lines (one `ip` process). */
export function ipBatch(lines: readonly string[], opts: RunOpts & { netns?: string; force?: boolean } = {}): Promise<IpResult> {
  const pre = opts.netns ? ['-n', opts.netns] : [];
  const force = opts.force ? ['-force'] : [];
  return run('ip', [...pre, ...force, '-batch', '-'], { ...opts, input: lines.join('\n') + '\n' });
}

export interface IpLink {
  ifname: string;
  address?: string;
  master?: string;
  flags?: string[];
  operstate?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

/** All links of a namespace (`ip -j -d link show`); [] if the namespace is gone. */
export async function listLinks(opts: RunOpts & { netns?: string } = {}): Promise<IpLink[]> {
  const r = await ip(['-j', '-d', 'link', 'show'], opts);
  if (!r.ok) return [];
  try {
    return JSON.parse(r.stdout || '[]') as IpLink[];
  } catch {
    return [];
  }
}
