// Errors carry stable codes (ESYM_*, registered in error-codes.ts). One renderer prints message + fix,
// or JSON with --json.
// Exit codes scripts can trust: 2 = usage/config, 3 = environment (missing part), 4 = runtime failure
// of symrun itself; the application's own exit status is passed through unchanged.

import { ERROR_CODES, type ErrorCode } from './error-codes.js';

export { ERROR_CODES, isErrorCode, type ErrorCode } from './error-codes.js';

export const EXIT = {
  usage: 2,
  environment: 3,
  runtime: 4,
  /** `symrun migrate`: the migration was rolled back; the VM still runs where it was, the job is intact */
  notMoved: 5,
  notFound: 127,
} as const;

export interface SymErrorInit {
  /** what was wrong, in one sentence */
  message: string;
  /** what to do about it */
  fix?: string;
  /** the config field or CLI option concerned (e.g. "vm.memory" or "--local") */
  field?: string;
  /** the offending value */
  value?: unknown;
  /** process exit status when this error ends symrun (default: the code's, error-codes.ts) */
  exitCode?: number;
  /** anything else worth showing in --json output */
  details?: Record<string, unknown>;
  cause?: unknown;
}

export class SymError extends Error {
  readonly code: ErrorCode;
  readonly fix?: string;
  readonly field?: string;
  readonly value?: unknown;
  readonly exitCode: number;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, init: SymErrorInit) {
    super(init.message, init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = 'SymError';
    this.code = code;
    this.fix = init.fix;
    this.field = init.field;
    this.value = init.value;
    this.exitCode = init.exitCode ?? EXIT[ERROR_CODES[code]?.exit ?? 'runtime'];
    this.details = init.details;
  }

  toJSON(): Record<string, unknown> {
    const o: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.field !== undefined) o.field = this.field;
    if (this.value !== undefined) o.value = this.value;
    if (this.fix !== undefined) o.fix = this.fix;
    if (this.details !== undefined) o.details = this.details;
    return o;
  }
}

export function isSymError(e: unknown): e is SymError {
  return e instanceof SymError;
}

function showValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Render an error for humans (never a stack trace unless SYMRUN_DEBUG is set). */
export function renderError(e: unknown, opts: { json?: boolean; debug?: boolean } = {}): string {
  const err = isSymError(e)
    ? e
    : new SymError('ESYM_INTERNAL', {
        message: e instanceof Error ? e.message : String(e),
        fix: 'this is a bug in symrun; rerun with SYMRUN_DEBUG=1 and report the output',
        cause: e,
      });
  if (opts.json) return JSON.stringify({ error: err.toJSON() });
  let s = `symrun: error: ${err.message}`;
  if (err.field !== undefined) {
    s += `\n  field: ${err.field}`;
    if (err.value !== undefined) s += `\n  value: ${showValue(err.value)}`;
  }
  if (err.fix) s += `\n  fix:   ${err.fix}`;
  s += `\n  code:  ${err.code}`;
  if (opts.debug && e instanceof Error && e.stack) s += `\n${e.stack}`;
  return s;
}

/** Edit distance, for "did you mean" suggestions. */
export function levenshtein(a: string, b: string): number {
  const m = a.length, n = b.length;
  const d = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= n; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[n]!;
}

export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (dist < bestD) { bestD = dist; best = c; }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}
