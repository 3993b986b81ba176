// The one way the device layer runs a program (ip, getent, scontrol): no shell, an absolute binary from
// the node config (never PATH), a fixed minimal environment, a time bound. Tests pass a recorder instead.
import { execFile } from 'node:child_process';

export interface RunResult {
  /** exit status; -1 if the program could not be started or was killed (timeout) */
  code: number;
  stdout: string;
  stderr: string;
}

export type Runner = (argv: readonly string[]) => Promise<RunResult>;

export const RUN_TIMEOUT_MS = 10_000;

/** Run argv[0] (an absolute path) with argv[1..]; never rejects: failures come back as code/stderr. */
export const execRunner: Runner = (argv) =>
  new Promise((resolve) => {
    const [bin, ...args] = argv;
    if (!bin || !bin.startsWith('/')) {
      resolve({ code: -1, stdout: '', stderr: `not an absolute path: ${String(bin)}` });
      return;
    }
    execFile(bin, args, { timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean }) | null;
        const code = !e ? 0 : typeof e.code === 'number' ? e.code : -1;
        const why = e && typeof e.code !== 'number' ? (e.killed ? `killed after ${RUN_TIMEOUT_MS} ms` : e.message) : '';
        resolve({ code, stdout: String(stdout), stderr: `${String(stderr)}${why ? (stderr ? '\n' : '') + why : ''}` });
      });
  });
