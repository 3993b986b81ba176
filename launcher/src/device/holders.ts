// Which processes hold a /dev/vfio/<group> node open: one scan of <root>/proc/<pid>/fd/* symlinks.
// Used before a group is taken back (a release while QEMU still has the device open would hand the next
// job a device another process still drives) and by `check` (a holder outside every claim is a leftover).
import type { DeviceIO } from './sysfs.js';

export interface Holder { pid: number; comm?: string }

/** group number -> processes holding /dev/vfio/<group> open. */
export function vfioHolders(io: DeviceIO): Map<number, Holder[]> {
  const out = new Map<number, Holder[]>();
  for (const p of io.list('proc')) {
    if (!/^[1-9][0-9]{0,9}$/.test(p)) continue;
    let fds: string[];
    try {
      fds = io.list(`proc/${p}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    const groups = new Set<number>();
    for (const fd of fds) {
      if (!/^[0-9]+$/.test(fd)) continue;
      let t: string | undefined;
      try {
        t = io.readlink(`proc/${p}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = t ? /^\/dev\/vfio\/([0-9]{1,9})$/.exec(t) : null;
      if (m) groups.add(Number(m[1]));
    }
    if (!groups.size) continue;
    let comm: string | undefined;
    try {
      comm = io.read(`proc/${p}/comm`)?.trim();
    } catch { /* gone */ }
    for (const g of groups) {
      const list = out.get(g) ?? [];
      list.push({ pid: Number(p), ...(comm ? { comm } : {}) });
      out.set(g, list);
    }
  }
  return out;
}

export const vfioNode = (group: number) => `dev/vfio/${group}`;
