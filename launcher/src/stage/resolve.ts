// execvp-like program resolution on the host (where the user typed `symrun ... -- prog`).
import fs from 'node:fs';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';

export interface ResolvedProgram {
  /** what the user typed */
  argv0: string;
  /** absolute host path (not symlink-resolved: the guest gets the same path, and the closure ships the chain) */
  hostPath: string;
  kind: 'cwd' | 'absolute' | 'path';
}

export const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

type Check = { ok: true } | { ok: false; why: 'missing' | 'directory' | 'not-executable' };

function check(p: string): Check {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return { ok: false, why: 'missing' };
  }
  if (st.isDirectory()) return { ok: false, why: 'directory' };
  if (!st.isFile()) return { ok: false, why: 'not-executable' };
  try {
    fs.accessSync(p, fs.constants.X_OK);
  } catch {
    return { ok: false, why: 'not-executable' };
  }
  // root passes X_OK if any x bit is set; a file with no x bit at all is not executable for anyone
  if ((st.mode & 0o111) === 0) return { ok: false, why: 'not-executable' };
  return { ok: true };
}

function describe(why: 'missing' | 'directory' | 'not-executable'): string {
  return why === 'missing' ? 'does not exist' : why === 'directory' ? 'is a directory' : 'is not executable';
}

/**
 * Like execvp(3): a name containing '/' is taken relative to cwd (or as absolute); a bare name is searched
 * in PATH (an empty PATH element means cwd). Throws ESYM_APP_NOT_FOUND (exit 127) when nothing runnable is found.
 */
export function resolveProgram(argv0: string, opts: { cwd: string; PATH?: string }): ResolvedProgram {
  if (argv0 === '') {
    throw new SymError('ESYM_APP_NOT_FOUND', {
      message: 'no program given after --',
      field: 'program',
      value: argv0,
      fix: 'name the program to run, e.g. `symrun --local 2 -- ./app`',
      exitCode: EXIT.notFound,
    });
  }
  const cwd = path.resolve(opts.cwd);
  if (argv0.includes('/')) {
    const hostPath = path.resolve(cwd, argv0);
    const kind = path.isAbsolute(argv0) ? 'absolute' : 'cwd';
    const c = check(hostPath);
    if (c.ok) return { argv0, hostPath, kind };
    throw new SymError('ESYM_APP_NOT_FOUND', {
      message: `program ${hostPath} ${describe(c.why)}` + (kind === 'cwd' ? ` (resolved "${argv0}" against ${cwd})` : ''),
      field: 'program',
      value: argv0,
      fix:
        c.why === 'not-executable'
          ? `make it executable (chmod +x ${hostPath}) or run it through its interpreter (e.g. -- sh ${argv0})`
          : c.why === 'directory'
            ? 'name the executable file inside that directory'
            : 'check the spelling and the current directory; build the program first if it is yours',
      exitCode: EXIT.notFound,
      details: { looked: [hostPath], reason: c.why },
    });
  }
  const PATH = opts.PATH ?? process.env.PATH ?? DEFAULT_PATH;
  const dirs = PATH.split(':');
  const looked: string[] = [];
  let denied: string | undefined;
  for (const d of dirs) {
    const dir = d === '' ? cwd : path.resolve(cwd, d);
    const cand = path.join(dir, argv0);
    looked.push(dir);
    const c = check(cand);
    if (c.ok) return { argv0, hostPath: cand, kind: 'path' };
    if (c.why === 'not-executable' && denied === undefined) denied = cand;
  }
  if (denied !== undefined) {
    throw new SymError('ESYM_APP_NOT_FOUND', {
      message: `program "${argv0}" was found in PATH at ${denied} but it is not executable`,
      field: 'program',
      value: argv0,
      fix: `make it executable (chmod +x ${denied}) or give the full path of the right program`,
      exitCode: EXIT.notFound,
      details: { looked, reason: 'not-executable' },
    });
  }
  throw new SymError('ESYM_APP_NOT_FOUND', {
    message: `program "${argv0}" not found in PATH (looked in ${looked.join(', ') || '(empty PATH)'})`,
    field: 'program',
    value: argv0,
    fix: `install it, give its path (e.g. -- ./${argv0} for a program in the current directory), or fix PATH`,
    exitCode: EXIT.notFound,
    details: { looked, reason: 'missing' },
  });
}
