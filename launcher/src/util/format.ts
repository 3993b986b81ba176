// Human-readable sizes for messages and tables.
const MIB = 1024 * 1024;

export function fmtBytes(n?: number): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  if (n >= 1024 * MIB) return `${(n / (1024 * MIB)).toFixed(2)} GiB`;
  if (n >= MIB) return `${(n / MIB).toFixed(1)} MiB`;
  return `${Math.round(n / 1024)} KiB`;
}
