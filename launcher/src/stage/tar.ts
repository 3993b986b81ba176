// Host-side archive creation (stage-in): GNU tar, no recursion, names exactly as listed.
import { spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { SymError, EXIT } from '../errors.js';

export type TarEntries = { root: string; paths: string[] } | { absolute: string[] };

/**
 * Stream a GNU-format tar of exactly the listed entries (directories are not recursed into).
 * { root, paths }: names are the given relative paths (extract with -C root).
 * { absolute }: names are the absolute paths without the leading '/' (extract with -C /).
 * Owners are numeric; hard links are stored as separate files; symlinks as symlinks.
 */
export function tarCreate(entries: TarEntries): { stream: NodeJS.ReadableStream; done: Promise<void> } {
  let cwd: string;
  let names: string[];
  if ('absolute' in entries) {
    cwd = '/';
    names = entries.absolute.map((p) => {
      if (!p.startsWith('/')) throw new SymError('ESYM_INTERNAL', { message: `tarCreate: ${p} is not absolute` });
      const n = p.replace(/^\/+/, '');
      return n === '' ? '.' : n;
    });
  } else {
    cwd = entries.root;
    names = entries.paths.map((p) => {
      if (p.startsWith('/')) throw new SymError('ESYM_INTERNAL', { message: `tarCreate: ${p} is not relative` });
      return p;
    });
  }
  for (const n of names) {
    if (n.includes('\0')) throw new SymError('ESYM_INTERNAL', { message: 'tarCreate: NUL in a file name' });
  }
  const args = ['-c', '-f', '-', '--format=gnu', '--numeric-owner', '--no-recursion', '--hard-dereference',
    '-C', cwd, '--null', '--verbatim-files-from', '-T', '-'];
  const child = spawn('tar', args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { if (stderr.length < 64 * 1024) stderr += d; });
  child.stdin.on('error', () => { /* reported through the exit status */ });
  child.stdin.end(names.length ? names.join('\0') + '\0' : '');
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (e) =>
      reject(new SymError('ESYM_STAGE_TOOL_MISSING', {
        message: `cannot run tar: ${e.message}`,
        fix: 'install GNU tar on this host',
        exitCode: EXIT.environment,
        cause: e,
      })));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve();
      reject(new SymError('ESYM_STAGE_TAR_FAILED', {
        message: `tar could not archive the files to stage (${signal ? `signal ${signal}` : `exit ${code}`}): ${stderr.trim().split('\n').slice(0, 5).join('; ')}`,
        fix: 'a staged file vanished, changed while being read, or is unreadable; exclude it (share.exclude) or rerun',
        exitCode: EXIT.runtime,
        details: { stderr: stderr.slice(0, 4096), cwd },
      }));
    });
  });
  // hold the output in a stream of our own: Node discards a child's unread stdout when the child exits, and a
  // small archive can be complete before the caller starts reading
  const out = new PassThrough();
  child.stdout.pipe(out);
  return { stream: out, done };
}
