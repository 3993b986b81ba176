// Guest RAM size argument, with the QEMU < 9.0 + TCG live-migration workaround (docs/lab-notes.md):
// QEMU 7.2/8.x + TCG corrupts live-migrated guests whose RAM is a multiple of 256 KiB (fixed upstream in
// 9.0, commit 03bfc2188f; measured on QEMU 7.2: 20 of 21 live migrations of a memory-writing guest
// corrupted). A size that is not such a multiple avoids it (-m 524280K for 512 MiB: 8 of 8 intact).
import type { QemuVersion } from './qemu.js';
import { versionAtLeast } from './qemu.js';

export const TCG_DIRTY_BITMAP_FIX = { major: 9, minor: 0 } as const;

export function effectiveMemory(memoryMiB: number, accel: 'kvm' | 'tcg', qemuVersion: QemuVersion): { arg: string; note?: string } {
  if (!Number.isInteger(memoryMiB) || memoryMiB <= 0) throw new RangeError(`memoryMiB must be a positive integer, got ${memoryMiB}`);
  const kib = memoryMiB * 1024;
  if (accel === 'tcg' && !versionAtLeast(qemuVersion, TCG_DIRTY_BITMAP_FIX.major, TCG_DIRTY_BITMAP_FIX.minor) && kib % 256 === 0) {
    const adj = kib - 8;
    const v = `${qemuVersion.major}.${qemuVersion.minor}.${qemuVersion.micro}`;
    return {
      arg: `${adj}K`,
      note: `guest RAM set to ${adj} KiB instead of ${memoryMiB} MiB: QEMU ${v} with TCG corrupts live-migrated guests whose RAM is a multiple of 256 KiB (fixed in QEMU 9.0)`,
    };
  }
  return { arg: `${memoryMiB}M` };
}
