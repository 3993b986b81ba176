// Running the root node layer's tools: absolute paths from the node configuration, an empty
// environment (root never inherits a user's PATH or LD_* settings), bounded in time.
import { execFile } from 'node:child_process';
import { SymError, EXIT } from '../errors.js';

export interface SysResult { ok: boolean; code: number | null; stdout: string; stderr: string }

const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

export function sys(file: string, args: readonly string[], o: { input?: string; timeoutMs?: number } = {}): Promise<SysResult> {
  if (!file.startsWith('/')) throw new SymError('ESYM_INTERNAL', { message: `node layer tool ${file} is not an absolute path` });
  return new Promise((resolve) => {
    const c = execFile(file, [...args], { env: ENV, timeout: o.timeoutMs ?? 10_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ ok: !err, code, stdout: String(stdout), stderr: String(stderr) || (err && !stderr ? err.message : '') });
    });
    if (o.input !== undefined) c.stdin?.end(o.input);
    else c.stdin?.end();
  });
}

/** Run and throw ESYM_NODE_SETUP (naming the command and its error) if it fails. */
export async function sysOk(file: string, args: readonly string[], what: string, o: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await sys(file, args, o);
  if (!r.ok) throw new SymError('ESYM_NODE_SETUP', { message: `${what}: ${file} ${args.join(' ')} failed: ${r.stderr.trim().split('\n').slice(0, 3).join('; ')}`, exitCode: EXIT.environment });
  return r.stdout;
}
