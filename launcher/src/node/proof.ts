// Who is calling the node helper: the caller proves its uid through the filesystem, the way the kernel
// tells it. The helper gives it a random nonce; the caller creates a file of that name in a sticky
// directory (mode 1733: anyone may create, nobody may list, nobody may remove another's file); the
// kernel makes the caller its owner. The helper then looks at the file without following links: a
// regular file with one link (a hard link to somebody else's file would have two: Debian's
// fs.protected_hardlinks forbids those anyway), owned by uid U => the caller is U. Node cannot read
// SO_PEERCRED; this needs nothing but a directory and gives the same answer.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { SymError, EXIT } from '../errors.js';

export const PROOF_MODE = 0o1733;

/** Root: make (or check) the proof directory. */
export function ensureProofDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: PROOF_MODE });
  fs.chmodSync(dir, PROOF_MODE); // mkdir's mode is masked by the umask
  const st = fs.lstatSync(dir);
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o7777) !== PROOF_MODE) throw new Error(`${dir} is not a root-owned directory with mode 1733`);
}

export function newNonce(): string {
  return crypto.randomBytes(16).toString('hex');
}

/** Caller: create the proof file for `nonce` (exclusively). */
export function writeProof(dir: string, nonce: string): string {
  if (!/^[0-9a-f]{32}$/.test(nonce)) throw new SymError('ESYM_NODE_DENIED', { message: 'the node helper sent a malformed challenge' });
  const f = path.join(dir, nonce);
  fs.closeSync(fs.openSync(f, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW, 0o600));
  return f;
}

/** Helper: the uid the caller proved (and the proof file is gone); throws ESYM_NODE_DENIED otherwise. */
export function checkProof(dir: string, nonce: string): number {
  const f = path.join(dir, nonce);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(f);
  } catch {
    throw new SymError('ESYM_NODE_DENIED', { message: 'no proof of identity (the caller did not create its challenge file)', exitCode: EXIT.usage });
  }
  try { fs.unlinkSync(f); } catch { /* gone */ }
  if (!st.isFile() || st.nlink !== 1) throw new SymError('ESYM_NODE_DENIED', { message: 'the proof of identity is not a plain file of its own', exitCode: EXIT.usage });
  return st.uid;
}
