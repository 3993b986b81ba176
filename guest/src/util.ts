// Small things every part of the guest agent uses: its log line, its error (a code the host maps), sysfs
// reads that never throw, a sleep, and exec as a promise.
import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export const execFileP = promisify(execFile);

export function log(msg: string): void {
  process.stderr.write(`symrun-agent: ${msg}\n`);
}

/** An error the host sees as {code, message} in the response frame. */
export class AgentError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export function readSys(p: string): string {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return '';
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
