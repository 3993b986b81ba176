// MUNGE for symrun watchd's per-user authentication (`symrun watchd --auth munge`, docs/channels.md):
//   - a subscriber makes a credential with `munge -s SESSION -u WATCHD_USER`: MUNGE signs the caller's
//     UID into it and lets only WATCHD_USER decode it; SESSION is 32 random bytes (hex) the subscriber
//     keeps for the channel's handshake;
//   - watchd runs `unmunge` on it: MUNGE says who made it (the UID) and refuses a replayed or expired
//     credential; the payload is the session secret;
//   - the channel's mutual handshake then runs with that secret: watchd proves it could decode a
//     credential only WATCHD_USER may decode, so the subscriber knows it talks to that user's watchd.
// parseUnmunge is pure; the two runners spawn munge/unmunge (tests pass fakes).
import { execFile } from 'node:child_process';
import { SymError, EXIT } from '../errors.js';

export interface MungeIdentity { uid: number; gid: number; payload: string }

/** `unmunge -N` prints STATUS as a number (munge_err_t); the ones a bad subscriber causes, by name (checked on munge 0.5). */
const MUNGE_STATUS: Record<string, string> = {
  '8': 'bad credential', '14': 'invalid credential', '15': 'expired credential', '16': 'rewound credential',
  '17': 'replayed credential', '18': 'credential for another user (only the restricted UID may decode it)',
};

/** `unmunge -N` output (metadata lines "KEY: VALUE", a blank line, the payload) → identity. */
export function parseUnmunge(text: string): MungeIdentity {
  const blank = text.indexOf('\n\n');
  const head = blank < 0 ? text : text.slice(0, blank);
  const payload = blank < 0 ? '' : text.slice(blank + 2).replace(/\n$/, '');
  const meta = new Map<string, string>();
  for (const line of head.split('\n')) {
    const m = /^([A-Z_]+):\s*(.*)$/.exec(line.trim());
    if (m) meta.set(m[1]!, m[2]!.trim());
  }
  const status = meta.get('STATUS') ?? '';
  if (!/^(Success|0)\b/.test(status)) {
    const named = MUNGE_STATUS[status] ? `${MUNGE_STATUS[status]} (${status})` : status;
    throw new SymError('ESYM_WATCHD_MUNGE', { message: `the subscriber's MUNGE credential was refused: ${named || 'no STATUS in unmunge output'}`, field: 'credential', value: status, exitCode: EXIT.runtime });
  }
  const uid = Number(/^(\d+)/.exec(meta.get('UID') ?? '')?.[1] ?? NaN);
  const gid = Number(/^(\d+)/.exec(meta.get('GID') ?? '')?.[1] ?? NaN);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) {
    throw new SymError('ESYM_WATCHD_MUNGE', { message: `unmunge gave no numeric UID/GID (UID ${JSON.stringify(meta.get('UID'))})`, field: 'credential', value: meta.get('UID') ?? null, exitCode: EXIT.runtime });
  }
  return { uid, gid, payload };
}

function run(cmd: string, args: string[], input: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(new Error(String(stderr).trim() || err.message), { code: (err as NodeJS.ErrnoException).code, stdout: String(stdout) }));
      else resolve(String(stdout));
    });
    c.stdin?.end(input);
  });
}

/** A credential carrying `payload` that only `restrictUser` may decode (`munge -s PAYLOAD -u USER`). */
export async function mungeEncode(payload: string, restrictUser: string, timeoutMs = 5_000): Promise<string> {
  try {
    return (await run('munge', ['-s', payload, '-u', restrictUser], '', timeoutMs)).trim();
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new SymError('ESYM_WATCHD_MUNGE', {
      message: `cannot make a MUNGE credential for watchd (user ${restrictUser}): ${missing ? 'munge is not installed' : (e as Error).message}`,
      field: 'slurm.watcherUser', value: restrictUser,
      fix: missing ? 'install munge (bash scripts/setup), or use slurm.watcherAuth: key' : 'is munged running on this node (systemctl status munge), and does the user exist here?',
      exitCode: EXIT.environment,
    });
  }
}

/** Decode a subscriber's credential (`unmunge -N`); its own credential is never decoded twice (MUNGE refuses replays). */
export async function mungeDecode(cred: string, timeoutMs = 5_000): Promise<MungeIdentity> {
  let out: string;
  try {
    out = await run('unmunge', ['-N'], cred + '\n', timeoutMs);
  } catch (e) {
    // unmunge exits non-zero on a bad credential and still prints its STATUS line
    const stdout = (e as { stdout?: string }).stdout ?? '';
    if (/STATUS:/.test(stdout)) return parseUnmunge(stdout);
    throw new SymError('ESYM_WATCHD_MUNGE', { message: `unmunge failed: ${(e as Error).message}`, fix: 'is munged running on the watchd host?', exitCode: EXIT.environment });
  }
  return parseUnmunge(out);
}
