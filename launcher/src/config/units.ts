// Sizes (512M, 2G: binary units) and durations (30s, 2m) as symrun.yaml and the CLI write them.
import { SymError, EXIT } from '../errors.js';
import { SIZE_PATTERN } from './schema.js';

export const UNIT: Record<string, number> = { '': 0, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };
export const SIZE_RE = new RegExp(SIZE_PATTERN, 'i');
export const MIB = 1024 * 1024;

export type SizeResult = { bytes: number } | { problem: string; fix: string };

export function sizeToBytes(text: string | number, bareUnitBytes: number): SizeResult {
  const expect = 'write a size like 512M, 2G or 524288K (binary units: K, M, G, T; optional iB)';
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || text < 0) return { problem: 'is not a size', fix: expect };
    return { bytes: text * bareUnitBytes };
  }
  if (typeof text !== 'string') return { problem: 'is not a size', fix: expect };
  const m = SIZE_RE.exec(text) && /^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTB]?)/i.exec(text);
  if (!m) return { problem: 'is not a size', fix: expect };
  const unit = m[2]!.toUpperCase();
  const factor = unit === '' ? bareUnitBytes : UNIT[unit]!;
  return { bytes: Number(m[1]) * factor };
}

export function mibFrom(text: string | number): { mib: number } | { problem: string; fix: string } {
  const r = sizeToBytes(text, MIB);
  if ('problem' in r) return r;
  if (!Number.isInteger(r.bytes / MIB)) {
    const up = Math.ceil(r.bytes / MIB);
    return { problem: 'is not a whole number of MiB', fix: `round it to whole MiB, e.g. ${up}M` };
  }
  return { mib: r.bytes / MIB };
}

/** The error for a size that is not one, naming the field. */
function sizeError(field: string, text: string | number, r: { problem: string; fix: string }): SymError {
  return new SymError('ESYM_CONFIG_INVALID', { message: `${field} ${r.problem}: ${JSON.stringify(text)}`, field, value: text, fix: r.fix, exitCode: EXIT.usage });
}

/**
 * Parse a size into MiB: '512M', '2G', '1.5G', '524288K', '512MiB', or a number (already MiB).
 * Suffixes are binary (M = MiB). The result must be a whole number of MiB.
 * Throws ESYM_CONFIG_INVALID naming `field`.
 */
export function parseSize(text: string | number, field: string): number {
  const r = mibFrom(text);
  if ('problem' in r) throw sizeError(field, text, r);
  return r.mib;
}

/** Like parseSize, but in bytes; a bare number is bytes. */
export function parseSizeBytes(text: string | number, field: string): number {
  const r = sizeToBytes(text, 1);
  if ('problem' in r) throw sizeError(field, text, r);
  return Math.floor(r.bytes);
}

/** "30s", "2m", "1500ms", "1h" or a bare number of seconds -> ms (the schema checked the form). */
export function parseDurationMs(v: string | number): number {
  if (typeof v === 'number') return v * 1000;
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$/.exec(v);
  if (!m) throw new RangeError(`not a duration: ${v}`);
  const n = Number(m[1]);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(n * mult);
}
