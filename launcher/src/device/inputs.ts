// Strict checks of what the root-side commands are given (by a prolog, an epilog or a root helper acting
// for a user): a Slurm job id is digits only; a uid is a number of a user that exists (through NSS:
// getent, so LDAP/SSSD users count); a slot count is small. Nothing here ever becomes a path unchecked.
import { SymError, EXIT } from '../errors.js';
import { JOB_RE } from './claims.js';
import { MAX_SLOT } from './identity.js';
import type { Runner } from './runner.js';

/** A Slurm job id: 1-10 digits, no leading zero, at most 2^32-1. */
export function checkJobId(value: unknown, field = '--job'): string {
  const s = typeof value === 'number' && Number.isInteger(value) ? String(value) : value;
  if (typeof s === 'string' && JOB_RE.test(s) && Number(s) <= 2 ** 32 - 1) return s;
  throw new SymError('ESYM_DEVICE_ARGS', {
    message: `${field} must be a Slurm job id (digits only, e.g. 4711), not ${JSON.stringify(value)}`,
    field, value, fix: 'pass $SLURM_JOB_ID (the prolog and epilog get it from slurmd)', exitCode: EXIT.usage,
  });
}

/** How many VFs to claim: 1..64. */
export function checkSlots(value: unknown, field = '--slots'): number {
  const n = typeof value === 'string' && /^[0-9]{1,3}$/.test(value) ? Number(value) : typeof value === 'number' ? value : NaN;
  if (Number.isInteger(n) && n >= 1 && n <= MAX_SLOT + 1) return n;
  throw new SymError('ESYM_DEVICE_ARGS', { message: `${field} must be a whole number 1..${MAX_SLOT + 1} (VFs for this job on this node), not ${JSON.stringify(value)}`, field, value, fix: 'one VF per VM the job runs on this node, e.g. --slots 1', exitCode: EXIT.usage });
}

export interface PasswdEntry { name: string; uid: number; gid: number }

/** Parse one `getent passwd` line (name:x:uid:gid:gecos:home:shell). */
export function parsePasswdLine(line: string): PasswdEntry | undefined {
  const f = line.replace(/\n$/, '').split(':');
  if (f.length < 7 || !/^[0-9]{1,10}$/.test(f[2]!) || !/^[0-9]{1,10}$/.test(f[3]!) || !f[0]) return undefined;
  return { name: f[0], uid: Number(f[2]), gid: Number(f[3]) };
}

/** A uid given as a number, of a user that exists (getent passwd UID). */
export async function checkUid(value: unknown, run: Runner, getent: string, field = '--uid'): Promise<PasswdEntry> {
  const s = typeof value === 'number' && Number.isInteger(value) ? String(value) : value;
  if (typeof s !== 'string' || !/^(0|[1-9][0-9]{0,9})$/.test(s) || Number(s) > 2 ** 32 - 2) {
    throw new SymError('ESYM_DEVICE_ARGS', { message: `${field} must be a numeric user id, not ${JSON.stringify(value)}`, field, value, fix: 'pass $SLURM_JOB_UID (a number; names are not accepted)', exitCode: EXIT.usage });
  }
  const r = await run([getent, 'passwd', s]);
  if (r.code === 2) {
    throw new SymError('ESYM_DEVICE_ARGS', { message: `${field}: no user has uid ${s} on this node`, field, value: s, fix: 'pass the job owner\'s uid ($SLURM_JOB_UID); check the node\'s user database (getent passwd UID)', exitCode: EXIT.usage });
  }
  if (r.code !== 0) {
    throw new SymError('ESYM_DEVICE_USERDB', { message: `cannot look up uid ${s}: ${getent} passwd ${s} exited ${r.code}${r.stderr.trim() ? `: ${r.stderr.trim().split('\n')[0]}` : ''}`, field: 'binaries.getent', value: getent, fix: 'check binaries.getent in the node config and the node\'s NSS (sssd, ldap)', exitCode: EXIT.environment });
  }
  const e = parsePasswdLine(r.stdout.split('\n')[0] ?? '');
  if (!e || e.uid !== Number(s)) {
    throw new SymError('ESYM_DEVICE_USERDB', { message: `${getent} passwd ${s} gave an answer for another or no user: ${JSON.stringify(r.stdout.split('\n')[0] ?? '')}`, field, value: s, fix: 'check the node\'s NSS configuration', exitCode: EXIT.environment });
  }
  return e;
}
