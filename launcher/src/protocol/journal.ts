// Write-ahead journal of protocol operations: one JSON line per phase, written (and fsynced) before
// the phase's side effect runs. After a coordinator restart, readJournal() gives each operation's
// last record; replaying its state tells which phase was in flight and what had been started.
import fs from 'node:fs';
import path from 'node:path';
import type { ProtocolState } from './machine.js';

export interface JournalRecord {
  ts?: string;
  op: string;
  kind: string;
  phase: string;
  state: ProtocolState;
  /** operation parameters (first record of an op) */
  params?: Record<string, unknown>;
  result?: unknown;
}

export interface Journal {
  write(r: JournalRecord): Promise<void>;
}

export class FileJournal implements Journal {
  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  }

  async write(r: JournalRecord): Promise<void> {
    const line = JSON.stringify({ ts: new Date().toISOString(), ...r }) + '\n';
    const fd = fs.openSync(this.file, 'a', 0o600);
    try {
      fs.writeSync(fd, line);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** Last record of every operation in a journal file (a torn last line is ignored). */
export function readJournal(file: string): Map<string, JournalRecord & { params?: Record<string, unknown> }> {
  const out = new Map<string, JournalRecord>();
  let text = '';
  try { text = fs.readFileSync(file, 'utf8'); } catch { return out; }
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let r: JournalRecord;
    try { r = JSON.parse(line) as JournalRecord; } catch { continue; }
    if (!r || typeof r.op !== 'string' || !r.state) continue;
    const prev = out.get(r.op);
    out.set(r.op, { ...r, params: r.params ?? prev?.params });
  }
  return out;
}
